"""GeoTIFF tiles -> JPEG (quality 100): ``python -m prep lulc tojpeg --tiff_dir IN --out_dir OUT``.

Raw composites (bands B4, B3, B2 as Sentinel-2 DN, any integer or float dtype) get the dataset's
8-bit stretch, the Earth Engine visualisation the published tiles went through: ``(DN - 1) / (3558 -
1) * 255``, rounded and clipped to 0..255. Tiles that are already visualised (uint8) are converted
as they are, without a second stretch (``--stretch auto``, the default, tells them apart by dtype;
``raw``/``none`` force one rule). JPEGs are written by Pillow at quality 100 without chroma
subsampling (4:4:4), the closest JPEG gets to the TIFF. The folder layout (class folders) and the
file names are kept, with the extension ``.jpg``.
"""
from __future__ import annotations

import functools
import os

import numpy as np
from absl import flags

from prep import cli, files
from prep.datasets.sentinel2_global_lulc import raw
from prep.datasets.sentinel2_global_lulc import spec as sp
from prep.datasets.sentinel2_global_lulc.spec import LulcInputError

FLAGS = flags.FLAGS
QUALITY = 100


@functools.cache
def define_flags() -> None:
    """Declare the flags of ``tojpeg``."""
    flags.DEFINE_string("tiff_dir", None, "Folder of GeoTIFF tiles (class folders below it are walked).")
    flags.DEFINE_string("out_dir", None, "Folder for the JPEGs (same sub-folders and names, .jpg).")
    flags.DEFINE_enum("stretch", "auto", ["auto", "raw", "none"], "auto: stretch 1..3558 unless the TIFF is "
                      "uint8; raw: always stretch; none: never (the TIFF must be uint8).")


def stretch(x: np.ndarray, lo: float = sp.VIS_MIN, hi: float = sp.VIS_MAX) -> np.ndarray:
    """DN -> uint8: ``round((x - lo) / (hi - lo) * 255)`` clipped to 0..255 (any shape; NaN -> 0)."""
    y = (np.asarray(x, np.float64) - lo) / (hi - lo) * 255.0
    return np.clip(np.rint(np.nan_to_num(y, nan=0.0)), 0, 255).astype(np.uint8)


def tiff_to_rgb(path: str, mode: str = "auto") -> np.ndarray:
    """Reads bands 1..3 (R, G, B) of a GeoTIFF tile -> uint8 [H, W, 3], stretched per ``mode``.

    Raises:
      LulcInputError: fewer than 3 bands, or ``mode="none"`` on a TIFF that is not uint8.
    """
    import rasterio

    with rasterio.open(path) as src:
        if src.count < 3:
            raise LulcInputError(f"{path}: field 'bands': {src.count} band(s), expected 3 (B4, B3, B2)")
        x = src.read([1, 2, 3])
    x = np.moveaxis(x, 0, -1)
    if mode == "none" or (mode == "auto" and x.dtype == np.uint8):
        if x.dtype != np.uint8:
            raise LulcInputError(f"{path}: field 'dtype': {x.dtype} with --stretch none; expected uint8")
        return np.ascontiguousarray(x)
    return stretch(x)


def write_jpeg(path: str, rgb: np.ndarray, quality: int = QUALITY) -> None:
    """Writes uint8 [H, W, 3] RGB as a JPEG (Pillow, 4:4:4), atomically."""
    from PIL import Image

    with files.atomic_write(path, "wb", encoding=None) as fh:
        Image.fromarray(rgb, "RGB").save(fh, format="JPEG", quality=quality, subsampling=0)


def convert_tree(tiff_dir: str, out_dir: str, mode: str = "auto") -> int:
    """Converts every ``.tif``/``.tiff`` under ``tiff_dir`` to ``out_dir`` (same relative path, ``.jpg``).

    Returns:
      The number of JPEGs written.

    Raises:
      LulcInputError: ``tiff_dir`` missing or a TIFF that cannot be converted (naming it).
    """
    if not os.path.isdir(tiff_dir):
        raise LulcInputError(f"{tiff_dir}: no such folder")
    n = 0
    for dirpath, dirnames, filenames in os.walk(tiff_dir):
        dirnames.sort()
        for f in sorted(filenames):
            if not f.lower().endswith(raw.TIFF_EXT):
                continue
            rel = os.path.relpath(os.path.join(dirpath, f), tiff_dir)
            dst = os.path.join(out_dir, os.path.splitext(rel)[0] + ".jpg")
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            write_jpeg(dst, tiff_to_rgb(os.path.join(dirpath, f), mode))
            n += 1
    return n


def main(argv: list[str]) -> int:
    """Convert the tree the flags name."""
    cli.no_arguments(argv)
    cli.required("tiff_dir", "out_dir")
    n = convert_tree(FLAGS.tiff_dir, FLAGS.out_dir, FLAGS.stretch)
    print(f"{FLAGS.out_dir}: {n} JPEG tiles")
    return 0
