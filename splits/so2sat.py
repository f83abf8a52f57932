"""So2Sat LCZ42 split rules: which split each HDF5 file's rows belong to (versions 2 and 3).

Version 2 ships ``training.h5``, ``validation.h5`` and ``testing.h5``; version 3 ships three
scenarios (``random``, ``block``, ``culture_10``), each a ``training.h5`` / ``testing.h5`` pair,
as folders or as file-name parts (``random/training.h5``, ``block_testing.h5``). The rule:

- the word in the file name gives the split: ``training`` -> ``train``, ``validation`` -> ``val``,
  ``testing`` -> ``test`` (the names the BigEarthNet splits use);
- a version-3 scenario prefixes the split (``random_train``) only when the files of one
  preparation span more than one scenario; with one scenario the splits stay ``train``/``test``;
- explicit names (``--split_names``, one per file) replace the rule; two files may not share a
  split, and a name holds only letters, digits and ``_``.

Source: the So2Sat LCZ42 release notes (versions 2 and 3, https://github.com/zhu-xlab/So2Sat-LCZ42).
"""
from __future__ import annotations

import os
import re
from typing import Sequence

from prep.datasets.so2sat.spec import So2SatInputError

ROLES = {"training": "train", "validation": "val", "testing": "test"}
_ROLE_RE = re.compile(r"(?:^|[^a-z])(training|validation|testing)(?:[^a-z]|$)")
_SCENARIO_RE = re.compile(r"(?:^|[^a-z0-9])(random|block|culture[_-]?10)(?:[^a-z0-9]|$)")
_SPLIT_NAME_RE = re.compile(r"^[A-Za-z0-9_]+$")


def role_and_scenario(path: str) -> tuple[str, str | None]:
    """('train'|'val'|'test', scenario or None) from a file's name and parent folder.

    Raises:
      So2SatInputError: when the name holds none of training, validation, testing.
    """
    stem = os.path.splitext(os.path.basename(path))[0].lower()
    m = _ROLE_RE.search(stem)
    if not m:
        raise So2SatInputError(f"{path}: cannot tell the split from the file name (expected training, "
                               "validation or testing in it); pass --split_names")
    scenario = None
    for text in (stem, os.path.basename(os.path.dirname(os.path.abspath(path))).lower()):
        s = _SCENARIO_RE.search(text)
        if s:
            scenario = "culture_10" if s.group(1).startswith("culture") else s.group(1)
            break
    return ROLES[m.group(1)], scenario


def split_names_for(paths: Sequence[str], explicit: Sequence[str] | None = None) -> list[str]:
    """The split of each file: ``explicit`` if given, else the rule in the module doc.

    Raises:
      So2SatInputError: a name count that differs from the file count, two files for one split,
        a name with characters other than letters, digits and ``_``, or an unrecognised file name.
    """
    if explicit:
        if len(explicit) != len(paths):
            raise So2SatInputError(f"--split_names gives {len(explicit)} names for {len(paths)} --h5 files")
        names = list(explicit)
    else:
        found = [role_and_scenario(p) for p in paths]
        multi = len({s for _, s in found if s}) > 1
        names = [f"{s}_{r}" if (multi and s) else r for r, s in found]
    for p, name in zip(paths, names):
        if not _SPLIT_NAME_RE.match(name):
            raise So2SatInputError(f"{p}: split name {name!r} may hold only letters, digits and '_'")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        which = "; ".join(f"{n}: " + ", ".join(p for p, m in zip(paths, names) if m == n) for n in dup)
        raise So2SatInputError(f"two files for the same split ({which}); pass --split_names")
    return names


def source_name(path: str) -> str:
    """The file's name as recorded (``training.h5``, or ``random/training.h5`` in a scenario folder)."""
    parent = os.path.basename(os.path.dirname(os.path.abspath(path)))
    base = os.path.basename(path)
    if _SCENARIO_RE.search(parent.lower()) and not _SCENARIO_RE.search(base.lower()):
        return f"{parent}/{base}"
    return base
