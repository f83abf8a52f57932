"""The generic sharded writer: parallel, deterministic, resumable, with a manifest.

Every dataset's preparation (prep.bigearthnet, prep.so2sat, ...) plans its splits as ordered
lists of items and hands them to ``write_dataset`` with a ``produce`` function that turns one
shard's items into ``Record`` or ``Skip`` results, in order. Shard ``i`` of a split holds items
``[i*k, (i+1)*k)`` whatever the worker count, so the same inputs and flags give byte-identical
shards. Each shard is written under a temporary name, renamed when complete, and described by a
sidecar in ``OUT/.parts/``; a rerun keeps finished shards and redoes the rest. The manifest is
assembled from the sidecars at the end.

What makes two runs "the same preparation" is ``plan_fingerprint``: the dataset, schema,
compression, the items of every shard and the flags that change the shards' bytes, not
``on_error`` or ``shard_size_mb`` (``NOT_COMPARED_FLAGS``). A folder whose earlier run finished no
shard never blocks a rerun. Items the plan found missing from the input are counted per split and
listed in ``OUT/missing.csv``, not in the manifest.
"""
from __future__ import annotations

import contextlib
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

from prep import files, manifest, tfrecord
from prep.datasets.contract import PreparePlan
from prep.datasets.spec import DatasetSpec, Schema
from prep.errors import PrepError
from prep.fastencode import CompiledSchema
from prep.stats import BandStats, load_states, save_states

MANIFEST = "manifest.json"
PARTS = ".parts"
MISSING = "missing.csv"  # the listed items missing from the input: "split,key" rows after a header
FORMAT_VERSION = 1
COUNTS = ("listed", "written", "excluded", "skipped", "missing")  # listed = the sum of the others
# Recorded in the manifest, not part of what makes a preparation: on_error changes no finished
# shard (one finished under "fail" had nothing to skip; under "fail" a shard finished with skips is
# redone, see keep_finished), and shard_size_mb only through records_per_shard, which the shard plan
# covers.
NOT_COMPARED_FLAGS = ("on_error", "shard_size_mb")


class Manifest(manifest.Manifest):
    """The manifest a preparation wrote, with ``run``: what this run did (never saved).

    The typed manifest of ``prep.manifest`` (what ``prep.manifest.load`` gives for the saved file).

    ``run`` holds ``shards_kept`` / ``items_kept`` (the shards an earlier run had finished, kept as
    they were, and the listed items they hold) and ``shards_written`` / ``items_written`` (the shards
    written by this run), so a summary can give the rate of the new work only.
    """

    run: dict | None = None


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
    """One shard to write: shard ``index`` of ``num_shards`` of ``split``, its items in order, its final path.

    Made by ``plan_shards``; ``items`` are the split's items ``[start, stop)`` (patch names for
    BigEarthNet, ``(file index, row)`` pairs for So2Sat LCZ42), one record each unless skipped or
    excluded. ``path`` is the final shard file (``OUT/<split>-<index>-of-<num_shards>.tfrecord[.gz]``).
    """

    split: str
    index: int
    num_shards: int
    items: tuple
    path: str  # final shard path

    @property
    def name(self) -> str:
        """The shard's file name (``train-00003-of-00016.tfrecord.gz``), also the stem of its sidecar files."""
        return os.path.basename(self.path)


def shard_filename(split: str, index: int, num_shards: int, compression: str | None) -> str:
    """File name of shard ``index`` (0-based) of ``num_shards``: ``<split>-00000-of-00016.tfrecord``.

    ``.tfrecord.gz`` when ``compression`` is ``"GZIP"``, else ``.tfrecord`` (``None`` or ``"NONE"``).
    """
    suffix = ".tfrecord.gz" if compression == "GZIP" else ".tfrecord"
    return f"{split}-{index:05d}-of-{num_shards:05d}{suffix}"


