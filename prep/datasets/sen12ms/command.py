"""Prepare SEN12MS as sharded TFRecords: ``python -m prep sen12ms``.

    python -m prep sen12ms -r SEN12MS -o records                       # the extracted season folders
    python -m prep sen12ms -r downloads -o records                     # ROIs1158_spring_s2.tar.gz ... as they are
    python -m prep sen12ms -r SEN12MS -o records --target igbp17_single --label_threshold 0.2

Input: ``--root_folder`` holding the season folders ``ROIs1158_spring``, ``ROIs1868_summer``,
``ROIs1970_fall``, ``ROIs2017_winter`` (each with ``s1_<scene>``, ``s2_<scene>``, ``lc_<scene>``),
or, when it holds none, the per-season tarballs (``ROIs1158_spring_s1.tar.gz`` ...), read without
extracting. Every triplet (the s1, s2 and lc file of one patch) becomes one record holding S2 (13
bands uint16), S1 (VV, VH float32 dB) and the 4 lc layers as raw bytes, the scene labels of both
nomenclatures (17 IGBP and 10 simplified classes: fractions, single label, multi-hot at
``--label_threshold``), the season, scene and patch, and the s2 file's CRS and transform.

``--target`` says which label the reader delivers (the records hold all of them): ``dfc10_multi``
(default), ``dfc10_single``, ``igbp17_multi`` or ``igbp17_single``, or a per-pixel segmentation mask,
``dfc10_mask`` or ``igbp17_mask`` (the IGBP layer mapped to 0-based class ids, no data ignored; in
DFC2020's splits ``dfc10_mask`` is their high-resolution label mask).

S1 NaNs: ``--s1_nan=zero`` (default) stores 0 dB in their place and lists every such patch with its
count of replaced pixels in the manifest's ``notes``; ``--s1_nan=fail`` makes such a triplet bad
input. Clipping S1 to [-25, 0] dB is a reader-side transform, never applied to the records.

Splits (``splits/sen12ms.py``): test = the 26 hold-out scenes; val = whole non-hold-out scenes in a
seeded order until at least ``--val_fraction`` of the non-hold-out patches (disjoint from train);
train = the rest. DFC2020's ``ROIs0000_validation`` and ``ROIs0000_test`` folders, when present, become
the extra splits ``dfc2020_val`` and ``dfc2020_test`` (``--nodfc2020``: left out); their records also
hold the high-resolution label mask (``dfc/mask``). ``--split_list NAME=FILE`` (repeatable; one s1/s2/lc file name or patch id per
line, e.g. upstream's test_list.txt) replaces these rules.

Bad input (a missing twin, an unreadable file, a wrong band count, shape or dtype, IGBP codes outside
1..17) stops the run naming the file, or with ``--on_error=skip`` is listed in the manifest.
"""
from __future__ import annotations

import functools
import os
import sys
from typing import Sequence

from absl import flags

from prep import cli, shards
from prep.datasets.contract import PreparePlan
from prep.datasets.sen12ms import raw, tarball
from prep.datasets.sen12ms import spec as sp
from prep.datasets.sen12ms.spec import Sen12msInputError
from prep.errors import UsageError
from splits import sen12ms as rules

FLAGS = flags.FLAGS


@functools.cache
def define_flags() -> None:
    """Declare the command's flags (called by run(); importing this module defines none)."""
    flags.DEFINE_string("root_folder", None, "Folder holding the season folders or the per-season tarballs.",
                        short_name="r")
    flags.DEFINE_enum("target", sp.DEFAULT_TARGET, list(sp.TARGETS), "The label the reader delivers "
                      "(every record holds all of them).")
    flags.DEFINE_float("label_threshold", sp.DEFAULT_THRESHOLD, "Multi-label share: a class is in when it "
                       "holds at least this share of the patch's pixels.", lower_bound=0.0, upper_bound=1.0)
    flags.DEFINE_enum("s1_nan", "zero", list(raw.S1_NAN_MODES), "S1 NaN pixels: 'zero' stores 0 dB and lists "
                      "the patch and count in the manifest; 'fail' makes the triplet bad input.")
    flags.DEFINE_float("val_fraction", rules.DEFAULT_VAL_FRACTION, "Least share of the non-hold-out patches "
                       "in the scene-grouped val split (0: none).", lower_bound=0.0, upper_bound=0.99)
    flags.DEFINE_integer("split_seed", rules.DEFAULT_SEED, "Seed of the val scenes' draw.")
    flags.DEFINE_bool("dfc2020", True, "Prepare DFC2020's ROIs0000_validation / ROIs0000_test folders, when "
                      "present under --root_folder, as the extra splits dfc2020_val / dfc2020_test.")
    flags.DEFINE_multi_string("split_list", None, "NAME=FILE: a user split list (replaces the default rules).")
    cli.define_prepare_flags(out_aliases=("out_folder",))


