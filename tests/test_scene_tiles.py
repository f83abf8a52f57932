"""A train.py patch classifier over a scene (``scene.tiles``, ``predict.py --model RUN``): one pixel per tile.

The model is a small Keras classifier saved as a run folder (``best.keras`` + ``input_config.json``
with bands and per-band statistics); the reference is computed with numpy from its weights (band
reordering by description, normalisation, mean pooling, dense, softmax / sigmoid).
"""
from __future__ import annotations

import json

import keras
import numpy as np
import pytest
import rasterio
from affine import Affine

import predict
from prep.errors import InputError, UsageError
from scene import tiles
from tests.conftest import command_flags

BANDS = ["B04", "B03", "B02"]
CLASSES = ["water", "forest", "urban", "crops"]
STATS = {"B04": {"mean": 900.0, "std": 400.0}, "B03": {"mean": 1000.0, "std": 300.0},
         "B02": {"mean": 1100.0, "std": 200.0}}


def write_run(run, task="single_label", spec=(8, 8, 3)):
    run.mkdir()
    keras.utils.set_random_seed(2)
    inputs = keras.Input(spec, name="image")
    x = keras.layers.GlobalAveragePooling2D()(inputs)
    x = keras.layers.Dense(len(CLASSES), name="dense")(x)
    model = keras.Model(inputs, keras.layers.Activation("linear", name="logits")(x))
    model.save(run / "best.keras")
    (run / "input_config.json").write_text(json.dumps({
        "dataset": "test", "task": task, "bands": BANDS, "per_resolution": False, "normalize": "manifest",
        "classes": CLASSES, "input_spec": {"image": list(spec)}, "statistics": STATS}))
    return model


