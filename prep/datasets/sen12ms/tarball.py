"""The per-season SEN12MS tarballs (``ROIs1158_spring_s2.tar.gz``, ...) read as they are, without extracting.

Each tarball holds one season's files of one modality under ``ROIs1158_spring/s2_<scene>/...``
(the paths of the extracted tree). Planning lists every tarball's members once
(``list_triplets``); each shard's worker then streams the tarballs of the seasons and modalities
it needs and keeps only its own members in memory (``MemberReader``), stopping a tarball as soon
as they are all found. A gzip stream has no random access, so each shard decompresses its
tarballs up to its last member: the cost grows with shards x archive size (use large shards or
extract first for the full archive). Memory: one shard's raw files.
"""
from __future__ import annotations

import os
import re
import tarfile
from typing import Iterable, Sequence

from prep.datasets.sen12ms import spec as sp
from prep.datasets.sen12ms.spec import Sen12msInputError

_TARBALL = re.compile(r"^(ROIs\d{4}_[a-z]+)_(s1|s2|lc)\.tar(?:\.gz)?$")
_MEMBER = re.compile(r"^(?:\./)?(ROIs\d{4}_[a-z]+)/(s1|s2|lc)_(\d+)/\1_\2_\3_p(\d+)\.tif$")


def tarball_kind(path: str) -> tuple[str, str]:
    """``.../ROIs1158_spring_s2.tar.gz`` -> ("ROIs1158_spring", "s2").

    Raises:
      Sen12msInputError: a name not of that form.
    """
    m = _TARBALL.match(os.path.basename(path))
    if not m:
        raise Sen12msInputError(f"{path}: not a SEN12MS tarball name (e.g. ROIs1158_spring_s2.tar.gz)")
    return m.group(1), m.group(2)


def _open(path: str) -> tarfile.TarFile:
    try:
        return tarfile.open(path, "r|*")  # a stream: no seeking, gzip or plain
    except (OSError, tarfile.TarError) as e:
        raise Sen12msInputError(f"{path}: not a readable tarball ({e})") from None


def list_triplets(tarballs: Sequence[str]) -> list[tuple[str, int, int]]:
    """Every (season, scene, patch) with a member in any of ``tarballs``, sorted (one pass each).

    Raises:
      Sen12msInputError: a missing, unreadable or misnamed tarball, or a member of another
        season or modality than its name says.
    """
    keys = set()
    for path in tarballs:
        season, modality = tarball_kind(path)
        if season not in sp.SEASONS:
            continue  # DFC2020's ROIs0000_* archives are not SEN12MS triplets
        if not os.path.isfile(path):
            raise Sen12msInputError(f"{path}: no such file")
        try:
            with _open(path) as tf:
                for member in tf:
                    m = _MEMBER.match(member.name)
                    if not (member.isfile() and m):
                        continue
                    if (m.group(1), m.group(2)) != (season, modality):
                        raise Sen12msInputError(f"{path}: member {member.name} is not {season} {modality}")
                    keys.add((season, int(m.group(3)), int(m.group(4))))
        except (OSError, tarfile.TarError, EOFError) as e:
            raise Sen12msInputError(f"{path}: truncated or damaged tarball ({e})") from None
    return sorted(keys)


class MemberReader:
    """The bytes of the wanted members (relative paths of the tree) of a shard, from the tarballs."""

    def __init__(self, tarballs: Sequence[str], wanted: Iterable[str]):
        """Streams each tarball that may hold a wanted member, until all of its wanted ones are read.

        Raises:
          Sen12msInputError: a tarball that cannot be read (named).
        """
        wanted = set(wanted)
        self._data: dict[str, bytes] = {}
        for path in tarballs:
            season, modality = tarball_kind(path)
            mine = {w for w in wanted if w.startswith(f"{season}/{modality}_")}
            if not mine:
                continue
            try:
                with _open(path) as tf:
                    for member in tf:
                        name = member.name.removeprefix("./")
                        if name in mine and member.isfile():
                            self._data[name] = tf.extractfile(member).read()
                            mine.discard(name)
                            if not mine:
                                break
            except (OSError, tarfile.TarError, EOFError) as e:
                raise Sen12msInputError(f"{path}: truncated or damaged tarball ({e})") from None

    def get(self, rel: str) -> bytes | None:
        """The bytes of member ``rel`` (e.g. ``ROIs1158_spring/s1_63/ROIs1158_spring_s1_63_p1.tif``), or None."""
        return self._data.get(rel)


def find_tarballs(folder: str) -> list[str]:
    """The SEN12MS tarballs in ``folder``, sorted by name."""
    return sorted(os.path.join(folder, n) for n in os.listdir(folder) if _TARBALL.match(n))

