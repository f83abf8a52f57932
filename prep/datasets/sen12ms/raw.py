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

import functools
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


def rel_path(key: Key, modality: str, root: str | None = None) -> str:
    """The file of one modality of a triplet, relative to the root (``ROIs1158_spring/s1_63/ROIs1158_spring_s1_63_p1.tif``).

    DFC2020 sets name their folders ``s2_validation`` (or ``s2_0``): with ``root`` given, the folder
    that exists is chosen.
    """
    season, scene, patch = key
    name = f"{season}_{modality}_{scene}_p{patch}.tif"
    folder = f"{modality}_{scene}"
    if root is not None and season in sp.DFC2020_SETS and not os.path.isdir(os.path.join(root, season, folder)):
        folder = f"{modality}_{season.split('_', 1)[1]}"
    return f"{season}/{folder}/{name}"


def find_dfc2020(root: str) -> dict[str, list[Key]]:
    """DFC2020's sets under ``root`` (``ROIs0000_validation``, ``ROIs0000_test``): extra split -> keys, sorted.

    A patch is listed when any of its s1, s2, lc or dfc files exists (a missing one is reported when read).
    """
    out = {}
    for season, split in sp.DFC2020_SETS.items():
        base = os.path.join(root, season)
        if not os.path.isdir(base):
            continue
        keys = set()
        for folder in os.listdir(base):
            if not re.match(r"^(s1|s2|lc|dfc)_\w+$", folder) or not os.path.isdir(os.path.join(base, folder)):
                continue
            for name in os.listdir(os.path.join(base, folder)):
                m = re.match(rf"^{season}_(?:s1|s2|lc|dfc)_(\d+)_p(\d+)\.tif$", name)
                if m:
                    keys.add((season, int(m.group(1)), int(m.group(2))))
        if keys:
            out[split] = sorted(keys)
    return out


def read_dfc_mask(path: str) -> np.ndarray:
    """A DFC2020 high-resolution label file: 1 band, 256 x 256, unsigned integers in 0..10 or 255.

    Returns:
      uint8 [256, 256] labels (1..10 classes; 0 and 255 = ignore).

    Raises:
      Sen12msInputError: a missing or unreadable file, a wrong band count, shape or dtype, or other values.
    """
    import rasterio
    from rasterio.errors import RasterioError

    if not os.path.exists(path):
        raise Sen12msInputError(f"{path}: missing (dfc label file of the triplet)")
    try:
        with rasterio.open(path) as src:
            if src.count != 1 or (src.height, src.width) != sp.PATCH:
                raise Sen12msInputError(f"{path}: {src.count} band(s) of ({src.height}, {src.width}), expected 1 of "
                                        f"{sp.PATCH}")
            if np.dtype(src.dtypes[0]).kind != "u":
                raise Sen12msInputError(f"{path}: dtype {src.dtypes[0]}, expected unsigned integers")
            mask = src.read(1)
    except RasterioError as e:
        raise Sen12msInputError(f"{path}: not a readable GeoTIFF ({e})") from None
    bad = np.setdiff1d(np.unique(mask), np.r_[0:11, 255])
    if bad.size:
        raise Sen12msInputError(f"{path}: label values {bad[:10].tolist()} outside 1..10 (0, 255 = ignore)")
    return mask.astype(np.uint8)


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


def _read_simple(path: str, data: bytes | None) -> tuple[np.ndarray, dict] | None:
    """``prep.tiff.parse_raster`` of the file (or of ``data``): None for a layout it leaves to rasterio.

    The SEN12MS GeoTIFFs are small, uncompressed and striped: parsing them in numpy skips GDAL's
    open, which costs more than reading the pixels.
    """
    from prep import tiff

    if data is None:
        try:
            data = tiff.read_file(path)
        except tiff.BandError:
            return None
    return tiff.parse_raster(data, path)


@functools.lru_cache(maxsize=None)
def _wkt(epsg: int) -> str:
    """The WKT rasterio gives a GeoTIFF whose only CRS key is the EPSG code ``epsg``."""
    from rasterio.crs import CRS

    return CRS.from_epsg(epsg).to_wkt()


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
    fast = _read_simple(path, data)
    if fast is not None:
        pixels, g = fast
        if pixels.shape[0] == want_bands and pixels.shape[1:] == sp.PATCH and pixels.dtype == want_dtype:
            return pixels, {"crs": _wkt(g["epsg"]), "epsg": g["epsg"], "transform": g["transform"]}
    # Another layout, a wrong band count, shape or dtype, or a corrupt file: rasterio reads it and
    # words the message.
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
      ``transform`` (of the s2 file); for DFC2020 patches also ``dfc_mask`` (``read_dfc_mask``).

    Raises:
      Sen12msInputError: naming the file: a missing twin (or dfc label file), an unreadable file, a wrong band count,
        shape or dtype, S1 NaNs under ``s1_nan="fail"``, IGBP codes outside 1..17.
    """
    bands, georef = {}, None
    for modality in ("s2", "s1", "lc"):
        rel = rel_path(key, modality, root if member_bytes is None else None)
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
    out = {"bands": bands, "season": key[0], "scene": key[1], "patch": key[2], "s1_nan": n_nan, **georef}
    if key[0] in sp.DFC2020_SETS:
        out["dfc_mask"] = read_dfc_mask(os.path.join(root, rel_path(key, "dfc", root)))
    return out


def produce(items: Sequence[Key], root: str, threshold: float = sp.DEFAULT_THRESHOLD, s1_nan: str = "zero",
            target: str = sp.DEFAULT_TARGET, tarballs: Sequence[str] = ()) -> Iterator:
    """Records of one shard: one Record or Skip per (season, scene, patch), in order.

    A record whose S1 NaNs were replaced carries the note ``{"s1_nan_values": n}`` (the manifest's
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
        note = {"s1_nan_values": t["s1_nan"]} if t["s1_nan"] else None
        uint_bands = {b: a for b, a in t["bands"].items() if b not in sp.S1_BANDS}
        yield Record(name, values, uint_bands, sp.labels_for_target(values, target), note=note,
                     band_states=[(b, s1_state(t["bands"][b])) for b in sp.S1_BANDS])


_F64 = np.empty(sp.PIXELS, np.float64)  # reused: a fresh 512 KB buffer per band costs page faults on every call


def s1_state(pixels: np.ndarray) -> dict:
    """``prep.stats.float_state`` of one 256x256 float32 S1 band, in a reused buffer, without BLAS.

    The sum of squares is numpy's own loop (``einsum``), not ``np.dot``: a BLAS call wakes OpenBLAS's
    threads, which on a busy 2-core machine cost about 6 ms per call (measured), 100x the work; it
    may differ from ``float_state``'s in the last bits (the same for any worker count or runner).

    Args:
      pixels: [256, 256] float32 dB (no NaN).

    Returns:
      The partial state (count, sum, sumsq, min, max, sample) ``BandStats.merge_state`` takes.
    """
    from prep.stats import SAMPLE_STRIDE

    a64 = _F64
    np.copyto(a64, pixels.reshape(-1))
    return {"count": a64.size, "sum": float(a64.sum()), "sumsq": float(np.einsum("i,i->", a64, a64)),
            "min": float(a64.min()), "max": float(a64.max()), "sample": a64[::SAMPLE_STRIDE].copy()}
