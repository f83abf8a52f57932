"""SEN12MS split rules: the hold-out test scenes, a scene-grouped validation split, user lists.

- ``test``: every patch of the 26 hold-out scenes (``HOLDOUT_SCENES``, about 10% of the patches;
  the published test list of 18,106 s2 files lies inside them).
- ``val``: upstream publishes none (its legacy rule drew random scenes without removing them from
  training). Ours takes whole scenes: the non-hold-out (season, scene) groups are ordered by a
  seeded permutation and taken in that order until they hold at least ``val_fraction`` (default
  0.1) of the non-hold-out patches; at least one scene, never all of them. A scene is in one
  split only, so no patch of a validation scene is in training.
- ``train``: the remaining patches.
- User lists (``split_lists``: split name -> names) replace these rules. Names are s1/s2/lc file
  names (``ROIs1158_spring_s2_124_p100.tif``) or patch ids (``ROIs1158_spring_124_p100``).

Source: SEN12MS hold-out scenes, https://github.com/schmitt-muc/SEN12MS (splits/SEN12MS_holdOutScenes.txt).
"""
from __future__ import annotations

import re
from typing import Iterable, Mapping, Sequence

import numpy as np

# (season folder, scene) of the 26 hold-out scenes: our data, in season order.
HOLDOUT_SCENES = frozenset(
    [("ROIs1158_spring", s) for s in (15, 17, 63, 97, 124, 146)]
    + [("ROIs1868_summer", s) for s in (15, 19, 43, 72, 79, 104, 131)]
    + [("ROIs1970_fall", s) for s in (30, 35, 39, 47, 61, 120, 141, 144)]
    + [("ROIs2017_winter", s) for s in (32, 64, 107, 135, 146)]
)
TEST_LIST_SIZE = 18106  # s2 file names in the published test list, all inside HOLDOUT_SCENES
DEFAULT_VAL_FRACTION = 0.1
DEFAULT_SEED = 0

Key = tuple[str, int, int]  # (season, scene, patch)
_NAME = re.compile(r"^(?:.*/)?(ROIs\d{4}_[a-z]+)_(?:(?:s1|s2|lc)_)?(\d+)_p(\d+)(?:\.tif)?$")


def parse_name(name: str) -> Key:
    """``ROIs1158_spring_s2_124_p100.tif`` or ``ROIs1158_spring_124_p100`` -> (season, scene, patch).

    Raises:
      ValueError: a name of neither form.
    """
    m = _NAME.match(name.strip())
    if not m:
        raise ValueError(f"not a SEN12MS patch name: {name!r} (e.g. ROIs1158_spring_s2_124_p100.tif)")
    return m.group(1), int(m.group(2)), int(m.group(3))


def is_holdout(season: str, scene: int) -> bool:
    """Whether the scene is one of the 26 hold-out (test) scenes."""
    return (season, int(scene)) in HOLDOUT_SCENES


def assign(keys: Iterable[Key], val_fraction: float = DEFAULT_VAL_FRACTION,
           seed: int = DEFAULT_SEED) -> dict[str, list[Key]]:
    """The default splits of the triplets found: ``train``, ``val``, ``test`` (see the module doc).

    Args:
      keys: (season, scene, patch) of every triplet.
      val_fraction: the least share of the non-hold-out patches that goes to ``val`` (0 = no val).
      seed: the seed of the scene permutation.

    Returns:
      split -> its keys, sorted; empty splits are left out.

    Raises:
      ValueError: ``val_fraction`` outside [0, 1).
    """
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    keys = sorted(set(keys))
    test = [k for k in keys if is_holdout(k[0], k[1])]
    rest = [k for k in keys if not is_holdout(k[0], k[1])]
    scenes = sorted({(k[0], k[1]) for k in rest})
    val_scenes: set = set()
    if val_fraction > 0 and len(scenes) > 1:
        sizes = {s: 0 for s in scenes}
        for k in rest:
            sizes[(k[0], k[1])] += 1
        order = np.random.default_rng(seed).permutation(len(scenes))
        taken = 0
        for i in order[:-1]:  # never every scene
            if taken >= val_fraction * len(rest):
                break
            val_scenes.add(scenes[i])
            taken += sizes[scenes[i]]
    out = {"train": [k for k in rest if (k[0], k[1]) not in val_scenes],
           "val": [k for k in rest if (k[0], k[1]) in val_scenes], "test": test}
    return {s: v for s, v in out.items() if v}


def from_lists(split_lists: Mapping[str, Sequence[str]]) -> dict[str, list[Key]]:
    """User split lists (split -> patch names, see ``parse_name``) -> split -> keys, in list order.

    Raises:
      ValueError: a name that is not a SEN12MS patch name, or a patch listed twice.
    """
    seen: dict[Key, str] = {}
    out: dict[str, list[Key]] = {}
    for split, names in split_lists.items():
        for name in names:
            if not name.strip():
                continue
            key = parse_name(name)
            if key in seen:
                raise ValueError(f"{name}: listed in split {seen[key]!r} and in {split!r}")
            seen[key] = split
            out.setdefault(split, []).append(key)
    return out
