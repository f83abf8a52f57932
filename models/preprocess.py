"""Preprocessing as a Keras layer: raw bands at native resolution in, the model's input out.

``Preprocess`` does inside the model what ``prep.reader`` does on the host for the same options:
per grid group it applies the dihedral augmentation draws (when given), casts to float32, clips the
bands whose definition gives a value range (``Band.clip``), normalizes each band with its (mean,
std), resamples lower-resolution grids to the target grid with the exact per-axis weights of
``tf.image.resize``, and concatenates in the selected band order (or keeps one tensor per
resolution group). Its input is what ``prep.reader.make_dataset(raw=True)`` delivers:
{"raw_<group>": [B, c, h, w] stored dtype (band-sequential, e.g. uint16 BOA reflectance)} and, when augmenting,
{"dihedral_bits": bool [B, 3]}, the draws the host pipeline would have applied. Same seed, same
records: the two paths give the same tensors up to float rounding (tests/test_preprocess.py).

Uses:
- ``train.py --preprocess=device``: the CPU pipeline only slices and stacks raw bands; the
  resampling, normalization and augmentation run in the training step (on the accelerator);
- exports that take raw bands (``with_preprocess``; ``models.serving``): no separate normalization
  for the user, no train/serve skew. The layer serializes in ``.keras`` files (its config holds the
  layout and the statistics) and traces into SavedModels.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import keras
import numpy as np
import tensorflow as tf

from prep import reader

AUGMENT_KEY = reader.AUGMENT_KEY


@keras.saving.register_keras_serializable(package="eorecords")
class Preprocess(keras.layers.Layer):
    """Raw grid groups (+ optional augmentation draws) -> normalized, resampled model input.

    Args:
      groups: the grid groups, in the host pipeline's concatenation order: dicts with "name"
        (the group's name in ``prep.reader.Layout``), "bands" (band names), "shape" ([h, w] in
        pixels) and "dtype" (the stored dtype, e.g. "uint16").
      bands: the selected band names in output order.
      target: [H, W] of the output grid (the finest selected).
      per_resolution: output one tensor per group ({group name: [B, h, w, c]}) instead of
        {"image": [B, H, W, C]}.
      resample: a ``tf.image.resize`` method for the lower-resolution groups.
      statistics: {band: [mean, std]} in stored units, or None (no normalization).
      clips: [band, lo, hi] value ranges applied before normalization.
      **kwargs: ``keras.layers.Layer`` arguments (name, ...).
    """

    def __init__(self, groups: Sequence[Mapping[str, Any]], bands: Sequence[str], target: Sequence[int],
                 per_resolution: bool = False, resample: str = "bicubic",
                 statistics: Mapping[str, Sequence[float]] | None = None,
                 clips: Sequence[Sequence[Any]] = (), **kwargs: Any) -> None:
        kwargs.setdefault("dtype", "float32")  # always computes in float32, whatever the global policy
        super().__init__(**kwargs)
        if resample not in reader.RESAMPLE_METHODS:
            raise ValueError(f"resample must be one of {', '.join(reader.RESAMPLE_METHODS)}; got {resample!r}")
        self.groups = [{"name": str(g["name"]), "bands": list(g["bands"]), "shape": [int(v) for v in g["shape"]],
                        "dtype": str(g["dtype"])} for g in groups]
        self.bands = list(bands)
        self.target = [int(v) for v in target]
        self.per_resolution = bool(per_resolution)
        self.resample = resample
        self.statistics = None if statistics is None else {b: [float(m), float(s)] for b, (m, s) in statistics.items()}
        self.clips = [[str(b), float(lo), float(hi)] for b, lo, hi in clips]
        grouped = [b for g in self.groups for b in g["bands"]]
        self._order = [grouped.index(b) for b in self.bands]

    @classmethod
    def from_layout(cls, lay: reader.Layout, statistics: Mapping[str, tuple[float, float]] | None,
                    resample: str = "bicubic", **kwargs: Any) -> Preprocess:
        """The layer for a reader ``Layout`` and its statistics (``prep.reader.band_statistics``).

        Args:
          lay: the band layout (``prep.reader.layout``).
          statistics: band -> (mean, std), or None for no normalization.
          resample: the resampling method.
          **kwargs: ``keras.layers.Layer`` arguments.

        Returns:
          A ``Preprocess`` giving what ``make_dataset`` gives for the same options.
        """
        groups = [{"name": g.name, "bands": g.bands, "shape": g.shape, "dtype": lay.dtypes[g.bands[0]]}
                  for g in lay.groups]
        return cls(groups, lay.bands, lay.target, lay.per_resolution, resample,
                   None if statistics is None else dict(statistics), lay.clips, **kwargs)

    def raw_input_spec(self) -> dict[str, tuple[tuple[int, int, int], str]]:
        """{input name: ((c, h, w), stored dtype)} the layer takes (``prep.reader.Layout.raw_input_spec``)."""
        return {reader.raw_input_name(g["name"]): ((len(g["bands"]), *g["shape"]), g["dtype"]) for g in self.groups}

    def output_spec(self) -> dict[str, tuple[int, int, int]]:
        """{output name: (H, W, C)}: {"image": ...}, or one entry per group with ``per_resolution``."""
        if self.per_resolution:
            return {g["name"]: (*g["shape"], len(g["bands"])) for g in self.groups}
        return {"image": (*self.target, len(self.bands))}

    def _group(self, g: Mapping[str, Any], x: tf.Tensor, bits: tf.Tensor | None) -> tf.Tensor:
        rotations = all(gr["shape"][0] == gr["shape"][1] for gr in self.groups)
        x = tf.transpose(x, [0, 2, 3, 1])  # band-sequential -> channels last
        if bits is not None:
            x = reader.dihedral(x, tf.cast(bits, tf.bool), rotations)
        x = tf.cast(x, tf.float32)
        clips = {b: (lo, hi) for b, lo, hi in self.clips}
        if any(b in clips for b in g["bands"]):
            x = tf.clip_by_value(x, np.array([clips.get(b, (-np.inf, np.inf))[0] for b in g["bands"]], np.float32),
                                 np.array([clips.get(b, (-np.inf, np.inf))[1] for b in g["bands"]], np.float32))
        if self.statistics is not None:
            x = (x - np.array([self.statistics[b][0] for b in g["bands"]], np.float32)) / np.array(
                [self.statistics[b][1] for b in g["bands"]], np.float32)
        if not self.per_resolution and list(g["shape"]) != self.target:
            x = reader.resize(x, tuple(self.target), self.resample, taps=True)
        return x

    def call(self, inputs: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """Preprocesses one batch.

        Args:
          inputs: {"raw_<group>": [B, c, h, w] stored dtype} for every group, and optionally
            {"dihedral_bits": bool [B, 3]} (flip left-right, up-down, transpose per sample).

        Returns:
          {"image": float32 [B, H, W, C]} in the selected band order, or with ``per_resolution``
          {group name: float32 [B, h, w, c]}.
        """
        bits = inputs.get(AUGMENT_KEY)
        parts = {g["name"]: self._group(g, inputs[reader.raw_input_name(g["name"])], bits) for g in self.groups}
        if self.per_resolution:
            return parts
        x = tf.concat([parts[g["name"]] for g in self.groups], axis=-1) if len(parts) > 1 else next(iter(parts.values()))
        if self._order != list(range(len(self._order))):
            x = tf.gather(x, self._order, axis=-1)
        return {"image": x}

    def compute_output_spec(self, inputs: Mapping[str, Any]) -> dict[str, keras.KerasTensor]:
        """Symbolic outputs for functional models: float32, batch dimension of the inputs."""
        batch = next(v for k, v in inputs.items() if k != AUGMENT_KEY).shape[0]
        return {k: keras.KerasTensor((batch, *v), dtype="float32") for k, v in self.output_spec().items()}

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments (JSON-ready), for ``.keras`` files."""
        return {**super().get_config(), "groups": self.groups, "bands": self.bands, "target": self.target,
                "per_resolution": self.per_resolution, "resample": self.resample, "statistics": self.statistics,
                "clips": self.clips}


