"""Any dataset's preparation as an Apache Beam pipeline: ``python -m prep <dataset> ... --runner R``.

``write_plan`` runs a dataset's ``PreparePlan`` (``prep.datasets.contract``) on Beam: the same plan
as the local path (``prep.shards.write_plan``): the same split lists, exclusions and shard plan,
the same records (the plan's ``produce``), the same manifest (counts, class counts, exact band
statistics, every skipped and excluded item with its reason), byte for byte on the DirectRunner.
Runs on the DirectRunner (one machine; the Python runner is selected explicitly, so nothing is
downloaded; its worker processes start through ``prep.beam_worker``, and Beam's INFO lines, its
import-time notes about missing Google Cloud libraries and its tracebacks of bad input, which the
command reports as one line, are left out of the output), Dask (``DaskRunner``, below), Dataflow,
Flink or Spark; ``--beam_options`` passes pipeline options (``--project=... --region=...``). The
runner and its options are recorded in ``OUT/.parts/beam-run.json``, not in the manifest, which
stays the local path's.

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

Paths: the output may be local (for Flink/Spark: a filesystem every worker mounts) or any Beam
filesystem (``gs://...``, ``s3://...``, ``hdfs://...``): remote shards are written locally and
uploaded. So may the raw input, where the dataset's plan supports it (BigEarthNet's patch folders
are copied one at a time to the worker's temporary folder: ``prep.datasets.bigearthnet.remote``).
The driver keeps its books (plan, sidecars) in ``OUT/.parts`` as the local path does.

Dask (``DaskRunner``, needs ``pip install 'eorecords[dask]'``): Beam's DaskRunner translates a
pipeline into a ``dask.bag`` graph run on a ``dask.distributed`` cluster. Without
``--dask_client_address`` (or ``--dask_scheduler_file``) the preparation starts a local cluster of
``workers`` processes (one thread each) for the run and stops it afterwards; with it, the shards are
written by the workers of that cluster (a filesystem they all mount, or a Beam filesystem). The
DaskRunner translates only Create, ParDo, GroupByKey and Flatten, so the planned shards enter the
pipeline through ``beam.Create`` (not a text file) and only the ``planned`` writer runs on it; each
planned shard is one Dask partition (``--dask_npartitions`` overrides). Shards and manifest are the
local path's, byte for byte.
"""
from __future__ import annotations

import contextlib
import dataclasses
import glob
import json
import logging
import os
import re
import shlex
import shutil
import sys
import tempfile
import threading
from typing import Callable, Iterator, Mapping, Sequence

from prep import files, shards, tfrecord
from prep.beam_worker import WithoutPrepErrorTracebacks
from prep.datasets.contract import PreparePlan
from prep.datasets.spec import DatasetSpec


class _DropMessages(logging.Filter):
    """Drops log records whose message starts with one of ``prefixes``."""

    def __init__(self, *prefixes: str):
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefixes)


