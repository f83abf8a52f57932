"""The GBU product functions against values worked out by hand on small rasters (scene/gbu/)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import rasterio
from rasterio.transform import Affine

from prep.errors import InputError, UsageError
from scene.gbu import aggregate as agg
from scene.gbu import aoi, cleaning, greenness, ndvi, resnres
from scene.gbu.bufrac import to_bufrac

NAN = np.nan


# --- 1. BUFRAC -----------------------------------------------------------------------------

def test_bufrac_is_the_prediction_over_10000_with_65535_as_nodata():
    raw = np.array([[0, 10000], [65535, 2500]], dtype=np.uint16)
    np.testing.assert_array_equal(to_bufrac(raw, "uint16", 65535), np.array([[0, 1], [NAN, 0.25]], np.float32))
    assert to_bufrac(raw, "uint16", None).dtype == np.float32  # 65535 assumed when the file has no nodata


def test_bufrac_refuses_values_out_of_range():
    with pytest.raises(InputError, match="p.tif: built-up probability above 10000"):
        to_bufrac(np.array([[10001]], np.uint16), "uint16", 65535, "p.tif")
    with pytest.raises(InputError, match="outside 0..1"):
        to_bufrac(np.array([[1.5]], np.float32), "float32", None, "p.tif")
    with pytest.raises(InputError, match="dtype int32"):
        to_bufrac(np.array([[1]], np.int32), "int32", None, "p.tif")
    f = to_bufrac(np.array([[0.5, -9]], np.float32), "float32", -9.0)
    np.testing.assert_array_equal(f, [[0.5, NAN]])


# --- 2. NDVI and cleaning -------------------------------------------------------------------

def test_reflectance_and_ndvi_by_hand():
    # R, G, B, NIR of three pixels: ordinary, a band 0 (invalid), NIR above 10000 (clipped)
    dn = np.array([[1000, 500, 2000], [800, 700, 900], [600, 0, 700], [3000, 4000, 12000]], np.uint16)[:, None, :]
    refl = ndvi.reflectance(dn)
    np.testing.assert_allclose(refl[:, 0, 0], [0.1, 0.08, 0.06, 0.3])
    assert np.isnan(refl[:, 0, 1]).all()
    assert refl[3, 0, 2] == 1.0
    np.testing.assert_allclose(ndvi.ndvi(refl)[0], [(0.3 - 0.1) / 0.4, NAN, (1 - 0.2) / 1.2], rtol=1e-6)
    # processing baseline >= 04.00: 1000 DN offset removed first
    shifted = ndvi.reflectance(dn + np.uint16(1000), offset=1000)
    np.testing.assert_allclose(shifted[:, 0, 0], refl[:, 0, 0], rtol=1e-6)


def test_cleaning_by_hand():
    b = np.array([[0.05, 0.10, 0.50, 0.80, NAN, 0.60, 0.70, 0.90]], np.float32)
    v = np.array([[0.00, 0.00, 0.31, 0.30, 0.0, NAN, 0.00, 0.00]], np.float32)
    centre = np.array([[0, 0, 0, 0, 0, 0, 1, 0]], bool)
    touched = np.array([[0, 0, 0, 0, 0, 1, 1, 0]], bool)
    got = cleaning.clean(b, v, street_centre=centre, street_touched=touched)
    #       <=0.1 -> 0, NDVI .31 > .3, NDVI .3 kept, nodata, touched x .5, centre -> 0, untouched
    want = [[0, 0, 0, 0.80, NAN, 0.30, 0, 0.90]]
    np.testing.assert_allclose(got, want, rtol=1e-6)
    np.testing.assert_allclose(cleaning.clean(b, None, threshold=0.55), [[0, 0, 0, 0.8, NAN, 0.6, 0.7, 0.9]])


# --- 3. greenness ---------------------------------------------------------------------------

def test_ellipse_kernel_is_opencvs():
    assert greenness.ellipse_kernel(3, 3).astype(int).tolist() == [[0, 1, 0], [1, 1, 1], [0, 1, 0]]
    assert greenness.ellipse_kernel(5, 5).astype(int).tolist() == [
        [0, 0, 1, 0, 0], [1, 1, 1, 1, 1], [1, 1, 1, 1, 1], [1, 1, 1, 1, 1], [0, 0, 1, 0, 0]]
    k = greenness.ellipse_kernel(60, 60)
    assert k.shape == (60, 60) and k[30].all() and k[:, 30].all() and not k[0, 0]
    assert abs(k.sum() - math.pi * 30 * 30) / (math.pi * 900) < 0.02


def _closing_by_definition(mask: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Dilation (outside = not built) then erosion (outside ignored), pixel by pixel."""
    rows, cols = mask.shape
    kr, kc = kernel.shape[0] // 2, kernel.shape[1] // 2
    offsets = [(i - kr, j - kc) for i, j in zip(*np.nonzero(kernel))]

    def inside(r, c):
        return 0 <= r < rows and 0 <= c < cols

    dil = np.array([[any(inside(r - di, c - dj) and mask[r - di, c - dj] for di, dj in offsets)
                     for c in range(cols)] for r in range(rows)])
    return np.array([[all(not inside(r + di, c + dj) or dil[r + di, c + dj] for di, dj in offsets)
                      for c in range(cols)] for r in range(rows)])


