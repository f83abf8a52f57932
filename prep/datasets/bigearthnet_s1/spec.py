"""BigEarthNet-S1 v1.0 with the 19-class nomenclature: bands, patch names and record schemas.

Sentinel-1 twins of the BigEarthNet-S2 patches: two float32 GeoTIFFs (VV and VH backscatter in
dB, 120 x 120 pixels of 10 m) and a JSON per patch. The labels are the S2 twin's CLC Level-3
names; the 43-class and 19-class tables are BigEarthNet-S2's (``prep.datasets.bigearthnet.spec``).
"""
from __future__ import annotations

import re

import numpy as np

from prep.datasets.bigearthnet import spec as ben
from prep.datasets.spec import MULTI_LABEL, Band, DatasetSpec, Field, Schema

NAME = "bigearthnet_s1_19"
VERSION = "1.0.0"

# VV and VH backscatter (dB) on the 10 m grid of the S2 twin's 10 m bands.
BANDS = (
    Band("VV", (120, 120), "float32", 10, "s1"),
    Band("VH", (120, 120), "float32", 10, "s1"),
)
BAND_NAMES = tuple(b.name for b in BANDS)
BAND_PRESETS = {"s1": BAND_NAMES, "vv": ("VV",), "vh": ("VH",), "all": BAND_NAMES}

# S1A_IW_GRDH_1SDV_20170613T165043_33UUP_87_48: satellite, mode, product, polarisations,
# acquisition, MGRS tile of the S2 twin, column, row.
PATCH_NAME = re.compile(
    r"^(?P<satellite>S1[AB])_(?P<mode>IW)_(?P<product>GRD[HM])_(?P<polarisation>1S[DS][VH])_"
    r"(?P<date>\d{8})T(?P<time>\d{6})_(?P<tile>\d{2}[A-Z]{3})_(?P<col>\d+)_(?P<row>\d+)$")


def parse_patch_name(name: str) -> dict:
    """Split an S1 patch name into satellite, mode, product, polarisation, date, time, tile, col, row.

    E.g. ``S1A_IW_GRDH_1SDV_20170613T165043_33UUP_87_48`` -> ``{"satellite": "S1A", "mode": "IW",
    "product": "GRDH", "polarisation": "1SDV", "date": "20170613", "time": "165043", "tile": "33UUP",
    "col": "87", "row": "48"}`` (all strings).

    Raises:
      ValueError: ``name`` does not match ``PATCH_NAME``.
    """
    m = PATCH_NAME.match(name)
    if not m:
        raise ValueError(f"not a BigEarthNet-S1 patch name: {name!r}")
    return m.groupdict()


def _labels_fields() -> tuple[Field, ...]:
    return (
        Field("labels19/multi_hot", "int64", len(ben.LABELS_19)),
        Field("labels19/index", "int64", None),
        Field("labels43/index", "int64", None),
        Field("labels43/names", "bytes", None),
    )


UPSTREAM = Schema(
    name="upstream",
    version="1",
    fields=tuple(Field(b.name, "float", b.size, f"{b.name} backscatter (dB), row-major") for b in BANDS) + (
        Field("BigEarthNet-19_labels", "bytes", None, "19-class names in class-index order"),
        Field("BigEarthNet-19_labels_multi_hot", "int64", len(ben.LABELS_19)),
        Field("patch_name", "bytes", 1, "the S1 patch name"),
        Field("patch_name_s1", "bytes", 1),
        Field("patch_name_s2", "bytes", 1),
    ),
    band_encoding="float_list",
    band_keys={b.name: b.name for b in BANDS},
    label_key="BigEarthNet-19_labels_multi_hot",
    label_encoding="multi_hot",
)

COMPACT = Schema(
    name="compact",
    version="1",
    fields=tuple(Field(f"bands/{b.name}", "bytes", 1, "120x120 float32 little-endian, dB") for b in BANDS)
    + _labels_fields() + (
        Field("patch_name", "bytes", 1, "the S1 patch name"),
        Field("patch_name_s2", "bytes", 1, "the S2 twin (pairing table)"),
        Field("meta/acquisition_date", "bytes", 1, "'YYYY-MM-DD HH:MM:SS' (the JSON's acquisition_time)"),
        Field("meta/tile_source", "bytes", 1, "the Sentinel-1 scene (the JSON's scene_source)"),
        Field("meta/coordinates", "int64", 4, "ulx, uly, lrx, lry in the patch CRS (metres; the JSON's lly is lry)"),
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
    class_names=ben.LABELS_19,
    schemas={"compact": COMPACT, "upstream": UPSTREAM},
    default_schema="compact",
    band_presets=BAND_PRESETS,
    description="BigEarthNet-S1 v1.0, 19-class nomenclature, Sentinel-1 GRD VV and VH backscatter (dB), 120x120 "
                "at 10 m.",
)


def label_values(labels43: list[str]) -> tuple[list[int], list[int], list[int]]:
    """43-class names -> (43-class indices, 19-class indices, 19-class multi-hot).

    Raises:
      prep.datasets.bigearthnet.spec.UnknownLabelError: a name not in the 43-class nomenclature.
    """
    idx43 = ben.indices_43(labels43)
    idx19 = ben.indices_19(idx43)
    return idx43, idx19, ben.multi_hot(idx19, len(ben.LABELS_19))


def record_values(patch: dict, schema: Schema) -> dict:
    """Map a read S1 patch (``raw.read_patch``) to the feature values of ``schema``.

    ``patch`` holds ``name``, ``s2_name``, ``bands`` (VV, VH -> (120, 120) float32 dB),
    ``labels43``, ``acquisition_date``, ``tile_source``, ``coordinates`` (ulx, uly, lrx, lry), ``epsg``.

    Raises:
      prep.datasets.bigearthnet.spec.UnknownLabelError: a label not in the 43-class nomenclature.
      KeyError: a schema other than ``compact`` and ``upstream``.
    """
    idx43, idx19, mh = label_values(patch["labels43"])
    if schema.name == "upstream":
        v = {b.name: np.asarray(patch["bands"][b.name], np.float32).ravel() for b in BANDS}
        v["BigEarthNet-19_labels"] = [ben.LABELS_19[i].encode() for i in idx19]
        v["BigEarthNet-19_labels_multi_hot"] = mh
        v["patch_name"] = v["patch_name_s1"] = [patch["name"].encode()]
        v["patch_name_s2"] = [patch["s2_name"].encode()]
        return v
    if schema.name == "compact":
        v = {f"bands/{b.name}": [np.ascontiguousarray(patch["bands"][b.name], dtype="<f4").tobytes()] for b in BANDS}
        v["labels19/multi_hot"] = mh
        v["labels19/index"] = idx19
        v["labels43/index"] = idx43
        v["labels43/names"] = [ben.LABELS_43[i].encode() for i in idx43]
        v["patch_name"] = [patch["name"].encode()]
        v["patch_name_s2"] = [patch["s2_name"].encode()]
        v["meta/acquisition_date"] = [str(patch.get("acquisition_date", "")).encode()]
        v["meta/tile_source"] = [str(patch.get("tile_source", "")).encode()]
        v["meta/coordinates"] = [int(c) for c in patch["coordinates"]]
        v["meta/epsg"] = [int(patch.get("epsg") or 0)]
        return v
    raise KeyError(f"unknown schema {schema.name!r}")
