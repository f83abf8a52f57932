"""Prepare So2Sat LCZ42 (HDF5) as sharded TFRecords: ``python -m prep.so2sat``.

    python -m prep.so2sat --h5 training.h5 validation.h5 testing.h5 --out OUT
    python -m prep.so2sat geotiff --h5 validation.h5 --rows 0,10-12 --out TIFS

Conversion streams each file in chunks of ``--read_rows`` rows inside the worker processes, so
memory stays bounded whatever the file size (training.h5 is about 50 GB). Every row becomes one
record of the ``compact`` schema (prep.datasets.so2sat): raw little-endian pixels per band, the
class index, the source file and row, and the geolocation when a ``*_geo.h5`` file is given.
The workers cast, check and encode 32 rows at a time (prep.fastencode lays the 18 bands of all
32 records out with numpy; only the small features are encoded row by row) and hand the writer
encoded records and partial statistics: the same bytes as encoding each record's feature values
with prep.tfrecord (``prepare(encode=False)``, kept as the tested reference).

Split names. Each ``--h5`` file's split is named after the word in its file name:
``training`` -> ``train``, ``validation`` -> ``val``, ``testing`` -> ``test`` (the names the
BigEarthNet splits use). A version-3 scenario (``random``, ``block``, ``culture_10``, found as
the parent folder or as a part of the file name, e.g. ``random/training.h5`` or
``block_testing.h5``) prefixes the split (``random_train``) only when the inputs span more than
one scenario; with one scenario per output folder the splits stay ``train``/``test`` and the
scenario is recorded in the manifest. ``--split_names`` (one per ``--h5``, same order) overrides
the rule; two files may not share a split.

Geolocation. ``<stem>_geo.h5`` beside each file is used when it exists (or ``--geo``, one per
``--h5``; ``--nogeolocation`` ignores them). It must hold ``epsg`` (N or Nx1) and ``tfw`` (Nx6),
and may hold ``coord`` (Nx6: UTM x, y of the patch centre, S1 row, S1 col, S2 row, S2 col) and
``city``. ``tfw`` comes in two orders in the published files: ``x0, pixel width, 0, y0, 0,
pixel height`` ("gdal", files with ``coord``) and the world-file order ``A, D, B, E, C, F``
("worldfile", 2026 files with ``city``); ``--tfw_order=auto`` tells them apart by which entries
hold UTM-sized numbers. Both give (x0, y0) = the upper-left corner of the patch, as the dataset
authors' own GeoTIFF export reads them. Records carry the tfw as stored, the normalised affine
transform, the EPSG code, the patch centre (``coord`` or the transform's centre), the scene
pixel positions and the city when present.

Pixels. The files hold float64. Records hold float32 unless ``--keep_float64``: the cast rounds
each value to 24 significant bits (relative error at most 2**-24, about 6e-8, far below sensor
noise). Sentinel-2 values are DN / 10000 with DN below 28000, so the cast moves them by less
than 2e-7 (0.002 DN) and ``round(x * 10000)`` still recovers the exact DN. Sentinel-1 values keep
7 significant digits; values below about 1e-38 lose precision (subnormals) and values beyond the
float32 range (3.4e38) or non-finite inputs make the row bad (an error, or skipped and listed
with ``--on_error=skip``).

Labels must be one-hot (one 1, sixteen 0s per row); anything else stops the run with an error
naming the file, the dataset and the rows. So do a missing dataset, row counts that differ
between ``sen1``, ``sen2`` and ``label`` (or the geolocation file), wrong patch shapes and
truncated or unreadable files.
"""
from __future__ import annotations

import dataclasses
import functools
import os
import re
import sys
import time
from typing import Iterable, Iterator, Sequence

import h5py
import numpy as np
from absl import app, flags

from prep import cli, fastencode, shards, stats
from prep.datasets import so2sat as s2s

FLAGS = flags.FLAGS


@functools.cache  # declared once per process, however often run() or a test calls it
def define_flags() -> None:
    """Declare the command's flags (called by run(); importing this module defines none)."""
    flags.DEFINE_multi_string("h5", None, "So2Sat HDF5 files (training.h5, validation.h5, testing.h5, or a "
                              "version-3 scenario's training.h5/testing.h5); several may follow one --h5.")
    flags.DEFINE_string("out", None, "Output folder (shards and manifest.json), or the GeoTIFF folder for "
                        "the 'geotiff' command.", short_name="o")
    flags.DEFINE_multi_string("split_names", None, "Split name for each --h5 file, same order (default: from "
                              "the file names, see the module doc).")
    flags.DEFINE_multi_string("geo", None, "Geolocation file for each --h5 file, same order ('none' for a file "
                              "without); default: <stem>_geo.h5 beside each file when it exists.")
    flags.DEFINE_bool("geolocation", True, "Read the geolocation files; --nogeolocation writes records without.")
    flags.DEFINE_enum("tfw_order", "auto", ["auto", "gdal", "worldfile"], "Order of the 6 'tfw' values: 'gdal' "
                      "(x0, xres, 0, y0, 0, yres), 'worldfile' (A, D, B, E, C, F), or 'auto' (detected per file).")
    flags.DEFINE_bool("keep_float64", False, "Store float64 pixels as in the files (default: float32, half the "
                      "size; see the module doc for what the cast loses).")
    flags.DEFINE_integer("read_rows", 256, "Rows read from the HDF5 at a time per worker (buffers per worker: "
                         "about read_rows x 0.15 MB + 15 MB).")
    flags.DEFINE_integer("max_rows", None, "Convert only the first N rows of each file (trial runs).")
    flags.DEFINE_float("shard_size_mb", 150.0, "Target shard size in MB (records per shard derive from it).")
    flags.DEFINE_enum("compression", "NONE", ["NONE", "GZIP"], "TFRecord compression.")
    flags.DEFINE_integer("workers", os.cpu_count() or 1, "Parallel worker processes (output is identical for "
                         "any count).")
    flags.DEFINE_enum("on_error", "fail", ["fail", "skip"], "Rows with non-finite or out-of-range pixels: stop "
                      "('fail') or skip and list them in the manifest ('skip'). Label and layout errors always stop.")
    flags.DEFINE_bool("overwrite", False, "Discard output of a different earlier preparation in --out.")
    flags.DEFINE_bool("progress", True, "Show a progress bar.")
    flags.DEFINE_string("rows", None, "geotiff: rows to export, e.g. '0,5,10-20' (0-based, ranges inclusive).")
    flags.DEFINE_list("sensors", ["sen1", "sen2"], "geotiff: which patches to write per row (sen1, sen2).")

