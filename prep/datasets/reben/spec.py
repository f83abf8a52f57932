"""BigEarthNet v2 (reBEN): bands, the 19 classes in two orders, the CLC code table and record schemas.

The one definition of the dataset. The S2 bands and the 19-class nomenclature are BigEarthNet-S2
v1.0's (``prep.datasets.bigearthnet.spec``, imported, not restated); reBEN adds the Sentinel-1 twin
(VV, VH: float32 backscatter in dB, 120 x 120 at 10 m) and a pixel-level reference map of CLC 2018
Level-3 codes, which ``reference_map_classes`` maps to the 19 classes (``CLC_TO_19``; codes of the
11 classes without a 19-class target, glaciers (335) and anything else become ``IGNORE`` = 255).

Class order: the records' multi-hot, class indices and reference-map values follow the
nomenclature's order by default (``LABELS_19``, as in the v1 tables); ``class_order="alphabetical"``
writes the names sorted alphabetically (``ALPHABETICAL_19``), the order one peer uses. The
manifest records the order used and, for each class of the records, its nomenclature index.

Record schemas, named for what they hold: ``s2`` (the 12 S2 bands at native size), ``s1s2`` (+ VV,
VH), ``s2_refmap`` and ``s1s2_refmap`` (+ ``reference_map``: 120 x 120 uint8 class indices, 255 =
ignore). Targets (``TARGETS``): ``multi_label`` (the 19-class multi-hot, the default) or ``mask``
(segmentation: the reference map per pixel, schemas ``s2_refmap_mask`` / ``s1s2_refmap_mask``: the same
fields, a ``MaskSource`` on ``reference_map`` mapping 0..18 to themselves and 255 to ``IGNORE_INDEX``; the
stored indices already follow the manifest's class order, so the mask ids do too).

Source: Clasen et al., reBEN: Refined BigEarthNet Dataset for Remote Sensing Image Analysis (2024);
https://bigearth.net.
"""
from __future__ import annotations

import dataclasses
from typing import Iterable, Mapping

import numpy as np

from prep.datasets.bigearthnet.spec import BAND_PRESETS as S2_PRESETS
from prep.datasets.bigearthnet.spec import BANDS as S2_BANDS
from prep.datasets.bigearthnet.spec import LABELS_19, LABELS_43, MAP_43_TO_19
from prep.datasets.spec import IGNORE_INDEX, MULTI_LABEL, SEGMENTATION, Band, DatasetSpec, Field, MaskSource, Schema
from prep.errors import InputError

NAME = "reben"
VERSION = "2.0.0"
PATCH = (120, 120)  # pixels of the 10 m bands, the S1 bands and the reference map

S1_BANDS = (
    Band("VV", PATCH, "float32", 10, "s1"),
    Band("VH", PATCH, "float32", 10, "s1"),
)
S1_BAND_NAMES = tuple(b.name for b in S1_BANDS)
S2_BAND_NAMES = tuple(b.name for b in S2_BANDS)
PIXELS_S2 = sum(b.size for b in S2_BANDS)  # 80,000 pixels of the 12 S2 bands of one patch
BANDS = S2_BANDS + S1_BANDS
BAND_KEYS = {b.name: f"bands/{b.name}" for b in BANDS}

BAND_PRESETS = {
    **S2_PRESETS,  # rgb, 10m, 20m, 60m, 10m20m, all (the 12 S2 bands), as for BigEarthNet-S2 v1
    "s1": S1_BAND_NAMES,
    "s1s2": S2_PRESETS["10m20m"] + S1_BAND_NAMES,  # the 10 S2 bands of the v1 models, then VV, VH
    "all_s1s2": S2_BAND_NAMES + S1_BAND_NAMES,
}

# --- classes ----------------------------------------------------------------------------------

ALPHABETICAL_19 = tuple(sorted(LABELS_19))
CLASS_ORDERS = {"nomenclature": LABELS_19, "alphabetical": ALPHABETICAL_19}
DEFAULT_CLASS_ORDER = "nomenclature"
IGNORE = 255  # reference-map value of pixels whose CLC code has no 19-class target

