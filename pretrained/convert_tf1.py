"""TF1 Saver checkpoints (the BigEarthNet-S2 models) -> our Keras 3 models.

Keras 3 cannot read TF1 checkpoints, so the variables are read with ``tf.train.load_checkpoint``
and assigned through an explicit name map built from the Keras model's layers (the models package
names every layer after its TF1 scope with "/" replaced by ".", see models/kbranch.py and
models/slim.py):

- K-BranchCNN (``tf.layers`` scopes): ``CNN_10m_branch/conv_block_0/conv_layer/kernel`` ->
  layer ``CNN_10m_branch.conv_block_0.conv_layer`` weight ``kernel``; batch norm ``gamma``, ``beta``,
  ``moving_mean``, ``moving_variance`` keep their names.
- TF-slim VGG / ResNet v1: ``SCOPE/weights`` -> ``kernel``, ``SCOPE/biases`` -> ``bias``,
  ``SCOPE/BatchNorm/<stat>`` -> layer ``SCOPE.BatchNorm``.

Conv kernels are HWIO and dense kernels (in, out) on both sides; a 2-D checkpoint kernel meant for
a 1x1 conv (or the reverse) is reshaped. Optimizer slots (``.../Adam``, ``.../Adam_1``, momentum and
RMSProp slots), ``beta1_power``/``beta2_power`` and ``global_step`` are ignored; every other
checkpoint variable must map onto exactly one model weight and every model weight must be
found, with the same shape, or ``ConversionError`` lists all the problems at once.
"""
from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from prep.errors import InputError

if TYPE_CHECKING:
    import keras

# Optimizer and bookkeeping variables: never part of the model.
IGNORED = re.compile(
    r"(^|/)(global_step|beta[12]_power(_\d+)?)$"
    r"|/(Adam(_\d+)?|Momentum|RMSProp(_\d+)?|Adagrad|ExponentialMovingAverage)$"
)

# Checkpoint leaf -> Keras weight name, per naming family.
LEAVES = {
    "tf_layers": {"kernel": "kernel", "bias": "bias", "gamma": "gamma", "beta": "beta",
                  "moving_mean": "moving_mean", "moving_variance": "moving_variance"},
    "slim": {"weights": "kernel", "biases": "bias", "gamma": "gamma", "beta": "beta",
             "moving_mean": "moving_mean", "moving_variance": "moving_variance"},
}

# Root scopes of each architecture's checkpoint (K-BranchCNN has several), by models.build name.
SCOPES = {
    "K-BranchCNN": ("CNN_10m_branch", "CNN_20m_branch", "CNN_60m_branch", "feature_fusion", "classification"),
    "VGG16": ("vgg_16",),
    "VGG19": ("vgg_19",),
    "ResNet50": ("resnet_v1_50",),
    "ResNet101": ("resnet_v1_101",),
    "ResNet152": ("resnet_v1_152",),
}


class ConversionError(InputError):
    """The checkpoint and the Keras model do not correspond one to one."""


def naming(architecture: str) -> str:
    """Returns the naming family of ``architecture``'s checkpoint: "tf_layers" (K-BranchCNN) or "slim".

    Raises:
        ConversionError: no TF1 name map for ``architecture`` (not a key of ``SCOPES``).
    """
    if architecture not in SCOPES:
        raise ConversionError(f"no TF1 name map for architecture {architecture!r}; known: {', '.join(SCOPES)}")
    return "tf_layers" if architecture == "K-BranchCNN" else "slim"


def detect_architecture(names: Iterable[str]) -> str:
    """Returns the architecture (a key of ``SCOPES``) whose root scopes the checkpoint variable ``names`` use.

    Raises:
        ConversionError: the root scopes match no known architecture.
    """
    roots = {n.split("/", 1)[0] for n in names if not IGNORED.search(n)}
    for arch, scopes in SCOPES.items():
        if roots and roots <= set(scopes):
            return arch
    raise ConversionError(f"checkpoint scopes {sorted(roots)} match no known architecture "
                          f"({', '.join(f'{a}: {s}' for a, s in SCOPES.items())})")


def find_checkpoint(path: str | os.PathLike) -> str:
    """Returns the checkpoint prefix for a prefix, an ``.index`` file or a folder holding one checkpoint.

    In a folder, the ``checkpoint`` state file wins; otherwise exactly one ``*.index`` must exist
    (searched recursively, as the published zips hold a sub-folder).

    Raises:
        ConversionError: no checkpoint there, or several ``.index`` files and no state file.
    """
    path = Path(path)
    if path.name.endswith(".index") and path.is_file():
        return str(path)[: -len(".index")]
    if Path(str(path) + ".index").is_file():
        return str(path)
    if not path.is_dir():
        raise ConversionError(f"{path}: no TF1 checkpoint (expected a folder, a prefix or an .index file)")
    import tensorflow as tf

    for state in sorted(path.rglob("checkpoint")):
        if state.is_file():
            latest = tf.train.latest_checkpoint(str(state.parent))
            if latest and Path(latest + ".index").is_file():
                return latest
    found = sorted(p for p in path.rglob("*.index") if p.is_file())
    if len(found) != 1:
        what = "no" if not found else f"{len(found)} ({', '.join(str(p) for p in found[:5])})"
        raise ConversionError(f"{path}: found {what} TF1 checkpoint .index files; pass the checkpoint prefix")
    return str(found[0])[: -len(".index")]