EXPECTED = {"sen1": (32, 32, len(s2s.SEN1_BANDS)), "sen2": (32, 32, len(s2s.SEN2_BANDS)),
            "label": (s2s.NUM_CLASSES,)}
ROLES = {"training": "train", "validation": "val", "testing": "test"}
_ROLE_RE = re.compile(r"(?:^|[^a-z])(training|validation|testing)(?:[^a-z]|$)")
_SCENARIO_RE = re.compile(r"(?:^|[^a-z0-9])(random|block|culture[_-]?10)(?:[^a-z0-9]|$)")
_SPLIT_NAME_RE = re.compile(r"^[A-Za-z0-9_]+$")
LABEL_CHECK_ROWS = 65536
H5_CHUNK_CACHE = 16 << 20  # bytes of chunk cache per open dataset


class So2SatInputError(shards.PrepError):
    """Bad So2Sat input: the message names the file, the dataset and the rows."""


def _rows(a: int, b: int) -> str:
    return f"row {a}" if b - a == 1 else f"rows {a}..{b - 1}"


# --- opening and checking files -----------------------------------------------------------------

def open_h5(path: str) -> h5py.File:
    """Open an HDF5 file read-only, with errors that say what is wrong with which file."""
    if not os.path.isfile(path):
        raise So2SatInputError(f"{path}: no such file")
    try:
        # A chunk cache large enough for the chunked/compressed layouts: each chunk is decoded once.
        return h5py.File(path, "r", rdcc_nbytes=H5_CHUNK_CACHE, rdcc_nslots=10007)
    except OSError as e:
        if "truncated" in str(e):
            raise So2SatInputError(f"{path}: truncated HDF5 file (incomplete download or copy?): {e}") from None
        raise So2SatInputError(f"{path}: not a readable HDF5 file: {e}") from None


def _dataset(f: h5py.File, name: str, path: str) -> h5py.Dataset:
    if name not in f:
        raise So2SatInputError(f"{path}: dataset '{name}' missing (the file holds: {', '.join(sorted(f)) or 'nothing'})")
    ds = f[name]
    if not isinstance(ds, h5py.Dataset):
        raise So2SatInputError(f"{path}: '{name}' is a group, not a dataset")
    if ds.dtype.kind not in "fiub":
        raise So2SatInputError(f"{path}: dataset '{name}' has dtype {ds.dtype}, expected numbers")
    return ds


def inspect_h5(path: str) -> int:
    """Check datasets, patch shapes and row counts of one So2Sat file; returns N."""
    with open_h5(path) as f:
        counts = {}
        for name, tail in EXPECTED.items():
            ds = _dataset(f, name, path)
            if ds.ndim != len(tail) + 1 or tuple(ds.shape[1:]) != tail:
                n = ds.shape[0] if ds.ndim else 0
                raise So2SatInputError(
                    f"{path}: dataset '{name}' {_rows(0, n) if n else ''} has shape {ds.shape}, expected "
                    f"(N, {', '.join(map(str, tail))})")
            counts[name] = ds.shape[0]
    return _same_rows(path, counts)


def _same_rows(path: str, counts: dict[str, int]) -> int:
    n = min(counts.values())
    if len(set(counts.values())) > 1:
        longer = ", ".join(f"'{k}' has {_rows(0, v)}" for k, v in counts.items())
        extra = [k for k, v in counts.items() if v > n]
        raise So2SatInputError(
            f"{path}: datasets disagree on the number of rows ({longer}); {_rows(n, max(counts.values()))} of "
            f"{', '.join(repr(k) for k in extra)} have no counterpart")
    return n


@dataclasses.dataclass(frozen=True)
class GeoInfo:
    path: str
    tfw_order: str  # "gdal" | "worldfile"
    has_coord: bool
    city_key: str | None


def detect_tfw_order(tfw: np.ndarray, path: str) -> str:
    """Which of the two published 'tfw' orders a row uses, from where the UTM-sized numbers sit."""
    t = np.abs(np.asarray(tfw, np.float64).reshape(-1))
    gdal = t[0] > 1000 and t[3] > 1000 and 0 < t[1] < 1000 and 0 < t[5] < 1000
    world = t[4] > 1000 and t[5] > 1000 and 0 < t[0] < 1000 and 0 < t[3] < 1000
    if gdal == world:
        raise So2SatInputError(f"{path}: dataset 'tfw' row 0 = {tfw.tolist()}: cannot tell its order; "
                               "pass --tfw_order=gdal or --tfw_order=worldfile")
    return "gdal" if gdal else "worldfile"


