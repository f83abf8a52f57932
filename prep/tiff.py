"""Single-band GeoTIFFs: a fast reader for uncompressed striped files and a GDAL-style writer.

The BigEarthNet archive holds 12 small GeoTIFFs per patch, uncompressed, striped, one band each.
Opening each with GDAL (rasterio) costs far more than reading its pixels, so ``read_band`` parses
the classic TIFF header and first IFD itself (``struct``) and slices the strips with numpy. Any
layout it does not handle (compression, tiles, BigTIFF, several samples per pixel, odd bit
depths, a band other than the first) falls back to rasterio transparently, so callers can pass
any GeoTIFF. ``read_georef`` (rasterio) gives the CRS and geotransform for checks;
``read_band_georef`` gives a band and its EPSG code and geotransform from one read of the file
(the GeoTIFF tags GDAL writes are parsed from the same bytes; any other goes to rasterio).

``encode_geotiff`` / ``write_band`` write the layout GDAL gives such files (same tags, strip size,
GeoKeys and byte layout as the real archive files), for a north-up image in a WGS 84 / UTM CRS;
rasterio reads their CRS and transform back.

Every problem raises ``BandError`` (a ValueError) whose message names the file and the problem.
"""
from __future__ import annotations

import os
import struct
from typing import TYPE_CHECKING, Sequence

import numpy as np

from prep.errors import InputError

if TYPE_CHECKING:
    from numpy.typing import DTypeLike

__all__ = ["BandError", "parse_raster", "read_band", "read_band_georef", "read_file", "read_georef",
           "encode_geotiff", "write_band", "utm_epsg_citation"]


class BandError(InputError):
    """A band file that cannot be read as asked: missing, corrupt, wrong shape or dtype."""

    def __init__(self, path, problem: str):
        super().__init__(problem, path=path)


# --- reading ------------------------------------------------------------------------------------

# TIFF field types -> (struct code, size in bytes)
_TYPES = {1: ("B", 1), 2: ("s", 1), 3: ("H", 2), 4: ("I", 4), 5: ("II", 8), 6: ("b", 1), 7: ("B", 1),
          8: ("h", 2), 9: ("i", 4), 10: ("ii", 8), 11: ("f", 4), 12: ("d", 8), 16: ("Q", 8), 17: ("q", 8)}
# (SampleFormat, BitsPerSample) -> numpy kind code
_DTYPES = {(1, 8): "u1", (1, 16): "u2", (1, 32): "u4", (1, 64): "u8",
           (2, 8): "i1", (2, 16): "i2", (2, 32): "i4", (2, 64): "i8",
           (3, 16): "f2", (3, 32): "f4", (3, 64): "f8"}

_WIDTH, _LENGTH, _BITS, _COMPRESSION = 256, 257, 258, 259
_STRIP_OFFSETS, _SAMPLES, _ROWS_PER_STRIP, _STRIP_COUNTS = 273, 277, 278, 279
_PLANAR, _TILE_WIDTH, _TILE_OFFSETS, _SAMPLE_FORMAT = 284, 322, 324, 339


class _Unsupported(Exception):
    """A valid TIFF whose layout the fast path leaves to rasterio."""


def _values(buf, e: str, entry: tuple, path) -> tuple:
    typ, count, pos = entry
    code, size = _TYPES[typ]
    nbytes = size * count
    if nbytes > 4:
        (pos,) = struct.unpack_from(e + "I", buf, pos)
    if pos + nbytes > len(buf):
        raise BandError(path, f"corrupt TIFF: a tag's values end at byte {pos + nbytes}, "
                              f"beyond the file size {len(buf)} (truncated file?)")
    if len(code) == 2:  # rationals: not used by the fields we read
        return struct.unpack_from(f"{e}{2 * count}{code[0]}", buf, pos)
    return struct.unpack_from(f"{e}{count}{code}", buf, pos)


