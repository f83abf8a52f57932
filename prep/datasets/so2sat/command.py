"""Prepare So2Sat LCZ42 (HDF5) as sharded TFRecords: ``python -m prep so2sat`` (or ``prep.so2sat``).

    python -m prep so2sat --h5 training.h5 validation.h5 testing.h5 --out_dir OUT
    python -m prep so2sat geotiff --h5 validation.h5 --rows 0,10-12 --out_dir TIFS   (see geotiff --help)

Conversion streams each file in chunks of ``--read_rows`` rows inside the worker processes, so
memory stays bounded whatever the file size (training.h5 is about 50 GB). Every row becomes one
record of the ``compact`` schema (prep.datasets.so2sat): raw little-endian pixels per band, the
class index, the source file and row, and the geolocation when a ``*_geo.h5`` file is given.
The workers cast, check and encode 32 rows at a time (prep.fastencode lays the 18 bands of all
32 records out with numpy; only the small features are encoded row by row) and hand the writer
encoded records and partial statistics: the same bytes as encoding each record's feature values
with prep.tfrecord (``prepare(encode=False)``, kept as the tested reference).

Split names (``splits.so2sat``). Each ``--h5`` file's split is named after the word in its file name:
``training`` -> ``train``, ``validation`` -> ``val``, ``testing`` -> ``test`` (the names the
BigEarthNet splits use). A version-3 scenario (``random``, ``block``, ``culture_10``, found as
the parent folder or as a part of the file name, e.g. ``random/training.h5`` or
``block_testing.h5``) prefixes the split (``random_train``) only when the inputs span more than
one scenario; with one scenario per output folder the splits stay ``train``/``test`` and the
scenario is recorded in the manifest. ``--split_names`` (one per ``--h5``, same order) overrides
the rule; two files may not share a split.

Geolocation. ``<stem>_geo.h5`` beside each file is used when it exists (or ``--geo``, one per
``--h5``; ``--nogeolocation`` ignores them). It must hold ``epsg`` (N or Nx1) and ``tfw`` (Nx6),
and may hold ``coord`` (Nx6: UTM x, y of the patch centre, S1 row, S1 col, S2 row, S2 col) and
``city``. ``tfw`` comes in two orders in the published files: ``x0, pixel width, 0, y0, 0,
pixel height`` ("gdal", files with ``coord``) and the world-file order ``A, D, B, E, C, F``
("worldfile", 2026 files with ``city``); ``--tfw_order=auto`` tells them apart by which entries
hold UTM-sized numbers. Both give (x0, y0) = the upper-left corner of the patch, as the dataset
authors' own GeoTIFF export reads them. Records carry the tfw as stored, the normalised affine
transform, the EPSG code, the patch centre (``coord`` or the transform's centre), the scene
pixel positions and the city when present.

Pixels. The files hold float64. Records hold float32 unless ``--keep_float64``: the cast rounds
each value to 24 significant bits (relative error at most 2**-24, about 6e-8, far below sensor
noise). Sentinel-2 values are DN / 10000 with DN below 28000, so the cast moves them by less
than 2e-7 (0.002 DN) and ``round(x * 10000)`` still recovers the exact DN. Sentinel-1 values keep
7 significant digits; values below about 1e-38 lose precision (subnormals) and values beyond the
float32 range (3.4e38) or non-finite inputs make the row bad (an error, or skipped and listed
with ``--on_error=skip``).

Labels must be one-hot (one 1, sixteen 0s per row); anything else stops the run with an error
naming the file, the dataset and the rows. So do a missing dataset, row counts that differ
between ``sen1``, ``sen2`` and ``label`` (or the geolocation file), wrong patch shapes and
truncated or unreadable files.
"""
from __future__ import annotations

import functools
import os
import sys
from typing import Sequence

from absl import flags

