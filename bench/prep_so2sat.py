"""Benchmark So2Sat preparation: HDF5 -> TFRecord MB/s and peak memory against a bare h5py read.

    python bench/prep_so2sat.py [--size 1.5GB] [--work /tmp/eorecords-bench/so2sat] [--workers 2]

Generates (once, cached, outside the repository) a synthetic ``training.h5`` in the real layout
(float64 sen1/sen2/label, at least ``--size`` of data, plus ``training_geo.h5``), then measures:
  * a bare chunked h5py read of sen1, sen2 and label (``--read_rows`` rows at a time),
  * ``python -m prep.so2sat`` on the same file (run as a child process: planning with the label
    check, conversion in the workers, statistics, manifest),
each once with the file evicted from the page cache (posix_fadvise DONTNEED on this file only:
the disk is read) and once warm (the file in the page cache). MB/s count the float64 HDF5 bytes
of sen1 + sen2 + label. Peak RSS: the largest single process (getrusage of the children) and the
largest sum over the process tree sampled every 50 ms. Targets: peak RSS < 1 GB, conversion
within 1.5x of the bare read. MB per CPU-second (user + system time of all processes) are also
printed: on a shared machine they say more than wall-clock rates.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import h5py  # noqa: E402

from prep.synthetic import so2sat as synth  # noqa: E402

ROW_BYTES = (32 * 32 * 18 + 17) * 8


def dataset_file(work: str, size: str) -> tuple[str, int]:
    rows = synth.size_arg(size)
    path = os.path.join(work, f"rows{rows}", "training.h5")
    done = path + ".complete"
    if not os.path.exists(done):
        t = time.perf_counter()
        synth.write_file(path, rows, seed=7, chunk_rows=256)
        open(done, "w").close()
        print(f"generated {path}: {rows} rows, {os.path.getsize(path) / 1e9:.2f} GB in "
              f"{time.perf_counter() - t:.0f} s")
    return path, rows


def evict(path: str) -> None:
    """Drop this file's pages from the page cache (nothing else is touched)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def bare_read(path: str, read_rows: int) -> tuple[float, float, int]:
    """Returns (wall seconds, CPU seconds, bytes read)."""
    t, c = time.perf_counter(), time.process_time()
    nbytes = 0
    with h5py.File(path, "r") as f:
        n = f["sen1"].shape[0]
        for a in range(0, n, read_rows):
            for name in ("sen1", "sen2", "label"):
                nbytes += f[name][a:a + read_rows].nbytes
    return time.perf_counter() - t, time.process_time() - c, nbytes


def _tree_rss(pid: int) -> int:
    """Sum of VmRSS (bytes) over ``pid`` and its descendants."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo += children.get(p, [])
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


def _cpu_children() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def convert(path: str, out: str, workers: int, read_rows: int) -> tuple[float, float, int, int]:
    """Run the converter as a child; returns (seconds, CPU seconds of all its processes, peak tree RSS,
    peak single-process RSS)."""
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "prep.so2sat", "--h5", path, "--out", out, f"--workers={workers}",
           f"--read_rows={read_rows}", "--noprogress"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    cpu0 = _cpu_children()
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = [0]

    def sample():
        while proc.poll() is None:
            peak[0] = max(peak[0], _tree_rss(proc.pid))
            time.sleep(0.05)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    output = proc.communicate()[0]
    dt = time.perf_counter() - t
    cpu = _cpu_children() - cpu0
    th.join()
    if proc.returncode:
        raise SystemExit(f"conversion failed:\n{output}")
    single = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # KiB on Linux
    if before * 1024 >= single:
        single = before * 1024  # an earlier child was larger; the figure is then an upper bound
    return dt, cpu, peak[0], single


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="1.5GB", help="data size (or rows) of the generated training.h5")
    ap.add_argument("--work", default="/tmp/eorecords-bench/so2sat", help="folder for the file and the output")
    ap.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), help="converter workers")
    ap.add_argument("--read_rows", type=int, default=256, help="rows per read, both for the bare read and prep")
    args = ap.parse_args()
    if os.path.abspath(args.work).startswith(REPO + os.sep):
        raise SystemExit("--work must lie outside the repository")
    path, rows = dataset_file(args.work, args.size)
    size = os.path.getsize(path)
    print(f"file: {path} ({size / 1e9:.2f} GB, {rows} rows); cpus: {os.cpu_count()}, "
          f"load average {os.getloadavg()[0]:.1f}")
    out = os.path.join(args.work, "out")
    res = {}
    for mode in ("cold", "warm"):
        if mode == "cold":
            evict(path)
        else:
            bare_read(path, args.read_rows)  # load the page cache
        dt, dcpu, nbytes = bare_read(path, args.read_rows)
        res[f"bare_{mode}_mb_s"] = nbytes / 1e6 / dt
        res[f"bare_{mode}_mb_per_cpu_s"] = nbytes / 1e6 / max(dcpu, 1e-9)
        if mode == "cold":
            evict(path)
        ct, ccpu, tree, single = convert(path, out, args.workers, args.read_rows)
        res[f"prep_{mode}_mb_s"] = rows * ROW_BYTES / 1e6 / ct
        res[f"prep_{mode}_mb_per_cpu_s"] = rows * ROW_BYTES / 1e6 / max(ccpu, 1e-9)
        res[f"prep_{mode}_peak_rss_tree_mb"] = tree / 1e6
        res[f"prep_{mode}_peak_rss_process_mb"] = single / 1e6
        print(f"{mode:>4}: bare h5py read {res[f'bare_{mode}_mb_s']:7.0f} MB/s | prep.so2sat "
              f"({args.workers} workers) {res[f'prep_{mode}_mb_s']:7.0f} MB/s, {rows / ct:6.0f} patches/s, "
              f"ratio {res[f'bare_{mode}_mb_s'] / res[f'prep_{mode}_mb_s']:.2f}x | peak RSS: process "
              f"{single / 1e6:.0f} MB, all processes {tree / 1e6:.0f} MB")
        print(f"      per CPU-second: bare read {res[f'bare_{mode}_mb_per_cpu_s']:7.0f} MB, prep.so2sat "
              f"{res[f'prep_{mode}_mb_per_cpu_s']:7.0f} MB ({ccpu:.1f} CPU-s over all its processes, "
              f"{ccpu / rows * 1e6:.0f} us per patch)")
    m = json.load(open(os.path.join(out, "manifest.json")))
    out_bytes = sum(sh["bytes"] for s in m["splits"].values() for sh in s["shards"])
    print(f"output: {out_bytes / 1e9:.2f} GB in {len(m['splits']['train']['shards'])} shards "
          f"({out_bytes / rows:.0f} bytes per patch, float32)")
    shutil.rmtree(out, ignore_errors=True)
    print(json.dumps({k: round(v, 1) for k, v in res.items()}))
    peak = max(res["prep_cold_peak_rss_tree_mb"], res["prep_warm_peak_rss_tree_mb"])
    print(f"so2sat HDF5->TFRecord: {res['prep_cold_mb_s']:.0f} MB/s cold, {res['prep_warm_mb_s']:.0f} MB/s warm "
          f"(bare read {res['bare_cold_mb_s']:.0f} / {res['bare_warm_mb_s']:.0f} MB/s), "
          f"peak RSS {peak:.0f} MB")


if __name__ == "__main__":
    main()
