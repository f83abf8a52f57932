"""Scene inference with GHS-S2Net: convolutional form, block grid with halo, inputs, resuming, model choice.

The weights are random and written in the Keras 2.3 HDF5 layout of the published per-zone files
(tests/test_pretrained_keras2.py makes such files); the reference outputs come from that test's
numpy forward pass over one 5x5 window per pixel of the whole scene, reflect-padded by 2 pixels as
upstream. The scenes use the values and the georeference of a real BigEarthNet-S2 example patch
(bigearthnet-common wheel; UTM zone 33N, 48°N: grid zone 33U).
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from numpy.lib.stride_tricks import sliding_window_view

import pretrained
from models import ghs
from prep.errors import InputError
from scene import inference, inputs, windows, zones
from tests.conftest import command_flags
from tests.test_pretrained_keras2 import _layers, _weights, numpy_forward, write_keras2_h5

ROOT = Path(__file__).resolve().parents[1]
PATCH = "S2A_MSIL2A_20170613T101031_87_48"  # EPSG:32633, 48.2°N 13.7°E
ORDER = ("B04", "B03", "B02", "B08")


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    root = tmp_path_factory.mktemp("ghs_scene")
    layers = _layers()
    weights = _weights(layers, np.random.default_rng(7))
    path = root / "MODEL_CNN_33U.h5"
    write_keras2_h5(path, layers, weights)
    return {"path": path, "layers": layers, "weights": weights, "root": root}


@pytest.fixture(scope="module")
def real(s2_examples):
    """The real patch's bands (B04, B03, B02, B08 as [120, 120, 4] uint16), CRS and transform."""
    stack = []
    for band in ORDER:
        with rasterio.open(s2_examples / PATCH / f"{PATCH}_{band}.tif") as ds:
            stack.append(ds.read(1))
            crs, transform = ds.crs, ds.transform
    return {"dn": np.stack(stack, -1), "crs": crs, "transform": transform}


def write_composite(path: Path, dn: np.ndarray, crs, transform) -> Path:
    with rasterio.open(path, "w", driver="GTiff", height=dn.shape[0], width=dn.shape[1], count=4, dtype="uint16",
                       crs=crs, transform=transform) as ds:
        ds.write(np.moveaxis(dn, -1, 0))
    return path


def reference(dn: np.ndarray, net) -> np.ndarray:
    """Upstream's method over the whole scene: reflect-pad 2, one 5x5 window per pixel, x 10000 -> uint16."""
    x = np.minimum(dn.astype(np.float64), 10000.0) / 10000.0
    padded = np.pad(x, ((2, 2), (2, 2), (0, 0)), mode="reflect")
    patches = sliding_window_view(padded, (5, 5), axis=(0, 1)).transpose(0, 1, 3, 4, 2).reshape(-1, 5, 5, 4)
    prob = numpy_forward(patches, net["layers"], net["weights"])[:, 1].reshape(dn.shape[:2])
    out = np.floor(prob * 10000).astype(np.int64)
    out[~np.all(dn > 0, axis=-1)] = 65535
    return out


def read_output(path: Path) -> tuple[np.ndarray, dict]:
    with rasterio.open(path) as ds:
        return ds.read(1), ds.profile


def test_convolutional_form_gives_the_patch_by_patch_outputs(net, real):
    patch_model = ghs.build_ghs_s2net(ghs.DEFAULT_INPUT_SPEC)
    report = pretrained.load_into(patch_model, net["path"])
    assert report["loaded"] == 24  # 4 conv + 2 dense (kernel, bias), 3 BN x 4
    conv = ghs.to_convolutional(patch_model)
    crop = inputs.to_reflectance(real["dn"][40:64, 10:40], 0.0)  # 24 x 30 of the real scene
    out = np.asarray(conv(crop[None], training=False))[0]
    assert out.shape == (20, 26, 2)
    windows5 = sliding_window_view(crop, (5, 5), axis=(0, 1)).transpose(0, 1, 3, 4, 2).reshape(-1, 5, 5, 4)
    logits = np.asarray(patch_model({"image": windows5}, training=False))
    per_pixel = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
    np.testing.assert_allclose(out.reshape(-1, 2), per_pixel, atol=1e-5, rtol=0)
    np.testing.assert_allclose(out.reshape(-1, 2), numpy_forward(windows5, net["layers"], net["weights"]),
                               atol=1e-5, rtol=0)


