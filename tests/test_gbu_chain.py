"""The GBU chain (python -m scene.gbu) on a generated scene with a real BigEarthNet patch's georeference.

The scene, probability, RES/NRES labels and streets come from ``scene.gbu.synthetic`` (CRS and
origin of a real example patch of the bigearthnet-common wheel). Products are checked against
values recomputed here on the whole raster (the chain works block by block), the RES/NRES
classes against the generated truth, and bad inputs against one-line ``error:`` messages.
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio import features
from rasterio.transform import Affine

from scene.gbu import aggregate as agg
from scene.gbu import greenness, ndvi, resnres
from scene.gbu.chain import ChainOptions, run_chain
from scene.gbu.rasters import read_float
from tests.conftest import command_flags

REPO = Path(__file__).resolve().parents[1]
SIZE = 192
ENV = {**os.environ, "PYTHONPATH": str(REPO)}
STREETS = importlib.util.find_spec("geopandas") is not None  # the 'streets' extra (in the dev extra)


def gbu(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scene.gbu", *args, "--noprogress"], cwd=REPO, env=ENV,
                          capture_output=True, text=True, timeout=300)


def one_error_line(proc: subprocess.CompletedProcess, code: int, *fragments: str) -> str:
    assert proc.returncode == code, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    from scene.gbu.synthetic import generate

    return generate(tmp_path_factory.mktemp("gbu_scene"), size=SIZE, seed=0)


@pytest.fixture(scope="module")
def full_run(synth, tmp_path_factory):
    out = tmp_path_factory.mktemp("gbu") / "out"
    streets = ["--streets", synth["streets"]] if STREETS else []
    proc = gbu("--bufrac", synth["probability"], "--scene", synth["scene"], "--resnres_labels", synth["labels"],
               *streets, "--kernel", "9x9", "--block_size", "64", "-o", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc.stdout


def read_scene(synth):
    with rasterio.open(synth["scene"]) as ds:
        refl = ndvi.reflectance(ds.read())
    with rasterio.open(synth["probability"]) as ds:
        prob = ds.read(1)
    bufrac = np.where(prob == 65535, np.nan, prob / 10000).astype(np.float32)
    return refl, bufrac


def street_masks_by_shapely(synth):
    """Centre-inside and touched masks, from the lines buffered here with shapely in the scene's CRS."""
    if not STREETS:
        return np.zeros((SIZE, SIZE), bool), np.zeros((SIZE, SIZE), bool)
    from pyproj import Transformer
    from shapely.geometry import LineString

    doc = json.loads(Path(synth["streets"]).read_text())
    to_utm = Transformer.from_crs("EPSG:4326", synth["crs"].to_wkt(), always_xy=True)
    polys = [LineString([to_utm.transform(*p) for p in f["geometry"]["coordinates"]]).buffer(f["properties"]["width"] / 2)
             for f in doc["features"]]
    kw = dict(out_shape=(SIZE, SIZE), transform=synth["transform"], fill=0, dtype="uint8")
    centre = features.rasterize([(p, 1) for p in polys], all_touched=False, **kw).astype(bool)
    touched = features.rasterize([(p, 1) for p in polys], all_touched=True, **kw).astype(bool)
    return centre, touched


def test_every_product_is_written_and_described(full_run):
    out, stdout = full_run
    report = json.loads((out / "products.json").read_text())
    products = report["products"]
    expected = {"bufrac", "bufrac_clean", "greenness", "resnres", "resnres_model"} | {
        f"bufrac_{agg.parse_target(t).name}" for t in agg.DEFAULT_TARGETS}
    assert set(products) == expected and report["skipped"] == {}
    for name, info in products.items():
        assert (out / info["path"]).is_file(), name
        if name != "resnres_model":
            png = out / info["quicklook"]
            assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 2000, name
            with rasterio.open(out / info["path"]) as ds:
                assert ds.dtypes[0] == info["dtype"] and ds.crs is not None, name
    assert (out / "quicklook" / "overview.png").read_bytes()[:4] == b"\x89PNG"
    assert products["resnres"]["nodata"] == "255" and products["greenness"]["dtype"] == "float32"
    assert "RES/NRES" in stdout and "aggregated to ESRI:54009 at 1000 m" in stdout


