"""Transfer learning on RGB tiles: a keras.applications backbone + Dense 512 ReLU + class logits.

The Sentinel2GlobalLULC set-up (Benhammou et al. 2022): an ImageNet backbone without its top,
global average pooling, frozen, then Dense 512 ReLU and a softmax layer (here: the logits, the loss
applies the softmax). ``unfreeze=True`` fine-tunes the backbone too. Backbones:

==================  =====================================  ====================================
name                keras.applications                     preprocessing of RGB 0..255 input
==================  =====================================  ====================================
InceptionV3         ``InceptionV3`` (as upstream)          x / 127.5 - 1
ResNet50            ``ResNet50``                           RGB -> BGR, minus the ImageNet means
DenseNet121         ``DenseNet121``                        x / 255, minus mean, over std (RGB)
EfficientNetV2B0    ``EfficientNetV2B0``                   inside the model (its own rescaling)
==================  =====================================  ====================================

The model takes RGB pixels 0..255 (train with ``--normalize none``) and applies its backbone's own
preprocessing as its first layer (``BackbonePreprocess``), so channel order is handled in one
place: upstream fed BGR images (OpenCV) to an RGB backbone by mistake; here the input is RGB and
only ResNet50, whose ImageNet weights expect BGR, swaps the channels, as
``keras.applications.resnet50.preprocess_input`` does.

Weights: ``backbone_weights=None`` (random init, the default), ``"imagenet"`` (read from the Keras
cache ``~/.keras/models/`` only: nothing is downloaded; a missing file is a clear error) or a path
to a ``.h5``/``.weights.h5`` file of the backbone without top.
"""
from __future__ import annotations

import os
from collections.abc import Mapping

import keras
import numpy as np

from models import common
from prep.datasets.spec import SINGLE_LABEL

# name -> (keras.applications constructor, preprocessing mode, smallest input side, ImageNet no-top file)
BACKBONES = {
    "InceptionV3": ("InceptionV3", "inception", 75, "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    "ResNet50": ("ResNet50", "caffe", 32, "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    "DenseNet121": ("DenseNet121", "torch", 32, "densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    "EfficientNetV2B0": ("EfficientNetV2B0", "none", 32, "efficientnetv2-b0_notop.h5"),
}
DEFAULT_INPUT_SPEC = {"image": (224, 224, 3)}
HIDDEN = 512
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
_TORCH_MEAN = (0.485, 0.456, 0.406)
_TORCH_STD = (0.229, 0.224, 0.225)


@keras.saving.register_keras_serializable(package="eorecords")
class BackbonePreprocess(keras.layers.Layer):
    """A backbone's ImageNet preprocessing of RGB 0..255 input, as a layer (saved with the model).

    Modes: "inception" (x/127.5 - 1), "caffe" (RGB -> BGR then minus the BGR means), "torch"
    (x/255, minus mean, over std, RGB), "none" (identity). Input and output [B, H, W, 3] float.
    """

    def __init__(self, mode: str, **kwargs):
        super().__init__(**kwargs)
        if mode not in ("inception", "caffe", "torch", "none"):
            raise ValueError(f"unknown preprocessing mode {mode!r}")
        self.mode = mode

    def call(self, x: keras.KerasTensor) -> keras.KerasTensor:
        """Preprocess ``x`` (RGB 0..255, [B, H, W, 3])."""
        if self.mode == "inception":
            return x / 127.5 - 1.0
        if self.mode == "caffe":
            return x[..., ::-1] - np.array(_CAFFE_MEAN_BGR, np.float32)
        if self.mode == "torch":
            return (x / 255.0 - np.array(_TORCH_MEAN, np.float32)) / np.array(_TORCH_STD, np.float32)
        return x

    def get_config(self) -> dict:
        """The layer's config (``mode``)."""
        return {**super().get_config(), "mode": self.mode}


def imagenet_weights_path(backbone: str) -> str:
    """The Keras cache path of ``backbone``'s ImageNet no-top weights (``$KERAS_HOME`` or ``~/.keras``/models).

    Raises:
      KeyError: unknown backbone.
    """
    base = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return os.path.join(base, "models", BACKBONES[backbone][3])


def build_transfer(input_spec: Mapping[str, tuple], num_classes: int, task: str = SINGLE_LABEL, *,
                   backbone: str, backbone_weights: str | None = None, unfreeze: bool = False,
                   hidden: int = HIDDEN, dropout: float = 0.0, model_name: str | None = None) -> keras.Model:
    """Builds backbone + global average pool + Dense ``hidden`` ReLU + ``num_classes`` logits.

    Args:
      input_spec: one input ``{name: (H, W, 3)}`` of RGB 0..255 pixels; H, W at least the backbone's minimum
        (75 for InceptionV3, 32 otherwise); 224 as upstream.
      num_classes: number of logits.
      task: "single_label" (softmax in the loss, as upstream) or "multi_label".
      backbone: a key of ``BACKBONES``.
      backbone_weights: None (random init), "imagenet" (from the Keras cache, never downloaded) or a file path.
      unfreeze: train the backbone too (fine-tuning); by default it is frozen and runs in inference mode.
      hidden: width of the ReLU layer (512 upstream).
      dropout: dropout before the logits (0 upstream).
      model_name: the model's name (default ``TL-<backbone>``).

    Returns:
      The functional model, uncompiled; output float32 logits [B, num_classes].

    Raises:
      KeyError: unknown backbone.
      ValueError: not 3 channels, or inputs smaller than the backbone's minimum.
      FileNotFoundError: ``"imagenet"`` weights missing from the Keras cache, or a missing weights file.
    """
    common.check_task(task)
    ctor_name, mode, min_size, _ = BACKBONES[backbone]
    inputs, x = common.single_input(input_spec, f"TL-{backbone}", min_size=min_size)
    h, w, c = x.shape[1:]
    if c != 3:
        raise ValueError(f"TL-{backbone} takes RGB input (3 channels), got {c}; use --bands rgb")
    ctor = getattr(keras.applications, ctor_name)
    extra = {"include_preprocessing": True} if ctor_name.startswith("EfficientNet") else {}
    base = ctor(include_top=False, weights=None, input_shape=(h, w, 3), pooling="avg", **extra)
    if backbone_weights is not None:
        path = imagenet_weights_path(backbone) if backbone_weights == "imagenet" else os.fspath(backbone_weights)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: no such weights file for {backbone} (nothing is downloaded; "
                                    f"copy the keras.applications ImageNet no-top file there)")
        base.load_weights(path)
    base.trainable = bool(unfreeze)
    y = BackbonePreprocess(mode, name="preprocess")(x)
    y = base(y, training=None if unfreeze else False)
    y = keras.layers.Dense(hidden, activation="relu", name="hidden")(y)
    if dropout:
        y = keras.layers.Dropout(dropout, name="dropout")(y)
    y = keras.layers.Dense(num_classes, name="predictions")(y)
    return common.finish(inputs, y, model_name or f"TL-{backbone}")
