"""Check prepared shards against their manifest: ``python -m prep.verify OUT``.

Checks that every shard listed in the manifest exists with its size and SHA-256, that its
record count matches, that every record's CRCs are intact and that every record parses with the
schema's feature description (with each raw band holding the bytes its shape and dtype need),
and that the counts reconcile (listed = written + excluded + skipped). Exits 1 on any mismatch.
"""
from __future__ import annotations

import functools
import os
import sys

import numpy as np
from absl import app, flags

from prep import cli, shards, tfrecord
from prep.manifest import load as load_manifest

FLAGS = flags.FLAGS


@functools.cache  # declared once per process, however often run() or a test calls it
def define_flags() -> None:
    """Declare the command's flags (called by run(); importing this module defines none)."""
    flags.DEFINE_integer("batch_size", 256, "Records parsed per batch.")
    flags.DEFINE_bool("quiet", False, "Print problems only.")


def verify(out_dir: str, batch_size: int = 256) -> list[str]:
    """Return the list of problems found (empty when the output matches its manifest)."""
    manifest = load_manifest(out_dir)  # InputError when there is no (valid) manifest
    import tensorflow as tf

    from prep.features import feature_description

    schema = manifest.record_schema
    desc = feature_description(schema)
    compression = manifest.get("compression", "NONE")
    problems = []
    # band byte sizes from the manifest's own band table (dtype may differ from the default, e.g. float64)
    raw_sizes = {b["feature"]: int(np.prod(b["shape"])) * np.dtype(b["dtype"]).itemsize
                 for b in manifest["bands"]} if schema.band_encoding == "raw_bytes" else {}
    for split, s in manifest["splits"].items():
        if s["listed"] != s["written"] + s["excluded"] + s["skipped"]:
            problems.append(f"split {split}: listed {s['listed']} != written {s['written']} + excluded "
                            f"{s['excluded']} + skipped {s['skipped']}")
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
            digest = shards.sha256_file(file)
            if digest != sh["sha256"]:
                problems.append(f"{file}: SHA-256 {digest} != manifest {sh['sha256']}")
            n, batch = 0, []
            try:
                for rec in tfrecord.read_records(file, compression):
                    batch.append(rec)
                    n += 1
                    if len(batch) >= batch_size:
                        problems += _parse(file, batch, desc, raw_sizes, tf)
                        batch = []
                if batch:
                    problems += _parse(file, batch, desc, raw_sizes, tf)
            except tfrecord.CorruptRecordError as e:
                problems.append(str(e))
            if n != sh["records"]:
                problems.append(f"{file}: {n} records, manifest says {sh['records']}")
    return problems


def _parse(file, batch, desc, raw_sizes, tf) -> list[str]:
    try:
        parsed = tf.io.parse_example(tf.constant(batch), desc)
    except tf.errors.InvalidArgumentError as e:
        return [f"{file}: a record does not parse with the schema: {e.message.splitlines()[0]}"]
    out = []
    for key, size in raw_sizes.items():
        lengths = tf.strings.length(parsed[key][:, 0]).numpy()
        bad = np.flatnonzero(lengths != size)
        if bad.size:
            out.append(f"{file}: feature {key!r} holds {lengths[bad[0]]} bytes in {bad.size} record(s), "
                       f"expected {size}")
    return out


def main(argv):
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
        n = sum(len(s["shards"]) for s in m["splits"].values())
        print(f"OK {argv[1]}: {n} shards, {m['totals']['written']} records match the manifest")
    return 0


def run():
    """Console entry point (``eorecords-verify``)."""
    cli.run_command(sys.modules[__name__])


if __name__ == "__main__":
    run()
