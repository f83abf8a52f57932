"""Benchmark BigEarthNet-S2 preparation: patches/s end to end, reader speed, bytes per patch.

    python bench/prep_bigearthnet.py [--num_patches 5000] [--work /tmp/eorecords-bench]

Generates (once, cached) a synthetic archive in the real format, then prints:
  * reading rate with one rasterio open per band file (the usual way) and with prep.tiff,
  * end-to-end rate of prep.bigearthnet (read, remap, serialize, write) with 1 and 2 workers,
  * bytes per patch of the compact and upstream schemas against the raw pixel bytes.
The files are in the page cache after generation, so the figures exclude disk reads.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Only light imports at the top: the spawned preparation workers import this script again.
from prep.datasets.bigearthnet import command as cli  # noqa: E402
from prep.datasets.bigearthnet import raw  # noqa: E402
from prep.datasets.bigearthnet import spec as ben  # noqa: E402

RAW_BYTES = ben.PIXELS_PER_PATCH * 2


def archive(work: str, n: int) -> tuple[str, list[str]]:
    """Generates (once, cached under ``work``) a synthetic archive of ``n`` patches, all in the splits.

    Returns:
        (archive root, patch names of train, val and test in list order).
    """
    from prep.datasets.bigearthnet.synthetic import generate_bigearthnet

    root = os.path.join(work, f"ben{n}")
    if not os.path.exists(os.path.join(root, ".complete")):
        shutil.rmtree(root, ignore_errors=True)
        generate_bigearthnet(root, n, seed=1, workers=os.cpu_count() or 1, num_no_target=0, num_snow=0,
                             num_cloud=0, progress=True)
        open(os.path.join(root, ".complete"), "w").close()
    names = []
    for s in ("train", "val", "test"):
        names += open(os.path.join(root, f"{s}.csv")).read().split()
    return root, names


def rate_rasterio(root: str, names: list[str]) -> float:
    """Returns patches/s reading the 12 band files of each patch with one ``rasterio.open`` per file (1 core)."""
    import rasterio

    t = time.perf_counter()
    for n in names:
        for b in ben.BAND_NAMES:
            with rasterio.open(raw.band_path(root, n, b)) as ds:
                ds.read(1)
    return len(names) / (time.perf_counter() - t)


def rate_reader(root: str, names: list[str]) -> float:
    """Returns patches/s reading each patch with ``raw.read_patch`` (prep.tiff's fast path, 1 core)."""
    t = time.perf_counter()
    for n in names:
        raw.read_patch(root, n)
    return len(names) / (time.perf_counter() - t)


def prepare(root: str, names: list[str], out: str, workers: int, schema: str = "compact") -> tuple[float, float, int]:
    """Prepares ``names`` as one split "all" into ``out`` (deleted afterwards) and times it.

    Args:
        root: the raw archive.
        names: the patches to prepare.
        out: the output folder; its parent also receives the split list ``all.csv``.
        workers: worker processes.
        schema: "compact" or "upstream".

    Returns:
        (patches written per second end to end, bytes per written patch, number of shards).
    """
    split = os.path.join(os.path.dirname(out), "all.csv")
    with open(split, "w") as f:
        f.write("".join(f"{n}\n" for n in names))
    shutil.rmtree(out, ignore_errors=True)
    t = time.perf_counter()
    m = cli.prepare(root, out, [split], schema=schema, workers=workers, keep_excluded=True)
    dt = time.perf_counter() - t
    written = m["totals"]["written"]
    size = sum(sh["bytes"] for s in m["splits"].values() for sh in s["shards"])
    shutil.rmtree(out, ignore_errors=True)
    return written / dt, size / written, len(m["splits"]["all"]["shards"])


def main() -> None:
    """Runs the benchmark with the command-line arguments and prints the figures (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--num_patches", type=int, default=5000)
    ap.add_argument("--work", default="/tmp/eorecords-bench")
    ap.add_argument("--read_sample", type=int, default=1000, help="patches timed for the reading rates")
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    root, names = archive(args.work, args.num_patches)
    print(f"archive: {len(names)} synthetic patches in {root}; cpus: {os.cpu_count()}")
    sample = names[: args.read_sample]
    print(f"read, rasterio open per band file : {rate_rasterio(root, sample):8.0f} patches/s (1 core)")
    print(f"read, prep.tiff (eorecords)       : {rate_reader(root, sample):8.0f} patches/s (1 core)")
    out = os.path.join(args.work, "out")
    r1, bpp, nshards = prepare(root, names, out, 1)
    r2, _, _ = prepare(root, names, out, 2)
    print(f"prepare compact, 1 worker         : {r1:8.0f} patches/s ({nshards} shards)")
    print(f"prepare compact, 2 workers        : {r2:8.0f} patches/s (speed-up {r2 / r1:.2f}x)")
    ru, bpu, _ = prepare(root, sample, out, 2, "upstream")
    print(f"prepare upstream, 2 workers       : {ru:8.0f} patches/s")
    print(f"raw pixel bytes per patch         : {RAW_BYTES:8d}")
    print(f"compact bytes per patch           : {bpp:8.0f} ({(bpp / RAW_BYTES - 1) * 100:+.2f}% of raw)")
    print(f"upstream bytes per patch          : {bpu:8.0f} ({(bpu / RAW_BYTES - 1) * 100:+.2f}% of raw)")
    full = 590326 / r2 / 60
    print(json.dumps({"prep_1_worker_patches_per_s": round(r1), "prep_2_workers_patches_per_s": round(r2),
                      "speedup": round(r2 / r1, 2), "compact_bytes_per_patch": round(bpp)}))
    print(f"end to end: {r2:.0f} patches/s with 2 workers; the full 590,326-patch archive would take "
          f"{full:.0f} min on this machine")


if __name__ == "__main__":
    main()