def read_checkpoint(checkpoint: str | os.PathLike) -> dict[str, np.ndarray]:
    """Reads all model variables of a TF1 checkpoint (optimizer slots left out), as numpy arrays.

    Returns:
        ``{variable name: array}`` sorted by name, shapes and dtypes as stored.

    Raises:
        ConversionError: no checkpoint found, or TensorFlow cannot read it.
    """
    import tensorflow as tf

    prefix = find_checkpoint(checkpoint)
    try:
        reader = tf.train.load_checkpoint(prefix)
    except Exception as e:  # noqa: BLE001 - TF raises several types for a broken file
        raise ConversionError(f"{prefix}: cannot read the checkpoint ({type(e).__name__}: {e})") from None
    names = reader.get_variable_to_shape_map()
    return {n: reader.get_tensor(n) for n in sorted(names) if not IGNORED.search(n)}


def name_map(model: keras.Model, architecture: str) -> dict[str, tuple[str, str]]:
    """Builds the explicit map checkpoint variable -> (Keras layer name, weight name) for ``model``.

    Raises:
        ConversionError: unknown architecture, a weight without a TF1 counterpart, or two weights
            mapping to the same variable.
    """
    leaves = {keras_name: ckpt_leaf for ckpt_leaf, keras_name in LEAVES[naming(architecture)].items()}
    out: dict[str, tuple[str, str]] = {}
    for layer in model.layers:
        for weight in layer.weights:
            leaf = weight.path.rsplit("/", 1)[-1]
            if leaf not in leaves:
                raise ConversionError(f"model {model.name}: layer {layer.name!r} has a weight {leaf!r} "
                                      f"with no TF1 counterpart")
            ckpt_name = layer.name.replace(".", "/") + "/" + leaves[leaf]
            if ckpt_name in out:
                raise ConversionError(f"model {model.name}: two weights map to {ckpt_name!r}")
            out[ckpt_name] = (layer.name, leaf)
    return out


def _fit(value: np.ndarray, shape: tuple) -> np.ndarray | None:
    """``value`` shaped as ``shape`` (allowing 1x1-conv <-> dense kernels), or None."""
    if tuple(value.shape) == tuple(shape):
        return value
    squeeze = lambda s: tuple(d for i, d in enumerate(s) if not (i < len(s) - 2 and d == 1))  # noqa: E731
    if len(value.shape) != len(shape) and squeeze(value.shape) == squeeze(shape):
        return value.reshape(shape)
    return None


def assign(model: keras.Model, variables: dict[str, np.ndarray], architecture: str, source: str = "checkpoint",
           strict: bool = True) -> dict:
    """Assigns checkpoint ``variables`` to ``model``; raises ConversionError listing every problem.

    ``strict=False`` (fine-tuning from a checkpoint with another head or band count) assigns what
    matches and reports the rest under ``"skipped"``; it still fails when nothing matches.

    Returns:
        ``{"assigned": weights, "parameters": values, "skipped": [problems]}``.

    Raises:
        ConversionError: missing, unmapped or mis-shaped variables (with ``strict``, or when nothing
            matches).
    """
    mapping = name_map(model, architecture)
    layers = {layer.name: layer for layer in model.layers}
    problems, plan = [], []
    for ckpt_name, (layer_name, leaf) in mapping.items():
        weight = next(w for w in layers[layer_name].weights if w.path.rsplit("/", 1)[-1] == leaf)
        if ckpt_name not in variables:
            problems.append(f"missing in checkpoint: {ckpt_name} (for {layer_name}.{leaf}, shape {tuple(weight.shape)})")
            continue
        value = _fit(np.asarray(variables[ckpt_name]), tuple(weight.shape))
        if value is None:
            problems.append(f"shape mismatch: {ckpt_name} is {tuple(variables[ckpt_name].shape)} in the checkpoint, "
                            f"{layer_name}.{leaf} is {tuple(weight.shape)}")
            continue
        plan.append((weight, value))
    unmapped = sorted(set(variables) - set(mapping))
    problems += [f"unmapped in checkpoint: {n} {tuple(variables[n].shape)} (no layer {'.'.join(n.split('/')[:-1])!r} "
                 f"in model {model.name})" for n in unmapped]
    if problems and (strict or not plan):
        shown = "\n  ".join(problems[:40])
        more = f"\n  ... and {len(problems) - 40} more" if len(problems) > 40 else ""
        raise ConversionError(f"{source} does not match {architecture} model {model.name!r} "
                              f"({len(problems)} problems):\n  {shown}{more}")
    for weight, value in plan:
        weight.assign(value.astype(weight.dtype))
    return {"assigned": len(plan), "parameters": int(sum(v.size for _, v in plan)), "skipped": problems}


def convert(checkpoint: str | os.PathLike, model: keras.Model, architecture: str | None = None,
            strict: bool = True) -> dict:
    """Loads the TF1 ``checkpoint`` (prefix, .index file or folder) into the Keras ``model``.

    Args:
        checkpoint: the checkpoint prefix, its ``.index`` file, or a folder holding one checkpoint.
        model: our model of the same architecture.
        architecture: the ``models.build`` name (None = detected from the checkpoint's scopes).
        strict: see ``assign``.

    Returns:
        The ``assign`` report with ``architecture``.

    Raises:
        ConversionError: see ``find_checkpoint``, ``detect_architecture`` and ``assign``.
    """
    variables = read_checkpoint(checkpoint)
    architecture = architecture or detect_architecture(variables)
    report = assign(model, variables, architecture, source=f"checkpoint {find_checkpoint(checkpoint)}",
                    strict=strict)
    report["architecture"] = architecture
    return report
