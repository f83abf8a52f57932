"""Prepare BigEarthNet-S2 (19 classes) as sharded TFRecords: ``python -m prep.bigearthnet``.

Command-line compatible with the upstream ``prep_splits_19_classes.py`` (-r, -o, -n, -l,
--update_json; ``-n a.csv b.csv c.csv`` works as well as repeated ``-n``), plus sharding,
schemas, parallel workers, resume and a manifest. Without ``-n`` the official splits from the
bigearthnet-common package are used.
"""
from __future__ import annotations

import dataclasses
import functools
import os
import sys
import time

from absl import app, flags

import splits as official
from prep import cli, shards
from prep import raw_bigearthnet as raw
from prep.datasets import bigearthnet as ben

FLAGS = flags.FLAGS


@functools.cache  # declared once per process, however often run() or a test calls it
def define_flags() -> None:
    """Declare the command's flags (called by run(); importing this module defines none)."""
    flags.DEFINE_string("root_folder", None, "Folder holding the raw patch folders (one folder per patch).",
                        short_name="r")
    flags.DEFINE_string("out_folder", None, "Output folder for the shards and manifest.json.", short_name="o")
    flags.DEFINE_multi_string("splits", None, "Split CSV files (plain, .bz2 or .gz; one patch name per line); the "
                              "split is named after the file (train.csv -> train). Default: the official "
                              "train/val/test splits.", short_name="n")
    flags.DEFINE_enum("library", "tensorflow", ["tensorflow"], "Target library (upstream compatibility; only "
                      "TensorFlow records are written).", short_name="l")
    flags.DEFINE_bool("update_json", False, "Also add 'BigEarthNet_19_labels' to each patch JSON (written "
                      "atomically, other keys kept).")
    flags.DEFINE_enum("schema", "compact", ["compact", "upstream"], "Record layout: 'compact' (raw uint16 bytes "
                      "per band at native resolution + labels + metadata) or 'upstream' (the upstream Int64List "
                      "keys, readable by existing upstream readers).")
    flags.DEFINE_float("shard_size_mb", 150.0, "Largest shard size in MB: each split is cut into as few shards "
                      "of equal record counts as keep under it (counts derive from an estimated record size).")
    flags.DEFINE_enum("compression", "NONE", ["NONE", "GZIP"], "TFRecord compression.")
    flags.DEFINE_integer("workers", os.cpu_count() or 1, "Parallel worker processes (output is identical for "
                         "any count).")
    flags.DEFINE_enum("on_error", "fail", ["fail", "skip"], "On a bad patch: stop with its error ('fail'), or "
                      "skip it and list it with the reason in the manifest and summary ('skip').")
    flags.DEFINE_bool("keep_excluded", False, "Keep the patches the official rules leave out (seasonal snow, "
                      "cloud/shadow, no 19-class target).")
    flags.DEFINE_multi_string("exclusion_lists", None, "Further patch lists to leave out (CSV, one name per line, "
                              "plain/.bz2/.gz), reported as excluded with the list's name; added to the official "
                              "lists unless --keep_excluded.")
    flags.DEFINE_bool("overwrite", False, "Discard output of a different earlier preparation in --out_folder.")
    flags.DEFINE_bool("progress", True, "Show a progress bar.")
    flags.DEFINE_enum("runner", "local", ["local", "DirectRunner", "DataflowRunner", "FlinkRunner", "SparkRunner"],
                      "'local': this machine's worker processes. A Beam runner name runs the same preparation as an "
                      "Apache Beam pipeline (prep.beam); with the DirectRunner the records are the same as 'local'.")
    flags.DEFINE_string("beam_options", "", "Beam pipeline options as one shell-quoted string, e.g. "
                        "--beam_options='--project=P --region=R --temp_location=gs://B/tmp'; "
                        "'--shard_writer=writetotfrecord' writes through beam.io.WriteToTFRecord (see prep/beam.py).")


SPLITS_SPELLINGS = {"-n": "--splits", "--splits": "--splits", "--n": "--splits"}


def expand_nargs(argv: list[str]) -> list[str]:
    """Rewrite upstream-style ``-n a b c`` / ``--splits a b c`` into repeated ``--splits`` flags."""
    return cli.expand_nargs(argv, SPLITS_SPELLINGS)


def read_split_lists(paths: list[str] | None) -> dict[str, list[str]]:
    if not paths:
        return {s: list(official.official_split(s)) for s in official.SPLITS}
    lists: dict[str, list[str]] = {}
    for p in paths:
        if not os.path.isfile(p):
            raise app.UsageError(f"split file {p}: not found")
        name = official.split_name(p)
        if name in lists:
            raise app.UsageError(f"split file {p}: a second file for split {name!r}")
        try:
            lists[name] = official.read_names(p)
        except (OSError, EOFError, UnicodeDecodeError) as e:
            raise app.UsageError(f"split file {p}: unreadable ({e})") from None
    return lists