def read_split_lists(specs: Sequence[str]) -> dict[str, list[str]]:
    """``NAME=FILE`` flag values -> split name -> the file's non-empty lines.

    Raises:
      UsageError: a value without ``=``.
      Sen12msInputError: a missing file.
    """
    out = {}
    for s in specs:
        name, sep, path = s.partition("=")
        if not sep or not name or not path:
            raise UsageError(f"--split_list {s!r}: expected NAME=FILE")
        if not os.path.isfile(path):
            raise Sen12msInputError(f"{path}: " + ("a folder, not a split list" if os.path.isdir(path)
                                                   else "no such split list"))
        with open(path, encoding="utf-8") as f:
            out[name] = [line.strip() for line in f if line.strip()]
    return out


def plan(root: str, target: str = sp.DEFAULT_TARGET, label_threshold: float = sp.DEFAULT_THRESHOLD,
         s1_nan: str = "zero", val_fraction: float = rules.DEFAULT_VAL_FRACTION, split_seed: int = rules.DEFAULT_SEED,
         split_lists: dict[str, list[str]] | None = None, shard_size_mb: float = 150.0, compression: str = "NONE",
         on_error: str = "fail", dfc2020: bool = True) -> PreparePlan:
    """The archive -> the plan shared by the local and the Beam paths (one item per triplet).

    Args:
      root: the season folders' parent, or a folder of per-season tarballs.
      target: the reader's label (``spec.TARGETS``).
      label_threshold: the multi-label share.
      s1_nan: "zero" or "fail".
      val_fraction: the least share of non-hold-out patches in val (``splits.sen12ms.assign``).
      split_seed: the seed of the val scenes' draw.
      split_lists: user lists replacing the rules (split -> names).
      shard_size_mb: the largest shard size in MB.
      compression: "NONE" or "GZIP".
      on_error: "fail" or "skip".
      dfc2020: add DFC2020's sets found under ``root`` as the splits ``dfc2020_val`` / ``dfc2020_test``
        (not with user lists or tarball input).

    Returns:
      The PreparePlan; its ``extra`` block ``sen12ms`` holds both nomenclatures' class names, the
      label threshold, the NaN rule, the split rule and the val scenes; with ``split_lists`` also
      ``unlisted``: the count and patch ids of the triplets (and DFC2020 patches) found in no list.

    Raises:
      Sen12msInputError: no season folders and no tarballs, an unreadable tarball, a bad split list
        or lists that name no patch.
      ValueError: an unknown target or s1_nan mode.
    """
    if s1_nan not in raw.S1_NAN_MODES:
        raise ValueError(f"s1_nan must be one of {raw.S1_NAN_MODES}, got {s1_nan!r}")
    spec = sp.spec_for_target(target)
    tarballs: list[str] = []
    unlisted: list[str] = []  # with user lists: the triplets found in no list (never silently dropped)
    if os.path.isdir(root) and not any(d in sp.SEASONS for d in os.listdir(root)) and tarball.find_tarballs(root):
        tarballs = tarball.find_tarballs(root)
        keys = tarball.list_triplets(tarballs)
    else:
        keys = raw.find_triplets(root)
    if split_lists:
        try:
            items = rules.from_lists(split_lists)
        except ValueError as e:
            raise Sen12msInputError(f"--split_list: {e}") from None
        if not any(items.values()):
            raise Sen12msInputError(f"--split_list: {', '.join(sorted(split_lists))}: the lists name no patch")
        rule = "user lists"
        listed = {k for v in items.values() for k in v}
        found = list(keys) + ([k for v in raw.find_dfc2020(root).values() for k in v]
                              if dfc2020 and not tarballs else [])
        unlisted = [sp.patch_id(*k) for k in found if k not in listed]
    else:
        items = rules.assign(keys, val_fraction, split_seed)
        rule = f"test: 26 hold-out scenes; val: seeded scene-grouped draw (fraction {val_fraction}, seed {split_seed})"
    if dfc2020 and not split_lists and not tarballs:
        items.update(raw.find_dfc2020(root))
    per_shard = shards.records_per_shard(spec, spec.schema(target), shard_size_mb)
    produce_fn = functools.partial(raw.produce, root=root, threshold=label_threshold, s1_nan=s1_nan, target=target,
                                   tarballs=tuple(tarballs))
    run_flags = {"target": target, "dfc2020": dfc2020, "label_threshold": label_threshold, "s1_nan": s1_nan,
                 "val_fraction": val_fraction, "split_seed": split_seed,
                 "split_lists": sorted(split_lists) if split_lists else None, "input": "tarballs" if tarballs else "tree",
                 "shard_size_mb": shard_size_mb, "records_per_shard": per_shard, "compression": compression,
                 "on_error": on_error}
    val_scenes = sorted({f"{k[0]}/{k[1]}" for k in items.get("val", ())})
    extra = {"sen12ms": {
        "classes": {"igbp17": list(sp.IGBP_CLASSES), "dfc10": list(sp.DFC_CLASSES)},
        "igbp_to_dfc": list(sp.IGBP_TO_DFC),
        "targets": list(sp.TARGETS),
        "label_threshold": label_threshold,
        "s1_nan": (f"{s1_nan}: " + ("NaN pixels stored as 0 dB; every such patch and its count in 'notes'"
                                    if s1_nan == "zero" else "a triplet with NaN pixels is bad input")),
        "split_rule": rule,
        "val_scenes": val_scenes,
        "holdout_scenes": sorted(f"{s}/{n}" for s, n in rules.HOLDOUT_SCENES),
    }}
    if split_lists:
        extra["sen12ms"]["unlisted"] = {"count": len(unlisted), "reason": "in no --split_list",
                                        "patches": unlisted}
    return PreparePlan(spec=spec, schema=target, items=items, produce=produce_fn, records_per_shard=per_shard,
                       flags=run_flags, extra=extra, compression=compression, on_error=on_error,
                       input_bytes=sum(len(v) for v in items.values()) * TRIPLET_BYTES)


