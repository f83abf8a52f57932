"""Standard architectures from keras.applications for any number of input bands, plus DenseNet-161.

All are randomly initialised (``weights=None``); keras.applications lacks DenseNet-161.

* ``DenseNet121/169/201``: ``keras.applications.DenseNet*`` with the input's band count,
  global average pooling and a dense logits layer (SEN12MS-style, FACTS.md §3).
* ``DenseNet161``: growth rate 48, blocks (6, 12, 36, 24), 96 stem filters, built here
  from the same pieces keras.applications uses (BN epsilon 1.001e-5, bottleneck 1x1
  conv of 4 x growth, transition halving channels + 2x2 average pool); layer names
  follow keras.applications' scheme (``conv2_block1_1_conv``...).
* ``keras:<Name>``: any constructor in ``keras.applications`` (``keras:ResNet50``,
  ``keras:ResNet101V2``, ``keras:MobileNetV3Small``...). These are *not* the TF-slim
  ResNets of models/slim.py: keras.applications ResNet v1 strides in the first unit
  of a stage, slim in the last, so their checkpoints are not interchangeable.
  Families whose first layers assume RGB (built-in ImageNet normalisation:
  EfficientNet, ConvNeXt, RegNet...) get a learned 1x1 conv stem mapping the bands to
  3 channels, named ``stem``; ``stem=True/False`` forces the choice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import keras

from models import common
from prep.datasets.spec import MULTI_LABEL

# keras.applications families that accept any channel count when weights=None.
ANY_BANDS_FAMILIES = ("ResNet", "DenseNet", "VGG", "MobileNet", "Xception", "Inception", "NASNet")

DENSENET_BLOCKS = {
    "DenseNet121": ((6, 12, 24, 16), 32, 64),
    "DenseNet161": ((6, 12, 36, 24), 48, 96),
    "DenseNet169": ((6, 12, 32, 32), 32, 64),
    "DenseNet201": ((6, 12, 48, 32), 32, 64),
}
_BN_EPS = 1.001e-5


def application_names() -> list[str]:
    """Lists the constructor names in keras.applications (``ResNet50``, ``DenseNet121``...), sorted."""
    return sorted(n for n in dir(keras.applications)
                  if n[:1].isupper() and callable(getattr(keras.applications, n)))


def _head(features, num_classes, name="predictions"):
    return keras.layers.Dense(num_classes, name=name)(features)


def build_application(input_spec: Mapping[str, tuple], num_classes: int, task: str = MULTI_LABEL, *,
                      application: str, stem: bool | str = "auto", dropout: float = 0.0,
                      model_name: str | None = None) -> keras.Model:
    """Builds a ``keras.applications.<application>`` body with a new head for any band count.

    The body has no top and random initial weights; then global average pooling, optional
    dropout and a dense layer of ``num_classes`` logits.

    Args:
        input_spec: one input ``{name: (H, W, C)}``, H and W at least 32 pixels.
        num_classes: number of logits.
        task: unused (logits either way); part of the builder signature.
        application: a constructor name in ``keras.applications``, e.g. ``"ResNet50V2"``.
        stem: add a learned 1x1 conv named ``stem`` mapping the C bands to 3 channels: True,
            False, or "auto" (when C != 3 and the family is not in ``ANY_BANDS_FAMILIES``).
        dropout: dropout rate before the logits layer (0 = none).
        model_name: the model's name (default: ``application``).

    Returns:
        The functional model, ``[batch, H, W, C]`` -> ``[batch, num_classes]`` float32 logits.

    Raises:
        KeyError: keras.applications has no constructor ``application``.
        ValueError: more than one input, or inputs smaller than 32x32.
    """
    ctor = getattr(keras.applications, application, None)
    if ctor is None or not callable(ctor):
        raise KeyError(f"keras.applications has no model {application!r}; "
                       f"known: {', '.join(application_names())}")
    inputs, x = common.single_input(input_spec, application, min_size=32)
    channels = x.shape[-1]
    if stem == "auto":
        stem = channels != 3 and not application.startswith(ANY_BANDS_FAMILIES)
    if stem:
        x = keras.layers.Conv2D(3, 1, name="stem")(x)
    base = ctor(include_top=False, weights=None, input_tensor=x, pooling="avg")
    features = base.output
    if dropout:
        features = keras.layers.Dropout(dropout, name="head_dropout")(features)
    return common.finish(inputs, _head(features, num_classes), model_name or application)


# ------------------------------------------------------------------------ DenseNet

def _dense_layer(x, growth, name):
    y = keras.layers.BatchNormalization(epsilon=_BN_EPS, name=f"{name}_0_bn")(x)
    y = keras.layers.Activation("relu", name=f"{name}_0_relu")(y)
    y = keras.layers.Conv2D(4 * growth, 1, use_bias=False, name=f"{name}_1_conv")(y)
    y = keras.layers.BatchNormalization(epsilon=_BN_EPS, name=f"{name}_1_bn")(y)
    y = keras.layers.Activation("relu", name=f"{name}_1_relu")(y)
    y = keras.layers.Conv2D(growth, 3, padding="same", use_bias=False, name=f"{name}_2_conv")(y)
    return keras.layers.Concatenate(name=f"{name}_concat")([x, y])


def _transition(x, reduction, name):
    x = keras.layers.BatchNormalization(epsilon=_BN_EPS, name=f"{name}_bn")(x)
    x = keras.layers.Activation("relu", name=f"{name}_relu")(x)
    x = keras.layers.Conv2D(int(x.shape[-1] * reduction), 1, use_bias=False, name=f"{name}_conv")(x)
    return keras.layers.AveragePooling2D(2, strides=2, name=f"{name}_pool")(x)


def densenet_features(x: keras.KerasTensor, blocks: Sequence[int], growth: int,
                      stem_filters: int) -> keras.KerasTensor:
    """Applies a DenseNet-BC body to ``x``, ending in global average pooling.

    Source: Huang et al., "Densely Connected Convolutional Networks" (CVPR 2017), with the layer
    names and BN epsilon (1.001e-5) of keras.applications' DenseNet.

    Args:
        x: the image tensor, ``[batch, H, W, C]``.
        blocks: dense layers per dense block, e.g. ``(6, 12, 36, 24)`` for DenseNet-161.
        growth: growth rate k (channels each dense layer adds; 32, or 48 for DenseNet-161).
        stem_filters: filters of the 7x7/2 stem conv (2k: 64, or 96 for DenseNet-161).

    Returns:
        The pooled features, ``[batch, channels]``.
    """
    x = keras.layers.ZeroPadding2D(3, name="zero_padding2d")(x)
    x = keras.layers.Conv2D(stem_filters, 7, strides=2, use_bias=False, name="conv1_conv")(x)
    x = keras.layers.BatchNormalization(epsilon=_BN_EPS, name="conv1_bn")(x)
    x = keras.layers.Activation("relu", name="conv1_relu")(x)
    x = keras.layers.ZeroPadding2D(1, name="zero_padding2d_1")(x)
    x = keras.layers.MaxPooling2D(3, strides=2, name="pool1")(x)
    for i, n in enumerate(blocks, start=2):
        for j in range(1, n + 1):
            x = _dense_layer(x, growth, f"conv{i}_block{j}")
        if i < len(blocks) + 1:
            x = _transition(x, 0.5, f"pool{i}")
    x = keras.layers.BatchNormalization(epsilon=_BN_EPS, name="bn")(x)
    x = keras.layers.Activation("relu", name="relu")(x)
    return keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)


def build_densenet(input_spec: Mapping[str, tuple], num_classes: int, task: str = MULTI_LABEL, *,
                   variant: str = "DenseNet121", dropout: float = 0.0, builder: str = "auto") -> keras.Model:
    """Builds DenseNet121/161/169/201 (DenseNet-BC, random init) with global pooling and a logits layer.

    Source: the SEN12MS scene-classification baselines (Schmitt et al., 2019; upstream code trains
    them from scratch on 2, 3, 10 or 12 bands). Global average pooling replaces upstream's flatten
    into a Linear layer of hard-coded size, which only works at 256x256.

    Args:
        input_spec: one input ``{name: (H, W, C)}``, H and W at least 32 pixels.
        num_classes: number of logits.
        task: unused (logits either way); part of the builder signature.
        variant: a key of ``DENSENET_BLOCKS``.
        dropout: dropout rate before the logits layer (0 = none).
        builder: "keras" (keras.applications, where it exists), "own" (this module's blocks)
            or "auto" (keras.applications unless DenseNet161).

    Returns:
        The functional model, ``[batch, H, W, C]`` -> ``[batch, num_classes]`` float32 logits.

    Raises:
        ValueError: unknown variant or builder, more than one input, or inputs under 32x32.
    """
    if variant not in DENSENET_BLOCKS:
        raise ValueError(f"unknown DenseNet {variant!r}; known: {sorted(DENSENET_BLOCKS)}")
    if builder == "auto":
        builder = "own" if variant == "DenseNet161" else "keras"
    if builder == "keras":
        return build_application(input_spec, num_classes, task, application=variant,
                                 stem=False, dropout=dropout)
    if builder != "own":
        raise ValueError(f"builder must be 'auto', 'keras' or 'own', got {builder!r}")
    blocks, growth, stem_filters = DENSENET_BLOCKS[variant]
    inputs, x = common.single_input(input_spec, variant, min_size=32)
    features = densenet_features(x, blocks, growth, stem_filters)
    if dropout:
        features = keras.layers.Dropout(dropout, name="head_dropout")(features)
    return common.finish(inputs, _head(features, num_classes), variant)
