"""Reading the raw BigEarthNet-S1 archive: S1 patch folders, their JSON, the pairing with S2.

An S1 patch folder holds ``<patch>_VV.tif``, ``<patch>_VH.tif`` (float32 dB, 120 x 120) and
``<patch>_labels_metadata.json``. The JSON differs from S2's in two spellings, read both ways and
recorded in the S2 fields: ``acquisition_time`` (S2: ``acquisition_date``; stored as
``YYYY-MM-DD HH:MM:SS`` as S2 writes it) and ``coordinates.lly`` (S2: ``lry``). A JSON without
``labels`` is bad input (a ``PatchError``), never an empty label list.

Splits and exclusions are BigEarthNet-S2's (``prep.datasets.bigearthnet.raw.choose_lists``): a
split list may name S2 or S1 patches; each is paired through the S1 <-> S2 table
(``splits.bigearthnet_s1``) and an S1 patch is excluded when its S2 twin is. Shared by the S1 and
the MM (S1 + S2) commands and TFDS builders.
"""
from __future__ import annotations

import json
import os
from typing import Container, Iterator, NamedTuple, Sequence

import numpy as np

from prep.datasets.bigearthnet import raw as s2raw
from prep.datasets.bigearthnet import spec as ben
from prep.datasets.bigearthnet_s1 import spec as s1spec
from prep.shards import Exclude, Record, Skip
from prep.tiff import BandError, read_band, read_band_georef
from splits import bigearthnet_s1 as pairing_lists

PatchError = s2raw.PatchError
json_path = s2raw.json_path  # <root>/<name>/<name>_labels_metadata.json, as S2
band_path = s2raw.band_path  # <root>/<name>/<name>_VV.tif
GEOREF_BAND = "VV"
NO_TARGET_REASON = "no 19-class target (all labels in classes without a 19-class equivalent)"
# (S2 key, S1 spelling) of the JSON keys whose name differs between the modalities
SPELLINGS = {"acquisition_date": "acquisition_time", "lry": "lly"}


def acquisition(meta: dict) -> str:
    """The acquisition time of a patch JSON as S2 writes it, ``YYYY-MM-DD HH:MM:SS``.

    S1 writes ``acquisition_time`` as ``2017-06-13T16:50:43``, S2 ``acquisition_date`` as
    ``2017-06-13 16:50:43``: either key is read and the ``T`` becomes a space. "" when neither.
    """
    value = meta.get("acquisition_date", meta.get("acquisition_time", ""))
    return str(value).replace("T", " ", 1)


