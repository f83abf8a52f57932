"""Prepare BigEarthNet-MM (S1 + S2 pairs, 19 classes) as sharded TFRecords: ``python -m prep bigearthnet_mm``.

``--s2_root`` holds the BigEarthNet-S2 patch folders, ``--s1_root`` the BigEarthNet-S1 ones; each
S2 patch of the split lists is paired with its S1 twin through ``--pairing`` (default: the table in
the S1 root, else in the S2 root, else the bigearthnet-common wheel's). Splits and exclusions are
BigEarthNet-S2's, read as ``python -m prep bigearthnet`` reads them from its root folder (here the
S2 root). The other flags are those of ``python -m prep bigearthnet_s1``. One record per pair, keyed
by the S2 name; a pair whose S1 labels disagree with the S2 twin's is reported (an error, or with
``--on_error=skip`` a skipped pair with both files named).
"""
from __future__ import annotations

import functools
import os
import sys

from absl import flags

from prep import cli, shards
from prep.datasets.bigearthnet import raw as s2raw
from prep.datasets.bigearthnet_mm import raw
from prep.datasets.bigearthnet_mm import spec as mmspec
from prep.datasets.bigearthnet_s1 import command as s1command
from prep.datasets.bigearthnet_s1 import raw as s1raw
from prep.datasets.contract import PreparePlan
from splits import bigearthnet_s1 as pairing_lists

FLAGS = flags.FLAGS
MULTI_VALUE_FLAGS = s1command.MULTI_VALUE_FLAGS


@functools.cache
def define_flags() -> None:
    """Declare the command's flags (called by run(); importing this module defines none)."""
    flags.DEFINE_string("s1_root", None, "Folder holding the BigEarthNet-S1 patch folders (<patch>_VV.tif, "
                        "<patch>_VH.tif, JSON).")
    flags.DEFINE_string("s2_root", None, "Folder holding the BigEarthNet-S2 patch folders (12 band GeoTIFFs + "
                        "JSON); split and exclusion lists in it are used as by python -m prep bigearthnet.")
    s1command.define_pairing_flags()
    for name in s1command.PAIRING_FLAGS:  # listed by this command's --help too
        flags.declare_key_flag(name)
    cli.define_prepare_flags(out_aliases=("out_folder",))


def plan(s1_root: str, s2_root: str, split_paths: list[str] | None = None, schema: str = "compact",
         shard_size_mb: float = 150.0, compression: str = "NONE", on_error: str = "fail",
         keep_excluded: bool = False, exclusion_lists: list[str] | None = None,
         pairing: str | None = None) -> PreparePlan:
    """Split lists, pairing and exclusions -> the plan of the MM records (local and Beam).

    Args:
      s1_root: the local folder of S1 patch folders.
      s2_root: the local folder of S2 patch folders (and of split/exclusion lists, if any).
      split_paths: split files; None for the files in ``s2_root`` or else the official splits.
      schema: "compact" or "upstream".
      shard_size_mb: largest shard size in MB.
      compression: "NONE" or "GZIP".
      on_error: "fail" or "skip".
      keep_excluded: keep the pairs of the official exclusion lists.
      exclusion_lists: further lists of patches to leave out.
      pairing: the pairing table; None for the one in ``s1_root``, else in ``s2_root``, else the wheel's.

    Raises:
      PrepError: a missing root folder or exclusion list, or (``on_error="fail"``) listed pairs
        without a patch folder.
      InputError: a malformed pairing table.
      UsageError: an unreadable split file.
    """
    for flag, root in (("s1_root", s1_root), ("s2_root", s2_root)):
        if not os.path.isdir(root):
            raise shards.PrepError(f"--{flag} {root}: not a folder")
    table = pairing_lists.pairing(pairing or pairing_lists.find_in_folder(s1_root)
                                  or pairing_lists.find_in_folder(s2_root))
    lists = s2raw.choose_lists(s2_root, split_paths, exclusion_lists, keep_excluded)
    pp = s1raw.plan_pairs(lists.splits, lists.exclusions, table, key="s2",
                          present_s1=s2raw.patch_folders(s1_root), present_s2=s2raw.patch_folders(s2_root))
    if pp.missing and on_error == "fail" and not pp.skipped:
        raise shards.PrepError(s1raw.missing_problem(pp, lists.describe()) + " (S1 or S2 folder)",
                               path=f"{s1_root}, {s2_root}", hint=s1command.MISSING_HINT)
    per_shard = shards.records_per_shard(mmspec.SPEC, mmspec.SPEC.schema(schema), shard_size_mb)
    flags_used = {
        "splits": list(lists.splits) if lists.source != "official" else "official",
        "split_source": lists.source,
        "pairing": os.path.basename(table.source),
        "schema": schema, "shard_size_mb": shard_size_mb, "records_per_shard": per_shard,
        "compression": compression, "on_error": on_error, "keep_excluded": keep_excluded,
        "exclusion_lists": list(lists.exclusion_files),
    }
    produce = functools.partial(raw.produce, s1_root=os.path.abspath(s1_root), s2_root=os.path.abspath(s2_root),
                                schema_name=schema, keep_excluded=keep_excluded)
    return PreparePlan(spec=mmspec.SPEC, schema=schema, items=pp.items, produce=produce,
                       records_per_shard=per_shard, flags=flags_used, excluded=pp.excluded, skipped=pp.skipped,
                       missing=pp.missing, compression=compression, on_error=on_error)


def plan_from_flags() -> PreparePlan:
    """``plan`` with the command's flags (the dataset contract's entry point)."""
    f = FLAGS
    cli.required("s1_root", "s2_root")
    return plan(f.s1_root, f.s2_root, f.splits, f.schema, f.shard_size_mb, f.compression, f.on_error,
                f.keep_excluded, f.exclusion_lists, f.pairing)


def main(argv: list[str]) -> int:
    """Prepare the pairs named by the flags (``cli.prepare_main``)."""
    return cli.prepare_main(argv, plan_from_flags)


def run(argv: list[str] | None = None) -> None:
    """Console entry point (``python -m prep bigearthnet_mm``)."""
    cli.run_command(sys.modules[__name__], argv, nargs=MULTI_VALUE_FLAGS)


if __name__ == "__main__":
    run()
