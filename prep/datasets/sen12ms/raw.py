"""Reading the raw SEN12MS archive: the extracted season tree (or the per-season tarballs) -> records.

Layout: ``<root>/ROIs1158_spring/s2_63/ROIs1158_spring_s2_63_p100.tif`` and its twins in
``s1_63/`` and ``lc_63/`` (``_s2_`` replaced by ``_s1_`` / ``_lc_``); the four season folders
``ROIs1158_spring``, ``ROIs1868_summer``, ``ROIs1970_fall``, ``ROIs2017_winter``.

Shared by the preparation command and the TFDS builder; flag-free. Every problem with a triplet
(a missing twin, a file that does not open, a wrong band count, shape or dtype, IGBP codes outside
1..17, S1 NaNs under ``s1_nan="fail"``) becomes a message naming the file and the problem;
``produce`` turns those into ``Skip`` results.
"""
from __future__ import annotations

import os
import re
from typing import Callable, Iterator, Sequence

import numpy as np

from prep.datasets.sen12ms import spec as sp
from prep.datasets.sen12ms.spec import Sen12msInputError
from prep.shards import Record, Skip

_FILE = re.compile(r"^(ROIs\d{4}_[a-z]+)_(s1|s2|lc)_(\d+)_p(\d+)\.tif$")
_FOLDER = re.compile(r"^(s1|s2|lc)_(\d+)$")
S1_NAN_MODES = ("zero", "fail")

Key = tuple[str, int, int]


def rel_path(key: Key, modality: str) -> str:
    """The file of one modality of a triplet, relative to the root (``ROIs1158_spring/s1_63/ROIs1158_spring_s1_63_p1.tif``)."""
    season, scene, patch = key
    return f"{season}/{modality}_{scene}/{season}_{modality}_{scene}_p{patch}.tif"


def find_triplets(root: str) -> list[Key]:
    """Every (season, scene, patch) with at least one file of the three modalities under ``root``, sorted.

    Season folders (the four of ``spec.SEASONS``) are found at ``root`` itself; other folders
    (e.g. DFC2020's ``ROIs0000_validation`` and ``ROIs0000_test``) are not SEN12MS triplets and are
    left out. A patch that lacks a twin is listed (its read reports the missing file).

    Raises:
      Sen12msInputError: ``root`` is not a folder or holds no season folder.
    """
    if not os.path.isdir(root):
        raise Sen12msInputError(f"{root}: no such folder")
    seasons = sorted(d for d in os.listdir(root) if d in sp.SEASONS and os.path.isdir(os.path.join(root, d)))
    if not seasons:
        raise Sen12msInputError(f"{root}: no season folder (ROIs1158_spring, ROIs1868_summer, ROIs1970_fall, "
                                "ROIs2017_winter) in it")
    keys = set()
    for season in seasons:
        for folder in os.listdir(os.path.join(root, season)):
            if not _FOLDER.match(folder):
                continue
            for name in os.listdir(os.path.join(root, season, folder)):
                m = _FILE.match(name)
                if m and m.group(1) == season:
                    keys.add((season, int(m.group(3)), int(m.group(4))))
    return sorted(keys)


def read_tif(path: str, modality: str, data: bytes | None = None) -> tuple[np.ndarray, dict]:
    """One GeoTIFF of a triplet, checked: band count, 256 x 256, dtype.

    Args:
      path: the file (named in every message); read from ``data`` instead when given.
      modality: "s1" (2 bands float32 dB), "s2" (13 bands uint16) or "lc" (4 layers uint16).
      data: the file's bytes (a tarball member), or None to open ``path``.

    Returns:
      (pixels [bands, 256, 256] in the file's dtype, georef ``{"crs": WKT, "epsg": int (0 if
      none), "transform": 6 floats a, b, c, d, e, f}``).

    Raises:
      Sen12msInputError: a missing or unreadable file, or a wrong band count, shape or dtype.
    """
    import rasterio
    from rasterio.errors import RasterioError

    want_bands, want_dtype = len(sp.MODALITY_BANDS[modality]), sp.BAND_DTYPES[modality]
    if data is None and not os.path.exists(path):
        raise Sen12msInputError(f"{path}: missing ({modality} twin of the triplet)")
    try:
        if data is None:
            src_ctx = rasterio.open(path)
        else:
            from rasterio.io import MemoryFile

            src_ctx = MemoryFile(data).open()
        with src_ctx as src:
            if src.count != want_bands:
                raise Sen12msInputError(f"{path}: {src.count} bands, expected {want_bands} ({modality})")
            if (src.height, src.width) != sp.PATCH:
                raise Sen12msInputError(f"{path}: shape ({src.height}, {src.width}), expected {sp.PATCH}")
            if src.dtypes[0] != want_dtype or len(set(src.dtypes)) != 1:
                raise Sen12msInputError(f"{path}: dtype {src.dtypes[0]}, expected {want_dtype} ({modality})")
            pixels = src.read()
            crs = src.crs
            t = src.transform
            georef = {"crs": crs.to_wkt() if crs else "", "epsg": int(crs.to_epsg() or 0) if crs else 0,
                      "transform": (t.a, t.b, t.c, t.d, t.e, t.f)}
    except RasterioError as e:
        raise Sen12msInputError(f"{path}: not a readable GeoTIFF ({e})") from None
    return pixels, georef


