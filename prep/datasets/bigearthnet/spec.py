"""BigEarthNet-S2 v1.0 with the 19-class nomenclature: bands, label tables, remapping and schemas.

The one definition of the dataset. The 43-class CLC Level-3 names and the 43 -> 19 conversion
are the official nomenclature, kept here in index order (never alphabetical).
"""
from __future__ import annotations

import re
from typing import Iterable, Sequence

import numpy as np

from prep.datasets.spec import MULTI_LABEL, Band, DatasetSpec, Field, Schema
from prep.errors import InputError

NAME = "bigearthnet19"
VERSION = "1.0.0"

# Canonical band order of the archive (no B10), with native sizes.
BANDS = (
    Band("B01", (20, 20), "uint16", 60, "60m"),
    Band("B02", (120, 120), "uint16", 10, "10m"),
    Band("B03", (120, 120), "uint16", 10, "10m"),
    Band("B04", (120, 120), "uint16", 10, "10m"),
    Band("B05", (60, 60), "uint16", 20, "20m"),
    Band("B06", (60, 60), "uint16", 20, "20m"),
    Band("B07", (60, 60), "uint16", 20, "20m"),
    Band("B08", (120, 120), "uint16", 10, "10m"),
    Band("B8A", (60, 60), "uint16", 20, "20m"),
    Band("B09", (20, 20), "uint16", 60, "60m"),
    Band("B11", (60, 60), "uint16", 20, "20m"),
    Band("B12", (60, 60), "uint16", 20, "20m"),
)
BAND_NAMES = tuple(b.name for b in BANDS)
PIXELS_PER_PATCH = sum(b.size for b in BANDS)  # 4*14,400 + 6*3,600 + 2*400 = 80,000

# Band orders of the upstream models: VGG/ResNet take 10m + upsampled 20m in this order,
# K-BranchCNN takes the three groups in these orders.
BAND_PRESETS = {
    "rgb": ("B04", "B03", "B02"),
    "10m": ("B04", "B03", "B02", "B08"),
    "20m": ("B05", "B06", "B07", "B8A", "B11", "B12"),
    "60m": ("B01", "B09"),
    "10m20m": ("B04", "B03", "B02", "B08", "B05", "B06", "B07", "B8A", "B11", "B12"),
    "all": BAND_NAMES,
}

# CLC Level-3 nomenclature of the archive's JSON files, index order 0..42.
LABELS_43 = (
    "Continuous urban fabric",
    "Discontinuous urban fabric",
    "Industrial or commercial units",
    "Road and rail networks and associated land",
    "Port areas",
    "Airports",
    "Mineral extraction sites",
    "Dump sites",
    "Construction sites",
    "Green urban areas",
    "Sport and leisure facilities",
    "Non-irrigated arable land",
    "Permanently irrigated land",
    "Rice fields",
    "Vineyards",
    "Fruit trees and berry plantations",
    "Olive groves",
    "Pastures",
    "Annual crops associated with permanent crops",
    "Complex cultivation patterns",
    "Land principally occupied by agriculture, with significant areas of natural vegetation",
    "Agro-forestry areas",
    "Broad-leaved forest",
    "Coniferous forest",
    "Mixed forest",
    "Natural grassland",
    "Moors and heathland",
    "Sclerophyllous vegetation",
    "Transitional woodland/shrub",
    "Beaches, dunes, sands",
    "Bare rock",
    "Sparsely vegetated areas",
    "Burnt areas",
    "Inland marshes",
    "Peatbogs",
    "Salt marshes",
    "Salines",
    "Intertidal flats",
    "Water courses",
    "Water bodies",
    "Coastal lagoons",
    "Estuaries",
    "Sea and ocean",
)

# The 19-class nomenclature, index order 0..18, and for each class the 43-class indices it merges.
LABELS_19 = (
    "Urban fabric",
    "Industrial or commercial units",
    "Arable land",
    "Permanent crops",
    "Pastures",
    "Complex cultivation patterns",
    "Land principally occupied by agriculture, with significant areas of natural vegetation",
    "Agro-forestry areas",
    "Broad-leaved forest",
    "Coniferous forest",
    "Mixed forest",
    "Natural grassland and sparsely vegetated areas",
    "Moors, heathland and sclerophyllous vegetation",
    "Transitional woodland, shrub",
    "Beaches, dunes, sands",
    "Inland wetlands",
    "Coastal wetlands",
    "Inland waters",
    "Marine waters",
)
CONVERSION_19 = (
    (0, 1),
    (2,),
    (11, 12, 13),
    (14, 15, 16, 18),
    (17,),
    (19,),
    (20,),
    (21,),
    (22,),
    (23,),
    (24,),
    (25, 31),
    (26, 27),
    (28,),
    (29,),
    (33, 34),
    (35, 36),
    (38, 39),
    (40, 41, 42),
)

INDEX_43 = {name: i for i, name in enumerate(LABELS_43)}
# 43-class index -> 19-class index, or -1 for the 11 classes without a 19-class target.
MAP_43_TO_19 = np.full(len(LABELS_43), -1, dtype=np.int64)
for _j, _sources in enumerate(CONVERSION_19):
    MAP_43_TO_19[list(_sources)] = _j
DROPPED_43 = tuple(LABELS_43[i] for i in np.flatnonzero(MAP_43_TO_19 < 0))


class UnknownLabelError(InputError):
    """A label name that is not in the 43-class nomenclature."""


def indices_43(names: Iterable[str]) -> list[int]:
    """43-class names -> sorted unique indices; unknown names raise UnknownLabelError."""
    out = set()
    for n in names:
        try:
            out.add(INDEX_43[n])
        except KeyError:
            raise UnknownLabelError(f"unknown label {n!r} (not in the 43-class nomenclature)") from None
    return sorted(out)


