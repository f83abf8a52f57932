"""The command-line convention every eorecords command follows, and the preparation commands' helpers.

``run_command`` runs a command module (its ``define_flags()``, ``main(argv)`` and docstring) as an
absl app: ``--help`` shows the module's text and its own flags (also from the installed console
scripts), ``--flagfile`` and ``--helpfull`` work, a bad flag or a ``prep.errors.UsageError`` prints
``error: <problem> (see --help)`` and exits 2, and any ``prep.errors.EORecordsError`` prints
``error: <file>: <problem>`` and exits 1, with no traceback. Tracebacks are for bugs only.

``summary`` is the end-of-run table of a manifest; ``report`` prints a preparation command's
outcome and gives its exit status. absl takes one value per occurrence of a
multi-value flag (``--h5 a --h5 b``); the upstream scripts and our docs also accept several values
after one flag (``-n a.csv b.csv``).
``expand_nargs`` rewrites the second form into the first before absl parses the command line.
"""
from __future__ import annotations

import os
import sys
import types
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

from prep.errors import EORecordsError, UsageError

if TYPE_CHECKING:
    from prep.datasets.contract import Dataset, PreparePlan

MANIFEST = "manifest.json"  # prep.shards.MANIFEST (not imported: the runner stays light)


def _one_line(message: str) -> str:
    return str(message).split("\n", 1)[0] or "bad usage"


def _usage_exit(message: str, name: str) -> None:
    print(f"error: {_one_line(message)} ({name} --help)", file=sys.stderr)
    raise SystemExit(2)


def program(argv0: str) -> str:
    """How the user started the command, for messages.

    ``eorecords-train`` for a console script, ``python -m prep.verify`` for a module run with
    ``-m``, else ``python train.py`` (``argv0`` is ``sys.argv[0]``).
    """
    script = os.path.basename(argv0)
    if script.startswith("eorecords"):
        return script
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None and spec.name:
        return f"python -m {spec.name.removesuffix('.__main__')}"
    return f"python {script}"


def run_command(module: types.ModuleType | str, argv: Sequence[str] | None = None, *,
                nargs: Mapping[str, str] | None = None, prog: str | None = None) -> None:
    """Run a command module as an absl app under the project's convention (see the module doc).

    Args:
      module: the command's module (or its dotted name); it defines ``define_flags()``, which
        declares its absl flags, and ``main(argv) -> int | None``.
      argv: the command line, ``sys.argv`` by default (``argv[0]`` is the program).
      nargs: multi-value flags given as ``FLAG a b c``, spelling -> flag (see ``expand_nargs``).
      prog: the name shown in messages (default: ``program(argv[0])``).

    Raises:
      SystemExit: always; 0 on success, 1 for an EORecordsError, 2 for a usage error.
    """
    import importlib
    import logging

    from absl import app, flags

    if isinstance(module, str):
        module = importlib.import_module(module)
    argv = list(sys.argv if argv is None else argv)
    if nargs:
        argv = [argv[0]] + expand_nargs(argv[1:], nargs)
    prog = prog or program(argv[0])
    # rasterio logs each GDAL error of a failed read at INFO, which absl prints: the one error line
    # (InputError) says it already
    logging.getLogger("rasterio").setLevel(logging.WARNING)
    module.define_flags()
    # --help lists the key flags of the main module and its docstring: make both the command's,
    # also when it runs from a console script (whose __main__ is a stub).
    main_module = sys.modules.get("__main__")
    for flag in flags.FLAGS.get_key_flags_for_module(module.__name__):
        for name in {argv[0], sys.argv[0], getattr(main_module, "__name__", argv[0])}:
            flags.FLAGS.register_key_flag_for_module(name, flag)
    if main_module is not None and main_module is not module and module.__doc__:
        main_module.__doc__ = module.__doc__

    def parse(args: list[str]) -> list[str]:
        try:
            return flags.FLAGS(args)
        except flags.Error as e:
            _usage_exit(str(e), prog)

    def guarded(args: list[str]):
        try:
            return module.main(args)
        except (app.UsageError, UsageError) as e:
            _usage_exit(str(e), prog)
        except EORecordsError as e:
            print(f"error: {e}", file=sys.stderr)
            raise SystemExit(e.exit_code) from None

    app.run(guarded, argv=argv, flags_parser=parse)


