"""Keras 2.3 HDF5 full model (GHS-S2Net) -> our Keras 3 GHS-S2Net, checked against a numpy forward pass.

The HDF5 file is written here with h5py in the layout Keras 2.3 ``model.save`` produces: root
attributes ``keras_version``, ``backend``, ``model_config`` (Sequential JSON) and
``training_config``; ``model_weights`` with ``layer_names`` and one group per layer holding
``weight_names`` and the arrays under ``<layer>/<layer>/kernel:0``; ``optimizer_weights`` with Adam
state. The reference output is computed from the same arrays with numpy (valid 2x2 convolutions,
inference batch norm, tanh, row-major flatten, dense, sigmoid).
"""
from __future__ import annotations

import json
import subprocess
import sys

import h5py
import numpy as np
import pytest

import models
import pretrained
from pretrained import convert_keras2
from tests.conftest import command_flags

TOL = 1e-5
OFFSET = 12  # Keras 2 numbers layers per session: files from a training loop have e.g. conv2d_13


def _layers(padding="valid", extra_dense=False):
    """The upstream Sequential stack as (name, class_name, config)."""
    n = {"conv2d": OFFSET, "batch_normalization": OFFSET, "activation": OFFSET, "dropout": OFFSET,
         "flatten": OFFSET, "dense": OFFSET}

    def name(kind):
        n[kind] += 1
        return f"{kind}_{n[kind]}"

    def conv(filters, first=False):
        cfg = {"name": name("conv2d"), "trainable": True, "dtype": "float32", "filters": filters,
               "kernel_size": [2, 2], "strides": [1, 1], "padding": padding, "data_format": "channels_last",
               "dilation_rate": [1, 1], "activation": "linear", "use_bias": True,
               "kernel_initializer": {"class_name": "VarianceScaling", "config": {"scale": 1.0}},
               "bias_initializer": {"class_name": "Zeros", "config": {}}}
        if first:
            cfg["batch_input_shape"] = [None, 5, 5, 4]
        return ("Conv2D", cfg)

    def bn():
        return ("BatchNormalization", {"name": name("batch_normalization"), "trainable": True, "axis": -1,
                                       "momentum": 0.99, "epsilon": 0.001, "center": True, "scale": True})

    def act(a):
        return ("Activation", {"name": name("activation"), "trainable": True, "activation": a})

    def drop():
        return ("Dropout", {"name": name("dropout"), "trainable": True, "rate": 0.1})

    def dense(units, activation="linear"):
        return ("Dense", {"name": name("dense"), "trainable": True, "units": units, "activation": activation,
                          "use_bias": True})

    stack = [conv(128, True), conv(128), bn(), act("tanh"), drop(),
             conv(512), conv(512), bn(), act("tanh"), drop(),
             ("Flatten", {"name": name("flatten"), "trainable": True, "data_format": "channels_last"}),
             dense(128), bn(), act("tanh"), drop()]
    if extra_dense:
        stack += [dense(64)]
    stack += [dense(2, "sigmoid")]
    return [(cfg["name"], cls, cfg) for cls, cfg in stack]


def _weights(layers, rng):
    shapes_in = 4
    out = {}
    for name, cls, cfg in layers:
        if cls == "Conv2D":
            k = rng.standard_normal((2, 2, shapes_in, cfg["filters"])) * np.sqrt(1.0 / (4 * shapes_in))
            out[name] = {"kernel": k, "bias": rng.normal(0, 0.1, cfg["filters"])}
            shapes_in = cfg["filters"]
        elif cls == "BatchNormalization":
            out[name] = {"gamma": rng.uniform(0.5, 1.5, shapes_in), "beta": rng.normal(0, 0.1, shapes_in),
                         "moving_mean": rng.normal(0, 0.2, shapes_in),
                         "moving_variance": rng.uniform(0.5, 1.5, shapes_in)}
        elif cls == "Dense":
            k = rng.standard_normal((shapes_in, cfg["units"])) * np.sqrt(1.0 / shapes_in)
            out[name] = {"kernel": k, "bias": rng.normal(0, 0.1, cfg["units"])}
            shapes_in = cfg["units"]
    return {n: {k: v.astype(np.float32) for k, v in w.items()} for n, w in out.items()}


