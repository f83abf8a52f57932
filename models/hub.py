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

import keras

from models import common
from prep.datasets.spec import MULTI_LABEL


@keras.saving.register_keras_serializable(package="eorecords")
class FirstToken(keras.layers.Layer):
    """[B, N, D] -> [B, D]: the first (class) token of a sequence."""

    def call(self, inputs):
        return inputs[:, 0]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[2])


def _backbone_class(name):
    import keras_hub

    obj = getattr(keras_hub.models, name, None)
    if inspect.isclass(obj) and issubclass(obj, keras_hub.models.Backbone):
        return obj
    return None


def build_hub(input_spec, num_classes, task=MULTI_LABEL, *, backbone, backbone_kwargs=None,
              preset_weights=True, stem="auto", pooling="avg", dropout=0.0):
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
