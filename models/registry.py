"""The model registry behind ``models.build``/``names``/``get``/``load_model`` (see the package doc).

Importing it (``import models`` does) imports Keras and every model module, which registers
their custom layers for ``.keras`` loading. Metrics and reports live in ``evaluation/``, free of
Keras.
"""


from __future__ import annotations

import dataclasses
import inspect
import os
from collections.abc import Callable, Mapping
from typing import Any

import keras

from models import applications, common, ghs, hub, kbranch, segmentation, slim, so2sat, transfer
from models.common import LOGITS_LAYER, TASKS, normalize_input_spec
from prep.datasets.spec import MULTI_LABEL, SEGMENTATION, SINGLE_LABEL

BIGEARTHNET_SPEC = {"image": (120, 120, 10)}
SO2SAT_SPEC = {"image": (32, 32, 10)}


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """A registry entry: how to build one named model and the configuration it was published with.

    Attributes:
        name: the registered name (``models.names()``), e.g. ``"ResNet50"``.
        builder: ``builder(input_spec, num_classes, task, **options, **kwargs) -> keras.Model``.
        default_input_spec: the published ``{name: (H, W, C)}``, e.g. ``{"image": (120, 120, 10)}``.
        default_task: ``"multi_label"`` (BigEarthNet, GHS), ``"single_label"`` (So2Sat LCZ42) or
            ``"segmentation"`` (the UNet-* models: per-pixel logits [batch, H, W, num_classes]).
        description: one line for listings.
        options: fixed keyword arguments of ``builder`` (e.g. ``variant="resnet_v1_50"``).
        default_num_classes: the published class count (19 for BigEarthNet-19, 17 LCZ, 2 for GHS).
    """

    name: str
    builder: Callable
    default_input_spec: Mapping
    default_task: str
    description: str
    options: Mapping = dataclasses.field(default_factory=dict)
    default_num_classes: int = 19


_REGISTRY: dict[str, ModelInfo] = {}


def register(name: str, builder: Callable[..., keras.Model], default_input_spec: Mapping[str, tuple],
             description: str, default_task: str = MULTI_LABEL, default_num_classes: int = 19,
             **options: Any) -> None:
    """Adds a model to the registry.

    Args:
        name: the name ``models.build`` takes.
        builder: ``builder(input_spec, num_classes, task, **options, **kwargs) -> keras.Model``;
            its keyword-only parameters are the options users may pass to ``models.build``.
        default_input_spec: the published ``{input name: (H, W, C)}``.
        description: one line for listings.
        default_task: the published task, ``"multi_label"`` or ``"single_label"``.
        default_num_classes: the published class count.
        **options: fixed keyword arguments for ``builder`` (e.g. ``variant="vgg_16"``).

    Raises:
        ValueError: ``name`` is registered already.
    """
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is registered twice")
    _REGISTRY[name] = ModelInfo(name, builder, dict(default_input_spec), default_task,
                                description, dict(options), default_num_classes)


register("K-BranchCNN", kbranch.build_kbranch, kbranch.DEFAULT_INPUT_SPEC,
         "BigEarthNet K-Branch CNN, one branch per resolution (TF1 upstream)")
for _v, _n in (("vgg_16", "VGG16"), ("vgg_19", "VGG19")):
    register(_n, slim.build_vgg, BIGEARTHNET_SPEC, f"TF-slim {_v}, SAME fc convs, global pool",
             variant=_v)
for _d in (50, 101, 152):
    register(f"ResNet{_d}", slim.build_resnet_v1, BIGEARTHNET_SPEC,
             f"TF-slim resnet_v1_{_d}, global pool", variant=f"resnet_v1_{_d}")
for _n in applications.DENSENET_BLOCKS:
    register(_n, applications.build_densenet, BIGEARTHNET_SPEC, f"{_n} (DenseNet-BC)", variant=_n)
register("Sen2LCZ-Net", so2sat.build_sen2lcz, SO2SAT_SPEC,
         "So2Sat sen2LCZ_drop: depth 17, dropout 0.2, multi-level fusion", default_task=SINGLE_LABEL,
         default_num_classes=17)
for _d in (11, 20, 29):
    register(f"So2Sat-ResNet{_d}", so2sat.build_so2sat_resnet, SO2SAT_SPEC,
             f"So2Sat bottleneck ResNet v2, depth {_d}", default_task=SINGLE_LABEL,
             default_num_classes=17, depth=_d)
