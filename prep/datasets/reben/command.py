"""Prepare BigEarthNet v2 (reBEN) as sharded TFRecords: ``python -m prep reben``.

    python -m prep reben -r BigEarthNetv2 -o records                            # S2 only, 19 classes
    python -m prep reben -r BigEarthNetv2 -o records --with_s1 --reference_maps  # + VV, VH, the pixel labels
    python -m prep reben -r BigEarthNetv2 -o records --class_order alphabetical  # a peer's class order
    python -m prep reben -r BigEarthNetv2 -o records --reference_maps --target mask  # segmentation targets

Input: ``--root_folder`` holding ``metadata.parquet``, ``BigEarthNet-S2/`` and, as asked,
``BigEarthNet-S1/`` and ``Reference_Maps/`` (the published layout, ``raw``). The splits are the
parquet's ``split`` column (train, validation -> val, test). Labels are the parquet's 19-class
names; records hold the multi-hot, the indices and the names in the class order of
``--class_order`` (the nomenclature's by default; the manifest's ``reben`` block records the order
and each class's nomenclature index). ``--reference_maps`` adds ``reference_map``: 120 x 120 uint8
per-pixel class indices from the CLC codes, 255 where a code has no 19-class target.
``--target mask`` (with ``--reference_maps``; without, a usage error) makes that map the reader's
target: task segmentation, per-pixel class ids in the manifest's class order, 255 -> ignored
(``IGNORE_INDEX``); the records are the same as ``--target multi_label``'s (the default).

Snow, cloud and shadow: the patches of
``metadata_for_patches_with_snow_cloud_or_shadow.parquet`` (and any row whose
``contains_seasonal_snow`` or ``contains_cloud_or_shadow`` is true) are left out by default and
reported as excluded with the reason, in their split; ``--keep_excluded`` writes them, their flags
in ``meta/seasonal_snow`` and ``meta/cloud_or_shadow``. Listed = written + excluded + skipped (+
missing) per split, the counts of both files in the manifest.

Bad input: a malformed parquet file, a missing column or a split value other than train, validation
or test stops the run (``error: <file>: <problem>``); a row with an unknown label name, or a patch
whose band file is missing or wrong, stops it naming the file too, or with ``--on_error=skip`` is
listed in the manifest as skipped. Patches without an S2 folder are an error, or with
``--on_error=skip`` listed in ``OUT/missing.csv``.
"""
from __future__ import annotations

import functools
import os
import sys

from absl import flags

from prep import cli, shards
from prep.datasets.contract import PreparePlan
from prep.datasets.reben import raw
from prep.datasets.reben import spec as sp
from prep.errors import PrepError, UsageError

FLAGS = flags.FLAGS


@functools.cache  # declared once per process, however often run() or a test calls it
def define_flags() -> None:
    """Declare the command's flags (called by run(); importing this module defines none)."""
    flags.DEFINE_string("root_folder", None, "The reBEN folder: metadata.parquet, BigEarthNet-S2/, and as asked "
                        "BigEarthNet-S1/ and Reference_Maps/.", short_name="r")
    flags.DEFINE_string("metadata", None, f"The metadata file (default: {raw.METADATA} in --root_folder).")
    flags.DEFINE_string("snow_cloud_metadata", None, f"The metadata of the snow/cloud/shadow patches (default: "
                        f"{raw.SNOW_CLOUD_METADATA} in --root_folder, when there; 'none' to read none).")
    flags.DEFINE_bool("with_s1", False, "Also write the Sentinel-1 twin's VV and VH (float32 dB, 120x120) from "
                      "BigEarthNet-S1/.")
    flags.DEFINE_bool("reference_maps", False, "Also write 'reference_map': the CLC reference map of Reference_Maps/ "
                      "as 120x120 uint8 19-class indices per pixel, 255 = ignore (codes without a 19-class target).")
    flags.DEFINE_enum("class_order", sp.DEFAULT_CLASS_ORDER, list(sp.CLASS_ORDERS), "Class order of the multi-hot, "
                      "the indices and the reference map: 'nomenclature' (the 19-class nomenclature's order, as "
                      "BigEarthNet v1) or 'alphabetical' (names sorted, the order of a peer loader).")
    flags.DEFINE_enum("target", sp.DEFAULT_TARGET, list(sp.TARGETS), "What the reader delivers: 'multi_label' (the "
                      "19-class multi-hot) or 'mask' (segmentation: the reference map's per-pixel class ids, 255 "
                      "ignored; needs --reference_maps).")
    flags.DEFINE_bool("keep_excluded", False, "Write the snow/cloud/shadow patches too (left out by default and "
                      "reported as excluded).")
    cli.define_prepare_flags(out_aliases=("out_folder",))


