"""Command line: ``python -m pretrained list | fetch NAME | convert NAME`` (also ``eorecords-pretrained``).

- ``list``: the registry (one line per BigEarthNet model, one summary line for the 497 GHS-S2Net
  zones unless ``--all``) with each name's aliases (``K-BranchCNN``, ``MODEL_CNN_<zone>``: any of
  them, in any case, works as NAME) and what is already in the cache; ``--json`` for a
  machine-readable dump.
- ``fetch NAME``: download (progress bar, resumable, SHA-256 checked) and unpack into the cache.
- ``convert NAME``: fetch if needed, convert to our Keras model, write ``<cache>/converted/NAME.weights.h5``,
  ``NAME.keras`` and ``NAME.json``.

``--url`` replaces the registry address (a mirror, a local file or a ``file://`` URL); ``--cache_dir``
(or ``$EORECORDS_CACHE``) sets the cache folder.
"""
from __future__ import annotations

import functools
import json
import os
import sys

from absl import flags

import pretrained
from prep import cli
from prep.errors import UsageError
from pretrained import fetch as fetch_lib
from pretrained import registry

FLAGS = flags.FLAGS


@functools.cache  # declared once per process, however often run() or a test calls it
def define_flags() -> None:
    """Declare the command's flags (called by run(); importing this module defines none)."""
    flags.DEFINE_string("cache_dir", None, "Cache folder (default: $EORECORDS_CACHE, else ~/.cache/eorecords).")
    flags.DEFINE_string("url", None, "Fetch from this address instead of the registry's: an http(s) mirror, "
                        "a local file or a file:// URL.")
    flags.DEFINE_string("sha256", None, "Expected SHA-256 of the download (overrides the registry's).")
    flags.DEFINE_string("source", None, "convert: a local checkpoint to convert instead of fetching: an unpacked "
                        "folder, a checkpoint prefix, the zip itself or a Keras 2 .h5 file.")
    flags.DEFINE_boolean("force", False, "Download, unpack and convert again even if the cache has the files.")
    flags.DEFINE_boolean("all", False, "list: show every GHS-S2Net zone instead of one summary line.")
    flags.DEFINE_boolean("json", False, "list: print the registry entries as JSON.")
    flags.DEFINE_boolean("progress", True, "Show progress bars.")
    flags.DEFINE_integer("retries", 5, "fetch: how often to resume a cut download before giving up.")

USAGE = "commands: list | fetch NAME | convert NAME"


def _state(entry: registry.Entry) -> str:
    cache = fetch_lib.cache_dir(FLAGS.cache_dir)
    if pretrained.converted_paths(entry, cache)["weights"].is_file():
        return "converted"
    if fetch_lib.download_path(entry, cache).is_file():
        return "downloaded"
    return "-"


def cmd_list() -> int:
    """Prints the registry (``list``): names, aliases, architecture, format, inputs, digest, cache state.

    One summary line per GHS-S2Net zone family unless ``--all``; ``--json`` dumps the entries.
    Returns the exit status 0.
    """
    entries = [registry.get(n) for n in registry.names()]
    if FLAGS.json:
        print(json.dumps([e.to_json() for e in entries], indent=1))
        return 0
    rows = [("NAME", "ALIASES", "ARCHITECTURE", "FORMAT", "INPUTS", "SHA256", "CACHE")]
    patterns = dict(registry.name_patterns())
    summarised = set()
    for e in entries:
        inputs = " ".join(f"{k}:{'x'.join(map(str, v))}" for k, v in e.input_spec().items())
        digest = "pinned" if e.sha256 else "unknown"
        if e.family and not FLAGS.all:
            if e.family in summarised:
                continue
            summarised.add(e.family)
            members = registry.families()[e.family]
            cached = sum(_state(registry.get(m)) != "-" for m in members)
            pattern = next(n for n in patterns if registry.ZONE in n and n.startswith(e.family))
            rows.append((f"{pattern} ({len(members)} zones)", ",".join(patterns[pattern]), e.architecture,
                         e.format, inputs, digest, f"{cached} cached"))
            continue
        rows.append((e.name, ",".join(e.aliases), e.architecture, e.format, inputs, digest, _state(e)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    print(f"\ncache: {fetch_lib.cache_dir(FLAGS.cache_dir)}")
    print("names and aliases are matched in any case")
    if not FLAGS.all:
        print("zones: python -m pretrained list --all")
    return 0


def cmd_fetch(name: str) -> int:
    """Downloads and unpacks model ``name`` into the cache (``fetch``), prints its path; returns 0.

    Raises:
        UnknownModelError: unknown name.
        FetchError: the download or the unpacking failed.
    """
    path = fetch_lib.fetch(name, cache=FLAGS.cache_dir, url=FLAGS.url, sha256=FLAGS.sha256,
                           progress=FLAGS.progress, force=FLAGS.force, retries=FLAGS.retries)
    print(path)
    return 0


def cmd_convert(name: str) -> int:
    """Converts model ``name`` (``convert``; fetching it if needed), prints the files written; returns 0.

    Raises:
        UnknownModelError: unknown name.
        FetchError: the download failed.
        ConversionError: the checkpoint does not match our model.
    """
    report = pretrained.convert(name, cache=FLAGS.cache_dir, url=FLAGS.url, sha256=FLAGS.sha256,
                                source=FLAGS.source, progress=FLAGS.progress, force=FLAGS.force)
    print(f"{registry.get(name).name}: {report['assigned']} weights, {report['parameters']:,} parameters")
    for key in ("weights", "keras", "meta"):
        print(f"  {key}: {report[key]}")
    for note in report.get("notes", ()):
        print(f"  note: {note}")
    return 0


def main(argv: list[str]) -> int:
    """Run the command in ``argv[1:]`` (absl's remaining arguments); returns the exit status 0.

    Raises:
      prep.errors.UsageError: no command, an unknown one, or the wrong number of arguments.
      prep.errors.EORecordsError: an unknown model name, a failed download, a failed conversion.
    """
    args = argv[1:]
    if not args:
        raise UsageError(f"no command given; {USAGE}")
    command, rest = args[0], args[1:]
    if command not in ("list", "fetch", "convert"):
        raise UsageError(f"unknown command {command!r}; {USAGE}")
    if FLAGS.source is not None and command != "convert":
        raise UsageError(f"--source applies to convert only, not to {command}")
    if command == "list":
        cli.no_arguments(args)
        return cmd_list()
    if len(rest) != 1:
        got = "no NAME" if not rest else f"{len(rest)} arguments ({' '.join(rest)})"
        raise UsageError(f"{command} takes one model NAME, got {got}; {USAGE}")
    return (cmd_fetch if command == "fetch" else cmd_convert)(rest[0])


def run(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m pretrained`` and the ``eorecords-pretrained`` console script.

    Runs under ``prep.cli.run_command``: ``--help`` shows this module's text and flags, a usage
    error prints one ``error: ...`` line and exits 2, any other eorecords error exits 1.
    """
    argv = list(sys.argv if argv is None else argv)
    script = os.path.basename(argv[0])
    prog = script if script.startswith("eorecords") else "python -m pretrained"
    cli.run_command(sys.modules[__name__], argv, prog=prog)


if __name__ == "__main__":
    run()