def dataset_from_argv(argv: Sequence[str], doc: str) -> Dataset:
    """The registered dataset named by ``argv[1]``, for the commands that dispatch on a dataset name.

    ``python -m prep <dataset> ...`` and ``python -m prep.synthetic <dataset> ...``: with no name or
    a help flag, prints ``doc`` and the registered datasets and exits (0 for help, 2 without a name);
    an unknown name is one error line and exit 2.

    Returns:
      The ``prep.datasets.Dataset``.
    """
    from prep import datasets

    if len(argv) < 2 or argv[1] in ("-h", "--help", "help", "--helpfull"):
        stream = sys.stdout if len(argv) >= 2 else sys.stderr
        stream.write(doc.lstrip() + "\nDatasets:\n")
        known = datasets.all_datasets()
        width = max(len(ds.cli_name) for ds in known) + 2
        for ds in known:
            stream.write(f"  {ds.cli_name:<{width}}{ds.title}\n")
        raise SystemExit(0 if len(argv) >= 2 else 2)
    try:
        return datasets.dataset(argv[1])
    except KeyError as e:
        print(f"error: {e.args[0]} ({program(argv[0])} --help)", file=sys.stderr)
        raise SystemExit(2) from None


def required(*names: str) -> None:
    """Raise UsageError naming the first of the absl flags ``names`` that has no value."""
    from absl import flags

    for name in names:
        if flags.FLAGS[name].value in (None, "", []):
            raise UsageError(f"--{name} is required")


def refuse_nonempty(path: str, overwrite: bool, inputs: Sequence[str | os.PathLike | None] = ()) -> None:
    """For commands that write a whole folder: refuse a folder that already holds files, unless ``overwrite``.

    With ``overwrite`` everything in it is deleted first (the new content never mixes with the old),
    unless one of ``inputs`` lies inside it: deleting would destroy the command's own input.

    Args:
      path: the output folder.
      overwrite: delete what it holds.
      inputs: the command's input files or folders (None entries are ignored).

    Raises:
      UsageError: ``path`` holds files and ``overwrite`` is false, ``path`` is a file, or ``path``
        holds (or is inside) one of ``inputs``.
    """
    import shutil

    if os.path.exists(path) and not os.path.isdir(path):
        raise UsageError(f"{path}: exists and is not a folder")
    if os.path.isdir(path) and os.listdir(path):
        if not overwrite:
            raise UsageError(f"{path}: already holds files; pass --overwrite to delete them and write afresh")
        root = os.path.realpath(path)
        for given in inputs:
            if given and os.path.exists(given):
                real = os.path.realpath(given)
                if os.path.commonpath([root, real]) == root:
                    raise UsageError(f"{path}: holds the input {os.fspath(given)}, which --overwrite would delete; "
                                     "write into another folder")
        for name in os.listdir(path):  # the content, not the folder: it may be the current one
            entry = os.path.join(path, name)
            if os.path.isdir(entry) and not os.path.islink(entry):
                shutil.rmtree(entry)
            else:
                os.remove(entry)


def no_arguments(argv: Sequence[str]) -> None:
    """Raise UsageError if ``argv`` (absl's remaining arguments) holds more than the program."""
    if len(argv) > 1:
        raise UsageError(f"unexpected arguments: {' '.join(argv[1:])}")


# --- the preparation commands' shared flags and main -------------------------------------------

RUNNERS = ("local", "DirectRunner", "DaskRunner", "DataflowRunner", "FlinkRunner", "SparkRunner")


def define_prepare_flags(out_aliases: Sequence[str] = ()) -> None:
    """Declare the flags every preparation command shares (same names, same meaning).

    ``--out_dir`` (``-o``) is the output folder (``out_aliases`` are older names kept working, e.g.
    BigEarthNet's upstream ``--out_folder``); then shard size, compression, workers, ``--on_error``,
    ``--overwrite``, ``--progress``, ``--runner`` and ``--beam_options``.
    """
    import os as _os

    from absl import flags

    flags.DEFINE_string("out_dir", None, "Output folder for the shards and manifest.json (required).", short_name="o")
    for alias in out_aliases:
        flags.DEFINE_alias(alias, "out_dir")
    flags.DEFINE_float("shard_size_mb", 150.0, "Largest shard size in MB: each split is cut into as few shards "
                       "of equal record counts as keep under it (counts derive from an estimated record size).")
    flags.DEFINE_enum("compression", "NONE", ["NONE", "GZIP"], "TFRecord compression.")
    flags.DEFINE_integer("workers", _os.cpu_count() or 1, "Parallel worker processes (output is identical for "
                         "any count).", lower_bound=1)
    flags.DEFINE_enum("on_error", "fail", ["fail", "skip"], "On bad input: stop with its error ('fail'), or skip "
                      "the item and list it with the reason in the manifest and the summary ('skip').")
    flags.DEFINE_bool("overwrite", False, "Discard the output of a different earlier preparation in --out_dir.")
    flags.DEFINE_bool("progress", True, "Show a progress bar.")
    flags.DEFINE_enum("runner", "local", list(RUNNERS), "'local': this machine's worker processes. A Beam runner "
                      "name runs the same preparation as an Apache Beam pipeline (prep.beam); with the "
                      "DirectRunner and the DaskRunner (a local Dask cluster of --workers processes, or "
                      "--beam_options=--dask_client_address=HOST:8786) the shards and manifest are "
                      "byte-identical to 'local'.")
    flags.DEFINE_string("beam_options", "", "Beam pipeline options as one shell-quoted string, e.g. "
                        "--beam_options='--project=P --region=R --temp_location=gs://B/tmp'; "
                        "'--shard_writer=writetotfrecord' writes through beam.io.WriteToTFRecord (see prep/beam.py).")