def write_keras2_h5(path, layers, weights):
    with h5py.File(path, "w") as f:
        f.attrs["keras_version"] = b"2.3.1"
        f.attrs["backend"] = b"tensorflow"
        config = {"class_name": "Sequential",
                  "config": {"name": "sequential_5", "layers": [{"class_name": c, "config": cfg}
                                                                for _, c, cfg in layers]}}
        f.attrs["model_config"] = json.dumps(config).encode()
        f.attrs["training_config"] = json.dumps({"loss": "binary_crossentropy", "metrics": ["accuracy"],
                                                 "optimizer_config": {"class_name": "Adam",
                                                                      "config": {"learning_rate": 1e-4}}}).encode()
        group = f.create_group("model_weights")
        group.attrs["layer_names"] = np.array([n.encode() for n, _, _ in layers])
        group.attrs["backend"] = b"tensorflow"
        group.attrs["keras_version"] = b"2.3.1"
        for name, _, _ in layers:
            g = group.create_group(name)
            arrays = weights.get(name, {})
            names = [f"{name}/{leaf}:0" for leaf in arrays]
            g.attrs["weight_names"] = np.array([s.encode() for s in names], dtype="S")
            for wname, value in zip(names, arrays.values()):
                g.create_dataset(wname, data=value)
        opt = f.create_group("optimizer_weights")
        slots = ["Adam/iterations:0"] + [f"training/Adam/{n}/{leaf}/m:0" for n, w in weights.items() for leaf in w][:4]
        opt.attrs["weight_names"] = np.array([s.encode() for s in slots])
        for s in slots:
            opt.create_dataset(s, data=np.zeros(3, np.float32))


def numpy_forward(x, layers, weights):
    """Keras 2 Sequential inference with numpy (float64)."""
    x = x.astype(np.float64)
    for name, cls, cfg in layers:
        w = weights.get(name, {})
        if cls == "Conv2D":
            k, b = w["kernel"].astype(np.float64), w["bias"]
            h, wd = x.shape[1] - 1, x.shape[2] - 1
            out = np.zeros((x.shape[0], h, wd, k.shape[-1]))
            for di in range(2):
                for dj in range(2):
                    out += np.einsum("bhwc,co->bhwo", x[:, di:di + h, dj:dj + wd, :], k[di, dj])
            x = out + b
        elif cls == "BatchNormalization":
            x = (x - w["moving_mean"]) / np.sqrt(w["moving_variance"] + cfg["epsilon"]) * w["gamma"] + w["beta"]
        elif cls == "Activation":
            x = np.tanh(x)
        elif cls == "Flatten":
            x = x.reshape(x.shape[0], -1)
        elif cls == "Dense":
            x = x @ w["kernel"] + w["bias"]
            if cfg["activation"] == "sigmoid":
                x = 1.0 / (1.0 + np.exp(-x))
    return x


@pytest.fixture(scope="module")
def ghs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ghs")
    layers = _layers()
    weights = _weights(layers, np.random.default_rng(3))
    path = root / "MODEL_CNN_32T.h5"
    write_keras2_h5(path, layers, weights)
    rng = np.random.default_rng(4)
    windows = rng.uniform(0.0, 1.0, (64, 5, 5, 4)).astype(np.float32)  # reflectance / 10000
    return {"path": path, "x": windows, "probs": numpy_forward(windows, layers, weights), "root": root}


def test_read_finds_layers_weights_and_version(ghs):
    source = convert_keras2.read(ghs["path"])
    assert source["keras_version"] == "2.3.1"
    weighted = [(layer["name"], sorted(layer["weights"])) for layer in source["layers"] if layer["weights"]]
    assert weighted[0] == ("conv2d_13", ["bias", "kernel"])
    assert weighted[2] == ("batch_normalization_13", ["beta", "gamma", "moving_mean", "moving_variance"])
    assert len(weighted) == 9


def test_ghs_file_converts_through_the_registry_and_matches_keras2(ghs, monkeypatch):
    cache = ghs["root"] / "cache"
    report = pretrained.convert("ghs-s2net-32T", cache=cache, url=str(ghs["path"]), progress=False)
    assert report["assigned"] == 24  # 4 convs x 2 + 3 batch norms x 4 + 2 dense x 2
    assert any("output activation 'sigmoid'" in note for note in report["notes"])
    monkeypatch.setenv("EORECORDS_CACHE", str(cache))
    model = models.build("GHS-S2Net", {"image": (5, 5, 4)}, 2, "multi_label", weights="ghs-s2net-32T")
    logits = np.asarray(model({"image": ghs["x"]}, training=False), np.float64)
    np.testing.assert_allclose(1.0 / (1.0 + np.exp(-logits)), ghs["probs"], rtol=TOL, atol=TOL)
    # a drop-in replica with the sigmoid, loaded straight from the HDF5 file
    replica = models.build("GHS-S2Net", {"image": (5, 5, 4)}, 2, "multi_label", final_activation="sigmoid")
    pretrained.load_into(replica, ghs["path"])
    np.testing.assert_allclose(np.asarray(replica({"image": ghs["x"]}, training=False)), ghs["probs"], rtol=TOL, atol=TOL)


