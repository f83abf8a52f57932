"""prep.tiff: the fast GeoTIFF band reader against rasterio, its fallback, its errors, and the writer."""
from __future__ import annotations

import json
import struct
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.crs import CRS
from rasterio.transform import Affine

from prep import tiff
from prep.datasets.bigearthnet import spec as ben
from prep.datasets.bigearthnet.synthetic import extract_examples

SHAPES = {b.name: b.shape for b in ben.BANDS}


@pytest.fixture(scope="session")
def example_patches(tmp_path_factory) -> list[Path]:
    """The six real BigEarthNet-S2 patches, extracted from the bigearthnet-common wheel."""
    return extract_examples(tmp_path_factory.mktemp("examples"))


@pytest.fixture(scope="session")
def example_bands(example_patches) -> list[Path]:
    files = sorted(p for d in example_patches for p in d.glob("*.tif"))
    assert len(files) == 72
    return files


@pytest.fixture
def fallback_calls(monkeypatch) -> list:
    """Records every file that went to the rasterio fallback."""
    calls = []
    original = tiff._read_rasterio

    def spy(path, band):
        calls.append(path)
        return original(path, band)

    monkeypatch.setattr(tiff, "_read_rasterio", spy)
    return calls


def from_origin(x, y, xres, yres) -> Affine:
    return Affine(xres, 0, x, 0, -yres, y)


def _rio_read(path, band=1):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(path) as ds:
            return ds.read(band)


def _band_name(path: Path) -> str:
    return path.stem.rsplit("_", 1)[1]


def _craft_tiff(arr: np.ndarray, order: str = "<", rows_per_strip: int = 3, reverse: bool = False,
                with_counts: bool = True) -> bytes:
    """A minimal (non-GDAL) striped TIFF: strips before the IFD, optionally in reverse order,
    LONG width/height, optional StripByteCounts."""
    e = order
    h, w = arr.shape
    dt = arr.dtype.newbyteorder(e)
    strips = [arr[i:i + rows_per_strip].astype(dt).tobytes() for i in range(0, h, rows_per_strip)]
    body, offsets = b"", [0] * len(strips)
    for i in (reversed(range(len(strips))) if reverse else range(len(strips))):
        offsets[i] = 8 + len(body)
        body += strips[i]
    if len(body) % 2:
        body += b"\0"
    ifd_at = 8 + len(body)
    fmt = {"u": 1, "i": 2, "f": 3}[arr.dtype.kind]
    tags = [(256, 4, [w]), (257, 4, [h]), (258, 3, [arr.dtype.itemsize * 8]), (259, 3, [1]), (262, 3, [1]),
            (273, 4, offsets), (277, 3, [1]), (278, 4, [rows_per_strip])]
    if with_counts:
        tags.append((279, 4, [len(s) for s in strips]))
    tags.append((339, 3, [fmt]))
    extra_at = ifd_at + 2 + 12 * len(tags) + 4
    entries, extra = b"", b""
    for tag, typ, values in tags:
        code = "H" if typ == 3 else "I"
        packed = struct.pack(f"{e}{len(values)}{code}", *values)
        if len(packed) <= 4:
            entries += struct.pack(e + "HHI", tag, typ, len(values)) + packed.ljust(4, b"\0")
        else:
            entries += struct.pack(e + "HHII", tag, typ, len(values), extra_at + len(extra))
            extra += packed
    head = (b"II" if e == "<" else b"MM") + struct.pack(e + "HI", 42, ifd_at)
    return head + body + struct.pack(e + "H", len(tags)) + entries + b"\0\0\0\0" + extra


# --- pixel-exact against rasterio -------------------------------------------------------