def write_plan(plan: PreparePlan, out_dir: str, runner: str = "local", beam_options: str = "", workers: int = 1,
               overwrite: bool = False, progress: bool = False) -> dict:
    """Write a ``PreparePlan`` locally (``runner="local"``) or on Beam; returns the manifest.

    ``local`` goes to ``prep.shards.write_plan`` (worker processes); a Beam runner name (one of
    ``RUNNERS``) to ``prep.beam.write_plan``, imported only then. The DirectRunner writes the same
    bytes as ``local``.

    Args:
      plan: the dataset's plan (``Dataset.command_module().plan(...)``).
      out_dir: the output folder (local, or on a Beam filesystem for a Beam runner).
      runner: ``"local"`` or a Beam runner name.
      beam_options: further Beam pipeline options as one shell-quoted string (Beam only).
      workers: parallel worker processes (DirectRunner: unless ``beam_options`` sets them;
        DaskRunner: the local cluster's, unless ``beam_options`` names a cluster).
      overwrite: discard the output of a different earlier preparation in ``out_dir``.
      progress: show a progress bar.

    Returns:
      The manifest, also saved as ``OUT/manifest.json``.

    Raises:
      PrepError: bad input under ``on_error="fail"``, an output folder holding another
        preparation (unless ``overwrite``), a Beam filesystem path or raw archive with
        ``runner="local"``, or an unknown runner.
    """
    if runner == "local":
        from prep import shards

        return shards.write_plan(out_dir, plan, workers=workers, overwrite=overwrite, progress=progress)
    from prep import beam  # imported only when asked for: Apache Beam is slow to import

    return beam.write_plan(out_dir, plan, runner=runner, beam_options=beam_options, workers=workers,
                           overwrite=overwrite, progress=progress)


def prepare_main(argv: Sequence[str], plan_from_flags: Callable[[], object]) -> int:
    """The ``main`` of a preparation command: plan from the flags, write, print the summary.

    Raises:
      UsageError: for extra arguments, a missing ``--out_dir`` or ``--beam_options`` without a Beam
        ``--runner``.
      EORecordsError: for bad input (printed as one line by ``run_command``).
    """
    import time

    from absl import flags

    no_arguments(argv)
    required("out_dir")
    f = flags.FLAGS
    if f.beam_options and f.runner == "local":  # else silently ignored: the local path is no Beam pipeline
        raise UsageError(f"--beam_options={f.beam_options} needs a Beam --runner (e.g. --runner DirectRunner); "
                         "the local path (--runner local, the default) takes no Beam options")
    t0 = time.time()
    plan = plan_from_flags()
    manifest = write_plan(plan, f.out_dir, f.runner, f.beam_options, f.workers, f.overwrite, f.progress)
    return report(manifest, f.out_dir, time.time() - t0, plan.input_bytes)


def expand_nargs(argv: Sequence[str], flags: Mapping[str, str]) -> list[str]:
    """Rewrite ``FLAG a b c`` into ``NAME a NAME b NAME c`` for every spelling FLAG in ``flags``.

    ``flags`` maps each spelling (``-n``, ``--splits``, ...) to the flag it stands for
    (``--splits``). The values are the arguments after FLAG up to the next one starting with
    ``-``; a FLAG followed by none is left as it is (absl then reports the missing value).
    Everything else passes through unchanged.
    """
    out, i = [], 0
    while i < len(argv):
        a = argv[i]
        i += 1
        if a not in flags:
            out.append(a)
            continue
        vals = []
        while i < len(argv) and not argv[i].startswith("-"):
            vals.append(argv[i])
            i += 1
        if not vals:
            out.append(a)
        for v in vals:
            out += [flags[a], v]
    return out


