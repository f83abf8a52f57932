"""Prepare BigEarthNet-S2 (19 classes) as sharded TFRecords: ``python -m prep bigearthnet`` (or ``prep.bigearthnet``).

Command-line compatible with the upstream ``prep_splits_19_classes.py`` (-r, -o, -n, -l,
--update_json; ``-n a.csv b.csv c.csv`` works as well as repeated ``-n``), plus sharding,
schemas, parallel workers, resume and a manifest. Without ``-n`` the official splits from the
bigearthnet-common package are used. ``--runner`` runs the same plan on Apache Beam.
"""
from __future__ import annotations

import functools
import os
import sys

from absl import flags

from prep import cli, shards
from prep.datasets.bigearthnet import raw
from prep.datasets.bigearthnet import spec as ben
from prep.datasets.contract import PreparePlan
from prep.errors import UsageError
from splits import bigearthnet as official

FLAGS = flags.FLAGS


@functools.cache  # declared once per process, however often run() or a test calls it
def define_flags() -> None:
    """Declare the command's flags (called by run(); importing this module defines none)."""
    flags.DEFINE_string("root_folder", None, "Folder holding the raw patch folders (one folder per patch); "
                        "local, or a Beam filesystem path (gs://...) with a Beam --runner.", short_name="r")
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
    flags.DEFINE_bool("keep_excluded", False, "Keep the patches the official rules leave out (seasonal snow, "
                      "cloud/shadow, no 19-class target).")
    flags.DEFINE_multi_string("exclusion_lists", None, "Further patch lists to leave out (CSV, one name per line, "
                              "plain/.bz2/.gz), reported as excluded with the list's name; added to the official "
                              "lists unless --keep_excluded.")
    cli.define_prepare_flags(out_aliases=("out_folder",))


SPLITS_SPELLINGS = {"-n": "--splits", "--splits": "--splits", "--n": "--splits"}
MULTI_VALUE_FLAGS = {**SPLITS_SPELLINGS, "--exclusion_lists": "--exclusion_lists"}


def expand_nargs(argv: list[str]) -> list[str]:
    """Rewrite upstream-style ``-n a b c`` / ``--splits a b c`` into repeated ``--splits`` flags."""
    return cli.expand_nargs(argv, MULTI_VALUE_FLAGS)


def read_split_lists(paths: list[str] | None) -> dict[str, list[str]]:
    """Split name -> patch names of each split file (the official splits when ``paths`` is empty).

    Raises:
      UsageError: a missing or unreadable file, or two files naming the same split.
    """
    if not paths:
        return {s: list(official.official_split(s)) for s in official.SPLITS}
    lists: dict[str, list[str]] = {}
    for p in paths:
        if not os.path.isfile(p):
            raise UsageError(f"split file {p}: not found")
        name = official.split_name(p)
        if name in lists:
            raise UsageError(f"split file {p}: a second file for split {name!r}")
        try:
            lists[name] = official.read_names(p)
        except (OSError, EOFError, UnicodeDecodeError) as e:
            raise UsageError(f"split file {p}: unreadable ({e})") from None
    return lists


def prepare(root: str, out: str, split_paths: list[str] | None = None, schema: str = "compact",
            shard_size_mb: float = 150.0, compression: str = "NONE", workers: int = 1,
            on_error: str = "fail", keep_excluded: bool = False, update_json: bool = False,
            overwrite: bool = False, progress: bool = False, exclusion_lists: list[str] | None = None,
            runner: str = "local", beam_options: str = "") -> dict:
    """Python API of the command: plan, write (locally or on a Beam ``runner``), return the manifest."""
    p = plan(root, split_paths, schema, shard_size_mb, compression, on_error, keep_excluded, update_json,
             exclusion_lists)
    return cli.write_plan(p, out, runner, beam_options, workers, overwrite, progress)


def plan(root: str, split_paths: list[str] | None = None, schema: str = "compact", shard_size_mb: float = 150.0,
         compression: str = "NONE", on_error: str = "fail", keep_excluded: bool = False,
         update_json: bool = False, exclusion_lists: list[str] | None = None) -> PreparePlan:
    """Split lists and exclusions -> the plan shared by the local and the Beam paths.

    Args:
      root: the folder of patch folders, local or on a Beam filesystem (``gs://...``).
      split_paths: split files; None for the official splits.
      schema: "compact" or "upstream".
      shard_size_mb: largest shard size in MB.
      compression: "NONE" or "GZIP".
      on_error: "fail" or "skip".
      keep_excluded: keep the patches of the official exclusion lists.
      update_json: also add the 19-class labels to each patch JSON (local root only).
      exclusion_lists: further lists of patches to leave out.

    Raises:
      PrepError: a missing root folder, missing exclusion list, or --update_json with a remote root.
      UsageError: an unreadable split file.
    """
    remote_root = "://" in str(root)
    if not remote_root and not os.path.isdir(root):
        raise shards.PrepError(f"root folder {root}: not a folder")
    if remote_root and update_json:
        raise shards.PrepError("--update_json rewrites the patch JSON files in place: it needs a local root folder")
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
    if remote_root:
        from prep.datasets.bigearthnet import remote

        produce = functools.partial(remote.produce_remote, root=root.rstrip("/"), schema_name=schema,
                                    keep_excluded=keep_excluded)
    else:
        produce = functools.partial(raw.produce, root=os.path.abspath(root), schema_name=schema,
                                    keep_excluded=keep_excluded, write_json=update_json)
    return PreparePlan(spec=ben.SPEC, schema=schema, items=items, produce=produce, records_per_shard=per_shard,
                       flags=flags_used, excluded=excluded, skipped=skipped, compression=compression,
                       on_error=on_error, remote_input=remote_root)


def plan_from_flags() -> PreparePlan:
    """``plan`` with the command's flags (the dataset contract's entry point)."""
    f = FLAGS
    cli.required("root_folder")
    return plan(f.root_folder, f.splits, f.schema, f.shard_size_mb, f.compression, f.on_error, f.keep_excluded,
                f.update_json, f.exclusion_lists)


summary = cli.summary  # the end-of-run table, shared by every preparation command


def main(argv: list[str]) -> int:
    """Prepare the archive named by the flags (``cli.prepare_main``)."""
    return cli.prepare_main(argv, plan_from_flags)


def run(argv: list[str] | None = None) -> None:
    """Console entry point (``eorecords-prep-bigearthnet``)."""
    cli.run_command(sys.modules[__name__], argv, nargs=MULTI_VALUE_FLAGS)


if __name__ == "__main__":
    run()
