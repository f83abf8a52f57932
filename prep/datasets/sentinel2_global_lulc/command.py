"""Prepare Sentinel2GlobalLULC as sharded TFRecords: ``python -m prep lulc``.

    python -m prep lulc --root_folder Sentinel2GlobalLULC --out_dir OUT [--test_fold 0] [--folds 5]
    python -m prep lulc folds --root_folder Sentinel2GlobalLULC --out folds.csv

Input: the class-folder layout (``Sentinel2LULC_JPEG/<ID>_<ShortName>/`` JPEG tiles, or GeoTIFF
tiles) with the per-class CSVs where present (prep.datasets.sentinel2_global_lulc.raw). Each tile
becomes one record: the JPEG file's bytes as they are (schema ``jpeg``; no re-encoding, so no loss)
or, for 8-bit RGB GeoTIFF tiles, uint8 pixels per band (schema ``raw``); the class index (ID - 1)
and every metadata field of the file name (and the CSV's Sentinel-2 image count), typed.

Bad input: a name that does not parse, a class folder that disagrees with the ID in the name, a CSV
row that disagrees with the name, an unreadable or wrong-sized tile. The message names the file and
the field; ``--on_error=skip`` lists them in the manifest (under ``train``: a bad tile has no fold)
and goes on.

Splits (splits/sentinel2_global_lulc.py): the tiles are dealt to ``--folds`` folds (``--fold_scheme``
stratified, grid or country; ``--seed``); fold ``--test_fold`` is written as ``test``, the others
as ``train``. Prepare each fold into its own output folder to run all k folds. ``--split_file``
reads the folds from a ``folds`` table instead of computing them.
"""
from __future__ import annotations

import csv
import functools
import os
import sys
from typing import Sequence

import numpy as np
from absl import flags

from prep import cli, files
from prep.datasets.contract import PreparePlan
from prep.datasets.sentinel2_global_lulc import raw
from prep.datasets.sentinel2_global_lulc import spec as sp
from prep.datasets.sentinel2_global_lulc.spec import LulcInputError
from prep.errors import UsageError
from splits import sentinel2_global_lulc as folds_mod

FLAGS = flags.FLAGS
SUBCOMMANDS = ("folds", "geocode", "tojpeg", "gee_export", "fold_report")


@functools.cache
def define_fold_flags() -> None:
    """The flags that choose the folds, shared by the command and ``folds``."""
    flags.DEFINE_string("root_folder", None, "Dataset folder: holds Sentinel2LULC_JPEG/ (or the class folders).",
                        short_name="r")
    flags.DEFINE_integer("folds", folds_mod.DEFAULT_FOLDS, "Number of folds (k).", lower_bound=2)
    flags.DEFINE_enum("fold_scheme", "stratified", list(folds_mod.SCHEMES), "stratified (random within class), "
                      "grid (whole --grid_deg cells per fold) or country (whole countries per fold).")
    flags.DEFINE_float("grid_deg", folds_mod.DEFAULT_GRID_DEG, "Grid cell size in degrees for --fold_scheme=grid.")
    flags.DEFINE_integer("split_seed", folds_mod.DEFAULT_SEED, "Seed of the folds (the flag the other datasets' "
                         "split seeds use).")
    flags.DEFINE_alias("seed", "split_seed")  # its first name
    flags.DEFINE_bool("csv", True, "Check tiles against the per-class CSVs when present (--nocsv: ignore them).")


@functools.cache
def define_flags() -> None:
    """Declare the command's flags (called by run(); importing this module defines none)."""
    define_fold_flags()
    flags.DEFINE_integer("test_fold", 0, "The fold written as the 'test' split (the others: 'train').", lower_bound=0)
    flags.DEFINE_string("split_file", None, "A folds table (python -m prep lulc folds) to take the folds from.")
    flags.DEFINE_integer("tile_px", sp.TILE_PX, "Tile side in pixels (224 as published; tiles of another "
                         "size are bad input).", lower_bound=1)
    cli.define_prepare_flags(out_aliases=("out",))


# --- folds ----------------------------------------------------------------------------------------