def test_block_grid_covers_a_non_square_scene_once():
    blocks = windows.block_grid(37, 53, 16)
    cover = np.zeros((37, 53), int)
    for b in blocks:
        cover[b.row0:b.row0 + b.rows, b.col0:b.col0 + b.cols] += 1
    assert (cover == 1).all() and len(blocks) == 3 * 4 and [b.index for b in blocks] == list(range(12))


def test_scene_matches_whole_scene_reference_non_square_with_nodata(tmp_path, net, real):
    dn = real["dn"][5:42, 20:73].copy()  # 37 rows x 53 columns
    dn[3, 4, 2] = 0  # one band 0 -> nodata
    dn[20:23, 50:53, :] = 0  # a no-data corner patch at the scene's right edge
    dn[30, 7, 0] = 12000  # above 10000: clipped
    src = write_composite(tmp_path / "scene.tif", dn, real["crs"], real["transform"])
    # the model is chosen from the CRS (UTM 33N at 48°N -> 33U) and found converted in the cache
    cache = tmp_path / "cache"
    patch_model = ghs.build_ghs_s2net(ghs.DEFAULT_INPUT_SPEC)
    pretrained.load_into(patch_model, net["path"])
    weights = pretrained.converted_paths("ghs-s2net-33U", cache)["weights"]
    weights.parent.mkdir(parents=True)
    patch_model.save_weights(weights)
    out = inference.predict_scene(src, tmp_path / "out.tif", block_size=16, batch_size=40, progress=False,
                                  cache=cache)
    got, profile = read_output(out)
    want = reference(dn, net)
    assert got.shape == (37, 53)
    nodata = want == 65535
    assert nodata.sum() == 1 + 9 and (got[nodata] == 65535).all()
    assert np.abs(got[~nodata].astype(np.int64) - want[~nodata]).max() <= 1  # truncation of float noise
    assert (got[~nodata].astype(np.int64) == want[~nodata]).mean() > 0.98
    # pixels next to inner block edges (need the neighbours' halo) and on the scene's edges (reflect)
    for r, c in ((15, 15), (16, 16), (15, 31), (32, 47), (0, 0), (36, 52), (0, 30), (20, 0)):
        assert abs(int(got[r, c]) - int(want[r, c])) <= 1, (r, c)
    assert profile["crs"] == real["crs"] and profile["transform"] == real["transform"]
    assert profile["dtype"] == "uint16" and profile["nodata"] == 65535 and profile["tiled"]
    assert profile["compress"] == "deflate"
    assert not list(tmp_path.glob("out.tif.part*"))


