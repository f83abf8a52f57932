"""Keras 2 HDF5 full models (the GHS-S2Net per-zone files, TF 2.0 / Keras 2.3) -> our Keras 3 models.

Keras 3 does not load these files reliably, so they are read with h5py: the ``model_config``
attribute (JSON) gives the layer sequence, ``model_weights/<layer>`` with its ``weight_names``
attribute gives the arrays (``model_weights/conv2d_1/conv2d_1/kernel:0`` ...); optimizer state
(``optimizer_weights``) is ignored. Layer names are auto-numbered and differ between files, so the
mapping is by position: the source's layers, in order, must match ours one for one (class, filters or
units, kernel size, strides, padding, activation, batch-norm epsilon), except that the last dense
layer's output activation (sigmoid upstream) is left to the caller because our models return
logits. Weights map by their leaf name (kernel, bias, gamma, beta, moving_mean, moving_variance);
shapes must be identical. Any disagreement raises ``ConversionError`` naming the file and layers.
"""
from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

import numpy as np

from pretrained.convert_tf1 import ConversionError

if TYPE_CHECKING:
    import keras

# Layers of ours that have no counterpart in a Keras 2 Sequential file.
_OWN_ONLY = ("InputLayer",)
# Our trailing output layers (see models/common.py and models/ghs.py).
_OUTPUT_LAYERS = ("logits", "probabilities")
_CHECKED_KEYS = ("filters", "units", "kernel_size", "strides", "padding", "dilation_rate", "use_bias",
                 "epsilon", "center", "scale", "data_format")


def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def read(path: str | os.PathLike) -> dict:
    """Reads a Keras 2 HDF5 full model's layer sequence and weights with h5py.

    Returns:
        ``{"keras_version", "backend", "layers": [{"name", "class_name", "config", "weights":
        {leaf: array}}]}``, layers in ``model_config`` order.

    Raises:
        ConversionError: not a readable HDF5 file, not a Keras 2 full model, or weights stored for
            layers ``model_config`` does not list.
    """
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise ConversionError(f"{path}: not a readable HDF5 file ({e})") from None
    with f:
        if "model_config" not in f.attrs or "model_weights" not in f:
            raise ConversionError(f"{path}: not a Keras 2 full-model HDF5 file (no model_config / model_weights)")
        config = json.loads(_text(f.attrs["model_config"]))
        inner = config.get("config", {})
        layer_configs = inner.get("layers", inner) if isinstance(inner, dict) else inner
        if not isinstance(layer_configs, list):
            raise ConversionError(f"{path}: cannot find the layer list in model_config")
        group = f["model_weights"]
        stored = [_text(n) for n in group.attrs.get("layer_names", [])]
        layers = []
        for entry in layer_configs:
            name = entry.get("config", {}).get("name") or entry.get("name")
            weights = {}
            if name in group:
                for wname in (_text(n) for n in group[name].attrs.get("weight_names", [])):
                    leaf = wname.rsplit("/", 1)[-1].split(":", 1)[0]
                    weights[leaf] = np.asarray(group[name][wname])
            layers.append({"name": name, "class_name": entry.get("class_name"),
                           "config": entry.get("config", {}), "weights": weights})
        missing = [n for n in stored if n not in {layer["name"] for layer in layers}]
        if missing:
            raise ConversionError(f"{path}: weights stored for layers not in model_config: {missing}")
        return {"keras_version": _text(f.attrs.get("keras_version", "?")),
                "backend": _text(f.attrs.get("backend", "?")), "layers": layers}


def _norm(value):
    if isinstance(value, (list, tuple)):
        return tuple(_norm(v) for v in value)
    return value


def _activation(config) -> str:
    act = config.get("activation", "linear")
    if isinstance(act, dict):  # Keras 3 serialises some activations as objects
        act = act.get("config", {}).get("name") or act.get("class_name", "linear")
    return str(act)