def assign_folds(tiles: Sequence[raw.Tile], k: int = folds_mod.DEFAULT_FOLDS, scheme: str = "stratified",
                 seed: int = folds_mod.DEFAULT_SEED, grid_deg: float = folds_mod.DEFAULT_GRID_DEG
                 ) -> tuple[np.ndarray, list[str]]:
    """Folds of the scanned tiles.

    Returns:
      (int64 [n] fold per tile, group per tile: '' for stratified, the grid cell or country code).

    Raises:
      UsageError: unknown scheme.
    """
    labels = [t.name.index for t in tiles]
    if scheme == "stratified":
        return folds_mod.stratified_folds(labels, k, seed), [""] * len(tiles)
    if scheme == "grid":
        groups = [folds_mod.grid_group(t.name.lat, t.name.lon, grid_deg) for t in tiles]
    elif scheme == "country":
        groups = [t.name.country_code or "?" for t in tiles]
    else:
        raise UsageError(f"--fold_scheme must be one of {', '.join(folds_mod.SCHEMES)}, not {scheme!r}")
    return folds_mod.grouped_folds(labels, groups, k, seed), groups


FOLD_COLUMNS = ("key", "class_id", "group", "fold")


def write_fold_table(path: str, tiles: Sequence[raw.Tile], folds: Sequence[int], groups: Sequence[str]) -> None:
    """Writes the split file: CSV with header ``key,class_id,group,fold``, one row per tile (atomic)."""
    rows = [FOLD_COLUMNS] + [(t.key, t.name.class_id, g, int(f)) for t, f, g in zip(tiles, folds, groups)]
    with files.atomic_write(path, "w", newline="") as fh:
        csv.writer(fh, lineterminator="\n").writerows(rows)


def read_fold_table(path: str) -> dict[str, int]:
    """A split file -> {tile key: fold}.

    Raises:
      LulcInputError: missing file, wrong header or a non-integer fold (naming the file and line).
    """
    if not os.path.isfile(path):
        raise LulcInputError(f"{path}: no such split file")
    out = {}
    with open(path, encoding="utf-8", newline="") as fh:
        r = csv.reader(fh)
        if tuple(next(r, ())) != FOLD_COLUMNS:
            raise LulcInputError(f"{path}: line 1: header must be {','.join(FOLD_COLUMNS)}")
        for line, row in enumerate(r, 2):
            try:
                out[row[0]] = int(row[3])
            except (IndexError, ValueError):
                raise LulcInputError(f"{path}: line {line}: field 'fold' missing or not an integer") from None
    return out


# --- the command ----------------------------------------------------------------------------------