class _DropPrepErrorReports(logging.Filter):
    """Drops the runner's reports (message and traceback) of a worker's ``PrepError``.

    A PrepError is bad input, which the command reports itself as one line (``_run``); errors of
    any other kind keep their report.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], shards.PrepError):
            return False
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: let logging report it
            return True
        return "prep.errors.PrepError: " not in message and "shards.PrepError: " not in message


# Where Beam reports a failed bundle: in-process workers, and the job service relaying worker processes.
_ERROR_REPORTERS = ("apache_beam.runners.common", "apache_beam.runners.worker.sdk_worker",
                    "apache_beam.runners.portability.local_job_service")


@contextlib.contextmanager
def _logger_levels(levels: Mapping[str, int], filters: Mapping[str, logging.Filter] | None = None):
    """Loggers set to the given levels (and given the filters) for the duration of the block, then restored."""
    before = {name: logging.getLogger(name).level for name in levels}
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    for name, f in (filters or {}).items():
        logging.getLogger(name).addFilter(f)
    try:
        yield
    finally:
        for name, level in before.items():
            logging.getLogger(name).setLevel(level)
        for name, f in (filters or {}).items():
            logging.getLogger(name).removeFilter(f)


@contextlib.contextmanager
def _quiet_beam_import():
    """Leave Beam's import-time notes about missing Google Cloud libraries out of the output.

    Importing Apache Beam logs that the Google Cloud client libraries are missing (a warning on the
    root logger, "apitools not found, and bigquery client libraries are not available", and an INFO
    line about BigQuery storage): nothing a preparation uses.
    """
    root = logging.getLogger()
    drop = _DropMessages("apitools not found")
    placeholder = logging.NullHandler() if not root.handlers else None  # no basicConfig() as a side effect
    root.addFilter(drop)
    if placeholder:
        root.addHandler(placeholder)
    try:
        with _logger_levels({"apache_beam": logging.WARNING}):
            yield
    finally:
        root.removeFilter(drop)
        if placeholder:
            root.removeHandler(placeholder)


with _quiet_beam_import():
    import apache_beam as beam
    from apache_beam.io.filesystem import CompressionTypes
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
    from apache_beam.runners.dask.dask_runner import DaskOptions
    from apache_beam.runners.portability.fn_api_runner import fn_runner
    from apache_beam.transforms import environments

RUNNERS = ("DirectRunner", "DaskRunner", "DataflowRunner", "FlinkRunner", "SparkRunner")
SHARD_WRITERS = ("planned", "writetotfrecord")
TASKS = "beam-tasks.jsonl"
RUN_INFO = "beam-run.json"  # in OUT/.parts: the runner and its worker options of the last run
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
    (``--direct_running_mode=multi_processing``), or one in-process worker for ``workers=1``, and
    its worker processes log at WARNING and above only.

    Args:
      runner: the Beam runner's name (``--runner``), e.g. "DirectRunner".
      beam_options: further pipeline options, e.g. ``"--project=p --region=r"``.
      workers: DirectRunner worker processes (values below 1 count as 1).

    Raises:
      PrepError: ``beam_options`` sets ``--runner``.
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
    """Whether ``path`` names a Beam filesystem (``scheme://...``) rather than a local path."""
    return "://" in str(path)


def join(base: str, *parts: str) -> str:
    """``os.path.join`` for local paths, ``FileSystems.join`` for Beam filesystem paths."""
    return FileSystems.join(base, *parts) if is_remote(base) else os.path.join(base, *parts)


def _upload(local: str, dest: str) -> None:
    """Copy a local file to ``dest`` on any filesystem, under a temporary name then renamed."""
    tmp = dest + ".incomplete"
    with open(local, "rb") as src, FileSystems.create(tmp, compression_type=_RAW) as dst:
        shutil.copyfileobj(src, dst, 1 << 22)
    FileSystems.rename([tmp], [dest])


def download(src: str, local: str) -> None:
    """Copy ``src`` on any Beam filesystem to the local file ``local``."""
    with FileSystems.open(src, compression_type=_RAW) as f, open(local, "wb") as out:
        shutil.copyfileobj(f, out, 1 << 22)


def sizes(pattern: str) -> dict[str, int]:
    """Path -> size of the files matching a glob pattern (empty when none)."""
    try:
        (res,) = FileSystems.match([pattern])
    except Exception:  # BeamIOError when nothing matches on some filesystems
        return {}
    return {m.path: m.size_in_bytes for m in res.metadata_list}


# --- the worker side ---------------------------------------------------------------------------

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
                parts = join(out_dir, shards.PARTS)
                if not self.emit_records:
                    _upload(run.path, task.path)
                for suffix in (".stats.npz", ".json"):  # the sidecar last: it marks the shard finished
                    local = os.path.join(stage, shards.PARTS, task.name + suffix)
                    if is_remote(out_dir):
                        _upload(local, join(parts, task.name + suffix))
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
        return join(self.out, shards.PARTS, name) if name else join(self.out, shards.PARTS)

    def check_plan(self, plan: dict, overwrite: bool) -> None:
        if not self.remote:
            shards.check_plan(self.out, plan, overwrite)
            return
        os.makedirs(self.parts, exist_ok=True)
        remote_plan = self.remote_parts("plan.json")
        finished = None
        if FileSystems.exists(remote_plan):
            download(remote_plan, os.path.join(self.parts, "plan.json"))
            finished = self.holds_output()
        if shards.check_plan(self.local, plan, overwrite, finished=finished):  # same comparison and message
            old = [p for pat in ("*.tfrecord", "*.tfrecord.gz", shards.MANIFEST, shards.MISSING)
                   for p in sizes(join(self.out, pat))]
            old += list(sizes(self.remote_parts("*")))
            if old:
                FileSystems.delete(old)
        _upload(os.path.join(self.parts, "plan.json"), remote_plan)

    def holds_output(self) -> bool:
        """``shards.holds_output`` for a remote output folder."""
        if any(p.endswith((".tfrecord", ".tfrecord.gz")) for p in sizes(join(self.out, "*.tfrecord*"))):
            return True
        if sizes(join(self.out, shards.MANIFEST)) or sizes(join(self.out, shards.MISSING)):
            return True
        return any(not p.endswith("/plan.json") for p in sizes(self.remote_parts("*.json")))

    def remove(self, paths: list[str]) -> None:
        paths = [p for p in paths if FileSystems.exists(p)]
        if paths:
            FileSystems.delete(paths)

    def finished(self, tasks: Sequence[shards.ShardTask]) -> dict[str, dict]:
        """Sidecars of shards already complete (shard present with the recorded size)."""
        if not self.remote:
            return {t.name: s for t in tasks if (s := shards.finished_sidecar(t)) is not None}
        shard_sizes = sizes(join(self.out, "*.tfrecord*"))
        sides = sizes(self.remote_parts("*.json"))
        done = {}
        for t in tasks:
            side_path = self.remote_parts(t.name + ".json")
            if side_path in sides and t.path in shard_sizes:
                with FileSystems.open(side_path, compression_type=_RAW) as f:
                    side = json.loads(f.read())
                if side.get("bytes") == shard_sizes[t.path]:
                    done[t.name] = side
        return done

    def fetch(self, tasks: Sequence[shards.ShardTask]) -> dict[str, dict]:
        """Every task's sidecar (and, for a remote output, its statistics into the mirror)."""
        out = {}
        for t in tasks:
            local = os.path.join(self.parts, t.name + ".json")
            if self.remote:
                for suffix in (".json", ".stats.npz"):
                    download(self.remote_parts(t.name + suffix), os.path.join(self.parts, t.name + suffix))
            with open(local) as f:
                out[t.name] = json.load(f)
        return out

    def write_text(self, name: str, lines: Iterator[str]) -> str:
        path = self.remote_parts(name) if self.remote else os.path.join(self.parts, name)
        with FileSystems.create(path, mime_type="text/plain", compression_type=_RAW) as f:
            for line in lines:
                f.write(line.encode() + b"\n")
        return path

    def write_missing(self, missing: Sequence[Mapping]) -> None:
        """``OUT/missing.csv``, as ``shards.write_missing`` writes it locally."""
        shards.write_missing(self.local, missing)
        if self.remote:
            if missing:
                _upload(os.path.join(self.local, shards.MISSING), join(self.out, shards.MISSING))
            else:
                self.remove([join(self.out, shards.MISSING)])

    def write_manifest(self, manifest: dict) -> None:
        files.write_json_atomic(os.path.join(self.local, shards.MANIFEST), manifest)
        if self.remote:
            _upload(os.path.join(self.local, shards.MANIFEST), join(self.out, shards.MANIFEST))

    def close(self) -> None:
        if self.remote:
            shutil.rmtree(self.local, ignore_errors=True)


def describe_files(paths: Sequence[str]) -> list[dict]:
    """``{"file", "records", "bytes", "sha256"}`` of TFRecord files on any filesystem.

    ``file`` is the base name, ``bytes`` the size on disk, ``sha256`` the hex digest of the file's
    bytes; ``records`` is counted from the (decompressed, for ``.gz``) framing without CRC checks.

    Raises:
      CorruptRecordError: a file ends inside a record or its header.
    """
    out = []
    for path in paths:
        with FileSystems.open(path, compression_type=_RAW) as f:
            digest, size = files.sha256_stream(f)
        with FileSystems.open(path, compression_type=CompressionTypes.AUTO) as f:
            records = _count_records(f, path)
        out.append({"file": path.rsplit("/", 1)[-1], "records": records, "bytes": size, "sha256": digest})
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
                  progress: bool = False, run_info: Mapping | None = None,
                  missing: Sequence[Mapping] | None = None) -> shards.Manifest:
    """``prep.shards.write_dataset`` run as a Beam pipeline; returns (and saves) the manifest.

    The returned manifest carries ``run`` (shards kept and written) as the local writer gives it.
    The arguments are ``prep.shards.write_dataset``'s, with ``out_dir`` on any Beam filesystem,
    the pipeline ``options`` (``pipeline_options``; ``--shard_writer`` picks the writer, see the
    module doc) in place of ``workers``, and ``run_info`` (the runner and its worker options),
    saved as ``OUT/.parts/beam-run.json`` when given.

    Raises:
      ValueError: ``on_error`` is neither "fail" nor "skip".
      PrepError: a skipped item under ``on_error="fail"`` (in the plan or from a worker), an output
        folder holding a different preparation's output (unless ``overwrite``), a
        ``writetotfrecord`` sink that wrote another number of records than planned, or the
        DaskRunner without dask installed or with ``writetotfrecord``.
    """
    if on_error not in ("fail", "skip"):
        raise ValueError(f"on_error must be 'fail' or 'skip', not {on_error!r}")
    compression = None if compression in (None, "", "NONE") else compression
    schema = spec.schema(schema_name)
    _check_runner(options)
    writer = options.view_as(PrepOptions).shard_writer
    flags = dict(flags or {})
    if writer != "planned":
        flags["shard_writer"] = writer  # its shards differ from the planned ones: not interchangeable
    excluded, skipped, missing = list(excluded or []), list(skipped or []), list(missing or [])
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
        books.remove([join(out_dir, shards.MANIFEST)])  # rewritten at the end
        if writer == "planned":
            done = {k: s for k, s in books.finished(tasks).items() if shards.keep_finished(s, on_error)}
        else:  # no resume: the sink rewrites every shard
            done = {}
            books.remove([p for pat in ("*.tfrecord", "*.tfrecord.gz") for p in sizes(join(out_dir, pat))]
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
        except BaseException:
            if not books.remote:
                shards.remove_incomplete(todo)  # workers stopped mid-shard leave theirs
            raise
        finally:
            if poller is not None:
                poller[0].set()
                poller[1].join()
            if bar is not None:
                bar.close()
        sidecars = books.fetch(tasks)
        manifest = shards.assemble_manifest(books.local, spec, schema, compression, tasks, sidecars, flags,
                                            excluded, skipped, extra, missing)
        if writer != "planned":
            for split, s in manifest["splits"].items():
                files = sorted(p for p in sizes(join(out_dir, f"{split}-*-of-*.tfrecord*"))
                               if p.endswith((".tfrecord", ".tfrecord.gz")))
                s["shards"] = describe_files(files)
                if sum(f["records"] for f in s["shards"]) != s["written"]:
                    raise shards.PrepError(f"{out_dir}: split {split}: the sink wrote "
                                           f"{sum(f['records'] for f in s['shards'])} records, expected {s['written']}")
        if run_info:
            books.write_text(RUN_INFO, iter([json.dumps(dict(run_info))]))
        books.write_missing(missing)
        books.write_manifest(manifest)
        manifest.run = shards.run_info(tasks, done)
        return manifest
    finally:
        books.close()


class _FnApiRunner(fn_runner.FnApiRunner):
    """Beam's Python FnApiRunner whose worker processes start as ``python -m prep.beam_worker``.

    That is Beam's own harness without its start-up logging on stderr, in place of ``python -m
    apache_beam.runners.worker.sdk_worker_main`` (``direct_running_mode=multi_processing``).
    """

    _BEAM_WORKER = "-m apache_beam.runners.worker.sdk_worker_main"

    @property
    def _default_environment(self):
        return self._environment

    @_default_environment.setter
    def _default_environment(self, env):
        if isinstance(env, environments.SubprocessSDKEnvironment) and env.command_string.endswith(self._BEAM_WORKER):
            env = environments.SubprocessSDKEnvironment.from_command_string(
                f"{shlex.quote(sys.executable)} -m prep.beam_worker")
        self._environment = env


def _runner(options: PipelineOptions):
    """The DirectRunner's Python FnApiRunner or the DaskRunner, chosen explicitly; None for other runners.

    Beam's DirectRunner would first try to download and start its Prism runner (no network here,
    ~80 lines of fallback logs). Other runners: None (Beam picks the ``--runner``).
    """
    name = options.view_as(StandardOptions).runner
    if name == "DaskRunner":
        from apache_beam.runners.dask.dask_runner import DaskRunner

        return DaskRunner()
    if name not in ("DirectRunner", None):
        return None
    return _FnApiRunner()


def _check_runner(options: PipelineOptions) -> None:
    """PrepError for what the chosen runner cannot do: the DaskRunner without dask, or with ``writetotfrecord``.

    Beam's DaskRunner translates no file sink (``WriteToTFRecord`` needs one), so it runs the
    ``planned`` writer only.
    """
    if options.view_as(StandardOptions).runner != "DaskRunner":
        return
    try:
        import dask  # noqa: F401
        import distributed  # noqa: F401
    except ImportError as e:
        raise shards.PrepError(f"the DaskRunner needs dask and distributed ({e}): "
                               "pip install 'eorecords[dask]'") from None
    if options.view_as(PrepOptions).shard_writer != "planned":
        raise shards.PrepError("the DaskRunner runs --shard_writer=planned only (Beam's DaskRunner "
                               "translates no file sink such as WriteToTFRecord)")


@contextlib.contextmanager
def _dask_cluster(options: PipelineOptions, workers: int):
    """For the DaskRunner: a local ``dask.distributed`` cluster unless the options name one.

    Sets ``--dask_client_address`` to a ``LocalCluster`` of ``workers`` processes (one thread each,
    its dashboard off) started here and closed at the end of the block, unless the options give
    ``--dask_client_address`` or ``--dask_scheduler_file``. Yields what ``beam-run.json`` records
    of the cluster (no address); other runners: nothing is done, an empty dict.
    """
    if options.view_as(StandardOptions).runner != "DaskRunner":
        yield {}
        return
    dask = options.view_as(DaskOptions)
    if dask.address or dask.scheduler_file:
        try:
            yield {"dask_cluster": "given"}
        except OSError as e:  # distributed.Client's connection failure, raised through the pipeline run
            if "connect" not in str(e):
                raise
            given = f"--dask_client_address={dask.address}" if dask.address else \
                f"--dask_scheduler_file={dask.scheduler_file}"
            raise shards.PrepError(f"cannot reach the Dask scheduler ({str(e).splitlines()[0]})", path=given,
                                   hint="start it (`dask scheduler`, workers with `dask worker ADDRESS "
                                        "--preload prep.beam_worker`), or drop the option for a local "
                                        "cluster of --workers processes") from None
        return
    from distributed import LocalCluster

    n = max(1, workers)
    # no dashboard, its HTTP server (metrics) on a free port; the workers start through prep.beam_worker
    with LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                      scheduler_kwargs={"dashboard_address": "127.0.0.1:0"}, silence_logs=logging.ERROR,
                      preload=["prep.beam_worker"]) as cluster:
        dask.address = cluster.scheduler_address
        try:
            yield {"dask_cluster": f"local, {n} worker processes"}
        finally:
            dask.address = None


