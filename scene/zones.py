"""Which published GHS-S2Net model fits a scene: its UTM grid zone, from a tile name or the scene's CRS.

The GHS-S2Net weights are published per UTM grid zone (``MODEL_CNN_<zone><band>.h5``, e.g.
``MODEL_CNN_32T``: zone 32, latitude band T; FACTS.md §5). A Sentinel-2 tile name (``T32TQM``)
starts with that grid zone. Otherwise the zone comes from the scene's centre: the zone number from a
UTM CRS (EPSG 326xx / 327xx) or from the centre's longitude (with the Norway and Svalbard
exceptions of the UTM grid), the latitude band from the centre's latitude (8° bands C..X without I
and O, X spanning 72°-84°N).
"""
from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from prep.errors import InputError

if TYPE_CHECKING:
    from affine import Affine
    from rasterio.crs import CRS

BANDS = "CDEFGHJKLMNPQRSTUVWX"  # latitude bands from 80°S, 8° each (X: 72°N-84°N)
_TILE = re.compile(r"(?:^|[^A-Z0-9])T?(\d{2})([C-HJ-NP-X])([A-Z]{2})(?:$|[^A-Z0-9])")


def latitude_band(lat: float) -> str:
    """The UTM latitude band letter of a latitude.

    Args:
        lat: latitude in degrees, -80 <= lat <= 84.

    Returns:
        One of ``C`` .. ``X`` (no ``I``, ``O``).

    Raises:
        ValueError: outside the UTM grid's latitudes.
    """
    if not -80.0 <= lat <= 84.0:
        raise ValueError(f"latitude {lat:.4f}° is outside the UTM grid (80°S to 84°N)")
    return BANDS[min(int((lat + 80.0) // 8), len(BANDS) - 1)]


def zone_number(lon: float, lat: float) -> int:
    """The UTM zone number of a point, with the grid's exceptions (32V, 31X-37X).

    Args:
        lon: longitude in degrees.
        lat: latitude in degrees.

    Returns:
        1..60.
    """
    lon = (lon + 180.0) % 360.0 - 180.0
    if 56.0 <= lat < 64.0 and 3.0 <= lon < 12.0:
        return 32
    if 72.0 <= lat < 84.0 and 0.0 <= lon < 42.0:
        return 31 if lon < 9 else 33 if lon < 21 else 35 if lon < 33 else 37
    return min(int((lon + 180.0) // 6) + 1, 60)


def zone_from_tile(name: str) -> str | None:
    """The grid zone (``32T``) named by a Sentinel-2 tile id in ``name``, if any.

    Args:
        name: a tile id (``T32TQM``, ``32TQM``) or a product/file name holding one
            (``S2A_MSIL2A_20230601T102601_N0509_R108_T32TQM_20230601T143305.SAFE``).

    Returns:
        ``<zone number><latitude band>`` without zero-padding (``"9U"`` for ``T09UXA``), or None.
    """
    for m in _TILE.finditer(str(name).upper()):
        number = int(m.group(1))
        if 1 <= number <= 60:
            return f"{number}{m.group(2)}"
    return None


def zone_from_crs(crs: CRS | None, transform: Affine, shape: Sequence[int]) -> str:
    """The grid zone (``33U``) of a scene's centre.

    Args:
        crs: the scene's ``rasterio.crs.CRS``.
        transform: its affine transform.
        shape: ``(rows, cols)``.

    Returns:
        ``<zone number><latitude band>``; the number is the CRS's own for a UTM CRS.

    Raises:
        InputError: no CRS, or a centre outside the UTM grid's latitudes.
    """
    from rasterio.warp import transform as warp

    if crs is None:
        raise InputError("the scene has no CRS, so no UTM zone model can be chosen", hint="give --model")
    col, row = shape[1] / 2.0, shape[0] / 2.0
    x = transform.c + transform.a * col + transform.b * row
    y = transform.f + transform.d * col + transform.e * row
    lons, lats = warp(crs, "EPSG:4326", [x], [y])
    lon, lat = float(lons[0]), float(lats[0])
    if not (math.isfinite(lon) and math.isfinite(lat)):
        raise InputError(f"the scene's centre ({x}, {y}) does not map to a longitude/latitude", hint="give --model")
    epsg = crs.to_epsg()
    try:
        band = latitude_band(lat)
    except ValueError as e:
        raise InputError(str(e), hint="give --model") from None
    if epsg is not None and (32601 <= epsg <= 32660 or 32701 <= epsg <= 32760):
        number = epsg % 100
    else:
        number = zone_number(lon, lat)
    return f"{number}{band}"


def model_name(zone: str) -> str:
    """The registry alias of a zone's published model (``MODEL_CNN_32T``).

    Raises:
        InputError: no model is published for ``zone``.
    """
    from pretrained import registry

    name = f"MODEL_CNN_{zone}"
    if not registry.exists(name):
        raise InputError(f"no published GHS-S2Net model for UTM grid zone {zone} ({name})",
                         hint="give --model (see `python -m pretrained list --all`)")
    return name


def pick_model(crs: CRS | None, transform: Affine, shape: Sequence[int], names: Sequence[str] = ()) -> str:
    """The published model for a scene: by the first tile id found in ``names``, else by its CRS.

    Args:
        crs: the scene's CRS.
        transform: its affine transform.
        shape: ``(rows, cols)``.
        names: file or folder names that may hold a Sentinel-2 tile id (product folder, file).

    Returns:
        The registry alias, e.g. ``MODEL_CNN_32T``.

    Raises:
        InputError: no zone can be found or no model is published for it.
    """
    for name in names:
        zone = zone_from_tile(name)
        if zone is not None:
            return model_name(zone)
    return model_name(zone_from_crs(crs, transform, shape))