def test_real_example_bands_match_rasterio_pixel_exactly(example_bands, fallback_calls):
    for path in example_bands:
        ours = tiff.read_band(path, shape=SHAPES[_band_name(path)], dtype="uint16")
        ref = _rio_read(path)
        assert ours.dtype == ref.dtype == np.uint16
        assert ours.shape == ref.shape
        np.testing.assert_array_equal(ours, ref, err_msg=str(path))
    assert fallback_calls == []  # all 72 read by the fast path


def test_returned_array_is_writable_native(example_bands):
    arr = tiff.read_band(example_bands[0])
    arr[0, 0] = 7  # must not raise (a read-only view would)
    assert arr.dtype.isnative


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int16", "uint32", "int32", "float32", "float64"])
@pytest.mark.parametrize("shape", [(1, 1), (7, 13), (120, 120), (301, 67)])
def test_rasterio_written_files_match(tmp_path, fallback_calls, dtype, shape):
    rng = np.random.default_rng(sum(shape))
    arr = (rng.random(shape) * 200).astype(dtype)
    path = tmp_path / "band.tif"
    with rasterio.open(path, "w", driver="GTiff", width=shape[1], height=shape[0], count=1, dtype=dtype,
                       crs="EPSG:32633", transform=from_origin(300000, 5400000, 10, 10)) as ds:
        ds.write(arr, 1)
    got = tiff.read_band(path, shape=shape, dtype=dtype)
    np.testing.assert_array_equal(got, _rio_read(path))
    np.testing.assert_array_equal(got, arr)
    assert fallback_calls == []


def test_big_endian_file_read_by_fast_path(tmp_path, fallback_calls):
    arr = np.arange(120 * 120, dtype=np.uint16).reshape(120, 120)
    path = tmp_path / "big.tif"
    with rasterio.open(path, "w", driver="GTiff", width=120, height=120, count=1, dtype="uint16",
                       crs="EPSG:32635", transform=from_origin(0, 0, 10, 10), endianness="BIG") as ds:
        ds.write(arr, 1)
    assert path.read_bytes()[:2] == b"MM"
    got = tiff.read_band(path, dtype="uint16")
    np.testing.assert_array_equal(got, arr)
    assert got.dtype.isnative and fallback_calls == []


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("reverse,with_counts", [(False, True), (True, True), (False, False)])
def test_crafted_striped_layouts(tmp_path, fallback_calls, order, reverse, with_counts):
    arr = np.random.default_rng(3).integers(0, 60000, size=(20, 9)).astype(np.uint16)
    path = tmp_path / "crafted.tif"
    path.write_bytes(_craft_tiff(arr, order, rows_per_strip=6, reverse=reverse, with_counts=with_counts))
    if with_counts:  # GDAL agrees the file is valid (libtiff insists on StripByteCounts; we infer them)
        np.testing.assert_array_equal(_rio_read(path), arr)
    np.testing.assert_array_equal(tiff.read_band(path, shape=(20, 9)), arr)
    assert fallback_calls == []


# --- fallback to rasterio ----------------------------------------------------------------

@pytest.mark.parametrize("options", [
    {"compress": "deflate"},
    {"tiled": True, "blockxsize": 16, "blockysize": 16},
    {"compress": "lzw", "tiled": True, "blockxsize": 32, "blockysize": 32},
    {"BIGTIFF": "YES"},
])
def test_fallback_for_layouts_the_fast_path_leaves(tmp_path, fallback_calls, options):
    arr = np.random.default_rng(1).integers(0, 10000, size=(60, 60)).astype(np.uint16)
    path = tmp_path / "other.tif"
    with rasterio.open(path, "w", driver="GTiff", width=60, height=60, count=1, dtype="uint16",
                       crs="EPSG:32629", transform=from_origin(600000, 5900040, 20, 20), **options) as ds:
        ds.write(arr, 1)
    np.testing.assert_array_equal(tiff.read_band(path, shape=(60, 60), dtype="uint16"), arr)
    assert fallback_calls == [str(path)]


