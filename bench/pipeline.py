"""Benchmark: samples/s of the whole training input pipeline for prepared records, against plain tf.data.

The pipeline reads, shuffles, batches, parses, selects, resamples, normalizes and augments.

    python bench/pipeline.py --data_dir OUT --bands 10m20m --batch_size 256
    python bench/pipeline.py --data_dir OUT_COMPACT --data_dir OUT_UPSTREAM      # side by side
    python bench/pipeline.py                      # synthetic archive prepared in both schemas

Measured per prepared directory:

  eorecords   prep.reader.make_dataset(training=True): interleaved shards, shuffle buffer, batch,
              batch-parsed records, XLA-compiled selection / resampling / normalization / flips
              and rotations
  plain       over upstream-schema directories only: the straightforward tf.data pipeline the
              upstream code suggests -- TFRecordDataset, shuffle, batch, tf.io.parse_example of the
              Int64List bands, cast and stack per grid, one tf.image.resize (bicubic) of the stacked
              coarser bands, concat, (x - mean) / std. It does not augment (less work than ours,
              so the ratio is conservative).

Each pipeline is timed in --rounds rounds (pipelines alternate, so load from other processes
spreads over all of them): a fresh iterator, --warmup batches discarded, --batches timed. The
median round is reported as wall-clock samples/s, and as samples per CPU-second of this process
(all its threads), which depends less on what else runs on the machine. The last line printed
carries the headline figure (compact schema if measured) and contains "samples/s".
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Mapping, Sequence

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from prep import reader  # noqa: E402
from prep.quiet import import_tensorflow  # noqa: E402

tf = import_tensorflow()


def synthetic_dirs(work: str, num_patches: int, workers: int) -> list[str]:
    """A synthetic raw archive prepared in both schemas under ``work`` (reused when present)."""
    from prep.datasets.bigearthnet import command as prep_ben
    from prep.datasets.bigearthnet import synthetic as synth

    root = os.path.join(work, "raw")
    if not os.path.exists(os.path.join(root, "train.csv")):
        print(f"writing a synthetic archive of {num_patches} patches to {root} ...", flush=True)
        synth.generate_bigearthnet(root, num_patches, seed=0, workers=workers, split_fractions=(0.9, 0.05, 0.05))
    out = []
    for schema in ("compact", "upstream"):
        d = os.path.join(work, schema)
        if not os.path.exists(os.path.join(d, reader.MANIFEST)):
            print(f"preparing {d} ...", flush=True)
            prep_ben.prepare(root, d, [os.path.join(root, f"{s}.csv") for s in ("train", "val", "test")],
                             schema=schema, workers=workers,
                             exclusion_lists=[os.path.join(root, f) for f in
                                              (synth.NO_TARGET_LIST, synth.SNOW_LIST, synth.CLOUD_LIST)])
        out.append(d)
    return out


def plain_pipeline(data_dir: str, split: str, bands: str | Sequence[str], batch_size: int, shuffle_buffer: int,
                   normalize: str | Mapping | None) -> tf.data.Dataset:
    """Builds the straightforward tf.data pipeline over the upstream schema (see the module docstring).

    Args:
        data_dir: a directory prepared in the upstream schema (Int64List bands).
        split: the split to read.
        bands: a band preset or comma list (``prep.reader``), e.g. "10m20m".
        batch_size: examples per batch (the remainder is dropped).
        shuffle_buffer: shuffle buffer in records (<= 1: no shuffle).
        normalize: as ``prep.reader.band_statistics``: "manifest", "upstream", a table, or None.

    Returns:
        Batches of ``({"image": [B, H, W, C] float32}, [B, 19] float32 multi-hot)``, the coarser
        bands bicubic-resampled to the finest grid selected.

    Raises:
        ValueError: the directory is not in the upstream schema.
    """
    manifest = reader.load_manifest(data_dir)
    if manifest["schema"] != "upstream":
        raise ValueError(f"{data_dir}: the plain pipeline reads the upstream schema only")
    lay = reader.layout(manifest, bands)
    stats = reader.band_statistics(manifest, normalize, lay.bands)
    shapes = {b["name"]: tuple(b["shape"]) for b in manifest["bands"]}
    target = lay.target
    desc = {b: tf.io.FixedLenFeature([shapes[b][0] * shapes[b][1]], tf.int64) for b in lay.bands}
    desc["BigEarthNet-19_labels_multi_hot"] = tf.io.FixedLenFeature([len(manifest["classes"])], tf.int64)
    mean = tf.constant([stats[b][0] for b in lay.bands], tf.float32) if stats else None
    std = tf.constant([stats[b][1] for b in lay.bands], tf.float32) if stats else None

    def parse(serialized):
        p = tf.io.parse_example(serialized, desc)
        parts = []
        for g in lay.groups:  # bands of one grid, in selection order within the grid
            h, w = g.shape
            x = tf.stack([tf.reshape(tf.cast(p[b], tf.float32), [-1, h, w]) for b in g.bands], axis=-1)
            if (h, w) != target:
                x = tf.image.resize(x, target, method="bicubic")
            parts.append(x)
        x = tf.concat(parts, axis=-1)
        order = lay.order
        if order != list(range(len(order))):
            x = tf.gather(x, order, axis=-1)
        if mean is not None:
            x = (x - mean) / std
        return {"image": x}, tf.cast(p["BigEarthNet-19_labels_multi_hot"], tf.float32)

    files = reader.shard_files(data_dir, manifest, split)
    ds = tf.data.TFRecordDataset(files, num_parallel_reads=tf.data.AUTOTUNE)
    if shuffle_buffer > 1:
        ds = ds.shuffle(shuffle_buffer)
    return ds.batch(batch_size, drop_remainder=True).map(parse, num_parallel_calls=tf.data.AUTOTUNE).prefetch(
        tf.data.AUTOTUNE)


def time_round(ds: tf.data.Dataset, warmup: int, batches: int) -> tuple[float, float, int]:
    """Times ``batches`` batches of a fresh iterator over ``ds``, after ``warmup`` untimed ones.

    Returns:
        (wall seconds, CPU seconds of this process, samples).
    """
    it = iter(ds)
    for _ in range(warmup):
        next(it)
    n = 0
    w0, c0 = time.perf_counter(), time.process_time()
    for _ in range(batches):
        _, y = next(it)
        n += int(y.shape[0])
    w, c = time.perf_counter() - w0, time.process_time() - c0
    del it
    return w, c, n


def main(argv: list[str] | None = None) -> int:
    """Runs the benchmark with command-line ``argv`` (None = ``sys.argv[1:]``); returns the exit status 0.

    Raises:
        SystemExit: a split holds fewer records than one batch.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", action="append", default=[],
                        help="prepared directory (repeat for several; none: a synthetic pair in --work_dir)")
    parser.add_argument("--split", default="train", help="split to read")
    parser.add_argument("--bands", default="10m20m", help="band preset or comma list (prep.reader)")
    parser.add_argument("--per_resolution", action="store_true", help="deliver one tensor per resolution group")
    parser.add_argument("--resample", default="bicubic", help="resampling method")
    parser.add_argument("--normalize", default="manifest", help="manifest, upstream or none")
    parser.add_argument("--augment", default="dihedral", help="dihedral, flips or none")
    parser.add_argument("--batch_size", type=int, default=256, help="batch size")
    parser.add_argument("--shuffle_buffer", type=int, default=2048, help="shuffle buffer (records)")
    parser.add_argument("--batches", type=int, default=24, help="timed batches per round")
    parser.add_argument("--warmup", type=int, default=6, help="batches discarded per round")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per pipeline (median reported)")
    parser.add_argument("--no_plain", action="store_true", help="skip the plain tf.data baseline")
    parser.add_argument("--no_jit", action="store_true", help="run the reader's transforms without XLA")
    parser.add_argument("--work_dir", default="bench_out/pipeline", help="where the synthetic pair is written")
    parser.add_argument("--num_patches", type=int, default=1500, help="patches of the synthetic archive")
    parser.add_argument("--workers", type=int, default=2, help="processes for writing the synthetic pair")
    args = parser.parse_args(argv)

    dirs = args.data_dir or synthetic_dirs(args.work_dir, args.num_patches, args.workers)
    normalize = None if args.normalize.lower() == "none" else args.normalize
    augment = None if args.augment.lower() == "none" else args.augment
    pipelines = []  # (label, schema, dataset)
    for d in dirs:
        m = reader.load_manifest(d)
        n = reader.num_examples(m, args.split)
        if n < args.batch_size:
            raise SystemExit(f"{d}: split {args.split} has {n} records, fewer than one batch of {args.batch_size}")
        ds = reader.make_dataset(d, args.split, bands=args.bands, per_resolution=args.per_resolution,
                                 resample=args.resample, normalize=normalize, batch_size=args.batch_size,
                                 training=True, shuffle_buffer=args.shuffle_buffer, augment=augment or False,
                                 drop_remainder=True, jit_compile=not args.no_jit, manifest=m).repeat()
        pipelines.append(("eorecords", m["schema"], d, ds))
        if m["schema"] == "upstream" and not args.no_plain and not args.per_resolution:
            plain = plain_pipeline(d, args.split, args.bands, args.batch_size, args.shuffle_buffer, normalize)
            pipelines.append(("plain tf.data", "upstream", d, plain.repeat()))

    spec = reader.input_spec(reader.load_manifest(dirs[0]), args.bands, args.per_resolution)
    load0 = os.getloadavg()
    print(f"input {spec}, batch {args.batch_size}, augment {augment}, resample {args.resample}, "
          f"normalize {normalize}; {os.cpu_count()} CPUs, load average {load0[0]:.1f} at start")
    for *_, ds in pipelines:  # compile / fill caches once
        time_round(ds, 1, 1)
    results = {i: [] for i in range(len(pipelines))}
    for _ in range(args.rounds):
        for i, (*_, ds) in enumerate(pipelines):
            results[i].append(time_round(ds, args.warmup, args.batches))
    load1 = os.getloadavg()

    rows = []
    for i, (label, schema, d, _) in enumerate(pipelines):
        wall = statistics.median(n / w for w, c, n in results[i])
        cpu = statistics.median(n / c for w, c, n in results[i])
        rows.append((label, schema, d, wall, cpu))
    plain = next((r for r in rows if r[0] == "plain tf.data"), None)
    print(f"\n{'pipeline':15s} {'schema':9s} {'samples/s':>10s} {'per CPU-s':>10s} {'x plain':>8s}  directory")
    for label, schema, d, wall, cpu in rows:
        ratio = f"{wall / plain[3]:.2f}x" if plain else "-"
        print(f"{label:15s} {schema:9s} {wall:10,.0f} {cpu:10,.0f} {ratio:>8s}  {d}")
    print(f"load average {load1[0]:.1f} at the end (other processes share the {os.cpu_count()} CPUs; "
          "samples per CPU-second is the steadier figure)")
    head = next((r for r in rows if r[0] == "eorecords" and r[1] == "compact"), rows[0])
    shape = "x".join(str(v) for v in next(iter(spec.values()))) if len(spec) == 1 else "+".join(spec)
    extra = (f", {head[3] / plain[3]:.2f}x the plain tf.data pipeline over the upstream schema "
             f"({plain[3]:,.0f} samples/s)") if plain else ""
    print(f"{head[0]} {head[1]} {shape} batch {args.batch_size}: {head[3]:,.0f} samples/s "
          f"({head[4]:,.0f} per CPU-second){extra}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
