"""BigEarthNet-S2 preparation as an Apache Beam pipeline: ``python -m prep.bigearthnet ... --runner R``.

The same preparation as the local path (``prep.bigearthnet.prepare``): the same split lists,
exclusions and shard plan, the same records (``raw_bigearthnet.produce`` -> ``record_values`` ->
``encode_example``), the same manifest (counts, class counts, exact band statistics, every
skipped and excluded patch with its reason). Runs on the DirectRunner (one machine), Dataflow,
Flink or Spark; ``--beam_options`` passes pipeline options (``--project=... --region=...``).

Two shard writers, chosen with the pipeline option ``--shard_writer``:

``planned`` (default)
    Each element of the pipeline is one planned shard: the patch names of shard ``i`` of a split,
    exactly as the local path plans it. A worker reads those patches, encodes them and writes
    the shard with the project's writer (``prep.shards``), then its sidecar (counts, statistics).
    Shards and manifest are byte-identical to the local path's, finished shards are kept when a
    run is repeated (resume), and no pixel goes through a shuffle: only patch names and small
    summaries move between stages, so a worker holds one patch and one shard's statistics
    (about 7 MB) whatever the archive size.
``writetotfrecord``
    The records go through ``beam.io.WriteToTFRecord`` with the planned number of shards per
    split (same names: ``<split>-00000-of-000NN.tfrecord``). Beam deals records to shards after a
    GroupByKey, so the split's set of records is the same (the same bytes, as a multiset) but
    which shard holds a record, and the order within a shard, differ from run to run and from
    the local path. That GroupByKey moves every record through the runner's shuffle; the
    DirectRunner keeps it all in memory (see bench/prep_beam.py), which is how Beam preparation
    of BigEarthNet runs out of memory on one machine. Statistics and counts are computed per
    planned shard as in ``planned``; the manifest lists the files the sink wrote.

Paths: the raw archive and the output may be local (for Flink/Spark: a filesystem every worker
mounts) or any Beam filesystem (``gs://...``, ``s3://...``, ``hdfs://...``): remote patch folders
are copied one at a time to the worker's temporary folder to be read, remote shards are written
locally and uploaded. The driver keeps its books (plan, sidecars) in ``OUT/.parts`` as the local
path does.
"""
from __future__ import annotations

import dataclasses
import functools
import glob
import json
import logging
import os
import re
import shlex
import shutil
import tempfile
import threading
from typing import Callable, Iterator, Mapping, Sequence

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from prep import bigearthnet as cli
from prep import raw_bigearthnet as raw
from prep import shards, tfrecord
from prep.datasets import bigearthnet as ben
from prep.datasets.spec import DatasetSpec

RUNNERS = ("DirectRunner", "DataflowRunner", "FlinkRunner", "SparkRunner")
SHARD_WRITERS = ("planned", "writetotfrecord")
TASKS = "beam-tasks.jsonl"
_RAW = CompressionTypes.UNCOMPRESSED