def test_interrupted_run_resumes_to_identical_bytes(tmp_path, net, real, monkeypatch):
    src = write_composite(tmp_path / "scene.tif", real["dn"][:40, :40], real["crs"], real["transform"])
    reads, calls = [], []
    read_dn, predict_block = inputs.Scene.read_dn, inference.predict_block
    monkeypatch.setattr(inputs.Scene, "read_dn", lambda self, *w: reads.append(w[2:]) or read_dn(self, *w))
    monkeypatch.setattr(inference, "predict_block", lambda f, x, b, **k: calls.append(x.shape) or predict_block(
        lambda t: calls.append(t.shape) or f(t), x, b, **k))
    whole = inference.predict_scene(src, tmp_path / "whole.tif", model=str(net["path"]), block_size=16,
                                    batch_size=64, progress=False)
    monkeypatch.undo()
    # memory is bounded by the block and batch sizes: windowed reads of at most (16 + 4)^2 pixels,
    # model calls of at most 64 output pixels (4 rows of a 16-pixel block)
    assert len(reads) == 9 and max(r * c for r, c in reads) == 20 * 20
    assert max((s[1] - 4) * (s[2] - 4) for s in calls if len(s) == 4) == 64

    def stop_after_three(index):
        if index == 2:
            raise KeyboardInterrupt

    dst = tmp_path / "resumed.tif"
    with pytest.raises(KeyboardInterrupt):
        inference.predict_scene(src, dst, model=str(net["path"]), block_size=16, batch_size=64, progress=False,
                                on_block=stop_after_three)
    assert not dst.exists() and (tmp_path / "resumed.tif.part").is_file()
    seen = []
    inference.predict_scene(src, dst, model=str(net["path"]), block_size=16, batch_size=64, progress=False,
                            on_block=seen.append)
    assert seen == list(range(3, 9))  # 9 blocks, the first 3 kept
    assert dst.read_bytes() == whole.read_bytes()
    assert not list(tmp_path.glob("resumed.tif.part*"))
    # another block size is another run: the state is not reused
    seen.clear()
    inference.predict_scene(src, dst, model=str(net["path"]), block_size=20, progress=False, on_block=seen.append)
    assert seen == [0, 1, 2, 3] and np.array_equal(read_output(dst)[0], read_output(whole)[0])


def write_product(root: Path, dn: np.ndarray, crs, transform, baseline: str | None, offsets: bool = True) -> Path:
    """A Sentinel-2 L2A product folder: 10 m JP2 bands (plus a 20 m decoy) and MTD_MSIL2A.xml."""
    tag = "N" + (baseline or "05.09").replace(".", "")
    safe = root / f"S2B_MSIL2A_20230601T102559_{tag}_R108_T33UXP_20230601T133128.SAFE"
    img = safe / "GRANULE" / "L2A_T33UXP_A032541_20230601T102554" / "IMG_DATA"
    for res in ("R10m", "R20m"):
        (img / res).mkdir(parents=True)
    profile = {"driver": "JP2OpenJPEG", "height": dn.shape[0], "width": dn.shape[1], "count": 1, "dtype": "uint16",
               "crs": crs, "transform": transform, "QUALITY": 100, "REVERSIBLE": "YES"}
    for band in ("B02", "B03", "B04", "B08"):
        with rasterio.open(img / "R10m" / f"T33UXP_20230601T102559_{band}_10m.jp2", "w", **profile) as ds:
            ds.write(dn[..., ORDER.index(band)], 1)
    with rasterio.open(img / "R20m" / "T33UXP_20230601T102559_B02_20m.jp2", "w",
                       **{**profile, "height": 4, "width": 4}) as ds:
        ds.write(np.ones((4, 4), np.uint16), 1)
    if baseline is not None:
        offset_list = "".join(f'<BOA_ADD_OFFSET band_id="{i}">-1000</BOA_ADD_OFFSET>' for i in range(13))
        (safe / "MTD_MSIL2A.xml").write_text(
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            '<n1:Level-2A_User_Product xmlns:n1="https://psd-14.sentinel2.eo.esa.int/PSD/User_Product_Level-2A.xsd">'
            f"<n1:General_Info><Product_Info><PROCESSING_BASELINE>{baseline}</PROCESSING_BASELINE></Product_Info>"
            "<Product_Image_Characteristics><QUANTIFICATION_VALUES_LIST>"
            '<BOA_QUANTIFICATION_VALUE unit="none">10000</BOA_QUANTIFICATION_VALUE></QUANTIFICATION_VALUES_LIST>'
            + (f"<BOA_ADD_OFFSET_VALUES_LIST>{offset_list}</BOA_ADD_OFFSET_VALUES_LIST>" if offsets else "")
            + "</Product_Image_Characteristics></n1:General_Info></n1:Level-2A_User_Product>\n")
    return safe


