"""Sentinel2GlobalLULC v2.1: the 29 classes, the three RGB bands and the record schemas.

The one definition of the dataset, shared by the raw reader, the command, the reader and the TFDS
builder. Tiles are 224 x 224 pixels at 10 m: an 8-bit RGB composite (B04, B03, B02, the 25th
percentile of cloud-free Sentinel-2 L1C scenes of 2015-06-23..2020-10-27, visualised with min 1,
max 3558). Classes are numbered 1..29; the class index stored in the records is ID - 1, so class
order is ID order (never the order a directory walk gives).

Two schemas, with the same metadata fields:

``jpeg``
    the published JPEG file's bytes as they are (no re-encoding, no loss) in ``image/jpeg``; the
    reader decodes them (band encoding ``jpeg``: one feature holds the three channels).
``raw``
    uint8 pixels per band (``bands/B04`` ...), for GeoTIFF tiles.

Source: Benhammou et al., Sentinel2GlobalLULC (Scientific Data 2022), Zenodo record 6941662.
"""
from __future__ import annotations

import dataclasses

from prep.datasets.spec import SINGLE_LABEL, Band, DatasetSpec, Field, Schema
from prep.errors import InputError

NAME = "sentinel2_global_lulc"
VERSION = "1.0.0"  # of our records; the dataset release is RELEASE
RELEASE = "2.1"
TILE_PX = 224
RESOLUTION_M = 10
NUM_IMAGES_V2_1 = 194_877
# The 8-bit visualisation of the published composites: DN 1 -> 0, DN 3558 -> 255.
VIS_MIN, VIS_MAX = 1, 3558


@dataclasses.dataclass(frozen=True)
class LulcClass:
    """One class: ID (1..29), short name as in file names, Earth Engine asset name, readable name."""

    id: int
    short_name: str
    gee_name: str
    long_name: str

    @property
    def index(self) -> int:
        """The class index stored in records and predicted by models: ``id - 1`` (0..28)."""
        return self.id - 1


# (ID, short name as published (13 characters, some padded with '_'), GEE asset class name, our wording)
CLASSES = tuple(LulcClass(*row) for row in (
    (1, "BarrenLands__", "Barren", "Barren lands"),
    (2, "MossAndLichen", "Moss_and_Lichen", "Moss and lichen"),
    (3, "Grasslands___", "Grassland", "Grasslands"),
    (4, "ShrublandOpen", "Open_Shrubland_50", "Open shrublands"),
    (5, "SrublandClose", "Close_Shrubland_50", "Close shrublands"),
    (6, "ForestsOpDeBr", "Forest_ODB", "Open deciduous broadleaf forests"),
    (7, "ForestsClDeBr", "Forest_CDB", "Close deciduous broadleaf forests"),
    (8, "ForestsDeDeBr", "Forest_DDB", "Dense deciduous broadleaf forests"),
    (9, "ForestsOpDeNe", "Forest_ODN", "Open deciduous needleleaf forests"),
    (10, "ForestsClDeNe", "Forest_CDN", "Close deciduous needleleaf forests"),
    (11, "ForestsDeDeNe", "Forest_DDN", "Dense deciduous needleleaf forests"),
    (12, "ForestsOpEvBr", "Forest_OEB", "Open evergreen broadleaf forests"),
    (13, "ForestsClEvBr", "Forest_CEB", "Close evergreen broadleaf forests"),
    (14, "ForestsDeEvBr", "Forest_DEB", "Dense evergreen broadleaf forests"),
    (15, "ForestsOpEvNe", "Forest_OEN", "Open evergreen needleleaf forests"),
    (16, "ForestsClEvNe", "Forest_CEN", "Close evergreen needleleaf forests"),
    (17, "ForestsDeEvNe", "Forest_DEN", "Dense evergreen needleleaf forests"),
    (18, "WetlandMangro", "Mangrove_masked", "Mangrove wetlands"),
    (19, "WetlandSwamps", "Swamp_masked", "Swamp wetlands"),
    (20, "WetlandMarshl", "Marshland_masked", "Marshland wetlands"),
    (21, "WaterBodyMari", "Marine_Water", "Marine water bodies"),
    (22, "WaterBodyCont", "Continental_Water", "Continental water bodies"),
    (23, "PermanentSnow", "Snow", "Permanent snow"),
    (24, "CropSeasWater", "Cropland_sw_multiply", "Croplands with seasonal water"),
    (25, "CropCereaIrri", "Irrigated_Cereal_Cropland", "Irrigated cereal croplands"),
    (26, "CropCereaRain", "Rainfed_Cereal_Cropland", "Rainfed cereal croplands"),
    (27, "CropBroadIrri", "Irrigated_Broadleaf_Cropland", "Irrigated broadleaf croplands"),
    (28, "CropBroadRain", "Rainfed_Broadleaf_Cropland", "Rainfed broadleaf croplands"),
    (29, "UrbanBlUpArea", "Urban", "Urban and built-up areas"),
))
CLASS_BY_ID = {c.id: c for c in CLASSES}
CLASS_NAMES = tuple(c.short_name for c in CLASSES)  # index order = ID order
NUM_CLASSES = len(CLASSES)

