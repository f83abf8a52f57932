"""Benchmark BigEarthNet-S2 preparation on Beam's DirectRunner beside the local path: patches/s, peak RSS.

    python bench/prep_beam.py [--num_patches 5000] [--workers 2] [--work /tmp/eorecords-bench-beam]

Generates (once, cached) a synthetic archive in the real format under --work, then runs
``python -m prep.bigearthnet`` on it in a fresh process per configuration:

  local            the multiprocessing path (--runner local)
  beam planned     --runner DirectRunner, each worker writes whole planned shards (the default)
  beam sink        --runner DirectRunner --beam_options=--shard_writer=writetotfrecord
                   (records through beam.io.WriteToTFRecord and its GroupByKey)

and prints wall time, patches/s and peak resident memory: of the whole process tree (driver +
worker processes, sampled every 50 ms) and of its largest process. It then checks the outputs
against the local path (planned: identical shard bytes; sink: the same records per split).
The archive is in the page cache after generation, so the figures exclude disk reads; other
work on the machine shows in them.
"""
from __future__ import annotations

import argparse
import glob
import os
import shutil
import subprocess
import sys
import time

import psutil

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from prep import tfrecord  # noqa: E402
from prep.datasets.bigearthnet.synthetic import generate_bigearthnet  # noqa: E402

SPLITS = ("train", "val", "test")
CONFIGS = {
    "local": ["--runner", "local"],
    "beam planned": ["--runner", "DirectRunner"],
    "beam sink": ["--runner", "DirectRunner", "--beam_options=--shard_writer=writetotfrecord"],
}


def archive(work: str, n: int) -> str:
    """Returns the root of a synthetic BigEarthNet-S2 archive of ``n`` patches under ``work``, generating it once.

    A ``.complete`` marker makes later runs reuse it (seed 1, one worker per CPU).
    """
    root = os.path.join(work, f"ben{n}")
    if not os.path.exists(os.path.join(root, ".complete")):
        shutil.rmtree(root, ignore_errors=True)
        generate_bigearthnet(root, n, seed=1, workers=os.cpu_count() or 1, progress=True)
        open(os.path.join(root, ".complete"), "w").close()
    return root


def measure(cmd: list[str]) -> dict:
    """Run ``cmd``; wall seconds and peak RSS (tree total and largest process), sampled every 50 ms."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    top = psutil.Process(proc.pid)
    peak_total = peak_one = 0
    while proc.poll() is None:
        try:
            procs = [top] + top.children(recursive=True)
            rss = []
            for p in procs:
                try:
                    rss.append(p.memory_info().rss)
                except psutil.Error:
                    pass
            peak_total = max(peak_total, sum(rss))
            peak_one = max([peak_one] + rss)
        except psutil.Error:
            pass
        time.sleep(0.05)
    out = proc.stdout.read()
    seconds = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{out[-3000:]}")
    return {"seconds": seconds, "peak_total": peak_total, "peak_one": peak_one, "output": out}


def records(out: str, split: str) -> list[bytes]:
    """Returns the serialized records of every ``<split>-*`` shard in ``out``, sorted (compared as a multiset)."""
    return sorted(r for f in sorted(glob.glob(os.path.join(out, f"{split}-*"))) for r in tfrecord.read_records(f))


def main() -> None:
    """Runs every configuration of ``--configs`` on the archive, prints the table and the output checks.

    Raises:
        SystemExit: a preparation command failed (with the end of its output).
    """
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--num_patches", type=int, default=5000, help="Synthetic patches in the archive.")
    ap.add_argument("--workers", type=int, default=2, help="Worker processes of every configuration.")
    ap.add_argument("--work", default="/tmp/eorecords-bench-beam", help="Folder for the archive and outputs.")
    ap.add_argument("--configs", default=",".join(CONFIGS), help=f"Comma list of: {', '.join(CONFIGS)}.")
    ap.add_argument("--shard_size_mb", type=float, default=150.0, help="Target shard size (as the command).")
    args = ap.parse_args()

    root = archive(args.work, args.num_patches)
    lists = [os.path.join(root, f"{s}.csv") for s in SPLITS]
    excl = [x for f in ("patches_with_seasonal_snow.csv", "patches_with_cloud_and_shadow.csv")
            for x in ("--exclusion_lists", os.path.join(root, f))]
    results, outs = {}, {}
    for name in args.configs.split(","):
        out = os.path.join(args.work, "out-" + name.replace(" ", "-"))
        shutil.rmtree(out, ignore_errors=True)
        cmd = [sys.executable, "-m", "prep.bigearthnet", "-r", root, "-o", out, "-n", *lists, *excl,
               "--workers", str(args.workers), "--shard_size_mb", str(args.shard_size_mb), "--noprogress",
               *CONFIGS[name]]
        results[name] = measure(cmd)
        outs[name] = out

    print(f"{args.num_patches} synthetic patches, {args.workers} workers, shard_size_mb={args.shard_size_mb}, "
          f"{os.cpu_count()} CPUs (shared with other work)")
    print(f"{'configuration':<16}{'seconds':>9}{'patches/s':>11}{'peak RSS tree':>15}{'largest proc':>14}")
    for name, r in results.items():
        print(f"{name:<16}{r['seconds']:>9.1f}{args.num_patches / r['seconds']:>11.1f}"
              f"{r['peak_total'] / 2**20:>12.0f} MB{r['peak_one'] / 2**20:>11.0f} MB")
    if "local" in outs:
        ref = outs["local"]
        shards = sorted(f for f in os.listdir(ref) if ".tfrecord" in f)
        if "beam planned" in outs:
            same = all(open(os.path.join(ref, f), "rb").read() == open(os.path.join(outs["beam planned"], f), "rb").read()
                       for f in shards)
            print(f"beam planned: {len(shards)} shards byte-identical to local: {same}")
        if "beam sink" in outs:
            same = all(records(ref, s) == records(outs["beam sink"], s) for s in SPLITS)
            print(f"beam sink: same records per split as local (as a multiset): {same}")


if __name__ == "__main__":
    main()