@pytest.fixture
def scene(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.integers(1, 3000, (3, 27, 42)).astype(np.uint16)  # stored as B02, B04, B03
    data[1, 10, 20] = 0  # nodata in tile (1, 2)
    path = tmp_path / "scene.tif"
    transform = Affine(10, 0, 404400, 0, -10, 5342400)
    with rasterio.open(path, "w", driver="GTiff", height=27, width=42, count=3, dtype="uint16", crs="EPSG:32633",
                       transform=transform, nodata=0) as ds:
        ds.write(data)
        ds.descriptions = ("B02", "B04", "B03")
    return path, data, transform


def reference(data, model, task):
    x = data[[1, 2, 0]].astype(np.float64)  # B04, B03, B02
    x = (x - np.array([STATS[b]["mean"] for b in BANDS])[:, None, None]) / np.array(
        [STATS[b]["std"] for b in BANDS])[:, None, None]
    pooled = x[:, :24, :40].reshape(3, 3, 8, 5, 8).mean(axis=(2, 4)).transpose(1, 2, 0)  # [3, 5, C]
    kernel, bias = model.get_layer("dense").get_weights()
    logits = pooled @ kernel + bias
    if task == "multi_label":
        prob = 1 / (1 + np.exp(-logits))
    else:
        prob = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    return np.moveaxis((prob * 10000).astype(np.int64), -1, 0)


@pytest.mark.parametrize("task", ["single_label", "multi_label"])
def test_tiles_match_numpy_reference(tmp_path, scene, task):
    src, data, transform = scene
    model = write_run(tmp_path / "run", task)
    assert tiles.is_tile_model(tmp_path / "run") and tiles.is_tile_model(tmp_path / "run" / "best.keras")
    done = tiles.predict_tiles(src, tmp_path / "out.tif", model=tmp_path / "run", batch_size=2, progress=False)
    assert done["tiles"] == [3, 5] and done["unclassified"] == [3, 2] and done["nodata_tiles"] == 1
    with rasterio.open(tmp_path / "out.tif") as ds:
        got = ds.read().astype(np.int64)
        assert ds.descriptions == tuple(CLASSES) and ds.nodata == 65535 and ds.dtypes[0] == "uint16"
        assert ds.transform == transform @ Affine.scale(8, 8) and ds.crs == "EPSG:32633"
    want = reference(data, model, task)
    assert (got[:, 1, 2] == 65535).all()
    got[:, 1, 2] = want[:, 1, 2]
    assert np.abs(got - want).max() <= 1


def test_command_routes_a_run_folder_to_tiles_and_checks_bands(tmp_path, scene):
    src, _, _ = scene
    write_run(tmp_path / "run")
    with command_flags(predict) as flags:
        flags(["predict", "--input", str(src), "--output", str(tmp_path / "out.tif"), "--model",
               str(tmp_path / "run"), "--noprogress"])
        assert predict.main(["predict"]) == 0
    with rasterio.open(tmp_path / "out.tif") as ds:
        assert (ds.count, ds.height, ds.width) == (4, 3, 5)
    with rasterio.open(src, "r+") as ds:
        ds.descriptions = ("B02", "B08", "B03")
    with pytest.raises(InputError, match="no band named B04"):
        tiles.predict_tiles(src, tmp_path / "x.tif", model=tmp_path / "run", progress=False)
    # flags of GHS-S2Net's scene inference are refused, not dropped
    for extra in (["--cog"], ["--offset", "-1000"], ["--block_size", "64"]):
        with command_flags(predict) as flags:
            flags(["predict", "--input", str(src), "--output", str(tmp_path / "y.tif"), "--model",
                   str(tmp_path / "run"), "--noprogress", *extra])
            with pytest.raises(UsageError, match=f"{extra[0]}: not used with a patch classifier"):
                predict.main(["predict"])
    assert not (tmp_path / "y.tif").exists()
    write_run(tmp_path / "ghs_run", spec=(5, 5, 4))  # a GHS-S2Net-shaped run goes to predict_scene instead
    assert not tiles.is_tile_model(tmp_path / "ghs_run") and not tiles.is_tile_model(None)


def test_a_segmentation_model_gives_a_class_per_pixel(tmp_path, scene):
    """A per-pixel model (1x1 conv logits) over the scene: class ids equal a numpy argmax of its weights."""
    src, data, transform = scene
    run = tmp_path / "seg"
    run.mkdir()
    keras.utils.set_random_seed(3)
    inputs = keras.Input((8, 8, 3), name="image")
    net = keras.Model(inputs, keras.layers.Conv2D(len(CLASSES), 1, name="conv")(inputs))
    net.save(run / "best.keras")
    (run / "input_config.json").write_text(json.dumps({
        "dataset": "test", "task": "segmentation", "bands": BANDS, "per_resolution": False,
        "normalize": "manifest", "classes": CLASSES, "input_spec": {"image": [8, 8, 3]}, "statistics": STATS}))
    done = tiles.predict_tiles(src, tmp_path / "classes.tif", model=run, batch_size=2, progress=False)
    assert done["tiles"] == [3, 5] and done["unclassified"] == [3, 2] and done["nodata_pixels"] == 1
    x = data[[1, 2, 0]].astype(np.float64)  # B04, B03, B02
    x = (x - np.array([STATS[b]["mean"] for b in BANDS])[:, None, None]) / np.array(
        [STATS[b]["std"] for b in BANDS])[:, None, None]
    kernel, bias = net.get_layer("conv").get_weights()
    want = np.argmax(np.einsum("chw,ck->hwk", x, kernel[0, 0]) + bias, axis=-1).astype(np.int64)
    want[24:, :] = tiles.CLASS_NODATA  # rows and columns left over
    want[:, 40:] = tiles.CLASS_NODATA
    want[data[1] == 0] = tiles.CLASS_NODATA
    with rasterio.open(tmp_path / "classes.tif") as ds:
        got = ds.read(1).astype(np.int64)
        assert ds.dtypes[0] == "uint8" and ds.nodata == tiles.CLASS_NODATA and ds.shape == (27, 42)
        assert ds.transform == transform and ds.crs == "EPSG:32633"
        assert json.loads(ds.tags(1)["classes"]) == CLASSES
    np.testing.assert_array_equal(got, want)
    with command_flags(predict) as flags:  # the same through predict.py
        flags(["predict", "--input", str(src), "--output", str(tmp_path / "cli.tif"), "--model", str(run),
               "--noprogress"])
        assert predict.main(["predict"]) == 0
    with rasterio.open(tmp_path / "cli.tif") as ds:
        np.testing.assert_array_equal(ds.read(1), got)