def build_preprocess(manifest: Mapping, bands: str | Sequence[str] = "10m20m", per_resolution: bool = False,
                     resample: str = "bicubic",
                     normalize: str | Mapping[str, Mapping[str, float] | Sequence[float]] | bool | None = "manifest",
                     ) -> Preprocess:
    """The ``Preprocess`` layer for a prepared folder and the reader options of ``make_dataset``.

    Args:
      manifest: the folder's manifest (``prep.reader.load_manifest``).
      bands: the band selection (``prep.reader.layout``).
      per_resolution: one output per resolution group.
      resample: the resampling method.
      normalize: the statistics source (``prep.reader.band_statistics``).

    Returns:
      The layer.

    Raises:
      prep.reader.ReaderError: as ``prep.reader.layout`` and ``band_statistics``.
      KeyError: an unknown band name.
    """
    lay = reader.layout(manifest, bands, per_resolution)
    return Preprocess.from_layout(lay, reader.band_statistics(manifest, normalize, lay.bands), resample)


def with_preprocess(model: keras.Model, preprocess: Preprocess, augment: bool = False,
                    name: str | None = None) -> keras.Model:
    """``model`` behind ``preprocess``: a functional model taking raw bands at native resolution.

    Args:
      model: a model taking ``preprocess``'s outputs (one "image" input, or one per group).
      preprocess: the preprocessing layer.
      augment: add the {"dihedral_bits": bool [3]} input (training with device-side augmentation);
        without it (serving) nothing is augmented.
      name: the model's name (default: "<model name>_raw").

    Returns:
      A ``keras.Model`` with inputs ``preprocess.raw_input_spec()`` ([B, c, h, w] each) (+ the draws) and the outputs
      of ``model``; it shares ``model``'s weights.
    """
    inputs = {k: keras.Input(shape=chw, dtype=dtype, name=k) for k, (chw, dtype) in preprocess.raw_input_spec().items()}
    if augment:
        inputs[AUGMENT_KEY] = keras.Input(shape=(3,), dtype="bool", name=AUGMENT_KEY)
    features = preprocess(inputs)
    dict_inputs = isinstance(model.input, dict) or len(features) > 1
    out = model(features if dict_inputs else features["image"])
    return keras.Model(inputs, out, name=name or f"{model.name}_raw")
