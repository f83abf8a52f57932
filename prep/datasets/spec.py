"""The dataclasses that describe a dataset once: its bands, classes and record schemas.

Every writer (prep/*), the tf.data reader (prep.reader) and the TFDS builders (prep.tfds)
read these objects; nothing else hard-codes band names, shapes or feature keys.
"""
from __future__ import annotations

import dataclasses
import enum
import re
from typing import Mapping

_S2_NAME = re.compile(r"^[Bb]0?(\d{1,2})([Aa]?)$")


def canonical_band_name(name: str) -> str:
    """One vocabulary for Sentinel-2 bands: ESA's zero-padded names B01 ... B12 and B8A.

    Short or lower-case forms are aliases: ``B2``/``b2`` -> ``B02``, ``B8a``/``B08A`` -> ``B8A``.
    Any other name (Sentinel-1 channels such as ``VV``, ``VH_lee``) is returned unchanged.
    Source: ESA Sentinel-2 MSI band designations.
    """
    m = _S2_NAME.match(name)
    if not m:
        return name
    number = int(m.group(1))
    return f"B{number}A" if m.group(2) else f"B{number:02d}"


class Task(enum.StrEnum):
    """The learning task of a dataset or model; the values are the names used in files and flags."""

    MULTI_LABEL = "multi_label"  # several classes per item: multi-hot targets, sigmoid
    SINGLE_LABEL = "single_label"  # one class per item: class-index targets, softmax
    SEGMENTATION = "segmentation"  # one class per pixel: [H, W] class-index masks, per-pixel softmax


MULTI_LABEL = Task.MULTI_LABEL
SINGLE_LABEL = Task.SINGLE_LABEL
SEGMENTATION = Task.SEGMENTATION
IGNORE_INDEX = -1  # the class id of mask pixels without a class (no data, unmapped codes): left out of loss and metrics


@dataclasses.dataclass(frozen=True)
class Band:
    """One image channel as stored in the raw archive."""

    name: str
    shape: tuple[int, int]  # (rows, cols) at native resolution
    dtype: str  # numpy dtype name of the stored pixels: "uint16", "float32", ...
    resolution_m: float
    group: str = ""  # resolution group for per-resolution delivery ("10m", "20m", "60m")
    clip: tuple[float, float] | None = None  # the reader clips to [lo, hi] before normalising (not storage)

    @property
    def size(self) -> int:
        """Pixels per band image at native resolution: rows x cols (e.g. 14,400 for a 120x120 10 m band)."""
        return self.shape[0] * self.shape[1]


@dataclasses.dataclass(frozen=True)
class Field:
    """One tf.train.Example feature: key, list type and fixed length (None = variable)."""

    key: str
    kind: str  # "bytes" | "int64" | "float"
    length: int | None = None
    doc: str = ""

    def __post_init__(self) -> None:
        if self.kind not in ("bytes", "int64", "float"):
            raise ValueError(f"field {self.key!r}: unknown kind {self.kind!r}")


@dataclasses.dataclass(frozen=True)
class MaskSource:
    """A per-pixel label layer of the records and how its stored codes map to 0-based class ids.

    Attributes:
      key: the bytes feature holding the layer: ``shape`` pixels, raw little-endian ``dtype``, row-major;
        an empty value means the record has no such layer (the next source of the schema is used).
      dtype: numpy dtype name of the stored codes ("uint8", "uint16").
      shape: (rows, cols) of the layer in pixels.
      lookup: stored code -> class id (0-based), ``IGNORE_INDEX`` for codes that name no class; codes
        at or beyond ``len(lookup)`` are ignored too.
    """

    key: str
    dtype: str
    shape: tuple[int, int]
    lookup: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class Schema:
    """A named record layout. ``band_key`` maps a band name to the feature holding its pixels."""

    name: str
    version: str
    fields: tuple[Field, ...]
    # "raw_bytes" (little-endian, band dtype) | "int64_list" | "float_list" | "jpeg" (the bands sharing a
    # feature key are the channels of one JPEG image stored there, in band order)
    band_encoding: str
    band_keys: Mapping[str, str]  # band name -> feature key
    label_key: str  # feature holding the class-index targets (multi-hot or index; a mask: the first source's)
    label_encoding: str  # "multi_hot" | "index" | "mask"
    # label_encoding "mask": the per-pixel layers, in order of preference; per record the first one present
    mask_sources: tuple[MaskSource, ...] = ()

    def field(self, key: str) -> Field:
        """Returns the field with feature key ``key``.

        Raises:
            KeyError: the schema has no such field.
        """
        for f in self.fields:
            if f.key == key:
                return f
        raise KeyError(f"schema {self.name!r} has no field {key!r}")


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """Everything that defines one dataset for the writer, the reader and the TFDS builder."""

    name: str
    version: str
    task: Task
    bands: tuple[Band, ...]
    class_names: tuple[str, ...]
    schemas: Mapping[str, Schema]
    default_schema: str
    band_presets: Mapping[str, tuple[str, ...]]
    description: str = ""

    def band(self, name: str) -> Band:
        """Returns the band called ``name`` (e.g. "B02", "VV"); Sentinel-2 short forms such as ``B4`` are accepted.

        Raises:
            KeyError: the dataset has no such band; the message lists its bands.
        """
        for candidate in (name, canonical_band_name(name)):
            for b in self.bands:
                if b.name == candidate:
                    return b
        raise KeyError(
            f"dataset {self.name!r} has no band {name!r}; bands: {', '.join(self.band_names)}")

    @property
    def band_names(self) -> tuple[str, ...]:
        """The band names in the dataset's canonical order (e.g. B01 B02 B03 B04 ... B12 for BigEarthNet-S2)."""
        return tuple(b.name for b in self.bands)

    @property
    def num_classes(self) -> int:
        """The number of classes (19 for BigEarthNet-19, 17 LCZ classes for So2Sat LCZ42)."""
        return len(self.class_names)

    def schema(self, name: str | None = None) -> Schema:
        """Returns the record schema ``name`` (None = ``default_schema``).

        Raises:
            KeyError: the dataset has no such schema; the message lists its schemas.
        """
        name = name or self.default_schema
        try:
            return self.schemas[name]
        except KeyError:
            raise KeyError(
                f"dataset {self.name!r} has no schema {name!r}; schemas: {', '.join(self.schemas)}"
            ) from None

    def resolve_bands(self, selection: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
        """Resolves a preset name ("rgb", "10m", "all", ...) or a comma list of band names to band names.

        Raises:
            KeyError: an unknown band name (the message lists the dataset's bands).
            ValueError: an empty selection, or one that repeats a band.
        """
        if isinstance(selection, str):
            if selection in self.band_presets:
                return tuple(self.band_presets[selection])
            selection = [s.strip() for s in selection.split(",") if s.strip()]
        names = tuple(self.band(n).name for n in selection)  # canonical names; unknown ones raise
        if not names:
            raise ValueError("empty band selection")
        if len(set(names)) != len(names):
            raise ValueError(f"band selection repeats a band: {names}")
        return names
