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

Scene inference (``scene.inference``) runs the network convolutionally instead: every layer is a
valid convolution or a dense layer on a 1x1 map, so ``to_convolutional`` turns ``dense1``/``dense2``
into 1x1 convolutions (kernel ``[in, out]`` -> ``[1, 1, in, out]``) and the model maps a block of
``H x W`` pixels (plus a 2-pixel halo) to ``(H - 4) x (W - 4)`` per-pixel outputs in one pass, the
same outputs as one 5x5 window per pixel (tests/test_scene_model.py checks 1e-5). Per output pixel
it costs about 1.4 M multiply-adds instead of 2.8 M, and no 25x copy of the input.
"""

from __future__ import annotations

from collections.abc import Mapping

import keras
import numpy as np

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


CONTEXT = 2  # pixels of context on each side of the predicted pixel (the 5x5 window's half width)


def build_ghs_s2net_conv(num_classes: int = 2, *, final_activation: str | None = "sigmoid",
                         bands: int = 4) -> keras.Model:
    """Builds the fully convolutional form of GHS-S2Net, for whole blocks of a scene.

    Same layers and layer names as ``build_ghs_s2net`` (dropout left out: inference only), with
    ``dense1`` and ``dense2`` as 1x1 convolutions, so ``to_convolutional`` copies weights across.

    Args:
        num_classes: output channels (2 upstream: [not built-up, built-up]).
        final_activation: a Keras activation applied to the output (``"sigmoid"``, as the published
            models), or None for logits.
        bands: input channels (4: B4, B3, B2, B8 reflectance).

    Returns:
        A model ``[batch, H, W, bands]`` -> ``[batch, H - 4, W - 4, num_classes]`` float32, for any
        H, W >= 5; output pixel (i, j) is the prediction for input pixel (i + 2, j + 2).
    """
    inputs = keras.Input((None, None, bands), name="image")

    def conv(x, n, size, name):
        return keras.layers.Conv2D(n, size, strides=1, padding="valid", name=name)(x)

    def bn_tanh(x, i):
        x = keras.layers.BatchNormalization(momentum=0.99, epsilon=1e-3, name=f"bn{i}")(x)
        return keras.layers.Activation("tanh", name=f"tanh{i}")(x)

    x = conv(inputs, 128, 2, "conv1")
    x = bn_tanh(conv(x, 128, 2, "conv2"), 1)
    x = conv(x, 512, 2, "conv3")
    x = bn_tanh(conv(x, 512, 2, "conv4"), 2)
    x = bn_tanh(conv(x, 128, 1, "dense1"), 3)
    x = conv(x, num_classes, 1, "dense2")
    x = keras.layers.Activation(final_activation or "linear", dtype="float32",
                                name="probabilities" if final_activation else "logits")(x)
    return keras.Model(inputs=inputs, outputs=x, name="GHS-S2Net-conv")


def to_convolutional(model: keras.Model, *, final_activation: str | None = "sigmoid") -> keras.Model:
    """Copies a patch-by-patch GHS-S2Net (``build_ghs_s2net``, any weights) into its convolutional form.

    Args:
        model: a GHS-S2Net built by ``build_ghs_s2net`` (5x5 window input), e.g. with weights
            loaded from a published Keras-2 HDF5 file by ``pretrained.load_into``.
        final_activation: as ``build_ghs_s2net_conv`` (``"sigmoid"`` reproduces the published
            models' probabilities).

    Returns:
        The ``build_ghs_s2net_conv`` model holding the same weights (dense kernels reshaped to 1x1).

    Raises:
        ValueError: ``model`` lacks one of ``WEIGHTED_LAYERS`` or its shapes do not fit.
    """
    try:
        src = {name: model.get_layer(name) for name in WEIGHTED_LAYERS}
    except ValueError as e:
        raise ValueError(f"{model.name!r} is not a GHS-S2Net ({e})") from None
    first = src["conv1"].get_weights()[0]
    conv = build_ghs_s2net_conv(src["dense2"].get_weights()[0].shape[-1], final_activation=final_activation,
                                bands=first.shape[2])
    for name, layer in src.items():
        weights = layer.get_weights()
        if name.startswith("dense"):
            weights = [weights[0].reshape(1, 1, *weights[0].shape), weights[1]]
        target = conv.get_layer(name)
        shapes = [tuple(w.shape) for w in target.get_weights()]
        if shapes != [tuple(np.shape(w)) for w in weights]:
            raise ValueError(f"{model.name!r}: layer {name} has shapes {[np.shape(w) for w in weights]}, "
                             f"the convolutional form needs {shapes}")
        target.set_weights(weights)
    return conv