def test_closing_fills_gaps_and_keeps_the_edges():
    square = np.ones((3, 3), bool)
    m = np.zeros((7, 7), bool)
    m[0, 0] = m[0, 2] = True  # a one-pixel gap on the top edge
    m[4, 2] = m[4, 4] = True
    got = greenness.close_mask(m, square)
    want = m.copy()
    want[0, 1] = True  # outside the raster does not erode the edge
    want[4, 3] = True
    np.testing.assert_array_equal(got, want)
    rng = np.random.default_rng(3)
    for _ in range(3):
        m = rng.random((12, 14)) < 0.3
        k = greenness.ellipse_kernel(5, 5)
        np.testing.assert_array_equal(greenness.close_mask(m, k), _closing_by_definition(m, k))


def test_greenness_is_ndvi_inside_the_closing_and_nan_elsewhere():
    v = np.arange(35, dtype=np.float32).reshape(5, 7) / 35
    built = np.zeros((5, 7), bool)
    built[2, 2] = built[2, 4] = True
    g = greenness.greenness(v, built, np.ones((3, 3), bool))
    want = np.full((5, 7), NAN, np.float32)
    want[2, 2:5] = v[2, 2:5]
    np.testing.assert_array_equal(g, want)
    assert g.dtype == np.float32 and 0 < g[2, 3] < 1  # stored as float: not truncated


# --- 4. RES/NRES ----------------------------------------------------------------------------

def test_majority_filter_by_hand():
    c = np.array([[1, 1, 1, 0],
                  [1, 2, 1, 0],
                  [2, 2, 255, 0],
                  [2, 2, 1, 0]], np.uint8)
    got = resnres.majority(c)
    # (1,1): 5 ones vs 3 twos -> 1; (1,0): 3 vs 3, a tie -> kept 1; (2,1): 3 ones vs 5 twos -> 2;
    # (3,2): 1 one vs 2 twos -> 2; 0 and 255 (nodata) stay and count for neither
    want = np.array([[1, 1, 1, 0],
                     [1, 1, 1, 0],
                     [2, 2, 255, 0],
                     [2, 2, 2, 0]], np.uint8)
    np.testing.assert_array_equal(got, want)