def _parse_ifd(buf, path) -> tuple[str, dict]:
    """Byte order (``"<"`` or ``">"``) and tags of the first IFD of the classic TIFF in ``buf``.

    Tags map to ``(type, count, position of the entry's value field)``; ``_values`` reads them.
    """
    size = len(buf)
    if size < 8:
        raise BandError(path, f"not a TIFF file ({'empty' if size == 0 else f'only {size} bytes'})")
    order = bytes(buf[:2])
    if order == b"II":
        e = "<"
    elif order == b"MM":
        e = ">"
    else:
        raise BandError(path, f"not a TIFF file (starts with {bytes(buf[:4])!r})")
    magic, ifd = struct.unpack_from(e + "HI", buf, 2)
    if magic == 43:
        raise _Unsupported("BigTIFF")
    if magic != 42:
        raise BandError(path, f"not a TIFF file (version {magic}, expected 42)")
    if ifd < 8 or ifd + 2 > size:
        raise BandError(path, f"corrupt TIFF: first IFD at byte {ifd}, file size {size} (truncated file?)")
    (n,) = struct.unpack_from(e + "H", buf, ifd)
    if ifd + 2 + 12 * n > size:
        raise BandError(path, f"corrupt TIFF: IFD of {n} entries at byte {ifd} runs past the end "
                              f"of the file ({size} bytes; truncated file?)")
    tags = {}
    pos = ifd + 2
    for _ in range(n):
        tag, typ, count = struct.unpack_from(e + "HHI", buf, pos)
        if typ in _TYPES:
            tags[tag] = (typ, count, pos + 8)
        pos += 12
    return e, tags


def _parse_striped(buf, e: str, tags: dict, path) -> np.ndarray:
    """Returns the pixels of the first IFD of an uncompressed striped single-sample TIFF in ``buf``.

    ``e`` and ``tags`` are ``_parse_ifd``'s.
    """
    samples = _values(buf, e, tags[_SAMPLES], path)[0] if _SAMPLES in tags else 1
    if samples != 1:
        raise _Unsupported("several samples per pixel")
    return _parse_samples(buf, e, tags, path)[0]