class PrepOptions(PipelineOptions):
    """Pipeline options of the preparation (pass them inside ``--beam_options``)."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument(
            "--shard_writer", choices=SHARD_WRITERS, default="planned",
            help="'planned': each worker writes whole planned shards (byte-identical to the local path, "
                 "resumable, no shuffle of pixels); 'writetotfrecord': records go through "
                 "beam.io.WriteToTFRecord (same records, Beam chooses their shard).")


def pipeline_options(runner: str, beam_options: str = "", workers: int = 1) -> PipelineOptions:
    """``--beam_options`` (a shell-quoted string) + the runner; sensible DirectRunner defaults.

    Unless the string sets them, the DirectRunner runs ``workers`` worker processes
    (``--direct_running_mode=multi_processing``), or one in-process worker for ``workers=1``.
    """
    args = shlex.split(beam_options or "")
    if any(a == "--runner" or a.startswith("--runner=") for a in args):
        raise shards.PrepError("give the runner with --runner, not inside --beam_options")
    args = [f"--runner={runner}"] + args
    if runner == "DirectRunner":
        given = {a.split("=")[0] for a in args}
        if "--direct_num_workers" not in given:
            args.append(f"--direct_num_workers={max(1, workers)}")
        if "--direct_running_mode" not in given:
            args.append("--direct_running_mode=" + ("multi_processing" if workers > 1 else "in_memory"))
        if "--default_sdk_harness_log_level" not in given:
            args.append("--default_sdk_harness_log_level=WARNING")  # worker processes: no per-bundle INFO
    return PipelineOptions(args)


# --- paths on any Beam filesystem --------------------------------------------------------------

def is_remote(path: str) -> bool:
    return "://" in str(path)


def _join(base: str, *parts: str) -> str:
    return FileSystems.join(base, *parts) if is_remote(base) else os.path.join(base, *parts)


def _upload(local: str, dest: str) -> None:
    """Copy a local file to ``dest`` on any filesystem, under a temporary name then renamed."""
    tmp = dest + ".incomplete"
    with open(local, "rb") as src, FileSystems.create(tmp, compression_type=_RAW) as dst:
        shutil.copyfileobj(src, dst, 1 << 22)
    FileSystems.rename([tmp], [dest])


def _download(src: str, local: str) -> None:
    with FileSystems.open(src, compression_type=_RAW) as f, open(local, "wb") as out:
        shutil.copyfileobj(f, out, 1 << 22)


def _sizes(pattern: str) -> dict[str, int]:
    """Path -> size of the files matching a glob pattern (empty when none)."""
    try:
        (res,) = FileSystems.match([pattern])
    except Exception:  # BeamIOError when nothing matches on some filesystems
        return {}
    return {m.path: m.size_in_bytes for m in res.metadata_list}


# --- the worker side ---------------------------------------------------------------------------

def produce_remote(items: Sequence[str], root: str, schema_name: str, keep_excluded: bool = False) -> Iterator:
    """``raw_bigearthnet.produce`` for patch folders on a Beam filesystem: one folder at a time."""
    for name in items:
        tmp = tempfile.mkdtemp(prefix="ben_patch_")
        try:
            os.mkdir(os.path.join(tmp, name))
            for path in _sizes(_join(root, name, "*")):
                _download(path, os.path.join(tmp, name, path.rsplit("/", 1)[-1]))
            for result in raw.produce([name], tmp, schema_name, keep_excluded=keep_excluded):
                if isinstance(result, (shards.Skip, shards.Exclude)):
                    result = dataclasses.replace(result, reason=result.reason.replace(tmp, root))
                yield result
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def _task_to_json(task: shards.ShardTask) -> str:
    return json.dumps({"split": task.split, "index": task.index, "num_shards": task.num_shards,
                       "path": task.path, "items": list(task.items)})


def _task_from_json(line: str) -> shards.ShardTask:
    d = json.loads(line)
    return shards.ShardTask(d["split"], d["index"], d["num_shards"], tuple(d["items"]), d["path"])


class _ShardFn(beam.DoFn):
    """One planned shard -> its shard file (``planned``) or its records (``writetotfrecord``).

    Either way the shard's sidecar and statistics land in ``OUT/.parts`` as in the local path.
    """

    def __init__(self, produce, spec, schema, compression, on_error, emit_records: bool):
        self.produce, self.spec, self.schema = produce, spec, schema
        self.compression, self.on_error, self.emit_records = compression, on_error, emit_records
        self.written = beam.metrics.Metrics.counter("eorecords", "patches_written")
        self.skipped = beam.metrics.Metrics.counter("eorecords", "patches_skipped")
        self.excluded = beam.metrics.Metrics.counter("eorecords", "patches_excluded")

    def process(self, task: shards.ShardTask):
        out_dir = task.path.rsplit("/", 1)[0] if is_remote(task.path) else os.path.dirname(task.path)
        stage = None
        if self.emit_records or is_remote(out_dir):
            stage = tempfile.mkdtemp(prefix="ben_shard_")
            os.mkdir(os.path.join(stage, shards.PARTS))
            run = dataclasses.replace(task, path=os.path.join(stage, task.name))
        else:
            run = task
        try:
            side = shards.write_shard(run, self.produce, self.spec, self.schema, self.compression, self.on_error)
            self.written.inc(side["records"])
            self.skipped.inc(len(side["skipped"]))
            self.excluded.inc(len(side["excluded"]))
            if self.emit_records:
                for record in tfrecord.read_records(run.path, self.compression or "NONE"):
                    yield beam.pvalue.TaggedOutput(task.split, record)
            if stage is not None:
                parts = _join(out_dir, shards.PARTS)
                if not self.emit_records:
                    _upload(run.path, task.path)
                for suffix in (".stats.npz", ".json"):  # the sidecar last: it marks the shard finished
                    local = os.path.join(stage, shards.PARTS, task.name + suffix)
                    if is_remote(out_dir):
                        _upload(local, _join(parts, task.name + suffix))
                    else:
                        os.replace(local, os.path.join(parts, task.name + suffix))
        finally:
            if stage is not None:
                shutil.rmtree(stage, ignore_errors=True)


# --- the driver ---------------------------------------------------------------------------------

class _Books:
    """The driver's view of ``OUT/.parts``: the folder itself, or a local mirror of a remote one."""

    def __init__(self, out_dir: str):
        self.out = out_dir
        self.remote = is_remote(out_dir)
        self.local = tempfile.mkdtemp(prefix="ben_books_") if self.remote else out_dir
        self.parts = os.path.join(self.local, shards.PARTS)

    def remote_parts(self, name: str = "") -> str:
        return _join(self.out, shards.PARTS, name) if name else _join(self.out, shards.PARTS)

    def check_plan(self, plan: dict, overwrite: bool) -> None:
        if not self.remote:
            shards.check_plan(self.out, plan, overwrite)
            return
        os.makedirs(self.parts, exist_ok=True)
        remote_plan = self.remote_parts("plan.json")
        if FileSystems.exists(remote_plan):
            _download(remote_plan, os.path.join(self.parts, "plan.json"))
        shards.check_plan(self.local, plan, overwrite)  # same comparison and message
        if overwrite:
            old = [p for pat in ("*.tfrecord", "*.tfrecord.gz", shards.MANIFEST) for p in _sizes(_join(self.out, pat))]
            old += list(_sizes(self.remote_parts("*")))
            if old:
                FileSystems.delete(old)
        _upload(os.path.join(self.parts, "plan.json"), remote_plan)

    def remove(self, paths: list[str]) -> None:
        paths = [p for p in paths if FileSystems.exists(p)]
        if paths:
            FileSystems.delete(paths)

    def finished(self, tasks: Sequence[shards.ShardTask]) -> dict[str, dict]:
        """Sidecars of shards already complete (shard present with the recorded size)."""
        if not self.remote:
            return {t.name: s for t in tasks if (s := shards.finished_sidecar(t)) is not None}
        sizes = _sizes(_join(self.out, "*.tfrecord*"))
        sides = _sizes(self.remote_parts("*.json"))
        done = {}
        for t in tasks:
            side_path = self.remote_parts(t.name + ".json")
            if side_path in sides and t.path in sizes:
                with FileSystems.open(side_path, compression_type=_RAW) as f:
                    side = json.loads(f.read())
                if side.get("bytes") == sizes[t.path]:
                    done[t.name] = side
        return done

    def fetch(self, tasks: Sequence[shards.ShardTask]) -> dict[str, dict]:
        """Every task's sidecar (and, for a remote output, its statistics into the mirror)."""
        out = {}
        for t in tasks:
            local = os.path.join(self.parts, t.name + ".json")
            if self.remote:
                for suffix in (".json", ".stats.npz"):
                    _download(self.remote_parts(t.name + suffix), os.path.join(self.parts, t.name + suffix))
            with open(local) as f:
                out[t.name] = json.load(f)
        return out

    def write_text(self, name: str, lines: Iterator[str]) -> str:
        path = self.remote_parts(name) if self.remote else os.path.join(self.parts, name)
        with FileSystems.create(path, mime_type="text/plain", compression_type=_RAW) as f:
            for line in lines:
                f.write(line.encode() + b"\n")
        return path

    def write_manifest(self, manifest: dict) -> None:
        shards.write_json_atomic(os.path.join(self.local, shards.MANIFEST), manifest)
        if self.remote:
            _upload(os.path.join(self.local, shards.MANIFEST), _join(self.out, shards.MANIFEST))

    def close(self) -> None:
        if self.remote:
            shutil.rmtree(self.local, ignore_errors=True)


