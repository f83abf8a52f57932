"""SavedModel export for serving: named outputs, class names, optionally raw bands in.

``export_saved_model`` writes a SavedModel (TF Serving, ``tf.saved_model.load``) with these
signatures:

  serving_default  inputs named after the model's inputs ("image", or "10m" "20m" "60m" ...), or,
                   with a ``Preprocess`` layer, the raw band-sequential groups ("raw_120x120":
                   uint16 [B, c, h, w] at native resolution); outputs "logits" (float32 [B, K],
                   segmentation [B, H, W, K]) and "probabilities" (sigmoid for multi-label, softmax
                   over the classes for single-label and segmentation)
  serve            the logits alone, as ``keras.Model.export`` gives them (the one input tensor
                   of a single-input model, else the dict of inputs)
  metadata         no inputs; "class_names" (string [K], index order) and "task"

and ``assets.extra/eorecords.json`` beside them: classes, task, inputs ({name: {shape, dtype}}),
outputs and the preprocessing configuration (the ``Preprocess`` layer's, or None). TF Serving
copies ``assets.extra`` along and ignores it; ``read_metadata`` reads it back.
"""
from __future__ import annotations

import json
import os
from typing import Any, Mapping, Sequence

import keras
import tensorflow as tf

from models.preprocess import Preprocess, with_preprocess

METADATA_FILE = os.path.join("assets.extra", "eorecords.json")
OUTPUTS = ("logits", "probabilities")


def serving_model(model: keras.Model, preprocess: Preprocess | None = None) -> keras.Model:
    """The model a server runs: ``model`` itself, or ``model`` behind ``preprocess`` (raw bands in).

    Args:
      model: a trained model whose output is the logits.
      preprocess: the preprocessing to include, or None (the model's own inputs).

    Returns:
      A ``keras.Model`` sharing ``model``'s weights.
    """
    return model if preprocess is None else with_preprocess(model, preprocess, augment=False)


def _input_specs(model: keras.Model) -> dict[str, tf.TensorSpec]:
    return {t.name.split(":")[0]: tf.TensorSpec([None, *t.shape[1:]], t.dtype, name=t.name.split(":")[0])
            for t in model.inputs}


def export_saved_model(model: keras.Model, path: str | os.PathLike, classes: Sequence[str], task: str,
                       preprocess: Preprocess | None = None) -> dict[str, Any]:
    """Writes a SavedModel with named outputs and the class names (see the module docstring).

    Args:
      model: a model whose output is float logits [B, K], or [B, H, W, K] for segmentation (``models.build``).
      path: the SavedModel folder to write (replaced if present).
      classes: the K class names in index order.
      task: "multi_label" (probabilities by sigmoid), "single_label" or "segmentation" (softmax).
      preprocess: include this preprocessing: the export then takes raw bands at native resolution.

    Returns:
      The metadata written to ``assets.extra/eorecords.json``.

    Raises:
      ValueError: an unknown ``task``, or ``classes`` not matching the model's K outputs.
    """
    if task not in ("multi_label", "single_label", "segmentation"):
        raise ValueError(f"task must be multi_label, single_label or segmentation; got {task!r}")
    if int(model.outputs[0].shape[-1]) != len(classes):
        raise ValueError(f"the model has {model.outputs[0].shape[-1]} outputs, {len(classes)} class names given")
    served = serving_model(model, preprocess)
    specs = _input_specs(served)
    single = not isinstance(served.input, dict) and len(specs) == 1

    def logits_of(inputs):
        x = next(iter(inputs.values())) if single else inputs
        return tf.cast(served(x, training=False), tf.float32)

    def predict(inputs):
        logits = logits_of(inputs)
        probs = tf.sigmoid(logits) if task == "multi_label" else tf.nn.softmax(logits, axis=-1)
        return {"logits": logits, "probabilities": probs}

    names = tf.constant(list(classes))
    kind = tf.constant(task)

    archive = keras.export.ExportArchive()
    archive.track(served)
    archive.add_endpoint("serving_default", predict, input_signature=[specs])
    if single:  # as keras.Model.export: one tensor in
        archive.add_endpoint("serve", lambda x: tf.cast(served(x, training=False), tf.float32),
                             input_signature=[next(iter(specs.values()))])
    else:
        archive.add_endpoint("serve", logits_of, input_signature=[specs])
    archive.add_endpoint("metadata", lambda: {"class_names": names, "task": kind}, input_signature=[])
    path = os.fspath(path)
    archive.write_out(path, verbose=False)
    meta = {"classes": list(classes), "task": task,
            "inputs": {k: {"shape": [None, *v.shape[1:]], "dtype": v.dtype.name} for k, v in specs.items()},
            "outputs": {"logits": "float32 [B, H, W, K]" if task == "segmentation" else "float32 [B, K]",
                        "probabilities": "sigmoid(logits)" if task == "multi_label" else "softmax(logits)"},
            "preprocessing": None if preprocess is None else preprocess.get_config()}
    os.makedirs(os.path.join(path, "assets.extra"), exist_ok=True)
    with open(os.path.join(path, METADATA_FILE), "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=1)
    return meta


def read_metadata(path: str | os.PathLike) -> Mapping[str, Any]:
    """The ``assets.extra/eorecords.json`` of an export (classes, task, inputs, outputs, preprocessing).

    Raises:
      FileNotFoundError: ``path`` is not an export written by ``export_saved_model``.
    """
    with open(os.path.join(os.fspath(path), METADATA_FILE), encoding="utf-8") as f:
        return json.load(f)
