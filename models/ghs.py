"""GHS-S2Net, the per-pixel built-up classifier of the GHS Sentinel-2 workflow (FACTS.md §5).

Input: a 5x5 window of the 4-band 10 m composite (B4, B3, B2, B8; reflectance clipped
at 10000 and divided by 10000); the prediction belongs to the window's centre pixel.
Layers, as the upstream Keras-2 Sequential model (Keras defaults: VALID padding,
stride 1, Glorot-uniform kernels, BN momentum 0.99 / epsilon 1e-3):

    conv1 128 2x2 -> conv2 128 2x2 -> bn1 -> tanh -> dropout .1      (5x5 -> 4x4 -> 3x3)
    conv3 512 2x2 -> conv4 512 2x2 -> bn2 -> tanh -> dropout .1      (3x3 -> 2x2 -> 1x1)
    flatten -> dense1 128 -> bn3 -> tanh -> dropout .1 -> dense2 (2 units)

Upstream ``dense2`` has a sigmoid and is trained with binary cross-entropy on one-hot
[not built-up, built-up] targets; the published score is prob[:, 1]. Here ``dense2``
is linear and the model returns logits (train with task=MULTI_LABEL, i.e. sigmoid
cross-entropy, to reproduce it); ``final_activation="sigmoid"`` appends the sigmoid
(layer ``probabilities``) for a drop-in replica of the published models' outputs.

Loading the published Keras 2.3 HDF5 models: their weighted layers, in model order,
are conv2d, conv2d, batch_normalization, conv2d, conv2d, batch_normalization, dense,
batch_normalization, dense (auto-numbered names that vary between files); they map in
that order onto ``WEIGHTED_LAYERS`` below, weight for weight (conv/dense: kernel, bias;
BN: gamma, beta, moving_mean, moving_variance), with identical shapes.
"""

from __future__ import annotations

from collections.abc import Mapping

import keras

from models import common
from prep.datasets.spec import MULTI_LABEL

WEIGHTED_LAYERS = ("conv1", "conv2", "bn1", "conv3", "conv4", "bn2", "dense1", "bn3", "dense2")
DEFAULT_INPUT_SPEC = {"image": (5, 5, 4)}


def build_ghs_s2net(input_spec: Mapping[str, tuple], num_classes: int = 2, task: str = MULTI_LABEL, *,
                    final_activation: str | None = None, dropout: float = 0.1) -> keras.Model:
    """Builds GHS-S2Net for one fixed-size window input (the published one is 5x5x4).

    Source: the JRC GHS-S2Net (Corbane et al., "Convolutional neural networks for global human
    settlement mapping from Sentinel-2 satellite imagery", Neural Computing and Applications, 2021;
    code and per-UTM-zone weights at github.com/ec-jrc/GHS-S2Net); layers as in the module docstring.

    Args:
        input_spec: one input ``{name: (H, W, 4)}``: B4, B3, B2, B8 reflectance (DN clipped at 10000,
            divided by 10000), H and W fixed and at least 5 pixels.
        num_classes: units of ``dense2`` (2 upstream: [not built-up, built-up]).
        task: unused (logits either way); train with "multi_label" (sigmoid cross-entropy on
            one-hot targets) to match upstream's BCE.
        final_activation: None (the model returns logits) or a Keras activation, e.g. "sigmoid",
            appended as the float32 layer ``probabilities``.
        dropout: rate of the three dropout layers (0.1 upstream).

    Returns:
        The functional model, ``[batch, H, W, 4]`` -> ``[batch, num_classes]`` float32 logits (or
        probabilities with ``final_activation``).

    Raises:
        ValueError: more than one input, a window under 5x5, or an unknown (None) height/width.
    """
    inputs, x = common.single_input(input_spec, "GHS-S2Net", min_size=5)
    if None in x.shape[1:3]:
        raise ValueError("GHS-S2Net flattens its window: give a fixed size, e.g. (5, 5, 4)")

    def conv(x, n, name):
        return keras.layers.Conv2D(n, 2, strides=1, padding="valid", name=name)(x)

    def bn_tanh_drop(x, i):
        x = keras.layers.BatchNormalization(momentum=0.99, epsilon=1e-3, name=f"bn{i}")(x)
        x = keras.layers.Activation("tanh", name=f"tanh{i}")(x)
        return keras.layers.Dropout(dropout, name=f"dropout{i}")(x)

    x = conv(x, 128, "conv1")
    x = conv(x, 128, "conv2")
    x = bn_tanh_drop(x, 1)
    x = conv(x, 512, "conv3")
    x = conv(x, 512, "conv4")
    x = bn_tanh_drop(x, 2)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(128, name="dense1")(x)
    x = bn_tanh_drop(x, 3)
    x = keras.layers.Dense(num_classes, name="dense2")(x)
    out = common.logits(x)
    if final_activation is not None:
        out = keras.layers.Activation(final_activation, dtype="float32", name="probabilities")(out)
    return keras.Model(inputs=inputs, outputs=out, name="GHS-S2Net")
