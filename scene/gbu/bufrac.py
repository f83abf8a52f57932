"""BUFRAC: the built-up fraction, a model's built-up probability as float32 0..1 (product 1 of the GBU workflow).

Two inputs are accepted: the scene-inference output (uint16 probability x 10000, nodata 65535,
as ``scene.inference.predict_scene`` and the upstream GHS-S2Net script write it) or a float32
raster already in 0..1 (nodata NaN or the file's nodata value). The product is float32 with
nodata NaN: BUFRAC = prediction / 10000.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from prep.errors import InputError

SCALE = 10000
UINT16_NODATA = 65535


def to_bufrac(values: np.ndarray, dtype: str, nodata: float | None, path: str | os.PathLike = "") -> np.ndarray:
    """Convert a block of a probability raster to BUFRAC.

    Args:
      values: ``(rows, cols)`` raw values as read.
      dtype: the raster's dtype (``"uint16"`` or a float type).
      nodata: the raster's nodata value (65535 assumed for uint16 when unset).
      path: the file, for messages.

    Returns:
      ``(rows, cols)`` float32 in 0..1, NaN where nodata.

    Raises:
      InputError: another dtype, or a value out of range (uint16 above 10000, float outside 0..1).
    """
    if dtype == "uint16":
        nd = UINT16_NODATA if nodata is None else nodata
        invalid = values == nd
        if np.any(values[~invalid] > SCALE):
            raise InputError(f"built-up probability above {SCALE} (max {int(values[~invalid].max())}): "
                             f"expected probability x {SCALE}", path=path)
        out = values.astype(np.float32) / np.float32(SCALE)
        out[invalid] = np.nan
        return out
    if np.dtype(dtype).kind != "f":
        raise InputError(f"built-up probability of dtype {dtype}: expected uint16 (x {SCALE}) or float32 (0..1)",
                         path=path)
    out = values.astype(np.float32, copy=True)
    if nodata is not None and not np.isnan(nodata):
        out[values == nodata] = np.nan
    finite = out[~np.isnan(out)]
    if finite.size and (finite.min() < 0 or finite.max() > 1):
        raise InputError(f"built-up fraction outside 0..1 (min {finite.min():g}, max {finite.max():g})", path=path)
    return out


def read_bufrac(ds: Any, window: Any = None) -> np.ndarray:
    """BUFRAC of one window of an open probability raster (see ``to_bufrac``).

    Args:
      ds: the open single-band raster.
      window: a ``rasterio.windows.Window``, or None for the whole raster.

    Returns:
      ``(rows, cols)`` float32 in 0..1, NaN where nodata.
    """
    return to_bufrac(ds.read(1, window=window), ds.dtypes[0], ds.nodata, ds.name)
