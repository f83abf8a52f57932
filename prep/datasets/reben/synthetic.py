"""Synthetic BigEarthNet v2 (reBEN) archives in the published layout, for tests, demos and benchmarks.

``generate_reben`` writes (``raw`` names every path)::

    metadata.parquet                                           patch_id, labels, split, country, s1_name,
    metadata_for_patches_with_snow_cloud_or_shadow.parquet     s2v1_name, contains_seasonal_snow,
                                                               contains_cloud_or_shadow (the same columns)
    BigEarthNet-S2/<product>/<patch_id>/<patch_id>_<band>.tif  12 uint16 bands at native size (120/60/20 px)
    BigEarthNet-S1/<product>/<s1_name>/<s1_name>_{VV,VH}.tif   float32 dB, 120 x 120
    Reference_Maps/<product>/<patch_id>/<patch_id>_reference_map.tif   uint16 CLC Level-3 codes, 120 x 120

The catalogue and the S2 pixels are BigEarthNet-S2 v1's synthetic ones
(``prep.datasets.bigearthnet.synthetic``: labels learnable from the pixels, snow and cloud/shadow
overlays), renamed to v2 patch ids (``<sat>_MSIL2A_<datetime>_N9999_R<orbit>_T<tile>_<row>_<col>``)
with the 43-class labels turned into the 19-class names v2 lists. The overlaid patches go to the
snow/cloud/shadow file with their flag set. The reference map draws each of the patch's 43-class
labels as a band of rows with its CLC code, crossed by a 2-pixel road (122), plus a corner of code
335 (glaciers, outside the 43 classes) when the patch has any label without a 19-class target; both
have no 19-class target. S1: a dB level per 19-class label plus noise.
Deterministic in the seed.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from prep import cli, tiff
from prep.datasets.bigearthnet import spec as ben
from prep.datasets.bigearthnet import synthetic as v1
from prep.datasets.contract import ContractArchive
from prep.datasets.reben import raw
from prep.datasets.reben import spec as sp
from prep.errors import UsageError

COUNTRIES = {"29SND": "Portugal", "29UPU": "Ireland", "31UFS": "Belgium", "32TNS": "Switzerland",
             "33UUP": "Austria", "34VER": "Finland", "35VPK": "Finland", "35ULA": "Lithuania"}
SPLIT_VALUES = {"train": "train", "val": "validation", "test": "test"}
ROAD_CODE = 122  # road and rail networks: among BigEarthNet's 43 classes, no 19-class target
UNMAPPED_CODE = 335  # glaciers and perpetual snow: a CLC Level-3 code outside BigEarthNet's 43 classes
_S1_LEVEL_DB = np.linspace(-20.0, -6.0, len(ben.LABELS_19)).astype(np.float32)  # VV level per 19-class label


def names_of(spec: v1.PatchSpec) -> dict:
    """The v2 names of a v1 synthetic patch: ``patch_id``, ``s1_name``, ``tile``, ``country``."""
    parts = spec.tile_source.split("_")  # S2A_MSIL1C_<date>T<time>_N0205_R080_T29SND_<processed>.SAFE
    orbit, tile = parts[4], parts[5][1:]
    prefix, col, row = spec.name.rsplit("_", 2)
    date = prefix.split("_")[2]
    patch_id = f"{prefix}_N9999_{orbit}_T{tile}_{int(row):02d}_{int(col):02d}"
    s1_name = f"S1A_IW_GRDH_1SDV_{date[:8]}T{(int(date[9:]) + 70000) % 240000:06d}_{tile}_{int(row):02d}_{int(col):02d}"
    return {"patch_id": patch_id, "s1_name": s1_name, "tile": tile, "country": COUNTRIES.get(tile, "")}


def reference_map(spec: v1.PatchSpec) -> np.ndarray:
    """The 120 x 120 uint16 CLC-code map of a patch: one band of rows per 43-class label (see the module doc)."""
    codes = [sp.CLC_CODES_43[i] for i in spec.labels43]
    rows = np.array_split(np.arange(sp.PATCH[0]), len(codes))
    out = np.zeros(sp.PATCH, np.uint16)
    for code, r in zip(codes, rows):
        out[r] = code
    out[:, 60:62] = ROAD_CODE  # a road across every patch: a code without a 19-class target
    if any(ben.MAP_43_TO_19[i] < 0 for i in spec.labels43):
        out[:10, :10] = UNMAPPED_CODE
    return out


def s1_bands(spec: v1.PatchSpec, seed: int) -> dict[str, np.ndarray]:
    """VV and VH (float32 dB, 120 x 120) of a patch: its labels' levels plus noise."""
    rng = np.random.default_rng([int(seed), 3, spec.index])
    idx = ben.indices_19(spec.labels43) or [0]
    level = float(np.mean(_S1_LEVEL_DB[idx]))
    vv = (level + 1.5 * rng.standard_normal(sp.PATCH)).astype(np.float32)
    vh = (vv - 6.0 + 0.5 * rng.standard_normal(sp.PATCH)).astype(np.float32)
    return {"VV": vv, "VH": vh}