def inspect_geo(path: str, n: int, tfw_order: str = "auto") -> GeoInfo:
    """Check a *_geo.h5 file against the image file's N rows."""
    with open_h5(path) as f:
        counts = {}
        for name, widths in (("epsg", (None, 1)), ("tfw", (6,)), ("coord", (6,)), ("city", (None, 1)),
                             ("cityList", (None, 1))):
            if name not in f:
                if name in ("epsg", "tfw"):
                    _dataset(f, name, path)  # raises: missing
                continue
            ds = f[name]
            if not isinstance(ds, h5py.Dataset):
                raise So2SatInputError(f"{path}: '{name}' is a group, not a dataset")
            width = ds.shape[1] if ds.ndim == 2 else None
            if ds.ndim not in (1, 2) or width not in widths:
                raise So2SatInputError(f"{path}: dataset '{name}' has shape {ds.shape}, expected "
                                       f"(N, {widths[-1]})")
            counts[name] = ds.shape[0]
        if any(v != n for v in counts.values()):
            raise So2SatInputError(
                f"{path}: geolocation rows do not match the image rows (images: {_rows(0, n)}; "
                + ", ".join(f"'{k}': {_rows(0, v)}" for k, v in counts.items()) + ")")
        order = tfw_order
        if order == "auto" and n:
            order = detect_tfw_order(f["tfw"][0], path)
        city_key = "city" if "city" in f else "cityList" if "cityList" in f else None
        return GeoInfo(path, order if order != "auto" else "gdal", "coord" in f, city_key)


def label_indices(label: np.ndarray, path: str, start: int) -> np.ndarray:
    """One-hot rows -> class indices; anything else raises, naming the rows."""
    label = np.asarray(label)
    ok = ((label == 0) | (label == 1)).all(axis=1) & (np.count_nonzero(label == 1, axis=1) == 1)
    if not ok.all():
        bad = np.flatnonzero(~ok) + start
        shown = ", ".join(str(r) for r in bad[:20]) + (f" ... ({len(bad)} rows)" if len(bad) > 20 else "")
        example = label[bad[0] - start].tolist()
        raise So2SatInputError(
            f"{path}: dataset 'label' {_rows(start, start + len(label))}: {len(bad)} row(s) not one-hot "
            f"(one 1 and {label.shape[1] - 1} zeros expected): rows {shown}; row {bad[0]} = {example}")
    return np.argmax(label, axis=1)


def check_labels(path: str, n: int, chunk: int = LABEL_CHECK_ROWS) -> np.ndarray:
    """Read the label rows [0, n) in chunks, check they are one-hot; returns class counts."""
    counts = np.zeros(s2s.NUM_CLASSES, np.int64)
    with open_h5(path) as f:
        ds = f["label"]
        for a in range(0, n, chunk):
            b = min(n, a + chunk)
            idx = label_indices(_read(ds, a, b, path), path, a)
            counts += np.bincount(idx, minlength=s2s.NUM_CLASSES)
    return counts


def _read(ds: h5py.Dataset, a: int, b: int, path: str) -> np.ndarray:
    try:
        return ds[a:b]
    except (OSError, RuntimeError, ValueError) as e:
        raise So2SatInputError(f"{path}: dataset '{ds.name.lstrip('/')}' {_rows(a, b)}: read failed "
                               f"(truncated or damaged file?): {e}") from None


# --- split names ---------------------------------------------------------------------------------

def role_and_scenario(path: str) -> tuple[str, str | None]:
    """('train'|'val'|'test', scenario or None) from a file's name and parent folder."""
    stem = os.path.splitext(os.path.basename(path))[0].lower()
    m = _ROLE_RE.search(stem)
    if not m:
        raise So2SatInputError(f"{path}: cannot tell the split from the file name (expected training, "
                               "validation or testing in it); pass --split_names")
    scenario = None
    for text in (stem, os.path.basename(os.path.dirname(os.path.abspath(path))).lower()):
        s = _SCENARIO_RE.search(text)
        if s:
            scenario = "culture_10" if s.group(1).startswith("culture") else s.group(1)
            break
    return ROLES[m.group(1)], scenario


def split_names_for(paths: Sequence[str], explicit: Sequence[str] | None = None) -> list[str]:
    """The split of each file: ``explicit`` if given, else the rule in the module doc."""
    if explicit:
        if len(explicit) != len(paths):
            raise So2SatInputError(f"--split_names gives {len(explicit)} names for {len(paths)} --h5 files")
        names = list(explicit)
    else:
        found = [role_and_scenario(p) for p in paths]
        multi = len({s for _, s in found if s}) > 1
        names = [f"{s}_{r}" if (multi and s) else r for r, s in found]
    for p, name in zip(paths, names):
        if not _SPLIT_NAME_RE.match(name):
            raise So2SatInputError(f"{p}: split name {name!r} may hold only letters, digits and '_'")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        which = "; ".join(f"{n}: " + ", ".join(p for p, m in zip(paths, names) if m == n) for n in dup)
        raise So2SatInputError(f"two files for the same split ({which}); pass --split_names")
    return names


def source_name(path: str) -> str:
    """The file's name as recorded (``training.h5``, or ``random/training.h5`` in a scenario folder)."""
    parent = os.path.basename(os.path.dirname(os.path.abspath(path)))
    base = os.path.basename(path)
    if _SCENARIO_RE.search(parent.lower()) and not _SCENARIO_RE.search(base.lower()):
        return f"{parent}/{base}"
    return base


def find_geo(path: str) -> str | None:
    stem = os.path.splitext(path)[0]
    for suffix in ("_geo.h5", "_aux.h5"):
        if os.path.isfile(stem + suffix):
            return stem + suffix
    return None


# --- planning --------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Source:
    """One input file as the workers need it."""

    path: str
    name: str  # recorded in meta/source and the record keys
    split: str
    rows: int
    geo: GeoInfo | None = None
    scenario: str | None = None