BAND_NAMES = ("B04", "B03", "B02")  # R, G, B: the JPEG's channel order
BAND_PRESETS = {"rgb": BAND_NAMES, "all": BAND_NAMES}
JPEG_KEY = "image/jpeg"
RAW_KEYS = {n: f"bands/{n}" for n in BAND_NAMES}

# The metadata every record holds (both schemas): feature key, kind, documentation.
META_FIELDS = (
    Field("label/index", "int64", 1, "class index 0..28 = class ID - 1"),
    Field("patch_id", "bytes", 1, "the tile's path under the class-folder root, e.g. '<class>/<file>.jpg'"),
    Field("meta/class_id", "int64", 1, "class ID 1..29 as in the file name"),
    Field("meta/class_name", "bytes", 1, "class short name as in the file name (e.g. 'BarrenLands__')"),
    Field("meta/image_id", "int64", 1, "image ID within the class (6 digits in the file name)"),
    Field("meta/purity", "float", 1, "pixel purity of the tile's class, percent (75..100)"),
    Field("meta/ghm", "float", 1, "global Human Modification index at the tile, 0..1"),
    Field("meta/num_s2_images", "int64", 1, "Sentinel-2 images in the composite (CSV); -1 without CSV"),
    Field("geo/lat", "float", 1, "tile centre latitude, degrees (float32 of the 10-decimal value)"),
    Field("geo/lon", "float", 1, "tile centre longitude, degrees"),
    Field("geo/latlon", "bytes", 1, "latitude, longitude as 2 float64 little-endian (exact)"),
    Field("geo/country_code", "bytes", 1, "ISO 3166-1 alpha-2 country code; empty when missing"),
    Field("geo/admin1", "bytes", 1, "first-level administrative area (UTF-8); empty when missing"),
    Field("geo/admin2", "bytes", 1, "second-level administrative area (UTF-8); empty when missing"),
    Field("geo/locality", "bytes", 1, "nearest GeoNames locality (UTF-8); empty when missing"),
)


def _schemas(px: int) -> dict[str, Schema]:
    jpeg = Schema(
        name="jpeg", version="1",
        fields=(Field(JPEG_KEY, "bytes", 1, f"the published {px}x{px} RGB JPEG file, bytes as they are"),)
        + META_FIELDS,
        band_encoding="jpeg", band_keys={n: JPEG_KEY for n in BAND_NAMES},
        label_key="label/index", label_encoding="index")
    raw = Schema(
        name="raw", version="1",
        fields=tuple(Field(RAW_KEYS[n], "bytes", 1, f"{px}x{px} uint8, row-major") for n in BAND_NAMES)
        + META_FIELDS,
        band_encoding="raw_bytes", band_keys=dict(RAW_KEYS),
        label_key="label/index", label_encoding="index")
    return {"jpeg": jpeg, "raw": raw}


def spec_for_tile(px: int = TILE_PX) -> DatasetSpec:
    """The dataset definition for tiles of ``px`` x ``px`` pixels (224 as published; smaller for tests).

    Args:
      px: tile side in pixels (at least 1).

    Returns:
      The ``DatasetSpec``: bands B04 B03 B02 (uint8, 10 m), 29 classes in ID order, schemas jpeg and raw.

    Raises:
      ValueError: ``px`` < 1.
    """
    if px < 1:
        raise ValueError(f"tile size must be positive, got {px}")
    return DatasetSpec(
        name=NAME, version=VERSION, task=SINGLE_LABEL,
        bands=tuple(Band(n, (px, px), "uint8", RESOLUTION_M, "10m") for n in BAND_NAMES),
        class_names=CLASS_NAMES, schemas=_schemas(px), default_schema="jpeg", band_presets=BAND_PRESETS,
        description=(f"Sentinel2GlobalLULC v{RELEASE}: {px}x{px} RGB tiles at 10 m (8-bit composites), "
                     "29 land-use/land-cover classes (single label), with purity, gHM, coordinates and place."))


SPEC = spec_for_tile(TILE_PX)


class LulcInputError(InputError):
    """A tile, class folder or CSV that cannot be converted: the message names the file and the field."""