def describe_files(paths: Sequence[str]) -> list[dict]:
    """``{"file", "records", "bytes", "sha256"}`` of TFRecord files on any filesystem."""
    import hashlib

    out = []
    for path in paths:
        h, size = hashlib.sha256(), 0
        with FileSystems.open(path, compression_type=_RAW) as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
                size += len(block)
        with FileSystems.open(path, compression_type=CompressionTypes.AUTO) as f:
            records = _count_records(f, path)
        out.append({"file": path.rsplit("/", 1)[-1], "records": records, "bytes": size, "sha256": h.hexdigest()})
    return out


def _count_records(f, path: str) -> int:
    n = 0
    while True:
        header = f.read(12)
        if not header:
            return n
        if len(header) < 12:
            raise tfrecord.CorruptRecordError(f"{path}: truncated record header after {n} records")
        length = int.from_bytes(header[:8], "little")
        skipped = len(f.read(length + 4))
        if skipped < length + 4:
            raise tfrecord.CorruptRecordError(f"{path}: truncated record {n}")
        n += 1


def _progress(books: _Books, total: int, initial: int, enabled: bool):
    """A progress bar fed by the sidecars appearing in OUT/.parts (local output only)."""
    if not enabled or books.remote:
        return None, None
    from tqdm import tqdm

    bar = tqdm(total=total, initial=initial, unit="patch", desc="preparing (beam)", dynamic_ncols=True,
               mininterval=0.5)
    stop = threading.Event()
    before = set(glob.glob(os.path.join(books.parts, "*.json")))

    def poll():
        seen = set(before)
        while not stop.wait(1.0):
            for p in set(glob.glob(os.path.join(books.parts, "*.json"))) - seen:
                seen.add(p)
                try:
                    with open(p) as f:
                        bar.update(json.load(f).get("listed", 0))
                except (OSError, ValueError):
                    seen.discard(p)
    t = threading.Thread(target=poll, daemon=True)
    t.start()
    return bar, (stop, t)


