"""Reading BigEarthNet-MM pairs: an S2 patch folder and its S1 twin's, checked against each other.

The S2 patch is read by ``prep.datasets.bigearthnet.raw``, the S1 twin by
``prep.datasets.bigearthnet_s1.raw`` (the pair from the pairing table). The S1 labels must equal
the S2 twin's: a disagreement (or an S1 JSON naming another S2 patch as its
``corresponding_s2_patch``) is reported as a skipped pair naming both files, an error under
``--on_error=fail``.
"""
from __future__ import annotations

from typing import Iterator, Sequence

from prep.datasets.bigearthnet import raw as s2raw
from prep.datasets.bigearthnet import spec as ben
from prep.datasets.bigearthnet_mm import spec as mmspec
from prep.datasets.bigearthnet_s1 import raw as s1raw
from prep.shards import Exclude, Record, Skip

PatchError = s2raw.PatchError


def check_pair(s2: dict, s1: dict, s1_root: str, s2_root: str) -> None:
    """Check that an S1 patch is the twin of an S2 patch: same labels, and it names that S2 patch.

    Args:
      s2: the read S2 patch (``name``, ``labels43``).
      s1: the read S1 patch (``name``, ``labels43``, ``s2_name``: the pairing table's twin).
      s1_root: the folder of S1 patch folders (for the message).
      s2_root: the folder of S2 patch folders (for the message).

    Raises:
      PatchError: the 43-class label sets differ (both listed, with both files), or the S1 JSON
        names another ``corresponding_s2_patch``.
    """
    s1_json, s2_json = s1raw.json_path(s1_root, s1["name"]), s2raw.json_path(s2_root, s2["name"])
    a, b = ben.indices_43(s1["labels43"]), ben.indices_43(s2["labels43"])
    if a != b:
        only1 = [ben.LABELS_43[i] for i in a if i not in b]
        only2 = [ben.LABELS_43[i] for i in b if i not in a]
        raise PatchError(f"{s2['name']}: {s1_json}: the S1 labels disagree with the S2 twin's {s2_json}: "
                         f"only in S1 {only1}, only in S2 {only2}")
    named = s1.get("corresponding_s2", "")
    if named and named != s2["name"]:
        raise PatchError(f"{s2['name']}: {s1_json}: corresponding_s2_patch is {named}, but the pairing table "
                         f"pairs {s1['name']} with {s2['name']}")


def read_pair(s1_root: str, s2_root: str, s1_name: str, s2_name: str) -> tuple[dict, dict]:
    """Read and check one pair: (S2 patch, S1 patch) as their readers give them.

    Raises:
      PatchError: either patch unreadable (``read_patch`` of each modality), or ``check_pair`` fails.
    """
    s2 = s2raw.read_patch(s2_root, s2_name)
    try:
        s1 = s1raw.read_patch(s1_root, s1_name, s2_name)
    except PatchError as e:
        raise PatchError(f"{s2_name}: S1 twin {e}") from None
    check_pair(s2, s1, s1_root, s2_root)
    return s2, s1


def produce(items: Sequence[tuple[str, str]], s1_root: str, s2_root: str, schema_name: str,
            keep_excluded: bool = False) -> Iterator:
    """Records of one shard of BigEarthNet-MM: one Record, Skip or Exclude per (S1, S2) pair, in order.

    Keyed by the S2 name. A pair that cannot be read or whose labels disagree gives a ``Skip``; one
    without a 19-class target an ``Exclude`` unless ``keep_excluded``. A ``Record`` holds the
    feature values of ``schema_name`` (``spec.record_values``), the 14 bands for the band statistics
    (12 uint16 S2 bands at native size; VV and VH as ``band_states``,
    ``prep.datasets.bigearthnet_s1.raw.s1_state``), and the 19-class indices.

    Args:
      items: (S1 name, S2 name) pairs.
      s1_root: the local folder of S1 patch folders.
      s2_root: the local folder of S2 patch folders.
      schema_name: ``"compact"`` or ``"upstream"``.
      keep_excluded: write pairs without a 19-class target too (with no label).
    """
    schema = mmspec.SPEC.schema(schema_name)
    for s1_name, s2_name in items:
        try:
            s2, s1 = read_pair(s1_root, s2_root, s1_name, s2_name)
        except PatchError as e:
            yield Skip(s2_name, str(e).removeprefix(f"{s2_name}: "))
            continue
        idx19 = ben.indices_19(ben.indices_43(s2["labels43"]))
        if not idx19 and not keep_excluded:
            yield Exclude(s2_name, s1raw.NO_TARGET_REASON)
            continue
        yield Record(s2_name, mmspec.record_values(s2, s1, schema), s2["bands"], idx19,
                     band_states=s1raw.s1_band_states(s1["bands"]))