# CLC Level-3 code of each 43-class name, in the order of ``LABELS_43`` (the 44 CLC Level-3
# classes without 335, glaciers and perpetual snow, which BigEarthNet does not use).
CLC_CODES_43 = (
    111, 112, 121, 122, 123, 124, 131, 132, 133, 141, 142,
    211, 212, 213, 221, 222, 223, 231, 241, 242, 243, 244,
    311, 312, 313, 321, 322, 323, 324, 331, 332, 333, 334,
    411, 412, 421, 422, 423,
    511, 512, 521, 522, 523,
)
# CLC Level-3 code -> 19-class index (nomenclature order). Codes not listed have no 19-class target:
# 122 roads and rail, 123 ports, 124 airports, 131 mineral extraction, 132 dumps, 133 construction,
# 141 green urban, 142 sport and leisure, 332 bare rock, 334 burnt areas, 335 glaciers, 423 intertidal flats.
CLC_TO_19 = {
    111: 0, 112: 0,                    # Urban fabric
    121: 1,                            # Industrial or commercial units
    211: 2, 212: 2, 213: 2,            # Arable land
    221: 3, 222: 3, 223: 3, 241: 3,    # Permanent crops
    231: 4,                            # Pastures
    242: 5,                            # Complex cultivation patterns
    243: 6,                            # Land principally occupied by agriculture, ...
    244: 7,                            # Agro-forestry areas
    311: 8,                            # Broad-leaved forest
    312: 9,                            # Coniferous forest
    313: 10,                           # Mixed forest
    321: 11, 333: 11,                  # Natural grassland and sparsely vegetated areas
    322: 12, 323: 12,                  # Moors, heathland and sclerophyllous vegetation
    324: 13,                           # Transitional woodland, shrub
    331: 14,                           # Beaches, dunes, sands
    411: 15, 412: 15,                  # Inland wetlands
    421: 16, 422: 16,                  # Coastal wetlands
    511: 17, 512: 17,                  # Inland waters
    521: 18, 522: 18, 523: 18,         # Marine waters
}
assert len(CLC_CODES_43) == len(LABELS_43) == len(MAP_43_TO_19)


class RebenInputError(InputError):
    """A reBEN input that cannot be prepared: the message names the file and the problem."""


def class_names(order: str = DEFAULT_CLASS_ORDER) -> tuple[str, ...]:
    """The 19 class names in ``order`` ("nomenclature" or "alphabetical").

    Raises:
      ValueError: an unknown order.
    """
    try:
        return CLASS_ORDERS[order]
    except KeyError:
        raise ValueError(f"unknown class order {order!r}; one of {', '.join(CLASS_ORDERS)}") from None


def nomenclature_index(order: str = DEFAULT_CLASS_ORDER) -> tuple[int, ...]:
    """For each class index of ``order``, the class's index in the nomenclature (0..18).

    E.g. alphabetically class 0 is "Agro-forestry areas", nomenclature index 7. Recorded in the
    manifest, so ``multi_hot_in_order[j] == multi_hot_nomenclature[nomenclature_index[j]]``.
    """
    return tuple(LABELS_19.index(n) for n in class_names(order))


def label_indices(names: Iterable[str], order: str = DEFAULT_CLASS_ORDER) -> list[int]:
    """19-class names -> sorted unique class indices in ``order``.

    Raises:
      KeyError: a name not in the 19-class nomenclature (the message quotes it).
    """
    index = {n: i for i, n in enumerate(class_names(order))}
    out = set()
    for n in names:
        if n not in index:
            raise KeyError(f"unknown label {n!r} (not in the 19-class nomenclature)")
        out.add(index[n])
    return sorted(out)


def clc_lookup(order: str = DEFAULT_CLASS_ORDER) -> np.ndarray:
    """The uint8 lookup table CLC code (0..65535) -> 19-class index in ``order``, ``IGNORE`` elsewhere."""
    lut = np.full(1 << 16, IGNORE, np.uint8)
    to_order = {nom: j for j, nom in enumerate(nomenclature_index(order))}
    for code, j in CLC_TO_19.items():
        lut[code] = to_order[j]
    return lut


_LUTS: dict[str, np.ndarray] = {}


def reference_map_classes(codes: np.ndarray, order: str = DEFAULT_CLASS_ORDER) -> np.ndarray:
    """A reference map of CLC Level-3 codes -> per-pixel 19-class indices.

    Args:
      codes: any shape (120 x 120 in the archive), integer CLC 2018 Level-3 codes (e.g. 311).
      order: the class order of the indices ("nomenclature" or "alphabetical").

    Returns:
      uint8 array of ``codes``' shape: the class index in ``order`` of each pixel, or ``IGNORE``
      (255) for codes without a 19-class target (roads, glaciers, no-data values, ...).

    Raises:
      TypeError: non-integer codes.
    """
    codes = np.asarray(codes)
    if codes.dtype.kind not in "iu":
        raise TypeError(f"reference map codes must be integers, got {codes.dtype}")
    if order not in _LUTS:
        _LUTS[order] = clc_lookup(order)
    wide = codes.astype(np.int64)
    inside = (wide >= 0) & (wide < (1 << 16))
    return np.where(inside, _LUTS[order][np.where(inside, wide, 0)], IGNORE).astype(np.uint8)