TRIPLET_BYTES = sp.PIXELS * (2 * 4 + 13 * 2 + 4 * 2)  # pixel bytes of s1 + s2 + lc
summary = cli.summary


def plan_from_flags() -> PreparePlan:
    """``plan`` with the command's flags (the dataset contract's entry point).

    Raises:
      UsageError: ``--val_fraction`` / ``--split_seed`` given with ``--split_list`` (which replaces
        the rules those flags describe).
    """
    f = FLAGS
    cli.required("root_folder")
    if f.split_list:
        given = [f"--{n}" for n in ("val_fraction", "split_seed") if FLAGS[n].present]
        if given:
            raise UsageError(f"{' and '.join(given)} describe the default split rules, which --split_list replaces: "
                             "give one or the other")
    lists = read_split_lists(f.split_list) if f.split_list else None
    return plan(f.root_folder, f.target, f.label_threshold, f.s1_nan, f.val_fraction, f.split_seed, lists,
                f.shard_size_mb, f.compression, f.on_error, f.dfc2020)


def main(argv: list[str]) -> int:
    """Prepare the archive named by the flags (``cli.prepare_main``)."""
    return cli.prepare_main(argv, plan_from_flags)


def run(argv: list[str] | None = None) -> None:
    """Console entry point: ``python -m prep sen12ms``."""
    cli.run_command(sys.modules[__name__], list(sys.argv if argv is None else argv))


if __name__ == "__main__":
    run()