def estimate_record_bytes(spec: DatasetSpec, schema: Schema) -> int:
    """A size estimate per record in bytes, used to turn a shard size in MB into records per shard.

    The band pixels of ``spec`` as ``schema`` encodes them (``raw_bytes``: the bands' dtype sizes;
    ``int64_list``: about 2.1 bytes per varint-encoded reflectance; ``float_list``: 4 bytes per value)
    plus 1 KiB for keys, labels and framing. Uncompressed: GZIP shards come out smaller.
    """
    pixels = sum(b.size for b in spec.bands)
    if schema.band_encoding == "raw_bytes":
        body = sum(b.size * np.dtype(b.dtype).itemsize for b in spec.bands)
    elif schema.band_encoding == "int64_list":
        body = int(pixels * 2.1)  # varints of typical reflectances take 2 bytes, some 3
    else:
        body = pixels * 4
    return body + 1024


def records_per_shard(spec: DatasetSpec, schema: Schema, shard_size_mb: float) -> int:
    """The most records one shard holds for a target uncompressed shard size (``--shard_size_mb``).

    Args:
      spec: the dataset's bands (shapes, dtypes).
      schema: the feature schema (its ``band_encoding`` sets the bytes per pixel).
      shard_size_mb: target shard size in MB (10^6 bytes), before any GZIP compression.

    Returns:
      ``shard_size_mb * 1e6 // estimate_record_bytes(spec, schema)``, at least 1.
    """
    return max(1, int(shard_size_mb * 1e6 // estimate_record_bytes(spec, schema)))


def plan_shards(out_dir: str, splits: Mapping[str, Sequence], per_shard: int,
                compression: str | None) -> list[ShardTask]:
    """Cut each split into ``ceil(n / per_shard)`` shards of equal item counts, in item order.

    The first ``n % shards`` shards hold one item more: no short last shard, so workers finish
    together and readers interleave evenly. ``per_shard`` is the most a shard holds; an empty split
    still gets one (empty) shard. Deterministic: the same splits and ``per_shard`` give the same tasks
    whatever the worker count.

    Args:
      out_dir: the output folder the shard paths lie in.
      splits: split name -> its ordered items.
      per_shard: the most items per shard (``records_per_shard``).
      compression: ``"GZIP"`` or ``None`` (names the files ``.tfrecord.gz`` / ``.tfrecord``).

    Returns:
      One ``ShardTask`` per shard, split by split, in index order.
    """
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
    try:
        sha256, written, skipped, excluded, notes = _write_records(task, tmp, produce, encoder, stats,
                                                                   class_counts, compression, on_error)
    except BaseException:
        with contextlib.suppress(OSError):  # no empty or partial .incomplete left behind
            os.remove(tmp)
        raise
    os.replace(tmp, task.path)
    save_states(os.path.join(parts, task.name + ".stats.npz"), stats)
    side = {"file": task.name, "split": task.split, "index": task.index, "records": written,
            "bytes": os.path.getsize(task.path),
            "sha256": sha256,
            "listed": len(task.items), "skipped": skipped, "excluded": excluded, "class_counts": class_counts.tolist()}
    if notes:
        side["notes"] = notes
    write_json_atomic(os.path.join(parts, task.name + ".json"), side)
    return side


def _write_records(task, tmp, produce, encoder, stats, class_counts, compression, on_error):
    """The records of ``task`` into the file ``tmp``; returns (sha256 hex, written, skipped, excluded, notes)."""
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
    return writer.sha256.hexdigest(), written, skipped, excluded, notes


def _write_shard_star(args):
    return write_shard(*args)


# --- the driver -------------------------------------------------------------------------------

def finished_sidecar(task: ShardTask) -> dict | None:
    """The sidecar of a shard an earlier run finished, else None.

    Finished means the sidecar ``OUT/.parts/<shard>.json`` exists and the shard file has the size in
    bytes the sidecar records; such a shard is kept on resume (see ``keep_finished``).
    """
    side_path = os.path.join(os.path.dirname(task.path), PARTS, task.name + ".json")
    if not (os.path.exists(side_path) and os.path.exists(task.path)):
        return None
    with open(side_path) as f:
        side = json.load(f)
    if side.get("bytes") != os.path.getsize(task.path):
        return None
    return side


def keep_finished(side: Mapping, on_error: str) -> bool:
    """Whether a shard an earlier run finished (its sidecar ``side``) is kept by a run with ``on_error``.

    Always, except a shard with skipped items under "fail", which is redone (and then stops at its
    bad item, unless the input was fixed).
    """
    return on_error != "fail" or not side.get("skipped")


def plan_fingerprint(spec: DatasetSpec, schema: Schema, compression: str | None, tasks: Sequence[ShardTask],
                     flags: Mapping[str, Any] | None) -> dict:
    """What makes a preparation's output what it is; saved as ``OUT/.parts/plan.json``, compared by ``check_plan``.

    Returns:
      A JSON-able dict: dataset name and version, schema name and version, compression
      (``"NONE"`` for none), the flags but ``NOT_COMPARED_FLAGS``, and ``plan_sha256``: a SHA-256
      over every shard's file name and the ``repr`` of its items, in order.
    """
    h = hashlib.sha256()
    for t in tasks:
        h.update(f"{t.name}\n".encode())
        for it in t.items:
            h.update(repr(it).encode())
            h.update(b"\n")
    return {"dataset": spec.name, "dataset_version": spec.version, "schema": schema.name,
            "schema_version": schema.version, "compression": compression or "NONE",
            "flags": _compared_flags(flags), "plan_sha256": h.hexdigest()}


def _compared_flags(flags: Mapping | None) -> dict:
    return {k: v for k, v in (flags or {}).items() if k not in NOT_COMPARED_FLAGS}


def holds_output(out_dir: str) -> bool:
    """Whether the local folder ``out_dir`` holds anything an earlier run finished.

    That is a shard, a shard's sidecar, ``missing.csv`` or the manifest; a plan.json or
    ``.incomplete`` files alone are not output. False for a folder that does not exist.
    """
    if not os.path.isdir(out_dir):
        return False
    if any(n.endswith((".tfrecord", ".tfrecord.gz")) or n in (MANIFEST, MISSING) for n in os.listdir(out_dir)):
        return True
    parts = os.path.join(out_dir, PARTS)
    return os.path.isdir(parts) and any(n.endswith(".json") and n != "plan.json" for n in os.listdir(parts))


def check_plan(out_dir: str, plan: dict, overwrite: bool, finished: bool | None = None) -> bool:
    """Refuse an output folder holding a different preparation's finished output, then save ``plan``.

    Unless ``overwrite``, a plan.json that differs from ``plan`` (a ``plan_fingerprint``) in a folder
    that holds finished output stops the run; ``plan`` is then saved as ``OUT/.parts/plan.json``.

    The earlier output is discarded (shards, manifest, missing.csv, sidecars) with ``overwrite``,
    and when the earlier plan differs but its run finished nothing (``finished`` false; by default
    ``holds_output(out_dir)``): a run that failed before its first shard never blocks a rerun.
    Flags in ``NOT_COMPARED_FLAGS`` are not compared (also in a plan.json that still holds them).

    Returns:
      Whether earlier output was discarded (a Beam filesystem output removes its copy too).

    Raises:
      PrepError: naming what differs (the plan's keys and the ``--flags``) when the folder holds a
        different preparation's finished output and ``overwrite`` is false.
    """
    parts = os.path.join(out_dir, PARTS)
    plan_path = os.path.join(parts, "plan.json")
    discard = overwrite
    if os.path.exists(plan_path) and not overwrite:
        with open(plan_path) as f:
            old = json.load(f)
        if isinstance(old.get("flags"), dict):
            old["flags"] = _compared_flags(old["flags"])
        if old != plan:
            if finished is None:
                finished = holds_output(out_dir)
            if finished:
                diff = sorted(k for k in set(old) | set(plan) if old.get(k) != plan.get(k))
                if "flags" in diff:
                    fo, fn = old.get("flags", {}), plan.get("flags", {})
                    diff += [f"--{k}" for k in sorted(set(fo) | set(fn)) if fo.get(k) != fn.get(k)]
                raise PrepError(
                    f"{out_dir} holds output of a different preparation (differs in: {', '.join(diff)}); "
                    "choose another output folder or pass --overwrite")
            discard = True  # an earlier run of another plan that finished no shard: nothing to keep
    if discard and os.path.isdir(out_dir):
        for name in os.listdir(out_dir):
            if name.endswith((".tfrecord", ".tfrecord.gz")) or name in (MANIFEST, MISSING):
                os.remove(os.path.join(out_dir, name))
        if os.path.isdir(parts):
            for name in os.listdir(parts):
                os.remove(os.path.join(parts, name))
    os.makedirs(parts, exist_ok=True)
    write_json_atomic(plan_path, plan)
    return discard


def remove_incomplete(tasks: Sequence[ShardTask]) -> None:
    """Remove the temporary ``.incomplete`` files of ``tasks`` (local output).

    E.g. those of workers stopped when another shard failed; files already gone are ignored.
    """
    for t in tasks:
        with contextlib.suppress(OSError):
            os.remove(os.path.join(os.path.dirname(t.path), PARTS, t.name + ".incomplete"))


def missing_csv(missing: Sequence[Mapping]) -> str:
    """The text of ``OUT/missing.csv``: a ``split,key`` header, then one row per missing item.

    Rows are in plan order (deterministic); ``missing`` holds ``{"split", "key"}`` mappings.
    """
    return "split,key\n" + "".join(f"{m['split']},{m['key']}\n" for m in missing)


def write_missing(out_dir: str, missing: Sequence[Mapping]) -> None:
    """Write ``OUT/missing.csv`` (atomically) when items are missing, else remove a stale one."""
    path = os.path.join(out_dir, MISSING)
    if missing:
        with files.atomic_write(path, newline="\n") as f:
            f.write(missing_csv(missing))
    elif os.path.exists(path):
        os.remove(path)


def run_info(tasks: Sequence[ShardTask], kept: Iterable[str]) -> dict:
    """``Manifest.run`` for a run that kept the finished shards named ``kept`` and wrote the rest."""
    kept = set(kept)
    old = [t for t in tasks if t.name in kept]
    new = [t for t in tasks if t.name not in kept]
    return {"shards_kept": len(old), "items_kept": sum(len(t.items) for t in old),
            "shards_written": len(new), "items_written": sum(len(t.items) for t in new)}


def write_dataset(out_dir: str, spec: DatasetSpec, schema_name: str, splits: Mapping[str, Sequence],
                  produce: Callable[[Sequence], Iterable], records_per_shard: int, workers: int = 1,
                  compression: str | None = None, flags: Mapping | None = None,
                  excluded: Sequence[Mapping] | None = None, skipped: Sequence[Mapping] | None = None,
                  extra: Mapping | None = None,
                  on_error: str = "fail", overwrite: bool = False, progress: bool = True,
                  item_key: Callable[[Any], str] = str, missing: Sequence[Mapping] | None = None) -> Manifest:
    """Write every split as shards into ``out_dir`` and return (and save) the manifest.

    ``splits`` maps a split name to its ordered items (one record each); ``produce`` (a picklable
    module-level callable or functools.partial) gets one shard's items and yields, per item and in
    order, a ``Record``, a ``Skip`` (bad input) or an ``Exclude`` (left out by rule). ``excluded``
    and ``skipped`` list items the caller left out while planning (``{"split", "key", "reason"}``),
    ``missing`` the listed items absent from the input (``{"split", "key"}``; counted per split and
    written to ``OUT/missing.csv``). Every listed item ends up written, excluded, skipped or
    missing, and the manifest's counts reconcile.

    Shards an earlier run of the same plan finished are kept (``keep_finished``); the returned
    ``Manifest`` says how many in ``run`` (not saved). A failed run removes its ``.incomplete`` files.

    Raises:
      PrepError: a ``Skip`` (or a planning skip) under ``on_error="fail"``, or an output folder
        holding a different preparation's output (unless ``overwrite``).
    """
    if on_error not in ("fail", "skip"):
        raise ValueError(f"on_error must be 'fail' or 'skip', not {on_error!r}")
    compression = None if compression in (None, "", "NONE") else compression
    schema = spec.schema(schema_name)
    flags = dict(flags or {})
    excluded = list(excluded or [])
    skipped = list(skipped or [])
    missing = list(missing or [])
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

    done = {t.name: s for t in tasks if (s := finished_sidecar(t)) is not None and keep_finished(s, on_error)}
    run = run_info(tasks, done)
    todo = [t for t in tasks if t.name not in done]
    total = sum(len(t.items) for t in tasks)
    resumed = run["items_kept"]

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
    except BaseException:
        remove_incomplete(todo)  # workers stopped mid-shard leave theirs
        raise
    finally:
        if bar is not None:
            bar.close()

    manifest = assemble_manifest(out_dir, spec, schema, compression, tasks, done, flags, excluded, skipped,
                                  extra, missing)
    write_missing(out_dir, missing)
    write_json_atomic(manifest_path, manifest)
    manifest.run = run
    return manifest


def write_plan(out_dir: str, plan: PreparePlan, workers: int = 1, overwrite: bool = False,
               progress: bool = True) -> Manifest:
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
                         overwrite=overwrite, progress=progress, missing=plan.missing)


def start_method() -> str:
    """How worker processes start: "fork", or "spawn" once TensorFlow is loaded in this process.

    "fork" needs no re-import and starts in milliseconds, but TensorFlow's thread pools do not
    survive a fork.
    """
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
    return {**{c: 0 for c in COUNTS}, "shards": [], "class_counts": np.zeros(spec.num_classes, np.int64)}


def assemble_manifest(out_dir: str, spec: DatasetSpec, schema: Schema, compression: str | None,
                      tasks: Sequence[ShardTask], sidecars: Mapping[str, Mapping[str, Any]], flags: Mapping[str, Any],
                      pre_excluded: Sequence[Mapping], pre_skipped: Sequence[Mapping], extra: Mapping | None,
                      missing: Sequence[Mapping] = ()) -> Manifest:
    """The manifest of a finished run, from the shards' sidecars and statistics and what the plan left out.

    Per split: the counts (listed = written + excluded + skipped + missing), the shards (file,
    records, bytes, sha256), the class counts (per class name; multi-label patches count once per
    label) and, under ``statistics``, each band's merged statistics from ``OUT/.parts/<shard>.stats.npz``.

    Args:
      out_dir: the local folder holding ``.parts/`` (the shards' statistics are read from it).
      spec: the dataset (bands, classes, name, version, task).
      schema: the feature schema the shards were written with.
      compression: ``"GZIP"`` or ``None``.
      tasks: every shard of the plan.
      sidecars: shard file name -> its sidecar (as ``write_shard`` returns it), for every task.
      flags: the run's flags, recorded as given.
      pre_excluded: items the plan excluded by rule (``{"split", "key", "reason"}``).
      pre_skipped: items the plan skipped as bad input (``{"split", "key", "reason"}``).
      extra: dataset-specific manifest blocks added as they are (e.g. ``{"so2sat": {...}}``), or None.
      missing: listed items absent from the input (``{"split", "key"}``); when any, the manifest
        names ``missing.csv`` as ``missing_list``.

    Raises:
      KeyError: a task without a sidecar.
      OSError: a shard's statistics file that cannot be read.
    """
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
    for kind, items in (("excluded", pre_excluded), ("skipped", pre_skipped), ("missing", missing)):
        for e in items:
            s = splits.setdefault(e["split"], _empty_split(spec))
            s["listed"] += 1
            s[kind] += 1
    for s in splits.values():
        s["class_counts"] = {spec.class_names[i]: int(c) for i, c in enumerate(s["class_counts"])}
        assert s["listed"] == s["written"] + s["excluded"] + s["skipped"] + s["missing"]
    manifest = Manifest({
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
        "totals": {k: sum(s[k] for s in splits.values()) for k in COUNTS},
        "statistics": {split: {b: st.summary() for b, st in bs.items()} for split, bs in stats.items()},
        "skipped": skipped,
        "excluded": excluded,
        **({"missing_list": MISSING} if missing else {}),
        "flags": flags,
    })
    if notes:  # only datasets whose records carry notes have the key (other manifests are unchanged)
        manifest["notes"] = notes
    if extra:
        manifest.update(extra)
    return manifest
