"""Reading the raw BigEarthNet-S2 archive: patch folders, label JSON, band GeoTIFFs, split lists.

Shared by the command-line preparation (prep.bigearthnet), its Beam pipeline and the TFDS
builder. Every problem with a patch becomes a message that names the patch, the file and the
problem; ``produce`` turns those into ``Skip`` results for the sharded writer.
"""
from __future__ import annotations

import dataclasses
import json
import lzma
import os
import re
from typing import Container, Iterator, NamedTuple, Sequence

from prep import files
from prep.datasets.bigearthnet import spec as ben
from prep.datasets.spec import Band
from prep.errors import InputError, PrepError, UsageError
from prep.shards import Exclude, Record, Skip
from prep.tiff import BandError, read_band, read_band_georef
from splits import bigearthnet as official

_EPSG = re.compile(r'AUTHORITY\["EPSG",\s*"(\d+)"\]\s*\]\s*$')


class PatchError(InputError):
    """A patch that cannot be read: the message names the patch, the file and the problem."""


def json_path(root: str, name: str) -> str:
    """Path of a patch's label file: ``<root>/<name>/<name>_labels_metadata.json`` (not checked to exist)."""
    return os.path.join(root, name, f"{name}_labels_metadata.json")


def band_path(root: str, name: str, band: str) -> str:
    """Path of one band GeoTIFF of a patch: ``<root>/<name>/<name>_<band>.tif`` (``band``: ``B01`` ... ``B12``, ``B8A``)."""
    return os.path.join(root, name, f"{name}_{band}.tif")


def epsg_from_wkt(wkt: str) -> int:
    """The EPSG code of the projection's outermost AUTHORITY, or 0 when the WKT carries none."""
    m = _EPSG.search(wkt.strip())
    return int(m.group(1)) if m else 0


