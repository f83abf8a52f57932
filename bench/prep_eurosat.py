"""Benchmark EuroSAT (multispectral) preparation: images/s beside a bare rasterio read, reader samples/s.

    python bench/prep_eurosat.py [--per_class 200] [--work /tmp/eorecords-bench]

Generates (once, cached) a synthetic class-folder archive in the real layout (64x64x13 uint16
GeoTIFFs, 106 KB of pixels each), then prints:
  * the bare read: one rasterio open + read of each file (1 core),
  * ``python -m prep eurosat``'s rate end to end (read, check, encode, statistics, write) with 1 and
    2 workers, and the ratio to the bare read per core,
  * the reader's samples/s for ``all`` 64x64x13 at batch 64 (training pipeline: shuffle, augment).
The files are in the page cache after generation, so the figures exclude disk reads.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import reader_rate, run_prepare  # noqa: E402
from prep.datasets.eurosat import command, raw, synthetic  # noqa: E402

MB = 1e6


def archive(work: str, per_class: int) -> tuple[str, list[str]]:
    """Generates (once, cached under ``work``) ``per_class`` images per class; returns (root, absolute paths)."""
    root = os.path.join(work, f"eurosat{per_class}")
    if not os.path.exists(os.path.join(root, ".complete")):
        shutil.rmtree(root, ignore_errors=True)
        synthetic.write_archive(root, per_class, seed=1)
        open(os.path.join(root, ".complete"), "w").close()
    s = raw.scan(root)
    return root, [os.path.join(s.base, rel) for rel in s.images.values()]


def bare_read(paths: list[str]) -> float:
    """Images/s opening and reading each file with rasterio (1 core)."""
    import rasterio

    t = time.perf_counter()
    for p in paths:
        with rasterio.open(p) as src:
            src.read()
    return len(paths) / (time.perf_counter() - t)


def main() -> None:
    """Prints the figures (see the module doc)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--per_class", type=int, default=200)
    p.add_argument("--work", default="/tmp/eorecords-bench")
    a = p.parse_args()
    root, paths = archive(a.work, a.per_class)
    n, mb = len(paths), len(paths) * command.IMAGE_BYTES / MB
    print(f"{n} images, {mb:.0f} MB of pixels; load average {os.getloadavg()[0]:.2f}")
    bare = bare_read(paths)
    print(f"bare rasterio read (1 open per image, 1 core): {bare:.0f} images/s, "
          f"{bare * command.IMAGE_BYTES / MB:.0f} MB/s")
    out = os.path.join(a.work, "eurosat_out")
    for workers in (1, 2):
        dt, _, _ = run_prepare("eurosat", ["-r", root], out, workers)
        print(f"prep eurosat, {workers} worker(s): {n / dt:.0f} images/s, {mb / dt:.0f} MB/s "
              f"({n / dt / workers / bare:.2f}x the bare read per core; start-up included)")
    print(f"reader, all 64x64x13, batch 64: {reader_rate(out, 'all', batches=20):.0f} samples/s")


if __name__ == "__main__":
    main()