def read_triplet(root: str, key: Key, s1_nan: str = "zero",
                 member_bytes: Callable[[str], bytes | None] | None = None) -> dict:
    """Read and check the three files of one triplet.

    Args:
      root: the archive root (holding the season folders), or a label for tarball input.
      key: (season, scene, patch).
      s1_nan: "zero" replaces NaN S1 pixels by 0 dB and counts them; "fail" makes them bad input.
      member_bytes: ``member_bytes(rel_path) -> bytes | None`` for tarball input (None: files under root).

    Returns:
      ``bands`` (band name -> [256, 256] array: S2 uint16, S1 float32 dB without NaN, lc uint16),
      ``season``, ``scene``, ``patch``, ``s1_nan`` (NaN pixels replaced), ``crs``, ``epsg``,
      ``transform`` (of the s2 file).

    Raises:
      Sen12msInputError: naming the file: a missing twin, an unreadable file, a wrong band count,
        shape or dtype, S1 NaNs under ``s1_nan="fail"``, IGBP codes outside 1..17.
    """
    bands, georef = {}, None
    for modality in ("s2", "s1", "lc"):
        rel = rel_path(key, modality)
        path = os.path.join(root, rel)
        if member_bytes is None:
            pixels, g = read_tif(path, modality)
        else:
            data = member_bytes(rel)
            if data is None:
                raise Sen12msInputError(f"{path}: missing ({modality} twin of the triplet)")
            pixels, g = read_tif(path, modality, data)
        if modality == "s2":
            georef = g
        if modality == "s1":
            nan = np.isnan(pixels)
            n_nan = int(nan.sum())
            if n_nan and s1_nan == "fail":
                raise Sen12msInputError(f"{path}: {n_nan} NaN values in VV and VH (--s1_nan=fail)")
            if n_nan:
                pixels = np.where(nan, np.float32(0), pixels)
        if modality == "lc":
            try:
                sp.igbp_counts(pixels[0])
            except ValueError as e:
                raise Sen12msInputError(f"{path}: {e}") from None
        for name, band in zip(sp.MODALITY_BANDS[modality], pixels):
            bands[name] = band
    return {"bands": bands, "season": key[0], "scene": key[1], "patch": key[2], "s1_nan": n_nan, **georef}


def produce(items: Sequence[Key], root: str, threshold: float = sp.DEFAULT_THRESHOLD, s1_nan: str = "zero",
            target: str = sp.DEFAULT_TARGET, tarballs: Sequence[str] = ()) -> Iterator:
    """Records of one shard: one Record or Skip per (season, scene, patch), in order.

    A record whose S1 NaNs were replaced carries the note ``{"s1_nan_pixels": n}`` (the manifest's
    ``notes``). ``tarballs``: per-season tarballs read in place of the tree (``tarball.MemberReader``).
    """
    reader = None
    if tarballs:
        from prep.datasets.sen12ms.tarball import MemberReader

        reader = MemberReader(tarballs, [rel_path(k, m) for k in items for m in sp.MODALITIES])
    for key in items:
        name = sp.patch_id(*key)
        try:
            t = read_triplet(root, key, s1_nan, reader.get if reader else None)
            values = sp.record_values(t, threshold)
        except Sen12msInputError as e:
            yield Skip(name, str(e))
            continue
        note = {"s1_nan_pixels": t["s1_nan"]} if t["s1_nan"] else None
        yield Record(name, values, t["bands"], sp.labels_for_target(values, target), note=note)