def test_multiband_file_falls_back_and_selects_band(tmp_path, fallback_calls):
    arr = np.random.default_rng(2).integers(0, 1000, size=(3, 20, 20)).astype(np.uint16)
    path = tmp_path / "rgb.tif"
    with rasterio.open(path, "w", driver="GTiff", width=20, height=20, count=3, dtype="uint16",
                       crs="EPSG:32629", transform=from_origin(0, 0, 60, 60), interleave="pixel") as ds:
        ds.write(arr)
    np.testing.assert_array_equal(tiff.read_band(path), arr[0])
    np.testing.assert_array_equal(tiff.read_band(path, band=3), arr[2])
    with pytest.raises(tiff.BandError, match="band 4 asked, the file has 3"):
        tiff.read_band(path, band=4)
    assert len(fallback_calls) == 3


# --- errors -------------------------------------------------------------------------------

def test_missing_file(tmp_path):
    path = tmp_path / "nope_B02.tif"
    with pytest.raises(tiff.BandError) as err:
        tiff.read_band(path)
    assert str(path) in str(err.value) and "not found" in str(err.value)
    assert isinstance(err.value, ValueError) and err.value.path == str(path)


@pytest.mark.parametrize("content,problem", [
    (b"", "not a TIFF file (empty)"),
    (b"hello, this is text and not an image", "not a TIFF file"),
    (b"II\x2b\x00" + bytes(12), "BigTIFF"),  # a BigTIFF header with nothing behind it: rasterio fails too
    (b"II*\x00\xff\xff\x00\x00", "corrupt TIFF"),
])
def test_not_a_tiff(tmp_path, content, problem):
    path = tmp_path / "bad_B01.tif"
    path.write_bytes(content)
    with pytest.raises(tiff.BandError) as err:
        tiff.read_band(path)
    msg = str(err.value)
    assert msg.startswith(str(path) + ": ")
    if problem != "BigTIFF":
        assert problem in msg
    else:
        assert "unreadable GeoTIFF" in msg


def test_truncated_pixel_data(tmp_path, example_bands):
    src = next(p for p in example_bands if _band_name(p) == "B02")
    path = tmp_path / src.name
    path.write_bytes(src.read_bytes()[:20000])
    with pytest.raises(tiff.BandError) as err:
        tiff.read_band(path, shape=(120, 120), dtype="uint16")
    msg = str(err.value)
    assert str(path) in msg and "truncated" in msg and "beyond the file size 20000" in msg


def test_truncated_header(tmp_path, example_bands):
    path = tmp_path / "cut_B02.tif"
    path.write_bytes(example_bands[0].read_bytes()[:100])
    with pytest.raises(tiff.BandError, match="runs past the end of the file"):
        tiff.read_band(path)


def test_corrupt_compressed_file_through_fallback(tmp_path):
    arr = np.random.default_rng(5).integers(0, 10000, size=(120, 120)).astype(np.uint16)
    path = tmp_path / "deflate.tif"
    with rasterio.open(path, "w", driver="GTiff", width=120, height=120, count=1, dtype="uint16",
                       crs="EPSG:32633", transform=from_origin(0, 0, 10, 10), compress="deflate") as ds:
        ds.write(arr, 1)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(tiff.BandError, match="unreadable GeoTIFF") as err:
        tiff.read_band(path)
    assert str(path) in str(err.value)


def test_wrong_shape_message(example_bands):
    b05 = next(p for p in example_bands if _band_name(p) == "B05")
    with pytest.raises(tiff.BandError) as err:
        tiff.read_band(b05, shape=(120, 120), dtype="uint16")
    assert str(err.value) == f"{b05}: shape (60, 60), expected (120, 120)"


def test_wrong_dtype_message(example_bands):
    with pytest.raises(tiff.BandError) as err:
        tiff.read_band(example_bands[0], dtype="float32")
    assert str(err.value) == f"{example_bands[0]}: dtype uint16, expected float32"