def read_metadata(root: str, name: str) -> dict:
    """Read and check the JSON of S1 patch ``name`` in ``root``.

    Returns:
      The parsed JSON with ``coordinates`` holding ``lry`` (copied from ``lly`` when only that is
      given) and ``acquisition_date`` (from ``acquisition_time``, ``acquisition`` form) added.

    Raises:
      PatchError: no patch folder, a missing or malformed JSON, no ``labels`` list (a JSON without
        labels is bad input, not an empty label list), no ``coordinates`` with ulx, uly, lrx and
        lry or lly, or a label not in the 43-class nomenclature.
    """
    path = json_path(root, name)
    if not os.path.isdir(os.path.join(root, name)):
        raise PatchError(f"{name}: no patch folder {os.path.join(root, name)}")
    try:
        with open(path, "rb") as f:
            meta = json.loads(f.read())
    except FileNotFoundError:
        raise PatchError(f"{name}: missing label file {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise PatchError(f"{name}: malformed JSON in {path}: {e}") from None
    if not isinstance(meta, dict) or "labels" not in meta:
        raise PatchError(f"{name}: {path} has no 'labels' (a patch without labels cannot be written)")
    if not isinstance(meta["labels"], list) or not all(isinstance(x, str) for x in meta["labels"]):
        raise PatchError(f"{name}: {path}: 'labels' is not a list of class names")
    coords = meta.get("coordinates")
    if isinstance(coords, dict) and "lry" not in coords and "lly" in coords:
        coords = {**coords, "lry": coords["lly"]}
    if not isinstance(coords, dict) or not all(k in coords for k in ("ulx", "uly", "lrx", "lry")):
        raise PatchError(f"{name}: {path} has no 'coordinates' with ulx, uly, lrx, lry (or lly)")
    try:
        ben.indices_43(meta["labels"])
    except ben.UnknownLabelError as e:
        raise PatchError(f"{name}: {path}: {e}") from None
    return {**meta, "coordinates": coords, "acquisition_date": acquisition(meta)}


def read_patch(root: str, name: str, s2_name: str = "") -> dict:
    """Read one S1 patch folder into the dict ``spec.record_values`` takes.

    Args:
      root: the folder of S1 patch folders.
      name: the S1 patch name.
      s2_name: its S2 twin (recorded; the JSON's ``corresponding_s2_patch`` when empty).

    Returns:
      ``name``, ``s2_name``, ``corresponding_s2`` (the JSON's ``corresponding_s2_patch``), ``bands``
      (VV, VH -> (120, 120) float32 dB), ``labels43``,
      ``acquisition_date`` (``YYYY-MM-DD HH:MM:SS``), ``tile_source`` (the JSON's
      ``scene_source``), ``coordinates`` (ulx, uly, lrx, lry, whole metres), ``epsg``.

    Raises:
      PatchError: as ``read_metadata``; a missing or unreadable band, a band that is not
        120 x 120 float32, a coordinate that is not a whole number, or a JSON box that does not
        agree with the VV GeoTIFF's georeference (``prep.datasets.bigearthnet.raw.check_coordinates``).
    """
    meta = read_metadata(root, name)
    bands, georef = {}, None
    for b in s1spec.BANDS:
        path = band_path(root, name, b.name)
        try:
            if b.name == GEOREF_BAND:
                bands[b.name], georef = read_band_georef(path, shape=b.shape, dtype=b.dtype)
            else:
                bands[b.name] = read_band(path, shape=b.shape, dtype=b.dtype)
        except BandError as e:
            raise PatchError(f"{name}: {e}") from None
    coords = []
    for k in ("ulx", "uly", "lrx", "lry"):
        v = meta["coordinates"][k]
        if not isinstance(v, (int, float)) or float(v) != int(v):
            raise PatchError(f"{name}: {json_path(root, name)}: coordinate {k}={v!r} is not a whole number of metres")
        coords.append(int(v))
    epsg = s2raw.epsg_from_wkt(meta.get("projection", ""))
    s2raw.check_coordinates(name, json_path(root, name), coords, epsg, georef, band=GEOREF_BAND,
                            band_spec=s1spec.BANDS[0])
    return {
        "name": name,
        "s2_name": s2_name or str(meta.get("corresponding_s2_patch", "")),
        "corresponding_s2": str(meta.get("corresponding_s2_patch", "")),
        "bands": bands,
        "labels43": meta["labels"],
        "acquisition_date": meta["acquisition_date"],
        "tile_source": str(meta.get("scene_source", meta.get("tile_source", ""))),
        "coordinates": coords,
        "epsg": epsg,
    }


def s1_state(pixels: np.ndarray) -> dict:
    """``prep.stats.float_state`` of one 120 x 120 float32 band (dB), without BLAS.

    The sum of squares is numpy's own loop (``einsum``), not ``np.dot``: a BLAS call wakes
    OpenBLAS's threads, which on a busy 2-core machine cost about 17 ms per call (measured here:
    prep bigearthnet_s1 wrote 67 patches/s with ``np.dot``), far more than the work itself. The sum
    may differ from ``float_state``'s in the last bits (the same for any worker count or runner).

    Args:
      pixels: [120, 120] float32 backscatter in dB.

    Returns:
      The partial state (count, sum, sumsq, min, max, sample) ``BandStats.merge_state`` takes.
    """
    from prep.stats import SAMPLE_STRIDE

    a64 = np.asarray(pixels, np.float64).reshape(-1)
    return {"count": a64.size, "sum": float(a64.sum()), "sumsq": float(np.einsum("i,i->", a64, a64)),
            "min": float(a64.min()), "max": float(a64.max()), "sample": a64[::SAMPLE_STRIDE].copy()}


def s1_band_states(bands: dict[str, np.ndarray]) -> list[tuple[str, dict]]:
    """(band, ``s1_state``) for VV and VH, in band order: a ``Record``'s ``band_states``."""
    return [(b.name, s1_state(bands[b.name])) for b in s1spec.BANDS]


def produce(items: Sequence[tuple[str, str]], root: str, schema_name: str, keep_excluded: bool = False) -> Iterator:
    """Records of one shard of BigEarthNet-S1: one Record, Skip or Exclude per (S1, S2) pair, in order.

    A patch that cannot be read gives a ``Skip`` with the message; one whose labels map to no
    19-class label an ``Exclude`` unless ``keep_excluded``. A ``Record`` is keyed by the S1 name
    and holds the feature values of ``schema_name`` (``spec.record_values``), the statistics of VV
    and VH (float32 dB) as ``band_states`` (``s1_state``), and the 19-class indices.

    Args:
      items: (S1 name, S2 twin) pairs.
      root: the local folder of S1 patch folders.
      schema_name: ``"compact"`` or ``"upstream"``.
      keep_excluded: write patches without a 19-class target too (with no label).
    """
    schema = s1spec.SPEC.schema(schema_name)
    for s1, s2 in items:
        try:
            patch = read_patch(root, s1, s2)
        except PatchError as e:
            yield Skip(s1, str(e).removeprefix(f"{s1}: "))
            continue
        idx19 = ben.indices_19(ben.indices_43(patch["labels43"]))
        if not idx19 and not keep_excluded:
            yield Exclude(s1, NO_TARGET_REASON)
            continue
        yield Record(s1, s1spec.record_values(patch, schema), {}, idx19, band_states=s1_band_states(patch["bands"]))


class PairPlan(NamedTuple):
    """The split lists made into S1/S2 pairs (``plan_pairs``); entries ``{"split", "key", ...}``.

    Attributes:
      items: split -> (S1 name, S2 name) pairs to prepare, in list order.
      excluded: pairs whose S2 twin (or S1 patch) is on an exclusion list (``reason`` says which).
      skipped: names listed twice, or with no twin in the pairing table.
      missing: pairs whose patch folder(s) are not present.
    """

    items: dict[str, list[tuple[str, str]]]
    excluded: list[dict]
    skipped: list[dict]
    missing: list[dict]


def plan_pairs(split_lists: dict[str, list[str]], exclusions: dict[str, frozenset[str]],
               pairing: pairing_lists.Pairing, key: str = "s1",
               present_s1: Container[str] | None = None, present_s2: Container[str] | None = None) -> PairPlan:
    """Split lists of S2 (or S1) names -> the (S1, S2) pairs to prepare, and what is left out.

    Each listed name is paired through ``pairing`` (an S1 name with ``s1_to_s2``, else an S2 name
    with ``s2_to_s1``); a name in neither is skipped. The pairs then follow the S2 rules
    (``prep.datasets.bigearthnet.raw.plan_splits``): a pair is excluded when its S2 twin (or its S1
    patch) is on an exclusion list, the reason naming the twin; a patch listed twice is skipped at
    its later places. A pair whose S1 folder is not in ``present_s1`` (or S2 folder not in
    ``present_s2``) is missing.

    Args:
      split_lists: split -> patch names (S2 as in the official lists, or S1).
      exclusions: reason -> patch names left out (S2 names as the official lists, or S1 names).
      pairing: the S1 <-> S2 table.
      key: the name each entry is reported by, ``"s1"`` (BigEarthNet-S1) or ``"s2"`` (MM).
      present_s1: the S1 patch folders there are (None: not checked).
      present_s2: the S2 patch folders there are (None: not checked).
    """
    s2_lists: dict[str, list[str]] = {}
    unpaired: list[dict] = []
    for split, names in split_lists.items():
        out = s2_lists.setdefault(split, [])
        for name in names:
            s2 = pairing.s1_to_s2.get(name) or (name if name in pairing.s2_to_s1 else None)
            if s2 is None:
                unpaired.append({"split": split, "key": name,
                                 "reason": f"not in the S1-S2 pairing table {os.path.basename(pairing.source)}"})
            else:
                out.append(s2)
    # an S1 name on a list leaves out its pair just as its S2 twin's name does
    s2_exclusions = {r: frozenset(pairing.s1_to_s2.get(n, n) for n in names) for r, names in exclusions.items()}
    plan = s2raw.plan_splits(s2_lists, s2_exclusions, None)

    def name_of(s2: str) -> str:
        return pairing.s2_to_s1[s2] if key == "s1" else s2

    def twin(s2: str) -> str:
        return f"S2 twin {s2}" if key == "s1" else f"S1 twin {pairing.s2_to_s1[s2]}"

    items: dict[str, list[tuple[str, str]]] = {}
    missing: list[dict] = []
    for split, names in plan.items.items():
        keep = items.setdefault(split, [])
        for s2 in names:
            s1 = pairing.s2_to_s1[s2]
            if (present_s1 is not None and s1 not in present_s1) or (present_s2 is not None and s2 not in present_s2):
                missing.append({"split": split, "key": name_of(s2)})
            else:
                keep.append((s1, s2))
    excluded = [{**e, "key": name_of(e["key"]), "reason": f"{e['reason']} ({twin(e['key'])})"} for e in plan.excluded]
    skipped = unpaired + [{**e, "key": name_of(e["key"])} for e in plan.skipped]
    return PairPlan(items, excluded, skipped, missing)


def choose_pairing(root: str, pairing_path: str | None) -> pairing_lists.Pairing:
    """The pairing table of a preparation: ``pairing_path``, else the one in ``root``, else the wheel's.

    Raises:
      InputError: a given or found table that is missing or malformed (``splits.bigearthnet_s1.read_pairing``).
      FileNotFoundError: the wheel's table is needed and bigearthnet-common is not installed.
    """
    return pairing_lists.pairing(pairing_path or pairing_lists.find_in_folder(root))


def missing_problem(plan: PairPlan, what: str) -> str:
    """The message for listed pairs whose patch folder is missing: how many of how many, one example.

    ``what`` names the lists (``ListChoice.describe()``); ``plan.missing`` must not be empty.
    """
    n = len(plan.missing)
    total = n + sum(len(v) for v in plan.items.values())
    first = plan.missing[0]
    return (f"{n:,} of the {total:,} patches to prepare from {what} have no patch folder here "
            f"({total - n:,} present), e.g. {first['key']} (split {first['split']})")
