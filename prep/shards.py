"""The generic sharded writer: parallel, deterministic, resumable, with a manifest.

Every dataset's preparation (prep.bigearthnet, prep.so2sat, ...) plans its splits as ordered
lists of items and hands them to ``write_dataset`` with a ``produce`` function that turns one
shard's items into ``Record`` or ``Skip`` results, in order. Shard ``i`` of a split holds items
``[i*k, (i+1)*k)`` whatever the worker count, so the same inputs and flags give byte-identical
shards. Each shard is written under a temporary name, renamed when complete, and described by a
sidecar in ``OUT/.parts/``; a rerun keeps finished shards and redoes the rest. The manifest is
assembled from the sidecars at the end.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import multiprocessing as mp
import os
import queue
import sys
import threading
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from prep import files, tfrecord
from prep.datasets.contract import PreparePlan
from prep.datasets.spec import DatasetSpec, Schema
from prep.errors import PrepError
from prep.fastencode import CompiledSchema
from prep.stats import BandStats, load_states, save_states

MANIFEST = "manifest.json"
PARTS = ".parts"
FORMAT_VERSION = 1


@dataclasses.dataclass
class Record:
    """One example to write: feature values per the schema, raw bands (for statistics), class indices.

    A producer that encodes in bulk may give ``encoded`` (the serialized tf.train.Example; ``values``
    is then not read and may be None) and ``band_states``: partial statistics as (band, state)
    pairs, merged in order with ``BandStats.merge_state`` (besides any ``bands``). ``note``: facts about
    this record the manifest lists (``notes``, with split and key; e.g. pixels a reader repaired).
    """

    key: str
    values: Mapping[str, Any] | None
    bands: Mapping[str, np.ndarray]
    labels: Sequence[int]
    encoded: bytes | None = None
    band_states: Sequence[tuple[str, Mapping]] = ()
    note: Mapping[str, Any] | None = None


@dataclasses.dataclass
class Skip:
    """One input item that is not written, with the reason (file and problem)."""

    key: str
    reason: str


@dataclasses.dataclass
class Exclude:
    """One input item left out by the dataset's rules (not an error), with the reason."""

    key: str
    reason: str


@dataclasses.dataclass(frozen=True)
class ShardTask:
    split: str
    index: int
    num_shards: int
    items: tuple
    path: str  # final shard path

    @property
    def name(self) -> str:
        return os.path.basename(self.path)


def shard_filename(split: str, index: int, num_shards: int, compression: str | None) -> str:
    suffix = ".tfrecord.gz" if compression == "GZIP" else ".tfrecord"
    return f"{split}-{index:05d}-of-{num_shards:05d}{suffix}"


def estimate_record_bytes(spec: DatasetSpec, schema: Schema) -> int:
    """A size estimate per record, used to turn a shard size in MB into records per shard."""
    pixels = sum(b.size for b in spec.bands)
    if schema.band_encoding == "raw_bytes":
        body = sum(b.size * np.dtype(b.dtype).itemsize for b in spec.bands)
    elif schema.band_encoding == "int64_list":
        body = int(pixels * 2.1)  # varints of typical reflectances take 2 bytes, some 3
    else:
        body = pixels * 4
    return body + 1024


