"""U-Net-style segmentation models: an encoder's feature pyramid, a decoder back to the input grid.

Model: input [B, H, W, C] -> encoder (features at strides 2, 4, 8, 16 and 32) -> decoder: five times
(bilinear x2 upsampling, concatenation with the encoder's features of that stride, two 3x3 conv +
batch norm + ReLU) -> 1x1 conv to ``num_classes`` -> the float32 ``logits`` layer: per-pixel logits
[B, H, W, num_classes] at the input resolution. H and W must be multiples of 32 (the deepest stride),
unless ``pad_to_stride=True``: then a fixed H x W (e.g. BigEarthNet's 120 x 120) is zero-padded on
every side to the next multiple of 32 (128 x 128) before the encoder and the logits are cropped back
to H x W (zero = the band mean after z-score normalisation).

Encoders (``backbone``):

* ``resnet50``: ``keras.applications.ResNet50`` (ResNet v1, randomly initialised) for any band
  count; skips ``conv1_relu`` (stride 2), ``conv2_block3_out`` (4), ``conv3_block4_out`` (8),
  ``conv4_block6_out`` (16), ``conv5_block3_out`` (32).
* ``tiny``: five strided 3x3 conv + BN + ReLU stages of 8, 16, 24, 32, 48 filters (tests, smoke runs).

Source: Ronneberger et al., U-Net (MICCAI 2015); the ResNet encoder as in the usual
"U-Net with a ResNet backbone" set-ups (e.g. segmentation_models).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import keras

from models import common
from prep.datasets.spec import SEGMENTATION

DEFAULT_INPUT_SPEC = {"image": (256, 256, 12)}  # SEN12MS s1s2: 10 S2 land bands + VV, VH
STRIDE = 32
BACKBONES = ("resnet50", "tiny")
RESNET50_SKIPS = ("conv1_relu", "conv2_block3_out", "conv3_block4_out", "conv4_block6_out", "conv5_block3_out")
TINY_FILTERS = (8, 16, 24, 32, 48)


def _conv_bn_relu(x: keras.KerasTensor, filters: int, name: str, strides: int = 1) -> keras.KerasTensor:
    x = keras.layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
    return keras.layers.Activation("relu", name=f"{name}_relu")(x)


def encoder_features(x: keras.KerasTensor, backbone: str) -> list[keras.KerasTensor]:
    """The encoder's feature maps at strides 2, 4, 8, 16 and 32 (shallow to deep).

    Args:
      x: [B, H, W, C] input tensor, H and W multiples of 32 (or None).
      backbone: one of ``BACKBONES``.

    Returns:
      Five tensors, [B, H / 2**k, W / 2**k, F_k] for k = 1..5.

    Raises:
      ValueError: an unknown backbone.
    """
    if backbone == "resnet50":
        net = keras.applications.ResNet50(include_top=False, weights=None, input_tensor=x)
        return [net.get_layer(n).output for n in RESNET50_SKIPS]
    if backbone == "tiny":
        out = []
        for k, f in enumerate(TINY_FILTERS, 1):
            x = _conv_bn_relu(x, f, f"enc{k}", strides=2)
            out.append(x)
        return out
    raise ValueError(f"unknown segmentation backbone {backbone!r}; one of {', '.join(BACKBONES)}")


def build_unet(input_spec: Mapping[str, tuple], num_classes: int, task: str = SEGMENTATION, *,
               backbone: str = "resnet50", decoder_filters: Sequence[int] = (256, 128, 64, 32, 16),
               dropout: float = 0.0, pad_to_stride: bool = False) -> keras.Model:
    """Builds a U-Net: ``backbone`` encoder, five upsampling decoder stages, per-pixel logits.

    Args:
      input_spec: one input ``{name: (H, W, C)}``: any band count C (2, 3, 10, 12, 13 for SEN12MS), H and W
        multiples of 32 pixels (or None: any such size at run time).
      num_classes: C_out, the logits per pixel.
      task: "segmentation" (the only task these models serve).
      backbone: the encoder, one of ``BACKBONES``.
      decoder_filters: the filters of the five decoder stages, deepest first.
      dropout: dropout rate before the 1x1 logits conv (0 = none).
      pad_to_stride: zero-pad a fixed H and W that are not multiples of 32 to the next multiple
        (half on each side, the odd pixel at the bottom/right) and crop the logits back to H x W.

    Returns:
      The functional model: input [B, H, W, C] -> float32 logits [B, H, W, num_classes].

    Raises:
      ValueError: a task other than segmentation, more or fewer than one input, a size that is not a
        multiple of 32 (without ``pad_to_stride``, or a run-time size with it), an unknown backbone,
        or not five decoder filter counts.
    """
    if task != SEGMENTATION:
        raise ValueError(f"the U-Net models predict per-pixel classes: task must be {SEGMENTATION!r}, got {task!r}")
    if len(decoder_filters) != 5:
        raise ValueError(f"decoder_filters needs 5 values (one per stride), got {list(decoder_filters)}")
    name = f"UNet-{backbone}"
    inputs, x = common.single_input(input_spec, name, min_size=STRIDE)
    (input_name, (h, w, _)), = common.normalize_input_spec(input_spec).items()
    pads = []
    for what, v in (("height", h), ("width", w)):
        if v is None:
            if pad_to_stride:
                raise ValueError(f"{name}: pad_to_stride needs a fixed input {what}, got None")
            pads.append((0, 0))
        elif v % STRIDE and not pad_to_stride:
            raise ValueError(f"{name}: input {input_name!r} {what} {v} is not a multiple of {STRIDE} "
                             "(or build with pad_to_stride=True: --model_option pad_to_stride=true)")
        else:
            extra = -v % STRIDE
            pads.append((extra // 2, extra - extra // 2))
    padded = any(sum(p) for p in pads)
    if padded:
        x = keras.layers.ZeroPadding2D(tuple(pads), name="pad_to_stride")(x)
    skips = encoder_features(x, backbone)
    y = skips[-1]
    for k, (skip, f) in enumerate(zip([*reversed(skips[:-1]), None], decoder_filters), 1):
        y = keras.layers.UpSampling2D(2, interpolation="bilinear", name=f"dec{k}_up")(y)
        if skip is not None:
            y = keras.layers.Concatenate(name=f"dec{k}_concat")([y, skip])
        y = _conv_bn_relu(y, int(f), f"dec{k}a")
        y = _conv_bn_relu(y, int(f), f"dec{k}b")
    if dropout:
        y = keras.layers.Dropout(dropout, name="dropout")(y)
    y = keras.layers.Conv2D(num_classes, 1, name="classifier")(y)
    if padded:
        y = keras.layers.Cropping2D(tuple(pads), name="crop_to_input")(y)
    return common.finish(inputs, y, name)