def _parse_samples(buf, e: str, tags: dict, path) -> np.ndarray:
    """Returns ``[samples, rows, cols]``: the pixels of the first IFD of an uncompressed striped TIFF.

    Both planar configurations are read: 1 (chunky: the samples of a pixel side by side, GDAL's
    ``INTERLEAVE=PIXEL``) and 2 (one plane per sample, ``INTERLEAVE=BAND``). Every sample must have
    the same bit depth and format. ``e`` and ``tags`` are ``_parse_ifd``'s.
    """
    size = len(buf)

    def one(tag, default=None):
        entry = tags.get(tag)
        if entry is None:
            if default is None:
                raise BandError(path, f"corrupt TIFF: required tag {tag} missing")
            return default
        return _values(buf, e, entry, path)[0]

    if _TILE_WIDTH in tags or _TILE_OFFSETS in tags:
        raise _Unsupported("tiled")
    if one(_COMPRESSION, 1) != 1:
        raise _Unsupported("compressed")
    samples = one(_SAMPLES, 1)
    planar = one(_PLANAR, 1) if samples > 1 else 1
    if samples < 1 or planar not in (1, 2):
        raise _Unsupported("planar configuration")
    bits = _values(buf, e, tags[_BITS], path) if _BITS in tags else (1,)
    formats = _values(buf, e, tags[_SAMPLE_FORMAT], path) if _SAMPLE_FORMAT in tags else (1,)
    if len(set(bits)) != 1 or len(set(formats)) != 1:
        raise _Unsupported("samples of different types")
    kind = _DTYPES.get((formats[0], bits[0]))
    if kind is None:
        raise _Unsupported("sample format")
    width, height = one(_WIDTH), one(_LENGTH)
    dtype = np.dtype(e + kind)
    planes = samples if planar == 2 else 1
    per_pixel = 1 if planar == 2 else samples
    row_bytes = width * per_pixel * dtype.itemsize
    if _STRIP_OFFSETS not in tags:
        raise BandError(path, "corrupt TIFF: no StripOffsets tag")
    offsets = _values(buf, e, tags[_STRIP_OFFSETS], path)
    rows = min(one(_ROWS_PER_STRIP, 2 ** 32 - 1), height) or height
    per_plane = -(-height // rows) if height else 0
    nstrips = per_plane * planes
    if len(offsets) < nstrips:
        raise BandError(path, f"corrupt TIFF: {len(offsets)} strip offsets for {nstrips} strips")
    if _STRIP_COUNTS in tags:
        counts = _values(buf, e, tags[_STRIP_COUNTS], path)
    else:
        counts = tuple(min(rows, height - (i % per_plane) * rows) * row_bytes for i in range(nstrips))
    if len(counts) < nstrips:
        raise BandError(path, f"corrupt TIFF: {len(counts)} strip byte counts for {nstrips} strips")
    total = planes * height * row_bytes
    # Fast path: strips stored back to back (the usual GDAL layout) -> one frombuffer.
    start = offsets[0] if nstrips else 0
    contiguous = all(offsets[i + 1] == offsets[i] + counts[i] for i in range(nstrips - 1))
    if contiguous and start + total <= size and sum(counts[:nstrips]) >= total:
        arr = np.frombuffer(buf, dtype, count=total // dtype.itemsize, offset=start)
    else:
        parts = []
        for i in range(nstrips):
            need = min(rows, height - (i % per_plane) * rows) * row_bytes
            if counts[i] < need:
                raise BandError(path, f"corrupt TIFF: strip {i} holds {counts[i]} bytes, expected {need}")
            if offsets[i] + need > size:
                raise BandError(path, f"truncated TIFF: strip {i} ends at byte {offsets[i] + need}, "
                                      f"beyond the file size {size}")
            parts.append(np.frombuffer(buf, dtype, count=need // dtype.itemsize, offset=offsets[i]))
        arr = np.concatenate(parts) if parts else np.empty(0, dtype)
    if planar == 2:
        arr = arr.reshape(samples, height, width)
    else:
        arr = arr.reshape(height, width, samples).transpose(2, 0, 1)
    if (e == ">" and dtype.itemsize > 1) or not arr.flags.c_contiguous:
        arr = np.ascontiguousarray(arr, dtype.newbyteorder("="))
    return arr


def _read_rasterio(path: str, band: int) -> np.ndarray:
    import warnings

    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)  # pixels only: no georef needed
            ds = rasterio.open(path)
        with ds:
            if not 1 <= band <= ds.count:
                raise BandError(path, f"band {band} asked, the file has {ds.count} band(s)")
            return ds.read(band)
    except RasterioError as err:
        raise BandError(path, f"unreadable GeoTIFF ({err})") from None


def _read_file(path: str) -> bytearray:
    try:
        with open(path, "rb", buffering=0) as f:
            buf = bytearray(os.fstat(f.fileno()).st_size)
            got = f.readinto(buf)
    except FileNotFoundError:
        raise BandError(path, "file not found") from None
    except IsADirectoryError:
        raise BandError(path, "is a directory, not a band file") from None
    except OSError as err:
        raise BandError(path, f"cannot read file ({err.strerror or err})") from None
    if got != len(buf):
        del buf[got:]
    return buf


def _check(arr: np.ndarray, path: str, shape, dtype) -> np.ndarray:
    if shape is not None and arr.shape != tuple(shape):
        raise BandError(path, f"shape {arr.shape}, expected {tuple(int(s) for s in shape)}")
    if dtype is not None and arr.dtype != np.dtype(dtype):
        raise BandError(path, f"dtype {arr.dtype}, expected {np.dtype(dtype)}")
    return arr


def _read(path: str, band: int, with_georef: bool) -> tuple[np.ndarray, dict | None]:
    """Pixels of ``band`` and, if asked, the georeference from the same bytes (None: not parsed)."""
    buf = _read_file(path)
    arr = georef = None
    if band == 1:
        try:
            e, tags = _parse_ifd(buf, path)
            try:
                arr = _parse_striped(buf, e, tags, path)
            except _Unsupported:  # a layout left to rasterio: its georeference may still be simple
                arr = None
            if with_georef:
                georef = _georef_from_tags(buf, e, tags, path)
        except _Unsupported:  # BigTIFF
            arr = georef = None
        except struct.error as err:  # a field read past the end of a (truncated) file
            raise BandError(path, f"corrupt TIFF ({err})") from None
    if arr is None:
        arr = _read_rasterio(path, band)
    return arr, georef


def read_band(path: str | os.PathLike, shape: Sequence[int] | None = None, dtype: DTypeLike | None = None,
              band: int = 1) -> np.ndarray:
    """Reads one band of a GeoTIFF as a 2-D native-endian array (writable).

    ``shape`` and ``dtype``, when given, are checked: a mismatch raises BandError
    (e.g. ``"...B02.tif: shape (60, 60), expected (120, 120)"``).

    Args:
        path: the GeoTIFF.
        shape: expected (rows, cols), e.g. (120, 120) for a BigEarthNet 10 m band.
        dtype: expected pixel dtype, e.g. "uint16" (Sentinel-2 L2A DN = BOA reflectance x 10000).
        band: 1-based band index; bands other than 1 are read with rasterio.

    Returns:
        ``[rows, cols]`` pixels in the file's dtype and units.

    Raises:
        BandError: missing, corrupt or unreadable file, or a shape or dtype other than expected.
    """
    path = os.fspath(path)
    arr, _ = _read(path, band, with_georef=False)
    return _check(arr, path, shape, dtype)


def read_band_georef(path: str | os.PathLike, shape: Sequence[int] | None = None,
                     dtype: DTypeLike | None = None) -> tuple[np.ndarray, dict]:
    """Reads the first band of a GeoTIFF and its georeference, opening the file once.

    Returns ``(pixels, georef)``: the pixels as ``read_band`` gives them (``shape`` and
    ``dtype`` checked the same way) and ``georef`` with the keys of ``read_georef`` except
    ``"crs"`` (a WKT needs GDAL): ``"epsg"`` (int or None), ``"transform"`` (a, b, c, d, e, f),
    ``"bounds"`` (ulx, uly, lrx, lry) in CRS units (metres for UTM) and ``"shape"``
    (height, width). The simple georeference GDAL writes (one tie point, a positive pixel scale,
    a projected EPSG code, pixels as areas) is read from the bytes already read for the
    pixels; any other (a ModelTransformation, several tie points, pixels as points, a
    user-defined CRS, sidecar files, no GeoTIFF tags) goes to ``read_georef`` (rasterio), so
    the values are the same either way. Raises BandError as ``read_band`` and ``read_georef``.
    """
    path = os.fspath(path)
    arr, georef = _read(path, 1, with_georef=True)
    _check(arr, path, shape, dtype)
    if georef is None:
        georef = {k: v for k, v in read_georef(path).items() if k != "crs"}
    return arr, georef


def parse_raster(data: bytes | bytearray, path: str | os.PathLike) -> tuple[np.ndarray, dict] | None:
    """All bands and the georeference of a GeoTIFF's bytes, when both are in the simple GDAL layout.

    The pixels are read like ``read_band``'s (uncompressed, striped, classic TIFF) but for any
    number of samples per pixel, pixel- or band-interleaved; the georeference like
    ``read_band_georef``'s. Any other layout, and any corrupt or truncated file, gives None: the
    caller then opens the file with rasterio, whose errors and values are the reference.

    Args:
        data: the whole file's bytes.
        path: the file's name (messages only).

    Returns:
        ``(pixels, georef)``: pixels ``[bands, rows, cols]`` in the file's dtype (native byte
        order, writable), georef ``{"epsg", "transform", "bounds", "shape"}`` as
        ``read_band_georef`` gives it; or None.
    """
    path = os.fspath(path)
    try:
        e, tags = _parse_ifd(data, path)
        georef = _georef_from_tags(data, e, tags, path)
        if georef is None:
            return None
        arr = _parse_samples(data, e, tags, path)
    except (_Unsupported, BandError, struct.error):
        return None
    if not arr.flags.writeable:
        arr = arr.copy()
    return arr, georef


def read_file(path: str | os.PathLike) -> bytearray:
    """The whole file's bytes, read with one system call into a buffer numpy can share.

    Raises:
        BandError: the file is missing, a folder or unreadable.
    """
    return _read_file(os.fspath(path))


# GeoKeys the fast georeference path understands, with the values it accepts (None: any).
_GT_MODEL, _GT_RASTER, _PROJECTED_CS = 1024, 1025, 3072
_SIMPLE_GEOKEYS = {
    1024: (1,),      # GTModelType: projected
    1025: (1,),      # GTRasterType: PixelIsArea (PixelIsPoint shifts GDAL's transform by half a pixel)
    1026: None,      # GTCitation
    2049: None,      # GeogCitation
    2054: (9102,),   # GeogAngularUnits: degree
    3072: None,      # ProjectedCSType: the EPSG code (checked below)
    3073: None,      # PCSCitation
    3076: (9001,),   # ProjLinearUnits: metre
}
_PIXEL_SCALE, _TIEPOINT, _MODEL_TRANSFORM, _GEOKEYS = 33550, 33922, 34264, 34735


def _georef_from_tags(buf, e: str, tags: dict, path) -> dict | None:
    """The georeference of GDAL's simple layout from the parsed tags; None for any other."""
    if _MODEL_TRANSFORM in tags or any(t not in tags for t in (_WIDTH, _LENGTH, _PIXEL_SCALE, _TIEPOINT, _GEOKEYS)):
        return None
    if tags[_PIXEL_SCALE][:2] != (12, 3) or tags[_TIEPOINT][:2] != (12, 6) or tags[_GEOKEYS][0] != 3:
        return None
    keys = _values(buf, e, tags[_GEOKEYS], path)
    if len(keys) < 4 or keys[0] != 1 or len(keys) < 4 + 4 * keys[3]:
        return None
    geokeys = {}
    for i in range(keys[3]):
        key, location, count, value = keys[4 + 4 * i:8 + 4 * i]
        if key not in _SIMPLE_GEOKEYS:
            return None
        accepted = _SIMPLE_GEOKEYS[key]
        if location == 0:
            if count != 1 or (accepted is not None and value not in accepted):
                return None
            geokeys[key] = value
    epsg = geokeys.get(_PROJECTED_CS)
    if geokeys.get(_GT_MODEL) != 1 or epsg is None or not 1024 <= epsg <= 32766:
        return None
    sx, sy, _ = _values(buf, e, tags[_PIXEL_SCALE], path)
    i, j, _, x, y, _ = _values(buf, e, tags[_TIEPOINT], path)
    if not (sx > 0 and sy > 0):
        return None
    width, height = (_values(buf, e, tags[t], path)[0] for t in (_WIDTH, _LENGTH))
    ulx, uly = x - i * sx, y + j * sy
    return {
        "epsg": int(epsg),
        "transform": (float(sx), 0.0, float(ulx), 0.0, -float(sy), float(uly)),
        "bounds": (float(ulx), float(uly), float(ulx + sx * width), float(uly - sy * height)),
        "shape": (int(height), int(width)),
    }


def read_georef(path: str | os.PathLike) -> dict:
    """Reads the CRS and geotransform of a raster via rasterio (for checks, not the hot path).

    Returns:
        ``{"crs": WKT or None, "epsg": int or None, "transform": (a, b, c, d, e, f)`` of the affine
        pixel->CRS transform, ``"bounds": (ulx, uly, lrx, lry)`` in CRS units (metres for UTM),
        ``"shape": (height, width)}``.

    Raises:
        BandError: the file does not exist or rasterio cannot read it.
    """
    import rasterio
    from rasterio.errors import RasterioError

    path = os.fspath(path)
    if not os.path.exists(path):
        raise BandError(path, "file not found")
    try:
        with rasterio.open(path) as ds:
            t = ds.transform
            crs = ds.crs
            epsg = crs.to_epsg() if crs is not None else None
            h, w = ds.height, ds.width
            return {
                "crs": crs.to_wkt() if crs is not None else None,
                "epsg": int(epsg) if epsg is not None else None,
                "transform": tuple(float(v) for v in t[:6]),
                "bounds": (t.c, t.f, t.c + t.a * w, t.f + t.e * h),
                "shape": (h, w),
            }
    except RasterioError as err:
        raise BandError(path, f"unreadable GeoTIFF ({err})") from None


# --- writing ------------------------------------------------------------------------------------

_KINDS = {v: k for k, v in _DTYPES.items()}
_STRIP_TARGET = 8192  # GDAL's default strip size in bytes


def utm_epsg_citation(epsg: int) -> str:
    """Returns the GeoTIFF citation of a WGS 84 / UTM EPSG code: ``32635`` -> ``"WGS 84 / UTM zone 35N"``.

    Raises:
        ValueError: not a WGS 84 / UTM code (32601-32660 north, 32701-32760 south).
    """
    zone, hemi = epsg % 100, {326: "N", 327: "S"}.get(epsg // 100)
    if hemi is None or not 1 <= zone <= 60:
        raise ValueError(f"EPSG:{epsg} is not a WGS 84 / UTM zone")
    return f"WGS 84 / UTM zone {zone}{hemi}"


def encode_geotiff(array: np.ndarray, epsg: int, ulx: float, uly: float, resolution: float) -> bytes:
    """Encodes a single-band, uncompressed, striped, little-endian GeoTIFF, north up, in a WGS 84 / UTM CRS.

    The layout is GDAL's (strips of about 8 KiB, pixel data last), as in the BigEarthNet archive.

    Args:
        array: ``[rows, cols]`` pixels, any (u)int or float dtype of 8-64 bits.
        epsg: a WGS 84 / UTM EPSG code (32601-32660, 32701-32760).
        ulx: easting of the upper-left corner of the upper-left pixel, metres.
        uly: northing of that corner, metres.
        resolution: pixel size, metres (10, 20 or 60 for Sentinel-2 bands).

    Returns:
        The file's bytes.

    Raises:
        ValueError: not 2-D, an unsupported dtype, a side outside 1..65535, or not a UTM code.
    """
    array = np.asarray(array)
    if array.ndim != 2:
        raise ValueError(f"a single band is 2-D, got shape {array.shape}")
    key = _KINDS.get(array.dtype.kind + str(array.dtype.itemsize))
    if key is None:
        raise ValueError(f"dtype {array.dtype} cannot be written")
    sample_format, bits = key
    height, width = array.shape
    if not (0 < height < 65536 and 0 < width < 65536):
        raise ValueError(f"shape {array.shape} out of range")
    row_bytes = width * array.dtype.itemsize
    rows = min(height, max(1, _STRIP_TARGET // row_bytes))
    nstrips = -(-height // rows)
    counts = [min(rows, height - i * rows) * row_bytes for i in range(nstrips)]

    citation = (utm_epsg_citation(epsg) + "|WGS 84|").encode("ascii") + b"\0"
    geokeys = (1, 1, 0, 7,
               1024, 0, 1, 1,          # GTModelType: projected
               1025, 0, 1, 1,          # GTRasterType: PixelIsArea
               1026, 34737, len(citation) - 8, 0,  # GTCitation (in GeoAsciiParams)
               2049, 34737, 7, len(citation) - 8,  # GeogCitation "WGS 84|"
               2054, 0, 1, 9102,       # GeogAngularUnits: degree
               3072, 0, 1, int(epsg),  # ProjectedCSType
               3076, 0, 1, 9001)       # ProjLinearUnits: metre
    scale = (float(resolution), float(resolution), 0.0)
    tiepoint = (0.0, 0.0, 0.0, float(ulx), float(uly), 0.0)

    n_entries = 15
    pos = 8 + 2 + 12 * n_entries + 4
    extra = []  # (bytes) appended after the IFD, each starting on a word boundary

    def place(data: bytes) -> int:
        nonlocal pos
        at = pos
        extra.append(data)
        pos += len(data)
        if pos % 2:
            extra.append(b"\0")
            pos += 1
        return at

    counts_at = place(struct.pack(f"<{nstrips}I", *counts)) if nstrips > 1 else None
    offsets_slot = place(bytes(4 * nstrips)) if nstrips > 1 else None
    scale_at = place(struct.pack("<3d", *scale))
    tie_at = place(struct.pack("<6d", *tiepoint))
    keys_at = place(struct.pack(f"<{len(geokeys)}H", *geokeys))
    ascii_at = place(citation)
    data_at = pos
    offsets = [data_at + sum(counts[:i]) for i in range(nstrips)]
    if nstrips > 1:
        extra[1] = struct.pack(f"<{nstrips}I", *offsets)

    def short(tag, v):
        return struct.pack("<HHIH2x", tag, 3, 1, v)

    def long_(tag, values, at):
        if len(values) == 1:
            return struct.pack("<HHII", tag, 4, 1, values[0])
        return struct.pack("<HHII", tag, 4, len(values), at)

    entries = [
        short(256, width), short(257, height), short(258, bits), short(259, 1), short(262, 1),
        long_(273, offsets, offsets_slot), short(277, 1), short(278, rows),
        long_(279, counts, counts_at), short(284, 1), short(339, sample_format),
        struct.pack("<HHII", 33550, 12, 3, scale_at), struct.pack("<HHII", 33922, 12, 6, tie_at),
        struct.pack("<HHII", 34735, 3, len(geokeys), keys_at),
        struct.pack("<HHII", 34737, 2, len(citation), ascii_at),
    ]
    assert len(entries) == n_entries
    head = b"II*\0" + struct.pack("<I", 8) + struct.pack("<H", n_entries) + b"".join(entries) + b"\0\0\0\0"
    pixels = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
    return head + b"".join(extra) + pixels


def write_band(path: str | os.PathLike, array: np.ndarray, epsg: int, ulx: float, uly: float,
               resolution: float) -> None:
    """Writes ``encode_geotiff(array, epsg, ulx, uly, resolution)`` to ``path`` (see there; ValueError as there)."""
    data = encode_geotiff(array, epsg, ulx, uly, resolution)
    with open(path, "wb") as f:
        f.write(data)