def records_per_shard(spec: DatasetSpec, schema: Schema, shard_size_mb: float) -> int:
    return max(1, int(shard_size_mb * 1e6 // estimate_record_bytes(spec, schema)))


def plan_shards(out_dir: str, splits: Mapping[str, Sequence], per_shard: int,
                compression: str | None) -> list[ShardTask]:
    """Each split in ``ceil(n / per_shard)`` shards of equal record counts (the first ``n % shards`` one
    more), in item order: no short last shard, so workers finish together and readers interleave
    evenly. ``per_shard`` is the most a shard holds."""
    tasks = []
    for split, items in splits.items():
        n = max(1, math.ceil(len(items) / per_shard))
        small, extra = divmod(len(items), n)
        start = 0
        for i in range(n):
            stop = start + small + (i < extra)
            path = os.path.join(out_dir, shard_filename(split, i, n, compression))
            tasks.append(ShardTask(split, i, n, tuple(items[start:stop]), path))
            start = stop
    return tasks


sha256_file = files.sha256_file  # re-exported: the one implementation lives in prep.files
write_json_atomic = files.write_json_atomic


# --- the worker side --------------------------------------------------------------------------

_progress_queue = None


def _init_worker(q):
    global _progress_queue
    _progress_queue = q


def _report(n: int) -> None:
    if _progress_queue is not None and n:
        _progress_queue.put(n)


def write_shard(task: ShardTask, produce: Callable, spec: DatasetSpec, schema: Schema,
                 compression: str | None, on_error: str) -> dict:
    """Write one shard to a temporary file, rename it, then write its sidecar. Returns the sidecar.

    The worker side of ``write_dataset`` (and of prep.beam's shard-writing step): ``produce`` gets
    ``task.items``; a ``Skip`` stops with PrepError when ``on_error == "fail"``. The partial band
    statistics go to ``OUT/.parts/<shard>.stats.npz``, the sidecar (counts, size, sha256) to
    ``OUT/.parts/<shard>.json``, written last: it marks the shard finished.
    """
    parts = os.path.join(os.path.dirname(task.path), PARTS)
    tmp = os.path.join(parts, task.name + ".incomplete")
    encoder = CompiledSchema(schema.fields)  # the bytes of tfrecord.encode_example, faster
    stats = {b.name: BandStats(b.dtype) for b in spec.bands}
    class_counts = np.zeros(spec.num_classes, np.int64)
    written, skipped, excluded, pending, notes = 0, [], [], 0, []
    seen = 0
    writer = tfrecord.TFRecordWriter(tmp, compression)  # hashes the file's bytes as it writes them
    with writer as w:
        for result in produce(task.items):
            seen += 1
            if isinstance(result, Skip):
                if on_error == "fail":
                    raise PrepError(f"{result.key}: {result.reason}")
                skipped.append({"split": task.split, "key": result.key, "reason": result.reason})
            elif isinstance(result, Exclude):
                excluded.append({"split": task.split, "key": result.key, "reason": result.reason})
            else:
                w.write(result.encoded if result.encoded is not None else encoder.encode(result.values))
                for name, px in result.bands.items():
                    stats[name].update(px)
                for name, st in result.band_states:
                    stats[name].merge_state(st)
                class_counts[list(result.labels)] += 1
                written += 1
                if result.note:
                    notes.append({"split": task.split, "key": result.key, **result.note})
            pending += 1
            if pending >= 16:
                _report(pending)
                pending = 0
    _report(pending)
    if seen != len(task.items):
        raise PrepError(f"internal error: produce() gave {seen} results for {len(task.items)} items "
                        f"of shard {task.name}")
    os.replace(tmp, task.path)
    save_states(os.path.join(parts, task.name + ".stats.npz"), stats)
    side = {"file": task.name, "split": task.split, "index": task.index, "records": written,
            "bytes": os.path.getsize(task.path),
            "sha256": writer.sha256.hexdigest(),
            "listed": len(task.items), "skipped": skipped, "excluded": excluded, "class_counts": class_counts.tolist()}
    if notes:
        side["notes"] = notes
    write_json_atomic(os.path.join(parts, task.name + ".json"), side)
    return side


def _write_shard_star(args):
    return write_shard(*args)


# --- the driver -------------------------------------------------------------------------------

def finished_sidecar(task: ShardTask) -> dict | None:
    """The sidecar of a shard an earlier run finished (sidecar present, shard of the recorded size), else
    None: such a shard is kept on resume."""
    side_path = os.path.join(os.path.dirname(task.path), PARTS, task.name + ".json")
    if not (os.path.exists(side_path) and os.path.exists(task.path)):
        return None
    with open(side_path) as f:
        side = json.load(f)
    if side.get("bytes") != os.path.getsize(task.path):
        return None
    return side


def plan_fingerprint(spec, schema, compression, tasks, flags) -> dict:
    """What makes a preparation's output what it is (dataset, schema, compression, flags and a hash of
    every shard's items): saved as ``OUT/.parts/plan.json`` and compared by ``check_plan``."""
    h = hashlib.sha256()
    for t in tasks:
        h.update(f"{t.name}\n".encode())
        for it in t.items:
            h.update(repr(it).encode())
            h.update(b"\n")
    return {"dataset": spec.name, "dataset_version": spec.version, "schema": schema.name,
            "schema_version": schema.version, "compression": compression or "NONE",
            "flags": flags, "plan_sha256": h.hexdigest()}


def check_plan(out_dir: str, plan: dict, overwrite: bool) -> None:
    """Refuse an output folder holding a different preparation (PrepError naming what differs) unless
    ``overwrite``, which removes its shards, manifest and sidecars; then save ``plan`` as plan.json."""
    parts = os.path.join(out_dir, PARTS)
    plan_path = os.path.join(parts, "plan.json")
    if os.path.exists(plan_path) and not overwrite:
        with open(plan_path) as f:
            old = json.load(f)
        if old != plan:
            diff = sorted(k for k in set(old) | set(plan) if old.get(k) != plan.get(k))
            if "flags" in diff:
                fo, fn = old.get("flags", {}), plan.get("flags", {})
                diff += [f"--{k}" for k in sorted(set(fo) | set(fn)) if fo.get(k) != fn.get(k)]
            raise PrepError(
                f"{out_dir} holds output of a different preparation (differs in: {', '.join(diff)}); "
                "choose another output folder or pass --overwrite")
    if overwrite and os.path.isdir(out_dir):
        for name in os.listdir(out_dir):
            if name.endswith((".tfrecord", ".tfrecord.gz")) or name == MANIFEST:
                os.remove(os.path.join(out_dir, name))
        if os.path.isdir(parts):
            for name in os.listdir(parts):
                os.remove(os.path.join(parts, name))
    os.makedirs(parts, exist_ok=True)
    write_json_atomic(plan_path, plan)


def write_dataset(out_dir: str, spec: DatasetSpec, schema_name: str, splits: Mapping[str, Sequence],
                  produce: Callable[[Sequence], Iterable], records_per_shard: int, workers: int = 1,
                  compression: str | None = None, flags: Mapping | None = None,
                  excluded: Sequence[Mapping] | None = None, skipped: Sequence[Mapping] | None = None,
                  extra: Mapping | None = None,
                  on_error: str = "fail", overwrite: bool = False, progress: bool = True,
                  item_key: Callable[[Any], str] = str) -> dict:
    """Write every split as shards into ``out_dir`` and return (and save) the manifest.

    ``splits`` maps a split name to its ordered items (one record each); ``produce`` (a picklable
    module-level callable or functools.partial) gets one shard's items and yields, per item and in
    order, a ``Record``, a ``Skip`` (bad input) or an ``Exclude`` (left out by rule). ``excluded``
    and ``skipped`` list items the caller left out while planning (``{"split", "key", "reason"}``).
    Every listed item ends up written, excluded or skipped, and the manifest's counts reconcile.
    """
    if on_error not in ("fail", "skip"):
        raise ValueError(f"on_error must be 'fail' or 'skip', not {on_error!r}")
    compression = None if compression in (None, "", "NONE") else compression
    schema = spec.schema(schema_name)
    flags = dict(flags or {})
    excluded = list(excluded or [])
    skipped = list(skipped or [])
    if skipped and on_error == "fail":
        first = skipped[0]
        more = f" (and {len(skipped) - 1} more)" if len(skipped) > 1 else ""
        raise PrepError(f"{first['key']}: {first['reason']}{more}")
    os.makedirs(out_dir, exist_ok=True)
    tasks = plan_shards(out_dir, splits, records_per_shard, compression)
    check_plan(out_dir, plan_fingerprint(spec, schema, compression, tasks, flags), overwrite)
    manifest_path = os.path.join(out_dir, MANIFEST)
    if os.path.exists(manifest_path):
        os.remove(manifest_path)  # rewritten at the end; its absence marks an unfinished run

    done = {t.name: s for t in tasks if (s := finished_sidecar(t)) is not None}
    todo = [t for t in tasks if t.name not in done]
    total = sum(len(t.items) for t in tasks)
    resumed = total - sum(len(t.items) for t in todo)

    bar = _progress_bar(total, resumed, progress)
    args = [(t, produce, spec, schema, compression, on_error) for t in todo]
    try:
        if workers <= 1 or len(todo) <= 1:
            _init_worker(_InlineQueue(bar))
            try:
                for a in args:
                    side = _write_shard_star(a)
                    done[side["file"]] = side
            finally:
                _init_worker(None)
        else:
            ctx = mp.get_context(start_method())
            q = ctx.Queue()
            stop = threading.Event()
            # the pool starts before the progress thread, so forked workers copy no running thread
            with ctx.Pool(min(workers, len(todo)), initializer=_init_worker, initargs=(q,)) as pool:
                listener = threading.Thread(target=_drain, args=(q, bar, stop), daemon=True)
                listener.start()
                try:
                    for side in pool.imap_unordered(_write_shard_star, args):
                        done[side["file"]] = side
                finally:
                    stop.set()
                    listener.join()
    finally:
        if bar is not None:
            bar.close()

    manifest = assemble_manifest(out_dir, spec, schema, compression, tasks, done, flags, excluded, skipped,
                                  extra)
    write_json_atomic(manifest_path, manifest)
    return manifest


def write_plan(out_dir: str, plan: PreparePlan, workers: int = 1, overwrite: bool = False,
               progress: bool = True) -> dict:
    """Write a dataset's ``PreparePlan`` with local worker processes; returns (and saves) the manifest.

    The same bytes as ``prep.beam.write_plan`` on the DirectRunner. Raises PrepError for bad input
    under ``on_error="fail"``, a raw archive on a Beam filesystem (it needs a Beam runner) or an
    output folder holding another preparation (unless ``overwrite``).
    """
    if "://" in str(out_dir):
        raise PrepError(f"{out_dir}: the local writer writes local folders; use a Beam runner (--runner) "
                        "for a Beam filesystem")
    if plan.remote_input:
        raise PrepError("the raw archive is on a Beam filesystem: prepare it with a Beam runner (--runner)")
    return write_dataset(out_dir, plan.spec, plan.schema, plan.items, plan.produce, plan.records_per_shard,
                         workers=workers, compression=plan.compression, flags=plan.flags,
                         excluded=plan.excluded, skipped=plan.skipped, extra=plan.extra, on_error=plan.on_error,
                         overwrite=overwrite, progress=progress)


def start_method() -> str:
    """How worker processes start: "fork" (no re-import, starts in milliseconds) unless TensorFlow is
    loaded in this process (its thread pools do not survive a fork), then "spawn"."""
    return "spawn" if "tensorflow" in sys.modules else "fork"


class _InlineQueue:
    def __init__(self, bar):
        self.bar = bar

    def put(self, n):
        if self.bar is not None:
            self.bar.update(n)


def _drain(q, bar, stop):
    while not (stop.is_set() and q.empty()):
        try:
            n = q.get(timeout=0.1)
        except queue.Empty:
            continue
        if bar is not None:
            bar.update(n)


def _progress_bar(total: int, initial: int, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm
    return tqdm(total=total, initial=initial, unit="patch", desc="preparing", smoothing=0.1,
                dynamic_ncols=True, mininterval=0.5)


def _empty_split(spec) -> dict:
    return {"listed": 0, "written": 0, "excluded": 0, "skipped": 0, "shards": [],
            "class_counts": np.zeros(spec.num_classes, np.int64)}


def assemble_manifest(out_dir, spec, schema, compression, tasks, sidecars, flags, pre_excluded,
                      pre_skipped, extra) -> dict:
    parts = os.path.join(out_dir, PARTS)
    splits: dict[str, dict] = {}
    skipped: list = list(pre_skipped)
    excluded: list = list(pre_excluded)
    stats: dict[str, dict[str, BandStats]] = {}
    notes: list = []
    for t in tasks:
        side = sidecars[t.name]
        notes.extend(side.get("notes", ()))
        s = splits.setdefault(t.split, _empty_split(spec))
        s["listed"] += side["listed"]
        s["written"] += side["records"]
        s["skipped"] += len(side["skipped"])
        s["excluded"] += len(side["excluded"])
        excluded.extend(side["excluded"])
        s["class_counts"] += np.asarray(side["class_counts"], np.int64)
        s["shards"].append({k: side[k] for k in ("file", "records", "bytes", "sha256")})
        skipped.extend(side["skipped"])
        split_stats = stats.setdefault(t.split, {b.name: BandStats(b.dtype) for b in spec.bands})
        for band, st in load_states(os.path.join(parts, t.name + ".stats.npz")).items():
            split_stats[band].merge_state(st)
    for kind, items in (("excluded", pre_excluded), ("skipped", pre_skipped)):
        for e in items:
            s = splits.setdefault(e["split"], _empty_split(spec))
            s["listed"] += 1
            s[kind] += 1
    for s in splits.values():
        s["class_counts"] = {spec.class_names[i]: int(c) for i, c in enumerate(s["class_counts"])}
        assert s["listed"] == s["written"] + s["excluded"] + s["skipped"]
    manifest = {
        "format": "eorecords-manifest",
        "format_version": FORMAT_VERSION,
        "dataset": spec.name,
        "dataset_version": spec.version,
        "task": spec.task,
        "schema": schema.name,
        "schema_version": schema.version,
        "compression": compression or "NONE",
        "bands": [{"name": b.name, "shape": list(b.shape), "dtype": b.dtype, "resolution_m": b.resolution_m,
                   "group": b.group, "feature": schema.band_keys[b.name]} for b in spec.bands],
        "classes": list(spec.class_names),
        "splits": splits,
        "totals": {k: sum(s[k] for s in splits.values()) for k in ("listed", "written", "excluded", "skipped")},
        "statistics": {split: {b: st.summary() for b, st in bs.items()} for split, bs in stats.items()},
        "skipped": skipped,
        "excluded": excluded,
        "flags": flags,
    }
    if notes:  # only datasets whose records carry notes have the key (other manifests are unchanged)
        manifest["notes"] = notes
    if extra:
        manifest.update(extra)
    return manifest
