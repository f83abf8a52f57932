"""Reading the raw BigEarthNet v2 (reBEN) archive: the metadata parquet files, band GeoTIFFs, reference maps.

Layout (as published)::

    <root>/metadata.parquet
    <root>/metadata_for_patches_with_snow_cloud_or_shadow.parquet
    <root>/BigEarthNet-S2/<S2 product>/<patch_id>/<patch_id>_<band>.tif     12 bands, native sizes
    <root>/BigEarthNet-S1/<S1 product>/<s1_name>/<s1_name>_{VV,VH}.tif      float32 dB, 120 x 120
    <root>/Reference_Maps/<S2 product>/<patch_id>/<patch_id>_reference_map.tif   CLC 2018 codes

The S2 product of a patch is its id without the last two parts (row, column), the S1 product the
S1 name without the last three (tile, row, column). Shared by the preparation command (local and
Beam) and the TFDS builder; every problem becomes a message naming the file and the problem.
"""
from __future__ import annotations

import os
from typing import Iterator, NamedTuple, Sequence

import numpy as np

from prep.datasets.bigearthnet import spec as ben
from prep.datasets.reben import spec as sp
from prep.datasets.reben.spec import RebenInputError
from prep.datasets.spec import Schema
from prep.shards import Record, Skip
from prep.tiff import BandError, read_band, read_band_georef
from splits import reben as rules

S2_DIR = "BigEarthNet-S2"
S1_DIR = "BigEarthNet-S1"
REFERENCE_DIR = "Reference_Maps"
METADATA = "metadata.parquet"
SNOW_CLOUD_METADATA = "metadata_for_patches_with_snow_cloud_or_shadow.parquet"
REQUIRED_COLUMNS = ("patch_id", "labels", "split", "s1_name", "contains_seasonal_snow", "contains_cloud_or_shadow")
OPTIONAL_COLUMNS = ("country", "s2v1_name")
GEOREF_BAND = "B02"


class Patch(NamedTuple):
    """One patch as the metadata describes it (the item of a preparation plan; picklable).

    Attributes:
      patch_id: the S2 patch, e.g. ``S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP_26_57``.
      labels: its 19-class names, as listed.
      s1_name: the S1 twin, e.g. ``S1A_IW_GRDH_1SDV_20170613T165043_33UUP_61_39``.
      s2v1_name: the BigEarthNet-S2 v1.0 name of the patch ('' when none).
      country: the country ('' when the column is absent).
      snow: ``contains_seasonal_snow``.
      cloud: ``contains_cloud_or_shadow``.
    """

    patch_id: str
    labels: tuple[str, ...]
    s1_name: str
    s2v1_name: str
    country: str
    snow: bool
    cloud: bool


def as_patch(item: Sequence) -> Patch:
    """A ``Patch`` from its fields in order (a plan item after a JSON round trip is a list)."""
    if isinstance(item, Patch):
        return item
    pid, labels, *rest = item
    return Patch(pid, tuple(labels), *rest)


def _product(name: str, drop: int) -> str:
    parts = name.split("_")
    if len(parts) <= drop or not all(parts[-drop:]):
        raise ValueError(f"not a reBEN patch name: {name!r}")
    return "_".join(parts[:-drop])


def s2_product(patch_id: str) -> str:
    """The S2 product folder of a patch: its id without the row and column parts.

    Raises:
      ValueError: a name with fewer than three ``_``-separated parts.
    """
    return _product(patch_id, 2)


def s1_product(s1_name: str) -> str:
    """The S1 product folder of an S1 patch: its name without the tile, row and column parts.

    Raises:
      ValueError: a name with fewer than four ``_``-separated parts.
    """
    return _product(s1_name, 3)


def s2_band_path(root: str, patch_id: str, band: str) -> str:
    """``<root>/BigEarthNet-S2/<product>/<patch_id>/<patch_id>_<band>.tif`` (not checked to exist)."""
    return os.path.join(root, S2_DIR, s2_product(patch_id), patch_id, f"{patch_id}_{band}.tif")


def s1_band_path(root: str, s1_name: str, band: str) -> str:
    """``<root>/BigEarthNet-S1/<product>/<s1_name>/<s1_name>_<band>.tif`` (``band``: VV or VH)."""
    return os.path.join(root, S1_DIR, s1_product(s1_name), s1_name, f"{s1_name}_{band}.tif")