def read_metadata(root: str, name: str) -> dict:
    """Read and check the label JSON of patch ``name`` in ``root`` (BigEarthNet-S2 v1.0 layout).

    Returns:
      The parsed JSON as it is: ``labels`` (43-class CLC Level-3 names), ``coordinates``
      (``ulx``, ``uly``, ``lrx``, ``lry`` in metres of the patch CRS) and the other keys
      (``projection``, ``tile_source``, ``acquisition_date``) when present.

    Raises:
      PatchError: no patch folder, a missing or malformed JSON file, no ``labels`` list, no
        ``coordinates`` with all four keys, or a label not in the 43-class nomenclature.
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


# The band whose GeoTIFF georeference the JSON coordinates are checked against (a 10 m band:
# 120 x 120 pixels of 10 m, so the box spans 1200 m each way), and the tolerance of the check:
# the JSON holds whole metres, so allow sub-metre rounding and nothing more.
GEOREF_BAND = "B02"
COORDINATE_TOLERANCE_M = 1.0
_BANDS = {b.name: b for b in ben.BANDS}


def _box(values: Sequence[float]) -> str:
    return "(" + ", ".join(f"{float(v):.10g}" for v in values) + ")"


def check_coordinates(name: str, path: str, coords: Sequence[float], epsg: int, georef: dict,
                      band: str = GEOREF_BAND, band_spec: Band | None = None) -> None:
    """Check a patch's JSON box against the georeference of one of its band GeoTIFFs.

    Args:
      name: the patch name (starts every message).
      path: the patch's JSON file (named in every message).
      coords: the JSON ``coordinates`` (ulx, uly, lrx, lry), in metres of the patch CRS.
      epsg: the EPSG code of the JSON ``projection`` (0 when it gives none: not compared).
      georef: ``prep.tiff.read_band_georef``'s georeference of ``band``: ``"bounds"`` (ulx, uly,
        lrx, lry), ``"epsg"`` (None when unknown: not compared), ``"transform"``.
      band: the band name, one of ``ben.BANDS`` unless ``band_spec`` is given.
      band_spec: the band's definition (its shape and resolution give the box's span), for a band
        of another modality (BigEarthNet-S1 ``VV``); default ``ben.BANDS``' ``band``.

    The box must be north-up (ulx < lrx, uly > lry), span the band's width x height in pixels
    times its resolution (120 x 10 m = 1200 m each way for B02), and each coordinate must lie
    within ``COORDINATE_TOLERANCE_M`` (1 m) of the GeoTIFF's; the EPSG codes must be equal.

    Raises:
      PatchError: on any mismatch (or a GeoTIFF without georeference), naming the patch, the
        JSON file and both boxes.
    """
    spec = band_spec or _BANDS[band]
    want_w, want_h = spec.shape[1] * spec.resolution_m, spec.shape[0] * spec.resolution_m
    ulx, uly, lrx, lry = (float(v) for v in coords)
    tol = COORDINATE_TOLERANCE_M
    theirs = georef["bounds"]
    their_epsg = georef.get("epsg")
    # The checks run for every patch: the messages are built only when one fails.
    if their_epsg is None and tuple(georef["transform"]) == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0):
        raise PatchError(f"{name}: {path}: coordinates (ulx, uly, lrx, lry) = {_box(coords)} cannot be "
                         f"checked: the GeoTIFF {band} has no georeference")
    north_up = ulx < lrx and uly > lry
    span_ok = abs(lrx - ulx - want_w) <= tol and abs(uly - lry - want_h) <= tol
    epsg_ok = not epsg or their_epsg is None or int(epsg) == int(their_epsg)
    box_ok = all(abs(a - b) <= tol for a, b in zip((ulx, uly, lrx, lry), theirs))
    if north_up and span_ok and epsg_ok and box_ok:
        return
    ours = f"coordinates (ulx, uly, lrx, lry) = {_box(coords)}"
    ref = f"the GeoTIFF georeference of {band} {_box(theirs)}"
    if not north_up:
        problem = f"{ours} are not a north-up box (ulx < lrx and uly > lry expected); {ref}"
    elif not span_ok:
        problem = (f"{ours} span {lrx - ulx:.10g} x {uly - lry:.10g} m, expected {want_w:g} x {want_h:g} m "
                   f"({spec.shape[1]} x {spec.shape[0]} pixels of {spec.resolution_m} m, within {tol:g} m); {ref}")
    elif not epsg_ok:
        problem = f"projection EPSG:{epsg} does not match {ref} in EPSG:{their_epsg} ({ours})"
    else:
        problem = f"{ours} do not match {ref} (by more than {tol:g} m)"
    raise PatchError(f"{name}: {path}: {problem}")


def read_patch(root: str, name: str) -> dict:
    """Read one patch folder into the dict that ``bigearthnet.record_values`` takes.

    Returns ``name``, ``bands`` (band name -> native-size uint16 array, e.g. (120, 120) for B02),
    ``labels43`` (the JSON's names), ``acquisition_date``, ``tile_source``, ``coordinates``
    (ulx, uly, lrx, lry as whole metres) and ``epsg`` (0 when the JSON gives none).

    Raises:
      PatchError: the folder, JSON or a band is missing or unreadable, a band has the wrong
        shape or dtype, a label is unknown, a coordinate is not a whole number, or the JSON box
        does not agree with the georeference of the B02 GeoTIFF (``check_coordinates``).
    """
    meta = read_metadata(root, name)
    bands = {}
    georef = None
    for b in ben.BANDS:
        path = band_path(root, name, b.name)
        try:
            if b.name == GEOREF_BAND:  # pixels and georeference from one read of the file
                bands[b.name], georef = read_band_georef(path, shape=b.shape, dtype=b.dtype)
            else:
                bands[b.name] = read_band(path, shape=b.shape, dtype=b.dtype)
        except BandError as e:
            raise PatchError(f"{name}: {e}") from None
    c = meta["coordinates"]
    coords = []
    for k in ("ulx", "uly", "lrx", "lry"):
        v = c[k]
        if not isinstance(v, (int, float)) or float(v) != int(v):
            raise PatchError(f"{name}: {json_path(root, name)}: coordinate {k}={v!r} is not a whole number of metres")
        coords.append(int(v))
    epsg = epsg_from_wkt(meta.get("projection", ""))
    check_coordinates(name, json_path(root, name), coords, epsg, georef)
    return {
        "name": name,
        "bands": bands,
        "labels43": meta["labels"],
        "acquisition_date": meta.get("acquisition_date", ""),
        "tile_source": meta.get("tile_source", ""),
        "coordinates": coords,
        "epsg": epsg,
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
    """Records of one shard: one Record, Skip or Exclude per patch name, in order.

    The worker side of the sharded writer (``prep.shards.write_dataset``). A patch that cannot be
    read (``PatchError``) gives a ``Skip`` with the message; a patch whose 43-class labels map to no
    19-class label gives an ``Exclude`` unless ``keep_excluded``. A ``Record`` holds the feature
    values of ``schema_name`` (``spec.record_values``), the 12 uint16 bands at native size (raw L2A
    digital numbers, BOA reflectance x 10000) for the band statistics, and the 19-class indices.

    Args:
      items: patch names (folder names under ``root``).
      root: the local folder of patch folders.
      schema_name: ``"compact"`` or ``"upstream"``.
      keep_excluded: write patches without a 19-class target too (with no label).
      write_json: also add ``BigEarthNet_19_labels`` to each readable patch's JSON (``update_json``).
    """
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


@dataclasses.dataclass(frozen=True)
class ListChoice:
    """The split and exclusion lists one preparation uses (``choose_lists``).

    Attributes:
      splits: split name -> patch names, in file order.
      source: "official" (bigearthnet-common), "root folder" (train.csv, ... beside the patch
        folders) or "split files" (given with ``-n``).
      split_files: the split files read (empty for the official splits).
      exclusions: reason -> patch names left out (empty with ``keep_excluded``).
      exclusion_files: file names of the lists read besides the official ones, in order.
    """

    splits: dict[str, list[str]]
    source: str
    split_files: tuple[str, ...]
    exclusions: dict[str, frozenset[str]]
    exclusion_files: tuple[str, ...] = ()

    def describe(self) -> str:
        """Where the splits come from, for messages: ``the official splits (bigearthnet-common)``."""
        if self.source == "official":
            return "the official splits (bigearthnet-common)"
        names = ", ".join(os.path.basename(os.fspath(p)) for p in self.split_files)
        return f"{names} in the root folder" if self.source == "root folder" else f"the split files {names}"


def _folder_file(folder, name: str):
    """``folder/name`` when that file exists, else None.

    ``folder``: a local path, a Beam filesystem path (``gs://...``) or a path object with ``/`` and
    ``exists()`` (``epath.Path``).
    """
    if hasattr(folder, "exists") and not isinstance(folder, str):
        path = folder / name
        return path if path.exists() else None
    folder = os.fspath(folder)
    if "://" in folder:
        from prep import beam  # a remote root is only prepared with a Beam runner

        path = beam.join(folder, name)
        return path if beam.sizes(path) else None
    path = os.path.join(folder, name)
    return path if os.path.isfile(path) else None


def _read_list(path) -> list[str]:
    if isinstance(path, str) and "://" in path:
        import tempfile

        from prep import beam

        with tempfile.TemporaryDirectory(prefix="ben_list_") as tmp:
            local = os.path.join(tmp, path.rsplit("/", 1)[-1])
            beam.download(path, local)
            return official.read_names(local)
    return official.read_names(path)


def folder_lists(folder: str | os.PathLike, names: dict[str, str]) -> dict[str, object]:
    """Key -> the path of ``names[key]`` found in ``folder``, for the keys with a file.

    Each name is tried plain, then ``.bz2``, then ``.gz`` (``splits.bigearthnet.FOLDER_SUFFIXES``);
    the first found is taken. ``folder`` is a local path, a Beam filesystem path (``gs://...``) or
    an ``epath.Path``; the paths returned are of the same kind.
    """
    found = {}
    for key, name in names.items():
        for suffix in official.FOLDER_SUFFIXES:
            path = _folder_file(folder, name + suffix)
            if path is not None:
                found[key] = path
                break
    return found


def choose_lists(folder: str | os.PathLike, split_paths: Sequence[str] | None = None,
                 exclusion_paths: Sequence[str] | None = None, keep_excluded: bool = False) -> ListChoice:
    """The split and exclusion lists of a preparation.

    The one rule the command (local and Beam) and the TFDS builder share, so the same folder gives
    the same splits.

    Splits: the files given (``-n``; each split named by ``official.split_name``); else the split
    files in ``folder`` (``train.csv``, ``val.csv``, ``test.csv``, plain, ``.bz2`` or ``.gz``: only
    the splits with a file); else the official train/val/test lists.

    Exclusions, unless ``keep_excluded``: the official lists (``EXCLUSION_REASONS``), then the
    same-named lists in ``folder`` (``patches_with_seasonal_snow.csv``,
    ``patches_with_cloud_and_shadow.csv``, ``patches_with_no_19_class_targets.csv``, as the
    synthetic generator writes them), then ``exclusion_paths``; a list found in the folder or
    given is reported as ``listed in <file name>`` (two lists of one file name are merged).

    Args:
      folder: the folder the lists are looked for in (the root folder, or the TFDS manual folder):
        a local path, a Beam filesystem path or an ``epath.Path``.
      split_paths: split files given by the user; None or empty for the default.
      exclusion_paths: further exclusion lists given by the user.
      keep_excluded: use no exclusion list at all.

    Raises:
      UsageError: a given split file is missing or unreadable, or two name the same split.
      PrepError: a given exclusion list is missing.
    """
    if split_paths:
        splits: dict[str, list[str]] = {}
        for p in split_paths:
            if not os.path.isfile(p):
                raise UsageError(f"split file {p}: not found")
            name = official.split_name(p)
            if name in splits:
                raise UsageError(f"split file {p}: a second file for split {name!r}")
            try:
                splits[name] = official.read_names(p)
            except (OSError, EOFError, UnicodeDecodeError, lzma.LZMAError) as e:
                raise UsageError(f"split file {p}: unreadable ({e})") from None
        source, files_used = "split files", tuple(split_paths)
    elif found := folder_lists(folder, official.FOLDER_SPLIT_FILES):
        splits = {s: _read_list(p) for s, p in found.items()}
        source, files_used = "root folder", tuple(found.values())
    else:
        splits = {s: list(official.official_split(s)) for s in official.SPLITS}
        source, files_used = "official", ()
    if keep_excluded:
        return ListChoice(splits, source, files_used, {})
    exclusions = {EXCLUSION_REASONS[k]: official.exclusion(k) for k in official.EXCLUSIONS}
    extra = list(folder_lists(folder, official.FOLDER_EXCLUSION_FILES).values())
    for p in exclusion_paths or ():
        if not os.path.isfile(p):
            raise PrepError(f"exclusion list {p}: not found")
        extra.append(p)
    names = []
    for p in extra:
        name = os.path.basename(os.fspath(p))
        reason = f"listed in {name}"
        exclusions[reason] = exclusions.get(reason, frozenset()) | frozenset(_read_list(p))
        if name not in names:
            names.append(name)
    return ListChoice(splits, source, files_used, exclusions, tuple(names))


class SplitPlan(NamedTuple):
    """What ``plan_splits`` makes of the lists: each ``{"split", "key", ...}`` entry in list order.

    Attributes:
      items: split -> the patch names to prepare, in list order.
      excluded: patches on an exclusion list (with ``reason``).
      skipped: patches listed a second time (with ``reason``).
      missing: patches to prepare whose folder is not in ``present`` (empty when no ``present``).
    """

    items: dict[str, list[str]]
    excluded: list[dict]
    skipped: list[dict]
    missing: list[dict]


def plan_splits(split_lists: dict[str, list[str]], exclusions: dict[str, frozenset[str]],
                present: Container[str] | None = None) -> SplitPlan:
    """Split lists -> the patches to prepare per split, and what is left out (``SplitPlan``).

    ``exclusions`` maps a reason (e.g. ``EXCLUSION_REASONS["seasonal_snow"]``) to the patch names
    it leaves out; the first matching reason is reported. A patch listed twice (in one split or in
    two) is kept at its first place and reported as skipped at the others; patches on an
    exclusion list are reported as excluded (whether their folder exists or not). With
    ``present`` (the patch folder names there are), a patch to prepare whose folder is not
    present is reported as missing instead.
    """
    seen: dict[str, str] = {}
    items: dict[str, list[str]] = {}
    excluded, skipped, missing = [], [], []
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
            elif present is not None and name not in present:
                missing.append({"split": split, "key": name})
            else:
                keep.append(name)
    return SplitPlan(items, excluded, skipped, missing)


def patch_folders(root: str) -> set[str]:
    """The names of the folders in the local folder ``root`` (one listing, however many patches)."""
    with os.scandir(root) as it:
        return {e.name for e in it if e.is_dir()}


def missing_problem(plan: SplitPlan, lists: ListChoice, present: Container[str]) -> str:
    """The message for patches to prepare whose folder is missing.

    It says how many of how many, gives one example, and how many patch folders the root folder
    holds (``present``) that no split lists. ``plan.missing`` must not be empty.
    """
    n = len(plan.missing)
    total = n + sum(len(v) for v in plan.items.values())
    first = plan.missing[0]
    text = (f"{n:,} of the {total:,} patches to prepare from {lists.describe()} have no patch folder "
            f"here ({total - n:,} present), e.g. {first['key']} (split {first['split']})")
    listed = {name for names in lists.splits.values() for name in names}
    unlisted = sum(1 for name in present if name not in listed and ben.PATCH_NAME.match(name))
    if unlisted:
        text += f"; {unlisted:,} patch folder(s) here are in none of these splits"
    return text
