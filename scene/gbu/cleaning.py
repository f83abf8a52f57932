"""Cleaning BUFRAC (product 2 of the GBU workflow): weak built-up, streets and vegetation set to 0.

In the upstream order: BUFRAC <= ``threshold`` (0.1) -> 0; then, with a street mask, pixels whose
centre lies inside a buffered street -> 0 and the other pixels the buffer touches x 0.5; then
BUFRAC -> 0 where NDVI > ``ndvi_max`` (0.3). Nodata (NaN) stays nodata. float32, nodata NaN.
"""
from __future__ import annotations

import numpy as np

THRESHOLD = 0.1
NDVI_MAX = 0.3
TOUCHED_FACTOR = 0.5


def clean(bufrac: np.ndarray, ndvi: np.ndarray | None = None, *, street_centre: np.ndarray | None = None,
          street_touched: np.ndarray | None = None, threshold: float = THRESHOLD,
          ndvi_max: float = NDVI_MAX) -> np.ndarray:
    """The cleaned BUFRAC of a block.

    Args:
      bufrac: ``(rows, cols)`` float32 BUFRAC 0..1, NaN = nodata.
      ndvi: ``(rows, cols)`` NDVI, or None to skip the vegetation rule (NaN NDVI leaves BUFRAC as is).
      street_centre: ``(rows, cols)`` bool, pixel centre inside a buffered street (-> 0), or None.
      street_touched: ``(rows, cols)`` bool, pixel touched by a buffered street (others x 0.5), or None.
      threshold: BUFRAC at or below it -> 0.
      ndvi_max: NDVI above it -> 0.

    Returns:
      ``(rows, cols)`` float32 0..1, NaN where ``bufrac`` is NaN.
    """
    out = np.array(bufrac, dtype=np.float32, copy=True)
    with np.errstate(invalid="ignore"):
        out[out <= threshold] = 0
        if street_touched is not None:
            half = street_touched if street_centre is None else street_touched & ~street_centre
            out[half] *= np.float32(TOUCHED_FACTOR)
        if street_centre is not None:
            out[street_centre] = 0
        if ndvi is not None:
            out[ndvi > ndvi_max] = 0
    out[np.isnan(bufrac)] = np.nan
    return out