from prep import cli, shards
from prep.datasets.contract import PreparePlan
from prep.datasets.so2sat import raw
from prep.datasets.so2sat import spec as s2s
from prep.datasets.so2sat.raw import So2SatInputError

FLAGS = flags.FLAGS


@functools.cache  # declared once per process, however often run() or a test calls it
def define_flags() -> None:
    """Declare the command's flags (called by run(); importing this module defines none)."""
    define_input_flags()
    flags.DEFINE_multi_string("split_names", None, "Split name for each --h5 file, same order, space- or "
                              "comma-separated (default: from the file names, see splits/so2sat.py).")
    flags.DEFINE_bool("geolocation", True, "Read the geolocation files; --nogeolocation writes records without.")
    flags.DEFINE_integer("read_rows", raw.DEFAULT_READ_ROWS, "Rows read from the HDF5 at a time per worker "
                         "(buffers per worker: about read_rows x 0.15 MB + 15 MB).", lower_bound=1)
    flags.DEFINE_integer("max_rows", None, "Convert only the first N rows of each file (trial runs).")
    cli.define_prepare_flags(out_aliases=("out",))


@functools.cache
def define_input_flags() -> None:
    """The flags naming the HDF5 inputs, shared with the ``geotiff`` command."""
    flags.DEFINE_multi_string("h5", None, "So2Sat HDF5 files (training.h5, validation.h5, testing.h5, or a "
                              "version-3 scenario's training.h5/testing.h5); several may follow one --h5.")
    flags.DEFINE_multi_string("geo", None, "Geolocation file for each --h5 file, same order ('none' for a file "
                              "without); default: <stem>_geo.h5 beside each file when it exists.")
    flags.DEFINE_enum("tfw_order", "auto", ["auto", "gdal", "worldfile"], "Order of the 6 'tfw' values: 'gdal' "
                      "(x0, xres, 0, y0, 0, yres), 'worldfile' (A, D, B, E, C, F), or 'auto' (detected per file).")
    flags.DEFINE_bool("keep_float64", False, "Store float64 pixels as in the files (default: float32, half the "
                      "size; see the module doc for what the cast loses).")


# --- the command -----------------------------------------------------------------------------------

def prepare(h5_paths: Sequence[str], out: str, split_names: Sequence[str] | None = None,
            geo_paths: Sequence[str] | None = None, geolocation: bool = True, tfw_order: str = "auto",
            keep_float64: bool = False, read_rows: int = raw.DEFAULT_READ_ROWS, max_rows: int | None = None,
            shard_size_mb: float = 150.0, compression: str = "NONE", workers: int = 1, on_error: str = "fail",
            overwrite: bool = False, progress: bool = False, encode: bool = True, runner: str = "local",
            beam_options: str = "") -> dict:
    """Python API of the command: returns the manifest.

    ``encode=False`` has the writer encode each record from its feature values (prep.tfrecord):
    the same shards and manifest, slower; kept as the reference the fast path is tested against.
    """
    p = plan(h5_paths, split_names, geo_paths, geolocation, tfw_order, keep_float64, read_rows, max_rows,
             shard_size_mb, compression, on_error, encode)
    return cli.write_plan(p, out, runner, beam_options, workers, overwrite, progress)


