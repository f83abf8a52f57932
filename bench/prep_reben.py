"""Benchmark BigEarthNet v2 (reBEN) preparation: patches/s beside a bare rasterio read, reader samples/s.

    python bench/prep_reben.py [--num_patches 400] [--work /tmp/eorecords-bench]

Generates (once, cached) a synthetic archive in the published layout (12 S2 GeoTIFFs, VV, VH and a
reference map per patch), then prints:
  * the bare read: one rasterio open + read of each file a record needs (12 S2 bands, or 15 with
    S1 and the reference map), 1 core;
  * ``python -m prep reben``'s rate end to end (parquet, read, check, encode, statistics, write),
    S2 only and with ``--with_s1 --reference_maps``, 1 worker, and the ratio to the bare read;
  * the reader's samples/s for ``s1s2`` (10 S2 bands upsampled to 120x120 + VV, VH) at batch 64.
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
from prep.datasets.reben import raw, synthetic  # noqa: E402
from prep.datasets.reben import spec as sp  # noqa: E402


def archive(work: str, n: int) -> tuple[str, list]:
    """Generates (once, cached under ``work``) an archive of ``n`` patches; returns (root, metadata rows)."""
    root = os.path.join(work, f"reben{n}")
    if not os.path.exists(os.path.join(root, ".complete")):
        shutil.rmtree(root, ignore_errors=True)
        synthetic.generate_reben(root, n, seed=1, num_snow=0, num_cloud=0)
        open(os.path.join(root, ".complete"), "w").close()
    return root, raw.read_metadata(os.path.join(root, raw.METADATA))


def bare_read(root: str, rows: list, full: bool) -> float:
    """Patches/s opening and reading each file of a patch with rasterio (1 core)."""
    import rasterio

    t = time.perf_counter()
    for r in rows:
        p = r.patch
        paths = [raw.s2_band_path(root, p.patch_id, b) for b in sp.S2_BAND_NAMES]
        if full:
            paths += [raw.s1_band_path(root, p.s1_name, b) for b in sp.S1_BAND_NAMES]
            paths.append(raw.reference_map_path(root, p.patch_id))
        for path in paths:
            with rasterio.open(path) as src:
                src.read(1)
    return len(rows) / (time.perf_counter() - t)


def main() -> None:
    """Prints the figures (see the module doc)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num_patches", type=int, default=400)
    p.add_argument("--work", default="/tmp/eorecords-bench")
    a = p.parse_args()
    root, rows = archive(a.work, a.num_patches)
    n = len(rows)
    print(f"{n} patches; load average {os.getloadavg()[0]:.2f}")
    out = os.path.join(a.work, "reben_out")
    for label, full, flags in (("S2 only", False, ()), ("S2 + S1 + reference map", True,
                                                           ("--with_s1", "--reference_maps"))):
        bare = bare_read(root, rows, full)
        dt, _, _ = run_prepare("reben", ["-r", root, *flags], out)
        print(f"{label}: bare rasterio read ({12 + 3 * full} opens per patch, 1 core) {bare:.0f} patches/s; "
              f"prep reben, 1 worker, {n / dt:.0f} patches/s end to end ({n / dt / bare:.2f}x the bare read)")
    print(f"reader, s1s2 120x120x12, batch 64: {reader_rate(out, 's1s2', batches=6):.0f} samples/s")


if __name__ == "__main__":
    main()
