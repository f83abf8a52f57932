"""Scene reflectance and NDVI for the GBU products.

The scene is the GHS-S2Net input: 4 bands in the order B4, B3, B2, B8 (R, G, B, NIR), uint16 BOA
reflectance x 10000. A pixel is valid when all four bands are > 0; values are clipped at 10000
and divided by 10000. Products of processing baseline 04.00 and later carry a +1000 DN offset
(``BOA_ADD_OFFSET`` = -1000), removed with ``offset=1000``.
NDVI = (NIR - R) / (NIR + R) on that reflectance.
"""
from __future__ import annotations

import numpy as np

BANDS = ("R", "G", "B", "NIR")  # B4, B3, B2, B8
SENTINEL2_BANDS = ("B04", "B03", "B02", "B08")
SCALE = 10000


def reflectance(dn: np.ndarray, offset: int = 0) -> np.ndarray:
    """BOA reflectance 0..1 of a block of the 4-band scene.

    Args:
      dn: ``(4, rows, cols)`` uint16 digital numbers in the order R, G, B, NIR.
      offset: DN offset to subtract first (1000 for processing baseline >= 04.00), >= 0.

    Returns:
      ``(4, rows, cols)`` float32 in 0..1; NaN in every band where a band is 0 (invalid pixel).
    """
    valid = np.all(dn > 0, axis=0)
    refl = np.clip(dn.astype(np.float32) - np.float32(offset), 0, SCALE) / np.float32(SCALE)
    refl[:, ~valid] = np.nan
    return refl


def ndvi(refl: np.ndarray) -> np.ndarray:
    """NDVI = (NIR - R) / (NIR + R).

    Args:
      refl: ``(4, rows, cols)`` reflectance from ``reflectance`` (R first, NIR last).

    Returns:
      ``(rows, cols)`` float32 in -1..1; NaN where the pixel is invalid or NIR + R is 0.
    """
    r, nir = refl[0], refl[3]
    total = nir + r
    with np.errstate(invalid="ignore", divide="ignore"):
        out = ((nir - r) / total).astype(np.float32)
    out[total == 0] = np.nan
    return out