def test_product_baselines_give_the_same_reflectance_and_output(tmp_path, net, real):
    dn = real["dn"][60:90, 30:74].copy()  # 30 x 44
    dn[0, 0, :] = 0
    shifted = np.where(dn > 0, dn.astype(np.uint32) + 1000, 0).astype(np.uint16)  # baseline 04.00 storage
    old = write_product(tmp_path / "b03", dn, real["crs"], real["transform"], "03.01", offsets=False)
    new = write_product(tmp_path / "b04", shifted, real["crs"], real["transform"], "04.00")
    bare = write_product(tmp_path / "b04_no_offsets", shifted, real["crs"], real["transform"], "04.00", offsets=False)
    scenes = [inputs.open_scene(p) for p in (old, new, bare)]
    assert [s.offsets for s in scenes] == [[0.0] * 4, [-1000.0] * 4, [-1000.0] * 4]
    assert [s.baseline for s in scenes] == ["03.01", "04.00", "04.00"]
    assert [Path(p).name for p, _ in scenes[0].files] == [f"T33UXP_20230601T102559_{b}_10m.jp2" for b in ORDER]
    reads = []
    for s in scenes:
        with s:
            reads.append(s.read(0, 0, 30, 44))
    for x, valid in reads[1:]:
        np.testing.assert_array_equal(x, reads[0][0])
        np.testing.assert_array_equal(valid, reads[0][1])
    np.testing.assert_array_equal(reads[0][0], np.minimum(dn, 10000).astype(np.float32) / np.float32(10000))
    assert zones.pick_model(scenes[1].crs, scenes[1].transform, (30, 44), scenes[1].names) == "MODEL_CNN_33U"
    outs = [inference.predict_scene(p, tmp_path / f"{i}.tif", model=str(net["path"]), block_size=32,
                                    progress=False) for i, p in enumerate((old, new))]
    assert outs[0].read_bytes() == outs[1].read_bytes()
    got = read_output(outs[0])[0].astype(np.int64)
    assert np.abs(got - reference(dn, net)).max() <= 1


def test_product_without_metadata_needs_an_offset(tmp_path, real):
    dn = real["dn"][:10, :12]
    folder = write_product(tmp_path, dn + 1000, real["crs"], real["transform"], baseline=None)
    with pytest.raises(InputError, match="no product metadata.*--offset"):
        inputs.open_scene(folder)
    scene = inputs.open_scene(folder, offset=-1000)
    with scene:
        x, _ = scene.read(0, 0, 10, 12)
    np.testing.assert_array_equal(x, inputs.to_reflectance(dn, 0.0))


def test_zones_from_tile_names_and_crs(real):
    assert zones.zone_from_tile("T32TQM") == "32T"
    assert zones.zone_from_tile("S2A_MSIL1C_20180101T101031_N0206_R022_T09UXA_20180101T121212.SAFE") == "9U"
    assert zones.zone_from_tile("S2_percentile_30_UTM_271-0000023296-0000000000.tif") is None
    assert zones.zone_from_tile(PATCH) is None
    assert zones.zone_from_crs(real["crs"], real["transform"], (120, 120)) == "33U"
    from affine import Affine
    from rasterio.crs import CRS

    def at(lon, lat, crs="EPSG:4326"):
        return zones.zone_from_crs(CRS.from_string(crs), Affine(0.001, 0, lon, 0, -0.001, lat), (2, 2))

    assert at(5.32, 60.39) == "32V"  # Bergen: the Norway exception (would be 31V)
    assert at(15.6, 78.2) == "33X"  # Svalbard
    assert at(151.2, -33.87) == "56H"  # Sydney
    assert at(-3.7, 40.4) == "30T"  # Madrid
    # a UTM CRS keeps its own zone number even past the zone's edge (S2 tiles overlap zones)
    assert zones.zone_from_crs(CRS.from_epsg(32631), Affine(10, 0, 900000, 0, -10, 5400000), (10, 10))[:2] == "31"
    assert zones.pick_model(real["crs"], real["transform"], (120, 120), ["x_T32TQM_y"]) == "MODEL_CNN_32T"
    with pytest.raises(InputError, match="no published GHS-S2Net model"):
        zones.model_name("31X")


