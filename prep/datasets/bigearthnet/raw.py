"""Reading the raw BigEarthNet-S2 archive: patch folders, label JSON, band GeoTIFFs, split lists.

Shared by the command-line preparation (prep.bigearthnet), its Beam pipeline and the TFDS
builder. Every problem with a patch becomes a message that names the patch, the file and the
problem; ``produce`` turns those into ``Skip`` results for the sharded writer.
"""
from __future__ import annotations

import json
import os
import re
from typing import Iterator, Sequence

from prep import files
from prep.datasets.bigearthnet import spec as ben
from prep.errors import InputError
from prep.shards import Exclude, Record, Skip
from prep.tiff import BandError, read_band

_EPSG = re.compile(r'AUTHORITY\["EPSG",\s*"(\d+)"\]\s*\]\s*$')


class PatchError(InputError):
    """A patch that cannot be read: the message names the patch, the file and the problem."""


def json_path(root: str, name: str) -> str:
    return os.path.join(root, name, f"{name}_labels_metadata.json")


def band_path(root: str, name: str, band: str) -> str:
    return os.path.join(root, name, f"{name}_{band}.tif")


def epsg_from_wkt(wkt: str) -> int:
    """The EPSG code of the projection's outermost AUTHORITY, or 0 when the WKT carries none."""
    m = _EPSG.search(wkt.strip())
    return int(m.group(1)) if m else 0


def read_metadata(root: str, name: str) -> dict:
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
    if not isinstance(meta, dict) or not isinstance(meta.get("labels"), list):
        raise PatchError(f"{name}: {path} has no 'labels' list")
    coords = meta.get("coordinates")
    if not isinstance(coords, dict) or not all(k in coords for k in ("ulx", "uly", "lrx", "lry")):
        raise PatchError(f"{name}: {path} has no 'coordinates' with ulx, uly, lrx, lry")
    try:
        ben.indices_43(meta["labels"])
    except ben.UnknownLabelError as e:
        raise PatchError(f"{name}: {path}: {e}") from None
    return meta


def read_patch(root: str, name: str) -> dict:
    """Read one patch folder into the dict that ``bigearthnet.record_values`` takes."""
    meta = read_metadata(root, name)
    bands = {}
    for b in ben.BANDS:
        try:
            bands[b.name] = read_band(band_path(root, name, b.name), shape=b.shape, dtype=b.dtype)
        except BandError as e:
            raise PatchError(f"{name}: {e}") from None
    c = meta["coordinates"]
    coords = []
    for k in ("ulx", "uly", "lrx", "lry"):
        v = c[k]
        if not isinstance(v, (int, float)) or float(v) != int(v):
            raise PatchError(f"{name}: {json_path(root, name)}: coordinate {k}={v!r} is not a whole number of metres")
        coords.append(int(v))
    return {
        "name": name,
        "bands": bands,
        "labels43": meta["labels"],
        "acquisition_date": meta.get("acquisition_date", ""),
        "tile_source": meta.get("tile_source", ""),
        "coordinates": coords,
        "epsg": epsg_from_wkt(meta.get("projection", "")),
    }


def update_json(root: str, name: str, labels19: Sequence[str]) -> None:
    """Add ``BigEarthNet_19_labels`` to the patch JSON, keeping other keys, written atomically."""
    path = json_path(root, name)
    with open(path, "rb") as f:
        meta = json.loads(f.read())
    meta["BigEarthNet_19_labels"] = list(labels19)
    with files.atomic_write(path) as f:
        json.dump(meta, f)


def produce(items: Sequence[str], root: str, schema_name: str, keep_excluded: bool = False,
            write_json: bool = False) -> Iterator:
    """Records of one shard: one Record, Skip or Exclude per patch name, in order."""
    schema = ben.SPEC.schema(schema_name)
    for name in items:
        try:
            patch = read_patch(root, name)
        except PatchError as e:
            yield Skip(name, str(e).removeprefix(f"{name}: "))
            continue
        idx19 = ben.indices_19(ben.indices_43(patch["labels43"]))
        if write_json:
            update_json(root, name, [ben.LABELS_19[i] for i in idx19])
        if not idx19 and not keep_excluded:
            yield Exclude(name, "no 19-class target (all labels in classes without a 19-class equivalent)")
            continue
        yield Record(name, ben.record_values(patch, schema), patch["bands"], idx19)


EXCLUSION_REASONS = {
    "seasonal_snow": "seasonal snow (official exclusion list)",
    "cloud_and_shadow": "cloud or cloud shadow (official exclusion list)",
    "no_19_class_target": "no 19-class target (official exclusion list)",
}


def plan_splits(split_lists: dict[str, list[str]], exclusions: dict[str, frozenset[str]]):
    """Split lists -> (items per split, excluded entries, skipped entries).

    ``exclusions`` maps a reason (e.g. ``EXCLUSION_REASONS["seasonal_snow"]``) to the patch names
    it leaves out; the first matching reason is reported.

    A patch listed twice (in one split or in two) is kept at its first place and reported as
    skipped at the others; patches on an exclusion list are reported as excluded.
    """
    seen: dict[str, str] = {}
    items: dict[str, list[str]] = {}
    excluded, skipped = [], []
    for split, names in split_lists.items():
        keep = items.setdefault(split, [])
        for name in names:
            if name in seen:
                skipped.append({"split": split, "key": name,
                                "reason": f"also listed in split {seen[name]!r} (a patch may be in one split only)"})
                continue
            seen[name] = split
            reason = next((r for r, s in exclusions.items() if name in s), None)
            if reason:
                excluded.append({"split": split, "key": name, "reason": reason})
            else:
                keep.append(name)
    return items, excluded, skipped