def test_resnres_separable_classes_and_saved_feature_order(tmp_path):
    rng = np.random.default_rng(0)
    n = 2000
    y = rng.integers(1, 3, n).astype(np.uint8)
    refl = np.where(y == 1, 0.1, 0.3)[None, :] + rng.normal(0, 0.01, (4, n))
    b = rng.uniform(0.2, 1, n)
    x = resnres.features(b[None, :].astype(np.float32), refl[:, None, :].astype(np.float32))
    assert x.shape == (n, 5) and np.allclose(x[:, 0], b) and np.allclose(x[:, 4], refl[3])
    model = resnres.train(x[:1000], y[:1000], max_samples=500)
    assert (model.predict(x[1000:]) == y[1000:]).mean() > 0.99
    resnres.save_model(model, tmp_path / "m.joblib")
    loaded = resnres.load_model(tmp_path / "m.joblib")
    np.testing.assert_array_equal(loaded.predict(x[1000:]), model.predict(x[1000:]))
    classes = resnres.classify(loaded, np.array([[0.0, 0.5, NAN]], np.float32), np.full((4, 1, 3), 0.1, np.float32))
    assert classes.tolist() == [[0, 1, 255]]
    import joblib

    joblib.dump({"model": model, "features": ["BUFRAC", "R", "B", "G", "NIR"]}, tmp_path / "upstream_order.joblib")
    with pytest.raises(InputError, match="upstream_order.joblib: model features"):
        resnres.load_model(tmp_path / "upstream_order.joblib")
    with pytest.raises(InputError, match="both classes"):
        resnres.train(x[:10], np.ones(10, np.uint8))


# --- 5. aggregation -------------------------------------------------------------------------

def _write(path, data, crs, transform, nodata=NAN):
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[1], height=data.shape[0], count=1,
                       dtype=data.dtype, crs=crs, transform=transform, nodata=nodata) as ds:
        ds.write(data, 1)
    return path


def test_aggregation_by_hand_in_the_same_crs(tmp_path):
    # 10 m Mollweide pixels aligned on the 20 m and 40 m grids: cells are block means
    b = np.array([[0.2, 0.4, 0.0, 0.0],
                  [0.6, NAN, 1.0, 1.0],
                  [0.0, 0.0, 0.5, 0.5],
                  [0.0, 0.0, 0.5, 0.5]], np.float32)
    src = _write(tmp_path / "b.tif", b, "ESRI:54009", Affine(10, 0, 1000, 0, -10, 2040))
    targets = [agg.parse_target("ESRI:54009=40"), agg.parse_target("ESRI:54009=20")]
    r40, r20 = agg.aggregate(src, tmp_path, targets)
    with rasterio.open(r20["path"]) as ds:
        assert ds.crs.to_string() == "ESRI:54009" and ds.shape == (2, 2) and ds.transform.c == 1000
        mean, cover = ds.read(1), ds.read(2)
    np.testing.assert_allclose(mean, [[0.4, 0.5], [0.0, 0.5]], rtol=1e-5)  # (0.2+0.4+0.6)/3 over the valid three
    np.testing.assert_allclose(cover, [[0.75, 1], [1, 1]], rtol=1e-5)
    with rasterio.open(r40["path"]) as ds:
        assert ds.shape == (1, 1)
        np.testing.assert_allclose([ds.read(1)[0, 0], ds.read(2)[0, 0]], [5.2 / 15, 15 / 16], rtol=1e-5)
    area = np.nansum(b) * 100
    assert r20["built_up_area_m2"] == pytest.approx(area, rel=1e-5)
    assert agg.built_up_area(r40["path"]) == pytest.approx(area, rel=1e-5)


def test_aggregation_preserves_built_up_area_on_real_georeferences(tmp_path):
    from scene.gbu.synthetic import patch_georeference

    rng = np.random.default_rng(1)
    for patch in ("S2A_MSIL2A_20171221T112501_56_35", "S2B_MSIL2A_20170924T93020_69_24"):  # UTM 29N and 35N
        crs, transform = patch_georeference(patch)
        b = np.zeros((400, 400), np.float32)
        for _ in range(25):
            r, c, s = rng.integers(0, 400), rng.integers(0, 400), rng.integers(5, 50)
            b[max(r - s, 0):r + s, max(c - s, 0):c + s] = rng.uniform(0.2, 1)
        b[:40, :40] = NAN
        src = _write(tmp_path / f"{patch}.tif", b, crs, transform)
        area = float(np.nansum(b)) * 100
        results = agg.aggregate(src, tmp_path, [agg.parse_target(t) for t in agg.DEFAULT_TARGETS], prefix=patch)
        for r in results:
            assert r["built_up_area_m2"] == pytest.approx(area, rel=0.01), (patch, r)
            assert agg.built_up_area(r["path"]) == pytest.approx(r["built_up_area_m2"], rel=1e-6)


