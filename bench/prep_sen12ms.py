"""Benchmark SEN12MS preparation: patches/s and MB/s beside a bare rasterio read, reader samples/s.

    python bench/prep_sen12ms.py [--num_triplets 2000] [--work /tmp/eorecords-bench] [--tarballs]

Generates (once, cached) a synthetic season tree in the real layout (256x256 GeoTIFFs, about 2.2 MB
of pixels per triplet), then prints:
  * the bare read: one rasterio open + read of each of the 3 files per triplet (1 core),
  * ``python -m prep sen12ms``'s rate end to end (read, check, labels, encode, statistics, write)
    with 1 and 2 workers, and the ratio to the bare read per core,
  * with ``--tarballs``: the same from the per-season tarballs, and the peak RSS of that run,
  * the reader's samples/s for ``s1s2`` 256x256x12 at batch 64.
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
from prep.datasets.sen12ms import command, raw, synthetic  # noqa: E402
from prep.datasets.sen12ms import spec as sp  # noqa: E402

MB = 1e6


def archive(work: str, n: int, tarballs: bool) -> tuple[str, list]:
    """Generates (once, cached under ``work``) a tree of about ``n`` triplets; returns (root, keys)."""
    root = os.path.join(work, f"sen12ms{n}")
    if not os.path.exists(os.path.join(root, ".complete")) or (tarballs and not os.path.isdir(
            os.path.join(root, "tarballs"))):
        shutil.rmtree(root, ignore_errors=True)
        per_scene = 50
        scenes = {(sp.SEASONS[i % 4], 300 + i): per_scene for i in range(max(1, n // per_scene))}
        synthetic.write_archive(root, scenes, seed=1, tarballs=tarballs)
        open(os.path.join(root, ".complete"), "w").close()
    return root, raw.find_triplets(root)


def bare_read(root: str, keys: list) -> float:
    """Triplets/s opening and reading the 3 files of each triplet with rasterio (1 core)."""
    import rasterio

    t = time.perf_counter()
    for k in keys:
        for m in sp.MODALITIES:
            with rasterio.open(os.path.join(root, raw.rel_path(k, m))) as src:
                src.read()
    return len(keys) / (time.perf_counter() - t)


def main() -> None:
    """Prints the figures (see the module doc)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num_triplets", type=int, default=2000)
    p.add_argument("--work", default="/tmp/eorecords-bench")
    p.add_argument("--tarballs", action="store_true")
    a = p.parse_args()
    root, keys = archive(a.work, a.num_triplets, a.tarballs)
    n, mb = len(keys), len(keys) * command.TRIPLET_BYTES / MB
    print(f"{n} triplets, {mb:.0f} MB of pixels; load average {os.getloadavg()[0]:.2f}")
    bare = bare_read(root, keys)
    print(f"bare rasterio read (3 opens per triplet, 1 core): {bare:.0f} triplets/s, "
          f"{bare * command.TRIPLET_BYTES / MB:.0f} MB/s")
    out = os.path.join(a.work, "sen12ms_out")
    for workers in (1, 2):
        dt, _, _ = run_prepare("sen12ms", ["-r", root], out, workers)
        print(f"prep sen12ms, {workers} worker(s): {n / dt:.0f} triplets/s, {mb / dt:.0f} MB/s "
              f"({n / dt / workers / bare:.2f}x the bare read per core)")
    if a.tarballs:
        dt, _, rss = run_prepare("sen12ms", ["-r", os.path.join(root, "tarballs")], out + "_tar", 2)
        print(f"prep sen12ms from the tarballs, 2 workers: {n / dt:.0f} triplets/s, {mb / dt:.0f} MB/s, "
              f"peak RSS of the largest process of the runs so far {rss / 1024:.0f} MB")
    print(f"reader, s1s2 256x256x12, batch 64: {reader_rate(out, 's1s2'):.0f} samples/s")


if __name__ == "__main__":
    main()