def plan_sources(paths: Sequence[str], split_names: Sequence[str] | None = None,
                 geo_paths: Sequence[str] | None = None, geolocation: bool = True, tfw_order: str = "auto",
                 max_rows: int | None = None, check: bool = True) -> list[Source]:
    """Open and check every file (layout, row counts, one-hot labels, geolocation)."""
    if not paths:
        raise So2SatInputError("no --h5 files given")
    absolute = [os.path.abspath(p) for p in paths]
    if len(set(absolute)) != len(absolute):
        raise So2SatInputError("the same file is given twice in --h5")
    names = split_names_for(paths, split_names)
    if geo_paths and len(geo_paths) != len(paths):
        raise So2SatInputError(f"--geo gives {len(geo_paths)} files for {len(paths)} --h5 files")
    sources = []
    for i, (p, split) in enumerate(zip(absolute, names)):
        n = inspect_h5(p)
        if max_rows is not None:
            n = min(n, max_rows)
        geo = None
        if geolocation:
            g = geo_paths[i] if geo_paths else find_geo(p)
            if g and g.lower() != "none":
                geo = inspect_geo(os.path.abspath(g), inspect_rows(p), tfw_order)
        if check:
            check_labels(p, n)
        scenario = None
        try:
            scenario = role_and_scenario(p)[1]
        except So2SatInputError:
            pass
        sources.append(Source(p, source_name(paths[i]), split, n, geo, scenario))
    return sources


def inspect_rows(path: str) -> int:
    with open_h5(path) as f:
        return f["sen1"].shape[0]


# --- the worker side -------------------------------------------------------------------------------

def _runs(items: Sequence[tuple[int, int]]) -> Iterator[tuple[int, int, int]]:
    """(source, row) items -> (source, start, stop) runs of consecutive rows, in order."""
    it = iter(items)
    try:
        s, a = next(it)
    except StopIteration:
        return
    b = a + 1
    for s2, r in it:
        if s2 == s and r == b:
            b += 1
            continue
        yield s, a, b
        s, a, b = s2, r, r + 1
    yield s, a, b


def tfw_to_transform(tfw: np.ndarray, order: str) -> np.ndarray:
    """(m, 6) tfw rows -> (m, 6) affine a, b, c, d, e, f with (c, f) the upper-left corner, e < 0."""
    t = np.asarray(tfw, np.float64).reshape(-1, 6)
    if order == "gdal":
        x0, dx, rx, y0, ry, dy = t.T
        return np.stack([dx, rx, x0, ry, -np.abs(dy), y0], 1)
    if order == "worldfile":
        a, d, b, e, c, f = t.T
        return np.stack([a, b, c, d, -np.abs(e), f], 1)
    raise ValueError(f"unknown tfw order {order!r}")


def _geo_arrays(f: h5py.File, info: GeoInfo, a: int, b: int) -> dict:
    """Geolocation of rows [a, b) as arrays: epsg, transform, tfw, utm, pixel (or None), city."""
    m = b - a
    epsg = _read(f["epsg"], a, b, info.path).reshape(m, -1)[:, 0]
    if not np.all(np.isfinite(epsg)) or not np.all(np.asarray(epsg) == np.round(epsg)):
        raise So2SatInputError(f"{info.path}: dataset 'epsg' {_rows(a, b)}: EPSG codes must be integers")
    tfw = np.ascontiguousarray(_read(f["tfw"], a, b, info.path).reshape(m, 6), "<f8")
    transform = np.ascontiguousarray(tfw_to_transform(tfw, info.tfw_order), "<f8")
    if info.has_coord:
        coord = _read(f["coord"], a, b, info.path).astype(np.float64).reshape(m, 6)
        utm = coord[:, :2]
        pixel = np.rint(coord[:, 2:6]).astype(np.int64)
    else:
        half = np.array(s2s.PATCH, np.float64) / 2
        utm = np.stack([transform[:, 2] + transform[:, 0] * half[1] + transform[:, 1] * half[0],
                        transform[:, 5] + transform[:, 3] * half[1] + transform[:, 4] * half[0]], 1)
        pixel = None
    cities = [""] * m
    if info.city_key:
        raw = _read(f[info.city_key], a, b, info.path).reshape(m)
        cities = [c.decode("utf-8", "replace").strip() if isinstance(c, bytes) else str(c).strip() for c in raw]
    return {"epsg": np.asarray(epsg).astype(np.int64), "transform": transform, "tfw": tfw,
            "utm": np.ascontiguousarray(utm, "<f8"), "pixel": pixel, "city": cities}


def read_geo(f: h5py.File, info: GeoInfo, a: int, b: int) -> list[s2s.Geo]:
    """Geolocation of rows [a, b) of the image file, one Geo per row."""
    g = _geo_arrays(f, info, a, b)
    pixel = g["pixel"].tolist() if g["pixel"] is not None else [()] * (b - a)
    return [s2s.Geo(e, tuple(t), tuple(w), tuple(u), tuple(p), c) for e, t, w, u, p, c in zip(
        g["epsg"].tolist(), g["transform"].tolist(), g["tfw"].tolist(), g["utm"].tolist(), pixel, g["city"])]


def geo_feature_rows(f: h5py.File, info: GeoInfo, a: int, b: int) -> list[dict]:
    """The ``geo/*`` feature values of rows [a, b) (the fast path of read_geo + geo_values)."""
    g = _geo_arrays(f, info, a, b)
    pixel = g["pixel"].tolist() if g["pixel"] is not None else [[]] * (b - a)
    t, w, u = g["transform"], g["tfw"], g["utm"]
    return [{"geo/epsg": [e], "geo/utm": [u[i].tobytes()], "geo/transform": [t[i].tobytes()],
             "geo/tfw": [w[i].tobytes()], "geo/pixel": pixel[i], "geo/city": [g["city"][i].encode()]}
            for i, e in enumerate(g["epsg"].tolist())]


