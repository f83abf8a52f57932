"""Benchmark: samples/s of the training input pipelines for prepared records, beside the plain read ceiling.

The host pipeline reads, shuffles, batches, parses, selects, resamples, normalizes and augments;
raw delivery stops after slicing out and stacking the stored bands (for preprocessing on the
accelerator, ``models.preprocess``).

    python bench/pipeline.py --data_dir OUT --bands 10m20m --batch_size 256
    python bench/pipeline.py --data_dir OUT_COMPACT --data_dir OUT_UPSTREAM      # side by side
    python bench/pipeline.py                      # synthetic archive prepared in both schemas

Measured per prepared directory:

  read ceiling  tf.data.TFRecordDataset over the split's shards with 2 parallel reads, batched,
                nothing parsed: no reader of these files can be faster (records/s)
  shuffled      where raw delivery's time goes: its front alone (the shards interleaved, 2 parallel
  batches       reads, shuffle buffer, batch), nothing parsed ...
  + one copy    ... and then each batch's bytes copied once (tf.io.decode_raw to uint8): the least
                that delivering tensors adds (--no_breakdown skips both rows)
  raw delivery  make_dataset(training=True, raw=True): interleaved shards, shuffle buffer, batch,
                the stored bands sliced out and stacked per grid (uint16), the augmentation draws
                delivered, not applied; its ratio to the read ceiling is printed
  eorecords     make_dataset(training=True): as raw delivery, then XLA-compiled selection /
                resampling / normalization / flips and rotations on the host, float32
  ... bfloat16  the same, delivered as bfloat16 / float16 (for mixed-precision models; --no_half
  ... float16   skips them)
  device prep.  raw delivery, then models.preprocess.Preprocess on each batch in an XLA-compiled
                function on this process's default device (the CPU here: it then measures the
                work moved off the input pipeline, not an accelerator; --no_device skips it)
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
from collections.abc import Callable, Mapping, Sequence

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


def time_round(ds: tf.data.Dataset, warmup: int, batches: int,
               post: Callable[[Mapping[str, tf.Tensor]], Mapping[str, tf.Tensor]] | None = None,
               ) -> tuple[float, float, int]:
    """Times ``batches`` batches of a fresh iterator over ``ds``, after ``warmup`` untimed ones.

    Args:
        ds: batches of (features, targets), or of serialized records (a [B] string tensor).
        warmup: batches read and discarded first.
        batches: batches timed.
        post: applied to each batch's features (device-side preprocessing), its outputs fetched.

    Returns:
        (wall seconds, CPU seconds of this process, samples).
    """
    def one(it):
        b = next(it)
        if isinstance(b, tuple):
            x, y = b
            if post is not None:
                for v in post(x).values():
                    v.numpy()
            return int(y.shape[0])
        return int(b.shape[0])

    it = iter(ds)
    for _ in range(warmup):
        one(it)
    n = 0
    w0, c0 = time.perf_counter(), time.process_time()
    for _ in range(batches):
        n += one(it)
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
    parser.add_argument("--no_half", action="store_true", help="skip the bfloat16 / float16 host pipelines")
    parser.add_argument("--no_breakdown", action="store_true", help="skip the rows that break raw delivery down")
    parser.add_argument("--no_device", action="store_true", help="skip raw delivery + Preprocess layer")
    parser.add_argument("--parallel_reads", type=int, default=2, help="parallel reads of the read ceiling")
    parser.add_argument("--work_dir", default="bench_out/pipeline", help="where the synthetic pair is written")
    parser.add_argument("--num_patches", type=int, default=1500, help="patches of the synthetic archive")
    parser.add_argument("--workers", type=int, default=2, help="processes for writing the synthetic pair")
    args = parser.parse_args(argv)

    dirs = args.data_dir or synthetic_dirs(args.work_dir, args.num_patches, args.workers)
    normalize = None if args.normalize.lower() == "none" else args.normalize
    augment = None if args.augment.lower() == "none" else args.augment
    pipelines = []  # (label, schema, directory, dataset, per-batch function or None)
    for d in dirs:
        m = reader.load_manifest(d)
        n = reader.num_examples(m, args.split)
        if n < args.batch_size:
            raise SystemExit(f"{d}: split {args.split} has {n} records, fewer than one batch of {args.batch_size}")
        common = dict(bands=args.bands, per_resolution=args.per_resolution, resample=args.resample,
                      normalize=normalize, batch_size=args.batch_size, training=True,
                      shuffle_buffer=args.shuffle_buffer, augment=augment or False, drop_remainder=True,
                      jit_compile=not args.no_jit, manifest=m)
        files = reader.shard_files(d, m, args.split)
        ceiling = tf.data.TFRecordDataset(files, num_parallel_reads=args.parallel_reads).batch(
            args.batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE).repeat()
        pipelines.append(("read ceiling", m["schema"], d, ceiling, None))
        if not args.no_breakdown:
            front = tf.data.Dataset.from_tensor_slices(files).interleave(
                tf.data.TFRecordDataset, cycle_length=args.parallel_reads, num_parallel_calls=args.parallel_reads,
                deterministic=False).shuffle(args.shuffle_buffer).batch(args.batch_size, drop_remainder=True)
            pipelines.append(("shuffled batches", m["schema"], d, front.prefetch(tf.data.AUTOTUNE).repeat(), None))
            length = len(next(iter(tf.data.TFRecordDataset(files[:1]))).numpy())
            copied = front.map(lambda s, n=length: tf.io.decode_raw(s, tf.uint8, fixed_length=n),
                               num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
            pipelines.append(("+ one copy", m["schema"], d, copied.prefetch(tf.data.AUTOTUNE).repeat(), None))
        raw = reader.make_dataset(d, args.split, raw=True, **common).repeat()
        pipelines.append(("raw delivery", m["schema"], d, raw, None))
        ds = reader.make_dataset(d, args.split, **common).repeat()
        pipelines.append(("eorecords", m["schema"], d, ds, None))
        for half in () if args.no_half else ("bfloat16", "float16"):
            pipelines.append((f"... {half}", m["schema"], d,
                              reader.make_dataset(d, args.split, output_dtype=half, **common).repeat(), None))
        if not args.no_device:
            from models import preprocess

            layer = preprocess.build_preprocess(m, args.bands, args.per_resolution, args.resample, normalize)
            pipelines.append(("device prep.", m["schema"], d, raw, tf.function(layer, jit_compile=not args.no_jit)))
        if m["schema"] == "upstream" and not args.no_plain and not args.per_resolution:
            plain = plain_pipeline(d, args.split, args.bands, args.batch_size, args.shuffle_buffer, normalize)
            pipelines.append(("plain tf.data", "upstream", d, plain.repeat(), None))

    spec = reader.input_spec(reader.load_manifest(dirs[0]), args.bands, args.per_resolution)
    load0 = os.getloadavg()
    print(f"input {spec}, batch {args.batch_size}, augment {augment}, resample {args.resample}, "
          f"normalize {normalize}; {os.cpu_count()} CPUs, load average {load0[0]:.1f} at start")
    for *_, ds, post in pipelines:  # compile / fill caches once
        time_round(ds, 1, 1, post)
    results = {i: [] for i in range(len(pipelines))}
    for _ in range(args.rounds):
        for i, (*_, ds, post) in enumerate(pipelines):
            results[i].append(time_round(ds, args.warmup, args.batches, post))
    load1 = os.getloadavg()

    rows = []
    for i, (label, schema, d, *_) in enumerate(pipelines):
        wall = statistics.median(n / w for w, c, n in results[i])
        cpu = statistics.median(n / c for w, c, n in results[i])
        rows.append((label, schema, d, wall, cpu))
    plain = next((r for r in rows if r[0] == "plain tf.data"), None)
    ceilings = {r[2]: r for r in rows if r[0] == "read ceiling"}
    print(f"\n{'pipeline':16s} {'schema':9s} {'samples/s':>10s} {'per CPU-s':>10s} {'x ceiling':>9s} {'x plain':>8s}  "
          "directory")
    for label, schema, d, wall, cpu in rows:
        ratio = f"{wall / plain[3]:.2f}x" if plain else "-"
        of_ceiling = f"{wall / ceilings[d][3]:.0%}" if d in ceilings else "-"
        print(f"{label:16s} {schema:9s} {wall:10,.0f} {cpu:10,.0f} {of_ceiling:>9s} {ratio:>8s}  {d}")
    print(f"load average {load1[0]:.1f} at the end (other processes share the {os.cpu_count()} CPUs; "
          "samples per CPU-second is the steadier figure)")
    for label, schema, d, wall, _ in rows:
        if label == "raw delivery":
            print(f"raw delivery {schema}: {wall:,.0f} samples/s = {wall / ceilings[d][3]:.0%} of the plain read ceiling "
                  f"({ceilings[d][3]:,.0f} records/s, {args.parallel_reads} parallel reads, same run)")
    head = next((r for r in rows if r[0] == "eorecords" and r[1] == "compact"), rows[0])
    shape = "x".join(str(v) for v in next(iter(spec.values()))) if len(spec) == 1 else "+".join(spec)
    extra = (f", {head[3] / plain[3]:.2f}x the plain tf.data pipeline over the upstream schema "
             f"({plain[3]:,.0f} samples/s)") if plain else ""
    print(f"{head[0]} {head[1]} {shape} batch {args.batch_size}: {head[3]:,.0f} samples/s "
          f"({head[4]:,.0f} per CPU-second){extra}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