def test_command_writes_a_cog_and_reports_bad_input(tmp_path, net, real):
    import predict

    src = write_composite(tmp_path / "scene.tif", real["dn"][:50, :70], real["crs"], real["transform"])
    plain = inference.predict_scene(src, tmp_path / "plain.tif", model=str(net["path"]), block_size=32,
                                    progress=False)
    with command_flags(predict) as flags:
        flags(["predict", "--input", str(src), "--output", str(tmp_path / "cog.tif"), "--model", str(net["path"]),
               "--cog", "--block_size", "32", "--noprogress"])
        assert predict.main(["predict"]) == 0
    with rasterio.open(tmp_path / "cog.tif") as ds:
        assert ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert ds.crs == real["crs"] and ds.transform == real["transform"] and ds.nodata == 65535
        np.testing.assert_array_equal(ds.read(1), read_output(plain)[0])
    bad = subprocess.run([sys.executable, "predict.py", "--input", str(tmp_path / "missing.tif"), "--output",
                          str(tmp_path / "x.tif"), "--model", str(net["path"])],
                         cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines() == [f"error: {tmp_path / 'missing.tif'}: no such file or folder"]


def test_output_that_is_a_folder_or_an_input_is_refused_before_any_work(tmp_path, real):
    """--output naming the input scene (or a band file of a product) would overwrite it; a folder failed at the end."""
    src = write_composite(tmp_path / "scene.tif", real["dn"][:20, :24], real["crs"], real["transform"])
    product = write_product(tmp_path / "product", real["dn"][:20, :24], real["crs"], real["transform"], "04.00")
    band = next(product.glob("GRANULE/*/IMG_DATA/R10m/*_B08_10m.jp2"))
    before = src.read_bytes(), band.read_bytes()
    for scene, output, problem in [(src, tmp_path, "is a folder"), (src, src, f"is the input {src}"),
                                   (product, band, f"is the input {band}")]:
        bad = subprocess.run([sys.executable, "predict.py", "--input", str(scene), "--output", str(output),
                              "--model", str(tmp_path / "never_read.h5")],
                             cwd=ROOT, capture_output=True, text=True, timeout=240)
        assert bad.returncode == 2, bad.stderr
        lines = bad.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: --output {output}: {problem}"), lines
    assert (src.read_bytes(), band.read_bytes()) == before


def test_a_scene_without_crs_and_without_model_names_the_file(tmp_path, real):
    """No UTM zone can be picked: the one error line names the scene (it had no file)."""
    src = tmp_path / "nocrs.tif"
    dn = real["dn"][:8, :8]
    with rasterio.open(src, "w", driver="GTiff", height=8, width=8, count=4, dtype="uint16") as ds:
        ds.write(np.moveaxis(dn, -1, 0))
    bad = subprocess.run([sys.executable, "predict.py", "--input", str(src), "--output", str(tmp_path / "o.tif")],
                         cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines() == [
        f"error: {src}: the scene has no CRS, so no UTM zone model can be chosen - give --model"]


def test_a_truncated_composite_names_gdal_s_reason(tmp_path, real):
    """A block that cannot be decoded: the error line carries GDAL's reason, not 'See previous exception'."""
    src = write_composite(tmp_path / "scene.tif", real["dn"][:60, :60], real["crs"], real["transform"])
    data = src.read_bytes()
    cut = tmp_path / "cut.tif"
    cut.write_bytes(data[: len(data) // 2])
    scene = inputs.open_scene(cut)
    with scene, pytest.raises(InputError) as e:
        scene.read(0, 0, 60, 60)
    message = str(e.value)
    assert message.startswith(f"{cut}: cannot read band") and "previous exception" not in message, message