def test_bufrac_and_cleaning_match_the_rules_on_the_whole_raster(full_run, synth):
    out, _ = full_run
    refl, bufrac = read_scene(synth)
    np.testing.assert_array_equal(read_float(out / "bufrac.tif"), bufrac)
    with rasterio.open(out / "bufrac.tif") as ds, rasterio.open(synth["scene"]) as sc:
        assert ds.crs == sc.crs and ds.transform == sc.transform and ds.dtypes[0] == "float32"
    v = ndvi.ndvi(refl)
    centre, touched = street_masks_by_shapely(synth)
    if STREETS:
        assert centre.sum() > SIZE and (touched & ~centre).sum() > SIZE  # both streets cross the scene
    want = np.where(bufrac <= 0.1, 0, bufrac)
    want = np.where(touched & ~centre, want * 0.5, want)
    want = np.where(centre | (v > 0.3), 0, want)
    got = read_float(out / "bufrac_clean.tif")
    np.testing.assert_allclose(got, want.astype(np.float32), rtol=1e-6)
    assert np.isnan(got[-1, -1]) and (got == 0).sum() > (bufrac == 0).sum()


def test_greenness_and_resnres_do_not_depend_on_the_blocks(full_run, synth):
    out, _ = full_run
    refl, _ = read_scene(synth)
    clean = read_float(out / "bufrac_clean.tif")
    with np.errstate(invalid="ignore"):
        built = clean > 0
    whole = greenness.greenness(ndvi.ndvi(refl), built, greenness.ellipse_kernel(9, 9))
    np.testing.assert_array_equal(read_float(out / "greenness.tif"), whole)
    model = resnres.load_model(out / "resnres_model.joblib")
    with rasterio.open(out / "resnres.tif") as ds:
        classes = ds.read(1)
    np.testing.assert_array_equal(classes, resnres.majority(resnres.classify(model, clean, refl)))


def test_a_saved_resnres_model_applies_to_the_scene(full_run, synth, tmp_path):
    out, _ = full_run
    report = run_chain(tmp_path / "out", bufrac=synth["probability"], scene=synth["scene"],
                       options=ChainOptions(resnres_model=str(out / "resnres_model.joblib"),
                                            streets=synth["streets"] if STREETS else None,
                                            greenness=False, aggregate=(), quicklooks=False, progress=False,
                                            block_size=100), echo=None)
    assert "resnres_model" not in report["products"] and "resnres" not in report["skipped"]
    assert report["skipped"]["greenness"] == "--nogreenness" and "greenness" not in report["products"]
    with rasterio.open(out / "resnres.tif") as a, rasterio.open(tmp_path / "out" / "resnres.tif") as b:
        np.testing.assert_array_equal(a.read(1), b.read(1))