def test_geographic_cell_areas_match_pyproj_geodesic_areas():
    pyproj = pytest.importorskip("pyproj")
    geod = pyproj.Geod(ellps="WGS84")
    t = Affine(30 / 3600, 0, -8.5, 0, -30 / 3600, 60.0)
    areas = agg.cell_areas(t, (3, 2), rasterio.crs.CRS.from_epsg(4326))
    for row in (0, 2):
        west, north = t @ (0, row)
        east, south = t @ (1, row + 1)
        ref, _ = geod.polygon_area_perimeter([west, east, east, west], [south, south, north, north])
        assert areas[row, 0] == pytest.approx(abs(ref), rel=1e-6)


def test_aggregation_targets_are_parsed_and_checked():
    t = agg.parse_target("EPSG:4326=30")
    assert (t.cell, t.name) == (30 / 3600, "EPSG4326_30s")
    assert agg.parse_target(" ESRI:54009 = 1000 ").name == "ESRI54009_1000m"
    for bad in ("54009", "EPSG:4326=0", "NOPE:1=10"):
        with pytest.raises(UsageError):
            agg.parse_target(bad)


# --- AOI ------------------------------------------------------------------------------------

def test_aoi_forms(tmp_path):
    box = aoi.parse_aoi("-8.2,39.3,-8.1,39.4")
    assert box.geometry["coordinates"][0][0] == [-8.2, 39.3]
    with pytest.raises(UsageError):
        aoi.parse_aoi("-8.1,39.3,-8.2,39.4")  # west > east
    example = aoi.parse_aoi(str(aoi.EXAMPLE), "quadrilateral")
    assert example.geometry["type"] == "Polygon" and len(example.geometry["coordinates"][0]) == 5
    with pytest.raises(InputError, match="2 areas: choose one with --aoi_name"):
        aoi.parse_aoi(str(aoi.EXAMPLE))
    gj = tmp_path / "a.geojson"
    gj.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"name": "one"}, "geometry": box.geometry}]}))
    assert aoi.parse_aoi(str(gj)).name == "one"
    gj.write_text(json.dumps({"type": "Feature", "properties": {}, "geometry": {"type": "Point", "coordinates": [0, 0]}}))
    with pytest.raises(InputError, match="a.geojson: feature '0': geometry 'Point'"):
        aoi.parse_aoi(str(gj))
    with pytest.raises(InputError, match="missing.json: AOI file not found"):
        aoi.parse_aoi(str(tmp_path / "missing.json"))
    # text and ragged coordinates: the one-line error, not numpy's ValueError
    gj.write_text(json.dumps({"AOI": {"a": {"coordinates": [["w", "s"], [1, 1], [2, 2], ["w", "s"]]}}}))
    with pytest.raises(InputError, match="a.geojson: AOI 'a': coordinates are not"):
        aoi.parse_aoi(str(gj))
    gj.write_text(json.dumps({"type": "Polygon", "coordinates": [[[1, 2], [3], [4, 5], [1, 2]]]}))
    with pytest.raises(InputError, match="a.geojson: feature '0': coordinates are not"):
        aoi.parse_aoi(str(gj))


def test_the_upstream_aoi_file_parses_when_the_reference_is_present():
    from tests.conftest import REFERENCE

    path = REFERENCE / "ghs" / "gbu_aoi.json"
    if not path.is_file():
        pytest.skip("shared/reference not present")
    names = list(json.loads(path.read_text())["AOI"])
    parsed = aoi.parse_aoi(str(path), names[0])
    assert parsed.geometry["type"] == "Polygon"


