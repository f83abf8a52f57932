"""Reading the raw EuroSAT (multispectral) archive: class folders of 13-band GeoTIFFs -> records.

Layout: ``<root>/<ClassName>/<ClassName>_<n>.tif`` (``AnnualCrop/AnnualCrop_1.tif``; n from 1), the
10 class folders found directly under the root or under one of ``LAYOUT_FOLDERS``: ``EuroSAT_MS``
(the current download) or ``ds/images/remote_sensing/otherDatasets/sentinel_2/tif`` (the first
``EuroSATallBands.zip``).

Shared by the preparation command and the TFDS builder; flag-free. Every problem with an image (a
file that does not open, a band count other than 13, a shape other than 64 x 64, a dtype other than
uint16, a file name that is not ``<its folder>_<n>.tif``) becomes a message naming the file and the
problem; ``produce`` turns those into ``Skip`` results.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Iterator, Sequence

import numpy as np

from prep.datasets.eurosat import spec as sp
from prep.datasets.eurosat.spec import EurosatInputError
from prep.shards import Record, Skip

LAYOUT_FOLDERS = ("EuroSAT_MS", "EuroSATallBands", os.path.join("ds", "images", "remote_sensing", "otherDatasets",
                                                                  "sentinel_2", "tif"))


def class_root(root: str) -> str:
    """The folder holding the class folders: ``root`` itself or one of ``LAYOUT_FOLDERS`` under it.

    Raises:
      EurosatInputError: ``root`` is not a folder, or neither it nor a layout folder holds a class folder.
    """
    if not os.path.isdir(root):
        raise EurosatInputError("no such folder", path=root)
    for base in (root, *(os.path.join(root, sub) for sub in LAYOUT_FOLDERS)):
        if os.path.isdir(base) and any(os.path.isdir(os.path.join(base, c)) for c in sp.CLASS_NAMES):
            return base
    raise EurosatInputError(f"no EuroSAT class folder ({', '.join(sp.CLASS_NAMES[:3])}, ...) in it or in "
                            f"{' or '.join(LAYOUT_FOLDERS[:2])}/", path=root)


@dataclasses.dataclass(frozen=True)
class Scan:
    """What ``scan`` found under the class-folder root.

    Attributes:
      base: the folder holding the class folders (absolute).
      images: (class name, image number) -> relative path ``<ClassName>/<ClassName>_<n>.tif``, in
        (class index, number) order.
      bad: (relative path, reason) of ``.tif`` files in a class folder whose name is not
        ``<that class>_<n>.tif``.
      other_folders: folders beside the class folders that are not EuroSAT classes (not read).
    """

    base: str
    images: dict[tuple[str, int], str]
    bad: tuple[tuple[str, str], ...]
    other_folders: tuple[str, ...]


def scan(root: str) -> Scan:
    """Lists every image of the class-folder layout under ``root`` (no file is opened).

    Raises:
      EurosatInputError: no class folder (``class_root``).
    """
    base = class_root(root)
    found, bad, other = [], [], []
    for folder in sorted(os.listdir(base)):
        path = os.path.join(base, folder)
        if not os.path.isdir(path):
            continue
        if folder not in sp.CLASS_INDEX:
            other.append(folder)
            continue
        for f in sorted(os.listdir(path)):
            if not f.lower().endswith((".tif", ".tiff")):
                continue
            rel = f"{folder}/{f}"
            try:
                cls, number = sp.parse_file_name(f)
            except ValueError as e:
                bad.append((rel, f"{os.path.join(path, f)}: {e}"))
                continue
            if cls != folder:
                bad.append((rel, f"{os.path.join(path, f)}: named for class {cls!r} but in the class folder "
                                 f"{folder!r}"))
                continue
            found.append(((cls, number), rel))
    found.sort(key=lambda kv: (sp.CLASS_INDEX[kv[0][0]], kv[0][1]))
    return Scan(os.path.abspath(base), dict(found), tuple(bad), tuple(other))


def read_tif(path: str) -> tuple[np.ndarray, dict]:
    """One EuroSAT GeoTIFF, checked: 13 bands, 64 x 64, uint16.

    Args:
      path: the file (named in every message).

    Returns:
      (uint16 pixels [13, 64, 64] in stored band order (``spec.BAND_NAMES``: B01 ... B12, B8A),
      georef ``{"crs": WKT ('' if none), "epsg": int (0 if none), "transform": 6 floats a .. f}``).

    Raises:
      EurosatInputError: a missing or unreadable file, or a wrong band count, shape or dtype.
    """
    import rasterio
    from rasterio.errors import RasterioError

    if not os.path.exists(path):
        raise EurosatInputError("missing", path=path)
    try:
        with rasterio.open(path) as src:
            if src.count != len(sp.BAND_NAMES):
                raise EurosatInputError(f"{src.count} bands, expected {len(sp.BAND_NAMES)} "
                                        f"({' '.join(sp.BAND_NAMES)})", path=path)
            if (src.height, src.width) != sp.PATCH:
                raise EurosatInputError(f"shape ({src.height}, {src.width}), expected {sp.PATCH}", path=path)
            if set(src.dtypes) != {sp.DTYPE}:
                raise EurosatInputError(f"dtype {src.dtypes[0]}, expected {sp.DTYPE}", path=path)
            pixels = src.read()
            crs, t = src.crs, src.transform
            georef = {"crs": crs.to_wkt() if crs else "", "epsg": int(crs.to_epsg() or 0) if crs else 0,
                      "transform": (t.a, t.b, t.c, t.d, t.e, t.f)}
    except RasterioError as e:
        raise EurosatInputError(f"not a readable GeoTIFF ({e})", path=path) from None
    return pixels, georef


def produce(items: Sequence[str], base: str) -> Iterator[Record | Skip]:
    """Records of one shard: one Record or Skip per image, in order.

    Args:
      items: relative paths ``<ClassName>/<ClassName>_<n>.tif`` under ``base``.
      base: the folder holding the class folders.

    Yields:
      A ``Record`` (values per ``spec.record_values``, the 13 bands for statistics, the class index),
      or a ``Skip`` whose reason names the file and the problem.
    """
    for rel in items:
        key = rel.rsplit("/", 1)[-1][:-4]
        try:
            pixels, georef = read_tif(os.path.join(base, rel))
        except EurosatInputError as e:
            yield Skip(key, str(e))
            continue
        values = sp.record_values(rel, pixels, georef)
        yield Record(key, values, dict(zip(sp.BAND_NAMES, pixels)), values["label/index"])
