"""Earth Engine export of tiles: ``python -m prep lulc gee_export --csv GEOCODED --folder DRIVE_FOLDER``.

Needs the optional extra ``earthengine-api`` (``pip install 'eorecords[gee]'``) and Earth Engine
credentials (``earthengine authenticate``); without either it stops with a clear error. For each
row of a geocoded CSV (``geocode`` output: longitude, latitude, purity, class, gHM, country_code,
admin1, admin2, locality) it starts one Drive export of the dataset's composite, built as the
published tiles were:

- ``COPERNICUS/S2`` (Level-1C) joined (same ``system:index``) with ``COPERNICUS/S2_CLOUD_PROBABILITY``;
  each scene masked to pixels of cloud probability below 20;
- dates 2015-06-23 to 2020-10-27 (``filterDate``, end exclusive as in Earth Engine);
- per-band 25th percentile (``ee.Reducer.percentile([25])``), then ``unmask(0)``;
- region: a box of +-0.01 degree around the tile centre;
- visualised B4/B3/B2 (``B4_p25``, ``B3_p25``, ``B2_p25``) with min 1, max 3558 -> 8-bit RGB;
- exported at scale 10 m as GeoTIFF, named with the published file-name pattern
  (raw.TileName.file_stem: class ID and short name, purity %, 6-digit image ID numbered per class
  in row order from ``--first_image_id``, gHM, 10-decimal lat/lon, places with '-' for spaces).

Purity given as a fraction (<= 1) is written as a percentage.
"""
from __future__ import annotations

import csv
import functools
import types
from typing import Any, Sequence

from absl import flags

from prep import cli
from prep.datasets.sentinel2_global_lulc import raw
from prep.datasets.sentinel2_global_lulc import spec as sp
from prep.datasets.sentinel2_global_lulc.spec import LulcInputError

FLAGS = flags.FLAGS
L1C = "COPERNICUS/S2"
CLOUD_PROBABILITY = "COPERNICUS/S2_CLOUD_PROBABILITY"
START, END = "2015-06-23", "2020-10-27"
MAX_CLOUD_PROBABILITY = 20
PERCENTILE = 25
HALF_BOX_DEG = 0.01
VIS_BANDS = ("B4_p25", "B3_p25", "B2_p25")
SCALE_M = 10


@functools.cache
def define_flags() -> None:
    """Declare the flags of ``gee_export``."""
    flags.DEFINE_string("csv", None, "Geocoded CSV (python -m prep lulc geocode output, with header).")
    flags.DEFINE_string("folder", "Sentinel2GlobalLULC", "Google Drive folder of the exports.")
    flags.DEFINE_string("project", None, "Google Cloud project for ee.Initialize (default: the credentials').")
    flags.DEFINE_integer("first_image_id", 1, "Image ID of each class's first row.", lower_bound=0)
    flags.DEFINE_integer("max_tasks", 0, "Start at most this many exports (0 = all rows).", lower_bound=0)


def import_ee() -> types.ModuleType:
    """The ``ee`` module.

    Raises:
      LulcInputError: earthengine-api is not installed (the message says how to install it).
    """
    try:
        import ee
    except ImportError:
        raise LulcInputError("gee_export needs the optional extra earthengine-api: "
                             "pip install 'eorecords[gee]' (or pip install earthengine-api)") from None
    return ee


def initialize(ee: Any, project: str | None = None) -> None:
    """``ee.Initialize`` with a clear error when there are no usable credentials.

    Raises:
      LulcInputError: Earth Engine refused to initialise (no credentials, no project).
    """
    try:
        ee.Initialize(project=project) if project else ee.Initialize()
    except Exception as e:  # ee.EEException, google.auth errors...
        raise LulcInputError(f"Earth Engine credentials: ee.Initialize failed ({e}); run `earthengine "
                             "authenticate` (and pass --project) first") from None


def class_id(value: str) -> int:
    """A class column value (ID 1..29, short name or Earth Engine class name) -> class ID.

    Raises:
      LulcInputError: no class of that ID or name.
    """
    v = value.strip()
    if v.isdigit() and int(v) in sp.CLASS_BY_ID:
        return int(v)
    try:
        if float(v).is_integer() and int(float(v)) in sp.CLASS_BY_ID:
            return int(float(v))
    except ValueError:
        pass
    for c in sp.CLASSES:
        if v in (c.short_name, c.short_name.rstrip("_"), c.gee_name):
            return c.id
    raise LulcInputError(f"field 'class' = {value!r}: no class of that ID (1..29) or name")


