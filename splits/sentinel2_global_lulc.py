"""Sentinel2GlobalLULC folds: stratified k-fold (default 5), random or spatially grouped.

The dataset is published without splits; upstream used 5 random (unstratified) partitions
``partition<k>/{train,test}/<class>/``. Here each tile gets a fold 0..k-1:

``stratified`` (default)
    within each class the tiles (in (class ID, image ID) order) are shuffled with the seed and dealt
    round-robin to the folds, starting at a class-dependent fold: every class is spread over the folds
    as evenly as possible (per-class fold sizes differ by at most 1) and the folds' sizes by at most 1
    per class. Deterministic: the same tiles and seed give the same folds.
``grid`` / ``country``
    spatially grouped: neighbouring tiles are near-duplicates (overlapping surroundings, same scene
    dates), so random folds leak; these keep each group (a ``grid_deg`` x ``grid_deg`` degree cell
    of the tile centres, default 1 degree, about 110 km; or the country code) inside one fold. Groups
    are assigned greedily, largest first, to the fold where they add the least to the per-class
    imbalance (seeded tie-break), so the classes stay roughly stratified. Prefer ``grid`` to measure
    generalisation to unseen places; ``country`` to unseen countries (coarser, less balanced).

Fold ``f`` of k becomes the prepared splits ``test`` (fold f) and ``train`` (the other folds):
``python -m prep lulc --test_fold f``. The fold table is the split file (``folds.csv``: key,
class ID, group, fold), written by ``python -m prep lulc folds``.
"""
from __future__ import annotations

import hashlib
import math
from typing import Sequence

import numpy as np

SCHEMES = ("stratified", "grid", "country")
DEFAULT_FOLDS = 5
DEFAULT_SEED = 0
DEFAULT_GRID_DEG = 1.0


def _rng(seed: int, *salt: object) -> np.random.Generator:
    h = hashlib.sha256(repr((int(seed),) + salt).encode()).digest()
    return np.random.default_rng(int.from_bytes(h[:8], "little"))


def stratified_folds(labels: Sequence[int], k: int = DEFAULT_FOLDS, seed: int = DEFAULT_SEED) -> np.ndarray:
    """Stratified k-fold assignment.

    Args:
      labels: class of each item (any ints), in a fixed item order.
      k: number of folds (>= 2).
      seed: shuffle seed.

    Returns:
      int64 [len(labels)] fold of each item, 0..k-1.

    Raises:
      ValueError: k < 2.
    """
    if k < 2:
        raise ValueError(f"k-fold needs k >= 2, got {k}")
    labels = np.asarray(labels, np.int64)
    folds = np.empty(len(labels), np.int64)
    offset = 0
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[_rng(seed, "class", int(c)).permutation(len(idx))]
        folds[idx] = (np.arange(len(idx)) + offset) % k
        offset = (offset + len(idx)) % k  # the next class starts where this one stopped: balanced fold sizes
    return folds


def grid_group(lat: float, lon: float, grid_deg: float = DEFAULT_GRID_DEG) -> str:
    """The grid cell of a point: ``'<row>:<col>'`` of ``grid_deg`` degree cells (row from -90, col from -180)."""
    return f"{math.floor((lat + 90.0) / grid_deg)}:{math.floor((lon + 180.0) / grid_deg)}"


def grouped_folds(labels: Sequence[int], groups: Sequence[str], k: int = DEFAULT_FOLDS,
                  seed: int = DEFAULT_SEED) -> np.ndarray:
    """Folds (k of them) that keep every group in one fold, roughly stratified by class.

    Args:
      labels: class of each item.
      groups: group of each item (grid cell, country code, ...).
      k: number of folds (>= 2).
      seed: tie-break seed.

    Returns:
      int64 [len(labels)] fold of each item; items of one group share their fold.

    Raises:
      ValueError: k < 2, or labels and groups differ in length.
    """
    if k < 2:
        raise ValueError(f"k-fold needs k >= 2, got {k}")
    if len(labels) != len(groups):
        raise ValueError(f"{len(labels)} labels but {len(groups)} groups")
    labels = np.asarray(labels, np.int64)
    classes, lab = np.unique(labels, return_inverse=True)
    names = sorted(set(groups))
    gi = {g: i for i, g in enumerate(names)}
    gidx = np.array([gi[g] for g in groups], np.int64)
    counts = np.zeros((len(names), len(classes)), np.int64)
    np.add.at(counts, (gidx, lab), 1)
    target = counts.sum(0) / k
    rng = _rng(seed, "groups")
    tie = rng.permutation(len(names))
    order = sorted(range(len(names)), key=lambda g: (-counts[g].sum(), tie[g]))
    load = np.zeros((k, len(classes)))
    assign = np.empty(len(names), np.int64)
    for g in order:
        cost = [np.sum(np.maximum(load[f] + counts[g] - target, 0) / np.maximum(target, 1)) + 1e-9 * load[f].sum()
                for f in range(k)]
        f = int(np.argmin(cost))
        assign[g] = f
        load[f] += counts[g]
    return assign[gidx]


def fold_splits(folds: Sequence[int], test_fold: int) -> list[str]:
    """The prepared split of each item for one fold: ``test`` for ``test_fold``, else ``train``."""
    return ["test" if int(f) == int(test_fold) else "train" for f in folds]


__all__ = ["SCHEMES", "stratified_folds", "grouped_folds", "grid_group", "fold_splits"]
