"""Quick-look PNGs of the GBU products: each with a title, its CRS, a colour bar or a legend.

Continuous products (BUFRAC, greenness, aggregates) get a colour bar with their unit; the class
product (RES/NRES) a legend of its classes. Nodata is drawn light grey. Large rasters are read
decimated (at most ``max_pixels`` on a side) through GDAL's overviews / nearest resampling.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np

MAX_PIXELS = 800
NODATA_COLOUR = "#d9d9d9"


def _draw(fig: Any, ax: Any, path: str | os.PathLike, *, title: str, label: str = "", cmap: str = "viridis",
          vmin: float | None = None, vmax: float | None = None, classes: dict[int, tuple[str, str]] | None = None,
          max_pixels: int = MAX_PIXELS) -> None:
    """Draw band 1 of a raster on ``ax`` with its colour bar or legend (see ``quicklook``)."""
    import rasterio
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    with rasterio.open(path) as ds:
        scale = max(1.0, max(ds.height, ds.width) / max_pixels)
        shape = (max(1, round(ds.height / scale)), max(1, round(ds.width / scale)))
        data = ds.read(1, out_shape=shape, masked=True)
        crs = ds.crs.to_string() if ds.crs else "no CRS"
        res = ds.res
    ax.set_facecolor(NODATA_COLOUR)
    if classes:
        values = sorted(classes)
        index = np.full(data.shape, -1, dtype=np.int16)
        for i, v in enumerate(values):
            index[np.asarray(data.astype(np.int32).filled(-1)) == v] = i
        shown = np.ma.masked_less(index, 0)
        ax.imshow(shown, cmap=ListedColormap([classes[v][1] for v in values]), vmin=-0.5,
                  vmax=len(values) - 0.5, interpolation="nearest")
        handles = [Patch(color=classes[v][1], label=f"{v}: {classes[v][0]}") for v in values]
        handles.append(Patch(color=NODATA_COLOUR, label="nodata"))
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False)
    else:
        shown = np.ma.masked_invalid(data.astype(np.float32))
        image = ax.imshow(shown, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label=label)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(f"{crs}, pixel {res[0]:g} x {res[1]:g}", fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])


def quicklook(path: str | os.PathLike, png: str | os.PathLike, *, title: str, label: str = "",
              cmap: str = "viridis", vmin: float | None = None, vmax: float | None = None,
              classes: dict[int, tuple[str, str]] | None = None, max_pixels: int = MAX_PIXELS) -> str:
    """Draw band 1 of a raster to a PNG.

    Args:
      path: the product GeoTIFF.
      png: the PNG to write.
      title: the figure title.
      label: the colour bar's label (value and unit).
      cmap: matplotlib colour map of a continuous product.
      vmin: lower end of the colour bar (default: the data's minimum).
      vmax: upper end of the colour bar (default: the data's maximum).
      classes: for a class product, value -> (name, colour); draws a legend instead of a colour bar.
      max_pixels: the longest side drawn, in pixels.

    Returns:
      The PNG's path.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 5.2), dpi=100)
    _draw(fig, ax, path, title=title, label=label, cmap=cmap, vmin=vmin, vmax=vmax, classes=classes,
          max_pixels=max_pixels)
    fig.tight_layout()
    fig.savefig(png, bbox_inches="tight")
    plt.close(fig)
    return os.fspath(png)


def overview(panels: list[tuple[str | os.PathLike, dict]], png: str | os.PathLike, *, dpi: int = 60,
             max_pixels: int = 256) -> str:
    """Several products side by side in one PNG (two per row), each with its colour bar or legend.

    Args:
      panels: ``(raster, options)`` pairs; options are ``quicklook``'s keyword arguments.
      png: the PNG to write.
      dpi: resolution of the figure.
      max_pixels: the longest side drawn of each raster.

    Returns:
      The PNG's path.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = -(-len(panels) // 2)
    fig, axes = plt.subplots(rows, 2, figsize=(11, 4.6 * rows), dpi=dpi, squeeze=False)
    for ax, (path, options) in zip(axes.ravel(), panels):
        _draw(fig, ax, path, max_pixels=max_pixels, **options)
    for ax in axes.ravel()[len(panels):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(png, bbox_inches="tight")
    plt.close(fig)
    return os.fspath(png)
