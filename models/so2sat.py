"""So2Sat LCZ42 baselines for 32x32 patches.

Sen2LCZ-Net (Qiu et al., "Multi-level feature fusion-based CNN for local climate zone
classification from Sentinel-2 images: benchmark results on the So2Sat LCZ42 dataset",
IEEE JSTARS 2020; the published baseline is
``sen2LCZ_drop`` with depth 17, dropout 0.2, fusion on, 16 base filters):

* four stages at 32, 16, 8 and 4 pixels with ``(depth - 1) // 4`` conv blocks each
  (conv 3x3 SAME, He-normal, + BN + ReLU), filters 16, 32, 64, 128;
* after stages 0-2, "pooling" = concat(2x2 max pool, 2x2 average pool); dropout after
  the stage-1 and stage-2 poolings;
* a classification head (global average pool -> dense) after each of the three
  poolings and after the last stage; upstream averages the four heads' softmax
  outputs. Here the heads give logits and the ``FusionLogits`` layer returns
  log(mean of the heads' softmax) -- logits whose softmax *is* the upstream averaged
  probability -- for single-label tasks, or logit(mean of sigmoids) for multi-label.
  With ``fusion=False`` only the last head is used.

Layer names: ``stage{s}.conv{i}``, ``stage{s}.bn{i}``, ``stage{s}.maxpool`` /
``.avgpool`` / ``.merge`` / ``.dropout``, heads ``head_32``, ``head_16``, ``head_8``,
``head_4`` (dense, weights kernel/bias). Upstream Keras-2 weights (created in the order
stage0 convs/BNs, head_32, stage1..., head_16, ..., head_4) map in that order.

So2Sat-ResNet{11,20,29,56}: the bottleneck pre-activation ResNet v2 of the same
benchmark (CIFAR style: a 16-filter conv stem, three stages of (depth-2)/9 units with
filters 64, 128, 256 and stride 2 at the start of stages 2 and 3, conv 1x1 projection
shortcut on each stage's first unit, final BN-ReLU, global average pool, dense
logits; He-normal kernels with an L2 penalty of 1e-4 as upstream).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import keras
from keras import ops

from models import common
from prep.datasets.spec import SINGLE_LABEL


@keras.saving.register_keras_serializable(package="eorecords")
class FusionLogits(keras.layers.Layer):
    """Averages the probabilities of several logits tensors and returns logits again.

    mode="softmax": log(mean_i softmax(l_i)) (softmax of the result = the mean).
    mode="sigmoid": logit(mean_i sigmoid(l_i)), elementwise, clipped away from 0 and 1.
    """

    def __init__(self, mode: str = "softmax", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if mode not in ("softmax", "sigmoid"):
            raise ValueError(f"FusionLogits mode must be 'softmax' or 'sigmoid', got {mode!r}")
        self.mode = mode

    def call(self, inputs: Sequence[Any]) -> Any:
        """Fuses the heads' logits.

        Args:
            inputs: K logits tensors of the same shape ``[batch, num_classes]`` (any float dtype).

        Returns:
            float32 ``[batch, num_classes]`` logits whose softmax (or sigmoid) is the mean of the
            K heads' softmax (or sigmoid) probabilities.
        """
        stacked = ops.stack([ops.cast(t, "float32") for t in inputs], axis=0)
        n = float(len(inputs))
        if self.mode == "softmax":
            log_probs = ops.log_softmax(stacked, axis=-1)
            return ops.logsumexp(log_probs, axis=0) - ops.log(n)
        # log(mean sigmoid) - log(mean (1 - sigmoid)), both via log-sum-exp of log-sigmoids.
        log_p = ops.logsumexp(ops.log_sigmoid(stacked), axis=0)
        log_q = ops.logsumexp(ops.log_sigmoid(-stacked), axis=0)
        return log_p - log_q

    def compute_output_shape(self, input_shape: Sequence[tuple]) -> tuple:
        """Returns the shape of the first input (all K inputs share it)."""
        return tuple(input_shape[0])

    def get_config(self) -> dict[str, Any]:
        """Returns the layer config, with ``mode``, for ``.keras`` serialisation."""
        return {**super().get_config(), "mode": self.mode}


def build_sen2lcz(input_spec: Mapping[str, tuple], num_classes: int, task: str = SINGLE_LABEL, *,
                  depth: int = 17, filters: int = 16, dropout: float = 0.2, fusion: bool = True,
                  batch_norm: bool = True) -> keras.Model:
    """Builds Sen2LCZ-Net (multi-level feature fusion CNN; see the module docstring).

    Source: Qiu et al., IEEE JSTARS 2020 (the So2Sat LCZ42 ``sen2LCZ_drop`` baseline: depth 17,
    dropout 0.2, fusion on, 16 base filters; published test OA 0.6937, kappa 0.6644 on 10 Sentinel-2
    bands, Zhu et al., IEEE GRSM 2020).

    Args:
        input_spec: one input ``{name: (H, W, C)}``, at least 8x8 (upstream 32x32x10, Sentinel-2
            B02 B03 B04 B05 B06 B07 B08 B8A B11 B12 reflectance).
        num_classes: number of logits (17 LCZ classes).
        task: "single_label" fuses the heads by their softmax, "multi_label" by their sigmoids.
        depth: 4k+1 conv layers in all, k = conv blocks per stage (17 upstream).
        filters: filters of the first stage, doubled per stage (16 upstream).
        dropout: rate of the dropout after the stage-1 and stage-2 poolings.
        fusion: average the four heads (True) or use the last head only (False).
        batch_norm: batch norm after every conv.

    Returns:
        The functional model, ``[batch, H, W, C]`` -> ``[batch, num_classes]`` float32 logits.

    Raises:
        ValueError: depth not 4k+1 with k >= 1, more than one input, or inputs under 8x8.
    """
    if depth < 5 or (depth - 1) % 4:
        raise ValueError(f"Sen2LCZ-Net depth must be 4k+1 with k >= 1, got {depth}")
    inputs, x = common.single_input(input_spec, "Sen2LCZ-Net", min_size=8)
    per_stage = (depth - 1) // 4
    heads = []

    def stage(x, s, dim):
        for i in range(per_stage):
            x = keras.layers.Conv2D(dim, 3, padding="same", kernel_initializer="he_normal",
                                    name=f"stage{s}.conv{i}")(x)
            if batch_norm:
                x = keras.layers.BatchNormalization(name=f"stage{s}.bn{i}")(x)
            x = keras.layers.ReLU(name=f"stage{s}.relu{i}")(x)
        return x

    def head(x, name):
        x = keras.layers.GlobalAveragePooling2D(name=f"{name}.pool")(x)
        return keras.layers.Dense(num_classes, kernel_initializer="he_normal", name=name)(x)

    size = x.shape[1] or 32
    dim = filters
    for s in range(3):
        x = stage(x, s, dim)
        mx = keras.layers.MaxPooling2D(2, name=f"stage{s}.maxpool")(x)
        av = keras.layers.AveragePooling2D(2, name=f"stage{s}.avgpool")(x)
        x = keras.layers.Concatenate(name=f"stage{s}.merge")([mx, av])
        if s > 0:
            x = keras.layers.Dropout(dropout, name=f"stage{s}.dropout")(x)
        if fusion:
            heads.append(head(x, f"head_{size >> s}"))
        dim *= 2
    x = stage(x, 3, dim)
    last = head(x, f"head_{size >> 3}")
    if fusion:
        mode = "softmax" if task == SINGLE_LABEL else "sigmoid"
        out = FusionLogits(mode, dtype="float32", name="fusion")([last] + heads)
    else:
        out = last
    return common.finish(inputs, out, "Sen2LCZ-Net")


def build_so2sat_resnet(input_spec: Mapping[str, tuple], num_classes: int, task: str = SINGLE_LABEL, *,
                        depth: int = 20, filters: int = 16, weight_decay: float = 1e-4) -> keras.Model:
    """Builds the So2Sat bottleneck pre-activation ResNet v2 (CIFAR style; see the module docstring).

    Source: the So2Sat LCZ42 benchmark code (Zhu et al., IEEE GRSM 2020), after He et al.,
    "Identity Mappings in Deep Residual Networks" (ECCV 2016).

    Args:
        input_spec: one input ``{name: (H, W, C)}``, at least 4x4 (upstream 32x32x10).
        num_classes: number of logits (17 LCZ classes).
        task: unused (logits either way); part of the builder signature.
        depth: 9n+2 layers (11, 20, 29, 56...), n = units per stage.
        filters: filters of the stem conv (16 upstream).
        weight_decay: L2 penalty on conv kernels (1e-4 upstream; 0 = none).

    Returns:
        The functional model, ``[batch, H, W, C]`` -> ``[batch, num_classes]`` float32 logits.

    Raises:
        ValueError: depth not 9n+2 with n >= 1, more than one input, or inputs under 4x4.
    """
    if depth < 11 or (depth - 2) % 9:
        raise ValueError(f"So2Sat ResNet depth must be 9n+2 (11, 20, 29, 56...), got {depth}")
    inputs, x = common.single_input(input_spec, f"So2Sat-ResNet{depth}", min_size=4)
    reg = keras.regularizers.L2(weight_decay) if weight_decay else None
    n_units = (depth - 2) // 9
    count = [0]

    def layer(x, n, kernel=3, strides=1, activation=True, bn=True, conv_first=True):
        count[0] += 1
        k = count[0]
        conv = keras.layers.Conv2D(n, kernel, strides=strides, padding="same",
                                   kernel_initializer="he_normal", kernel_regularizer=reg,
                                   name=f"conv{k}")
        if conv_first:
            x = conv(x)
        if bn:
            x = keras.layers.BatchNormalization(name=f"bn{k}")(x)
        if activation:
            x = keras.layers.ReLU(name=f"relu{k}")(x)
        if not conv_first:
            x = conv(x)
        return x

    x = layer(x, filters)
    f_in = filters
    for s in range(3):
        for u in range(n_units):
            act = bn = True
            strides = 1
            if s == 0:
                f_out = f_in * 4
                if u == 0:
                    act = bn = False
            else:
                f_out = f_in * 2
                if u == 0:
                    strides = 2
            y = layer(x, f_in, 1, strides, act, bn, conv_first=False)
            y = layer(y, f_in, conv_first=False)
            y = layer(y, f_out, 1, conv_first=False)
            if u == 0:
                x = layer(x, f_out, 1, strides, activation=False, bn=False)
            x = keras.layers.Add(name=f"stage{s}.unit{u}.add")([x, y])
        f_in = f_out
    x = keras.layers.BatchNormalization(name="final_bn")(x)
    x = keras.layers.ReLU(name="final_relu")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dense(num_classes, kernel_initializer="he_normal", name="predictions")(x)
    return common.finish(inputs, x, f"So2Sat-ResNet{depth}")
