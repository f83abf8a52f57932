"""Check prepared shards against their manifest: ``python -m prep.verify OUT``.

Checks that every shard listed in the manifest exists with its size and SHA-256, that its
record count matches, that every record's CRCs are intact and that every record is a
tf.train.Example holding exactly the schema's features, each of its kind (bytes / float /
int64) and, where the schema fixes it, its number of values (with each raw band holding the
bytes its shape and dtype need), and that the counts reconcile (listed = written + excluded +
skipped + missing). Exits 1 on any mismatch; a folder without a readable manifest is an error (one line).

Records are read with the project's own TFRecord and Example decoders (``prep.tfrecord``), so
verification does not import TensorFlow.
"""
from __future__ import annotations

import functools
import os
import sys
from typing import Mapping, Sequence

import numpy as np
from absl import app, flags

from prep import cli, files, tfrecord
from prep.datasets.spec import Field
from prep.manifest import load as load_manifest

FLAGS = flags.FLAGS


@functools.cache  # declared once per process, however often run() or a test calls it
def define_flags() -> None:
    """Declare the command's flags (called by run(); importing this module defines none)."""
    flags.DEFINE_integer("batch_size", 256, "Unused (records are checked one by one); kept so that "
                         "command lines written for earlier versions still run.")
    flags.DEFINE_bool("quiet", False, "Print problems only.")


def verify(out_dir: str, batch_size: int = 256) -> list[str]:
    """Check the prepared output folder ``out_dir`` against its manifest (see the module doc).

    Every shard the manifest lists is read whole: its size in bytes, SHA-256, record count, both
    CRCs of every record and every record's features against the manifest's schema (kind, number of
    values; raw bands: ``prod(shape) * itemsize`` bytes, from the manifest's band table). A corrupt
    or truncated record ends the check of its shard and is reported as a problem, not raised.

    Args:
      out_dir: a prepared output folder (``OUT`` of ``python -m prep <dataset> --out_dir OUT``).
      batch_size: unused; kept for callers of earlier versions.

    Returns:
      One line per problem found, each naming the file or split concerned; empty when the
      shards match the manifest.

    Raises:
      InputError: ``out_dir`` has no readable manifest (``prep.manifest.load``).
    """
    del batch_size
    manifest = load_manifest(out_dir)  # InputError when there is no (valid) manifest
    schema = manifest.record_schema
    compression = manifest.compression
    problems = []
    # band byte sizes from the manifest's own band table (dtype may differ from the default, e.g. float64)
    raw_sizes = {b["feature"]: int(np.prod(b["shape"])) * np.dtype(b["dtype"]).itemsize
                 for b in manifest["bands"]} if schema.band_encoding == "raw_bytes" else {}
    for split, s in manifest["splits"].items():
        if s["listed"] != s["written"] + s["excluded"] + s["skipped"] + s.get("missing", 0):
            problems.append(f"split {split}: listed {s['listed']} != written {s['written']} + excluded "
                            f"{s['excluded']} + skipped {s['skipped']} + missing {s.get('missing', 0)}")
        if sum(sh["records"] for sh in s["shards"]) != s["written"]:
            problems.append(f"split {split}: shard record counts do not add up to written={s['written']}")
        for sh in s["shards"]:
            file = os.path.join(out_dir, sh["file"])
            if not os.path.exists(file):
                problems.append(f"{file}: missing")
                continue
            size = os.path.getsize(file)
            if size != sh["bytes"]:
                problems.append(f"{file}: {size} bytes, manifest says {sh['bytes']}")
            digest = files.sha256_file(file)
            if digest != sh["sha256"]:
                problems.append(f"{file}: SHA-256 {digest} != manifest {sh['sha256']}")
            check = _RecordCheck(schema.fields, raw_sizes)
            n = 0
            try:
                for rec in tfrecord.read_records(file, compression):
                    check(n, rec)
                    n += 1
            except tfrecord.CorruptRecordError as e:
                problems.append(str(e))
            problems += check.problems(file)
            if n != sh["records"]:
                problems.append(f"{file}: {n} records, manifest says {sh['records']}")
    return problems