def test_directory_instead_of_file(tmp_path):
    with pytest.raises(tiff.BandError, match="is a directory"):
        tiff.read_band(tmp_path)


# --- georeferencing and the writer --------------------------------------------------------

def test_read_georef_matches_json_of_real_examples(example_patches):
    for folder in example_patches:
        meta = json.loads(next(folder.glob("*_labels_metadata.json")).read_text())
        epsg = CRS.from_wkt(meta["projection"]).to_epsg()
        c = meta["coordinates"]
        for path in folder.glob("*.tif"):
            g = tiff.read_georef(path)
            res = 1200 / SHAPES[_band_name(path)][0]
            assert g["epsg"] == epsg
            assert g["shape"] == SHAPES[_band_name(path)]
            assert g["bounds"] == pytest.approx((c["ulx"], c["uly"], c["lrx"], c["lry"]))
            assert g["transform"] == pytest.approx((res, 0, c["ulx"], 0, -res, c["uly"]))


def test_read_georef_errors(tmp_path):
    with pytest.raises(tiff.BandError, match="not found"):
        tiff.read_georef(tmp_path / "missing.tif")
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"not a tiff at all")
    with pytest.raises(tiff.BandError, match="unreadable GeoTIFF"):
        tiff.read_georef(bad)



_RASTERIO_GEOREF = tiff.read_georef


def _reference_georef(path) -> dict:
    """rasterio's georeference without the WKT: what read_band_georef must give."""
    return {k: v for k, v in _RASTERIO_GEOREF(path).items() if k != "crs"}


@pytest.fixture
def georef_fallbacks(monkeypatch) -> list:
    """Records every file whose georeference went to rasterio (read_georef)."""
    calls = []

    def spy(path):
        calls.append(str(path))
        return _RASTERIO_GEOREF(path)

    monkeypatch.setattr(tiff, "read_georef", spy)
    return calls


def test_read_band_georef_real_examples_from_one_read(example_bands, fallback_calls, georef_fallbacks):
    for path in example_bands:
        arr, g = tiff.read_band_georef(path, shape=SHAPES[_band_name(path)], dtype="uint16")
        np.testing.assert_array_equal(arr, _rio_read(path))
        assert g == _reference_georef(path), path
    assert fallback_calls == [] and georef_fallbacks == []  # all 72 from the bytes already read


def _with_tiepoint_offset(data: bytes, i: float, j: float) -> bytes:
    """An encode_geotiff file whose tie point links raster (i, j) instead of (0, 0) to the same place."""
    (n,) = struct.unpack_from("<H", data, 8)
    for k in range(n):
        tag, _, _, at = struct.unpack_from("<HHII", data, 10 + 12 * k)
        if tag == 33922:
            sx, sy = struct.unpack_from("<2d", data, next(
                struct.unpack_from("<HHII", data, 10 + 12 * m)[3] for m in range(n)
                if struct.unpack_from("<H", data, 10 + 12 * m)[0] == 33550))
            _, _, _, x, y, _ = struct.unpack_from("<6d", data, at)
            out = bytearray(data)
            struct.pack_into("<6d", out, at, i, j, 0.0, x + i * sx, y - j * sy, 0.0)
            return bytes(out)
    raise AssertionError("no tie point")