def _log_levels(runner: str) -> dict[str, int]:
    """Logger levels during a run: what each runner leaves out of the output.

    Any runner: Beam's notes that it reads our functions' string type hints as Any. DirectRunner:
    Beam's INFO lines (gRPC servers started, worker set-up), and the workers' INFO lines relayed by
    the local job service; their warnings and errors stay. DaskRunner: the INFO lines of Dask's
    scheduler and nannies (workers registered, connections opened and closed).
    """
    levels = {"apache_beam.typehints.native_type_compatibility": logging.WARNING}
    if runner == "DirectRunner":
        levels["apache_beam"] = logging.WARNING
    if runner == "DaskRunner":  # the scheduler of a local cluster runs in this process
        levels["distributed"] = logging.WARNING
    return levels


def _run(options, tasks_path, todo, splits, produce, spec, schema, compression, on_error, writer, out_dir):
    emit = writer == "writetotfrecord"
    dask = options.view_as(StandardOptions).runner == "DaskRunner"
    if dask:
        partitioning = options.view_as(DaskOptions)
        if not partitioning.npartitions and not partitioning.partition_size:
            partitioning.npartitions = len(todo)  # one planned shard per partition: every worker gets some
    fn = _ShardFn(produce, spec, schema, compression, on_error, emit)
    try:
        p = beam.Pipeline(runner=_runner(options), options=options)
        try:
            with p:  # runs the pipeline and waits for it at the end of the block
                if dask:  # the DaskRunner translates Create but no file source
                    source = p | "Plan" >> beam.Create([_task_to_json(t) for t in todo])
                else:
                    source = p | "ReadPlan" >> beam.io.ReadFromText(tasks_path)
                tasks = source | "ParseTask" >> beam.Map(_task_from_json) | "Spread" >> beam.Reshuffle()
                if not emit:
                    tasks | "WriteShards" >> beam.ParDo(fn)
                else:
                    names = sorted({t.split for t in todo})
                    records = tasks | "EncodeShards" >> beam.ParDo(fn).with_outputs(*names)
                    for split in names:
                        n = next(t.num_shards for t in todo if t.split == split)
                        records[split] | f"Write_{split}" >> beam.io.WriteToTFRecord(
                            join(out_dir, split),
                            file_name_suffix=".tfrecord.gz" if compression == "GZIP" else ".tfrecord",
                            num_shards=n, shard_name_template="-SSSSS-of-NNNNN",
                            compression_type=CompressionTypes.GZIP if compression == "GZIP" else _RAW)
        finally:
            client = getattr(getattr(p, "result", None), "client", None)  # the DaskRunner's, to its cluster
            if client is not None:
                client.close()
    except Exception as e:  # the runner wraps or annotates worker errors: surface the preparation's message
        msg = str(e)
        marker = "PrepError: "
        if isinstance(e, shards.PrepError) or marker in msg:
            first = msg[msg.rindex(marker) + len(marker):] if marker in msg else msg
            first = first.strip().splitlines()[0]
            raise shards.PrepError(re.sub(r" \[while running '[^']*'\]$", "", first)) from e
        raise