def produce(items: Sequence[tuple[int, int]], sources: Sequence[Source], dtype: str = "float32",
            read_rows: int = 256, encode: bool = False) -> Iterator[shards.Record | shards.Skip]:
    """One shard's (source index, row) items -> one Record (or Skip) per item, in order.

    ``encode=False``: Records carry the feature values (``s2s.record_values``) and the pixels for
    the statistics (the TFDS builder reads the values). ``encode=True`` (what ``prepare`` uses):
    Records carry the serialized Example (``Record.encoded``, encoded a chunk at a time by
    prep.fastencode) and partial statistics (``Record.band_states``); the writer then produces the
    same shards and manifest byte for byte, several times faster.
    """
    handles: dict[str, h5py.File] = {}
    scratch = _Scratch()
    rows_fn = _encoded_rows if encode else _value_rows
    try:
        for si, start, stop in _runs(items):
            src = sources[si]
            yield from rows_fn(src, start, stop, dtype, read_rows, handles, scratch)
    finally:
        scratch.release()
        for h in handles.values():
            h.close()


class _Scratch:
    """Work buffers lent to one produce() call and kept for the next one in this process.

    A worker writes shard after shard; reusing the buffers spares the page faults of touching
    ~100 MB of fresh memory per shard.
    """

    _free: dict[tuple, object] = {}  # one free buffer per key, the most recently released kinds
    KEEP = 8

    def __init__(self):
        self._taken: list[tuple[tuple, object]] = []

    def get(self, key: tuple, make):
        obj = self._free.pop(key, None)
        if obj is None:
            obj = make()
        self._taken.append((key, obj))
        return obj

    def release(self) -> None:
        for key, obj in self._taken:
            self._free[key] = obj
            while len(self._free) > self.KEEP:
                self._free.pop(next(iter(self._free)))
        self._taken = []


def _handle(path: str, handles: dict) -> h5py.File:
    if path not in handles:
        handles[path] = open_h5(path)
    return handles[path]


STATS_ROWS = 8  # rows per statistics update: 8 x 1024 float64 pixels stay below malloc's mmap threshold
STATS_BATCH = 4  # statistics groups reduced together by the encoded path (4 x 8 rows: ~4.7 MB of float64)
TILE_ROWS = 32  # rows cast, checked and encoded together (a multiple of STATS_ROWS; ~2.4 MB of float32)


@dataclasses.dataclass
class _Chunk:
    """Rows [a, a + m) of one source, read, cast and checked."""

    a: int
    m: int
    s1: np.ndarray  # (m, 32, 32, 8) as read
    s2: np.ndarray  # (m, 32, 32, 10)
    cls: np.ndarray  # (m,) class index
    x: np.ndarray  # (m, 18, 1024) output dtype, band-major per row: sen1 then sen2
    lo: np.ndarray  # (m, 18) per row and band minimum (NaN/inf show here)
    hi: np.ndarray  # (m, 18) maximum
    good: np.ndarray  # (m,) bool: every pixel finite in the output dtype