def prepare(root: str, out: str, split_paths: list[str] | None = None, schema: str = "compact",
            shard_size_mb: float = 150.0, compression: str = "NONE", workers: int = 1,
            on_error: str = "fail", keep_excluded: bool = False, update_json: bool = False,
            overwrite: bool = False, progress: bool = False, exclusion_lists: list[str] | None = None) -> dict:
    """Python API of the command: returns the manifest."""
    if not os.path.isdir(root):
        raise shards.PrepError(f"root folder {root}: not a folder")
    p = plan(split_paths, schema, shard_size_mb, compression, on_error, keep_excluded, update_json,
             exclusion_lists)
    produce = functools.partial(raw.produce, root=os.path.abspath(root), schema_name=schema,
                                keep_excluded=keep_excluded, write_json=update_json)
    return shards.write_dataset(out, ben.SPEC, schema, p.items, produce, p.records_per_shard, workers=workers,
                                compression=compression, flags=p.flags, excluded=p.excluded, skipped=p.skipped,
                                on_error=on_error, overwrite=overwrite, progress=progress)


@dataclasses.dataclass
class Plan:
    """What to write: items per split, what was left out while planning, shard size, recorded flags."""

    items: dict[str, list[str]]
    excluded: list[dict]
    skipped: list[dict]
    records_per_shard: int
    flags: dict


def plan(split_paths: list[str] | None, schema: str, shard_size_mb: float, compression: str, on_error: str,
         keep_excluded: bool, update_json: bool, exclusion_lists: list[str] | None) -> Plan:
    """Split lists and exclusions -> the plan shared by the local and the Beam paths."""
    split_lists = read_split_lists(split_paths)
    exclusions = {} if keep_excluded else {raw.EXCLUSION_REASONS[k]: official.exclusion(k)
                                            for k in official.EXCLUSIONS}
    for path in (exclusion_lists or []) if not keep_excluded else []:
        if not os.path.isfile(path):
            raise shards.PrepError(f"exclusion list {path}: not found")
        exclusions[f"listed in {os.path.basename(path)}"] = frozenset(official.read_names(path))
    items, excluded, skipped = raw.plan_splits(split_lists, exclusions)
    per_shard = shards.records_per_shard(ben.SPEC, ben.SPEC.schema(schema), shard_size_mb)
    flags_used = {  # the output-affecting flags (not --workers, --progress, --overwrite)
        "splits": [official.split_name(p) for p in split_paths] if split_paths else "official",
        "schema": schema, "shard_size_mb": shard_size_mb, "records_per_shard": per_shard,
        "compression": compression, "on_error": on_error, "keep_excluded": keep_excluded,
        "update_json": update_json,
        "exclusion_lists": [os.path.basename(p) for p in exclusion_lists or []],
    }
    return Plan(items, excluded, skipped, per_shard, flags_used)


summary = cli.summary  # the end-of-run table, shared with prep.so2sat


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if not FLAGS.root_folder or not FLAGS.out_folder:
        raise app.UsageError("--root_folder (-r) and --out_folder (-o) are required")
    t0 = time.time()
    try:
        if FLAGS.runner == "local":
            manifest = prepare(FLAGS.root_folder, FLAGS.out_folder, FLAGS.splits, FLAGS.schema, FLAGS.shard_size_mb,
                               FLAGS.compression, FLAGS.workers, FLAGS.on_error, FLAGS.keep_excluded,
                               FLAGS.update_json, FLAGS.overwrite, FLAGS.progress, FLAGS.exclusion_lists)
        else:
            from prep import beam  # imported only when asked for: Apache Beam is slow to import

            manifest = beam.prepare(FLAGS.root_folder, FLAGS.out_folder, FLAGS.splits, FLAGS.schema,
                                    FLAGS.shard_size_mb, FLAGS.compression, FLAGS.workers, FLAGS.on_error,
                                    FLAGS.keep_excluded, FLAGS.update_json, FLAGS.overwrite, FLAGS.progress,
                                    FLAGS.exclusion_lists, runner=FLAGS.runner, beam_options=FLAGS.beam_options)
    except shards.PrepError as e:
        return cli.error(e)
    return cli.report(manifest, FLAGS.out_folder, time.time() - t0)


def run():
    define_flags()
    app.run(main, argv=expand_nargs(sys.argv))


if __name__ == "__main__":
    run()
