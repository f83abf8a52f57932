"""BigEarthNet-S2 official split and exclusion lists, read from the ``bigearthnet-common`` wheel.

The lists are package data of ``bigearthnet-common`` (installed from PyPI as a dependency);
this module locates them without importing that package and reads them as patch-name lists.
See splits/README.md for where each list comes from.
"""
from __future__ import annotations

import functools
import importlib.util
import os
import re
from pathlib import Path

from prep import files

SPLITS = ("train", "val", "test")
EXCLUSIONS = {
    "seasonal_snow": "patches_with_seasonal_snow.csv.bz2",
    "cloud_and_shadow": "patches_with_cloud_and_shadow.csv.bz2",
    "no_19_class_target": "patches_with_no_19_class_targets.csv.bz2",
}
S1_S2_TABLE = "s1_s2_name_country_season.csv.bz2"
# What a split file's name may end with: a list extension, then a compression suffix; both are
# dropped to name the split (``mytrain.txt.gz`` -> ``mytrain``).
LIST_EXTENSIONS = (".csv", ".txt", ".lst", ".list", ".tsv")
COMPRESSION_SUFFIXES = (".bz2", ".gz", ".xz")
# Lists a root folder of patch folders may hold (as the synthetic generator writes them), each
# plain or compressed (``FOLDER_SUFFIXES``): split files that replace the official splits, and
# exclusion lists that add to the official ones (``prep.datasets.bigearthnet.raw.choose_lists``).
FOLDER_SPLIT_FILES = {s: f"{s}.csv" for s in SPLITS}
FOLDER_EXCLUSION_FILES = {k: v.removesuffix(".bz2") for k, v in EXCLUSIONS.items()}
FOLDER_SUFFIXES = ("", ".bz2", ".gz")
_FIELD_SEP = re.compile(r"[,\t]")
EXAMPLE_ARCHIVES = {"S2": "BigEarthNet-S2-Example.tar.bz2", "S1": "BigEarthNet-S1-Example.tar.bz2"}


@functools.lru_cache(maxsize=None)
def package_dir() -> Path:
    """Folder of the installed bigearthnet_common package data (not imported, only located).

    Raises:
      FileNotFoundError: when ``bigearthnet-common`` is not installed.
    """
    spec = importlib.util.find_spec("bigearthnet_common")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the official BigEarthNet lists come from the 'bigearthnet-common' package; "
            "install it with `pip install bigearthnet-common==2.8.0` (it is a dependency of eorecords)")
    return Path(list(spec.submodule_search_locations)[0])


def data_file(name: str) -> Path:
    """Path of one data file shipped in the installed ``bigearthnet-common`` package.

    Args:
      name: the file's name inside ``bigearthnet_common/`` (``train.csv.bz2``,
        ``patches_with_seasonal_snow.csv.bz2``, ``BigEarthNet-S2-Example.tar.bz2``, ...).

    Returns:
      The file's path (the file is located, not opened).

    Raises:
      FileNotFoundError: when ``bigearthnet-common`` is not installed, or holds no file ``name``.
    """
    path = package_dir() / name
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found in the installed bigearthnet-common package")
    return path


def split_file(split: str) -> Path:
    """Path of an official BigEarthNet-S2 19-class split list (``train``, ``val`` or ``test``).

    Source: the ``{split}.csv.bz2`` files of ``bigearthnet-common`` 2.8.0 (upstream ``splits/``).

    Raises:
      KeyError: when ``split`` is not one of ``SPLITS``.
      FileNotFoundError: when the package or the list is missing (``data_file``).
    """
    if split not in SPLITS:
        raise KeyError(f"unknown official split {split!r}; splits: {', '.join(SPLITS)}")
    return data_file(f"{split}.csv.bz2")


open_text = files.open_text  # plain, .bz2, .gz or .xz


def read_names(path: str | os.PathLike) -> list[str]:
    """Patch names of a one-name-per-line CSV (no header; CRLF or LF; blank lines ignored).

    A first column is taken when a line has commas or tabs, so ``name,...`` tables (and TSV) read
    too. The file may be plain, ``.bz2``, ``.gz`` or ``.xz``.
    """
    names = []
    with open_text(path) as f:
        for line in f:
            line = _FIELD_SEP.split(line.strip(), 1)[0].strip()
            if line:
                names.append(line)
    return names


def split_name(path: str | os.PathLike) -> str:
    """The split a split file names: its file name without compression suffix and list extension.

    ``.../train.csv.bz2`` -> ``train``, ``mytrain.txt`` -> ``mytrain``, ``val.lst.xz`` -> ``val``
    (``LIST_EXTENSIONS``, ``COMPRESSION_SUFFIXES``; other dots are kept: ``fold.1.csv`` -> ``fold.1``).
    """
    base = os.path.basename(os.fspath(path))
    for suffixes in (COMPRESSION_SUFFIXES, LIST_EXTENSIONS):
        for ext in suffixes:
            if base.endswith(ext) and len(base) > len(ext):
                base = base[: -len(ext)]
                break
    return base


@functools.lru_cache(maxsize=None)
def official_split(split: str) -> tuple[str, ...]:
    """Patch names of an official BigEarthNet-S2 split, in file order (cached per split).

    Source: ``bigearthnet-common`` 2.8.0 ``train.csv.bz2`` (269,695 patches), ``val.csv.bz2``
    (123,723) and ``test.csv.bz2`` (125,866); see splits/README.md.

    Raises:
      KeyError: when ``split`` is not one of ``SPLITS``.
      FileNotFoundError: when the package or the list is missing.
    """
    return tuple(read_names(split_file(split)))


@functools.lru_cache(maxsize=None)
def exclusion(kind: str) -> frozenset[str]:
    """Patch names of one official exclusion list (cached per list).

    ``kind`` is a key of ``EXCLUSIONS``: ``seasonal_snow`` (61,707 patches), ``cloud_and_shadow``
    (9,280), both published on bigearth.net, or ``no_19_class_target`` (57 patches whose labels all
    lie in the 11 classes the 19-class nomenclature drops). Source: ``bigearthnet-common`` 2.8.0.

    Raises:
      KeyError: when ``kind`` is not a key of ``EXCLUSIONS``.
      FileNotFoundError: when the package or the list is missing.
    """
    try:
        name = EXCLUSIONS[kind]
    except KeyError:
        raise KeyError(f"unknown exclusion list {kind!r}; lists: {', '.join(EXCLUSIONS)}") from None
    return frozenset(read_names(data_file(name)))


def example_archive(modality: str = "S2") -> Path:
    """The tar.bz2 of the six real example patches shipped in bigearthnet-common.

    Args:
      modality: ``S2`` (Sentinel-2 L2A, 12 bands) or ``S1`` (Sentinel-1 VV/VH).

    Raises:
      KeyError: when ``modality`` is not a key of ``EXAMPLE_ARCHIVES``.
      FileNotFoundError: when the package or the archive is missing.
    """
    return data_file(EXAMPLE_ARCHIVES[modality])
