"""K-BranchCNN, the BigEarthNet-S2 multi-resolution baseline (FACTS.md §1), in Keras 3.

Three branches, one per Sentinel-2 resolution, each seeing its bands at their
native grid; their 128-d features are fused and classified:

* ``10m`` (120x120x4, B04 B03 B02 B08): conv32 5x5, pool, drop .25, conv32 5x5,
  pool, drop .25, conv64 3x3, drop .25, flatten, fc128, drop .5
* ``20m`` (60x60x6, B05 B06 B07 B8A B11 B12): conv32 3x3, pool, drop .25,
  conv32 3x3, drop .25, conv64 3x3, drop .25, flatten, fc128, drop .5
* ``60m`` (20x20x2, B01 B09): 3 x (conv32 2x2, drop .25), flatten, fc128, drop .5
* fusion: concat (384) -> fc128 -> drop .25; classification: drop .5 -> dense logits

"conv" is conv2d (SAME, stride 1, bias) + batch norm (momentum 0.99, epsilon 1e-3,
the TF1 ``tf.layers`` defaults) + ReLU; "fc" is dense + the same batch norm + ReLU;
pools are 2x2/2 VALID max pools; kernels start Glorot-uniform, biases zero.
Flatten is row-major over (height, width, channels), exactly TF1's reshape of an
NHWC tensor, so dense kernels keep their TF1 row order.

Layer naming (for loading the published TF1 checkpoint)
--------------------------------------------------------
Keras 3 forbids "/" in layer names, so a TF1 variable scope becomes a layer name
by replacing every "/" with "." -- nothing else changes::

    TF1 variable                                         Keras layer . weight
    CNN_10m_branch/conv_block_0/conv_layer/kernel    ->  "CNN_10m_branch.conv_block_0.conv_layer" .kernel
    CNN_10m_branch/conv_block_0/batch_norm/gamma     ->  "CNN_10m_branch.conv_block_0.batch_norm" .gamma
    CNN_20m_branch/fc_block_0/fc_layer/bias          ->  "CNN_20m_branch.fc_block_0.fc_layer" .bias
    feature_fusion/fc_block_0/batch_norm/moving_mean ->  "feature_fusion.fc_block_0.batch_norm" .moving_mean
    classification/fc_layer/kernel                   ->  "classification.fc_layer" .kernel

i.e. layer = ".".join(var.split("/")[:-1]), weight = var.split("/")[-1]; the Keras
variable path (``variable.path``) is then ``layer + "/" + weight``. Weight shapes are
identical to TF1's (conv HWIO, dense (in, out)); no transposes are needed. TF1 Adam
slots (``.../Adam``, ``.../Adam_1``) and ``beta1_power``/``beta2_power`` have no
counterpart. Layers without weights (ReLU, pooling, dropout, flatten) carry the
same prefix with their TF1 op name (``...conv_block_0.relu``, ``CNN_10m_branch.max_pooling``).
"""

from __future__ import annotations

from collections.abc import Mapping

import keras

from models import common
from prep.datasets.spec import MULTI_LABEL

FEATURE_SIZE = 128
BRANCH_BANDS = {"10m": 4, "20m": 6, "60m": 2}
DEFAULT_INPUT_SPEC = {"10m": (120, 120, 4), "20m": (60, 60, 6), "60m": (20, 20, 2)}

# Each branch as a list of steps: ("conv", filters, kernel), ("pool", op_name),
# ("drop", rate). The op names follow the upstream graph (note the 10 m branch's
# first pool is "max_pooling", the 20 m branch's "max_pooling_0").
BRANCHES = {
    "10m": ("CNN_10m_branch", [
        ("conv", 32, 5), ("pool", "max_pooling"), ("drop", 0.25),
        ("conv", 32, 5), ("pool", "max_pooling_1"), ("drop", 0.25),
        ("conv", 64, 3), ("drop", 0.25)]),
    "20m": ("CNN_20m_branch", [
        ("conv", 32, 3), ("pool", "max_pooling_0"), ("drop", 0.25),
        ("conv", 32, 3), ("drop", 0.25),
        ("conv", 64, 3), ("drop", 0.25)]),
    "60m": ("CNN_60m_branch", [
        ("conv", 32, 2), ("drop", 0.25),
        ("conv", 32, 2), ("drop", 0.25),
        ("conv", 32, 2), ("drop", 0.25)]),
}


def _bn(name):
    return keras.layers.BatchNormalization(momentum=0.99, epsilon=1e-3, name=name)