def write_patch(root: str | os.PathLike, spec: v1.PatchSpec, seed: int = 0) -> dict:
    """Write one patch's S2 bands, S1 twin and reference map under ``root``; returns its metadata row."""
    root = os.fspath(root)
    n = names_of(spec)
    bands = v1.synthesize_bands(spec, seed)
    for b in sp.S2_BANDS:
        path = raw.s2_band_path(root, n["patch_id"], b.name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tiff.write_band(path, bands[b.name], spec.epsg, spec.ulx, spec.uly, b.resolution_m)
    for name, px in s1_bands(spec, seed).items():
        path = raw.s1_band_path(root, n["s1_name"], name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tiff.write_band(path, px, spec.epsg, spec.ulx, spec.uly, 10)
    path = raw.reference_map_path(root, n["patch_id"])
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tiff.write_band(path, reference_map(spec), spec.epsg, spec.ulx, spec.uly, 10)
    return {"patch_id": n["patch_id"], "labels": [ben.LABELS_19[i] for i in ben.indices_19(spec.labels43)],
            "split": SPLIT_VALUES[spec.split], "country": n["country"], "s1_name": n["s1_name"],
            "s2v1_name": spec.name, "contains_seasonal_snow": spec.overlay == "snow",
            "contains_cloud_or_shadow": spec.overlay == "cloud"}


def write_metadata(path: str | os.PathLike, rows: Sequence[dict]) -> None:
    """Write metadata rows as a reBEN metadata parquet file (``labels`` a list of strings, flags bool)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("patch_id", pa.string()), ("labels", pa.list_(pa.string())), ("split", pa.string()),
                        ("country", pa.string()), ("s1_name", pa.string()), ("s2v1_name", pa.string()),
                        ("contains_seasonal_snow", pa.bool_()), ("contains_cloud_or_shadow", pa.bool_())])
    table = pa.Table.from_pylist(list(rows), schema=schema)
    pq.write_table(table, os.fspath(path))


def generate_reben(out_dir: str | os.PathLike, num_patches: int, seed: int = 0, *,
                   split_fractions: Sequence[float] = (0.6, 0.2, 0.2), num_snow: int | None = None,
                   num_cloud: int | None = None) -> list[dict]:
    """Write a synthetic reBEN archive under ``out_dir``; returns every metadata row (both files).

    Args:
      out_dir: the archive folder (created).
      num_patches: patches in all, the snow/cloud ones included.
      seed: random seed (same seed, same files).
      split_fractions: relative sizes of train, validation and test.
      num_snow: patches with a snow overlay, listed in the snow/cloud file (default: 1 per 100, none under 10).
      num_cloud: patches with a cloud/shadow overlay, likewise.

    Raises:
      ValueError: as ``bigearthnet.synthetic.plan_bigearthnet``.
    """
    specs = v1.plan_bigearthnet(num_patches, seed, split_fractions=split_fractions, num_no_target=0,
                                num_snow=num_snow, num_cloud=num_cloud)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    rows = [write_patch(out_dir, s, seed) for s in specs]
    flagged = [r["contains_seasonal_snow"] or r["contains_cloud_or_shadow"] for r in rows]
    write_metadata(os.path.join(out_dir, raw.METADATA), [r for r, f in zip(rows, flagged) if not f])
    write_metadata(os.path.join(out_dir, raw.SNOW_CLOUD_METADATA), [r for r, f in zip(rows, flagged) if f])
    return rows


def contract_archive(out_dir: str, seed: int = 0) -> ContractArchive:
    """A small archive (40 patches, one with snow and one with cloud/shadow) for the contract test, with S1 and maps."""
    generate_reben(out_dir, 40, seed=seed, num_snow=1, num_cloud=1)
    return ContractArchive(raw_dir=out_dir, prepare_args=("--root_folder", out_dir, "--with_s1", "--reference_maps"),
                           tfds_config="s1s2_refmap", tfds_split_names={"train": "train", "validation": "val",
                                                                        "test": "test"})


# --- command line ---------------------------------------------------------------------------

@functools.cache
def define_flags() -> None:
    """Declare the command's absl flags (``python -m prep.synthetic reben``)."""
    from absl import flags

    flags.DEFINE_string("out_dir", None, "Output folder (required).", short_name="o")
    flags.DEFINE_integer("num_patches", 200, "Number of patches (the snow/cloud ones included).", lower_bound=1)
    flags.DEFINE_integer("seed", 0, "Random seed; the same seed writes the same files.", lower_bound=0)
    flags.DEFINE_integer("num_snow", None, "Patches with seasonal snow (default: 1 per 100).", lower_bound=0)
    flags.DEFINE_integer("num_cloud", None, "Patches with cloud/shadow (default: 1 per 100).", lower_bound=0)
    flags.DEFINE_bool("overwrite", False, "Delete an --out_dir that already holds files first.")


def main(argv: list[str]) -> int:
    """Write the archive the flags describe; print the row counts of both metadata files."""
    from absl import flags

    f = flags.FLAGS
    cli.no_arguments(argv)
    cli.required("out_dir")
    cli.refuse_nonempty(f.out_dir, f.overwrite)
    try:
        rows = generate_reben(f.out_dir, f.num_patches, f.seed, num_snow=f.num_snow, num_cloud=f.num_cloud)
    except ValueError as e:  # too many snow/cloud patches for --num_patches (planned before any file is written)
        raise UsageError(str(e)) from None
    flagged = sum(r["contains_seasonal_snow"] or r["contains_cloud_or_shadow"] for r in rows)
    print(f"wrote {len(rows)} synthetic reBEN patches to {f.out_dir}: {len(rows) - flagged} in {raw.METADATA}, "
          f"{flagged} in {raw.SNOW_CLOUD_METADATA}")
    return 0
