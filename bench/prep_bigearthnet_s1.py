"""Benchmark BigEarthNet-S1 and MM preparation: patches/s beside a bare rasterio read, reader samples/s.

    python bench/prep_bigearthnet_s1.py [--num_patches 400] [--work /tmp/eorecords-bench]

Generates (once, cached) a synthetic MM archive in the real layout (S2 folders of 12 GeoTIFFs,
S1 folders of VV, VH float32 GeoTIFFs), then prints:
  * the bare read: one rasterio open + read of each file of a patch (2 for S1, 14 for a pair; 1 core),
  * ``python -m prep bigearthnet_s1`` and ``python -m prep bigearthnet_mm`` end to end (read, check
    the JSON and georeference, pair, labels, encode, statistics, write) with 1 worker, and the
    ratio to the bare read,
  * the reader's samples/s: ``s1`` 120x120x2 and ``mm`` 120x120x12 (20 m bands resampled), batch 64.
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
from prep.datasets.bigearthnet import spec as ben  # noqa: E402
from prep.datasets.bigearthnet_s1 import synthetic  # noqa: E402


def archive(work: str, n: int) -> tuple[str, str, list[tuple[str, str]]]:
    """Generates (once, cached under ``work``) ``n`` pairs; returns (S1 root, S2 root, pairs)."""
    root = os.path.join(work, f"bigearthnet_mm{n}")
    if not os.path.exists(os.path.join(root, ".complete")):
        shutil.rmtree(root, ignore_errors=True)
        synthetic.generate(root, n, seed=1, with_s2=True, workers=2)
        open(os.path.join(root, ".complete"), "w").close()
    s1_root, s2_root = os.path.join(root, synthetic.S1_FOLDER), os.path.join(root, synthetic.S2_FOLDER)
    with open(os.path.join(s1_root, "s1_s2_name_country_season.csv")) as f:
        pairs = [tuple(line.split(",")[:2]) for line in f.read().split()[1:]]
    return s1_root, s2_root, pairs


def bare_read(s1_root: str, s2_root: str, pairs: list, with_s2: bool) -> float:
    """Patches/s opening and reading each GeoTIFF of a patch (or pair) with rasterio (1 core)."""
    import rasterio

    t = time.perf_counter()
    for s1, s2 in pairs:
        paths = [os.path.join(s1_root, s1, f"{s1}_{b}.tif") for b in ("VV", "VH")]
        if with_s2:
            paths += [os.path.join(s2_root, s2, f"{s2}_{b}.tif") for b in ben.BAND_NAMES]
        for p in paths:
            with rasterio.open(p) as src:
                src.read(1)
    return len(pairs) / (time.perf_counter() - t)


def main() -> None:
    """Prints the figures (see the module doc)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num_patches", type=int, default=400)
    p.add_argument("--work", default="/tmp/eorecords-bench")
    a = p.parse_args()
    s1_root, s2_root, pairs = archive(a.work, a.num_patches)
    n = len(pairs)
    print(f"{n} S1/S2 pairs; load average {os.getloadavg()[0]:.2f}")
    bare1, bare2 = bare_read(s1_root, s2_root, pairs, False), bare_read(s1_root, s2_root, pairs, True)
    print(f"bare rasterio read, 1 core: S1 (2 opens) {bare1:.0f} patches/s; S1+S2 (14 opens) {bare2:.0f} pairs/s")
    out1, out2 = os.path.join(a.work, "ben_s1_out"), os.path.join(a.work, "ben_mm_out")
    dt, writing, _ = run_prepare("bigearthnet_s1", ["-r", s1_root], out1)
    print(f"prep bigearthnet_s1, 1 worker: {n / dt:.0f} patches/s end to end ({n / dt / bare1:.2f}x the bare read), "
          f"writing alone {writing}")
    dt, writing, _ = run_prepare("bigearthnet_mm", ["--s1_root", s1_root, "--s2_root", s2_root], out2)
    print(f"prep bigearthnet_mm, 1 worker: {n / dt:.0f} pairs/s end to end ({n / dt / bare2:.2f}x the bare read), "
          f"writing alone {writing}")
    print(f"reader, s1 120x120x2, batch 64: {reader_rate(out1, 's1', batches=6, normalize='upstream'):.0f} samples/s")
    print(f"reader, mm 120x120x12, batch 64: {reader_rate(out2, 'mm', batches=6, normalize='upstream'):.0f} samples/s")


if __name__ == "__main__":
    main()