def chunk_rows(read_rows: int) -> int:
    """Rows per chunk: read_rows rounded up to whole statistics groups."""
    return -(-max(1, read_rows) // STATS_ROWS) * STATS_ROWS


def _chunks(src: Source, start: int, stop: int, dtype: str, read_rows: int, handles: dict, scratch: _Scratch,
            geo_rows=None) -> Iterator[tuple[_Chunk, object]]:
    """Rows [start, stop) of ``src``: read read_rows at a time, handed on in tiles of TILE_ROWS rows
    (whole statistics groups, small enough for the CPU caches), with ``geo_rows(g, info, a, b)``."""
    f = _handle(src.path, handles)
    g = _handle(src.geo.path, handles) if src.geo else None
    out = np.dtype("<f4" if dtype == "float32" else "<f8")
    d1, d2, dl = (_dataset(f, k, src.path) for k in ("sen1", "sen2", "label"))
    read_rows = chunk_rows(read_rows)
    tile = min(TILE_ROWS, read_rows)
    npix = s2s.PATCH[0] * s2s.PATCH[1]
    # Buffers reused for every chunk: memory stays at about read_rows x 0.15 MB whatever the file size.
    shape1, shape2 = (read_rows,) + EXPECTED["sen1"], (read_rows,) + EXPECTED["sen2"]
    b1 = scratch.get(("sen1", shape1, d1.dtype.str), lambda: np.empty(shape1, d1.dtype))
    b2 = scratch.get(("sen2", shape2, d2.dtype.str), lambda: np.empty(shape2, d2.dtype))
    shape = (tile, len(s2s.BAND_NAMES)) + s2s.PATCH  # (rows, 18, 32, 32): sen1 then sen2
    x = scratch.get(("x", shape, out.str), lambda: np.empty(shape, out))
    for a in range(start, stop, read_rows):
        b = min(stop, a + read_rows)
        s1 = _read_into(d1, b1, a, b, src.path)
        s2 = _read_into(d2, b2, a, b, src.path)
        cls = label_indices(_read(dl, a, b, src.path), src.path, a)
        geo = geo_rows(g, src.geo, a, b) if (g is not None and geo_rows is not None) else None
        for t in range(0, b - a, tile):
            m = min(tile, b - a - t)
            xc = x[:m]
            t1, t2 = s1[t:t + m], s2[t:t + m]
            with np.errstate(over="ignore", invalid="ignore"):
                np.copyto(xc[:, :8], t1.transpose(0, 3, 1, 2), casting="unsafe")
                np.copyto(xc[:, 8:], t2.transpose(0, 3, 1, 2), casting="unsafe")
            flat = xc.reshape(m, len(s2s.BAND_NAMES), npix)
            lo, hi = flat.min(axis=2), flat.max(axis=2)  # NaN propagates, +-inf shows: the finiteness check
            good = (np.isfinite(lo) & np.isfinite(hi)).all(axis=1)
            yield _Chunk(a + t, m, t1, t2, cls[t:t + m], flat, lo, hi, good), (
                geo[t:t + m] if geo is not None else None)


def _value_rows(src: Source, start: int, stop: int, dtype: str, read_rows: int, handles: dict, scratch: _Scratch):
    """Records with feature values and pixels (``produce(encode=False)``)."""
    no_geo = s2s.geo_values(None)
    for c, geos in _chunks(src, start, stop, dtype, read_rows, handles, scratch, geo_feature_rows):
        xc, m, good = c.x, c.m, c.good
        # Statistics take the good rows STATS_ROWS at a time (the same pixels as row by row, several
        # times faster): each group's pixels ride on the group's first Record, the others carry none.
        # Groups are aligned to the run's first row, so the statistics do not depend on --read_rows.
        carry = {}
        for j in range(0, m, STATS_ROWS):
            idx = np.flatnonzero(good[j:j + STATS_ROWS]) + j
            if len(idx):
                block = xc[j:j + STATS_ROWS] if len(idx) == min(STATS_ROWS, m - j) else xc[idx]
                carry[int(idx[0])] = {name: block[:, b] for b, name in enumerate(s2s.BAND_NAMES)}
        cls = c.cls.tolist()
        for i in range(m):
            row = c.a + i
            key = f"{src.name}:{row}"
            if not good[i]:
                yield shards.Skip(key, _bad_pixels_reason(src.path, row, c.s1[i], c.s2[i]))
                continue
            raw = {name: xc[i, b].tobytes() for b, name in enumerate(s2s.BAND_NAMES)}
            yield shards.Record(key, s2s.record_values(raw, cls[i], src.name, row,
                                                       geos[i] if geos is not None else no_geo),
                                carry.get(i, {}), [cls[i]])


@functools.lru_cache(maxsize=None)
def _encoder(dtype: str) -> tuple[fastencode.CompiledSchema, fastencode.BlockLayout]:
    """The compact schema compiled, with the 18 bands as fixed-size features of ``dtype`` pixels."""
    schema = s2s.spec_for_dtype(dtype).schema("compact")
    cs = fastencode.CompiledSchema(schema.fields)
    nbytes = s2s.PATCH[0] * s2s.PATCH[1] * np.dtype(dtype).itemsize
    return cs, fastencode.BlockLayout(cs, {schema.band_keys[n]: nbytes for n in s2s.BAND_NAMES})


def _geo_entries(cs: fastencode.CompiledSchema):
    """geo_rows function for _chunks: the six geo/* entries of each row, joined (sorted key order)."""
    head = {k: cs.fixed_bytes_header(k, n) for k, n in (("geo/tfw", 48), ("geo/transform", 48), ("geo/utm", 16))}
    cities: dict[str, bytes] = {}
    epsgs: dict[int, bytes] = {}
    no_pixel = cs.entry("geo/pixel", [])
    pixel_entry = cs.int64_entry("geo/pixel")

    def rows(f: h5py.File, info: GeoInfo, a: int, b: int) -> list[bytes]:
        g = _geo_arrays(f, info, a, b)
        t, w, u = g["transform"], g["tfw"], g["utm"]
        pixel = g["pixel"].tolist() if g["pixel"] is not None else None
        out = []
        for i, (e, city) in enumerate(zip(g["epsg"].tolist(), g["city"])):
            ce = cities.get(city) or cities.setdefault(city, cs.entry("geo/city", [city.encode()]))
            ee = epsgs.get(e) or epsgs.setdefault(e, cs.entry("geo/epsg", [e]))
            pe = pixel_entry(pixel[i]) if pixel is not None else no_pixel
            out.append(b"".join((ce, ee, pe, head["geo/tfw"], w[i].tobytes(), head["geo/transform"], t[i].tobytes(),
                                 head["geo/utm"], u[i].tobytes())))
        return out
    return rows


def _encoded_rows(src: Source, start: int, stop: int, dtype: str, read_rows: int, handles: dict,
                  scratch: _Scratch):
    """Records carrying their encoded Example and their chunk's statistics (``produce(encode=True)``)."""
    cs, layout = _encoder(dtype)
    no_geo = b"".join(cs.entry(k, v) for k, v in sorted(s2s.geo_values(None).items()))
    labels = [cs.entry("label/index", [k]) for k in range(s2s.NUM_CLASSES)]
    source = cs.entry("meta/source", [src.name.encode()])
    row_entry, id_entry = cs.int64_entry("meta/row"), cs.bytes_entry("patch_id")
    n = min(TILE_ROWS, chunk_rows(read_rows))
    block = scratch.get(("block", dtype, n), lambda: layout.new_block(n))
    columns = [block.column(f"bands/{name}") for name in s2s.BAND_NAMES]
    shape = (STATS_BATCH, len(s2s.BAND_NAMES), STATS_ROWS * s2s.PATCH[0] * s2s.PATCH[1])
    work = scratch.get(("stats", shape), lambda: np.empty(shape, np.float64))
    for c, geos in _chunks(src, start, stop, dtype, read_rows, handles, scratch, _geo_entries(cs)):
        m, good = c.m, c.good
        for b, col in enumerate(columns):
            col[:m] = c.x[:, b].view(np.uint8)
        states = stats.band_states(c.x, good, c.lo, c.hi, s2s.BAND_NAMES, STATS_ROWS, STATS_BATCH, work=work)
        cls = c.cls.tolist()
        for i in range(m):
            row = c.a + i
            key = f"{src.name}:{row}"
            if not good[i]:
                yield shards.Skip(key, _bad_pixels_reason(src.path, row, c.s1[i], c.s2[i]))
                continue
            label = cls[i]
            enc = block.record_tail(i, (geos[i] if geos is not None else no_geo, labels[label],
                                        row_entry((row,)), source, id_entry(key.encode())))
            yield shards.Record(key, None, {}, (label,), encoded=enc, band_states=states)
            states = ()  # the chunk's statistics ride on its first written record


def _read_into(ds: h5py.Dataset, buf: np.ndarray, a: int, b: int, path: str) -> np.ndarray:
    """Rows [a, b) of ``ds`` into the start of ``buf`` (no new allocation); returns that view."""
    out = buf[:b - a]
    try:
        # The low-level read, with a memory space of exactly the rows read (measured 1.5x faster than
        # read_direct with a destination selection on a page-cached file).
        fspace = ds.id.get_space()
        fspace.select_hyperslab((a,) + (0,) * (ds.ndim - 1), (b - a,) + ds.shape[1:])
        ds.id.read(h5py.h5s.create_simple(out.shape), fspace, out)
    except (OSError, RuntimeError, ValueError, TypeError) as e:
        raise So2SatInputError(f"{path}: dataset '{ds.name.lstrip('/')}' {_rows(a, b)}: read failed "
                               f"(truncated or damaged file?): {e}") from None
    return out


def _bad_pixels_reason(path: str, row: int, s1: np.ndarray, s2: np.ndarray) -> str:
    for name, x in (("sen1", s1), ("sen2", s2)):
        if not np.isfinite(x).all():
            return f"{path}: dataset '{name}' row {row}: {np.count_nonzero(~np.isfinite(x))} non-finite values"
    return (f"{path}: row {row}: values beyond the float32 range (max |x| = {max(np.abs(s1).max(), np.abs(s2).max()):.3g});"
            " pass --keep_float64")


# --- the command -----------------------------------------------------------------------------------

def prepare(h5_paths: Sequence[str], out: str, split_names: Sequence[str] | None = None,
            geo_paths: Sequence[str] | None = None, geolocation: bool = True, tfw_order: str = "auto",
            keep_float64: bool = False, read_rows: int = 256, max_rows: int | None = None,
            shard_size_mb: float = 150.0, compression: str = "NONE", workers: int = 1, on_error: str = "fail",
            overwrite: bool = False, progress: bool = False, encode: bool = True) -> dict:
    """Python API of the command: returns the manifest.

    ``encode=False`` has the writer encode each record from its feature values (prep.tfrecord):
    the same shards and manifest, slower; kept as the reference the fast path is tested against.
    """
    if read_rows < 1:
        raise So2SatInputError("--read_rows must be at least 1")
    sources = plan_sources(h5_paths, split_names, geo_paths, geolocation, tfw_order, max_rows)
    dtype = "float64" if keep_float64 else "float32"
    spec = s2s.spec_for_dtype(dtype)
    per_shard = shards.records_per_shard(spec, spec.schema("compact"), shard_size_mb)
    splits = {s.split: [(i, r) for r in range(s.rows)] for i, s in enumerate(sources)}
    produce_fn = functools.partial(produce, sources=tuple(sources), dtype=dtype, read_rows=read_rows,
                                   encode=encode)
    run_flags = {
        "h5": [s.name for s in sources], "h5_bytes": [os.path.getsize(s.path) for s in sources],
        "split_names": [s.split for s in sources],
        "geolocation": [s.geo is not None for s in sources], "tfw_order": tfw_order,
        "keep_float64": keep_float64, "dtype": dtype, "max_rows": max_rows, "shard_size_mb": shard_size_mb,
        "records_per_shard": per_shard, "compression": compression, "on_error": on_error,
    }
    scenarios = sorted({s.scenario for s in sources if s.scenario})
    extra = {"so2sat": {
        "release": 3 if scenarios else 2,
        "scenarios": scenarios,
        "sources": [{"split": s.split, "file": s.name, "rows": s.rows, "scenario": s.scenario,
                     "geolocation": os.path.basename(s.geo.path) if s.geo else None,
                     "tfw_order": s.geo.tfw_order if s.geo else None} for s in sources],
    }}
    return shards.write_dataset(out, spec, "compact", splits, produce_fn, per_shard, workers=workers,
                                compression=compression, flags=run_flags, extra=extra, on_error=on_error,
                                overwrite=overwrite, progress=progress)


def summary(manifest: dict, seconds: float | None = None, input_bytes: int | None = None) -> str:
    rows = [f"{'split':<18}{'listed':>10}{'written':>10}{'skipped':>10}{'shards':>8}"]
    for name, s in manifest["splits"].items():
        rows.append(f"{name:<18}{s['listed']:>10}{s['written']:>10}{s['skipped']:>10}{len(s['shards']):>8}")
    for s in manifest["skipped"][:50]:
        rows.append(f"skipped  [{s['split']}] {s['key']}: {s['reason']}")
    if len(manifest["skipped"]) > 50:
        rows.append(f"... and {len(manifest['skipped']) - 50} more skipped (see manifest.json)")
    if seconds:
        n = sum(s["listed"] for s in manifest["splits"].values())
        line = f"{n} patches in {seconds:.1f} s ({n / max(seconds, 1e-9):.0f} patches/s"
        if input_bytes:
            line += f", {input_bytes / 1e6 / max(seconds, 1e-9):.0f} MB/s of HDF5 data"
        rows.append(line + ")")
    return "\n".join(rows)


def input_bytes(sources_or_manifest: dict) -> int:
    """float64 bytes of sen1 + sen2 + label read for the written rows."""
    n = sum(s["listed"] for s in sources_or_manifest["splits"].values())
    return n * (32 * 32 * 18 + s2s.NUM_CLASSES) * 8


# --- GeoTIFF export ---------------------------------------------------------------------------------

def parse_rows(text: str, n: int, path: str) -> list[int]:
    """'0,5,10-20' -> sorted unique rows, checked against the file's N rows."""
    rows: set[int] = set()
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m:
            raise So2SatInputError(f"--rows: cannot read {part!r} (use e.g. 0,5,10-20)")
        a, b = int(m.group(1)), int(m.group(2) or m.group(1))
        if b < a:
            raise So2SatInputError(f"--rows: range {part!r} runs backwards")
        if b >= n:
            raise So2SatInputError(f"{path}: --rows {part} is beyond the file's {_rows(0, n)}")
        rows.update(range(a, b + 1))
    if not rows:
        raise So2SatInputError("--rows selects no rows")
    return sorted(rows)


def export_geotiffs(h5_path: str, rows: str | Iterable[int], out_dir: str, geo_path: str | None = None,
                    sensors: Sequence[str] = ("sen1", "sen2"), tfw_order: str = "auto",
                    keep_float64: bool = False) -> list[str]:
    """Write the chosen rows' patches as georeferenced GeoTIFFs; each is read back and checked."""
    import rasterio
    from rasterio.crs import CRS
    from rasterio.transform import Affine

    bad = [s for s in sensors if s not in ("sen1", "sen2")]
    if bad or not sensors:
        raise So2SatInputError(f"--sensors: choose from sen1, sen2 (got {', '.join(sensors) or 'nothing'})")
    n = inspect_h5(h5_path)
    geo_path = geo_path or find_geo(h5_path)
    if not geo_path:
        raise So2SatInputError(f"{h5_path}: no geolocation file ({os.path.splitext(h5_path)[0]}_geo.h5 not "
                               "found); pass --geo")
    info = inspect_geo(geo_path, n, tfw_order)
    rows = parse_rows(rows, n, h5_path) if isinstance(rows, str) else sorted(set(int(r) for r in rows))
    if rows and (rows[0] < 0 or rows[-1] >= n):
        raise So2SatInputError(f"{h5_path}: rows must lie in {_rows(0, n)}")
    dtype = "float64" if keep_float64 else "float32"
    prefix = source_name(h5_path).replace("/", "_").removesuffix(".h5")
    os.makedirs(out_dir, exist_ok=True)
    written = []
    with open_h5(h5_path) as f, open_h5(geo_path) as g:
        for row in rows:
            geo = read_geo(g, info, row, row + 1)[0]
            cls = int(label_indices(_read(f["label"], row, row + 1, h5_path), h5_path, row)[0])
            transform = Affine(*geo.transform)
            crs = CRS.from_epsg(geo.epsg)
            for sensor in sensors:
                names = s2s.SEN1_BANDS if sensor == "sen1" else s2s.SEN2_BANDS
                data = np.ascontiguousarray(_read(f[sensor], row, row + 1, h5_path)[0].transpose(2, 0, 1), dtype)
                path = os.path.join(out_dir, f"{prefix}_{row:06d}_{sensor}.tif")
                with rasterio.open(path, "w", driver="GTiff", height=data.shape[1], width=data.shape[2],
                                   count=data.shape[0], dtype=dtype, crs=crs, transform=transform) as dst:
                    dst.write(data)
                    for k, name in enumerate(names, 1):
                        dst.set_band_description(k, s2s.SEN1_DESCRIPTIONS.get(name, f"Sentinel-2 {name}"))
                    dst.update_tags(source=source_name(h5_path), row=str(row), lcz_index=str(cls),
                                    lcz_code=s2s.LCZ_CODES[cls], lcz_name=s2s.CLASS_NAMES[cls], city=geo.city)
                with rasterio.open(path) as chk:
                    if chk.crs.to_epsg() != geo.epsg or not chk.transform.almost_equals(transform, 1e-6):
                        raise So2SatInputError(f"{path}: read back CRS {chk.crs} / transform {chk.transform}, "
                                               f"expected EPSG:{geo.epsg} / {transform}")
                written.append(path)
    return written


# --- CLI ---------------------------------------------------------------------------------------------

MULTI_VALUE_FLAGS = {f: f for f in ("--h5", "--split_names", "--geo")}


def expand_nargs(argv: list[str]) -> list[str]:
    """``--h5 a b c`` (and --split_names, --geo) -> repeated flags, as absl expects."""
    return cli.expand_nargs(argv, MULTI_VALUE_FLAGS)


def main(argv):
    command = argv[1:]
    if command and command[0] != "geotiff":
        raise app.UsageError(f"unexpected arguments: {' '.join(command)} (the only command is 'geotiff')")
    if len(command) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(command[1:])}")
    if not FLAGS.h5 or not FLAGS.out:
        raise app.UsageError("--h5 and --out are required")
    try:
        if command:
            if not FLAGS.rows:
                raise app.UsageError("geotiff: --rows is required (e.g. --rows 0,5,10-20)")
            geos = FLAGS.geo or [None] * len(FLAGS.h5)
            if len(geos) != len(FLAGS.h5):
                raise app.UsageError("--geo needs one file per --h5 file")
            for h5_path, geo in zip(FLAGS.h5, geos):
                paths = export_geotiffs(h5_path, FLAGS.rows, FLAGS.out, geo, FLAGS.sensors, FLAGS.tfw_order,
                                        FLAGS.keep_float64)
                print(f"{h5_path}: wrote {len(paths)} GeoTIFFs to {FLAGS.out} (CRS and transform checked)")
            return 0
        t0 = time.time()
        manifest = prepare(FLAGS.h5, FLAGS.out, FLAGS.split_names, FLAGS.geo, FLAGS.geolocation, FLAGS.tfw_order,
                           FLAGS.keep_float64, FLAGS.read_rows, FLAGS.max_rows, FLAGS.shard_size_mb,
                           FLAGS.compression, FLAGS.workers, FLAGS.on_error, FLAGS.overwrite, FLAGS.progress)
    except shards.PrepError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(summary(manifest, time.time() - t0, input_bytes(manifest)))
    print(f"manifest: {os.path.join(FLAGS.out, shards.MANIFEST)}")
    return 0


def run():
    define_flags()
    app.run(main, argv=expand_nargs(sys.argv))


if __name__ == "__main__":
    run()