def write_dataset(out_dir: str, spec: DatasetSpec, schema_name: str, splits: Mapping[str, Sequence],
                  produce: Callable, records_per_shard: int, options: PipelineOptions,
                  compression: str | None = None, flags: Mapping | None = None,
                  excluded: Sequence[Mapping] | None = None, skipped: Sequence[Mapping] | None = None,
                  extra: Mapping | None = None, on_error: str = "fail", overwrite: bool = False,
                  progress: bool = False) -> dict:
    """``prep.shards.write_dataset`` run as a Beam pipeline; returns (and saves) the manifest."""
    if on_error not in ("fail", "skip"):
        raise ValueError(f"on_error must be 'fail' or 'skip', not {on_error!r}")
    compression = None if compression in (None, "", "NONE") else compression
    schema = spec.schema(schema_name)
    writer = options.view_as(PrepOptions).shard_writer
    flags = dict(flags or {})
    if writer != "planned":
        flags["shard_writer"] = writer  # its shards differ from the planned ones: not interchangeable
    excluded, skipped = list(excluded or []), list(skipped or [])
    if skipped and on_error == "fail":
        first = skipped[0]
        more = f" (and {len(skipped) - 1} more)" if len(skipped) > 1 else ""
        raise shards.PrepError(f"{first['key']}: {first['reason']}{more}")
    if not is_remote(out_dir):
        os.makedirs(out_dir, exist_ok=True)
    tasks = shards.plan_shards(out_dir, splits, records_per_shard, compression)
    books = _Books(out_dir)
    try:
        books.check_plan(shards.plan_fingerprint(spec, schema, compression, tasks, flags), overwrite)
        books.remove([_join(out_dir, shards.MANIFEST)])  # rewritten at the end
        if writer == "planned":
            done = books.finished(tasks)
        else:  # no resume: the sink rewrites every shard
            done = {}
            books.remove([p for pat in ("*.tfrecord", "*.tfrecord.gz") for p in _sizes(_join(out_dir, pat))]
                         + [books.remote_parts(t.name + s) if books.remote else os.path.join(books.parts, t.name + s)
                            for t in tasks for s in (".json", ".stats.npz")])
        todo = [t for t in tasks if t.name not in done]
        tasks_path = books.write_text(TASKS, (_task_to_json(t) for t in todo))
        total = sum(len(t.items) for t in tasks)
        bar, poller = _progress(books, total, total - sum(len(t.items) for t in todo), progress)
        try:
            if todo:
                _run(options, tasks_path, todo, splits, produce, spec, schema, compression, on_error, writer,
                     out_dir)
        finally:
            if poller is not None:
                poller[0].set()
                poller[1].join()
            if bar is not None:
                bar.close()
        sidecars = books.fetch(tasks)
        manifest = shards.assemble_manifest(books.local, spec, schema, compression, tasks, sidecars, flags,
                                            excluded, skipped, extra)
        if writer != "planned":
            for split, s in manifest["splits"].items():
                files = sorted(p for p in _sizes(_join(out_dir, f"{split}-*-of-*.tfrecord*"))
                               if p.endswith((".tfrecord", ".tfrecord.gz")))
                s["shards"] = describe_files(files)
                if sum(f["records"] for f in s["shards"]) != s["written"]:
                    raise shards.PrepError(f"{out_dir}: split {split}: the sink wrote "
                                           f"{sum(f['records'] for f in s['shards'])} records, expected {s['written']}")
        books.write_manifest(manifest)
        return manifest
    finally:
        books.close()


