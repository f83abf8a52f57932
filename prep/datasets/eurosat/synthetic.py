"""Synthetic EuroSAT (multispectral) archives in the real layout, for tests, demos and benchmarks.

``write_archive`` writes ``<root>/EuroSAT_MS/<ClassName>/<ClassName>_<n>.tif``: 64 x 64 GeoTIFFs of
13 uint16 bands in the stored order (B01 ... B12, then B8A), in a UTM CRS at 10 m, numbered from 1
per class as published. Each class has its own spectral signature (a per-band level) and texture, so
labels are learnable from the pixels; B8A (file band 13) follows B08's level, as in real scenes, so a
reader that takes file band 9 for B8A gets B09's much lower level. ``split_files=True`` also writes
the common split files ``eurosat-{train,val,test}.txt`` beside ``EuroSAT_MS/``: ``.jpg`` names (the
RGB version's), 60 / 20 / 20 per class, in a shuffled line order.
"""
from __future__ import annotations

import functools
import os

import numpy as np

from prep import cli
from prep.datasets.contract import ContractArchive
from prep.datasets.eurosat import spec as sp
from splits import eurosat as rules

LAYOUT = "EuroSAT_MS"
# A typical L1C level per stored band (B01 ... B12, B8A), DN.
BASE = np.array([1400, 1200, 1100, 1000, 1300, 1800, 2100, 2000, 700, 20, 1700, 1100, 2250], np.float64)


def signature(class_index: int) -> np.ndarray:
    """The per-band mean level (DN, float64 [13], stored band order) of one class's images."""
    c = float(class_index)
    level = BASE * (0.75 + 0.05 * c)
    level[3] += 90 * c  # B04 red
    level[7] -= 60 * c  # B08 NIR
    level[12] = level[7] * 1.1  # B8A tracks B08
    level[10] += 40 * (c % 3)  # B11 SWIR
    return level


def write_tif(path: str, pixels: np.ndarray, epsg: int = 32632, ulx: float = 500000.0, uly: float = 5000000.0,
              dtype: str | None = None) -> None:
    """Write one GeoTIFF: ``pixels`` [bands, rows, cols] as is, in ``EPSG:<epsg>`` at 10 m from (ulx, uly).

    Args:
      path: the file to write (folders are created).
      pixels: the bands, [bands, rows, cols].
      epsg: the CRS's EPSG code.
      ulx: x of the upper-left corner, metres.
      uly: y of the upper-left corner, metres.
      dtype: the file's dtype (default: the array's).
    """
    import rasterio
    from affine import Affine

    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with rasterio.open(path, "w", driver="GTiff", width=pixels.shape[2], height=pixels.shape[1],
                       count=pixels.shape[0], dtype=dtype or pixels.dtype.name, crs=f"EPSG:{epsg}",
                       transform=Affine(10.0, 0.0, ulx, 0.0, -10.0, uly)) as dst:
        dst.write(pixels)


def image(class_index: int, rng: np.random.Generator) -> np.ndarray:
    """One synthetic image of a class: uint16 [13, 64, 64], stored band order."""
    level = signature(class_index)
    yy, xx = np.mgrid[0:sp.PATCH[0], 0:sp.PATCH[1]]
    period = 4 + 2 * class_index  # class texture: stripes of a class-dependent period
    texture = np.sin(2 * np.pi * (xx + yy * (class_index % 2)) / period)
    x = level[:, None, None] * (1 + 0.08 * texture) + rng.normal(0, 40, (13, *sp.PATCH))
    return np.clip(np.rint(x), 0, 65535).astype(np.uint16)


def write_archive(root: str, per_class: int | dict[str, int] = 5, seed: int = 0, split_files: bool = False,
                  layout: str = LAYOUT) -> list[str]:
    """Write a class-folder archive (and optionally the common split files).

    Args:
      root: output folder (``<root>/<layout>/<ClassName>/...``).
      per_class: images per class (numbered 1..n), or class name -> count (classes left out get none).
      seed: random seed (same seed, same files).
      split_files: also write ``<root>/eurosat-{train,val,test}.txt`` of ``.jpg`` names.
      layout: the folder holding the class folders ('' for the root itself).

    Returns:
      The relative paths ``<ClassName>/<ClassName>_<n>.tif`` written, in class, number order.
    """
    counts = per_class if isinstance(per_class, dict) else {c: per_class for c in sp.CLASS_NAMES}
    base = os.path.join(root, layout) if layout else root
    rng = np.random.default_rng(seed)
    written = []
    for ci, cls in enumerate(sp.CLASS_NAMES):
        for n in range(1, counts.get(cls, 0) + 1):
            rel = f"{cls}/{cls}_{n}.tif"
            epsg = 32629 + (ci + n) % 8  # UTM zones 29N..36N, as over Europe
            write_tif(os.path.join(base, rel), image(ci, rng), epsg, 300000.0 + 640.0 * n, 5200000.0 - 640.0 * ci)
            written.append(rel)
    if split_files:
        write_split_files(root, [(r.split("/")[0], int(r[:-4].rsplit("_", 1)[1])) for r in written], seed)
    return written


def write_split_files(root: str, keys: list[tuple[str, int]], seed: int = 0) -> dict[str, str]:
    """``eurosat-{train,val,test}.txt`` in ``root``: the stratified 60/20/20 split as ``.jpg`` names, shuffled.

    Returns:
      split name -> the file written.
    """
    rng = np.random.default_rng(seed + 1)
    out = {}
    for split, ks in rules.stratified(keys, rules.DEFAULT_FRACTIONS, seed + 7).items():
        names = [f"{c}_{n}.jpg" for c, n in ks]
        path = os.path.join(root, f"eurosat-{split}.txt")
        with open(path, "w", encoding="utf-8") as f:
            f.writelines(names[i] + "\n" for i in rng.permutation(len(names)))
        out[split] = path
    return out


def contract_archive(out_dir: str, seed: int = 0) -> ContractArchive:
    """A small archive (5 images per class: 30 / 10 / 10 in the stratified split) for the contract test."""
    write_archive(out_dir, 5, seed=seed)
    return ContractArchive(raw_dir=out_dir, prepare_args=("--root_folder", out_dir), tfds_config="all",
                           tfds_split_names={"train": "train", "validation": "val", "test": "test"})


# --- command line ---------------------------------------------------------------------------

@functools.cache
def define_flags() -> None:
    """Declare the command's absl flags (``python -m prep.synthetic eurosat``)."""
    from absl import flags

    flags.DEFINE_string("out_dir", None, "Output folder (required): EuroSAT_MS/<ClassName>/ go in it.", short_name="o")
    flags.DEFINE_integer("per_class", 20, "Images per class.", lower_bound=1)
    flags.DEFINE_integer("seed", 0, "Random seed (same seed, same files).", lower_bound=0)
    flags.DEFINE_bool("split_files", True, "Also write the common split files eurosat-{train,val,test}.txt "
                      "(.jpg names) beside EuroSAT_MS/.")
    flags.DEFINE_bool("overwrite", False, "Delete an --out_dir that already holds files first.")


def main(argv: list[str]) -> int:
    """Write the archive the flags describe; print the number of images."""
    from absl import flags

    f = flags.FLAGS
    cli.no_arguments(argv)
    cli.required("out_dir")
    cli.refuse_nonempty(f.out_dir, f.overwrite)
    written = write_archive(f.out_dir, f.per_class, seed=f.seed, split_files=f.split_files)
    print(f"{len(written)} images in {os.path.join(f.out_dir, LAYOUT)}")
    return 0