def reference_map_path(root: str, patch_id: str) -> str:
    """``<root>/Reference_Maps/<product>/<patch_id>/<patch_id>_reference_map.tif``."""
    return os.path.join(root, REFERENCE_DIR, s2_product(patch_id), patch_id, f"{patch_id}_reference_map.tif")


# --- the metadata -------------------------------------------------------------------------------

class Row(NamedTuple):
    """One row of a metadata file: its 0-based number, split (records' name), the patch, and a problem.

    ``problem`` is None for a good row, else what is wrong with it (e.g. an unknown label name): the
    row cannot be prepared but the file is otherwise sound.
    """

    number: int
    split: str
    patch: Patch
    problem: str | None


def read_metadata(path: str) -> list[Row]:
    """Read and check one reBEN metadata parquet file (``metadata.parquet`` or the snow/cloud one).

    Args:
      path: the parquet file.

    Returns:
      One ``Row`` per row, in file order. A row whose labels are not a list of 19-class names has
      a ``problem``; the caller decides (fail or skip).

    Raises:
      RebenInputError: a missing or unreadable file, a missing column, or a row whose ``patch_id``,
        ``s1_name``, ``split`` or snow/cloud flags are not usable (the file is then not reBEN metadata).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not os.path.isfile(path):
        raise RebenInputError("a folder, not a Parquet file" if os.path.isdir(path) else "no such file", path=path)
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as e:
        raise RebenInputError(f"not a readable Parquet file ({e})", path=path) from None
    missing = [c for c in REQUIRED_COLUMNS if c not in table.column_names]
    if missing:
        raise RebenInputError(f"no column {', '.join(missing)} (columns: {', '.join(table.column_names)})", path=path)
    cols = {c: table.column(c).to_pylist() for c in REQUIRED_COLUMNS + OPTIONAL_COLUMNS if c in table.column_names}
    n = table.num_rows
    optional = [cols.get(c) or [""] * n for c in ("s2v1_name", "country")]
    known = frozenset(ben.LABELS_19)
    rows = []
    for i, (pid, s1, split, labels, snow, cloud, s2v1, country) in enumerate(zip(
            cols["patch_id"], cols["s1_name"], cols["split"], cols["labels"], cols["contains_seasonal_snow"],
            cols["contains_cloud_or_shadow"], *optional)):
        if not (isinstance(pid, str) and pid.count("_") >= 2 and isinstance(s1, str) and s1.count("_") >= 3
                and isinstance(split, str) and split in rules.SPLIT_NAMES and type(snow) is bool and type(cloud) is bool):
            raise RebenInputError(_row_problem(i, pid, s1, split, snow, cloud), path=path)
        problem = None
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
            problem, labels = f"labels {labels!r} is not a list of names", []
        elif not known.issuperset(labels):
            unknown = next(x for x in labels if x not in known)
            problem = f"unknown label {unknown!r} (not in the 19-class nomenclature)"
        rows.append(Row(i, rules.SPLIT_NAMES[split], Patch(pid, tuple(labels), s1, str(s2v1 or ""),
                                                            str(country or ""), snow, cloud), problem))
    return rows


def _row_problem(i: int, pid, s1, split, snow, cloud) -> str:
    """What makes a metadata row unusable (``read_metadata``'s fast check failed), as a message."""
    if not isinstance(pid, str):
        return f"row {i}: patch_id {pid!r} is not a name"
    where = f"row {i} ({pid})"
    try:
        s2_product(pid)
        s1_product(s1 if isinstance(s1, str) else repr(s1))
        rules.split_name(split)
    except ValueError as e:
        return f"{where}: {e}"
    column, value = ("contains_seasonal_snow", snow) if type(snow) is not bool else ("contains_cloud_or_shadow", cloud)
    return f"{where}: {column} is {value!r}, not true or false"


def exclusion_reason(patch: Patch, listed_apart: str | None) -> str | None:
    """Why a patch is left out by default, or None to prepare it.

    Args:
      patch: the patch with its snow/cloud flags and labels.
      listed_apart: the file name when the patch comes from the snow/cloud metadata file, else None.

    Returns:
      The flags that are set (``seasonal snow``, ``cloud or cloud shadow``), else the snow/cloud
      file it is listed in, else ``no 19-class label`` for a patch with an empty label list; None
      for a patch to prepare.
    """
    flags = [t for t, on in (("seasonal snow (contains_seasonal_snow)", patch.snow),
                             ("cloud or cloud shadow (contains_cloud_or_shadow)", patch.cloud)) if on]
    if flags:
        return " and ".join(flags)
    if listed_apart:
        return f"listed in {listed_apart}"
    if not patch.labels:
        return "no 19-class label in the metadata"
    return None


class PatchPlan(NamedTuple):
    """What ``plan_patches`` makes of the metadata (each entry ``{"split", "key", ...}``, in file order).

    Attributes:
      items: split -> the patches to prepare (``Patch``), in file order; splits in train, val, test order.
      excluded: patches left out by rule (with ``reason``).
      skipped: bad rows and repeated patch ids (with ``reason``).
      missing: patches to prepare whose S2 folder is not in ``present``.
      counts: metadata file name -> its rows.
    """

    items: dict[str, list[Patch]]
    excluded: list[dict]
    skipped: list[dict]
    missing: list[dict]
    counts: dict[str, int]


def plan_patches(sources: Sequence[tuple[str, list[Row], bool]], keep_excluded: bool = False,
                 present: set[str] | None = None) -> PatchPlan:
    """The patches to prepare per split, and what is left out, from the metadata files' rows.

    Args:
      sources: (file name, its rows, whether it is the snow/cloud file) per metadata file, in order.
      keep_excluded: prepare the patches ``exclusion_reason`` leaves out too (flags kept in the records).
      present: the patch ids with an S2 folder; None to not check.

    Returns:
      The ``PatchPlan``. A row with a problem is skipped (``"<file>: row <n>: <problem>"``), a patch
      id listed again is skipped at its later places.
    """
    found: dict[str, list[Patch]] = {s: [] for s in rules.SPLITS}
    excluded, skipped, missing = [], [], []
    first: dict[str, str] = {}
    counts = {}
    for name, rows, apart in sources:
        counts[name] = len(rows)
        for row in rows:
            pid = row.patch.patch_id
            if row.problem:
                skipped.append({"split": row.split, "key": pid, "reason": f"{name}: row {row.number}: {row.problem}"})
                continue
            if pid in first:
                skipped.append({"split": row.split, "key": pid,
                                "reason": f"{name}: row {row.number}: listed again (first at {first[pid]})"})
                continue
            first[pid] = f"{name} row {row.number}"
            reason = exclusion_reason(row.patch, name if apart else None)
            if reason and not keep_excluded:
                excluded.append({"split": row.split, "key": pid, "reason": reason})
            elif present is not None and pid not in present:
                missing.append({"split": row.split, "key": pid})
            else:
                found[row.split].append(row.patch)
    used = {e["split"] for e in excluded + skipped + missing}
    items = {s: v for s, v in found.items() if v or s in used}
    return PatchPlan(items, excluded, skipped, missing, counts)


def patch_folders(root: str) -> set[str]:
    """The patch ids with a folder under ``<root>/BigEarthNet-S2/<product>/`` (one listing per product).

    Raises:
      RebenInputError: no ``BigEarthNet-S2`` folder in ``root``.
    """
    top = os.path.join(root, S2_DIR)
    if not os.path.isdir(top):
        raise RebenInputError(f"no {S2_DIR} folder (the S2 patches: {S2_DIR}/<product>/<patch_id>/)", path=root)
    out = set()
    with os.scandir(top) as products:
        for p in products:
            if p.is_dir():
                with os.scandir(p.path) as patches:
                    out.update(e.name for e in patches if e.is_dir())
    return out


# --- patches ------------------------------------------------------------------------------------

def read_patch(root: str, patch: Patch, with_s1: bool = False, reference_map: bool = False) -> dict:
    """Read one patch's files into the dict ``spec.record_values`` takes.

    Args:
      root: the archive folder.
      patch: the patch (``Patch``) as the metadata lists it.
      with_s1: also read the S1 twin's VV and VH (float32, 120 x 120).
      reference_map: also read the reference map (integer CLC codes, 120 x 120).

    Returns:
      ``patch_id``, ``bands`` (name -> native-size array: S2 uint16 in ``spec.S2_BAND_NAMES`` order,
      then VV, VH), ``labels``, ``s1_name``, ``s2v1_name``, ``country``, ``snow``, ``cloud``, ``epsg``
      and ``transform`` (of the B02 GeoTIFF) and, if asked, ``reference_map``.

    Raises:
      BandError: a band file missing, unreadable, or of the wrong shape or dtype (names the file).
      RebenInputError: a reference map of non-integer values.
    """
    bands, georef = {}, {}
    for b in sp.S2_BANDS:
        path = s2_band_path(root, patch.patch_id, b.name)
        if b.name == GEOREF_BAND:
            bands[b.name], georef = read_band_georef(path, shape=b.shape, dtype=b.dtype)
        else:
            bands[b.name] = read_band(path, shape=b.shape, dtype=b.dtype)
    if with_s1:
        for b in sp.S1_BANDS:
            bands[b.name] = read_band(s1_band_path(root, patch.s1_name, b.name), shape=b.shape, dtype=b.dtype)
    out = {"patch_id": patch.patch_id, "bands": bands, "labels": list(patch.labels), "s1_name": patch.s1_name,
           "s2v1_name": patch.s2v1_name, "country": patch.country, "snow": patch.snow, "cloud": patch.cloud,
           "epsg": georef.get("epsg") or 0, "transform": tuple(georef.get("transform") or (0.0,) * 6)}
    if reference_map:
        path = reference_map_path(root, patch.patch_id)
        codes = read_band(path, shape=sp.PATCH)
        if codes.dtype.kind not in "iu":
            raise RebenInputError(f"dtype {codes.dtype}, expected integer CLC codes", path=path)
        out["reference_map"] = codes
    return out


def produce(items: Sequence[Patch], root: str, schema_name: str, class_order: str = sp.DEFAULT_CLASS_ORDER,
            with_s1: bool = False, reference_maps: bool = False) -> Iterator:
    """Records of one shard: one ``Record`` or ``Skip`` per patch, in order.

    The worker side of the sharded writer. A patch whose files cannot be read gives a ``Skip`` whose
    reason names the file and the problem; a ``Record`` holds the feature values of ``schema_name``
    (``spec.record_values``), the bands for the statistics and the class indices in ``class_order``
    (``record_classes``).

    Args:
      items: the shard's patches (``Patch``, or its fields as a list: a Beam task travels as JSON).
      root: the local archive folder.
      schema_name: one of ``spec.SCHEMAS``.
      class_order: "nomenclature" or "alphabetical".
      with_s1: read and write VV and VH.
      reference_maps: read and write the reference map.
    """
    schema = sp.SCHEMAS[schema_name]
    for item in items:
        patch = as_patch(item)
        try:
            p = read_patch(root, patch, with_s1, reference_maps)
        except (BandError, RebenInputError) as e:
            yield Skip(patch.patch_id, str(e))
            continue
        values = sp.record_values(p, schema, class_order)
        s2 = {b: px for b, px in p["bands"].items() if b not in sp.S1_BAND_NAMES}
        s1 = [(b, s1_state(p["bands"][b])) for b in sp.S1_BAND_NAMES if b in p["bands"]]
        yield Record(patch.patch_id, values, s2, record_classes(values, schema), band_states=s1)


def record_classes(values: dict, schema: Schema) -> list[int]:
    """The class indices the shard writer counts for a record of ``schema``.

    Multi-label schemas: the record's 19-class indices; a mask schema: every class holding a pixel of
    the reference map (sorted; 255 = ignore is no class).
    """
    if schema.label_encoding == "mask":
        classes = np.unique(np.frombuffer(values[sp.REFERENCE_MAP_KEY][0], np.uint8))
        return [int(c) for c in classes if c < len(sp.LABELS_19)]
    return list(values["labels19/index"])


def s1_state(pixels: np.ndarray) -> dict:
    """``prep.stats.float_state`` of one float32 S1 band, without BLAS.

    The sum of squares is numpy's own loop (``einsum``), not ``np.dot``: a BLAS call of 14,400
    values wakes OpenBLAS's threads, which on a busy machine cost about 25 ms per call (measured:
    S1 preparation ran at 16 patches/s against 109 for S2 alone). It may differ from
    ``float_state``'s in the last bits, the same for any worker count or runner.

    Args:
      pixels: [120, 120] float32 dB.

    Returns:
      The partial state (count, sum, sumsq, min, max, sample) ``BandStats.merge_state`` takes.
    """
    from prep.stats import SAMPLE_STRIDE

    a64 = np.asarray(pixels, np.float64).reshape(-1)
    return {"count": a64.size, "sum": float(a64.sum()), "sumsq": float(np.einsum("i,i->", a64, a64)),
            "min": float(a64.min()), "max": float(a64.max()), "sample": a64[::SAMPLE_STRIDE].copy()}
