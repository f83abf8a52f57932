"""Prepare BigEarthNet-S2 (19 classes) as sharded TFRecords: ``python -m prep bigearthnet`` (or ``prep.bigearthnet``).

Command-line compatible with the upstream ``prep_splits_19_classes.py`` (-r, -o, -n, -l,
--update_json; ``-n a.csv b.csv c.csv`` works as well as repeated ``-n``), plus sharding,
schemas, parallel workers, resume and a manifest. Without ``-n`` the split files in the root
folder (train.csv, val.csv, test.csv) are used, else the official splits from the
bigearthnet-common package; exclusion lists in the root folder add to the official ones (the rule
is ``raw.choose_lists``, shared with the TFDS builder). Patches whose folder is missing are an
error, or with ``--on_error=skip`` counted as missing and listed in ``OUT/missing.csv``.
``--runner`` runs the same plan on Apache Beam.
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

FLAGS = flags.FLAGS


@functools.cache  # declared once per process, however often run() or a test calls it
def define_flags() -> None:
    """Declare the command's flags (called by run(); importing this module defines none)."""
    flags.DEFINE_string("root_folder", None, "Folder holding the raw patch folders (one folder per patch); "
                        "local, or a Beam filesystem path (gs://...) with a Beam --runner.", short_name="r")
    flags.DEFINE_multi_string("splits", None, "Split files (one patch name per line; .csv, .txt, ...; plain, .bz2, "
                              ".gz or .xz); the split is named after the file (train.csv -> train, "
                              "mytrain.txt.gz -> mytrain). Default: train.csv, val.csv, test.csv in "
                              "--root_folder if it holds any, else the official train/val/test splits.",
                              short_name="n")
    flags.DEFINE_enum("library", "tensorflow", ["tensorflow"], "Target library (upstream compatibility; only "
                      "TensorFlow records are written).", short_name="l")
    flags.DEFINE_bool("update_json", False, "Also add 'BigEarthNet_19_labels' to each patch JSON (written "
                      "atomically, other keys kept).")
    flags.DEFINE_enum("schema", "compact", ["compact", "upstream"], "Record layout: 'compact' (raw uint16 bytes "
                      "per band at native resolution + labels + metadata) or 'upstream' (the upstream Int64List "
                      "keys, readable by existing upstream readers).")
    flags.DEFINE_bool("keep_excluded", False, "Keep the patches the official rules leave out (seasonal snow, "
                      "cloud/shadow, no 19-class target).")
    flags.DEFINE_multi_string("exclusion_lists", None, "Further patch lists to leave out (one name per line, "
                              "plain/.bz2/.gz/.xz), reported as excluded with the list's name; added to the official "
                              "lists and to the patches_with_*.csv lists in --root_folder unless --keep_excluded.")
    cli.define_prepare_flags(out_aliases=("out_folder",))


SPLITS_SPELLINGS = {"-n": "--splits", "--splits": "--splits", "--n": "--splits"}
MULTI_VALUE_FLAGS = {**SPLITS_SPELLINGS, "--exclusion_lists": "--exclusion_lists"}


def expand_nargs(argv: list[str]) -> list[str]:
    """Rewrite upstream-style ``-n a b c`` / ``--splits a b c`` into repeated ``--splits`` flags."""
    return cli.expand_nargs(argv, MULTI_VALUE_FLAGS)


# What to do when listed patches have no folder (after the message of raw.missing_problem).
MISSING_HINT = {
    "official": "pass the split lists of the patches you have (-n train.csv val.csv test.csv) or put "
                "train.csv, val.csv and test.csv listing them in the root folder; or pass --on_error=skip "
                "to prepare the patches present (the missing ones are then listed in OUT/missing.csv)",
    "other": "correct the split lists, or pass --on_error=skip to prepare the patches present (the missing "
             "ones are then listed in OUT/missing.csv)",
}


