"""Benchmark Sentinel2GlobalLULC preparation and reading: tiles/s and samples/s beside bare baselines.

    python bench/prep_lulc.py [--num_tiles 5000] [--tile_px 224] [--work /tmp/eorecords-bench]

Generates (once, cached) a synthetic class-folder tree of JPEG tiles with the package's generator
(``prep.datasets.sentinel2_global_lulc.synthetic``), then prints, all measured in the same run:
  * a bare baseline: reading every tile's bytes from disk and parsing its file name (1 core, no
    decoding, encoding or writing),
  * ``python -m prep lulc`` end to end (scan, CSV checks, folds, JPEG decode for the statistics,
    serialize, hash, write) with 1 and 2 workers, ``--shard_size_mb`` chosen for several shards per split,
  * reader samples/s at HxWx3 with JPEG decoding, batch 64 (``prep.reader.make_dataset``), beside a
    plain ``tf.data.TFRecordDataset`` read of the same shards (records only, no parsing) and a plain
    parse + ``tf.io.decode_jpeg`` pipeline.
The tiles are in the page cache after generation, so the figures exclude disk reads. The machine
(CPUs, load average at the start and at the end) is printed with the figures.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Only light imports at the top: the spawned preparation workers import this script again.
from prep.datasets.sentinel2_global_lulc import command as lulc  # noqa: E402
from prep.datasets.sentinel2_global_lulc import raw  # noqa: E402
from prep.datasets.sentinel2_global_lulc import spec as sp  # noqa: E402


def tree(work: str, n: int, px: int) -> tuple[str, list[str]]:
    """Generates (once, cached under ``work``) a synthetic tree of at least ``n`` JPEG tiles of ``px`` pixels.

    Returns:
        (tree root, tile paths in class-folder order).
    """
    from prep.datasets.sentinel2_global_lulc.synthetic import write_tree

    per_class = -(-n // sp.NUM_CLASSES)
    root = os.path.join(work, f"lulc{per_class * sp.NUM_CLASSES}_{px}")
    if not os.path.exists(os.path.join(root, ".complete")):
        shutil.rmtree(root, ignore_errors=True)
        write_tree(root, per_class=per_class, tile_px=px, seed=1)
        open(os.path.join(root, ".complete"), "w").close()
    base = raw.class_root(root)
    paths = [os.path.join(base, d, f) for d in sorted(os.listdir(base)) if os.path.isdir(os.path.join(base, d))
             for f in sorted(os.listdir(os.path.join(base, d)))]
    return root, paths


def rate_bare(paths: list[str]) -> float:
    """Returns tiles/s reading each tile's bytes and parsing its file name (1 core, nothing decoded or written)."""
    t = time.perf_counter()
    for p in paths:
        with open(p, "rb") as f:
            f.read()
        raw.parse_name(p)
    return len(paths) / (time.perf_counter() - t)


def prepare(root: str, out: str, workers: int, px: int, shard_size_mb: float) -> tuple[float, dict]:
    """Prepares fold 0 of ``root`` into ``out`` (replaced) with ``workers`` processes and times it.

    Returns:
        (tiles written per second end to end, shards per split).
    """
    shutil.rmtree(out, ignore_errors=True)
    t = time.perf_counter()
    m = lulc.prepare(root, out, workers=workers, test_fold=0, tile_px=px, shard_size_mb=shard_size_mb)
    dt = time.perf_counter() - t
    return m["totals"]["written"] / dt, {s: len(v["shards"]) for s, v in m["splits"].items()}


def rate_dataset(make: object, rounds: int) -> float:
    """Returns the best-of-``rounds`` samples/s of full passes over the dataset ``make()`` returns.

    Each round builds a fresh iterator; the first batch (graph tracing, file opening) is not timed.
    """
    best = 0.0
    for _ in range(rounds):
        it = iter(make())
        next(it)
        n, t = 0, time.perf_counter()
        for batch in it:
            first = batch[1] if isinstance(batch, tuple) else batch
            n += int(first.shape[0])
        best = max(best, n / (time.perf_counter() - t))
    return best


