"""The block grid of a scene and reading a block with its halo, reflect-padded only at the scene's edges.

A scene of ``height x width`` pixels is cut into ``block x block`` windows, row-major (the last row
and column of blocks are smaller when the size does not divide). A model with ``halo`` pixels of
context per side reads each block grown by ``halo``: from the neighbouring pixels where the scene
has them, and mirrored (``numpy.pad`` mode ``reflect``, as upstream pads the whole scene) where the
block touches the scene's edge, so every block gives the pixels a whole-scene run would.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

DEFAULT_BATCH_SIZE = 32768  # output pixels per model call: ~70 MB per 512-channel float32 activation


class Block(NamedTuple):
    """One window of the block grid: its index in row-major order and its pixel extent."""

    index: int
    row0: int
    col0: int
    rows: int
    cols: int


def block_grid(height: int, width: int, block: int) -> list[Block]:
    """Cuts a ``height x width`` scene into blocks, row-major.

    Args:
        height: scene rows.
        width: scene columns.
        block: block side in pixels.

    Returns:
        The blocks; they cover the scene exactly once.

    Raises:
        ValueError: a size below 1.
    """
    if min(height, width, block) < 1:
        raise ValueError(f"bad sizes: scene {height}x{width}, block {block}")
    out = []
    for row0 in range(0, height, block):
        for col0 in range(0, width, block):
            out.append(Block(len(out), row0, col0, min(block, height - row0), min(block, width - col0)))
    return out


def read_with_halo(read: Callable[[int, int, int, int], tuple[np.ndarray, np.ndarray]], height: int, width: int,
                   blk: Block, halo: int) -> tuple[np.ndarray, np.ndarray]:
    """Reads a block grown by ``halo`` pixels per side, reflect-padding where it leaves the scene.

    Args:
        read: ``read(row0, col0, rows, cols) -> (x [rows, cols, C], valid [rows, cols])`` for a
            window inside the scene (``scene.inputs.Scene.read``).
        height: scene rows.
        width: scene columns.
        blk: the block.
        halo: context pixels per side.

    Returns:
        ``(x, valid)``: ``x`` ``[blk.rows + 2 halo, blk.cols + 2 halo, C]``, ``valid``
        ``[blk.rows, blk.cols]`` for the block itself.

    Raises:
        ValueError: the scene is too small to mirror ``halo`` pixels (fewer than ``halo + 1``
            rows or columns).
    """
    if min(height, width) < halo + 1:
        raise ValueError(f"a {height}x{width} scene is too small for {halo} pixels of mirrored context")
    r0, c0 = max(0, blk.row0 - halo), max(0, blk.col0 - halo)
    r1, c1 = min(height, blk.row0 + blk.rows + halo), min(width, blk.col0 + blk.cols + halo)
    x, valid = read(r0, c0, r1 - r0, c1 - c0)
    pad = ((halo - (blk.row0 - r0), blk.row0 + blk.rows + halo - r1),
           (halo - (blk.col0 - c0), blk.col0 + blk.cols + halo - c1))
    if any(p for side in pad for p in side):
        x = np.pad(x, (*pad, (0, 0)), mode="reflect")
    inner = valid[blk.row0 - r0:blk.row0 - r0 + blk.rows, blk.col0 - c0:blk.col0 - c0 + blk.cols]
    return x, inner
