"""Pieces every model family shares: input specs, the logits output, small checks.

An *input spec* maps input names to patch shapes ``(height, width, channels)``,
e.g. ``{"image": (120, 120, 10)}`` or, for K-BranchCNN,
``{"10m": (120, 120, 4), "20m": (60, 60, 6), "60m": (20, 20, 2)}``. Models take
their inputs as a dict keyed by these names (``keras.Input(name=key)``), which is
what ``prep.reader.make_dataset`` yields as features.

Every model ends in a float32 linear layer named ``logits`` (so mixed precision
never hands float16 logits to the loss); the model returns logits, never
probabilities.
"""

from __future__ import annotations

from collections.abc import Mapping

import keras

from prep.datasets.spec import Task

TASKS = tuple(Task)  # ("multi_label", "single_label", "segmentation")
LOGITS_LAYER = "logits"


def normalize_input_spec(input_spec: Mapping) -> dict[str, tuple]:
    """Checks an input spec and returns it as ``{name: (H, W, C)}`` with int entries.

    Height and width may be None (any size) for fully convolutional models; the
    channel count must be a positive int.

    Args:
        input_spec: ``{input name: (height, width, channels)}`` in pixels and bands; names are
            non-empty strings without ``/`` (they become Keras input names).

    Returns:
        A new dict with the same keys and ``(H, W, C)`` tuples of int (or None for H/W).

    Raises:
        ValueError: the spec is empty or not a mapping, a name is invalid, a shape is not three
            entries long, or a size is not a positive int.
    """
    if not isinstance(input_spec, Mapping) or not input_spec:
        raise ValueError(
            f"input_spec must be a non-empty dict {{name: (H, W, C)}}, got {input_spec!r}")
    spec = {}
    for name, shape in input_spec.items():
        if not isinstance(name, str) or not name or "/" in name:
            raise ValueError(f"input name {name!r} must be a non-empty string without '/'")
        shape = tuple(shape)
        if len(shape) != 3:
            raise ValueError(f"input {name!r}: shape {shape} is not (height, width, channels)")
        h, w, c = shape
        for what, v in (("height", h), ("width", w)):
            if v is not None and (int(v) != v or v < 1):
                raise ValueError(f"input {name!r}: {what} {v!r} is not a positive int or None")
        if c is None or int(c) != c or c < 1:
            raise ValueError(f"input {name!r}: channels {c!r} is not a positive int")
        spec[name] = tuple(None if v is None else int(v) for v in (h, w, c))
    return spec


def check_task(task: str) -> str:
    """Returns ``task`` if it is one of ``TASKS`` ("multi_label", "single_label", "segmentation").

    Raises:
        ValueError: any other task name.
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    return task


def check_num_classes(num_classes: int) -> int:
    """Returns ``num_classes`` as an int (the width of the logits layer).

    Raises:
        ValueError: it is not a positive whole number (e.g. 0, -1 or 2.5).
    """
    if int(num_classes) != num_classes or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    return int(num_classes)


def make_inputs(spec: Mapping[str, tuple]) -> dict[str, keras.KerasTensor]:
    """Makes one ``keras.Input`` per spec entry, named after its key.

    Args:
        spec: a normalised input spec ``{name: (H, W, C)}`` (see ``normalize_input_spec``).

    Returns:
        ``{name: KerasTensor of shape [batch, H, W, C]}`` (float32 unless a dtype policy says otherwise).
    """
    return {name: keras.Input(shape=shape, name=name) for name, shape in spec.items()}


def single_input(spec: Mapping[str, tuple], model_name: str, *, min_size: int | None = None,
                 fixed_size: tuple[int, int] | None = None) -> tuple[dict[str, keras.KerasTensor], keras.KerasTensor]:
    """Returns ``(inputs_dict, tensor)`` for a model that takes exactly one image.

    Args:
        spec: a normalised input spec with exactly one entry ``{name: (H, W, C)}``.
        model_name: the architecture's name, used in error messages only.
        min_size: smallest height/width in pixels the architecture can reduce to >= 1 pixel.
        fixed_size: the only (height, width) in pixels the architecture accepts.

    Returns:
        The inputs dict for ``keras.Model`` and its single ``[batch, H, W, C]`` input tensor.

    Raises:
        ValueError: the spec has more or fewer than one input, or its size breaks ``min_size`` /
            ``fixed_size``.
    """
    if len(spec) != 1:
        raise ValueError(
            f"{model_name} takes one input, got {len(spec)}: {sorted(spec)}; "
            "give a single {name: (H, W, C)} (e.g. per_resolution=False in the reader)")
    (name, (h, w, _)), = spec.items()
    if fixed_size is not None and (h, w) != tuple(fixed_size):
        raise ValueError(f"{model_name} needs {fixed_size[0]}x{fixed_size[1]} inputs, "
                         f"input {name!r} is {h}x{w}")
    if min_size is not None:
        for v in (h, w):
            if v is not None and v < min_size:
                raise ValueError(f"{model_name} needs inputs of at least {min_size}x{min_size}, "
                                 f"input {name!r} is {h}x{w}")
    inputs = make_inputs(spec)
    return inputs, inputs[name]


def logits(x: keras.KerasTensor) -> keras.KerasTensor:
    """Passes ``x`` (``[batch, num_classes]``) through the float32 identity layer named ``logits``.

    The cast to float32 keeps mixed-precision models from handing float16 logits to the loss.
    """
    return keras.layers.Activation("linear", dtype="float32", name=LOGITS_LAYER)(x)


def finish(inputs: Mapping[str, keras.KerasTensor], outputs: keras.KerasTensor, name: str) -> keras.Model:
    """Wraps inputs and the head's output into a functional model ending in the ``logits`` layer.

    Args:
        inputs: ``{name: keras.Input}`` as ``make_inputs`` returns it.
        outputs: the head's ``[batch, num_classes]`` tensor, before the ``logits`` layer.
        name: the model's name; characters other than letters, digits and ``_-.`` become ``_``.
    """
    return keras.Model(inputs=inputs, outputs=logits(outputs), name=_model_name(name))


def _model_name(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "_-." else "_" for ch in name)
