"""The project's patch classifiers over a scene: one prediction per tile, written as a coarse raster.

A model trained by train.py (a run folder, or a ``.keras`` file with ``input_config.json`` beside
it) classifies patches of ``H x W`` pixels (its ``input_spec``, e.g. 120 x 120 for BigEarthNet-S2).
``predict_tiles`` cuts the scene into non-overlapping tiles of that size from the top-left corner,
normalises them as the model's input pipeline did (float32, then ``(value - mean) / std`` per band
with the statistics recorded in ``input_config.json``), and writes one pixel per tile: a band per
class holding its probability (sigmoid for multi-label models, softmax for single-label ones) x 10000
as uint16, nodata 65535, with the scene's CRS and the transform scaled by the tile size. Rows and
columns left over at the bottom and right (less than a tile) are reported, not classified.

A segmentation model (``task`` "segmentation" in ``input_config.json``, e.g. ``UNet-ResNet50``
trained on SEN12MS masks) gives a class per pixel instead: the output is on the scene's grid, one
uint8 band of class ids (0-based, in the order of ``classes``, which the band's ``classes`` tag
lists), nodata 255 at pixels where any band equals the file's nodata value and in the rows and
columns left over. Tiles do not overlap, so a prediction at a tile's border sees only its tile.

The scene is a GeoTIFF on the model's grid (e.g. 10 m, the 20 m bands already resampled) holding
the model's bands: named by the band descriptions (any order) or, without descriptions, exactly
the model's bands in its order. A tile touching a pixel equal to the file's nodata value in any
band is nodata. Models with one input per resolution group (K-BranchCNN with ``per_resolution``)
are not supported.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from absl import logging

from prep import files
from prep.errors import InputError

NODATA = 65535
SCALE = 10000
CLASS_NODATA = 255  # segmentation output: uint8 class ids
CONFIG = "input_config.json"
RUN_MODELS = ("best.keras", "final.keras")


def find_model(model: str | os.PathLike) -> tuple[Path, dict] | None:
    """The ``.keras`` file and parsed ``input_config.json`` of a train.py run folder or model file.

    Args:
        model: a run folder (``best.keras``, else ``final.keras``) or a ``.keras`` file.

    Returns:
        ``(model file, input config)``, or None when ``model`` is neither or has no input_config.json.

    Raises:
        InputError: ``input_config.json`` exists but is not JSON.
    """
    path = Path(os.path.expanduser(os.fspath(model)))
    if path.is_dir():
        found = [path / name for name in RUN_MODELS if (path / name).is_file()]
        config = path / CONFIG
        if not found:
            return None
        path = found[0]
    elif path.is_file() and path.suffix == ".keras":
        config = path.parent / CONFIG
    else:
        return None
    if not config.is_file():
        return None
    try:
        return path, json.loads(config.read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"not a readable input config ({e})", config) from None


def is_tile_model(model: str | os.PathLike | None) -> bool:
    """Whether ``model`` is a patch classifier for ``predict_tiles`` (not GHS-S2Net's 5x5 window).

    Args:
        model: the ``--model`` value, or None.

    Returns:
        True for a run folder / ``.keras`` file with ``input_config.json`` whose input is not 5x5.
    """
    if model is None:
        return False
    found = find_model(model)
    if found is None:
        return False
    spec = found[1].get("input_spec", {})
    return not (list(spec) == ["image"] and list(spec["image"][:2]) == [5, 5])


def _band_order(ds, bands: list[str], src: Path) -> list[int]:
    names = list(ds.descriptions)
    if all(names):
        missing = [b for b in bands if b not in names]
        if missing:
            raise InputError(f"no band named {', '.join(missing)} (bands: {', '.join(names)}); the model needs "
                             f"{', '.join(bands)}", src)
        return [names.index(b) + 1 for b in bands]
    if ds.count != len(bands):
        raise InputError(f"{ds.count} unnamed bands; the model needs {len(bands)} ({', '.join(bands)}), so name them "
                         f"(band descriptions) or give exactly those in that order", src)
    return list(range(1, len(bands) + 1))


def _probabilities(logits: np.ndarray, task: str) -> np.ndarray:
    logits = logits.astype(np.float64)
    if task == "multi_label":
        return 1.0 / (1.0 + np.exp(-logits))
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def predict_tiles(src: str | os.PathLike, dst: str | os.PathLike, *, model: str | os.PathLike,
                  batch_size: int = 64, progress: bool = True) -> dict[str, Any]:
    """Classifies a scene tile by tile with a train.py model and writes the coarse probability raster.

    Args:
        src: a GeoTIFF on the model's grid holding its bands (see the module docstring).
        dst: the output GeoTIFF: a band per class (description = class name), probability x 10000
            as uint16, nodata 65535; pixel = one tile; the scene's CRS, its transform scaled by the tile.
        model: a train.py run folder or a ``.keras`` file with ``input_config.json`` beside it.
        batch_size: tiles per model call.
        progress: show a progress bar (tiles).

    Returns:
        ``{"path", "tiles": [rows, cols], "tile": [H, W], "nodata_tiles", "unclassified": [rows, cols]}``;
        ``unclassified`` counts the scene's bottom rows and right columns left over. A segmentation
        model (``task`` "segmentation") writes a uint8 class-id band on the scene's grid instead
        (nodata 255; see the module docstring): ``nodata_tiles`` is then None and
        ``nodata_pixels`` counts the nodata pixels inside the tiles.

    Raises:
        InputError: no such model or no input_config.json, a model with several inputs, or a scene
            without the model's bands or smaller than one tile.
    """
    import rasterio
    from affine import Affine
    from rasterio.errors import RasterioError
    from rasterio.windows import Window
    from tqdm.auto import tqdm

    import models

    found = find_model(model)
    if found is None:
        raise InputError("not a train.py run folder or .keras file with input_config.json beside it", model)
    model_file, config = found
    spec = config.get("input_spec", {})
    if config.get("per_resolution") or list(spec) != ["image"]:
        raise InputError(f"the model has inputs {sorted(spec)}; scene tiles need one 'image' input", model_file)
    th, tw, channels = (int(n) for n in spec["image"])
    bands = list(config.get("bands", []))
    if len(bands) != channels:
        raise InputError(f"input_config lists {len(bands)} bands for {channels} channels", model_file)
    stats = config.get("statistics")
    mean = np.array([stats[b]["mean"] for b in bands], np.float32) if stats else np.zeros(channels, np.float32)
    std = np.array([stats[b]["std"] for b in bands], np.float32) if stats else np.ones(channels, np.float32)
    classes = list(config.get("classes", []))
    net = models.load_model(str(model_file))

    def feed(x):
        return {"image": x} if isinstance(net.input, dict) else x
    src, dst = Path(src), Path(dst)
    try:
        ds = rasterio.open(src)
    except RasterioError as e:
        raise InputError(f"not a readable raster ({e})", src) from None
    with ds:
        order = _band_order(ds, bands, src)
        rows, cols = ds.height // th, ds.width // tw
        if rows == 0 or cols == 0:
            raise InputError(f"a {ds.height}x{ds.width} scene is smaller than one {th}x{tw} tile", src)
        left = [ds.height - rows * th, ds.width - cols * tw]
        if any(left):
            logging.warning("%s: the last %d rows and %d columns (less than a %dx%d tile) are not classified",
                            src, left[0], left[1], th, tw)
        nodata = ds.nodata
        n_out = int(net.outputs[0].shape[-1])
        if config.get("task") == "segmentation":
            return _segment(ds, dst, net, feed, order, (th, tw), mean, std, classes, batch_size, progress) | {
                "tiles": [rows, cols], "tile": [th, tw], "unclassified": left}
        profile = {"driver": "GTiff", "height": rows, "width": cols, "count": n_out, "dtype": "uint16",
                   "crs": ds.crs, "transform": ds.transform @ Affine.scale(tw, th), "nodata": NODATA,
                   "compress": "deflate"}
        n_nodata = 0
        with files.atomic_path(dst) as tmp, rasterio.open(tmp, "w", **profile) as out, \
                tqdm(total=rows * cols, unit="tile", disable=not progress, desc=f"tiles {dst.name}") as bar:
            if len(classes) == n_out:
                out.descriptions = tuple(classes)
            for r in range(rows):
                strip = ds.read(order, window=Window(0, r * th, cols * tw, th)).astype(np.float32)
                tiles = strip.reshape(channels, th, cols, tw).transpose(2, 1, 3, 0)  # [cols, th, tw, C]
                bad = (np.zeros(cols, bool) if nodata is None
                       else np.any(tiles == np.float32(nodata), axis=(1, 2, 3)))
                x = (tiles - mean) / std
                logits = np.concatenate([np.asarray(net(feed(x[i:i + batch_size]), training=False))
                                         for i in range(0, cols, batch_size)])
                values = (_probabilities(logits, config.get("task", "single_label")) * SCALE).astype(np.uint16).T
                values[:, bad] = NODATA  # [classes, cols]
                n_nodata += int(bad.sum())
                out.write(values[:, None, :], window=Window(0, r, cols, 1))
                bar.update(cols)
    return {"path": str(dst), "tiles": [rows, cols], "tile": [th, tw], "nodata_tiles": n_nodata,
            "unclassified": left}


def _segment(ds, dst: Path, net, feed, order: list[int], tile: tuple[int, int], mean: np.ndarray, std: np.ndarray,
             classes: list[str], batch_size: int, progress: bool) -> dict[str, Any]:
    """``predict_tiles`` for a segmentation model: a class id per pixel on the scene's grid (module docstring)."""
    import rasterio
    from rasterio.windows import Window
    from tqdm.auto import tqdm

    th, tw = tile
    rows, cols = ds.height // th, ds.width // tw
    channels = len(order)
    profile = {"driver": "GTiff", "height": ds.height, "width": ds.width, "count": 1, "dtype": "uint8",
               "crs": ds.crs, "transform": ds.transform, "nodata": CLASS_NODATA, "compress": "deflate",
               "tiled": True, "blockxsize": 256, "blockysize": 256}
    n_nodata = 0
    with files.atomic_path(dst) as tmp, rasterio.open(tmp, "w", **profile) as out, \
            tqdm(total=rows * cols, unit="tile", disable=not progress, desc=f"tiles {dst.name}") as bar:
        out.update_tags(1, classes=json.dumps(classes))
        out.descriptions = ("class",)
        blank = np.full((ds.height, ds.width), CLASS_NODATA, np.uint8)
        out.write(blank, 1)  # the rows and columns left over stay nodata
        for r in range(rows):
            strip = ds.read(order, window=Window(0, r * th, cols * tw, th)).astype(np.float32)
            tiles_ = strip.reshape(channels, th, cols, tw).transpose(2, 1, 3, 0)  # [cols, th, tw, C]
            x = (tiles_ - mean) / std
            logits = np.concatenate([np.asarray(net(feed(x[i:i + batch_size]), training=False))
                                     for i in range(0, cols, batch_size)])  # [cols, th, tw, K]
            ids = np.argmax(logits, axis=-1).astype(np.uint8).transpose(1, 0, 2).reshape(th, cols * tw)
            if ds.nodata is not None:
                bad = np.any(strip == np.float32(ds.nodata), axis=0)
                ids[bad] = CLASS_NODATA
                n_nodata += int(bad.sum())
            out.write(ids, 1, window=Window(0, r * th, cols * tw, th))
            bar.update(cols)
    return {"path": str(dst), "nodata_pixels": n_nodata, "nodata_tiles": None}