def metadata_files(root: str, metadata: str | None = None, snow_cloud_metadata: str | None = None) -> list[str]:
    """The metadata files to read: ``metadata`` (or the root's), then the snow/cloud file if any.

    ``snow_cloud_metadata``: a path, None for the root's file when it is there, ``"none"`` for none.
    A file given by path must exist (``raw.read_metadata`` says so when it does not).
    """
    out = [metadata or os.path.join(root, raw.METADATA)]
    if snow_cloud_metadata is None:
        default = os.path.join(root, raw.SNOW_CLOUD_METADATA)
        if os.path.isfile(default):
            out.append(default)
    elif snow_cloud_metadata != "none":
        out.append(snow_cloud_metadata)
    return out


def plan(root: str, metadata: str | None = None, snow_cloud_metadata: str | None = None, with_s1: bool = False,
         reference_maps: bool = False, class_order: str = sp.DEFAULT_CLASS_ORDER, keep_excluded: bool = False,
         shard_size_mb: float = 150.0, compression: str = "NONE", on_error: str = "fail",
         target: str = sp.DEFAULT_TARGET) -> PreparePlan:
    """The metadata -> the plan shared by the local and the Beam paths (one item per patch).

    Args:
      root: the reBEN folder.
      metadata: the metadata parquet file (None: ``metadata.parquet`` in ``root``).
      snow_cloud_metadata: the snow/cloud/shadow metadata (None: the root's, when there; "none": none).
      with_s1: write VV and VH.
      reference_maps: write the per-pixel 19-class reference map.
      class_order: "nomenclature" or "alphabetical".
      keep_excluded: write the snow/cloud/shadow patches too.
      shard_size_mb: largest shard size in MB.
      compression: "NONE" or "GZIP".
      on_error: "fail" or "skip".
      target: "multi_label" or "mask" (segmentation on the reference map; needs ``reference_maps``).

    Returns:
      The PreparePlan; its ``reben`` block records the class order, each class's nomenclature
      index, the metadata files and their row counts, the reference-map coding and the snow/cloud rule.

    Raises:
      RebenInputError: no root folder or S2 folder, no ``BigEarthNet-S1`` / ``Reference_Maps`` folder
        when ``with_s1`` / ``reference_maps`` asks for it, a malformed metadata file, or
        (``on_error="fail"``) a row with an unknown label.
      PrepError: (``on_error="fail"``) listed patches without an S2 folder.
      UsageError: target "mask" without ``reference_maps``.
      ValueError: an unknown class order or target.
    """
    if target == "mask" and not reference_maps:
        raise UsageError("--target mask needs --reference_maps (the per-pixel targets are the reference maps)")
    if not os.path.isdir(root):
        raise sp.RebenInputError("not a folder", path=root)
    for asked, sub, flag in ((with_s1, raw.S1_DIR, "--with_s1"), (reference_maps, raw.REFERENCE_DIR, "--reference_maps")):
        if asked and not os.path.isdir(os.path.join(root, sub)):
            raise sp.RebenInputError(f"no such folder ({flag} reads it)", path=os.path.join(root, sub),
                                     hint=f"extract it under the root, or leave out {flag}")
    spec = sp.spec_for(with_s1, class_order, reference_maps, target)
    schema = sp.schema_name(with_s1, reference_maps, target)
    paths = metadata_files(root, metadata, snow_cloud_metadata)
    sources = []
    for i, path in enumerate(paths):
        rows = raw.read_metadata(path)
        bad = next((r for r in rows if r.problem), None)
        if bad and on_error == "fail":
            raise sp.RebenInputError(f"row {bad.number} ({bad.patch.patch_id}): {bad.problem}", path=path,
                                     hint="correct the file, or pass --on_error=skip to leave such rows out")
        sources.append((os.path.basename(path), rows, i > 0))
    p = raw.plan_patches(sources, keep_excluded, raw.patch_folders(root))
    if p.missing and on_error == "fail":
        first = p.missing[0]
        raise PrepError(f"{len(p.missing):,} of the listed patches have no folder under {raw.S2_DIR}/<product>/, "
                        f"e.g. {first['key']} (split {first['split']})", path=root,
                        hint="pass --on_error=skip to prepare the patches present (the missing ones are then "
                             "listed in OUT/missing.csv)")
    per_shard = shards.records_per_shard(spec, spec.schema(schema), shard_size_mb)
    run_flags = {"with_s1": with_s1, "reference_maps": reference_maps, "target": target, "class_order": class_order,
                 "keep_excluded": keep_excluded, "metadata": [os.path.basename(f) for f in paths],
                 "shard_size_mb": shard_size_mb, "records_per_shard": per_shard, "compression": compression,
                 "on_error": on_error}
    extra = {"reben": {
        "class_order": class_order,
        "nomenclature_index": list(sp.nomenclature_index(class_order)),
        "nomenclature": list(sp.LABELS_19),
        "metadata_rows": p.counts,
        "snow_cloud_shadow": ("written, flags in meta/seasonal_snow and meta/cloud_or_shadow" if keep_excluded
                              else "excluded (reason per patch in 'excluded')"),
        "reference_map": ({"feature": sp.REFERENCE_MAP_KEY, "dtype": "uint8", "shape": list(sp.PATCH),
                           "ignore": sp.IGNORE, "clc_to_class": {str(c): int(sp.clc_lookup(class_order)[c])
                                                                 for c in sorted(sp.CLC_TO_19)}}
                          if reference_maps else None),
    }}
    produce = functools.partial(raw.produce, root=os.path.abspath(root), schema_name=schema,
                                class_order=class_order, with_s1=with_s1, reference_maps=reference_maps)
    patch_bytes = sp.PIXELS_S2 * 2 + (2 * sp.PATCH[0] * sp.PATCH[1] * 4 if with_s1 else 0) + (
        sp.PATCH[0] * sp.PATCH[1] * 2 if reference_maps else 0)
    return PreparePlan(spec=spec, schema=schema, items=p.items, produce=produce, records_per_shard=per_shard,
                       flags=run_flags, excluded=p.excluded, skipped=p.skipped, missing=p.missing, extra=extra,
                       compression=compression, on_error=on_error,
                       input_bytes=sum(len(v) for v in p.items.values()) * patch_bytes)


def plan_from_flags() -> PreparePlan:
    """``plan`` with the command's flags (the dataset contract's entry point)."""
    f = FLAGS
    cli.required("root_folder")
    return plan(f.root_folder, f.metadata, f.snow_cloud_metadata, f.with_s1, f.reference_maps, f.class_order,
                f.keep_excluded, f.shard_size_mb, f.compression, f.on_error, f.target)


summary = cli.summary  # the end-of-run table, shared by every preparation command


def main(argv: list[str]) -> int:
    """Prepare the archive named by the flags (``cli.prepare_main``)."""
    return cli.prepare_main(argv, plan_from_flags)


def run(argv: list[str] | None = None) -> None:
    """Console entry point: ``python -m prep reben``."""
    cli.run_command(sys.modules[__name__], list(sys.argv if argv is None else argv))


if __name__ == "__main__":
    run()
