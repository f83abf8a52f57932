"""The street mask for cleaning BUFRAC: street lines buffered by their width, rasterized two ways.

Input: a vector file (anything ``geopandas.read_file`` opens: GeoPackage, GeoJSON, Shapefile, ...)
of LineString / MultiLineString features with a width attribute in metres (the street's full
width: each line is buffered by width / 2, flat ends kept round as shapely's default). Pixels whose
centre lies inside a buffer form the *centre* mask (BUFRAC -> 0); every pixel a buffer touches
forms the *touched* mask (the touched pixels outside the centre mask: BUFRAC x 0.5).

The vector's CRS must be known. One other than the raster's is reprojected to it (``reproject``)
or refused with an error. The raster must be in a projected CRS in metres (widths are metres).
Needs the optional extra ``streets`` (geopandas, shapely): ``pip install eorecords[streets]``.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from prep.errors import InputError, UsageError

WIDTH_FIELD = "width"


def load_streets(path: str | os.PathLike, raster_crs: Any, *, width_field: str = WIDTH_FIELD,
                 reproject: bool = True) -> list:
    """The buffered street polygons of a vector file, in the raster's CRS.

    Args:
      path: the vector file.
      raster_crs: the CRS of the raster to mask (``rasterio.crs.CRS``).
      width_field: the attribute holding each street's width in metres.
      reproject: reproject a vector in another CRS (True) or refuse it (False).

    Returns:
      A list of shapely polygons (one per street; empty geometries dropped: they cover nothing).

    Raises:
      UsageError: geopandas/shapely (the ``streets`` extra) are not installed.
      InputError: missing or unreadable file, no CRS, a CRS mismatch with ``reproject`` false, a
        raster CRS not in metres, no width attribute, a width that is missing or not > 0, or a
        geometry that is not a line (the rows are named).
    """
    try:
        import geopandas as gpd
    except ImportError:
        raise UsageError("--streets needs geopandas and shapely: pip install 'eorecords[streets]'") from None
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError("street vector file not found", path=path)
    try:
        frame = gpd.read_file(path)
    except Exception as e:  # noqa: BLE001 - pyogrio/fiona raise their own types for unreadable files
        raise InputError(f"not a readable vector file: {str(e).splitlines()[0]}", path=path) from None
    if frame.crs is None:
        raise InputError("street vector file has no CRS", path=path, hint="set it, e.g. with ogr2ogr -a_srs")
    if not raster_crs.is_projected or "metre" not in (raster_crs.linear_units or "").lower():
        raise InputError(f"street widths are metres but the raster CRS {raster_crs} is not projected in metres",
                         path=path)
    target = raster_crs.to_wkt()
    from pyproj import CRS

    if not CRS.from_user_input(frame.crs).equals(CRS.from_wkt(target)):
        if not reproject:
            raise InputError(f"street vector CRS {frame.crs.to_string()} differs from the raster's {raster_crs}",
                             path=path, hint="reproject it, or drop --nostreets_reproject")
        frame = frame.to_crs(target)
    if width_field not in frame.columns:
        raise InputError(f"no width attribute {width_field!r} (attributes: {', '.join(map(str, frame.columns))})",
                         path=path)
    import pandas as pd

    # a text attribute ("wide", "") is no width: coerced to NaN, reported with the rows below
    widths = pd.to_numeric(frame[width_field], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = np.flatnonzero(~(widths > 0))
    if bad.size:
        raise InputError(f"{bad.size} street(s) without a width > 0 (a number, metres) in {width_field!r}, "
                         f"rows {bad[:5].tolist()}", path=path)
    kinds = frame.geometry.geom_type
    not_lines = np.flatnonzero(~kinds.isin(["LineString", "MultiLineString"]).to_numpy() & ~frame.geometry.is_empty)
    if not_lines.size:
        raise InputError(f"{not_lines.size} geometries are not lines (e.g. {kinds.iloc[not_lines[0]]}), "
                         f"rows {not_lines[:5].tolist()}", path=path)
    buffered = frame.geometry.buffer(widths / 2)
    return [g for g in buffered if g is not None and not g.is_empty]


def street_masks(polygons: list, transform: Any, shape: tuple[int, int], tree: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Rasterize buffered streets onto a block.

    Args:
      polygons: from ``load_streets``.
      transform: the block's affine transform.
      shape: ``(rows, cols)`` of the block.
      tree: a ``shapely.STRtree`` of ``polygons`` (``street_index``), to rasterize only the streets
        near the block; None: all of them.

    Returns:
      ``(centre, touched)``, two ``(rows, cols)`` bool arrays: pixel centre inside a polygon, and
      pixel touched by a polygon (``centre`` implies ``touched``).
    """
    from rasterio import features
    from rasterio.transform import array_bounds

    if tree is not None and polygons:
        from shapely.geometry import box

        west, south, east, north = array_bounds(shape[0], shape[1], transform)
        polygons = [polygons[i] for i in sorted(tree.query(box(west, south, east, north)))]
    if not polygons:
        empty = np.zeros(shape, dtype=bool)
        return empty, empty.copy()
    centre = features.rasterize(((p, 1) for p in polygons), out_shape=shape, transform=transform, fill=0,
                                dtype="uint8", all_touched=False).astype(bool)
    touched = features.rasterize(((p, 1) for p in polygons), out_shape=shape, transform=transform, fill=0,
                                 dtype="uint8", all_touched=True).astype(bool)
    return centre, touched | centre


def street_index(polygons: list) -> Any:
    """A ``shapely.STRtree`` of the buffered streets, for ``street_masks`` block by block."""
    from shapely import STRtree

    return STRtree(polygons)
