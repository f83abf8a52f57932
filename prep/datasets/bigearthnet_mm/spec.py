"""BigEarthNet-MM v1.0 (Sentinel-1 + Sentinel-2 pairs), 19 classes: bands, presets and record schemas.

One record per S1/S2 pair: the 12 S2 bands at native size (uint16 BOA reflectance x 10000) and
VV, VH (float32 dB, 120 x 120) of the S1 twin, with the S2 patch's labels (the S1 JSON must carry
the same). The upstream schema is the upstream MM writer's: the S2 Int64List keys plus ``VV`` and
``VH`` (FloatList 14,400) and ``patch_name_s1`` / ``patch_name_s2``.
"""
from __future__ import annotations

import numpy as np

from prep.datasets.bigearthnet import spec as ben
from prep.datasets.bigearthnet_s1 import spec as s1spec
from prep.datasets.spec import MULTI_LABEL, DatasetSpec, Field, Schema

NAME = "bigearthnet_mm_19"
VERSION = "1.0.0"

BANDS = ben.BANDS + s1spec.BANDS
BAND_NAMES = tuple(b.name for b in BANDS)
# The MM models' input (upstream MM configurations): the S2 models' 10 bands (10 m, then the 20 m
# bands resampled to 120 x 120) followed by the S1 twin's VV, VH: 120 x 120 x 12.
MM_BANDS = ben.BAND_PRESETS["10m20m"] + s1spec.BAND_NAMES
BAND_PRESETS = {**{k: v for k, v in ben.BAND_PRESETS.items() if k != "all"}, "s1": s1spec.BAND_NAMES,
                "mm": MM_BANDS, "all": BAND_NAMES}
S1_META = (
    Field("meta_s1/acquisition_date", "bytes", 1, "S1 'YYYY-MM-DD HH:MM:SS' (the S1 JSON's acquisition_time)"),
    Field("meta_s1/scene_source", "bytes", 1, "the Sentinel-1 scene"),
)
PAIR_NAMES = (Field("patch_name_s1", "bytes", 1), Field("patch_name_s2", "bytes", 1))

UPSTREAM = Schema(
    name="upstream",
    version="1",
    fields=ben.UPSTREAM.fields + tuple(Field(b.name, "float", b.size, f"{b.name} backscatter (dB), row-major")
                                       for b in s1spec.BANDS) + PAIR_NAMES,
    band_encoding="int64_list",  # the S2 bands; VV and VH are FloatList (their fields' kind)
    band_keys={b.name: b.name for b in BANDS},
    label_key=ben.UPSTREAM.label_key,
    label_encoding="multi_hot",
)

COMPACT = Schema(
    name="compact",
    version="1",
    fields=ben.COMPACT.fields + tuple(Field(f"bands/{b.name}", "bytes", 1, "120x120 float32 little-endian, dB")
                                      for b in s1spec.BANDS) + PAIR_NAMES + S1_META,
    band_encoding="raw_bytes",
    band_keys={b.name: f"bands/{b.name}" for b in BANDS},
    label_key=ben.COMPACT.label_key,
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
    description="BigEarthNet-MM v1.0, 19-class nomenclature: Sentinel-2 L2A 12 bands at native resolution and the "
                "Sentinel-1 twin's VV, VH (dB) at 120x120.",
)


def record_values(s2: dict, s1: dict, schema: Schema) -> dict:
    """Map a read S2 patch and its read S1 twin to the feature values of ``schema``.

    Args:
      s2: ``prep.datasets.bigearthnet.raw.read_patch`` of the S2 patch (labels are taken from it).
      s1: ``prep.datasets.bigearthnet_s1.raw.read_patch`` of its S1 twin.
      schema: ``COMPACT`` or ``UPSTREAM``.

    Returns:
      Feature key -> values: the S2 schema's, plus VV, VH, ``patch_name_s1``, ``patch_name_s2``
      (and the S1 acquisition and scene in ``compact``).

    Raises:
      prep.datasets.bigearthnet.spec.UnknownLabelError: a label not in the 43-class nomenclature.
      KeyError: a schema other than ``compact`` and ``upstream``.
    """
    v = ben.record_values(s2, ben.SPEC.schema(schema.name))
    for b in s1spec.BANDS:
        if schema.name == "upstream":
            v[b.name] = np.asarray(s1["bands"][b.name], np.float32).ravel()
        else:
            v[f"bands/{b.name}"] = [np.ascontiguousarray(s1["bands"][b.name], dtype="<f4").tobytes()]
    v["patch_name_s1"] = [s1["name"].encode()]
    v["patch_name_s2"] = [s2["name"].encode()]
    if schema.name == "compact":
        v["meta_s1/acquisition_date"] = [str(s1.get("acquisition_date", "")).encode()]
        v["meta_s1/scene_source"] = [str(s1.get("tile_source", "")).encode()]
    return v
