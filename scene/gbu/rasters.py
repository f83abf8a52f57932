"""Reading and writing the GBU products' GeoTIFFs: opening with one-line errors, block windows, profiles.

Every product is a tiled, DEFLATE-compressed GeoTIFF on the grid of its input. Float products are
float32 with nodata NaN; the class product (RES/NRES) is uint8 with nodata 255. Work goes block by
block (``blocks``); steps that look at neighbours read a block with a halo (``read_with_halo``).
"""
from __future__ import annotations

import logging
import os
from typing import Any, Iterator

import numpy as np
import rasterio
from rasterio.windows import Window

from prep.errors import InputError

FLOAT_NODATA = float("nan")
CLASS_NODATA = 255


def open_raster(path: str | os.PathLike, what: str, bands: int | tuple[int, ...] | None = None) -> Any:
    """Open a raster for reading, turning every failure into one ``InputError`` line.

    Args:
      path: the raster file.
      what: what the file should be, for the message ("scene", "built-up probability", ...).
      bands: the band count(s) it must have, or None for any.

    Returns:
      The open ``rasterio`` dataset (the caller closes it).

    Raises:
      InputError: missing or unreadable file, no georeference, or another band count.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError(f"{what} not found", path=path)
    logger = logging.getLogger("rasterio")  # GDAL's own log line would repeat the error below
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        ds = rasterio.open(path)
    except rasterio.errors.RasterioIOError as e:
        raise InputError(f"not a readable raster ({what}): {str(e).splitlines()[0]}", path=path) from None
    finally:
        logger.setLevel(level)
    allowed = (bands,) if isinstance(bands, int) else bands
    if allowed is not None and ds.count not in allowed:
        ds.close()
        want = " or ".join(str(b) for b in allowed)
        raise InputError(f"{what} has {ds.count} band(s), expected {want}", path=path)
    if ds.crs is None:
        ds.close()
        raise InputError(f"{what} has no coordinate reference system", path=path)
    return ds


def read_error(error: BaseException, paths: list[str | os.PathLike | None]) -> InputError:
    """The one-line ``InputError`` for a read that failed on an open raster (a corrupt or truncated block).

    GDAL reports such a failure as a chain of exceptions: the outermost says only "Read failed", the
    innermost what was wrong, and one of them names the file.

    Args:
      error: the ``rasterio`` exception raised by ``read``.
      paths: the input files that were being read (None entries are ignored).

    Returns:
      An ``InputError`` naming the input whose name appears in the messages (else the first input),
      with the innermost message as the problem.
    """
    messages = []
    e: BaseException | None = error
    while e is not None and len(messages) < 20:
        messages.append(str(e).splitlines()[0] if str(e) else type(e).__name__)
        e = e.__cause__ or e.__context__
    given = [os.fspath(p) for p in paths if p]
    named = [p for p in given if any(os.path.basename(p) in m for m in messages)]
    path = (named or given or ["input"])[0]
    return InputError(f"cannot read a block (corrupt or truncated file?): {messages[-1]}", path=path)


def same_grid(a: Any, b: Any) -> None:
    """Refuse two rasters that are not on the same grid (CRS, transform and shape).

    Args:
      a: the reference dataset.
      b: the dataset that must match it (named in the message).

    Raises:
      InputError: the grids differ.
    """
    if a.crs != b.crs or a.shape != b.shape or not a.transform.almost_equals(b.transform):
        raise InputError(f"not on the grid of {a.name} (CRS {b.crs} vs {a.crs}, shape {b.shape} vs {a.shape}, "
                         f"transform {tuple(b.transform)[:6]} vs {tuple(a.transform)[:6]})", path=b.name)


def blocks(height: int, width: int, size: int) -> Iterator[Window]:
    """Row-major windows of at most ``size`` x ``size`` pixels covering a ``height`` x ``width`` raster.

    Args:
      height: raster rows.
      width: raster columns.
      size: block edge in pixels (> 0).

    Returns:
      An iterator of ``rasterio.windows.Window``.
    """
    for row in range(0, height, size):
        for col in range(0, width, size):
            yield Window(col, row, min(size, width - col), min(size, height - row))


def n_blocks(height: int, width: int, size: int) -> int:
    """How many windows ``blocks`` yields (for the progress bar)."""
    return -(-height // size) * -(-width // size)


def halo_window(window: Window, halo: int, height: int, width: int) -> tuple[Window, tuple[slice, slice]]:
    """The window grown by ``halo`` pixels on each side (clipped to the raster) and the slices of the original in it.

    Args:
      window: the block.
      halo: pixels to add on each side.
      height: raster rows.
      width: raster columns.

    Returns:
      ``(grown, (rows, cols))``: reading ``grown`` and indexing ``[rows, cols]`` gives ``window``.
    """
    r0, c0 = max(0, window.row_off - halo), max(0, window.col_off - halo)
    r1 = min(height, window.row_off + window.height + halo)
    c1 = min(width, window.col_off + window.width + halo)
    grown = Window(c0, r0, c1 - c0, r1 - r0)
    inner = (slice(window.row_off - r0, window.row_off - r0 + window.height),
             slice(window.col_off - c0, window.col_off - c0 + window.width))
    return grown, inner


def product_profile(like: Any, dtype: str, count: int = 1, nodata: float | int | None = None) -> dict:
    """The GeoTIFF profile of a product on the grid of ``like``.

    Args:
      like: an open dataset whose CRS, transform and shape the product takes.
      dtype: ``"float32"`` or ``"uint8"``.
      count: number of bands.
      nodata: the nodata value; default NaN for float32 and 255 for uint8.

    Returns:
      A profile for ``rasterio.open(path, "w", **profile)``: tiled 256 x 256 where the raster
      allows it, DEFLATE.
    """
    if nodata is None:
        nodata = FLOAT_NODATA if dtype == "float32" else CLASS_NODATA
    profile = dict(driver="GTiff", dtype=dtype, count=count, nodata=nodata, crs=like.crs, transform=like.transform,
                   width=like.width, height=like.height, compress="deflate")
    if like.width >= 256 and like.height >= 256:
        profile.update(tiled=True, blockxsize=256, blockysize=256)
    return profile


def progress_bar(total: int, desc: str, enabled: bool) -> Any:
    """A tqdm bar over ``total`` blocks (disabled when ``enabled`` is false)."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="block", disable=not enabled, dynamic_ncols=True, leave=False)


def read_float(path: str | os.PathLike) -> np.ndarray:
    """Band 1 of a product as a float32 array with nodata as NaN (for tests and quick-looks).

    Args:
      path: the product GeoTIFF.

    Returns:
      ``(rows, cols)`` float32.
    """
    with rasterio.open(path) as ds:
        a = ds.read(1, masked=True).astype(np.float32)
    return a.filled(np.nan)
