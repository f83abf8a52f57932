"""The serving export: train.py --preprocess=device, serving_default's named outputs, class names,
raw bands in; the export is loaded by tf.saved_model.load in a fresh Python process.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import models
import train
from models import serving
from prep import reader
from prep.datasets.bigearthnet import spec as ben
from tests.test_preprocess import mini_dir  # noqa: F401  the module-scoped fixture
from tests.test_train import config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

LOAD_AND_SERVE = r"""
import json, sys
import numpy as np
import tensorflow as tf
path, inputs, out = sys.argv[1:]
loaded = tf.saved_model.load(path)
sig = loaded.signatures["serving_default"]
x = dict(np.load(inputs))
result = {k: v.numpy() for k, v in sig(**{k: tf.constant(v) for k, v in x.items()}).items()}
meta = loaded.signatures["metadata"]()
np.savez(out, **result)
print(json.dumps({
    "inputs": {k: [s.dtype.name, s.shape.as_list()] for k, s in sig.structured_input_signature[1].items()},
    "outputs": sorted(sig.structured_outputs),
    "class_names": [c.decode() for c in meta["class_names"].numpy()],
    "task": meta["task"].numpy().decode(),
    "serve": [int(v) for v in loaded.serve({k: tf.constant(v) for k, v in x.items()} if len(x) > 1
                                           else tf.constant(next(iter(x.values())))).shape],
}))
"""


def serve_in_fresh_process(export, inputs, tmp_path):
    """serving_default of ``export`` on ``inputs`` in a new interpreter: (outputs, what it reported)."""
    np.savez(tmp_path / "inputs.npz", **{k: v.numpy() for k, v in inputs.items()})
    env = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, "-c", LOAD_AND_SERVE, str(export), str(tmp_path / "inputs.npz"),
                           str(tmp_path / "out.npz")], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return dict(np.load(tmp_path / "out.npz")), json.loads(proc.stdout.strip().splitlines()[-1])


def test_device_preprocessing_trains_like_the_host_and_serves_raw_bands(mini_dir, tmp_path):  # noqa: F811
    common = dict(model="K-BranchCNN", epochs=1, batch_size=16, deterministic=True, seed=3)
    host = train.train(config(mini_dir, tmp_path / "host", **common))
    device = train.train(config(mini_dir, tmp_path / "device", preprocess="device", export_saved_model=True,
                                **common))
    # same batches, same augmentation, same steps: the same model up to float rounding
    assert device["steps"] == host["steps"] > 0
    assert device["history"][0]["loss"] == pytest.approx(host["history"][0]["loss"], rel=1e-4)
    wh = models.load_model(str(tmp_path / "host" / "final.keras")).get_weights()
    wd = models.load_model(str(tmp_path / "device" / "final.keras")).get_weights()
    for a, b in zip(wh, wd):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)

    run = tmp_path / "device"
    kw = dict(bands="10m+20m+60m", per_resolution=True, batch_size=5)
    (xr, _), = list(reader.make_dataset(mini_dir, "test", raw=True, **kw).take(1))
    (xh, _), = list(reader.make_dataset(mini_dir, "test", **kw).take(1))
    final = models.load_model(str(run / "final.keras"))
    want = final(xh).numpy()
    out, info = serve_in_fresh_process(run / "saved_model", xr, tmp_path)
    assert info["inputs"] == {"raw_10m": ["uint16", [None, 4, 24, 24]], "raw_20m": ["uint16", [None, 6, 12, 12]],
                              "raw_60m": ["uint16", [None, 2, 4, 4]]}
    assert info["outputs"] == ["logits", "probabilities"]
    assert info["class_names"] == list(ben.LABELS_19) and info["task"] == "multi_label"
    assert info["serve"] == [5, 19]
    np.testing.assert_allclose(out["logits"], want, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(out["probabilities"], 1 / (1 + np.exp(-want)), rtol=1e-4, atol=1e-5)
    meta = serving.read_metadata(run / "saved_model")
    assert meta["classes"] == list(ben.LABELS_19) and meta["preprocessing"]["resample"] == "bicubic"
    # serving.keras: the same model behind its preprocessing
    np.testing.assert_allclose(models.load_model(str(run / "serving.keras"))(xr).numpy(), want, rtol=1e-4, atol=1e-4)


def test_single_label_export_without_preprocessing_gives_softmax(tmp_path):
    import keras

    inp = keras.Input((8, 8, 3), name="image")
    net = keras.Model(inp, keras.layers.Dense(4, name="logits")(keras.layers.GlobalAveragePooling2D()(inp)))
    classes = ["water", "forest", "urban", "crops"]
    serving.export_saved_model(net, tmp_path / "export", classes, "single_label")
    x = {"image": tf.random.stateless_uniform([3, 8, 8, 3], [1, 2])}
    out, info = serve_in_fresh_process(tmp_path / "export", x, tmp_path)
    assert info["inputs"] == {"image": ["float32", [None, 8, 8, 3]]}
    assert info["class_names"] == classes and info["task"] == "single_label" and info["serve"] == [3, 4]
    logits = net(x["image"]).numpy()
    np.testing.assert_allclose(out["logits"], logits, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out["probabilities"], tf.nn.softmax(logits).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["probabilities"].sum(1), 1.0, rtol=1e-5)
    with pytest.raises(ValueError, match="class names"):
        serving.export_saved_model(net, tmp_path / "bad", classes[:3], "single_label")


def test_segmentation_export_gives_per_pixel_softmax(tmp_path):
    import keras

    inp = keras.Input((8, 8, 2), name="image")
    net = keras.Model(inp, keras.layers.Conv2D(3, 1, name="logits")(inp))  # per-pixel logits [B, 8, 8, 3]
    classes = ["forest", "water", "urban"]
    meta = serving.export_saved_model(net, tmp_path / "export", classes, "segmentation")
    assert meta["outputs"]["logits"] == "float32 [B, H, W, K]"
    x = {"image": tf.random.stateless_uniform([2, 8, 8, 2], [3, 4])}
    out, info = serve_in_fresh_process(tmp_path / "export", x, tmp_path)
    assert info["task"] == "segmentation" and info["serve"] == [2, 8, 8, 3]
    logits = net(x["image"]).numpy()
    np.testing.assert_allclose(out["logits"], logits, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out["probabilities"], tf.nn.softmax(logits, axis=-1).numpy(), rtol=1e-5, atol=1e-6)