# --- schemas ----------------------------------------------------------------------------------

TARGETS = ("multi_label", "mask")  # what the reader delivers: the scene multi-hot, or the per-pixel map
DEFAULT_TARGET = "multi_label"


def mask_lookup() -> tuple[int, ...]:
    """Stored ``reference_map`` value (0..255) -> class id: 0..18 to themselves, anything else ``IGNORE_INDEX``.

    The stored values are already class indices in the preparation's class order, so the lookup is
    the identity on the 19 classes whatever that order is; 255 (``IGNORE``) and any other value are ignored.
    """
    return tuple(v if v < len(LABELS_19) else IGNORE_INDEX for v in range(256))


def schema_name(with_s1: bool, reference_maps: bool, target: str = DEFAULT_TARGET) -> str:
    """The schema of records with or without S1 and the reference map, for a target.

    Returns:
      ``s2``, ``s1s2``, ``s2_refmap``, ``s1s2_refmap`` (multi-label), ``s2_refmap_mask`` or
      ``s1s2_refmap_mask`` (target ``mask``; the same fields as ``*_refmap``).

    Raises:
      ValueError: an unknown target, or target ``mask`` without the reference map.
    """
    if target not in TARGETS:
        raise ValueError(f"unknown reBEN target {target!r}; one of {', '.join(TARGETS)}")
    if target == "mask" and not reference_maps:
        raise ValueError("target 'mask' needs the reference maps (--reference_maps)")
    return ("s1s2" if with_s1 else "s2") + ("_refmap" if reference_maps else "") + (
        "_mask" if target == "mask" else "")


def _schema(with_s1: bool, reference_maps: bool, target: str = DEFAULT_TARGET) -> Schema:
    bands = BANDS if with_s1 else S2_BANDS
    fields = [Field(BAND_KEYS[b.name], "bytes", 1, f"{b.shape[0]}x{b.shape[1]} {b.dtype} little-endian, row-major"
                    + (" (dB)" if b.name in S1_BAND_NAMES else " (L2A BOA reflectance x 10000)")) for b in bands]
    fields += [
        Field("labels19/multi_hot", "int64", len(LABELS_19), "19-class multi-hot, in the manifest's class order"),
        Field("labels19/index", "int64", None, "19-class indices, in the manifest's class order"),
        Field("labels19/names", "bytes", None, "19-class names, as in metadata.parquet, in class-index order"),
        Field("patch_id", "bytes", 1, "e.g. 'S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP_26_57'"),
        Field("meta/s1_name", "bytes", 1, "the S1 twin patch (metadata.parquet s1_name)"),
        Field("meta/s2v1_name", "bytes", 1, "the BigEarthNet-S2 v1.0 patch name, '' when none"),
        Field("meta/country", "bytes", 1),
        Field("meta/seasonal_snow", "int64", 1, "1 when contains_seasonal_snow"),
        Field("meta/cloud_or_shadow", "int64", 1, "1 when contains_cloud_or_shadow"),
        Field("geo/epsg", "int64", 1, "EPSG code of the B02 GeoTIFF, 0 if unknown"),
        Field("geo/transform", "bytes", 1, "affine a, b, c, d, e, f of the B02 GeoTIFF: 6 float64 LE"),
    ]
    if reference_maps:
        fields.append(Field("reference_map", "bytes", 1, f"{PATCH[0]}x{PATCH[1]} uint8: per-pixel 19-class index in "
                            f"the manifest's class order, {IGNORE} = ignore (CLC code without a 19-class target)"))
    band_keys = {b.name: BAND_KEYS[b.name] for b in bands}
    name = schema_name(with_s1, reference_maps, target)
    if target == "mask":
        source = MaskSource(REFERENCE_MAP_KEY, "uint8", PATCH, mask_lookup())
        return Schema(name=name, version="1", fields=tuple(fields), band_encoding="raw_bytes", band_keys=band_keys,
                      label_key=REFERENCE_MAP_KEY, label_encoding="mask", mask_sources=(source,))
    return Schema(name=name, version="1", fields=tuple(fields), band_encoding="raw_bytes", band_keys=band_keys,
                  label_key="labels19/multi_hot", label_encoding="multi_hot")