register("GHS-S2Net", ghs.build_ghs_s2net, ghs.DEFAULT_INPUT_SPEC,
         "GHS per-pixel built-up CNN on 5x5x4 windows (2 outputs)", default_num_classes=2)
# Sentinel2GlobalLULC transfer learning: backbone (frozen unless unfreeze=true) + Dense 512 ReLU + logits.
for _b in transfer.BACKBONES:
    register(f"TL-{_b}", transfer.build_transfer, transfer.DEFAULT_INPUT_SPEC,
             f"{_b} on RGB 0..255 (own preprocessing), avg pool, Dense 512 ReLU (Sentinel2GlobalLULC)",
             default_task=SINGLE_LABEL, default_num_classes=29, backbone=_b)
# Segmentation (per-pixel logits at the input resolution; sizes multiples of 32), e.g. SEN12MS masks.
register("UNet-ResNet50", segmentation.build_unet, segmentation.DEFAULT_INPUT_SPEC,
         "U-Net decoder over a keras.applications ResNet50 encoder, per-pixel logits",
         default_task=SEGMENTATION, default_num_classes=10, backbone="resnet50")
register("UNet-Tiny", segmentation.build_unet, segmentation.DEFAULT_INPUT_SPEC,
         "U-Net with a 5-stage 8..48-filter conv encoder and 16..4-filter decoder (tests, smoke runs)",
         default_task=SEGMENTATION, default_num_classes=10, backbone="tiny", decoder_filters=(32, 24, 16, 8, 8))

# keras.applications models listed by names() (any other keras.applications
# constructor works too as "keras:<Name>").
KERAS_LISTED = ("ResNet50", "ResNet101", "ResNet152", "ResNet50V2", "ResNet101V2", "ResNet152V2")
PREFIXES = ("keras:", "hub:")


def names() -> list[str]:
    """Lists the registered model names, plus the keras.applications ResNets as ``keras:<Name>``.

    Any ``keras:<Application>`` and ``hub:<Backbone class or preset>`` is accepted too.
    """
    return list(_REGISTRY) + [f"keras:{n}" for n in KERAS_LISTED]


def get(name: str) -> ModelInfo:
    """Returns the registry entry for ``name`` (prefixed names get an entry made on the fly).

    Raises:
        KeyError: ``name`` is neither registered nor ``keras:<Name>`` / ``hub:<Name>``.
    """
    if name in _REGISTRY:
        return _REGISTRY[name]
    if name.startswith("keras:") and len(name) > 6:
        return ModelInfo(name, applications.build_application, BIGEARTHNET_SPEC, MULTI_LABEL,
                         f"keras.applications.{name[6:]}", {"application": name[6:]})
    if name.startswith("hub:") and len(name) > 4:
        return ModelInfo(name, hub.build_hub, BIGEARTHNET_SPEC, MULTI_LABEL,
                         f"keras-hub backbone {name[4:]}", {"backbone": name[4:]})
    raise KeyError(f"unknown model {name!r}; known: {', '.join(names())}, "
                   "or keras:<keras.applications name>, hub:<keras-hub backbone class or preset>")


def default_input_spec(name: str) -> dict:
    """Returns the input spec ``{name: (H, W, C)}`` the model was published with.

    E.g. ``{"image": (120, 120, 10)}`` for the BigEarthNet VGG/ResNets (10 bands, B01 and B09
    dropped, 20 m bands upsampled to 10 m), ``{"image": (32, 32, 10)}`` for the So2Sat models.

    Raises:
        KeyError: unknown model name.
    """
    return dict(get(name).default_input_spec)


def options(name: str) -> list[str]:
    """Returns the sorted options ``build(name, ..., **options)`` accepts (e.g. ``unfreeze`` for the TL-* models).

    Raises:
        KeyError: unknown model name.
    """
    info = get(name)
    params = inspect.signature(info.builder).parameters
    return sorted({k for k, p in params.items() if p.kind == p.KEYWORD_ONLY} - set(info.options))


