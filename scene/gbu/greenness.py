"""Greenness (product 3 of the GBU workflow): NDVI inside the closed built-up area.

The built-up mask (cleaned BUFRAC > 0) is closed morphologically (dilation then erosion,
``scipy.ndimage``) with an elliptical kernel, 60 x 60 px by default; greenness is the NDVI
there and nodata elsewhere. Stored as float32 with nodata NaN (upstream writes it with an integer
profile, which truncates every NDVI to 0 or +-1).

Borders: outside the raster counts as not built-up for the dilation and is ignored by the
erosion (as OpenCV's default border does), so the closing does not eat into the scene's edges.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

KERNEL = (60, 60)


def ellipse_kernel(height: int, width: int) -> np.ndarray:
    """The elliptical structuring element of a ``height`` x ``width`` box, drawn as OpenCV draws it.

    OpenCV's ``getStructuringElement(MORPH_ELLIPSE, (width, height))`` (the upstream kernel) fills,
    with r = height // 2 and c = width // 2, the row at dy = i - r (|dy| <= r) from column c - dx to
    c + dx, where dx = round(c * sqrt(1 - dy^2 / r^2)) (clipped to the box). Its anchor, the pixel
    (r, c), is scipy's default centre too. A 3 x 3 kernel is a cross; 60 x 60 a disc of radius 30.

    Args:
      height: rows, >= 1.
      width: columns, >= 1.

    Returns:
      ``(height, width)`` bool.
    """
    r, c = height // 2, width // 2
    kernel = np.zeros((height, width), dtype=bool)
    for i in range(height):
        dy = i - r
        if abs(dy) > r:
            continue
        dx = int(np.rint(c * np.sqrt(max(r * r - dy * dy, 0) / (r * r)))) if r else c
        kernel[i, max(c - dx, 0):min(c + dx + 1, width)] = True
    return kernel


def close_mask(mask: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Morphological closing of a bool mask (see the module doc for the borders).

    Args:
      mask: ``(rows, cols)`` bool.
      kernel: bool structuring element from ``ellipse_kernel``.

    Returns:
      ``(rows, cols)`` bool; contains ``mask`` (a closing is extensive).
    """
    dilated = ndimage.binary_dilation(mask, structure=kernel, border_value=0)
    return ndimage.binary_erosion(dilated, structure=kernel, border_value=1)


def halo(kernel: np.ndarray) -> int:
    """Pixels of context a block needs on each side so that its closing equals the whole raster's."""
    return int(max(kernel.shape))


def greenness(ndvi: np.ndarray, built: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """NDVI inside the closing of the built-up mask, NaN elsewhere.

    Args:
      ndvi: ``(rows, cols)`` NDVI (NaN = invalid).
      built: ``(rows, cols)`` bool built-up mask (cleaned BUFRAC > 0).
      kernel: structuring element from ``ellipse_kernel``.

    Returns:
      ``(rows, cols)`` float32, NaN outside the closed mask.
    """
    closed = close_mask(built, kernel)
    return np.where(closed, ndvi, np.nan).astype(np.float32)