def test_resnres_finds_the_separable_classes_where_nothing_was_labelled(full_run, synth):
    out, _ = full_run
    with rasterio.open(out / "resnres.tif") as ds:
        classes = ds.read(1)
    with rasterio.open(synth["truth"]) as ds:
        truth = ds.read(1)
    east = np.zeros_like(truth, dtype=bool)
    east[:, SIZE // 2 + 2:] = True  # the labels cover the west half only
    judged = east & (truth > 0) & np.isin(classes, (1, 2))
    assert judged.sum() > 1000
    assert (classes[judged] == truth[judged]).mean() > 0.99
    assert set(np.unique(classes)) <= {0, 1, 2, 255} and (classes == 255).any()


def test_aggregates_keep_the_cleaned_built_up_area(full_run):
    out, _ = full_run
    area = float(np.nansum(read_float(out / "bufrac_clean.tif"))) * 100
    report = json.loads((out / "products.json").read_text())
    for target in agg.DEFAULT_TARGETS:
        name = agg.parse_target(target).name
        assert agg.built_up_area(out / f"bufrac_{name}.tif") == pytest.approx(area, rel=0.01), name
        assert report["figures"]["aggregated_built_up_area_km2"][name] == pytest.approx(area / 1e6, rel=0.01)


def test_bufrac_alone_skips_the_scene_steps_and_says_so(synth, tmp_path):
    float_prob = tmp_path / "p.tif"
    with rasterio.open(synth["probability"]) as ds:
        profile = ds.profile | {"dtype": "float32", "nodata": float("nan")}
        prob = ds.read(1)
    with rasterio.open(float_prob, "w", **profile) as ds:
        ds.write(np.where(prob == 65535, np.nan, prob / 10000).astype(np.float32), 1)
    report = run_chain(tmp_path / "out", bufrac=str(float_prob),
                       options=ChainOptions(aggregate=("ESRI:54009=1000",), quicklooks=False, progress=False), echo=None)
    assert set(report["products"]) == {"bufrac", "bufrac_clean", "bufrac_ESRI54009_1000m"}
    assert "NDVI" in report["skipped"]["clean: NDVI rule"] and "no --scene" in report["skipped"]["greenness"]
    b = read_float(tmp_path / "out" / "bufrac.tif")
    np.testing.assert_allclose(read_float(tmp_path / "out" / "bufrac_clean.tif"), np.where(b <= 0.1, 0, b))


def test_scene_alone_predicts_first(synth, tmp_path):
    """--scene without --bufrac runs scene inference (GHS-S2Net, random weights in the published layout) first."""
    from tests.test_pretrained_keras2 import _layers, _weights, write_keras2_h5

    layers = _layers()
    model = tmp_path / "MODEL_CNN_29T.h5"
    write_keras2_h5(model, layers, _weights(layers, np.random.default_rng(0)))
    report = run_chain(tmp_path / "out", scene=synth["scene"],
                       options=ChainOptions(aggregate=(), quicklooks=False, progress=False, kernel=(5, 5),
                                            model=str(model)), echo=None)
    with rasterio.open(report["inputs"]["prediction"]) as ds:
        pred = ds.read(1)
        assert ds.dtypes[0] == "uint16" and ds.nodata == 65535
    with rasterio.open(synth["scene"]) as ds:
        assert np.array_equal(pred == 65535, np.any(ds.read() == 0, axis=0))  # nodata where a band is 0
    assert 0 < np.count_nonzero(pred < 65535)
    np.testing.assert_array_equal(read_float(tmp_path / "out" / "bufrac.tif"),
                                  np.where(pred == 65535, np.nan, pred / 10000).astype(np.float32))
    assert {"bufrac", "bufrac_clean", "greenness"} <= set(report["products"])


def test_aoi_from_the_example_file_crops_the_inputs(synth, tmp_path):
    out = tmp_path / "out"
    proc = gbu("--bufrac", synth["probability"], "--scene", synth["scene"], "--aoi", "scene/gbu/example_aoi.json",
               "--aoi_name", "northwest_square", "--aggregate=", "--noquicklooks", "--kernel", "5", "-o", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    with rasterio.open(out / "bufrac.tif") as ds, rasterio.open(synth["probability"]) as full:
        col, row = ~full.transform @ (ds.transform.c, ds.transform.f)
        cropped = ds.read(1)
        assert ds.crs == full.crs and abs(col - round(col)) < 1e-6 and abs(row - round(row)) < 1e-6
    # the square spans 200..1700 m east and south of the patch origin: pixel centres of rows/cols 20..169
    rows, cols = np.nonzero(~np.isnan(cropped))
    rows, cols = rows + round(row), cols + round(col)
    assert (rows.min(), rows.max(), cols.min(), cols.max(), rows.size) == (20, 169, 20, 169, 150 * 150)
    _, bufrac = read_scene(synth)
    np.testing.assert_array_equal(cropped[~np.isnan(cropped)], bufrac[20:170, 20:170].ravel())
    assert "AOI northwest_square" in proc.stdout


def test_streets_by_hand_and_crs_mismatch(tmp_path):
    gpd = pytest.importorskip("geopandas")  # the 'streets' extra (in the dev extra)
    from shapely.geometry import LineString

    from prep.errors import InputError
    from scene.gbu.streets import load_streets, street_masks

    crs = rasterio.crs.CRS.from_epsg(32629)
    t = Affine(10, 0, 500000, 0, -10, 4000000)
    # a street along x = 500055 (centre of column 5), 12 m wide: [49, 61] m covers the centre of column 5
    # only and touches columns 4, 5 and 6
    frame = gpd.GeoDataFrame({"width": [12.0]}, geometry=[LineString([(500055, 4000100), (500055, 3999700)])],
                             crs="EPSG:32629").to_crs("EPSG:4326")
    path = tmp_path / "streets.geojson"
    frame.to_file(path, driver="GeoJSON")
    polygons = load_streets(path, crs)
    centre, touched = street_masks(polygons, t, (20, 10))
    assert np.flatnonzero(centre.any(axis=0)).tolist() == [5] and centre[:, 5].all()
    assert np.flatnonzero(touched.any(axis=0)).tolist() == [4, 5, 6] and touched[:, [4, 6]].all()
    with pytest.raises(InputError, match=r"streets.geojson: street vector CRS EPSG:4326 differs from the raster's EPSG:32629"):
        load_streets(path, crs, reproject=False)
    with pytest.raises(InputError, match="no width attribute 'lanes'"):
        load_streets(path, crs, width_field="lanes")
    with pytest.raises(InputError, match="not projected in metres"):
        load_streets(path, rasterio.crs.CRS.from_epsg(4326))
    # a width that is text, not a number (a hand-edited attribute table)
    frame["width"] = ["wide"]
    text = tmp_path / "text_width.geojson"
    frame.to_file(text, driver="GeoJSON")
    with pytest.raises(InputError, match=r"text_width.geojson: 1 street\(s\) without a width > 0 \(a number"):
        load_streets(text, crs)


def test_bad_inputs_are_one_error_line(synth, tmp_path):
    missing = tmp_path / "missing.tif"
    one_error_line(gbu("--bufrac", str(missing), "-o", str(tmp_path / "o1")), 1,
                   f"error: {missing}: built-up probability not found")
    three = tmp_path / "three.tif"
    with rasterio.open(synth["scene"]) as ds:
        profile = ds.profile | {"count": 3}
        data = ds.read([1, 2, 3])
    with rasterio.open(three, "w", **profile) as ds:
        ds.write(data)
    one_error_line(gbu("--bufrac", synth["probability"], "--scene", str(three), "-o", str(tmp_path / "o2")), 1,
                   f"{three}: scene (B4, B3, B2, B8) has 3 band(s), expected 4")
    text = tmp_path / "not.tif"
    text.write_text("not a raster")
    one_error_line(gbu("--bufrac", str(text), "-o", str(tmp_path / "o3")), 1, f"{text}: not a readable raster")
    one_error_line(gbu("-o", str(tmp_path / "o4")), 2, "give --bufrac")
    one_error_line(gbu("--bufrac", synth["probability"], "--kernel", "sixty", "-o", str(tmp_path / "o5")), 2, "--kernel")
    one_error_line(gbu("--bufrac", synth["probability"], "--aggregate", "EPSG:4326", "-o", str(tmp_path / "o6")), 2,
                   "CRS=RESOLUTION")
    small = tmp_path / "small.tif"
    with rasterio.open(synth["probability"]) as ds:
        profile = ds.profile | {"width": 50, "height": 50}
        data = ds.read(1, window=((0, 50), (0, 50)))
    with rasterio.open(small, "w", **profile) as ds:
        ds.write(data, 1)
    one_error_line(gbu("--bufrac", str(small), "--scene", synth["scene"], "-o", str(tmp_path / "o7")), 1,
                   f"{small}: not on the grid of")


def test_a_truncated_raster_is_one_error_line(synth, tmp_path):
    """A file whose header opens but whose pixel data is cut off fails at the first block read, named."""
    data = Path(synth["probability"]).read_bytes()
    truncated = tmp_path / "truncated.tif"
    truncated.write_bytes(data[: len(data) // 2])
    with rasterio.open(truncated) as ds:  # the header (at the start) is intact: only reading fails
        assert ds.count == 1
    one_error_line(gbu("--bufrac", str(truncated), "--aggregate=", "--noquicklooks", "-o", str(tmp_path / "o")), 1,
                   f"error: {truncated}: cannot read a block")


def test_overwrite_never_deletes_the_inputs(synth, tmp_path):
    """--overwrite into the folder holding the inputs is refused (it deleted them, then failed on the missing file)."""
    import shutil

    inputs = tmp_path / "inputs"
    shutil.copytree(Path(synth["probability"]).parent, inputs)
    before = sorted(p.name for p in inputs.iterdir())
    one_error_line(gbu("--bufrac", str(inputs / "probability.tif"), "-o", str(inputs), "--overwrite",
                       "--aggregate=", "--noquicklooks"), 2, f"{inputs}: holds the input {inputs / 'probability.tif'}")
    assert sorted(p.name for p in inputs.iterdir()) == before
    # an output folder beside the inputs is replaced as before
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    proc = gbu("--bufrac", str(inputs / "probability.tif"), "-o", str(out), "--overwrite", "--aggregate=",
               "--noquicklooks")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["bufrac.tif", "bufrac_clean.tif", "products.json"]


def test_a_foreign_resnres_model_fails_before_any_step_in_one_short_line(synth, tmp_path):
    """A raster given as --resnres_model: refused before step 1, without quoting its bytes."""
    proc = gbu("--bufrac", synth["probability"], "--scene", synth["scene"], "--resnres_model", synth["labels"],
               "--aggregate=", "--noquicklooks", "-o", str(tmp_path / "out"))
    line = one_error_line(proc, 1, f"{synth['labels']}: not a readable RES/NRES model")
    assert len(line) < 300, line
    assert "BUFRAC" not in proc.stdout and not (tmp_path / "out" / "bufrac.tif").exists()


def test_synthetic_command_into_a_file_is_a_usage_error(tmp_path):
    """python -m scene.gbu.synthetic -o FILE: one line, exit 2 (was a FileExistsError traceback)."""
    target = tmp_path / "scene.tif"
    target.write_bytes(b"keep")
    proc = subprocess.run([sys.executable, "-m", "scene.gbu.synthetic", "-o", str(target)], cwd=REPO, env=ENV,
                          capture_output=True, text=True, timeout=120)
    one_error_line(proc, 2, f"error: {target}: exists and is not a folder")
    assert target.read_bytes() == b"keep"


def test_running_out_of_memory_is_one_error_line(synth, tmp_path, monkeypatch, capsys):
    """A huge --kernel ran the closing out of memory: a MemoryError traceback, now one line naming the flags."""
    import scene.gbu.__main__ as command
    from scene.gbu import chain

    def exhausted(*args, **kwargs):
        raise MemoryError()

    monkeypatch.setattr(chain, "run_chain", exhausted)
    with command_flags(command), pytest.raises(SystemExit) as e:  # its flags leave with the test
        command.run(["gbu", "--bufrac", synth["probability"], "--kernel", "5000", "-o", str(tmp_path / "o"),
                     "--noprogress"])
    assert e.value.code == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: out of memory with --kernel 5000x5000 and --block_size 1024 - use a smaller --kernel (pixels) "
        "or --block_size"]


def test_labels_on_another_grid_are_refused_before_any_step(synth, tmp_path):
    """RES/NRES labels on another grid: the error came after BUFRAC and cleaning had been written."""
    small = tmp_path / "labels_small.tif"
    with rasterio.open(synth["labels"]) as ds:
        profile = ds.profile | {"width": 40, "height": 40}
        data = ds.read(1, window=((0, 40), (0, 40)))
    with rasterio.open(small, "w", **profile) as ds:
        ds.write(data, 1)
    out = tmp_path / "out"
    proc = gbu("--bufrac", synth["probability"], "--scene", synth["scene"], "--resnres_labels", str(small),
               "--aggregate=", "--noquicklooks", "-o", str(out))
    one_error_line(proc, 1, f"error: {small}: not on the grid of")
    assert "BUFRAC" not in proc.stdout and not (out / "bufrac.tif").exists()


def test_offset_has_predict_py_s_sign(synth, tmp_path):
    """--offset -1000 (what predict.py takes for baseline 04.00+) removes 1000 DN before the NDVI rule."""
    out = tmp_path / "cli"
    proc = gbu("--bufrac", synth["probability"], "--scene", synth["scene"], "--offset", "-1000", "--nogreenness",
               "--aggregate=", "--noquicklooks", "-o", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    run_chain(tmp_path / "api", bufrac=synth["probability"], scene=synth["scene"],
              options=ChainOptions(offset=1000, greenness=False, aggregate=(), quicklooks=False, progress=False),
              echo=None)
    cli_clean, api_clean = read_float(out / "bufrac_clean.tif"), read_float(tmp_path / "api" / "bufrac_clean.tif")
    np.testing.assert_array_equal(cli_clean, api_clean)
    no_offset = run_chain(tmp_path / "none", bufrac=synth["probability"], scene=synth["scene"],
                          options=ChainOptions(greenness=False, aggregate=(), quicklooks=False, progress=False),
                          echo=None)
    assert no_offset and not np.array_equal(read_float(tmp_path / "none" / "bufrac_clean.tif"), cli_clean,
                                            equal_nan=True)
    assert gbu("--bufrac", synth["probability"], "--offset", "1000", "-o", str(tmp_path / "bad")).returncode != 0
