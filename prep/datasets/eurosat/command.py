"""Prepare EuroSAT (multispectral) as sharded TFRecords: ``python -m prep eurosat``.

    python -m prep eurosat -r EuroSAT_MS -o records                   # seeded stratified split
    python -m prep eurosat -r EuroSAT_MS -o records --split_list eurosat-train.txt,eurosat-val.txt,eurosat-test.txt

Input: ``--root_folder`` holding the 10 class folders (``AnnualCrop/AnnualCrop_1.tif`` ...), directly
or under ``EuroSAT_MS/`` (``prep.datasets.eurosat.raw``). Each image becomes one record: its 13 bands
as stored (uint16, B01 ... B12 then B8A), the class index and name, the file name and number, and
the GeoTIFF's CRS and transform.

Splits (``splits/eurosat.py``): ``--split_list`` (comma list or repeated; ``eurosat-train.txt`` is
split ``train``, or ``NAME=FILE``) list one ``.jpg`` name of the RGB version per line; each names the
``.tif`` of the same stem in its class folder. Listed images that are not in the archive are an
error, or with ``--on_error=skip`` counted as ``missing`` and listed in ``OUT/missing.csv``; a line
that names no EuroSAT image (or repeats one) is bad input, listed in the manifest under
``--on_error=skip``; images in no split file are listed in the manifest's ``eurosat`` block
(``unlisted``). Without split files: a seeded stratified split, ``--fractions`` (default 0.6,0.2,0.2
train, val, test within every class) with ``--split_seed``, recorded in the manifest.

Bad input (an unreadable file, a band count other than 13, a shape other than 64 x 64, a dtype other
than uint16, a ``.tif`` in a class folder not named ``<that class>_<n>.tif``) stops the run naming the
file, or with ``--on_error=skip`` is listed in the manifest.
"""
from __future__ import annotations

import functools
import os
import sys
from typing import Sequence

from absl import flags

from prep import cli, shards
from prep.datasets.contract import PreparePlan
from prep.datasets.eurosat import raw
from prep.datasets.eurosat import spec as sp
from prep.datasets.eurosat.spec import EurosatInputError
from prep.errors import UsageError
from splits import eurosat as rules

FLAGS = flags.FLAGS
IMAGE_BYTES = len(sp.BAND_NAMES) * sp.PIXELS * 2  # pixel bytes of one image
MISSING_HINT = ("download the whole archive, or pass --on_error=skip to prepare the listed images present "
                "(the missing ones are then listed in OUT/missing.csv)")


@functools.cache
def define_flags() -> None:
    """Declare the command's flags (called by run(); importing this module defines none)."""
    flags.DEFINE_string("root_folder", None, "Folder holding the 10 class folders (or EuroSAT_MS/ holding them).",
                        short_name="r")
    flags.DEFINE_multi_string("split_list", None, "Split files, one image name per line (the common "
                              "eurosat-train.txt, eurosat-val.txt, eurosat-test.txt list .jpg names), repeated or "
                              "comma-separated: FILE (the split is the stem after its last '-') or NAME=FILE. "
                              "Without them: the seeded stratified split of --fractions.")
    flags.DEFINE_alias("split_files", "split_list")  # its first name
    flags.DEFINE_list("fractions", [str(f) for f in rules.DEFAULT_FRACTIONS], "train,val,test shares of every "
                      "class in the stratified split (without --split_list); they sum to 1.")
    flags.DEFINE_integer("split_seed", rules.DEFAULT_SEED, "Seed of the stratified split.")
    cli.define_prepare_flags()


def parse_split_files(specs: Sequence[str]) -> dict[str, str]:
    """``--split_list`` values -> split name -> file (``NAME=FILE``, or the split from the file name).

    Raises:
      UsageError: two files for one split, or an empty value.
      EurosatInputError: a file that does not exist.
    """
    out: dict[str, str] = {}
    for s in specs:
        name, sep, path = s.partition("=")
        if not sep:
            name, path = rules.split_name(s), s
        if not name or not path:
            raise UsageError(f"--split_list {s!r}: expected FILE or NAME=FILE")
        if name in out:
            raise UsageError(f"--split_list: two files for split {name!r} ({out[name]}, {path})")
        if not os.path.isfile(path):
            raise EurosatInputError("a folder, not a split file" if os.path.isdir(path) else "no such split file",
                                    path=path)
        out[name] = path
    return out