@pytest.mark.parametrize("kind", ["encoder-32601", "encoder-32733", "rasterio", "rasterio-lzw-tiled", "tiepoint-offset"])
def test_read_band_georef_simple_layouts_without_rasterio(tmp_path, georef_fallbacks, kind):
    arr = np.random.default_rng(3).integers(0, 10000, size=(60, 40)).astype(np.uint16)
    path = tmp_path / "g.tif"
    if kind.startswith("encoder"):
        tiff.write_band(path, arr, int(kind.split("-")[1]), 499980, 4400040, 20)
    elif kind == "tiepoint-offset":
        path.write_bytes(_with_tiepoint_offset(tiff.encode_geotiff(arr, 32635, 600000, 5700000, 10), 7, 3))
    else:
        options = {"compress": "lzw", "tiled": True, "blockxsize": 16, "blockysize": 16} if "lzw" in kind else {}
        with rasterio.open(path, "w", driver="GTiff", width=40, height=60, count=1, dtype="uint16",
                           crs="EPSG:32629", transform=from_origin(600000, 5900040, 20, 20), **options) as ds:
            ds.write(arr, 1)
    got, g = tiff.read_band_georef(path, shape=(60, 40), dtype="uint16")
    np.testing.assert_array_equal(got, arr)
    assert g == _reference_georef(path)
    assert georef_fallbacks == []


@pytest.mark.parametrize("kind", ["pixel-is-point", "rotated", "custom-crs", "geographic", "not-georeferenced",
                                  "bigtiff"])
