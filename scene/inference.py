"""GHS-S2Net over a whole scene, block by block: ``predict_scene`` (used by ``predict.py`` and scene/gbu).

For each block of the grid (``scene.windows``) the block and a 2-pixel halo are read (windowed
rasterio reads; reflect padding only at the scene's edges), converted to reflectance
(``scene.inputs``) and passed through the convolutional form of GHS-S2Net
(``models.ghs.to_convolutional``) in strips of about ``batch_size`` output pixels. So peak memory
depends on ``block_size`` and ``batch_size``, never on the scene's size (GDAL's block cache is held
to ``GDAL_CACHE_MB`` unless ``$GDAL_CACHEMAX`` is set).

Output, as upstream: the built-up probability x 10000 truncated to uint16, 65535 (nodata) where any
input band is 0; a tiled (512 x 512), DEFLATE-compressed GeoTIFF with the input's CRS and transform,
or a Cloud-Optimized GeoTIFF (average overviews) with ``cog=True``.

Resuming: the blocks go into ``<dst>.part`` (raw uint16, row-major) and the indices of finished
blocks into ``<dst>.part.json`` with what identifies the run (input files, offsets, model, block
size). A run that finds both and the same identity skips the finished blocks; when every block is
done the GeoTIFF is written from ``.part`` in one pass, renamed over ``dst`` and the two files are
removed. An interrupted and resumed run therefore writes the same bytes as an uninterrupted one.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from absl import logging

from models import ghs
from prep import files
from prep.errors import InputError
from scene import inputs, windows, zones

NODATA = 65535
SCALE = 10000
TILE = 512  # output GeoTIFF tile side
STATE_VERSION = 1
DEFAULT_BATCH_SIZE = windows.DEFAULT_BATCH_SIZE
GDAL_CACHE_MB = 64  # GDAL's block cache while predicting (unless $GDAL_CACHEMAX says otherwise)


def load_model(model: str | os.PathLike, *, cache: str | os.PathLike | None = None,
               progress: bool = True) -> Any:
    """Loads GHS-S2Net weights and returns the model's convolutional form (sigmoid outputs).

    Args:
        model: a registry name or alias (``MODEL_CNN_32T``, ``ghs-s2net-32T``: fetched and converted
            on first use), a Keras-2 ``.h5`` file as published, a ``.weights.h5`` / ``.keras`` file
            or a train.py run folder of a GHS-S2Net.
        cache: the pretrained cache folder (see ``pretrained``).
        progress: progress bars while fetching.

    Returns:
        ``models.ghs.build_ghs_s2net_conv`` model, ``[1, H, W, 4]`` -> ``[1, H - 4, W - 4, 2]``.

    Raises:
        InputError: unknown model, a missing file, or weights that do not fit GHS-S2Net.
    """
    import pretrained

    patch = ghs.build_ghs_s2net(ghs.DEFAULT_INPUT_SPEC)
    try:
        pretrained.load_into(patch, model, cache=cache, progress=progress)
    except (FileNotFoundError, ValueError) as e:
        if isinstance(e, InputError):
            raise
        raise InputError(str(e), os.fspath(model)) from None
    return ghs.to_convolutional(patch, final_activation="sigmoid")


def _model_identity(model: str | os.PathLike) -> list:
    path = Path(os.path.expanduser(os.fspath(model)))
    if path.is_file():
        st = path.stat()
        return [str(path.resolve()), st.st_size, st.st_mtime_ns]
    return [str(model)]


def _predict_fn(model):
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 4], tf.float32)], reduce_retracing=True)
    def predict(x):
        return model(x, training=False)[..., 1]

    return predict


def predict_block(predict: Callable, x: np.ndarray, batch_size: int, halo: int = ghs.CONTEXT) -> np.ndarray:
    """Runs the convolutional model over one block with its halo, in strips of rows.

    Args:
        predict: ``[1, h, w, 4]`` float32 -> ``[1, h - 2 halo, w - 2 halo]`` built-up probability.
        x: ``[rows + 2 halo, cols + 2 halo, 4]`` reflectance.
        batch_size: output pixels per call (a strip is ``max(1, batch_size // cols)`` rows).
        halo: context pixels per side.

    Returns:
        ``[rows, cols]`` float32 probabilities.
    """
    rows, cols = x.shape[0] - 2 * halo, x.shape[1] - 2 * halo
    strip = max(1, batch_size // cols)
    out = np.empty((rows, cols), np.float32)
    for r in range(0, rows, strip):
        n = min(strip, rows - r)
        out[r:r + n] = np.asarray(predict(x[None, r:r + n + 2 * halo]))[0]
    return out


def to_uint16(prob: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Probability -> stored value: ``prob x 10000`` truncated to uint16 (as upstream), 65535 where not valid.

    Args:
        prob: float probabilities in [0, 1].
        valid: bool mask of the same shape.

    Returns:
        uint16 array.
    """
    out = (np.clip(prob, 0.0, 1.0).astype(np.float32) * np.float32(SCALE)).astype(np.uint16)
    out[~valid] = NODATA
    return out


class _Part:
    """The raw uint16 intermediate (``<dst>.part``) and its state file (``<dst>.part.json``)."""

    def __init__(self, dst: Path, height: int, width: int, identity: dict):
        self.path = dst.with_name(dst.name + ".part")
        self.state = dst.with_name(dst.name + ".part.json")
        self.height, self.width, self.identity = height, width, identity
        self.done: set[int] = set()
        import json

        if self.path.is_file() and self.state.is_file():
            try:
                saved = json.loads(self.state.read_text())
            except (OSError, ValueError):
                saved = {}
            if saved.get("identity") == identity and self.path.stat().st_size == height * width * 2:
                self.done = set(saved.get("done", []))
                logging.info("resuming %s: %d blocks already done", self.path, len(self.done))
            else:
                logging.info("%s belongs to another run: starting afresh", self.state)
        if not self.done:
            self.state.unlink(missing_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        if not self.done:
            os.ftruncate(self.fd, 0)
            os.ftruncate(self.fd, height * width * 2)

    def write(self, blk: windows.Block, values: np.ndarray) -> None:
        for r in range(blk.rows):
            os.pwrite(self.fd, values[r].tobytes(), ((blk.row0 + r) * self.width + blk.col0) * 2)

    def finish_block(self, index: int) -> None:
        os.fsync(self.fd)
        self.done.add(index)
        files.write_json_atomic(self.state, {"version": STATE_VERSION, "identity": self.identity,
                                             "done": sorted(self.done)}, indent=None)

    def rows(self, row0: int, rows: int) -> np.ndarray:
        data = os.pread(self.fd, rows * self.width * 2, row0 * self.width * 2)
        return np.frombuffer(data, np.uint16).reshape(rows, self.width)

    def close(self, remove: bool) -> None:
        os.close(self.fd)
        if remove:
            self.path.unlink(missing_ok=True)
            self.state.unlink(missing_ok=True)


def _write_geotiff(part: _Part, dst: Path, crs, transform, cog: bool) -> None:
    import rasterio
    import rasterio.shutil
    from rasterio.windows import Window

    profile = {"driver": "GTiff", "height": part.height, "width": part.width, "count": 1, "dtype": "uint16",
               "crs": crs, "transform": transform, "nodata": NODATA, "compress": "deflate", "tiled": True,
               "blockxsize": TILE, "blockysize": TILE, "BIGTIFF": "IF_SAFER"}
    with files.atomic_path(dst) as tmp:
        tiff = tmp + ".tiled.tif" if cog else tmp
        try:
            with rasterio.open(tiff, "w", **profile) as out:
                for row0 in range(0, part.height, TILE):
                    rows = min(TILE, part.height - row0)
                    out.write(part.rows(row0, rows), 1, window=Window(0, row0, part.width, rows))
            if cog:
                rasterio.shutil.copy(tiff, tmp, driver="COG", COMPRESS="DEFLATE", BLOCKSIZE=TILE,
                                     OVERVIEW_RESAMPLING="AVERAGE", BIGTIFF="IF_SAFER")
        finally:
            if cog and os.path.exists(tiff):
                os.unlink(tiff)


def predict_scene(src: str | Path, dst: str | Path, *, model: str | None = None, block_size: int = 512,
                  batch_size: int = DEFAULT_BATCH_SIZE, cog: bool = False, offset: float | None = None,
                  progress: bool = True, cache: str | os.PathLike | None = None,
                  on_block: Callable[[int], None] | None = None) -> Path:
    """Applies GHS-S2Net to a scene and writes the built-up probability GeoTIFF.

    Args:
        src: a 4-band GHS composite GeoTIFF (B4, B3, B2, B8, uint16) or a Sentinel-2 L1C/L2A product
            folder (see ``scene.inputs``).
        dst: the output GeoTIFF.
        model: a registry name (``MODEL_CNN_32T``), a Keras-2 ``.h5`` as published, a ``.weights.h5``
            / ``.keras`` file; None picks the UTM grid zone's published model from the product's
            tile id or the scene's CRS (``scene.zones.pick_model``).
        block_size: block side in pixels (windowed reads and writes; resume granularity).
        batch_size: output pixels per model call (peak memory ~ batch_size x 512 x 4 B x a few).
        cog: write a Cloud-Optimized GeoTIFF instead of a tiled GeoTIFF.
        offset: DN offset added before scaling; None: from the product metadata (0 for a composite).
        progress: show a progress bar (pixels).
        cache: the pretrained cache folder for registry names.
        on_block: called with each block's index once it is stored (tests use it to interrupt).

    Returns:
        ``dst`` as a ``Path``: uint16 probability x 10000, nodata 65535, the input's CRS and transform.

    Raises:
        InputError: a bad scene or model (see ``scene.inputs``, ``load_model``, ``scene.zones``).
        ValueError: ``block_size`` or ``batch_size`` below 1.
    """
    if block_size < 1 or batch_size < 1:
        raise ValueError(f"block_size and batch_size must be positive, got {block_size}, {batch_size}")

    import rasterio

    # GDAL's block cache defaults to 5% of RAM: bound it, or it would grow with the scene up to that.
    cache_mb = {} if "GDAL_CACHEMAX" in os.environ else {"GDAL_CACHEMAX": GDAL_CACHE_MB << 20}  # bytes
    with rasterio.Env(**cache_mb):
        return _predict_scene(src, Path(dst), model=model, block_size=block_size, batch_size=batch_size, cog=cog,
                              offset=offset, progress=progress, cache=cache, on_block=on_block)


def _predict_scene(src, dst: Path, *, model, block_size, batch_size, cog, offset, progress, cache, on_block) -> Path:
    from tqdm.auto import tqdm

    scene = inputs.open_scene(src, offset)
    if min(scene.height, scene.width) < ghs.CONTEXT + 1:
        raise InputError(f"a {scene.height}x{scene.width} scene is too small (at least 3x3 pixels)", src)
    if model is None:
        model = zones.pick_model(scene.crs, scene.transform, (scene.height, scene.width), scene.names)
        logging.info("model for %s: %s", src, model)
    identity = {"input": scene.fingerprint(), "model": _model_identity(model), "block_size": block_size,
                "batch_size": batch_size}
    net = load_model(model, cache=cache, progress=progress)
    predict = _predict_fn(net)
    blocks = windows.block_grid(scene.height, scene.width, block_size)
    dst.parent.mkdir(parents=True, exist_ok=True)
    part = _Part(dst, scene.height, scene.width, identity)
    finished = False
    try:
        done_px = sum(b.rows * b.cols for b in blocks if b.index in part.done)
        with scene, tqdm(total=scene.height * scene.width, initial=done_px, unit="px", unit_scale=True,
                         desc=f"GHS-S2Net {dst.name}", disable=not progress) as bar:
            for blk in blocks:
                if blk.index in part.done:
                    continue
                x, valid = windows.read_with_halo(scene.read, scene.height, scene.width, blk, ghs.CONTEXT)
                if valid.any():
                    prob = predict_block(predict, x, batch_size)
                else:  # nothing to predict (e.g. the no-data border of a granule)
                    prob = np.zeros(valid.shape, np.float32)
                part.write(blk, to_uint16(prob, valid))
                part.finish_block(blk.index)
                bar.update(blk.rows * blk.cols)
                if on_block is not None:
                    on_block(blk.index)
        _write_geotiff(part, dst, scene.crs, scene.transform, cog)
        finished = True
    finally:
        part.close(remove=finished)
    return dst