def conv_block(x: keras.KerasTensor, filters: int, kernel: int, scope: str) -> keras.KerasTensor:
    """Applies the upstream "conv" block: conv2d (SAME, stride 1, bias) + batch norm + ReLU.

    Args:
        x: ``[batch, H, W, C]`` feature map.
        filters: output channels.
        kernel: square kernel size in pixels.
        scope: TF1 scope with "." for "/", e.g. ``"CNN_10m_branch.conv_block_0"``; the layers are
            ``<scope>.conv_layer``, ``<scope>.batch_norm`` and ``<scope>.relu``.

    Returns:
        ``[batch, H, W, filters]``.
    """
    x = keras.layers.Conv2D(filters, kernel, strides=1, padding="same", use_bias=True,
                            kernel_initializer="glorot_uniform", bias_initializer="zeros",
                            name=f"{scope}.conv_layer")(x)
    x = _bn(f"{scope}.batch_norm")(x)
    return keras.layers.ReLU(name=f"{scope}.relu")(x)


def fc_block(x: keras.KerasTensor, units: int, scope: str) -> keras.KerasTensor:
    """Applies the upstream "fc" block: dense + batch norm + ReLU.

    Args:
        x: ``[batch, features]``.
        units: output features.
        scope: TF1 scope with "." for "/"; layers ``<scope>.fc_layer``, ``<scope>.batch_norm``,
            ``<scope>.relu``.

    Returns:
        ``[batch, units]``.
    """
    x = keras.layers.Dense(units, kernel_initializer="glorot_uniform", bias_initializer="zeros",
                           name=f"{scope}.fc_layer")(x)
    x = _bn(f"{scope}.batch_norm")(x)
    return keras.layers.ReLU(name=f"{scope}.relu")(x)


def branch(x: keras.KerasTensor, key: str) -> keras.KerasTensor:
    """Applies the branch for resolution ``key`` ("10m", "20m" or "60m"; steps in ``BRANCHES``).

    Args:
        x: the branch's bands, ``[batch, H, W, C]`` (upstream 120x120x4, 60x60x6 or 20x20x2).
        key: a key of ``BRANCHES``.

    Returns:
        The branch's features after fc128 and dropout 0.5, ``[batch, 128]``.

    Raises:
        KeyError: unknown ``key``.
    """
    scope, steps = BRANCHES[key]
    n_conv = n_drop = 0
    for step in steps:
        if step[0] == "conv":
            x = conv_block(x, step[1], step[2], f"{scope}.conv_block_{n_conv}")
            n_conv += 1
        elif step[0] == "pool":
            x = keras.layers.MaxPooling2D(2, strides=2, padding="valid", name=f"{scope}.{step[1]}")(x)
        else:
            x = keras.layers.Dropout(step[1], name=f"{scope}.dropout_{n_drop}")(x)
            n_drop += 1
    x = keras.layers.Flatten(name=f"{scope}.flatten")(x)
    x = fc_block(x, FEATURE_SIZE, f"{scope}.fc_block_0")
    return keras.layers.Dropout(0.5, name=f"{scope}.dropout_{n_drop}")(x)


def build_kbranch(input_spec: Mapping[str, tuple], num_classes: int, task: str = MULTI_LABEL) -> keras.Model:
    """Builds K-BranchCNN for ``input_spec`` with keys "10m", "20m", "60m".

    Source: the BigEarthNet-S2 19-class TF1 models of RSiM, TU Berlin
    (gitlab.tu-berlin.de/rsim/bigearthnet-models-tf); layer names as in the module docstring.

    Args:
        input_spec: ``{"10m": (H, W, 4), "20m": (H, W, 6), "60m": (H, W, 2)}`` with fixed sizes the
            pooling allows; upstream 120x120 (B04 B03 B02 B08), 60x60 (B05 B06 B07 B8A B11 B12)
            and 20x20 (B01 B09), each band standardised with the BigEarthNet band statistics.
        num_classes: number of logits (19 for BigEarthNet-19).
        task: unused (logits either way); part of the builder signature.

    Returns:
        The functional model, three inputs -> ``[batch, num_classes]`` float32 logits.

    Raises:
        ValueError: other input keys, or a branch without a fixed size (it flattens).
    """
    if set(input_spec) != set(BRANCH_BANDS):
        raise ValueError(f"K-BranchCNN needs inputs {sorted(BRANCH_BANDS)} (per_resolution=True), "
                         f"got {sorted(input_spec)}")
    for key, (h, w, _) in input_spec.items():
        if h is None or w is None:
            raise ValueError(f"K-BranchCNN input {key!r} needs a fixed size (it flattens), got {h}x{w}")
    inputs = common.make_inputs(input_spec)
    features = [branch(inputs[key], key) for key in ("10m", "20m", "60m")]
    x = keras.layers.Concatenate(axis=-1, name="feature_fusion.concat")(features)
    x = fc_block(x, FEATURE_SIZE, "feature_fusion.fc_block_0")
    x = keras.layers.Dropout(0.25, name="feature_fusion.dropout_0")(x)
    x = keras.layers.Dropout(0.5, name="classification.dropout_0")(x)
    x = keras.layers.Dense(num_classes, kernel_initializer="glorot_uniform", bias_initializer="zeros",
                           name="classification.fc_layer")(x)
    return common.finish(inputs, x, "K-BranchCNN")