def test_read_band_georef_other_layouts_go_to_rasterio(tmp_path, georef_fallbacks, kind):
    arr = np.random.default_rng(4).integers(0, 10000, size=(20, 30)).astype(np.uint16)
    path = tmp_path / "g.tif"
    if kind == "not-georeferenced":
        path.write_bytes(_craft_tiff(arr))
    else:
        crs, transform, options = "EPSG:32633", from_origin(300000, 5400000, 10, 10), {}
        if kind == "rotated":
            transform = Affine(10, 2, 300000, 2, -10, 5400000)
        elif kind == "custom-crs":
            crs = "+proj=tmerc +lat_0=0 +lon_0=15 +k=0.9996 +x_0=500000 +y_0=0 +ellps=intl +units=m"
        elif kind == "geographic":
            crs, transform = "EPSG:4326", from_origin(15.0, 48.0, 0.001, 0.001)
        elif kind == "bigtiff":
            options = {"BIGTIFF": "YES"}
        with rasterio.open(path, "w", driver="GTiff", width=30, height=20, count=1, dtype="uint16", crs=crs,
                           transform=transform, **options) as ds:
            if kind == "pixel-is-point":
                ds.update_tags(AREA_OR_POINT="Point")
            ds.write(arr, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        got, g = tiff.read_band_georef(path, shape=(20, 30), dtype="uint16")
        assert g == _reference_georef(path)
    np.testing.assert_array_equal(got, arr)
    assert georef_fallbacks == [str(path)]  # pixels as points: GDAL moves the tie point by half a pixel


def test_read_band_georef_errors_as_read_band(tmp_path):
    with pytest.raises(tiff.BandError, match="not found"):
        tiff.read_band_georef(tmp_path / "missing.tif")
    path = tmp_path / "g.tif"
    tiff.write_band(path, np.zeros((60, 60), np.uint16), 32633, 300000, 5400000, 20)
    with pytest.raises(tiff.BandError, match=r"shape \(60, 60\), expected \(120, 120\)"):
        tiff.read_band_georef(path, shape=(120, 120))
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(tiff.BandError, match="g.tif"):
        tiff.read_band_georef(path)

def test_encoder_reproduces_real_files_byte_for_byte(example_bands):
    for path in example_bands:
        g = tiff.read_georef(path)
        a, _, c, _, _, f = g["transform"]
        data = tiff.encode_geotiff(tiff.read_band(path), g["epsg"], c, f, a)
        assert data == path.read_bytes(), path


@pytest.mark.parametrize("epsg", [32601, 32629, 32635, 32660, 32733])
@pytest.mark.parametrize("shape,dtype", [((120, 120), "uint16"), ((20, 20), "uint16"), ((33, 5), "float32"),
                                         ((500, 300), "int16")])
def test_written_geotiffs_read_back_by_rasterio(tmp_path, epsg, shape, dtype):
    arr = (np.random.default_rng(epsg).random(shape) * 3000).astype(dtype)
    path = tmp_path / "w.tif"
    tiff.write_band(path, arr, epsg, 499980, 4400040, 20)
    g = tiff.read_georef(path)
    assert g["epsg"] == epsg
    assert g["transform"] == pytest.approx((20, 0, 499980, 0, -20, 4400040))
    np.testing.assert_array_equal(_rio_read(path), arr)
    np.testing.assert_array_equal(tiff.read_band(path, shape=shape, dtype=dtype), arr)


def test_writer_rejects_bad_input():
    with pytest.raises(ValueError, match="not a WGS 84 / UTM zone"):
        tiff.encode_geotiff(np.zeros((2, 2), np.uint16), 4326, 0, 0, 10)
    with pytest.raises(ValueError, match="2-D"):
        tiff.encode_geotiff(np.zeros((2, 2, 2), np.uint16), 32633, 0, 0, 10)
    with pytest.raises(ValueError, match="cannot be written"):
        tiff.encode_geotiff(np.zeros((2, 2), bool), 32633, 0, 0, 10)


# --- parse_raster: multi-band files ---------------------------------------------------------

@pytest.mark.parametrize("dtype", ["uint16", "float32", "uint8"])
@pytest.mark.parametrize("interleave", ["pixel", "band"])
@pytest.mark.parametrize("endianness", ["LITTLE", "BIG"])
def test_parse_raster_matches_rasterio(tmp_path, dtype, interleave, endianness):
    rng = np.random.default_rng(5)
    arr = (rng.random((4, 37, 23)) * 60000).astype(dtype)
    if dtype == "float32":
        arr[0, 1, 2] = np.nan
    path = tmp_path / "multi.tif"
    with rasterio.open(path, "w", driver="GTiff", width=23, height=37, count=4, dtype=dtype,
                       crs="EPSG:32632", transform=from_origin(399960, 5000040, 10, 10),
                       interleave=interleave, ENDIANNESS=endianness) as ds:
        ds.write(arr)
    got = tiff.parse_raster(tiff.read_file(path), path)
    assert got is not None
    pixels, georef = got
    with rasterio.open(path) as ds:
        want, transform = ds.read(), ds.transform
    assert pixels.dtype == np.dtype(dtype) and pixels.dtype.isnative and pixels.flags.writeable
    np.testing.assert_array_equal(pixels, want)
    assert [repr(v) for v in georef["transform"]] == [repr(float(v)) for v in transform[:6]]
    assert georef["epsg"] == 32632 and georef["shape"] == (37, 23)
    # bytes (a tarball member) give the same, writable
    again, _ = tiff.parse_raster(path.read_bytes(), path)
    np.testing.assert_array_equal(again, want)
    assert again.flags.writeable


@pytest.mark.parametrize("options", [{"compress": "deflate"}, {"tiled": True, "blockxsize": 16, "blockysize": 16}])
def test_parse_raster_leaves_other_layouts_and_corrupt_files_to_rasterio(tmp_path, options):
    arr = np.ones((2, 32, 32), np.uint16)
    path = tmp_path / "other.tif"
    with rasterio.open(path, "w", driver="GTiff", width=32, height=32, count=2, dtype="uint16",
                       crs="EPSG:32632", transform=from_origin(0, 0, 10, 10), **options) as ds:
        ds.write(arr)
    assert tiff.parse_raster(tiff.read_file(path), path) is None
    plain = tmp_path / "plain.tif"
    with rasterio.open(plain, "w", driver="GTiff", width=32, height=32, count=2, dtype="uint16",
                       crs="EPSG:32632", transform=from_origin(0, 0, 10, 10)) as ds:
        ds.write(arr)
    data = tiff.read_file(plain)
    assert tiff.parse_raster(data, plain) is not None
    assert tiff.parse_raster(data[: len(data) // 2], plain) is None  # truncated pixels
    assert tiff.parse_raster(data[:40], plain) is None  # truncated header