def plan(root: str, test_fold: int = 0, k: int = folds_mod.DEFAULT_FOLDS, scheme: str = "stratified",
         seed: int = folds_mod.DEFAULT_SEED, grid_deg: float = folds_mod.DEFAULT_GRID_DEG,
         split_file: str | None = None, use_csv: bool = True, tile_px: int = sp.TILE_PX,
         shard_size_mb: float = 150.0, compression: str = "NONE", on_error: str = "fail") -> PreparePlan:
    """The class-folder tree -> the plan (one item per tile) shared by the local and the Beam paths.

    Args:
      root: the dataset folder.
      test_fold: the fold written as ``test``; the others are ``train``.
      k: number of folds.
      scheme: "stratified", "grid" or "country" (splits/sentinel2_global_lulc.py).
      seed: fold seed.
      grid_deg: grid cell size in degrees (scheme "grid").
      split_file: a folds table to read the folds from instead.
      use_csv: check tiles against the per-class CSVs.
      tile_px: expected tile side in pixels.
      shard_size_mb: largest shard size in MB.
      compression: "NONE" or "GZIP".
      on_error: "fail" or "skip" (bad tiles listed in the manifest).

    Returns:
      The ``PreparePlan`` (schema ``jpeg`` for JPEG tiles, ``raw`` for GeoTIFF tiles).

    Raises:
      LulcInputError: no tiles, JPEG and TIFF tiles mixed, bad input with ``on_error="fail"``, a tile
        missing from the split file.
      UsageError: ``test_fold`` >= k.
    """
    if not 0 <= test_fold < k:
        raise UsageError(f"--test_fold must be in 0..{k - 1} (--folds {k}), got {test_fold}")
    s = raw.scan(root, use_csv)
    if on_error == "fail" and s.bad:
        key, reason = s.bad[0]
        more = f" (and {len(s.bad) - 1} more bad tiles)" if len(s.bad) > 1 else ""
        raise LulcInputError(reason + more)
    tiles = s.tiles
    if not tiles:
        raise LulcInputError(f"{root}: no tiles found in the class folders")
    kinds = {t.kind for t in tiles}
    if len(kinds) > 1:
        raise LulcInputError(f"{root}: JPEG and TIFF tiles mixed; prepare one format per output folder")
    schema = "jpeg" if kinds == {"jpeg"} else "raw"
    if split_file:
        table = read_fold_table(split_file)
        missing = [t.key for t in tiles if t.key not in table]
        if missing:
            raise LulcInputError(f"{split_file}: tile {missing[0]} has no fold ({len(missing)} missing)")
        fold = np.array([table[t.key] for t in tiles])
        k = int(fold.max()) + 1
    else:
        fold, _ = assign_folds(tiles, k, scheme, seed, grid_deg)
    names = folds_mod.fold_splits(fold, test_fold)
    items = {split: [t.item() for t, n in zip(tiles, names) if n == split] for split in ("train", "test")}
    spec = sp.spec_for_tile(tile_px)
    sizes = [os.path.getsize(t.path) for t in tiles]
    rec = (float(np.mean(sizes)) if schema == "jpeg" else 3 * tile_px * tile_px) + 512
    per_shard = max(1, int(shard_size_mb * 1e6 // rec))
    # Bad tiles have no class to stratify by, so no fold: the manifest lists them under 'train'.
    skipped = [{"split": "train", "key": key, "reason": reason} for key, reason in s.bad]
    run_flags = {"root_folder": os.path.basename(s.root), "tiles": len(tiles), "folds": k, "test_fold": test_fold,
                 "fold_scheme": "file" if split_file else scheme, "seed": seed, "grid_deg": grid_deg,
                 "csv": use_csv, "tile_px": tile_px, "schema": schema, "shard_size_mb": shard_size_mb,
                 "records_per_shard": per_shard, "compression": compression, "on_error": on_error}
    counts = np.zeros((k, sp.NUM_CLASSES), np.int64)
    np.add.at(counts, (fold, [t.name.index for t in tiles]), 1)
    extra = {"sentinel2_global_lulc": {"release": sp.RELEASE, "folds": k, "test_fold": test_fold,
                                       "fold_scheme": run_flags["fold_scheme"], "csv_rows": s.csv_rows,
                                       "fold_class_counts": counts.tolist()}}
    return PreparePlan(spec=spec, schema=schema, items=items,
                       produce=functools.partial(raw.produce, schema=schema, tile_px=tile_px),
                       records_per_shard=per_shard, flags=run_flags, skipped=skipped, extra=extra,
                       compression=compression, on_error=on_error, input_bytes=int(sum(sizes)))


def prepare(root: str, out: str, workers: int = 1, overwrite: bool = False, progress: bool = False,
            runner: str = "local", beam_options: str = "", **kwargs) -> dict:
    """Python API of the command: ``plan(root, **kwargs)`` written to ``out``; returns the manifest."""
    return cli.write_plan(plan(root, **kwargs), out, runner, beam_options, workers, overwrite, progress)


def plan_from_flags() -> PreparePlan:
    """``plan`` with the command's flags (the dataset contract's entry point)."""
    f = FLAGS
    cli.required("root_folder")
    return plan(f.root_folder, f.test_fold, f.folds, f.fold_scheme, f.split_seed, f.grid_deg, f.split_file, f.csv,
                f.tile_px, f.shard_size_mb, f.compression, f.on_error)


def main(argv: list[str]) -> int:
    """Prepare the tree named by the flags (``cli.prepare_main``)."""
    return cli.prepare_main(argv, plan_from_flags)


def run(argv: list[str] | None = None) -> None:
    """Console entry point; a subcommand (folds, geocode, tojpeg, gee_export, fold_report) first runs it."""
    argv = list(sys.argv if argv is None else argv)
    if len(argv) > 1 and argv[1] in SUBCOMMANDS:
        import importlib

        module = importlib.import_module(f"prep.datasets.sentinel2_global_lulc.{argv[1]}")
        cli.run_command(module, [f"{argv[0]} {argv[1]}"] + argv[2:], prog=f"{cli.program(argv[0])} {argv[1]}")
        return
    cli.run_command(sys.modules[__name__], argv)


if __name__ == "__main__":
    run()