def test_keras2_file_that_differs_from_our_architecture_is_refused(ghs):
    model = models.build("GHS-S2Net", {"image": (5, 5, 4)}, 2, "multi_label")
    same = ghs["root"] / "same_padding.h5"
    layers = _layers(padding="same")
    write_keras2_h5(same, layers, _weights(layers, np.random.default_rng(0)))
    with pytest.raises(pretrained.ConversionError, match=r"conv2d_13 \(Conv2D\) vs conv1 \(Conv2D\): padding 'same' != 'valid'"):
        pretrained.load_into(model, same)
    longer = ghs["root"] / "longer.h5"
    layers = _layers(extra_dense=True)
    write_keras2_h5(longer, layers, _weights(layers, np.random.default_rng(0)))
    with pytest.raises(pretrained.ConversionError, match="layer sequence differs"):
        convert_keras2.convert(longer, model)
    (ghs["root"] / "junk.h5").write_bytes(b"not hdf5")
    with pytest.raises(pretrained.ConversionError, match="not a readable HDF5 file"):
        convert_keras2.convert(ghs["root"] / "junk.h5", model)


def test_cli_fetch_and_list_use_the_cache_folder(ghs, tmp_path):
    cache = tmp_path / "cli-cache"
    cmd = [sys.executable, "-m", "pretrained", f"--cache_dir={cache}", "--noprogress"]
    done = subprocess.run(cmd + [f"--url={ghs['path']}", "fetch", "MODEL_CNN_32T"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    fetched = cache / "downloads" / "ghs-s2net-32T" / "MODEL_CNN_32T.h5"
    assert done.stdout.strip() == str(fetched) and fetched.read_bytes() == ghs["path"].read_bytes()
    listing = subprocess.run(cmd + ["list"], capture_output=True, text=True)
    assert listing.returncode == 0 and "ghs-s2net-<zone> (497 zones)" in listing.stdout
    assert "1 cached" in listing.stdout and "bigearthnet19-resnet152" in listing.stdout
    bad = subprocess.run(cmd + [f"--url={ghs['path']}", "--sha256=" + "a" * 64, "--force", "fetch", "ghs-s2net-33U"],
                         capture_output=True, text=True)
    assert bad.returncode == 1 and "SHA-256 mismatch" in bad.stderr
    assert not (cache / "downloads" / "ghs-s2net-33U").exists() or not any(
        (cache / "downloads" / "ghs-s2net-33U").iterdir())
    usage = subprocess.run(cmd + ["frobnicate"], capture_output=True, text=True)
    assert usage.returncode != 0 and "list | fetch NAME | convert NAME" in usage.stderr + usage.stdout


def test_cli_convert_in_process(ghs, tmp_path, capsys):
    from pretrained import __main__ as cli

    cache = tmp_path / "cache"
    with pytest.raises(FileNotFoundError, match="python -m pretrained convert ghs-s2net-32T"):
        pretrained.resolve("ghs-s2net-32T", cache=cache, download=False)
    with command_flags(cli) as fv:
        fv(["pretrained", f"--cache_dir={cache}", f"--url={ghs['path']}", "--noprogress"])
        assert cli.main(["pretrained", "convert", "MODEL_CNN_32T"]) == 0
    out = capsys.readouterr().out
    weights = cache / "converted" / "ghs-s2net-32T.weights.h5"
    assert f"weights: {weights}" in out and "24 weights" in out and "sigmoid" in out
    assert pretrained.resolve("ghs-s2net-32T", cache=cache, download=False) == weights
    assert pretrained.resolve(str(weights)) == weights
    meta = json.loads((cache / "converted" / "ghs-s2net-32T.json").read_text())
    assert meta["entry"]["url"].endswith("MODEL_CNN_32T.h5") and meta["source_sha256"]