def _run(options, tasks_path, todo, splits, produce, spec, schema, compression, on_error, writer, out_dir):
    emit = writer == "writetotfrecord"
    fn = _ShardFn(produce, spec, schema, compression, on_error, emit)
    try:
        with beam.Pipeline(options=options) as p:
            tasks = (p | "ReadPlan" >> beam.io.ReadFromText(tasks_path)
                     | "ParseTask" >> beam.Map(_task_from_json)
                     | "Spread" >> beam.Reshuffle())
            if not emit:
                tasks | "WriteShards" >> beam.ParDo(fn)
                return
            names = sorted({t.split for t in todo})
            records = tasks | "EncodeShards" >> beam.ParDo(fn).with_outputs(*names)
            for split in names:
                n = next(t.num_shards for t in todo if t.split == split)
                records[split] | f"Write_{split}" >> beam.io.WriteToTFRecord(
                    _join(out_dir, split), file_name_suffix=".tfrecord.gz" if compression == "GZIP" else ".tfrecord",
                    num_shards=n, shard_name_template="-SSSSS-of-NNNNN",
                    compression_type=CompressionTypes.GZIP if compression == "GZIP" else _RAW)
    except Exception as e:  # the runner wraps or annotates worker errors: surface the preparation's message
        msg = str(e)
        marker = "PrepError: "
        if isinstance(e, shards.PrepError) or marker in msg:
            first = msg[msg.rindex(marker) + len(marker):] if marker in msg else msg
            first = first.strip().splitlines()[0]
            raise shards.PrepError(re.sub(r" \[while running '[^']*'\]$", "", first)) from e
        raise


# --- BigEarthNet ----------------------------------------------------------------------------------

def prepare(root: str, out: str, split_paths: list[str] | None = None, schema: str = "compact",
            shard_size_mb: float = 150.0, compression: str = "NONE", workers: int = 1,
            on_error: str = "fail", keep_excluded: bool = False, update_json: bool = False,
            overwrite: bool = False, progress: bool = False, exclusion_lists: list[str] | None = None,
            runner: str = "DirectRunner", beam_options: str = "") -> dict:
    """``prep.bigearthnet.prepare`` on Beam (same arguments, plus the runner and its options)."""
    if runner not in RUNNERS:
        raise shards.PrepError(f"unknown runner {runner!r}; runners: {', '.join(RUNNERS)}")
    remote_root = is_remote(root)
    if not remote_root and not os.path.isdir(root):
        raise shards.PrepError(f"root folder {root}: not a folder")
    if remote_root and update_json:
        raise shards.PrepError("--update_json rewrites the patch JSON files in place: it needs a local root folder")
    options = pipeline_options(runner, beam_options, workers)
    if runner == "DirectRunner":  # the local job service relays every worker's INFO lines
        for name in ("apache_beam.runners.portability.local_job_service", "apache_beam.runners.worker"):
            logging.getLogger(name).setLevel(logging.WARNING)
    p = cli.plan(split_paths, schema, shard_size_mb, compression, on_error, keep_excluded, update_json,
                 exclusion_lists)
    spec = ben.SPEC
    if remote_root:
        produce = functools.partial(produce_remote, root=root.rstrip("/"), schema_name=schema,
                                    keep_excluded=keep_excluded)
    else:
        produce = functools.partial(raw.produce, root=os.path.abspath(root), schema_name=schema,
                                    keep_excluded=keep_excluded, write_json=update_json)
    extra = {"beam": {"runner": runner, "shard_writer": options.view_as(PrepOptions).shard_writer}}
    if runner == "DirectRunner":  # only these: other options may hold account or project names
        opts = options.get_all_options()
        extra["beam"].update({k: opts[k] for k in ("direct_num_workers", "direct_running_mode")})
    return write_dataset(out, spec, schema, p.items, produce, p.records_per_shard, options, compression=compression,
                         flags=p.flags, excluded=p.excluded, skipped=p.skipped, extra=extra, on_error=on_error,
                         overwrite=overwrite, progress=progress)
