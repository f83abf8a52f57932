"""SEN12MS: bands, the IGBP and simplified (DFC2020) nomenclatures, scene labels and record schemas.

The one definition of the dataset, shared by the preparation command, the input pipeline and the
TFDS builder.

Each triplet is three 256 x 256 GeoTIFFs at 10 m of one patch: ``s1`` (VV, VH backscatter in dB,
float32, some pixels NaN), ``s2`` (13 Sentinel-2 bands B01 ... B12 with B8A and B10, uint16 DN;
values above 32767 occur) and ``lc`` (4 MODIS land-cover layers resampled to 10 m: IGBP,
LCCS-LC, LCCS-LU, LCCS-SH; IGBP codes 1..17). Records hold every layer as raw little-endian
bytes in its own dtype (S1 stays float32), and the scene labels derived from the IGBP layer:

- ``igbp17/fractions``: the share of the patch's pixels in each IGBP class 1..17 (float32);
- ``dfc10/fractions``: the same summed into the 10 simplified classes (``IGBP_TO_DFC``);
- ``*/index``: single label = the class with the most pixels, ties to the lowest index;
- ``*/multi_hot``: every class holding at least ``threshold`` of the pixels (count >=
  threshold x pixels, exact integer arithmetic; the threshold is a preparation flag, 0.1 by default).

Six record schemas share these fields and differ only in the target the reader delivers:
``dfc10_multi`` (default), ``dfc10_single``, ``igbp17_multi``, ``igbp17_single`` (scene labels) and the
segmentation masks ``dfc10_mask`` / ``igbp17_mask``: the IGBP layer mapped per pixel to 0-based class ids
(``IGBP_TO_DFC`` for dfc10), code 0 (no data) -> ``IGNORE_INDEX``; in DFC2020's splits ``dfc10_mask`` is the
high-resolution ``dfc/mask`` instead (classes 1..10 -> 0..9; 0 and 255 -> ``IGNORE_INDEX``).

Source: Schmitt et al., SEN12MS (ISPRS Annals 2019); the simplified scheme of the IEEE GRSS
Data Fusion Contest 2020.
"""
from __future__ import annotations

import numpy as np

from prep.datasets.spec import (
    IGNORE_INDEX,
    MULTI_LABEL,
    SEGMENTATION,
    SINGLE_LABEL,
    Band,
    DatasetSpec,
    Field,
    MaskSource,
    Schema,
    Task,
)
from prep.errors import InputError

NAME = "sen12ms"
VERSION = "1.0.0"
PATCH = (256, 256)
RESOLUTION_M = 10
PIXELS = PATCH[0] * PATCH[1]

SEASONS = ("ROIs1158_spring", "ROIs1868_summer", "ROIs1970_fall", "ROIs2017_winter")
# DFC2020's validation and test sets (256x256 triplets at scene 0 with a high-resolution ``dfc`` label
# file each) -> the extra split they prepare as.
DFC2020_SETS = {"ROIs0000_validation": "dfc2020_val", "ROIs0000_test": "dfc2020_test"}
DFC_IGNORE = (0, 255)  # DFC2020 label values that mark unlabelled pixels
MODALITIES = ("s1", "s2", "lc")

S1_BANDS = ("VV", "VH")
S2_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")
LC_BANDS = ("IGBP", "LCCS_LC", "LCCS_LU", "LCCS_SH")
# the 10 "land" bands, file bands 2-9, 12, 13 (1-based), in file order
S2_LAND_BANDS = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")
S1_CLIP_DB = (-25.0, 0.0)  # the reader clips S1 to this range before normalising (records keep the dB values)
BAND_DTYPES = {"s1": "float32", "s2": "uint16", "lc": "uint16"}
MODALITY_BANDS = {"s1": S1_BANDS, "s2": S2_BANDS, "lc": LC_BANDS}
BAND_NAMES = S2_BANDS + S1_BANDS + LC_BANDS
BAND_KEYS = {n: f"bands/{n}" for n in BAND_NAMES}

BAND_PRESETS = {
    "s1": S1_BANDS,
    "rgb": ("B04", "B03", "B02"),
    "bgr_upstream": ("B02", "B03", "B04"),  # upstream's 3-band input order (blue, green, red)
    "s2_10": S2_LAND_BANDS,
    "s2_all": S2_BANDS,
    "s1s2": S2_LAND_BANDS + S1_BANDS,  # upstream's 12 channels: S2 land bands, then S1
    # the BigEarthNet presets, same names and band order
    "10m": ("B04", "B03", "B02", "B08"),
    "10m20m": ("B04", "B03", "B02", "B08", "B05", "B06", "B07", "B8A", "B11", "B12"),
    "all": S2_BANDS + S1_BANDS,
    "lc": LC_BANDS,
}