def tile_names(path: str, first_image_id: int = 1) -> list[raw.TileName]:
    """The tiles of a geocoded CSV, named as published (image IDs numbered per class in row order).

    Raises:
      LulcInputError: a missing header column or a bad value (naming the file, line and field).
    """
    out, next_id = [], {}
    with open(path, encoding="utf-8", newline="") as fh:
        rows = csv.DictReader(fh)
        need = {"longitude", "latitude", "purity", "class", "gHM", "country_code", "admin1", "admin2", "locality"}
        if not need <= set(rows.fieldnames or ()):
            raise LulcInputError(f"{path}: line 1: header lacks {sorted(need - set(rows.fieldnames or ()))} "
                                 "(use the geocode command's output)")
        for line, r in enumerate(rows, 2):
            try:
                cid = class_id(r["class"])
                purity = float(r["purity"])
                vals = float(r["longitude"]), float(r["latitude"]), float(r["gHM"])
            except (LulcInputError, ValueError) as e:
                raise LulcInputError(f"{path}: line {line}: {e}") from None
            lon, lat, ghm = vals
            image_id = next_id.get(cid, first_image_id)
            next_id[cid] = image_id + 1
            out.append(raw.TileName(cid, sp.CLASS_BY_ID[cid].short_name, purity * 100 if purity <= 1 else purity,
                                    image_id, ghm, lat, lon, r["country_code"], r["admin1"], r["admin2"],
                                    r["locality"]))
    return out


def composite(ee: Any, lon: float, lat: float) -> tuple[Any, Any]:
    """The visualised 8-bit composite of one tile and its region (see the module doc for every parameter).

    Args:
      ee: the ``ee`` module (or a stand-in with the same API, for tests).
      lon: tile centre longitude, degrees.
      lat: tile centre latitude, degrees.

    Returns:
      (the visualised ``ee.Image``, the ``ee.Geometry.Rectangle`` region).
    """
    region = ee.Geometry.Rectangle([lon - HALF_BOX_DEG, lat - HALF_BOX_DEG, lon + HALF_BOX_DEG, lat + HALF_BOX_DEG])
    s2 = ee.ImageCollection(L1C).filterBounds(region).filterDate(START, END)
    clouds = ee.ImageCollection(CLOUD_PROBABILITY).filterBounds(region).filterDate(START, END)
    joined = ee.Join.saveFirst("cloud_mask").apply(
        primary=s2, secondary=clouds,
        condition=ee.Filter.equals(leftField="system:index", rightField="system:index"))

    def mask_clouds(img):
        probability = ee.Image(img.get("cloud_mask")).select("probability")
        return img.updateMask(probability.lt(MAX_CLOUD_PROBABILITY))

    reduced = ee.ImageCollection(joined).map(mask_clouds).reduce(ee.Reducer.percentile([PERCENTILE])).unmask(0)
    image = reduced.visualize(bands=list(VIS_BANDS), min=sp.VIS_MIN, max=sp.VIS_MAX)
    return image, region


def export_tiles(ee: Any, names: Sequence[raw.TileName], folder: str, max_tasks: int = 0) -> list[str]:
    """Starts one Drive export per tile; returns the export names (file-name stems).

    Args:
      ee: the ``ee`` module, initialised (or a stand-in).
      names: the tiles (``tile_names``).
      folder: Google Drive folder.
      max_tasks: start at most this many (0 = all).
    """
    started = []
    for n in names[:max_tasks or None]:
        image, region = composite(ee, n.lon, n.lat)
        stem = n.file_stem()
        task = ee.batch.Export.image.toDrive(image=image, description=stem[:100], folder=folder,
                                             fileNamePrefix=stem, region=region, scale=SCALE_M,
                                             fileFormat="GeoTIFF", maxPixels=int(1e9))
        task.start()
        started.append(stem)
    return started


def main(argv: list[str]) -> int:
    """Start the exports the flags describe."""
    cli.no_arguments(argv)
    cli.required("csv")
    names = tile_names(FLAGS.csv, FLAGS.first_image_id)
    ee = import_ee()
    initialize(ee, FLAGS.project)
    started = export_tiles(ee, names, FLAGS.folder, FLAGS.max_tasks)
    print(f"{len(started)} exports started to Drive folder {FLAGS.folder!r}")
    return 0
