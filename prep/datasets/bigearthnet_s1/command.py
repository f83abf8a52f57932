"""Prepare BigEarthNet-S1 (19 classes) as sharded TFRecords: ``python -m prep bigearthnet_s1``.

The flags of ``python -m prep bigearthnet`` where they mean the same (``-r/--root_folder``,
``-n/--splits``, ``--schema``, ``--keep_excluded``, ``--exclusion_lists``, ``-o/--out_dir``, ...),
plus ``--pairing``, the S1 <-> S2 table (default: ``s1_s2_name_country_season.csv`` in the root
folder if there is one, else the bigearthnet-common wheel's). The split lists are BigEarthNet-S2's
(they may name S2 or S1 patches): each patch is paired with its twin and excluded when its S2 twin
is on an exclusion list.
"""
from __future__ import annotations

import functools
import os
import sys

from absl import flags

from prep import cli, shards
from prep.datasets.bigearthnet import command as s2command
from prep.datasets.bigearthnet import raw as s2raw
from prep.datasets.bigearthnet_s1 import raw
from prep.datasets.bigearthnet_s1 import spec as s1spec
from prep.datasets.contract import PreparePlan

FLAGS = flags.FLAGS
MULTI_VALUE_FLAGS = s2command.MULTI_VALUE_FLAGS


PAIRING_FLAGS = ("splits", "pairing", "schema", "keep_excluded", "exclusion_lists")


def define_pairing_flags() -> None:
    """The flags the S1 and MM commands share (``PAIRING_FLAGS``): split and exclusion lists, pairing, schema.

    They are key flags of this module; a command of another module that declares them
    (``bigearthnet_mm``) calls ``flags.declare_key_flag`` on each, so its ``--help`` lists them.
    """
    flags.DEFINE_multi_string("splits", None, "Split files (one S2 or S1 patch name per line; plain, .bz2, .gz "
                              "or .xz); the split is named after the file (train.csv -> train). Default: "
                              "train.csv, val.csv, test.csv in the (S2) root folder if it holds any, else the "
                              "official BigEarthNet-S2 train/val/test splits.", short_name="n")
    flags.DEFINE_string("pairing", None, "The S1-S2 pairing table (CSV with header s1_name,s2_name,country,season; "
                        "plain/.bz2/.gz). Default: s1_s2_name_country_season.csv in the root folder if there, "
                        "else the table of the bigearthnet-common wheel.")
    flags.DEFINE_enum("schema", "compact", ["compact", "upstream"], "Record layout: 'compact' (raw bytes per band "
                      "+ labels + metadata) or 'upstream' (the upstream BigEarthNet-MM list keys: VV, VH FloatList, "
                      "BigEarthNet-19_labels(_multi_hot), patch_name_s1, patch_name_s2).")
    flags.DEFINE_bool("keep_excluded", False, "Keep the pairs the official rules leave out (S2 twin with seasonal "
                      "snow, cloud/shadow, or no 19-class target).")
    flags.DEFINE_multi_string("exclusion_lists", None, "Further patch lists to leave out (S2 or S1 names, one per "
                              "line), reported as excluded with the list's name; added to the official lists.")


@functools.cache
def define_flags() -> None:
    """Declare the command's flags (called by run(); importing this module defines none)."""
    flags.DEFINE_string("root_folder", None, "Folder holding the S1 patch folders (one folder per patch: "
                        "<patch>_VV.tif, <patch>_VH.tif, <patch>_labels_metadata.json).", short_name="r")
    define_pairing_flags()
    cli.define_prepare_flags(out_aliases=("out_folder",))


MISSING_HINT = ("pass the split lists of the patches you have (-n train.csv val.csv test.csv), or pass "
                "--on_error=skip to prepare the patches present (the missing ones are then listed in OUT/missing.csv)")