# IGBP classes, code 1..17 = index 0..16.
IGBP_CLASSES = (
    "Evergreen Needleleaf Forests",
    "Evergreen Broadleaf Forests",
    "Deciduous Needleleaf Forests",
    "Deciduous Broadleaf Forests",
    "Mixed Forests",
    "Closed Shrublands",
    "Open Shrublands",
    "Woody Savannas",
    "Savannas",
    "Grasslands",
    "Permanent Wetlands",
    "Croplands",
    "Urban and Built-Up Lands",
    "Cropland/Natural Vegetation Mosaics",
    "Permanent Snow and Ice",
    "Barren",
    "Water Bodies",
)
# The simplified scheme (DFC2020 classes 1..10 = index 0..9).
DFC_CLASSES = ("Forest", "Shrubland", "Savanna", "Grassland", "Wetlands", "Croplands", "Urban/Built-up",
               "Snow/Ice", "Barren", "Water")
# IGBP code (0..17; 0 = no data) -> DFC class (1..10; 0 = no data): our lookup table of the scheme.
IGBP_TO_DFC = (0, 1, 1, 1, 1, 1, 2, 2, 3, 3, 4, 5, 6, 7, 6, 8, 9, 10)
NOMENCLATURES = {"igbp17": IGBP_CLASSES, "dfc10": DFC_CLASSES}
SCENE_TARGETS = ("dfc10_multi", "dfc10_single", "igbp17_multi", "igbp17_single")
MASK_TARGETS = ("dfc10_mask", "igbp17_mask")  # per-pixel class ids (segmentation)
TARGETS = SCENE_TARGETS + MASK_TARGETS
DEFAULT_TARGET = "dfc10_multi"
DEFAULT_THRESHOLD = 0.1


class Sen12msInputError(InputError):
    """A SEN12MS input that cannot be prepared: the message names the file and the problem."""


# --- scene labels ------------------------------------------------------------------------------

def igbp_counts(igbp: np.ndarray) -> np.ndarray:
    """Pixels per IGBP class of one IGBP layer.

    Args:
      igbp: the IGBP layer, any shape (256 x 256 in the archive), integer codes 1..17.

    Returns:
      int64 [17]: pixels of code 1 .. 17.

    Raises:
      ValueError: a code outside 1..17 (the message gives the codes found).
    """
    counts = np.bincount(np.asarray(igbp, np.int64).ravel(), minlength=18)
    if counts[0] or counts.size > 18:
        bad = sorted(int(c) for c in np.flatnonzero(counts) if c == 0 or c > 17)
        raise ValueError(f"IGBP codes {bad} outside 1..17")
    return counts[1:18]


def dfc_counts(counts17: np.ndarray) -> np.ndarray:
    """IGBP class pixel counts [17] -> simplified (DFC) class pixel counts [10], via ``IGBP_TO_DFC``."""
    out = np.zeros(len(DFC_CLASSES), np.int64)
    np.add.at(out, np.asarray(IGBP_TO_DFC[1:]) - 1, np.asarray(counts17, np.int64))
    return out