def prepare(root: str, out: str, split_paths: list[str] | None = None, schema: str = "compact",
            shard_size_mb: float = 150.0, compression: str = "NONE", workers: int = 1,
            on_error: str = "fail", keep_excluded: bool = False, update_json: bool = False,
            overwrite: bool = False, progress: bool = False, exclusion_lists: list[str] | None = None,
            runner: str = "local", beam_options: str = "") -> dict:
    """Python API of the command: plan, write (locally or on a Beam ``runner``), return the manifest.

    The arguments are the command's flags (see ``plan`` and ``prep.cli.write_plan``); ``out`` is
    ``--out_dir``.

    Raises:
      PrepError: as ``plan``, or an output folder holding another preparation (unless ``overwrite``).
      UsageError: an unreadable split file.
    """
    p = plan(root, split_paths, schema, shard_size_mb, compression, on_error, keep_excluded, update_json,
             exclusion_lists)
    return cli.write_plan(p, out, runner, beam_options, workers, overwrite, progress)


def plan(root: str, split_paths: list[str] | None = None, schema: str = "compact", shard_size_mb: float = 150.0,
         compression: str = "NONE", on_error: str = "fail", keep_excluded: bool = False,
         update_json: bool = False, exclusion_lists: list[str] | None = None) -> PreparePlan:
    """Split lists and exclusions -> the plan shared by the local and the Beam paths.

    The lists follow ``raw.choose_lists``: the split files given, else train.csv/val.csv/test.csv
    in ``root``, else the official splits; exclusion lists in ``root`` add to the official ones.
    A local ``root`` is listed once: a patch to prepare whose folder is not there is an error under
    ``on_error="fail"`` (saying how many are missing, how many present, and what to pass) and is
    left out as *missing* under ``"skip"`` (counted per split, listed in ``OUT/missing.csv``).

    Args:
      root: the folder of patch folders, local or on a Beam filesystem (``gs://...``).
      split_paths: split files; None for the files in ``root`` or else the official splits.
      schema: "compact" or "upstream".
      shard_size_mb: largest shard size in MB.
      compression: "NONE" or "GZIP".
      on_error: "fail" or "skip".
      keep_excluded: keep the patches of the official exclusion lists.
      update_json: also add the 19-class labels to each patch JSON (local root only).
      exclusion_lists: further lists of patches to leave out.

    Raises:
      PrepError: a missing root folder or exclusion list, --update_json with a remote root, or
        (under ``on_error="fail"``) patch folders missing for listed patches.
      UsageError: an unreadable split file.
    """
    remote_root = "://" in str(root)
    if not remote_root and not os.path.isdir(root):
        raise shards.PrepError(f"root folder {root}: not a folder")
    if remote_root and update_json:
        raise shards.PrepError("--update_json rewrites the patch JSON files in place: it needs a local root folder")
    lists = raw.choose_lists(root, split_paths, exclusion_lists, keep_excluded)
    # a local root is listed once: patches without a folder are not planned (missing), and an error
    # under --on_error=fail before anything is written; on a Beam filesystem each is a skip
    present = None if remote_root else raw.patch_folders(root)
    split_plan = raw.plan_splits(lists.splits, lists.exclusions, present)
    if split_plan.missing and on_error == "fail" and not split_plan.skipped:  # (the writer reports those first)
        hint = MISSING_HINT["official" if lists.source == "official" else "other"]
        raise shards.PrepError(raw.missing_problem(split_plan, lists, present), path=root, hint=hint)
    per_shard = shards.records_per_shard(ben.SPEC, ben.SPEC.schema(schema), shard_size_mb)
    flags_used = {  # recorded in the manifest (not --workers, --progress, --overwrite); a rerun compares
        # them but shards.NOT_COMPARED_FLAGS (on_error, shard_size_mb), which leave finished shards as they are
        "splits": list(lists.splits) if lists.source != "official" else "official",
        "split_source": lists.source,
        "schema": schema, "shard_size_mb": shard_size_mb, "records_per_shard": per_shard,
        "compression": compression, "on_error": on_error, "keep_excluded": keep_excluded,
        "update_json": update_json,
        "exclusion_lists": list(lists.exclusion_files),
    }
    if remote_root:
        from prep.datasets.bigearthnet import remote

        produce = functools.partial(remote.produce_remote, root=root.rstrip("/"), schema_name=schema,
                                    keep_excluded=keep_excluded)
    else:
        produce = functools.partial(raw.produce, root=os.path.abspath(root), schema_name=schema,
                                    keep_excluded=keep_excluded, write_json=update_json)
    return PreparePlan(spec=ben.SPEC, schema=schema, items=split_plan.items, produce=produce,
                       records_per_shard=per_shard, flags=flags_used, excluded=split_plan.excluded,
                       skipped=split_plan.skipped, missing=split_plan.missing, compression=compression,
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