def _compare(path, src: dict, dst_layer, is_last_dense: bool, notes: list) -> list[str]:
    """Differences between a Keras 2 layer description and one of our layers."""
    problems = []
    where = f"{src['name']} ({src['class_name']}) vs {dst_layer.name} ({type(dst_layer).__name__})"
    if src["class_name"] != type(dst_layer).__name__:
        return [f"layer kinds differ: {where}"]
    ours = dst_layer.get_config()
    for key in _CHECKED_KEYS:
        if key in src["config"] and key in ours and _norm(src["config"][key]) != _norm(ours[key]):
            if key == "epsilon" and abs(float(src["config"][key]) - float(ours[key])) < 1e-12:
                continue
            problems.append(f"{where}: {key} {src['config'][key]!r} != {ours[key]!r}")
    if "activation" in src["config"] or "activation" in ours:
        a, b = _activation(src["config"]), _activation(ours)
        if a != b:
            if is_last_dense and b == "linear":
                notes.append(f"{path}: output activation {a!r} of {src['name']} is not in our model, "
                             f"which returns logits; apply {a} to reproduce the file's outputs")
            else:
                problems.append(f"{where}: activation {a!r} != {b!r}")
    return problems


def assign(model: keras.Model, source: dict, path: str = "file", strict: bool = True) -> dict:
    """Assigns the weights of ``source`` (from ``read``) to ``model`` after checking the layer sequence.

    Args:
        model: our model (e.g. GHS-S2Net); its ``logits`` / ``probabilities`` output layers are skipped.
        source: ``read`` output.
        path: how to name the file in messages.
        strict: fail on any difference (False: assign what matches, report the rest).

    Returns:
        ``{"assigned": weights, "parameters": values, "notes": [...], "skipped": [problems]}``; a note
        tells when the file's last dense layer has an output activation (sigmoid) ours leaves out.

    Raises:
        ConversionError: with ``strict``, any difference in layer kinds, configs, weight names or
            shapes, all listed at once.
    """
    ours = [layer for layer in model.layers
            if type(layer).__name__ not in _OWN_ONLY and layer.name not in _OUTPUT_LAYERS]
    theirs = [layer for layer in source["layers"] if layer["class_name"] not in _OWN_ONLY]
    problems, notes, plan = [], [], []
    if [type(layer).__name__ for layer in ours] != [layer["class_name"] for layer in theirs]:
        problems.append(
            f"layer sequence differs:\n    file: {[layer['class_name'] for layer in theirs]}\n"
            f"    ours: {[type(layer).__name__ for layer in ours]}")
    else:
        last_dense = max((i for i, layer in enumerate(theirs) if layer["class_name"] == "Dense"), default=-1)
        for i, (src, dst) in enumerate(zip(theirs, ours)):
            problems += _compare(path, src, dst, i == last_dense, notes)
            dst_weights = {w.path.rsplit("/", 1)[-1]: w for w in dst.weights}
            if set(src["weights"]) != set(dst_weights):
                problems.append(f"{src['name']} has weights {sorted(src['weights'])}, "
                                f"{dst.name} has {sorted(dst_weights)}")
                continue
            for leaf, value in src["weights"].items():
                if tuple(value.shape) != tuple(dst_weights[leaf].shape):
                    problems.append(f"shape mismatch: {src['name']}/{leaf} is {tuple(value.shape)}, "
                                    f"{dst.name}.{leaf} is {tuple(dst_weights[leaf].shape)}")
                else:
                    plan.append((dst_weights[leaf], value, f"{src['name']}/{leaf}"))
    if problems and strict:
        raise ConversionError(f"{path} (Keras {source.get('keras_version', '?')}) does not match model "
                              f"{model.name!r}:\n  " + "\n  ".join(problems))
    for weight, value, _ in plan:
        weight.assign(value.astype(weight.dtype))
    return {"assigned": len(plan), "parameters": int(sum(v.size for _, v, _ in plan)),
            "notes": notes, "skipped": problems}


def convert(path: str | os.PathLike, model: keras.Model, strict: bool = True) -> dict:
    """Loads the Keras 2 HDF5 full model at ``path`` into our Keras 3 ``model``.

    Returns:
        The ``assign`` report with ``source_format`` "keras2-hdf5".

    Raises:
        ConversionError: the file is unreadable or does not match ``model`` (see ``read``, ``assign``).
    """
    report = assign(model, read(path), str(path), strict=strict)
    report["source_format"] = "keras2-hdf5"
    return report