REFERENCE_MAP_KEY = "reference_map"
SCHEMAS = {s.name: s for s in (_schema(s1, ref) for s1 in (False, True) for ref in (False, True))}
SCHEMAS.update((s.name, s) for s in (_schema(s1, True, "mask") for s1 in (False, True)))
DEFAULT_SCHEMA = "s2"


def spec_for(with_s1: bool = True, class_order: str = DEFAULT_CLASS_ORDER, reference_maps: bool = False,
             target: str = DEFAULT_TARGET) -> DatasetSpec:
    """The dataset definition of records with or without S1, in a class order, for a target.

    Args:
      with_s1: the records hold VV and VH (else only the 12 S2 bands).
      class_order: "nomenclature" or "alphabetical".
      reference_maps: the records hold the reference map (sets the default schema).
      target: "multi_label" (task multi-label) or "mask" (task segmentation; needs ``reference_maps``).

    Returns:
      A DatasetSpec named ``reben``. The registered one (``SPEC``) has every band, so the reader
      resolves VV/VH; a preparation's spec has the bands it writes.

    Raises:
      ValueError: an unknown class order or target, or target "mask" without ``reference_maps``.
    """
    return DatasetSpec(
        name=NAME, version=VERSION, task=SEGMENTATION if target == "mask" else MULTI_LABEL,
        bands=BANDS if with_s1 else S2_BANDS, class_names=class_names(class_order), schemas=SCHEMAS,
        default_schema=schema_name(with_s1, reference_maps, target),
        band_presets=BAND_PRESETS,
        description=("BigEarthNet v2 (reBEN): Sentinel-2 L2A 12 bands at native resolution, optionally the "
                     "Sentinel-1 twin (VV, VH dB) and the CLC reference map as 19-class pixel labels; 19-class "
                     + ("per-pixel segmentation (the reference map)" if target == "mask" else "multi-label")
                     + f", {class_order} class order."))


# The registered definition: every band (the reader resolves VV, VH from it), the default preparation's schema.
SPEC = dataclasses.replace(spec_for(True), default_schema=DEFAULT_SCHEMA)


def record_values(patch: Mapping, schema: Schema, class_order: str = DEFAULT_CLASS_ORDER) -> dict:
    """Map a read patch to the feature values of ``schema``.

    Args:
      patch: ``raw.read_patch``'s dict: ``patch_id``, ``bands`` (band name -> native-size array: S2
        uint16, S1 float32), ``labels`` (19-class names), ``s1_name``, ``s2v1_name``, ``country``,
        ``snow``, ``cloud`` (bools), ``epsg``, ``transform`` (6 floats) and, for a ``*_refmap``
        schema, ``reference_map`` (CLC codes, 120 x 120).
      schema: one of ``SCHEMAS``.
      class_order: the class order of the labels and the reference map.

    Returns:
      ``{feature key: list of values}``.

    Raises:
      KeyError: a label name outside the 19-class nomenclature.
    """
    idx = label_indices(patch["labels"], class_order)
    names = class_names(class_order)
    v = {key: [np.ascontiguousarray(patch["bands"][b], np.dtype(patch["bands"][b].dtype).newbyteorder("<")).tobytes()]
         for b, key in schema.band_keys.items()}
    hot = [0] * len(names)
    for i in idx:
        hot[i] = 1
    v["labels19/multi_hot"] = hot
    v["labels19/index"] = idx
    v["labels19/names"] = [names[i].encode() for i in idx]
    v["patch_id"] = [patch["patch_id"].encode()]
    v["meta/s1_name"] = [str(patch.get("s1_name") or "").encode()]
    v["meta/s2v1_name"] = [str(patch.get("s2v1_name") or "").encode()]
    v["meta/country"] = [str(patch.get("country") or "").encode()]
    v["meta/seasonal_snow"] = [int(bool(patch.get("snow")))]
    v["meta/cloud_or_shadow"] = [int(bool(patch.get("cloud")))]
    v["geo/epsg"] = [int(patch.get("epsg") or 0)]
    v["geo/transform"] = [np.asarray(patch.get("transform") or (0.0,) * 6, "<f8").tobytes()]
    if any(f.key == REFERENCE_MAP_KEY for f in schema.fields):
        v[REFERENCE_MAP_KEY] = [reference_map_classes(patch["reference_map"], class_order).tobytes()]
    return v