def build(name: str, input_spec: Mapping, num_classes: int, task: str = MULTI_LABEL,
          weights: str | os.PathLike | None = None, **kwargs: Any) -> keras.Model:
    """Builds model ``name`` for ``input_spec`` with ``num_classes`` logits.

    Args:
        name: a name from ``names()``, ``keras:<Application>`` or ``hub:<Backbone|preset>``.
        input_spec: ``{input name: (H, W, C)}``; H and W may be None for fully convolutional models.
        num_classes: width of the float32 ``logits`` output, ``[batch, num_classes]``.
        task: "multi_label" or "single_label" (the output is logits either way; only
            Sen2LCZ-Net's fusion of its heads depends on it).
        weights: None, a ``.weights.h5``/``.keras`` path, or a registered pretrained name.
        **kwargs: model options (see the builder in the model's module).

    Returns:
        The functional model, uncompiled.

    Raises:
        KeyError: unknown model name, or unknown pretrained name in ``weights``.
        ValueError: invalid input spec, task or class count, or weights that do not fit.
        TypeError: an option the model does not have.
        FileNotFoundError: ``weights`` names a file that does not exist.
    """
    info = get(name)
    spec = normalize_input_spec(input_spec)
    common.check_task(task)
    num_classes = common.check_num_classes(num_classes)
    allowed = set(options(name))
    unknown = set(kwargs) - allowed
    if unknown:
        raise TypeError(f"model {name!r} has no option(s) {sorted(unknown)}; "
                        f"its options: {sorted(allowed) or 'none'}")
    model = info.builder(spec, num_classes, task, **info.options, **kwargs)
    if weights is not None:
        load_weights(model, weights)
    return model


def _is_path(weights) -> bool:
    if isinstance(weights, os.PathLike):
        return True
    return isinstance(weights, str) and (weights.endswith((".h5", ".keras")) or os.sep in weights
                                         or os.path.isfile(weights))


def load_weights(model: keras.Model, weights: str | os.PathLike) -> keras.Model:
    """Loads ``weights`` (a file path or a registered pretrained name) into ``model``.

    A name that is not a path is resolved with ``pretrained.resolve`` (which may download it).

    Args:
        model: the model to fill, built for the same architecture as the weights.
        weights: a ``.weights.h5``/``.keras``/``.h5`` path or a registered pretrained name.

    Returns:
        ``model``, with its weights replaced.

    Raises:
        FileNotFoundError: the weights file does not exist.
        ValueError: wrong file suffix, or the file's weights do not fit ``model``.
        KeyError: unknown pretrained name.
        ImportError: a pretrained name was given and the ``pretrained`` package fails to import.
    """
    if not _is_path(weights):
        try:
            import pretrained
        except ImportError as e:
            raise ImportError(f"weights={weights!r} is not a file, and resolving it as a pretrained "
                              f"name needs the pretrained package, which failed to import: {e}") from e
        resolved = pretrained.resolve(weights)  # KeyError for an unknown name surfaces as is
        if not isinstance(resolved, (str, os.PathLike)):
            resolved = getattr(resolved, "path", resolved)
        return load_weights(model, os.fspath(resolved))
    path = os.fspath(weights)
    if not os.path.exists(path):
        raise FileNotFoundError(f"weights file {path} does not exist")
    if not path.endswith((".weights.h5", ".keras", ".h5")):
        raise ValueError(f"weights file {path}: expected a .weights.h5 or .keras file")
    try:
        model.load_weights(path)
    except Exception as e:
        raise ValueError(f"weights file {path} does not fit model {model.name!r}: {e}") from e
    return model


def load_model(path: str | os.PathLike, compile: bool = False) -> keras.Model:
    """Loads a ``.keras`` file with this package's custom layers (and keras-hub, if needed) registered.

    Args:
        path: the ``.keras`` (or legacy ``.h5``) model file.
        compile: restore the saved optimizer, loss and metrics too (``keras.models.load_model``).

    Raises:
        FileNotFoundError: ``path`` does not exist.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"model file {path} does not exist")
    if _mentions_keras_hub(path):
        import keras_hub  # noqa: F401  registers keras-hub backbones for deserialisation
    return keras.models.load_model(path, compile=compile)


def _mentions_keras_hub(path: str) -> bool:
    import zipfile

    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        names = set(z.namelist())
        return "config.json" in names and b"keras_hub" in z.read("config.json")


__all__ = ["build", "names", "get", "default_input_spec", "load_weights", "load_model",
           "register", "ModelInfo", "TASKS", "LOGITS_LAYER", "normalize_input_spec"]