class _RecordCheck:
    """Checks records against the schema's fields.

    Collects each kind of problem once per shard, with the first record showing it and the number
    of records that do.
    """

    def __init__(self, fields: Sequence[Field], raw_sizes: Mapping[str, int]):
        self.fields = {f.key: f for f in fields}
        self.raw_sizes = dict(raw_sizes)
        self.found: dict[tuple, list] = {}  # (problem kind, key) -> [first record, detail, records]

    def _add(self, what: tuple, index: int, detail) -> None:
        entry = self.found.get(what)
        if entry is None:
            self.found[what] = [index, detail, 1]
        else:
            entry[2] += 1

    def __call__(self, index: int, record: bytes) -> None:
        try:
            info = tfrecord.example_info(record)
        except tfrecord.ExampleError as e:
            self._add(("parse", None), index, f"not a tf.train.Example: {e}")
            return
        for key, field in self.fields.items():
            got = info.get(key)
            if got is None:
                self._add(("missing", key), index, f"feature {key!r} is missing")
            elif got.kind is not None and got.kind != field.kind:
                self._add(("kind", key), index, f"feature {key!r} is a {got.kind} list, the schema says {field.kind}")
            elif field.length is not None and got.count != field.length:
                self._add(("length", key), index,
                          f"feature {key!r} holds {got.count} value(s), the schema says {field.length}")
            elif key in self.raw_sizes and got.sizes != (self.raw_sizes[key],):
                self._add(("raw", key), index, sum(got.sizes))
        for key in sorted(info.keys() - self.fields.keys()):
            self._add(("extra", key), index, f"feature {key!r} is not in the schema")

    def problems(self, file: str) -> list[str]:
        out = []
        for (kind, key), (index, detail, count) in self.found.items():
            if kind == "raw":  # the message of earlier versions
                out.append(f"{file}: feature {key!r} holds {detail} bytes in {count} record(s), "
                           f"expected {self.raw_sizes[key]}")
            else:
                out.append(f"{file}: {count} record(s) do not parse with the schema; first, record {index}: {detail}")
        return out


def main(argv: list[str]) -> int:
    """Verify the folder ``argv[1]`` and print the result (the command ``python -m prep.verify OUT``).

    Prints one ``MISMATCH <problem>`` line per problem on stdout and a count on stderr, or, unless
    ``--quiet``, one ``OK`` line with the number of shards and records checked.

    Args:
      argv: ``[program, OUT_FOLDER]``, as absl leaves it after parsing the flags.

    Returns:
      The exit status: 0 when the shards match the manifest, 1 when a problem was found.

    Raises:
      absl.app.UsageError: not exactly one positional argument.
      InputError: the folder has no readable manifest (``prep.manifest.load``).
    """
    if len(argv) != 2:
        raise app.UsageError("usage: python -m prep.verify OUT_FOLDER")
    problems = verify(argv[1], FLAGS.batch_size)
    for p in problems:
        print(f"MISMATCH {p}")
    if problems:
        print(f"{len(problems)} problem(s) in {argv[1]}", file=sys.stderr)
        return 1
    if not FLAGS.quiet:
        m = load_manifest(argv[1])
        n = sum(len(s["shards"]) for s in m.splits.values())
        print(f"OK {argv[1]}: {n} shards, {m.totals['written']} records match the manifest")
    return 0


def run() -> None:
    """Console entry point (``eorecords-verify``): ``main`` under ``prep.cli.run_command``.

    Raises:
      SystemExit: always, with ``main``'s status; 1 for an InputError, 2 for a usage error.
    """
    cli.run_command(sys.modules[__name__])


if __name__ == "__main__":
    run()