def read_split_file(path: str) -> list[tuple[int, str]]:
    """(line number, name) of every non-empty line of a split file (CRLF line ends accepted).

    Raises:
      EurosatInputError: a file that cannot be read as UTF-8 text.
    """
    try:
        with open(path, encoding="utf-8") as f:
            return [(i, line.strip()) for i, line in enumerate(f, 1) if line.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise EurosatInputError(f"not a readable split file (one image name per line): {e}", path=path) from None


def _from_split_files(s: raw.Scan, split_files: dict[str, str]) -> tuple[dict, list, list, list]:
    """Split files -> (items, skipped, missing, first missing as (file, line, name, rel))."""
    items: dict[str, list[str]] = {}
    skipped, missing, first_missing = [], [], []
    seen: dict[tuple[str, int], str] = {}
    for split, path in split_files.items():
        items[split] = []
        for line, name in read_split_file(path):
            where = f"{path}: line {line}"
            try:
                cls, number = rules.parse_name(name)
                if cls not in sp.CLASS_INDEX:
                    raise ValueError(f"{name!r} names no EuroSAT class (classes: {', '.join(sp.CLASS_NAMES)})")
            except ValueError as e:
                skipped.append({"split": split, "key": name, "reason": f"{where}: {e}"})
                continue
            if (cls, number) in seen:
                skipped.append({"split": split, "key": name, "reason": f"{where}: {name!r} listed again "
                                                                        f"(first: {seen[(cls, number)]})"})
                continue
            seen[(cls, number)] = where
            rel = s.images.get((cls, number))
            if rel is None:
                rel = f"{cls}/{cls}_{number}.tif"
                missing.append({"split": split, "key": rel})
                if not first_missing:
                    first_missing.append((path, line, name, rel))
                continue
            items[split].append(rel)
    return items, skipped, missing, first_missing


def plan(root: str, split_files: dict[str, str] | None = None, fractions: Sequence[float] = rules.DEFAULT_FRACTIONS,
         split_seed: int = rules.DEFAULT_SEED, shard_size_mb: float = 150.0, compression: str = "NONE",
         on_error: str = "fail") -> PreparePlan:
    """The class-folder tree -> the plan (one item per image) shared by the local and the Beam paths.

    Args:
      root: the folder holding the class folders (or ``EuroSAT_MS/`` holding them).
      split_files: split name -> split file; None for the stratified split.
      fractions: train, val, test shares of the stratified split.
      split_seed: seed of the stratified split.
      shard_size_mb: the largest shard size in MB.
      compression: "NONE" or "GZIP".
      on_error: "fail" or "skip".

    Returns:
      The PreparePlan; its ``extra`` block ``eurosat`` holds the class table, the stored band order,
      the split rule, the images per class found, the images in no split file and the folders that are
      no class.

    Raises:
      EurosatInputError: no class folder; under ``on_error="fail"``: a badly named ``.tif`` (stratified
        split), a split-file line naming no image or repeating one, listed images missing.
      UsageError: fractions that are not three shares summing to 1.
    """
    s = raw.scan(root)
    skipped: list[dict] = []
    missing: list[dict] = []
    unlisted: list[dict] = []
    if split_files:
        items, skipped, missing, first_missing = _from_split_files(s, split_files)
        listed = {rel for v in items.values() for rel in v} | {m["key"] for m in missing}
        unlisted = [{"file": rel, "reason": "in no split file"} for rel in s.images.values() if rel not in listed]
        unlisted += [{"file": rel, "reason": reason} for rel, reason in s.bad]
        rule = "split files: " + ", ".join(f"{k}={os.path.basename(v)}" for k, v in split_files.items())
        if on_error == "fail" and skipped:
            raise EurosatInputError(skipped[0]["reason"] + (f" (and {len(skipped) - 1} more bad lines)"
                                                            if len(skipped) > 1 else ""))
        if on_error == "fail" and missing:
            path, line, name, rel = first_missing[0]
            n_listed = sum(len(v) for v in items.values()) + len(missing)
            raise EurosatInputError(f"{len(missing)} of {n_listed} listed images are not in {s.base} (first: line "
                                    f"{line} {name!r} -> {rel})", path=path, hint=MISSING_HINT)
    else:
        try:
            by_key = rules.stratified(s.images, fractions, split_seed)
        except ValueError as e:
            raise UsageError(f"--fractions: {e}") from None
        items = {split: [s.images[k] for k in keys] for split, keys in by_key.items()}
        skipped = [{"split": "train", "key": rel, "reason": reason} for rel, reason in s.bad]
        if on_error == "fail" and skipped:
            raise EurosatInputError(skipped[0]["reason"])
        rule = f"stratified per class: train, val, test fractions {list(fractions)}, seed {split_seed}"
    if not any(items.values()):
        raise EurosatInputError("no image to prepare (no listed image found)" if split_files
                                else "no image found in the class folders", path=root)
    spec = sp.SPEC
    per_shard = shards.records_per_shard(spec, spec.schema("raw"), shard_size_mb)
    found = {c: 0 for c in sp.CLASS_NAMES}
    for cls, _ in s.images:
        found[cls] += 1
    run_flags = {"root_folder": os.path.basename(os.path.normpath(root)),
                 "split_files": {k: os.path.basename(v) for k, v in split_files.items()} if split_files else None,
                 "fractions": None if split_files else list(map(float, fractions)),
                 "split_seed": None if split_files else split_seed,
                 "shard_size_mb": shard_size_mb, "records_per_shard": per_shard, "compression": compression,
                 "on_error": on_error}
    extra = {"eurosat": {
        "classes": list(sp.CLASS_NAMES),
        "band_order": "stored: " + " ".join(sp.BAND_NAMES) + " (B8A is file band 13)",
        "split_rule": rule,
        "images_found": found,
        "official_counts": dict(sp.OFFICIAL_COUNTS),
        "unlisted": unlisted,
        "other_folders": list(s.other_folders),
    }}
    return PreparePlan(spec=spec, schema="raw", items=items, produce=functools.partial(raw.produce, base=s.base),
                       records_per_shard=per_shard, flags=run_flags, skipped=skipped, missing=missing, extra=extra,
                       compression=compression, on_error=on_error,
                       input_bytes=sum(len(v) for v in items.values()) * IMAGE_BYTES)


def prepare(root: str, out: str, workers: int = 1, overwrite: bool = False, progress: bool = False,
            runner: str = "local", beam_options: str = "", **kwargs) -> dict:
    """Python API of the command: ``plan(root, **kwargs)`` written to ``out``; returns the manifest."""
    return cli.write_plan(plan(root, **kwargs), out, runner, beam_options, workers, overwrite, progress)


def plan_from_flags() -> PreparePlan:
    """``plan`` with the command's flags (the dataset contract's entry point).

    Raises:
      UsageError: ``--fractions`` values that are not numbers, or ``--fractions`` / ``--split_seed``
        given with ``--split_list`` (which replaces the stratified split those flags describe).
    """
    f = FLAGS
    cli.required("root_folder")
    if f.split_list:
        given = [f"--{n}" for n in ("fractions", "split_seed") if FLAGS[n].present]
        if given:
            raise UsageError(f"{' and '.join(given)} describe the stratified split, which --split_list replaces: "
                             "give one or the other")
    try:
        fractions = [float(x) for x in f.fractions]
    except ValueError:
        raise UsageError(f"--fractions {','.join(f.fractions)}: expected three numbers, e.g. 0.6,0.2,0.2") from None
    specs = [x for v in f.split_list or () for x in v.split(",") if x]
    files = parse_split_files(specs) if specs else None
    return plan(f.root_folder, files, fractions, f.split_seed, f.shard_size_mb, f.compression, f.on_error)


def main(argv: list[str]) -> int:
    """Prepare the archive named by the flags (``cli.prepare_main``)."""
    return cli.prepare_main(argv, plan_from_flags)


def run(argv: list[str] | None = None) -> None:
    """Console entry point: ``python -m prep eurosat``."""
    cli.run_command(sys.modules[__name__], list(sys.argv if argv is None else argv))


if __name__ == "__main__":
    run()
