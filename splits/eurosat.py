"""EuroSAT split rules: the common split files, or a seeded stratified split.

- Split files: the common ``eurosat-train.txt``, ``eurosat-val.txt``, ``eurosat-test.txt`` (16,200 /
  5,400 / 5,400 names, the convention of torchgeo and Google's remote-sensing benchmarks) list one
  name of the RGB version per line, ``AnnualCrop_1.jpg``. A name stands for the multispectral file
  ``AnnualCrop/AnnualCrop_1.tif`` (any extension, or none, and an optional folder are accepted).
  The split's name is the file's stem after its last ``-`` (``eurosat-train.txt`` -> ``train``), or
  given as ``NAME=FILE``.
- Without split files: within each class the images (in image-number order) are permuted with the
  seed and cut at the cumulative fractions (default 0.6 / 0.2 / 0.2 train / val / test, rounded per
  class), so every class is split in the same proportions. On the published 27,000 images that
  gives exactly 16,200 / 5,400 / 5,400, the sizes of the common split files (not the same images).
  Deterministic: the same images and seed give the same splits, whatever order they were found in.
"""
from __future__ import annotations

import hashlib
import os
import re
from typing import Iterable, Sequence

import numpy as np

SPLITS = ("train", "val", "test")
DEFAULT_FRACTIONS = (0.6, 0.2, 0.2)
DEFAULT_SEED = 0
COMMON_SPLIT_SIZES = {"train": 16_200, "val": 5_400, "test": 5_400}

Key = tuple[str, int]  # (class name, image number)
_NAME = re.compile(r"^(?:.*[/\\])?([A-Za-z]+)_(\d+)(?:\.[A-Za-z]{3,4})?$")


def parse_name(name: str) -> Key:
    """A split-file entry -> (class name, image number).

    Args:
      name: ``AnnualCrop_1.jpg``, ``AnnualCrop_1.tif``, ``AnnualCrop_1`` or ``AnnualCrop/AnnualCrop_1.tif``.

    Returns:
      (class name as written, image number).

    Raises:
      ValueError: a name of none of these forms.
    """
    m = _NAME.match(name.strip())
    if not m:
        raise ValueError(f"{name!r} is not an EuroSAT image name (e.g. AnnualCrop_1.jpg)")
    return m.group(1), int(m.group(2))


def split_name(path: str) -> str:
    """The split a split file holds: ``eurosat-train.txt`` -> ``train``, ``val.txt`` -> ``val``."""
    stem = os.path.splitext(os.path.basename(path))[0]
    return stem.rsplit("-", 1)[-1]


def _rng(seed: int, *salt: object) -> np.random.Generator:
    h = hashlib.sha256(repr((int(seed),) + salt).encode()).digest()
    return np.random.default_rng(int.from_bytes(h[:8], "little"))


def stratified(keys: Iterable[Key], fractions: Sequence[float] = DEFAULT_FRACTIONS,
               seed: int = DEFAULT_SEED) -> dict[str, list[Key]]:
    """The seeded stratified split of the images found (see the module doc).

    Args:
      keys: (class name, image number) of every image.
      fractions: train, val, test shares (each >= 0, summing to 1).
      seed: the permutation seed.

    Returns:
      ``{"train": [...], "val": [...], "test": [...]}``, each in (class, number) order.

    Raises:
      ValueError: not three fractions, a negative one, or a sum other than 1.
    """
    fr = np.asarray(fractions, np.float64)
    if fr.shape != (3,) or (fr < 0).any() or abs(fr.sum() - 1.0) > 1e-9:
        raise ValueError(f"fractions must be three shares >= 0 summing to 1 (train, val, test), got {list(fractions)}")
    by_class: dict[str, list[int]] = {}
    for cls, n in keys:
        by_class.setdefault(cls, []).append(int(n))
    out: dict[str, list[Key]] = {s: [] for s in SPLITS}
    for cls in sorted(by_class):
        numbers = sorted(by_class[cls])
        order = _rng(seed, "class", cls).permutation(len(numbers))
        cuts = np.rint(np.cumsum(fr) * len(numbers)).astype(int)
        start = 0
        for split, stop in zip(SPLITS, cuts):
            out[split] += [(cls, numbers[i]) for i in sorted(order[start:stop])]
            start = stop
    return out


__all__ = ["SPLITS", "DEFAULT_FRACTIONS", "DEFAULT_SEED", "COMMON_SPLIT_SIZES", "parse_name", "split_name",
           "stratified"]
