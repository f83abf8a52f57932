"""Areas of interest (``--aoi``): a bounding box or a polygon file, cropping the chain's inputs.

Forms accepted:

- a bounding box ``WEST,SOUTH,EAST,NORTH`` in longitude/latitude degrees (WGS84);
- a GeoJSON file (FeatureCollection, Feature or bare geometry; Polygon or MultiPolygon;
  longitude/latitude as GeoJSON prescribes);
- the GBU workflow's AOI file: ``{"AOI": {NAME: {"coordinates": [[lon, lat], ...], "crs": ...}}}``
  (one closed ring of lon/lat per area; ``crs`` is the UTM zone the upstream workflow works in
  and is not needed here). ``scene/gbu/example_aoi.json`` is one.

A file with several areas needs ``--aoi_name`` (a feature's ``name`` property, or the AOI key).
The inputs are cropped to the area's bounding box on their grid (rounded outwards to whole pixels)
and pixels outside a polygon become nodata.
"""
from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from prep.errors import InputError, UsageError

EXAMPLE = Path(__file__).with_name("example_aoi.json")
_NUMBER = r"\s*(-?[0-9.]+(?:[eE][-+]?[0-9]+)?)\s*"


@dataclass(frozen=True)
class AOI:
    """An area of interest in longitude/latitude (EPSG:4326).

    Attributes:
      name: its name (or the bounding box as given).
      geometry: a GeoJSON-like Polygon or MultiPolygon mapping, lon/lat.
      source: the file or text it came from (for messages).
    """

    name: str
    geometry: dict
    source: str


def _bbox_polygon(west: float, south: float, east: float, north: float) -> dict:
    return {"type": "Polygon", "coordinates": [[[west, south], [east, south], [east, north], [west, north],
                                                [west, south]]]}


def parse_aoi(text: str, name: str | None = None) -> AOI:
    """The area of interest given to ``--aoi`` (see the module doc).

    Args:
      text: ``WEST,SOUTH,EAST,NORTH`` or a path to a GeoJSON / GBU AOI file.
      name: which area of a file with several.

    Returns:
      The ``AOI``.

    Raises:
      UsageError: a malformed bounding box.
      InputError: a missing or malformed file, an unknown ``name``, several areas and no ``name``,
        or a geometry that is not a polygon.
    """
    m = re.fullmatch(",".join([_NUMBER] * 4), text)
    if m:
        west, south, east, north = (float(v) for v in m.groups())
        if not (-180 <= west < east <= 180 and -90 <= south < north <= 90):
            raise UsageError(f"--aoi {text}: expected WEST,SOUTH,EAST,NORTH in degrees with WEST < EAST, SOUTH < NORTH")
        return AOI(text, _bbox_polygon(west, south, east, north), "--aoi")
    if not os.path.isfile(text):
        if "," in text:
            raise UsageError(f"--aoi {text}: expected WEST,SOUTH,EAST,NORTH (four numbers) or a GeoJSON file")
        raise InputError("AOI file not found", path=text)
    try:
        doc = json.loads(Path(text).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"not a readable JSON file: {e}", path=text) from None
    areas = _areas(doc, text)
    if name is None:
        if len(areas) != 1:
            raise InputError(f"{len(areas)} areas: choose one with --aoi_name ({', '.join(areas)})", path=text)
        name = next(iter(areas))
    if name not in areas:
        raise InputError(f"no area named {name!r} (areas: {', '.join(areas)})", path=text)
    return AOI(name, areas[name], text)


def _areas(doc: Any, path: str) -> dict[str, dict]:
    """Name -> polygon geometry of every area in a GeoJSON or GBU AOI document."""
    if isinstance(doc, dict) and isinstance(doc.get("AOI"), dict):
        out = {}
        for key, area in doc["AOI"].items():
            ring = area.get("coordinates") if isinstance(area, dict) else None
            if not isinstance(ring, list) or len(ring) < 4:
                raise InputError(f"AOI {key!r}: 'coordinates' must be a closed ring of at least 4 [lon, lat] points",
                                 path=path)
            out[str(key)] = _checked({"type": "Polygon", "coordinates": [ring]}, f"AOI {key!r}", path)
        return out
    kind = doc.get("type") if isinstance(doc, dict) else None
    if kind == "FeatureCollection":
        features = doc.get("features") or []
    elif kind == "Feature":
        features = [doc]
    elif kind in ("Polygon", "MultiPolygon"):
        features = [{"type": "Feature", "properties": {}, "geometry": doc}]
    else:
        raise InputError(f"not GeoJSON nor a GBU AOI file (type {kind!r})", path=path)
    out = {}
    for i, feature in enumerate(features):
        props = feature.get("properties") or {}
        key = str(props.get("name", props.get("id", i)))
        out[key] = _checked(feature.get("geometry") or {}, f"feature {key!r}", path)
    if not out:
        raise InputError("no features", path=path)
    return out