def plan(root: str, split_paths: list[str] | None = None, schema: str = "compact", shard_size_mb: float = 150.0,
         compression: str = "NONE", on_error: str = "fail", keep_excluded: bool = False,
         exclusion_lists: list[str] | None = None, pairing: str | None = None) -> PreparePlan:
    """Split lists, pairing and exclusions -> the plan shared by the local and the Beam paths.

    Args:
      root: the local folder of S1 patch folders.
      split_paths: split files; None for the files in ``root`` or else the official splits.
      schema: "compact" or "upstream".
      shard_size_mb: largest shard size in MB.
      compression: "NONE" or "GZIP".
      on_error: "fail" or "skip".
      keep_excluded: keep the pairs of the official exclusion lists.
      exclusion_lists: further lists of patches to leave out.
      pairing: the pairing table; None for the one in ``root`` or else the wheel's.

    Raises:
      PrepError: a missing root folder or exclusion list, or (``on_error="fail"``) listed patches
        without a folder.
      InputError: a malformed pairing table.
      UsageError: an unreadable split file.
    """
    if not os.path.isdir(root):
        raise shards.PrepError(f"root folder {root}: not a folder")
    table = raw.choose_pairing(root, pairing)
    lists = s2raw.choose_lists(root, split_paths, exclusion_lists, keep_excluded)
    present = s2raw.patch_folders(root)
    pp = raw.plan_pairs(lists.splits, lists.exclusions, table, key="s1", present_s1=present)
    if pp.missing and on_error == "fail" and not pp.skipped:
        raise shards.PrepError(raw.missing_problem(pp, lists.describe()), path=root, hint=MISSING_HINT)
    per_shard = shards.records_per_shard(s1spec.SPEC, s1spec.SPEC.schema(schema), shard_size_mb)
    flags_used = {
        "splits": list(lists.splits) if lists.source != "official" else "official",
        "split_source": lists.source,
        "pairing": os.path.basename(table.source),
        "schema": schema, "shard_size_mb": shard_size_mb, "records_per_shard": per_shard,
        "compression": compression, "on_error": on_error, "keep_excluded": keep_excluded,
        "exclusion_lists": list(lists.exclusion_files),
    }
    produce = functools.partial(raw.produce, root=os.path.abspath(root), schema_name=schema,
                                keep_excluded=keep_excluded)
    return PreparePlan(spec=s1spec.SPEC, schema=schema, items=pp.items, produce=produce,
                       records_per_shard=per_shard, flags=flags_used, excluded=pp.excluded, skipped=pp.skipped,
                       missing=pp.missing, compression=compression, on_error=on_error)


def prepare(root: str, out: str, split_paths: list[str] | None = None, schema: str = "compact",
            shard_size_mb: float = 150.0, compression: str = "NONE", workers: int = 1, on_error: str = "fail",
            keep_excluded: bool = False, overwrite: bool = False, progress: bool = False,
            exclusion_lists: list[str] | None = None, pairing: str | None = None) -> dict:
    """Python API of the command: plan, write locally, return the manifest (arguments as ``plan``).

    Raises:
      PrepError: as ``plan``, or an output folder holding another preparation (unless ``overwrite``).
      InputError: a malformed pairing table.
      UsageError: an unreadable split file.
    """
    p = plan(root, split_paths, schema, shard_size_mb, compression, on_error, keep_excluded, exclusion_lists,
             pairing)
    return cli.write_plan(p, out, "local", "", workers, overwrite, progress)


def plan_from_flags() -> PreparePlan:
    """``plan`` with the command's flags (the dataset contract's entry point)."""
    f = FLAGS
    cli.required("root_folder")
    return plan(f.root_folder, f.splits, f.schema, f.shard_size_mb, f.compression, f.on_error, f.keep_excluded,
                f.exclusion_lists, f.pairing)


def main(argv: list[str]) -> int:
    """Prepare the archive named by the flags (``cli.prepare_main``)."""
    return cli.prepare_main(argv, plan_from_flags)


def run(argv: list[str] | None = None) -> None:
    """Console entry point (``python -m prep bigearthnet_s1``)."""
    cli.run_command(sys.modules[__name__], argv, nargs=MULTI_VALUE_FLAGS)


if __name__ == "__main__":
    run()