def read_rates(out: str, batch: int, px: int, rounds: int) -> dict[str, float]:
    """Samples/s over the train split of ``out``: eorecords reader, plain record read, plain parse + decode."""
    from prep import reader
    from prep.quiet import import_tensorflow

    tf = import_tensorflow()
    m = reader.load_manifest(out)
    files = [os.path.join(out, sh["path"]) if "path" in sh else os.path.join(out, sh["file"])
             for sh in m["splits"]["train"]["shards"]]

    def ours() -> object:
        return reader.make_dataset(out, "train", bands="all", normalize=None, batch_size=batch, training=False,
                                   manifest=m)

    def plain_read() -> object:
        return tf.data.TFRecordDataset(files).batch(batch).prefetch(tf.data.AUTOTUNE)

    desc = {sp.JPEG_KEY: tf.io.FixedLenFeature([], tf.string), "label/index": tf.io.FixedLenFeature([], tf.int64)}

    def decode(x: object) -> tuple:
        e = tf.io.parse_example(x, desc)
        images = tf.map_fn(lambda b: tf.io.decode_jpeg(b, channels=3), e[sp.JPEG_KEY],
                           fn_output_signature=tf.TensorSpec([px, px, 3], tf.uint8))
        return tf.cast(images, tf.float32), e["label/index"]

    def plain_decode() -> object:
        return (tf.data.TFRecordDataset(files).batch(batch).map(decode, num_parallel_calls=tf.data.AUTOTUNE)
                .prefetch(tf.data.AUTOTUNE))

    return {"ours": rate_dataset(ours, rounds), "plain_read": rate_dataset(plain_read, rounds),
            "plain_decode": rate_dataset(plain_decode, rounds)}


def machine() -> str:
    """One line naming the machine: CPU, logical cores, memory, Python."""
    mem, cpu = "", platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    try:
        with open("/proc/meminfo") as f:
            mem = f", {int(f.readline().split()[1]) / 2**20:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return (f"{cpu}, {os.cpu_count()} logical CPUs{mem}, "
            f"Python {platform.python_version()}")


def main() -> None:
    """Runs the benchmark with the command-line arguments and prints the figures (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--num_tiles", type=int, default=5000)
    ap.add_argument("--tile_px", type=int, default=224)
    ap.add_argument("--work", default="/tmp/eorecords-bench")
    ap.add_argument("--shard_size_mb", type=float, default=0.0,
                    help="0: about 4 shards in the test split (fold 0 of 5)")
    ap.add_argument("--batch_size", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=2, help="passes per reader pipeline (best reported)")
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.1f} at the start", flush=True)
    root, paths = tree(args.work, args.num_tiles, args.tile_px)
    size = sum(os.path.getsize(p) for p in paths)
    shard_mb = args.shard_size_mb or max(0.5, round(size / 1e6 / 5 / 4, 1))
    print(f"tree: {len(paths)} synthetic {args.tile_px}x{args.tile_px} JPEG tiles in {root} "
          f"({size / len(paths) / 1e3:.1f} KB each); --shard_size_mb {shard_mb}", flush=True)
    bare = rate_bare(paths)
    out = os.path.join(args.work, "lulc_out")
    r1, shards = prepare(root, out, 1, args.tile_px, shard_mb)
    r2, _ = prepare(root, out, 2, args.tile_px, shard_mb)
    print(f"bare: read bytes + parse name        : {bare:8,.0f} tiles/s (1 core)")
    print(f"prepare, 1 worker                    : {r1:8,.0f} tiles/s ({bare / r1:.1f}x slower than bare; "
          f"shards {shards})")
    print(f"prepare, 2 workers                   : {r2:8,.0f} tiles/s (speed-up {r2 / r1:.2f}x)", flush=True)
    rr = read_rates(out, args.batch_size, args.tile_px, args.rounds)
    shape = f"{args.tile_px}x{args.tile_px}x3"
    print(f"plain TFRecordDataset read, batch {args.batch_size} : {rr['plain_read']:8,.0f} records/s (no parsing)")
    print(f"plain parse + decode_jpeg, batch {args.batch_size}  : {rr['plain_decode']:8,.0f} samples/s {shape}")
    print(f"eorecords reader, batch {args.batch_size}           : {rr['ours']:8,.0f} samples/s {shape} "
          f"({rr['ours'] / rr['plain_decode']:.2f}x plain parse + decode)")
    print(f"load average {os.getloadavg()[0]:.1f} at the end (other processes share the {os.cpu_count()} CPUs)")
    print(json.dumps({"tiles": len(paths), "bare_tiles_per_s": round(bare), "prep_1_worker_tiles_per_s": round(r1),
                      "prep_2_workers_tiles_per_s": round(r2), "reader_samples_per_s": round(rr["ours"]),
                      "plain_read_records_per_s": round(rr["plain_read"]),
                      "plain_decode_samples_per_s": round(rr["plain_decode"])}))


if __name__ == "__main__":
    main()