def summary(manifest: dict, seconds: float | None = None, input_bytes: int | None = None,
            max_listed: int = 50) -> str:
    """The end-of-run table of a manifest, as text.

    Counts per split (listed, written, excluded, skipped, and missing when any item was missing
    from the input), the reasons for exclusions, every skipped item (up to ``max_listed``), where
    the missing items are listed, and with ``seconds`` the rate. When the manifest comes from a run
    (``prep.shards.Manifest.run``) the rate counts only the shards written by that run, and the
    shards kept from an earlier run are said: a rerun that kept everything reports no rate.
    ``input_bytes`` (the raw input of all items) adds MB/s of input, in proportion to the items
    written.
    """
    t = manifest["totals"]
    width = max([10] + [len(n) + 2 for n in manifest["splits"]])
    cols = ("listed", "written", "excluded", "skipped") + (("missing",) if t.get("missing") else ())
    rows = [f"{'split':<{width}}" + "".join(f"{c:>10}" for c in cols) + f"{'shards':>8}"]
    for name, s in manifest["splits"].items():
        rows.append(f"{name:<{width}}" + "".join(f"{s.get(c, 0):>10}" for c in cols) + f"{len(s['shards']):>8}")
    rows.append(f"{'total':<{width}}" + "".join(f"{t.get(c, 0):>10}" for c in cols))
    reasons: dict[str, int] = {}
    for e in manifest["excluded"]:
        reasons[e["reason"]] = reasons.get(e["reason"], 0) + 1
    for r, n in sorted(reasons.items()):
        rows.append(f"excluded {n:>7}: {r}")
    for s in manifest["skipped"][:max_listed]:
        rows.append(f"skipped  [{s['split']}] {s['key']}: {s['reason']}")
    if len(manifest["skipped"]) > max_listed:
        rows.append(f"... and {len(manifest['skipped']) - max_listed} more skipped (see manifest.json)")
    if t.get("missing"):
        rows.append(f"missing  {t['missing']:>7}: not found in the input (see "
                    f"{manifest.get('missing_list', 'missing.csv')} beside manifest.json)")
    if seconds:
        rows.append(_rate_line(manifest, seconds, input_bytes))
    return "\n".join(rows)


def _rate_line(manifest: dict, seconds: float, input_bytes: int | None) -> str:
    run = getattr(manifest, "run", None)
    dt = max(seconds, 1e-9)
    if run is None:  # a manifest read back from its file: the whole preparation
        n, share, line = manifest["totals"]["listed"], 1.0, ""
    else:
        n = run["items_written"]
        everything = run["items_written"] + run["items_kept"]
        share = n / everything if everything else 0.0
        line = ""
        if run["shards_kept"]:
            if not run["shards_written"]:
                return (f"kept all {run['shards_kept']} shards ({run['items_kept']} patches) finished by an "
                        f"earlier run: nothing left to write ({seconds:.1f} s)")
            kept = run["shards_kept"]
            line = f"kept {kept} shard{'' if kept == 1 else 's'} ({run['items_kept']} patches) finished by an earlier run; "
        written = run["shards_written"]
        line += f"wrote {written} shard{'' if written == 1 else 's'}: "
        # items skipped on bad input are in the plan but not in the shards: the patches written are
        # the rest (the rate stays that of the patches read); a resumed run's skips may lie in kept shards
        skipped = 0 if run["shards_kept"] else manifest["totals"].get("skipped", 0)
        if skipped:
            line += f"{n - skipped} patches ({skipped} skipped) in {seconds:.1f} s ({n / dt:.0f} patches/s read"
            return line + (f", {input_bytes * share / 1e6 / dt:.0f} MB/s of input)" if input_bytes and share else ")")
    line += f"{n} patches in {seconds:.1f} s ({n / dt:.0f} patches/s"
    if input_bytes and share:
        line += f", {input_bytes * share / 1e6 / dt:.0f} MB/s of input"
    return line + ")"


def report(manifest: dict, out_dir: str, seconds: float, input_bytes: int | None = None) -> int:
    """Print the summary table and where the manifest is; returns the exit status 0."""
    print(summary(manifest, seconds, input_bytes))
    print(f"manifest: {os.path.join(out_dir, MANIFEST)}")
    return 0
