"""EuroSAT (multispectral): the 13 bands in their stored order, the 10 classes and the record schema.

The one definition of the dataset, shared by the raw reader, the command, the tf.data reader and the
TFDS builder.

Each image is one 64 x 64 GeoTIFF of 13 Sentinel-2 L1C bands, uint16, all at 10 m, in a UTM CRS.
The bands are stored B01, B02, ..., B12 and then B8A LAST (file band 13): the paper lists B8A ninth,
and a peer read the files in the paper's order for years, so B09 ... B12 and B8A were swapped. Here
the band names follow the stored order (``BAND_NAMES``), so ``rgb`` is B04, B03, B02 = file bands 4,
3, 2 and B8A is file band 13.

Classes are the 10 class folders in the order TFDS and torchgeo give them (alphabetical, index 0..9);
``OFFICIAL_COUNTS`` are the published images per class (27,000 in all).

One schema, ``raw``: every band as raw little-endian uint16 bytes (``bands/B01`` ...), the class
index and name, the file name, and the GeoTIFF's CRS and transform.

Source: Helber et al., EuroSAT (IEEE JSTARS 2019); https://github.com/phelber/EuroSAT.
"""
from __future__ import annotations

import re

import numpy as np

from prep.datasets.spec import SINGLE_LABEL, Band, DatasetSpec, Field, Schema
from prep.errors import InputError

NAME = "eurosat_ms"  # the registry, manifest and TFDS builder name (TFDS's own ``eurosat`` is another builder)
VERSION = "1.0.0"
PATCH = (64, 64)
PIXELS = PATCH[0] * PATCH[1]
RESOLUTION_M = 10  # every band as stored (the 20 m and 60 m bands were resampled to 10 m by the publishers)
DTYPE = "uint16"

# The bands in the order the GeoTIFFs store them: B01 ... B12, then B8A (file band 13).
BAND_NAMES = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09", "B10", "B11", "B12", "B8A")
# The native resolution of each band (metres), for documentation and the "10m" / land presets.
NATIVE_RESOLUTION_M = {"B01": 60, "B02": 10, "B03": 10, "B04": 10, "B05": 20, "B06": 20, "B07": 20, "B08": 10,
                       "B09": 60, "B10": 60, "B11": 20, "B12": 20, "B8A": 20}
BAND_KEYS = {n: f"bands/{n}" for n in BAND_NAMES}
# the 10 land bands at native 10 m and 20 m, in the So2Sat / SEN12MS order (B02 ... B08, B8A, B11, B12)
LAND_BANDS = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")
BAND_PRESETS = {
    "rgb": ("B04", "B03", "B02"),
    "10m": ("B04", "B03", "B02", "B08"),  # BigEarthNet's preset: same name, same order
    "10m20m": ("B04", "B03", "B02", "B08", "B05", "B06", "B07", "B8A", "B11", "B12"),  # BigEarthNet's 10 bands
    "land": LAND_BANDS,  # no 60 m band (B01 aerosols, B09 water vapour, B10 cirrus)
    "all": BAND_NAMES,  # the 13 bands in stored order
}

# Class index -> class folder name (the TFDS / torchgeo order) and the published images per class.
CLASS_NAMES = ("AnnualCrop", "Forest", "HerbaceousVegetation", "Highway", "Industrial", "Pasture",
               "PermanentCrop", "Residential", "River", "SeaLake")
OFFICIAL_COUNTS = {"AnnualCrop": 3000, "Forest": 3000, "HerbaceousVegetation": 3000, "Highway": 2500,
                   "Industrial": 2500, "Pasture": 2000, "PermanentCrop": 2500, "Residential": 3000,
                   "River": 2500, "SeaLake": 3000}
NUM_IMAGES = 27_000
CLASS_INDEX = {c: i for i, c in enumerate(CLASS_NAMES)}
_FILE = re.compile(r"^([A-Za-z]+)_(\d+)\.tif$")

FIELDS = tuple(Field(BAND_KEYS[n], "bytes", 1, f"{PATCH[0]}x{PATCH[1]} uint16 little-endian, row-major")
               for n in BAND_NAMES) + (
    Field("label/index", "int64", 1, "class index 0..9 (CLASS_NAMES order)"),
    Field("label/name", "bytes", 1, "class folder name, e.g. 'AnnualCrop'"),
    Field("patch_id", "bytes", 1, "the file name without extension, e.g. 'AnnualCrop_1'"),
    Field("meta/file", "bytes", 1, "the file's path under the class-folder root, e.g. 'AnnualCrop/AnnualCrop_1.tif'"),
    Field("meta/number", "int64", 1, "the image number in the file name (1-based)"),
    Field("geo/crs", "bytes", 1, "CRS of the GeoTIFF (WKT)"),
    Field("geo/epsg", "int64", 1, "EPSG code of the CRS, 0 if it has none"),
    Field("geo/transform", "bytes", 1, "affine a, b, c, d, e, f of the GeoTIFF: 6 float64 LE"),
)
SCHEMAS = {"raw": Schema(name="raw", version="1", fields=FIELDS, band_encoding="raw_bytes",
                         band_keys=dict(BAND_KEYS), label_key="label/index", label_encoding="index")}

SPEC = DatasetSpec(
    name=NAME, version=VERSION, task=SINGLE_LABEL,
    bands=tuple(Band(n, PATCH, DTYPE, RESOLUTION_M, "s2") for n in BAND_NAMES),
    class_names=CLASS_NAMES, schemas=SCHEMAS, default_schema="raw", band_presets=BAND_PRESETS,
    description=("EuroSAT (multispectral): 64x64 Sentinel-2 L1C images, 13 bands uint16 at 10 m stored "
                 "B01..B12 then B8A, 10 land-use/land-cover classes (single label), with CRS and transform."))


class EurosatInputError(InputError):
    """An image, class folder or split file that cannot be prepared: the message names the file and the problem."""


def parse_file_name(name: str) -> tuple[str, int]:
    """``AnnualCrop_1.tif`` -> (``"AnnualCrop"``, 1).

    Args:
      name: a file name (no folder).

    Returns:
      (class name as written, image number).

    Raises:
      ValueError: a name not of the form ``<ClassName>_<n>.tif``.
    """
    m = _FILE.match(name)
    if not m:
        raise ValueError(f"file name {name!r} is not <ClassName>_<n>.tif")
    return m.group(1), int(m.group(2))


def record_values(rel: str, pixels: np.ndarray, georef: dict) -> dict:
    """The feature values of one record.

    Args:
      rel: the file under the class-folder root, ``<ClassName>/<ClassName>_<n>.tif``.
      pixels: uint16 [13, 64, 64] in stored band order (``BAND_NAMES``).
      georef: ``{"crs": WKT, "epsg": int, "transform": 6 floats a, b, c, d, e, f}``.

    Returns:
      ``{feature key: list of values}`` for every field of the schema.
    """
    folder, file = rel.split("/")
    cls, number = parse_file_name(file)
    v = {BAND_KEYS[n]: [np.ascontiguousarray(pixels[i], "<u2").tobytes()] for i, n in enumerate(BAND_NAMES)}
    v["label/index"] = [CLASS_INDEX[folder]]
    v["label/name"] = [folder.encode()]
    v["patch_id"] = [file[:-4].encode()]
    v["meta/file"] = [rel.encode()]
    v["meta/number"] = [number]
    v["geo/crs"] = [georef["crs"].encode()]
    v["geo/epsg"] = [int(georef["epsg"])]
    v["geo/transform"] = [np.asarray(georef["transform"], "<f8").tobytes()]
    return v