def scene_labels(counts: np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> dict:
    """The scene labels of one nomenclature from its class pixel counts.

    Args:
      counts: int [C] pixels per class (C = 17 or 10).
      threshold: the multi-label share in [0, 1]; a class is in iff count >= threshold x total.

    Returns:
      ``fractions`` float32 [C] (count / total), ``index`` (argmax, ties to the lowest index) and
      ``multi_hot`` int64 [C].

    Raises:
      ValueError: no pixels at all.
    """
    counts = np.asarray(counts, np.int64)
    total = int(counts.sum())
    if total <= 0:
        raise ValueError("no labelled pixels")
    return {
        "fractions": (counts / total).astype(np.float32),
        "index": int(np.argmax(counts)),  # the first maximum
        "multi_hot": (counts >= threshold * total).astype(np.int64),
    }


# --- schema ---------------------------------------------------------------------------------------

def _fields() -> tuple[Field, ...]:
    def band(n, dtype):
        return Field(BAND_KEYS[n], "bytes", 1, f"{PATCH[0]}x{PATCH[1]} {dtype} little-endian, row-major")

    out = [band(n, "uint16") for n in S2_BANDS] + [band(n, "float32 dB") for n in S1_BANDS]
    out += [band(n, "uint16") for n in LC_BANDS]
    for nom, names in NOMENCLATURES.items():
        c = len(names)
        out += [Field(f"{nom}/fractions", "float", c, f"share of pixels per class ({c} classes)"),
                Field(f"{nom}/index", "int64", 1, "single label: most pixels, ties to the lowest index"),
                Field(f"{nom}/multi_hot", "int64", c, "classes with share >= the preparation's label_threshold")]
    out += [
        Field("patch_id", "bytes", 1, "e.g. 'ROIs1158_spring_63_p100'"),
        Field("meta/season", "bytes", 1, "season folder, e.g. 'ROIs1158_spring'"),
        Field("meta/scene", "int64", 1, "scene number"),
        Field("meta/patch", "int64", 1, "patch number"),
        Field("meta/s1_nan", "int64", 1, "S1 values (VV and VH counted apart) that were NaN in the file, stored as 0 dB"),
        Field("geo/crs", "bytes", 1, "CRS of the s2 GeoTIFF (WKT)"),
        Field("geo/epsg", "int64", 1, "EPSG code of the CRS, 0 if it has none"),
        Field("geo/transform", "bytes", 1, "affine a, b, c, d, e, f of the s2 GeoTIFF: 6 float64 LE"),
        Field("dfc/mask_lowres", "bytes", 1, "256x256 uint8: the IGBP layer mapped to DFC classes 1..10"),
        Field("dfc/mask", "bytes", 1, "256x256 uint8: DFC2020 high-resolution labels 1..10 (0, 255 = ignore); "
              "empty outside DFC2020"),
    ]
    return tuple(out)


FIELDS = _fields()


def mask_lookups() -> dict[str, tuple[int, ...]]:
    """Stored code -> 0-based class id (``IGNORE_INDEX`` = no class) of each per-pixel label layer.

    Returns:
      ``igbp17``: IGBP code 0..17 -> 0..16 (0 = no data -> ignore); ``dfc10``: IGBP code 0..17 -> the
      simplified class 0..9 via ``IGBP_TO_DFC``; ``dfc2020``: DFC2020 label 0..255 -> 0..9 for 1..10,
      ignore for 0, 255 and anything else.
    """
    return {
        "igbp17": (IGNORE_INDEX,) + tuple(range(len(IGBP_CLASSES))),
        "dfc10": tuple(IGNORE_INDEX if d == 0 else d - 1 for d in IGBP_TO_DFC),
        "dfc2020": tuple(v - 1 if 1 <= v <= len(DFC_CLASSES) else IGNORE_INDEX for v in range(256)),
    }


def _mask_sources(nom: str) -> tuple[MaskSource, ...]:
    lookups = mask_lookups()
    igbp = MaskSource(BAND_KEYS["IGBP"], "uint16", PATCH, lookups[nom])
    if nom == "dfc10":  # DFC2020's records: their high-resolution labels first
        return (MaskSource("dfc/mask", "uint8", PATCH, lookups["dfc2020"]), igbp)
    return (igbp,)


def _schema(target: str) -> Schema:
    nom, kind = target.split("_")
    if kind == "mask":
        sources = _mask_sources(nom)
        return Schema(name=target, version="1", fields=FIELDS, band_encoding="raw_bytes", band_keys=dict(BAND_KEYS),
                      label_key=sources[0].key, label_encoding="mask", mask_sources=sources)
    return Schema(name=target, version="1", fields=FIELDS, band_encoding="raw_bytes", band_keys=dict(BAND_KEYS),
                  label_key=f"{nom}/{'multi_hot' if kind == 'multi' else 'index'}",
                  label_encoding="multi_hot" if kind == "multi" else "index")


SCHEMAS = {t: _schema(t) for t in TARGETS}


def _bands() -> tuple[Band, ...]:
    out = [Band(n, PATCH, "uint16", RESOLUTION_M, "s2") for n in S2_BANDS]
    out += [Band(n, PATCH, "float32", RESOLUTION_M, "s1", clip=S1_CLIP_DB) for n in S1_BANDS]
    out += [Band(n, PATCH, "uint16", RESOLUTION_M, "lc") for n in LC_BANDS]
    return tuple(out)


def spec_for_target(target: str = DEFAULT_TARGET) -> DatasetSpec:
    """The dataset definition whose task, classes and default schema are those of ``target``.

    Args:
      target: one of ``TARGETS`` (``dfc10_multi``, ``dfc10_single``, ``igbp17_multi``, ``igbp17_single``,
        ``dfc10_mask``, ``igbp17_mask``).

    Returns:
      A DatasetSpec named ``sen12ms`` (every target's records hold the same fields; the manifest's
      schema, task and classes say which target the reader delivers).

    Raises:
      ValueError: an unknown target.
    """
    if target not in TARGETS:
        raise ValueError(f"unknown SEN12MS target {target!r}; one of {', '.join(TARGETS)}")
    nom, kind = target.split("_")
    task: Task = {"multi": MULTI_LABEL, "single": SINGLE_LABEL, "mask": SEGMENTATION}[kind]
    return DatasetSpec(
        name=NAME, version=VERSION, task=task, bands=_bands(), class_names=NOMENCLATURES[nom], schemas=SCHEMAS,
        default_schema=target, band_presets=BAND_PRESETS,
        description=("SEN12MS: 256x256 triplets at 10 m of Sentinel-1 (VV, VH float32 dB), Sentinel-2 (13 bands "
                     "uint16) and MODIS land cover (4 layers); scene labels from the IGBP layer in 17 IGBP and 10 "
                     f"simplified classes; target {target}."))


SPEC = spec_for_target(DEFAULT_TARGET)


def record_values(triplet: dict, threshold: float = DEFAULT_THRESHOLD) -> dict:
    """The feature values of one record.

    Args:
      triplet: ``raw.read_triplet``'s dict: ``bands`` (band name -> 256x256 array in its dtype; S1
        float32 without NaN), ``season``, ``scene``, ``patch``, ``s1_nan``, ``crs`` (WKT), ``epsg``,
        ``transform`` (6 floats); for DFC2020 patches ``dfc_mask`` (256x256 uint8 labels).
      threshold: the multi-label share (``scene_labels``).

    Returns:
      ``{feature key: list of values}`` for ``fastencode`` / ``tfrecord.encode_example``.

    Raises:
      ValueError: IGBP codes outside 1..17.
    """
    bands = triplet["bands"]
    v = {BAND_KEYS[n]: [np.ascontiguousarray(bands[n], bands[n].dtype.newbyteorder("<")).tobytes()]
         for n in BAND_NAMES}
    c17 = igbp_counts(bands["IGBP"])
    for nom, counts in (("igbp17", c17), ("dfc10", dfc_counts(c17))):
        lab = scene_labels(counts, threshold)
        v[f"{nom}/fractions"] = lab["fractions"].tolist()
        v[f"{nom}/index"] = [lab["index"]]
        v[f"{nom}/multi_hot"] = lab["multi_hot"].tolist()
    v["patch_id"] = [patch_id(triplet["season"], triplet["scene"], triplet["patch"]).encode()]
    v["meta/season"] = [triplet["season"].encode()]
    v["meta/scene"] = [int(triplet["scene"])]
    v["meta/patch"] = [int(triplet["patch"])]
    v["meta/s1_nan"] = [int(triplet["s1_nan"])]
    v["geo/crs"] = [triplet["crs"].encode()]
    v["geo/epsg"] = [int(triplet["epsg"])]
    v["geo/transform"] = [np.asarray(triplet["transform"], "<f8").tobytes()]
    v["dfc/mask_lowres"] = [np.asarray(IGBP_TO_DFC, np.uint8)[bands["IGBP"]].tobytes()]
    mask = triplet.get("dfc_mask")
    v["dfc/mask"] = [b"" if mask is None else np.ascontiguousarray(mask, np.uint8).tobytes()]
    return v


def patch_id(season: str, scene: int, patch: int) -> str:
    """``ROIs1158_spring_63_p100``: the id of one triplet (its file names without the modality)."""
    return f"{season}_{scene}_p{patch}"


def labels_for_target(values: dict, target: str) -> list[int]:
    """The class indices the shard writer counts for ``target`` from a record's feature values.

    Scene targets: the record's labels; mask targets: every class holding a pixel of the IGBP layer.
    """
    nom, kind = target.split("_")
    if kind == "mask":
        return [i for i, f in enumerate(values[f"{nom}/fractions"]) if f > 0]
    if kind == "multi":
        return [i for i, h in enumerate(values[f"{nom}/multi_hot"]) if h]
    return [int(values[f"{nom}/index"][0])]
