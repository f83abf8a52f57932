"""Any keras-hub image backbone as a classifier: ``hub:<BackboneClass>`` or ``hub:<preset>``.

* ``hub:ResNetBackbone``, ``hub:EfficientNetBackbone``... (a class in
  ``keras_hub.models``): built from ``backbone_kwargs`` (its constructor arguments;
  ``image_shape`` defaults to the input's shape), randomly initialised, offline.
* ``hub:resnet_50_imagenet``... (a preset): ``keras_hub.models.Backbone.from_preset``
  with ``load_weights=preset_weights`` (needs the preset to be downloadable or cached);
  ``backbone_kwargs`` are passed on as overrides.

Model: input -> [stem] -> backbone -> pooling -> [dropout] -> dense logits
(``predictions``). The stem, a learned 1x1 conv named ``stem``, maps the input's bands
to the channel count the backbone expects; it is added only when the two differ
(``stem="auto"``) or when forced (``stem=True``). Pooling: feature maps [B, H, W, C]
-> global average (or max) pooling; token sequences [B, N, D] -> mean over tokens, or
the first (class) token with ``pooling="cls"``; vectors are used as they are.

keras-hub is imported only when such a model is built.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import keras

from models import common
from prep.datasets.spec import MULTI_LABEL


@keras.saving.register_keras_serializable(package="eorecords")
class FirstToken(keras.layers.Layer):
    """[B, N, D] -> [B, D]: the first (class) token of a sequence."""

    def call(self, inputs: Any) -> Any:
        """Returns ``inputs[:, 0]``: the first token, ``[B, D]``, of a ``[B, N, D]`` tensor."""
        return inputs[:, 0]

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        """Maps ``(B, N, D)`` to ``(B, D)``."""
        return (input_shape[0], input_shape[2])


def _backbone_class(name):
    import keras_hub

    obj = getattr(keras_hub.models, name, None)
    if inspect.isclass(obj) and issubclass(obj, keras_hub.models.Backbone):
        return obj
    return None


def build_hub(input_spec: Mapping[str, tuple], num_classes: int, task: str = MULTI_LABEL, *, backbone: str,
              backbone_kwargs: Mapping[str, Any] | None = None, preset_weights: bool = True,
              stem: bool | str = "auto", pooling: str = "avg", dropout: float = 0.0) -> keras.Model:
    """Builds a classifier on a keras-hub image backbone (``hub:<backbone>``); see the module docstring.

    Args:
        input_spec: one input ``{name: (H, W, C)}``.
        num_classes: number of logits.
        task: unused (logits either way); part of the builder signature.
        backbone: a ``keras_hub.models`` *Backbone class name (random init, offline) or a keras-hub
            preset name (``Backbone.from_preset``, downloaded unless cached).
        backbone_kwargs: constructor arguments of the class, or overrides for the preset;
            ``image_shape`` defaults to the input's ``(H, W, C)`` (C = 3 with ``stem=True``).
        preset_weights: load the preset's pretrained weights (``load_weights`` of ``from_preset``).
        stem: add a learned 1x1 conv named ``stem`` mapping C bands to the backbone's channels:
            True, False, or "auto" (when the two differ).
        pooling: "avg" or "max" for feature maps ``[B, H, W, C]``; "avg" or "cls" (first token)
            for token sequences ``[B, N, D]``; ignored for ``[B, D]`` outputs.
        dropout: dropout rate before the ``predictions`` layer (0 = none).

    Returns:
        The functional model, ``[batch, H, W, C]`` -> ``[batch, num_classes]`` float32 logits.

    Raises:
        TypeError: the backbone class rejects ``backbone_kwargs``.
        ValueError: ``backbone`` is neither a class nor a loadable preset, the backbone has several
            inputs or outputs or an output of rank other than 2-4, ``pooling`` does not fit the
            output, or the spec has more than one input.
        ImportError: keras-hub is not installed.
    """
    import keras_hub

    inputs, x = common.single_input(input_spec, f"hub:{backbone}")
    h, w, c = x.shape[1:]
    kwargs = dict(backbone_kwargs or {})
    cls = _backbone_class(backbone)
    if cls is not None:
        if "image_shape" in inspect.signature(cls.__init__).parameters and "image_shape" not in kwargs:
            kwargs["image_shape"] = (h, w, 3 if stem is True else c)
        try:
            net = cls(**kwargs)
        except TypeError as e:
            raise TypeError(f"hub:{backbone}: give its constructor arguments as backbone_kwargs "
                            f"({e})") from e
    else:
        try:
            net = keras_hub.models.Backbone.from_preset(backbone, load_weights=preset_weights,
                                                        **kwargs)
        except Exception as e:  # keras-hub raises several types for unknown/unreachable presets
            raise ValueError(
                f"hub:{backbone} is neither a keras_hub.models *Backbone class nor a loadable "
                f"keras-hub preset ({type(e).__name__}: {e})") from e
    in_shape = net.input_shape
    if isinstance(in_shape, dict) or (isinstance(in_shape, list) and len(in_shape) != 1):
        raise ValueError(f"hub:{backbone} takes several inputs ({in_shape}); only single-image "
                         "backbones can be used")
    if isinstance(in_shape, list):
        in_shape = in_shape[0]
    expected = in_shape[-1]
    if stem == "auto":
        stem = expected is not None and expected != c
    if stem:
        x = keras.layers.Conv2D(expected or 3, 1, name="stem")(x)
    features = net(x)
    if isinstance(features, dict):
        raise ValueError(f"hub:{backbone} returns several outputs ({sorted(features)}); "
                         "only single-output image backbones can be used")
    rank = len(features.shape)
    if rank == 4:
        pool = {"avg": keras.layers.GlobalAveragePooling2D, "max": keras.layers.GlobalMaxPooling2D}
        if pooling not in pool:
            raise ValueError(f"pooling for feature maps must be 'avg' or 'max', got {pooling!r}")
        features = pool[pooling](name="pool")(features)
    elif rank == 3:
        if pooling == "cls":
            features = FirstToken(name="pool")(features)
        elif pooling == "avg":
            features = keras.layers.GlobalAveragePooling1D(name="pool")(features)
        else:
            raise ValueError(f"pooling for token sequences must be 'avg' or 'cls', got {pooling!r}")
    elif rank != 2:
        raise ValueError(f"hub:{backbone} output has shape {features.shape}; expected rank 2-4")
    if dropout:
        features = keras.layers.Dropout(dropout, name="head_dropout")(features)
    x = keras.layers.Dense(num_classes, name="predictions")(features)
    return common.finish(inputs, x, f"hub_{backbone}")