def plan(h5_paths: Sequence[str], split_names: Sequence[str] | None = None,
         geo_paths: Sequence[str] | None = None, geolocation: bool = True, tfw_order: str = "auto",
         keep_float64: bool = False, read_rows: int = raw.DEFAULT_READ_ROWS, max_rows: int | None = None,
         shard_size_mb: float = 150.0, compression: str = "NONE", on_error: str = "fail",
         encode: bool = True) -> PreparePlan:
    """The HDF5 files -> the plan shared by the local and the Beam paths (one item per row).

    Raises:
      So2SatInputError: a missing or malformed file, labels that are not one-hot, split names that
        do not fit the rule (see the module doc), or ``read_rows`` < 1.
    """
    if read_rows < 1:
        raise So2SatInputError("--read_rows must be at least 1")
    sources = raw.plan_sources(h5_paths, split_names, geo_paths, geolocation, tfw_order, max_rows)
    dtype = "float64" if keep_float64 else "float32"
    spec = s2s.spec_for_dtype(dtype)
    per_shard = shards.records_per_shard(spec, spec.schema("compact"), shard_size_mb)
    splits = {s.split: [(i, r) for r in range(s.rows)] for i, s in enumerate(sources)}
    produce_fn = functools.partial(raw.produce, sources=tuple(sources), dtype=dtype, read_rows=read_rows,
                                   encode=encode)
    run_flags = {
        "h5": [s.name for s in sources], "h5_bytes": [os.path.getsize(s.path) for s in sources],
        "split_names": [s.split for s in sources],
        "geolocation": [s.geo is not None for s in sources], "tfw_order": tfw_order,
        "keep_float64": keep_float64, "dtype": dtype, "max_rows": max_rows, "shard_size_mb": shard_size_mb,
        "records_per_shard": per_shard, "compression": compression, "on_error": on_error,
    }
    scenarios = sorted({s.scenario for s in sources if s.scenario})
    extra = {"so2sat": {
        "release": 3 if scenarios else 2,
        "scenarios": scenarios,
        "sources": [{"split": s.split, "file": s.name, "rows": s.rows, "scenario": s.scenario,
                     "geolocation": os.path.basename(s.geo.path) if s.geo else None,
                     "tfw_order": s.geo.tfw_order if s.geo else None} for s in sources],
    }}
    return PreparePlan(spec=spec, schema="compact", items=splits, produce=produce_fn, records_per_shard=per_shard,
                       flags=run_flags, extra=extra, compression=compression, on_error=on_error,
                       input_bytes=sum(s.rows for s in sources) * ROW_BYTES)


summary = cli.summary  # the end-of-run table, shared by every preparation command

ROW_BYTES = (32 * 32 * 18 + s2s.NUM_CLASSES) * 8  # float64 sen1 + sen2 + label of one row


# --- CLI ---------------------------------------------------------------------------------------------

MULTI_VALUE_FLAGS = {f: f for f in ("--h5", "--split_names", "--geo")}


def expand_nargs(argv: list[str]) -> list[str]:
    """``--h5 a b c`` (and --split_names, --geo) -> repeated flags, as absl expects."""
    return cli.expand_nargs(argv, MULTI_VALUE_FLAGS)


def split_list(values: Sequence[str] | None) -> list[str] | None:
    """Multi-value flag values, each of which may also be a comma list (``a,b``), flattened."""
    if not values:
        return None
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


def plan_from_flags() -> PreparePlan:
    """``plan`` with the command's flags (the dataset contract's entry point)."""
    f = FLAGS
    cli.required("h5")
    return plan(f.h5, split_list(f.split_names), f.geo, f.geolocation, f.tfw_order, f.keep_float64, f.read_rows,
                f.max_rows, f.shard_size_mb, f.compression, f.on_error)


def main(argv: list[str]) -> int:
    """Prepare the HDF5 files named by the flags (``cli.prepare_main``)."""
    return cli.prepare_main(argv, plan_from_flags)


def run(argv: list[str] | None = None) -> None:
    """Console entry point (``eorecords-prep-so2sat``); ``geotiff`` as the first argument runs that command."""
    argv = list(sys.argv if argv is None else argv)
    if len(argv) > 1 and argv[1] == "geotiff":
        from prep.datasets.so2sat import geotiff

        cli.run_command(geotiff, [f"{argv[0]} geotiff"] + argv[2:], nargs=MULTI_VALUE_FLAGS,
                        prog=f"{cli.program(argv[0])} geotiff")
        return
    cli.run_command(sys.modules[__name__], argv, nargs=MULTI_VALUE_FLAGS)


if __name__ == "__main__":
    run()