def indices_19(idx43: Sequence[int]) -> list[int]:
    """43-class indices -> sorted unique 19-class indices (class j is on iff a source is on)."""
    mapped = MAP_43_TO_19[np.asarray(idx43, dtype=np.int64)] if len(idx43) else np.empty(0, np.int64)
    return sorted(set(int(i) for i in mapped if i >= 0))


def multi_hot(indices: Sequence[int], n: int) -> list[int]:
    """Class indices -> a length-``n`` 0/1 list (multi-label target), 1 at each index.

    E.g. ``multi_hot([0, 4], 19)`` for a patch labelled "Urban fabric" and "Pastures".

    Raises:
      IndexError: an index >= ``n`` (indices are not otherwise checked).
    """
    v = [0] * n
    for i in indices:
        v[i] = 1
    return v


PATCH_NAME = re.compile(
    r"^(?P<satellite>S2[AB])_(?P<product>MSIL2A)_(?P<date>\d{8})T(?P<time>\d{5,6})_(?P<col>\d+)_(?P<row>\d+)$")


def parse_patch_name(name: str) -> dict:
    """Split a patch name into satellite, product, date, time, col, row (5- or 6-digit times).

    E.g. ``S2A_MSIL2A_20170717T113321_28_89`` -> ``{"satellite": "S2A", "product": "MSIL2A",
    "date": "20170717", "time": "113321", "col": "28", "row": "89"}`` (all strings).

    Raises:
      ValueError: ``name`` does not match ``PATCH_NAME``.
    """
    m = PATCH_NAME.match(name)
    if not m:
        raise ValueError(f"not a BigEarthNet-S2 patch name: {name!r}")
    return m.groupdict()


# --- record schemas -------------------------------------------------------------------------

UPSTREAM = Schema(
    name="upstream",
    version="1",
    fields=tuple(Field(b.name, "int64", b.size, f"{b.name} pixels, row-major") for b in BANDS) + (
        Field("BigEarthNet-19_labels", "bytes", None, "19-class names in class-index order"),
        Field("BigEarthNet-19_labels_multi_hot", "int64", len(LABELS_19)),
        Field("patch_name", "bytes", 1),
    ),
    band_encoding="int64_list",
    band_keys={b.name: b.name for b in BANDS},
    label_key="BigEarthNet-19_labels_multi_hot",
    label_encoding="multi_hot",
)

COMPACT = Schema(
    name="compact",
    version="1",
    fields=tuple(Field(f"bands/{b.name}", "bytes", 1, f"{b.shape[0]}x{b.shape[1]} uint16 little-endian")
                 for b in BANDS) + (
        Field("labels19/multi_hot", "int64", len(LABELS_19)),
        Field("labels19/index", "int64", None),
        Field("labels43/index", "int64", None),
        Field("labels43/names", "bytes", None),
        Field("patch_name", "bytes", 1),
        Field("meta/acquisition_date", "bytes", 1),
        Field("meta/tile_source", "bytes", 1),
        Field("meta/coordinates", "int64", 4, "ulx, uly, lrx, lry in the patch CRS (metres)"),
        Field("meta/epsg", "int64", 1),
    ),
    band_encoding="raw_bytes",
    band_keys={b.name: f"bands/{b.name}" for b in BANDS},
    label_key="labels19/multi_hot",
    label_encoding="multi_hot",
)

SPEC = DatasetSpec(
    name=NAME,
    version=VERSION,
    task=MULTI_LABEL,
    bands=BANDS,
    class_names=LABELS_19,
    schemas={"compact": COMPACT, "upstream": UPSTREAM},
    default_schema="compact",
    band_presets=BAND_PRESETS,
    description="BigEarthNet-S2 v1.0, 19-class nomenclature, Sentinel-2 L2A 12 bands at native resolution.",
)


def record_values(patch: dict, schema: Schema) -> dict:
    """Map a read patch to the feature values of ``schema``.

    ``patch`` holds ``name``, ``bands`` (name -> 2-D array), ``labels43`` (names, as in the JSON),
    ``acquisition_date``, ``tile_source``, ``coordinates`` (ulx, uly, lrx, lry), ``epsg``.

    Raises:
      UnknownLabelError: a label not in the 43-class nomenclature.
      KeyError: a schema other than ``compact`` and ``upstream``.
    """
    idx43 = indices_43(patch["labels43"])
    idx19 = indices_19(idx43)
    mh = multi_hot(idx19, len(LABELS_19))
    if schema.name == "upstream":
        v = {b.name: patch["bands"][b.name] for b in BANDS}
        v["BigEarthNet-19_labels"] = [LABELS_19[i].encode() for i in idx19]
        v["BigEarthNet-19_labels_multi_hot"] = mh
        v["patch_name"] = [patch["name"].encode()]
        return v
    if schema.name == "compact":
        v = {f"bands/{b.name}": [np.ascontiguousarray(patch["bands"][b.name], dtype="<u2").tobytes()]
             for b in BANDS}
        v["labels19/multi_hot"] = mh
        v["labels19/index"] = idx19
        v["labels43/index"] = idx43
        v["labels43/names"] = [LABELS_43[i].encode() for i in idx43]
        v["patch_name"] = [patch["name"].encode()]
        v["meta/acquisition_date"] = [str(patch.get("acquisition_date", "")).encode()]
        v["meta/tile_source"] = [str(patch.get("tile_source", "")).encode()]
        v["meta/coordinates"] = [int(c) for c in patch["coordinates"]]
        v["meta/epsg"] = [int(patch.get("epsg") or 0)]
        return v
    raise KeyError(f"unknown schema {schema.name!r}")
