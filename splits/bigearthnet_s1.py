"""BigEarthNet-S1 <-> BigEarthNet-S2 pairing: which Sentinel-1 patch is the twin of which Sentinel-2 patch.

The table is ``s1_s2_name_country_season.csv.bz2`` of the ``bigearthnet-common`` wheel (590,326
rows, header ``s1_name,s2_name,country,season``). BigEarthNet-S1 and BigEarthNet-MM use the
BigEarthNet-S2 split and exclusion lists (``splits.bigearthnet``): an S1 patch is in the split of
its S2 twin and excluded when its twin is. A table of the same format (plain, ``.bz2`` or
``.gz``) can be given instead, e.g. the one the synthetic generator writes beside its archive.
"""
from __future__ import annotations

import csv
import dataclasses
import functools
import os

from prep import files
from prep.errors import InputError
from splits import bigearthnet as s2lists

PAIRING_FILE = s2lists.S1_S2_TABLE  # in bigearthnet_common/
FOLDER_PAIRING_FILE = PAIRING_FILE.removesuffix(".bz2")  # beside the patch folders (plain, .bz2 or .gz)
COLUMNS = ("s1_name", "s2_name", "country", "season")


@dataclasses.dataclass(frozen=True)
class Pairing:
    """The S1 <-> S2 name table, both ways.

    Attributes:
      s1_to_s2: S1 patch name -> S2 patch name.
      s2_to_s1: S2 patch name -> S1 patch name.
      source: the file read (for messages and the manifest).
    """

    s1_to_s2: dict[str, str]
    s2_to_s1: dict[str, str]
    source: str

    def __len__(self) -> int:
        """The number of pairs."""
        return len(self.s1_to_s2)


def read_pairing(path: str | os.PathLike) -> Pairing:
    """Read a pairing table: CSV with the header ``s1_name,s2_name,...`` (plain, .bz2, .gz or .xz).

    Args:
      path: the table (the wheel's ``s1_s2_name_country_season.csv.bz2`` or one in its format).

    Returns:
      The ``Pairing`` (each name once on each side).

    Raises:
      InputError: a missing or unreadable file, a header without ``s1_name`` and ``s2_name``, a
        short row, or a name paired twice (naming the file and the line).
    """
    path = os.fspath(path)
    s1_to_s2: dict[str, str] = {}
    s2_to_s1: dict[str, str] = {}
    try:
        with files.open_text(path) as f:
            rows = csv.reader(f)
            header = [h.strip() for h in next(rows, [])]
            if "s1_name" not in header or "s2_name" not in header:
                raise InputError(f"no header with s1_name and s2_name (found {','.join(header)!r}); expected "
                                 f"{','.join(COLUMNS)}", path=path)
            i1, i2 = header.index("s1_name"), header.index("s2_name")
            for line, row in enumerate(rows, start=2):
                if not row or not "".join(row).strip():
                    continue
                if len(row) <= max(i1, i2):
                    raise InputError(f"line {line}: {len(row)} column(s), expected {len(header)}", path=path)
                s1, s2 = row[i1].strip(), row[i2].strip()
                if s1 in s1_to_s2 or s2 in s2_to_s1:
                    raise InputError(f"line {line}: {s1 if s1 in s1_to_s2 else s2} is paired twice", path=path)
                s1_to_s2[s1], s2_to_s1[s2] = s2, s1
    except FileNotFoundError:
        raise InputError("pairing table not found", path=path) from None
    except (OSError, EOFError, UnicodeDecodeError, csv.Error) as e:
        raise InputError(f"unreadable pairing table ({e})", path=path) from None
    return Pairing(s1_to_s2, s2_to_s1, path)


@functools.lru_cache(maxsize=None)
def official_pairing() -> Pairing:
    """The wheel's table (590,326 pairs), read once per process (about 2 s).

    Raises:
      FileNotFoundError: bigearthnet-common is not installed.
    """
    return read_pairing(s2lists.data_file(PAIRING_FILE))


@functools.lru_cache(maxsize=8)
def _cached(path: str, mtime: float) -> Pairing:
    del mtime  # part of the cache key only
    return read_pairing(path)


def pairing(path: str | os.PathLike | None = None) -> Pairing:
    """The table at ``path``, or the wheel's when None (each read once per process and file version).

    Raises:
      InputError: as ``read_pairing``.
      FileNotFoundError: ``path`` is None and bigearthnet-common is not installed.
    """
    if path is None:
        return official_pairing()
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError("pairing table not found", path=path)
    return _cached(os.path.abspath(path), os.path.getmtime(path))


def find_in_folder(folder: str | os.PathLike) -> str | None:
    """The pairing table lying in a local ``folder`` (``s1_s2_name_country_season.csv``, ``.bz2``, ``.gz``), or None."""
    for suffix in s2lists.FOLDER_SUFFIXES:
        path = os.path.join(os.fspath(folder), FOLDER_PAIRING_FILE + suffix)
        if os.path.isfile(path):
            return path
    return None


def write_pairing(path: str | os.PathLike, rows: list[tuple[str, str, str, str]]) -> None:
    """Write a table in the wheel's format (header, then ``s1_name,s2_name,country,season`` rows, LF).

    Args:
      path: the file to write (plain CSV).
      rows: (s1_name, s2_name, country, season) per pair.
    """
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(COLUMNS)
        w.writerows(rows)