def _checked(geometry: dict, what: str, path: str) -> dict:
    if geometry.get("type") not in ("Polygon", "MultiPolygon"):
        raise InputError(f"{what}: geometry {geometry.get('type')!r} is not a Polygon or MultiPolygon", path=path)
    try:
        coords = np.asarray([p for ring in _rings(geometry) for p in ring], dtype=np.float64)
    except (TypeError, ValueError):  # text, ragged or nested too deep
        coords = np.empty((0,))
    if coords.ndim != 2 or coords.shape[1] < 2 or not np.isfinite(coords).all():
        raise InputError(f"{what}: coordinates are not [lon, lat] number pairs", path=path)
    if (np.abs(coords[:, 0]) > 180).any() or (np.abs(coords[:, 1]) > 90).any():
        raise InputError(f"{what}: coordinates outside lon/lat degrees (GeoJSON is WGS84 lon/lat)", path=path)
    return geometry


def _rings(geometry: dict) -> list:
    polygons = geometry["coordinates"] if geometry["type"] == "MultiPolygon" else [geometry["coordinates"]]
    return [ring for polygon in polygons for ring in polygon]


def aoi_window(ds: Any, aoi: AOI) -> tuple[Any, np.ndarray]:
    """The window of a raster covering an AOI, and which of its pixels lie inside the AOI.

    Args:
      ds: an open raster.
      aoi: the area of interest.

    Returns:
      ``(window, inside)``: a ``rasterio.windows.Window`` (whole pixels, clipped to the raster) and a
      ``(rows, cols)`` bool array, true where the pixel centre is inside the AOI.

    Raises:
      InputError: the AOI does not overlap the raster.
    """
    from rasterio import features, windows
    from rasterio.warp import transform_geom

    geometry = transform_geom("EPSG:4326", ds.crs, aoi.geometry)
    xs, ys = zip(*[p[:2] for ring in _rings(geometry) for p in ring])
    window = windows.from_bounds(min(xs), min(ys), max(xs), max(ys), transform=ds.transform)
    eps = 1e-6  # of a pixel: an AOI edge on a pixel edge does not take in the next pixel
    c0 = max(0, math.floor(window.col_off + eps))
    r0 = max(0, math.floor(window.row_off + eps))
    c1 = min(ds.width, math.ceil(window.col_off + window.width - eps))
    r1 = min(ds.height, math.ceil(window.row_off + window.height - eps))
    if c1 <= c0 or r1 <= r0:
        raise InputError(f"the area of interest {aoi.name!r} ({aoi.source}) does not overlap the raster", path=ds.name)
    window = windows.Window(c0, r0, c1 - c0, r1 - r0)
    inside = features.geometry_mask([geometry], out_shape=(window.height, window.width),
                                    transform=ds.window_transform(window), invert=True)
    return window, inside


def crop(src_path: str | os.PathLike, dst_path: str | os.PathLike, aoi: AOI, what: str,
         bands: int | tuple[int, ...], fill: float | None = None) -> tuple[int, int]:
    """Write the part of a raster inside an AOI (outside the polygon: ``fill``, which becomes its nodata).

    Args:
      src_path: the input raster.
      dst_path: the cropped copy to write (same dtype, bands and profile).
      aoi: the area of interest.
      what: what the raster is, for messages.
      bands: the band count(s) it must have.
      fill: the value outside the polygon; None: the raster's nodata, else 0 (the scene's nodata:
        a pixel with a band 0 is invalid).

    Returns:
      The cropped ``(rows, cols)``.

    Raises:
      InputError: unreadable input or no overlap.
    """
    import rasterio

    from prep.files import atomic_path
    from scene.gbu.rasters import open_raster

    with open_raster(src_path, what, bands=bands) as ds:
        window, inside = aoi_window(ds, aoi)
        data = ds.read(window=window)
        nodata = fill if fill is not None else ds.nodata if ds.nodata is not None else 0
        data[:, ~inside] = np.array(nodata).astype(data.dtype)
        profile = ds.profile.copy()
        profile.update(width=window.width, height=window.height, transform=ds.window_transform(window),
                       nodata=nodata, driver="GTiff", compress="deflate")
        for key in ("blockxsize", "blockysize", "tiled"):
            profile.pop(key, None)
    with atomic_path(dst_path) as tmp:
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(data)
    return window.height, window.width
