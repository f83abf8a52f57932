"""VGG16/19 and ResNet-50/101/152 v1 as TF-slim builds them, loading the BigEarthNet TF1 checkpoints.

The layers match TF-slim's one to one, so the published BigEarthNet-S2 19-class TF1 checkpoints
(RSiM, TU Berlin) load one variable per weight.

The BigEarthNet models call slim's ``vgg_16``/``vgg_19`` with ``fc_conv_padding="SAME"``
and ``global_pool=True``, and ``resnet_v1_50/101/152`` with ``global_pool=True``, on
120x120x10 inputs (the first conv simply takes as many bands as the input has).

VGG (slim ``vgg_arg_scope``)
    conv 3x3 SAME + bias + ReLU (no batch norm), 2x2/2 VALID max pools, then fc6 =
    conv 7x7 SAME (4096) + ReLU, dropout6 (0.5), fc7 = conv 1x1 (4096) + ReLU,
    global average pool, dropout7 (0.5), fc8 = conv 1x1 (num_classes) logits,
    squeezed to [batch, num_classes]. Glorot-uniform kernels, zero biases.

ResNet v1 (slim ``resnet_arg_scope``)
    conv1 = 7x7/2 with explicit symmetric padding (3, 3) then VALID; pool1 = 3x3/2
    SAME max pool; four blocks of bottleneck_v1 units (1x1 -> 3x3 -> 1x1, x4 expansion)
    where -- unlike keras.applications -- the stride of a block sits in its *last*
    unit, in the 3x3 conv (conv2), done as explicit padding (1, 1) + VALID conv;
    block strides 2, 2, 2, 1; the shortcut is a 1x1 projection (+BN, no ReLU) when
    the depth changes, else a 1x1 max-pool subsample (identity at stride 1);
    output = ReLU(shortcut + residual). Every conv but the logits has no bias and is
    followed by batch norm (decay 0.997 -> momentum 0.997, epsilon 1e-5, with scale);
    global average pool, logits = 1x1 conv with bias, squeezed. He-normal kernels.
    Units per block: 50: (3, 4, 6, 3); 101: (3, 4, 23, 3); 152: (3, 8, 36, 3).

Layer naming (mechanical)
-------------------------
A slim variable ``SCOPE/weights`` or ``SCOPE/biases`` belongs to the Keras layer
named ``SCOPE`` with "/" replaced by "." (weight ``kernel`` / ``bias``); a slim
``SCOPE/BatchNorm/{gamma,beta,moving_mean,moving_variance}`` belongs to the layer
named ``SCOPE.BatchNorm`` (same weight names). In one line:
layer = ".".join(var.split("/")[:-1]); weight = {"weights": "kernel", "biases":
"bias"}.get(leaf, leaf). Examples::

    vgg_16/conv1/conv1_1/weights           -> "vgg_16.conv1.conv1_1" .kernel
    vgg_19/fc6/biases                      -> "vgg_19.fc6" .bias
    vgg_16/fc8/weights                     -> "vgg_16.fc8" .kernel   (1x1 conv, shape (1, 1, 4096, n))
    resnet_v1_50/conv1/weights             -> "resnet_v1_50.conv1" .kernel
    resnet_v1_50/conv1/BatchNorm/gamma     -> "resnet_v1_50.conv1.BatchNorm" .gamma
    resnet_v1_101/block3/unit_23/bottleneck_v1/conv2/weights
                                           -> "resnet_v1_101.block3.unit_23.bottleneck_v1.conv2" .kernel
    resnet_v1_152/block1/unit_1/bottleneck_v1/shortcut/BatchNorm/moving_variance
                                           -> "resnet_v1_152.block1.unit_1.bottleneck_v1.shortcut.BatchNorm" .moving_variance
    resnet_v1_50/logits/biases             -> "resnet_v1_50.logits" .bias

All kernels have slim's shapes (HWIO), so no transposes. Weightless layers carry the
scope plus a suffix (``.pad``, ``.relu``, ``.add``, ``.pool``...). The model's root scope
(``vgg_16``, ``resnet_v1_50``...) can be changed with ``scope=`` if a checkpoint uses
another one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import keras

from models import common
from prep.datasets.spec import MULTI_LABEL

VGG_CONVS = {
    "vgg_16": (2, 2, 3, 3, 3),
    "vgg_19": (2, 2, 4, 4, 4),
}
VGG_FILTERS = (64, 128, 256, 512, 512)

RESNET_UNITS = {
    "resnet_v1_50": (3, 4, 6, 3),
    "resnet_v1_101": (3, 4, 23, 3),
    "resnet_v1_152": (3, 8, 36, 3),
}
RESNET_BASE_DEPTHS = (64, 128, 256, 512)
RESNET_BLOCK_STRIDES = (2, 2, 2, 1)
BN_MOMENTUM = 0.997
BN_EPSILON = 1e-5


# ----------------------------------------------------------------------------- VGG

def build_vgg(input_spec: Mapping[str, tuple], num_classes: int, task: str = MULTI_LABEL, *,
              variant: str = "vgg_16", fc_units: int = 4096, dropout: float = 0.5,
              scope: str | None = None) -> keras.Model:
    """Builds TF-slim ``vgg_16``/``vgg_19`` with SAME fc convs and global pooling.

    Source: Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale Image
    Recognition" (ICLR 2015), as TF-slim's ``nets/vgg.py`` builds it and the BigEarthNet-S2
    19-class TF1 models call it (``fc_conv_padding="SAME"``, ``global_pool=True``).

    Args:
        input_spec: one input ``{name: (H, W, C)}``, at least 32x32 (upstream 120x120x10).
        num_classes: number of logits.
        task: unused (logits either way); part of the builder signature.
        variant: "vgg_16" or "vgg_19".
        fc_units: width of fc6/fc7 (4096 upstream; smaller values only for quick tests).
        dropout: drop rate of dropout6/dropout7 (slim keep_prob 0.5 -> rate 0.5).
        scope: root of the layer names (default: ``variant``), for checkpoints saved under another.

    Returns:
        The functional model, ``[batch, H, W, C]`` -> ``[batch, num_classes]`` float32 logits.

    Raises:
        ValueError: unknown variant, more than one input, or inputs under 32x32.
    """
    if variant not in VGG_CONVS:
        raise ValueError(f"unknown VGG variant {variant!r}; known: {sorted(VGG_CONVS)}")
    scope = scope or variant
    inputs, x = common.single_input(input_spec, variant, min_size=32)

    def conv(x, filters, kernel, name, activation="relu"):
        return keras.layers.Conv2D(filters, kernel, padding="same", activation=activation,
                                   kernel_initializer="glorot_uniform", bias_initializer="zeros",
                                   name=name)(x)

    for i, (repeats, filters) in enumerate(zip(VGG_CONVS[variant], VGG_FILTERS), start=1):
        for j in range(1, repeats + 1):
            x = conv(x, filters, 3, f"{scope}.conv{i}.conv{i}_{j}")
        x = keras.layers.MaxPooling2D(2, strides=2, padding="valid", name=f"{scope}.pool{i}")(x)
    x = conv(x, fc_units, 7, f"{scope}.fc6")
    x = keras.layers.Dropout(dropout, name=f"{scope}.dropout6")(x)
    x = conv(x, fc_units, 1, f"{scope}.fc7")
    x = keras.layers.GlobalAveragePooling2D(keepdims=True, name=f"{scope}.global_pool")(x)
    x = keras.layers.Dropout(dropout, name=f"{scope}.dropout7")(x)
    x = conv(x, num_classes, 1, f"{scope}.fc8", activation=None)
    x = keras.layers.Flatten(name=f"{scope}.fc8.squeezed")(x)
    return common.finish(inputs, x, "VGG16" if variant == "vgg_16" else "VGG19")


# -------------------------------------------------------------------------- ResNet

def _conv_bn(x, filters, kernel, stride, scope, *, relu=True):
    """Applies slim conv2d (no bias) + BatchNorm (+ ReLU).

    Stride > 1 uses slim's conv2d_same (explicit symmetric padding, then VALID).
    """
    if stride == 1:
        padding = "same"
    else:
        pad_total = kernel - 1
        pad_beg = pad_total // 2
        x = keras.layers.ZeroPadding2D(((pad_beg, pad_total - pad_beg),) * 2, name=f"{scope}.pad")(x)
        padding = "valid"
    x = keras.layers.Conv2D(filters, kernel, strides=stride, padding=padding, use_bias=False,
                            kernel_initializer="he_normal", name=scope)(x)
    x = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON,
                                        name=f"{scope}.BatchNorm")(x)
    if relu:
        x = keras.layers.ReLU(name=f"{scope}.relu")(x)
    return x


def bottleneck_v1(x: keras.KerasTensor, depth: int, depth_bottleneck: int, stride: int,
                  scope: str) -> keras.KerasTensor:
    """Applies one TF-slim ``bottleneck_v1`` unit (1x1 -> 3x3 -> 1x1, stride in the 3x3 conv).

    Args:
        x: ``[batch, H, W, C]`` feature map.
        depth: output channels (4 x ``depth_bottleneck``).
        depth_bottleneck: channels of the 1x1 and 3x3 convs.
        stride: stride of the unit (2 in the last unit of blocks 1-3, else 1).
        scope: the unit's slim scope with "." for "/", e.g.
            ``"resnet_v1_50.block1.unit_1.bottleneck_v1"``.

    Returns:
        ``ReLU(shortcut + residual)``, ``[batch, ceil(H / stride), ceil(W / stride), depth]``.
    """
    depth_in = x.shape[-1]
    if depth == depth_in:
        if stride == 1:
            shortcut = x
        else:
            shortcut = keras.layers.MaxPooling2D(1, strides=stride, padding="same",
                                                 name=f"{scope}.shortcut")(x)
    else:
        # slim: conv2d (not conv2d_same) with stride, i.e. a strided SAME 1x1 conv.
        shortcut = keras.layers.Conv2D(depth, 1, strides=stride, padding="same", use_bias=False,
                                       kernel_initializer="he_normal", name=f"{scope}.shortcut")(x)
        shortcut = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON,
                                                   name=f"{scope}.shortcut.BatchNorm")(shortcut)
    r = _conv_bn(x, depth_bottleneck, 1, 1, f"{scope}.conv1")
    r = _conv_bn(r, depth_bottleneck, 3, stride, f"{scope}.conv2")
    r = _conv_bn(r, depth, 1, 1, f"{scope}.conv3", relu=False)
    x = keras.layers.Add(name=f"{scope}.add")([shortcut, r])
    return keras.layers.ReLU(name=f"{scope}.relu")(x)


def build_resnet_v1(input_spec: Mapping[str, tuple], num_classes: int, task: str = MULTI_LABEL, *,
                    variant: str = "resnet_v1_50", scope: str | None = None,
                    units: Sequence[int] | None = None) -> keras.Model:
    """Builds TF-slim ``resnet_v1_{50,101,152}`` with global pooling and 1x1-conv logits.

    Source: He et al., "Deep Residual Learning for Image Recognition" (CVPR 2016), as TF-slim's
    ``nets/resnet_v1.py`` builds it (stride in the last unit of a block) and the BigEarthNet-S2
    19-class TF1 models call it (``global_pool=True``).

    Args:
        input_spec: one input ``{name: (H, W, C)}``, at least 32x32 (upstream 120x120x10).
        num_classes: number of logits.
        task: unused (logits either way); part of the builder signature.
        variant: "resnet_v1_50", "resnet_v1_101" or "resnet_v1_152".
        scope: root of the layer names (default: ``variant``), for checkpoints saved under another.
        units: override the units per block (4 ints), only for quick tests.

    Returns:
        The functional model, ``[batch, H, W, C]`` -> ``[batch, num_classes]`` float32 logits.

    Raises:
        ValueError: unknown variant, ``units`` not 4 positive ints, more than one input, or inputs
            under 32x32.
    """
    if variant not in RESNET_UNITS:
        raise ValueError(f"unknown ResNet variant {variant!r}; known: {sorted(RESNET_UNITS)}")
    scope = scope or variant
    units = tuple(units or RESNET_UNITS[variant])
    if len(units) != 4 or any(u < 1 for u in units):
        raise ValueError(f"units must be 4 positive ints, got {units}")
    inputs, x = common.single_input(input_spec, variant, min_size=32)
    x = _conv_bn(x, 64, 7, 2, f"{scope}.conv1")
    x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name=f"{scope}.pool1")(x)
    for b, (n_units, base, stride) in enumerate(zip(units, RESNET_BASE_DEPTHS, RESNET_BLOCK_STRIDES),
                                                 start=1):
        for u in range(1, n_units + 1):
            x = bottleneck_v1(x, base * 4, base, stride if u == n_units else 1,
                              f"{scope}.block{b}.unit_{u}.bottleneck_v1")
    x = keras.layers.GlobalAveragePooling2D(keepdims=True, name=f"{scope}.pool5")(x)
    x = keras.layers.Conv2D(num_classes, 1, use_bias=True, kernel_initializer="he_normal",
                            name=f"{scope}.logits")(x)
    x = keras.layers.Flatten(name=f"{scope}.SpatialSqueeze")(x)
    return common.finish(inputs, x, {"resnet_v1_50": "ResNet50", "resnet_v1_101": "ResNet101",
                                     "resnet_v1_152": "ResNet152"}[variant])
