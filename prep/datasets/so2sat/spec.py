"""So2Sat LCZ42: bands, the 17 Local Climate Zone classes, city tables and the record schema.

The one definition of the dataset, shared by the HDF5 converter (prep.so2sat), the input
pipeline and the TFDS builder.

Each patch is 32 x 32 pixels at 10 m with 8 Sentinel-1 channels (``sen1`` in the HDF5 files)
and 10 Sentinel-2 bands (``sen2``, reflectance = DN / 10000). Our short names for the sen1
channels, in the order of the last axis of ``sen1``:

    VH_re, VH_im    real and imaginary part of the VH channel
    VV_re, VV_im    real and imaginary part of the VV channel
    VH_lee, VV_lee  Lee-filtered intensity of VH and of VV
    C12_re, C12_im  real and imaginary part of the off-diagonal element of the Lee-filtered
                    dual-pol covariance matrix

and the sen2 bands B02 B03 B04 B05 B06 B07 B08 B8A B11 B12 (10/20 m bands all resampled to 10 m;
ESA's names, as in every dataset here; ``B2`` etc. are accepted as aliases).
Labels are 17-element one-hot rows in LCZ order 1..10, A..G; we store the class index.

The HDF5 files hold float64; records hold float32 by default (``spec_for_dtype("float64")``
gives the definition for records that keep float64).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from prep.datasets.spec import SINGLE_LABEL, Band, DatasetSpec, Field, Schema
from prep.errors import PrepError

NAME = "so2sat_lcz42"
VERSION = "1.0.0"
PATCH = (32, 32)
RESOLUTION_M = 10

SEN1_BANDS = ("VH_re", "VH_im", "VV_re", "VV_im", "VH_lee", "VV_lee", "C12_re", "C12_im")
# ESA's zero-padded names, the vocabulary of every dataset (B2, B4, ... are accepted as aliases).
SEN2_BANDS = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")
BAND_NAMES = SEN1_BANDS + SEN2_BANDS
# Feature key of each band in the records: the names the first records were written with (B2, not
# B02), kept so that records prepared before the rename read the same and bytes stay unchanged.
BAND_KEYS = {n: "bands/" + (f"B{int(n[1:])}" if n[1:].isdigit() else n) for n in BAND_NAMES}

# What each sen1 short name stands for (documentation and GeoTIFF band descriptions).
SEN1_DESCRIPTIONS = {
    "VH_re": "Sentinel-1 VH, real part",
    "VH_im": "Sentinel-1 VH, imaginary part",
    "VV_re": "Sentinel-1 VV, real part",
    "VV_im": "Sentinel-1 VV, imaginary part",
    "VH_lee": "Sentinel-1 VH intensity, Lee-filtered",
    "VV_lee": "Sentinel-1 VV intensity, Lee-filtered",
    "C12_re": "Sentinel-1 Lee-filtered covariance off-diagonal, real part",
    "C12_im": "Sentinel-1 Lee-filtered covariance off-diagonal, imaginary part",
}

BAND_PRESETS = {
    "all": BAND_NAMES,
    "sen1": SEN1_BANDS,
    "sen2": SEN2_BANDS,
    "rgb": ("B04", "B03", "B02"),
    # the BigEarthNet presets, same names and band order, so a model trained on one takes the other
    "10m": ("B04", "B03", "B02", "B08"),
    "10m20m": ("B04", "B03", "B02", "B08", "B05", "B06", "B07", "B8A", "B11", "B12"),
}

# The 17 Local Climate Zones in one-hot order: built types 1-10, land-cover types A-G.
LCZ_CODES = ("1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "A", "B", "C", "D", "E", "F", "G")
CLASS_NAMES = (
    "Compact high rise",
    "Compact mid rise",
    "Compact low rise",
    "Open high rise",
    "Open mid rise",
    "Open low rise",
    "Lightweight low rise",
    "Large low rise",
    "Sparsely built",
    "Heavy industry",
    "Dense trees",
    "Scattered trees",
    "Bush, scrub",
    "Low plants",
    "Bare rock or paved",
    "Bare soil or sand",
    "Water",
)
NUM_CLASSES = len(CLASS_NAMES)

# City -> UTM zone EPSG code of the patches' geolocation (the *_geo.h5 files).
# training.h5 covers 42 cities; validation.h5 / testing.h5 the western / eastern halves of 10 others.
TRAINING_CITY_EPSG = {
    "amsterdam": 32631, "beijing": 32650, "berlin": 32633, "bogota": 32618, "buenosaires": 32721,
    "cairo": 32636, "capetown": 32734, "caracas": 32619, "changsha": 32649, "chicago": 32616,
    "cologne": 32632, "dhaka": 32646, "dongying": 32650, "hongkong": 32650, "islamabad": 32643,
    "istanbul": 32635, "kyoto": 32653, "lima": 32718, "lisbon": 32629, "london": 32630,
    "losangeles": 32611, "madrid": 32630, "melbourne": 32755, "milan": 32632, "nanjing": 32650,
    "newyork": 32618, "orangitown": 32618, "paris": 32631, "philadelphia": 32618, "qingdao": 32651,
    "quezon": 32651, "riodejaneiro": 32723, "rome": 32633, "salvador": 32724, "saopaulo": 32723,
    "shanghai": 32651, "shenzhen": 32650, "tokyo": 32654, "vancouver": 32610, "washingtondc": 32618,
    "wuhan": 32650, "zurich": 32632,
}
VALIDATION_TESTING_CITY_EPSG = {
    "guangzhou": 32649, "jakarta": 32748, "moscow": 32637, "mumbai": 32643, "munich": 32632,
    "nairobi": 32737, "sanfrancisco": 32610, "santiago": 32719, "sydney": 32756, "tehran": 32639,
}

# Published sizes of the version-2 files (rows).
SPLIT_SIZES_V2 = {"training": 352366, "validation": 24119, "testing": 24188}
# Version-3 split scenarios, each a training.h5 / testing.h5 pair.
SCENARIOS_V3 = ("random", "block", "culture_10")


def _bands(dtype: str) -> tuple[Band, ...]:
    return tuple(Band(n, PATCH, dtype, RESOLUTION_M, "10m") for n in BAND_NAMES)


def _compact(dtype: str) -> Schema:
    desc = f"{PATCH[0]}x{PATCH[1]} {dtype} little-endian, row-major"
    return Schema(
        name="compact",
        version="1",
        fields=tuple(Field(BAND_KEYS[n], "bytes", 1, desc) for n in BAND_NAMES) + (
            Field("label/index", "int64", 1, "LCZ class index 0..16 (one-hot position)"),
            Field("patch_id", "bytes", 1, "source file and row, e.g. 'training.h5:123'"),
            Field("meta/source", "bytes", 1, "HDF5 file name (prefixed by the v3 scenario folder)"),
            Field("meta/row", "int64", 1, "row of the patch in the HDF5 file"),
            Field("geo/epsg", "int64", 1, "EPSG code of the UTM zone; 0 without geolocation"),
            Field("geo/utm", "bytes", 1, "patch centre x, y (metres): 2 float64 LE; empty without geolocation"),
            Field("geo/transform", "bytes", 1,
                  "affine a, b, c, d, e, f (c, f = upper-left corner, e < 0): 6 float64 LE; empty without"),
            Field("geo/tfw", "bytes", 1, "the 6 'tfw' values as stored in *_geo.h5: 6 float64 LE; empty without"),
            Field("geo/pixel", "int64", None, "S1 row, S1 col, S2 row, S2 col in the city scene (when given)"),
            Field("geo/city", "bytes", 1, "city name (when given)"),
        ),
        band_encoding="raw_bytes",
        band_keys=dict(BAND_KEYS),
        label_key="label/index",
        label_encoding="index",
    )


def spec_for_dtype(dtype: str = "float32") -> DatasetSpec:
    """The dataset definition for records holding ``dtype`` pixels ("float32" or "float64")."""
    if dtype not in ("float32", "float64"):
        raise ValueError(f"So2Sat records hold float32 or float64 pixels, not {dtype!r}")
    return DatasetSpec(
        name=NAME,
        version=VERSION,
        task=SINGLE_LABEL,
        bands=_bands(dtype),
        class_names=CLASS_NAMES,
        schemas={"compact": _compact(dtype)},
        default_schema="compact",
        band_presets=BAND_PRESETS,
        description=("So2Sat LCZ42: 32x32 patches at 10 m, 8 Sentinel-1 channels and 10 Sentinel-2 bands, "
                     f"17 Local Climate Zones (single label); pixels stored as {dtype}."),
    )


SPEC = spec_for_dtype("float32")


class So2SatInputError(PrepError):
    """An HDF5 input (or a flag about one) that cannot be converted: the message names the file."""
COMPACT = SPEC.schema("compact")


@dataclasses.dataclass(frozen=True)
class Geo:
    """Geolocation of one patch (from the *_geo.h5 companion file)."""

    epsg: int
    transform: tuple[float, ...]  # affine a, b, c, d, e, f; (c, f) = upper-left corner
    tfw: tuple[float, ...]  # as stored
    utm: tuple[float, float]  # patch centre
    pixel: tuple[int, ...] = ()  # S1 row, S1 col, S2 row, S2 col (when the file has 'coord')
    city: str = ""


def _f64(values) -> bytes:
    return np.asarray(values, dtype="<f8").tobytes()


def geo_values(geo: Geo | None) -> dict:
    """The ``geo/*`` feature values of the compact schema (empty ones without geolocation)."""
    if geo is None:
        return {"geo/epsg": [0], "geo/utm": [b""], "geo/transform": [b""], "geo/tfw": [b""],
                "geo/pixel": [], "geo/city": [b""]}
    return {"geo/epsg": [int(geo.epsg)], "geo/utm": [_f64(geo.utm)], "geo/transform": [_f64(geo.transform)],
            "geo/tfw": [_f64(geo.tfw)], "geo/pixel": [int(p) for p in geo.pixel],
            "geo/city": [geo.city.encode()]}


def record_values(bands: dict[str, bytes], label: int, source: str, row: int, geo: Geo | dict | None) -> dict:
    """Builds the feature values of one record in the compact schema.

    Args:
        bands: every band name (8 sen1 then 10 sen2) -> its 32x32 pixels as raw little-endian bytes.
        label: the LCZ class index, 0..16.
        source: the source file's name, recorded in ``meta/source`` and ``patch_id``.
        row: the row in the source file.
        geo: a Geo, the ``geo/*`` values already built (``geo_values``), or None (no geolocation).

    Returns:
        ``{feature key: list of values}`` for ``fastencode`` / ``tfrecord.encode_example``.

    Raises:
        KeyError: a band missing from ``bands``.
    """
    v = {BAND_KEYS[n]: [bands[n]] for n in BAND_NAMES}
    v["label/index"] = [int(label)]
    v["patch_id"] = [f"{source}:{row}".encode()]
    v["meta/source"] = [source.encode()]
    v["meta/row"] = [int(row)]
    v.update(geo if isinstance(geo, dict) else geo_values(geo))
    return v


def decode_geo(features: dict) -> Geo | None:
    """Parsed ``geo/*`` features of one record (bytes / lists, e.g. from tf.train.Example) -> Geo."""
    def one(v):
        if isinstance(v, (list, tuple)) or (isinstance(v, np.ndarray) and v.ndim):
            return v[0]
        return v
    epsg = int(one(features["geo/epsg"]))
    transform = bytes(one(features["geo/transform"]))
    if not epsg or not transform:
        return None
    city = one(features["geo/city"])
    return Geo(
        epsg=epsg,
        transform=tuple(np.frombuffer(transform, "<f8").tolist()),
        tfw=tuple(np.frombuffer(bytes(one(features["geo/tfw"])), "<f8").tolist()),
        utm=tuple(np.frombuffer(bytes(one(features["geo/utm"])), "<f8").tolist()),
        pixel=tuple(int(p) for p in features.get("geo/pixel", ())),
        city=bytes(city).decode() if city is not None else "",
    )