def test_aoi_crop_window_and_polygon_mask(tmp_path):
    from rasterio.warp import transform as warp

    crs, transform = rasterio.crs.CRS.from_epsg(32629), Affine(10, 0, 567180, 0, -10, 4358040)
    data = np.arange(1, 401, dtype=np.uint16).reshape(20, 20)
    src = _write(tmp_path / "s.tif", data, crs, transform, nodata=None)
    # a triangle with corners on pixel corners (col, row): (2, 3), (12, 3), (2, 13)
    xs, ys = zip(*[transform @ p for p in ((2, 3), (12, 3), (2, 13))])
    lon, lat = warp(crs, "EPSG:4326", list(xs), list(ys))
    ring = [[a, b] for a, b in zip(lon, lat)]
    area = aoi.AOI("t", {"type": "Polygon", "coordinates": [ring + [ring[0]]]}, "test")
    shape = aoi.crop(src, tmp_path / "c.tif", area, "scene", bands=1)
    assert shape == (10, 10)
    with rasterio.open(tmp_path / "c.tif") as ds:
        got, t = ds.read(1), ds.transform
    assert (t.c, t.f) == (567180 + 20, 4358040 - 30)
    inside = got > 0
    r, c = np.nonzero(inside)
    assert ((r + 0.5) + (c + 0.5) <= 10 + 1e-6).all()  # pixel centres inside the triangle
    assert inside[0, 0] and inside[0, 8] and not inside[9, 9]
    np.testing.assert_array_equal(got[inside], data[3:13, 2:12][inside])
    far = aoi.AOI("far", aoi.parse_aoi("10,10,11,11").geometry, "--aoi")
    with pytest.raises(InputError, match="does not overlap"):
        aoi.crop(src, tmp_path / "x.tif", far, "scene", bands=1)


def test_aoi_bounding_box_crop_keeps_exactly_the_pixels_inside_it(tmp_path):
    from rasterio.warp import transform as warp

    crs, transform = rasterio.crs.CRS.from_epsg(32629), Affine(10, 0, 567180, 0, -10, 4358040)
    data = np.arange(1, 200 * 200 + 1, dtype=np.float32).reshape(200, 200)
    src = _write(tmp_path / "s.tif", data, crs, transform)
    from rasterio.warp import transform_bounds

    w, s_, e, n = transform_bounds(crs, "EPSG:4326", 567180, 4358040 - 2000, 567180 + 2000, 4358040)
    west, south, east, north = (round(v, 4) for v in (w + 0.2 * (e - w), s_ + 0.2 * (n - s_),
                                                       e - 0.2 * (e - w), n - 0.2 * (n - s_)))
    box = aoi.parse_aoi(f"{west},{south},{east},{north}")
    aoi.crop(src, tmp_path / "c.tif", box, "BUFRAC", bands=1)
    with rasterio.open(tmp_path / "c.tif") as ds:
        got, t = ds.read(1), ds.transform
    rows, cols = np.mgrid[0:got.shape[0], 0:got.shape[1]]
    xs, ys = t @ (cols.ravel() + 0.5, rows.ravel() + 0.5)
    lon, lat = (np.asarray(v).reshape(got.shape) for v in warp(crs, "EPSG:4326", xs, ys))
    inside = (lon > west) & (lon < east) & (lat > south) & (lat < north)
    near_edge = (np.minimum.reduce([lon - west, east - lon]) < 2e-6) | (np.minimum.reduce([lat - south, north - lat]) < 2e-6)
    np.testing.assert_array_equal((~np.isnan(got))[~near_edge], inside[~near_edge])
    assert not inside.all() and 0.9 * 120 * 120 < inside.sum() < 1.1 * 120 * 120  # the middle 60 % of 2 km x 2 km
    col0, row0 = ~transform @ (t.c, t.f)
    kept = ~np.isnan(got)
    np.testing.assert_array_equal(got[kept], data[round(row0):round(row0) + got.shape[0],
                                                  round(col0):round(col0) + got.shape[1]][kept])