# --- a dataset's plan ----------------------------------------------------------------------------

def write_plan(out_dir: str, plan: PreparePlan, runner: str = "DirectRunner", beam_options: str = "",
               workers: int = 1, overwrite: bool = False, progress: bool = False) -> dict:
    """Write a dataset's ``PreparePlan`` as a Beam pipeline; returns (and saves) the manifest.

    Args:
      out_dir: output folder, local or on a Beam filesystem.
      plan: the dataset's plan (``Dataset.command_module().plan(...)``).
      runner: one of ``RUNNERS``.
      beam_options: further pipeline options as one shell-quoted string.
      workers: DirectRunner worker processes (unless ``beam_options`` sets them); DaskRunner: the
        processes of the local cluster started for the run (unless ``beam_options`` names a
        cluster with ``--dask_client_address`` or ``--dask_scheduler_file``).
      overwrite: discard the output of a different earlier preparation in ``out_dir``.
      progress: show a progress bar (local output only).

    Raises:
      PrepError: an unknown runner, bad input under ``on_error="fail"``, an output folder
        holding another preparation, or the DaskRunner without dask installed or with the
        ``writetotfrecord`` writer.
    """
    if runner not in RUNNERS:
        raise shards.PrepError(f"unknown runner {runner!r}; runners: {', '.join(RUNNERS)}")
    options = pipeline_options(runner, beam_options, workers)
    _check_runner(options)
    run_info = {"runner": runner, "shard_writer": options.view_as(PrepOptions).shard_writer}
    if runner == "DirectRunner":  # only these: other options may hold account or project names
        opts = options.get_all_options()
        run_info.update({k: opts[k] for k in ("direct_num_workers", "direct_running_mode")})
    drop = _DropPrepErrorReports()
    stderr = contextlib.redirect_stderr(WithoutPrepErrorTracebacks(sys.stderr)) if runner == "DirectRunner" \
        else contextlib.nullcontext()
    with _logger_levels(_log_levels(runner), {name: drop for name in _ERROR_REPORTERS}), stderr, \
            _dask_cluster(options, workers) as cluster:
        return write_dataset(out_dir, plan.spec, plan.schema, plan.items, plan.produce, plan.records_per_shard,
                             options, compression=plan.compression, flags=plan.flags, excluded=plan.excluded,
                             skipped=plan.skipped, extra=plan.extra, on_error=plan.on_error, overwrite=overwrite,
                             progress=progress, run_info={**run_info, **cluster}, missing=plan.missing)
