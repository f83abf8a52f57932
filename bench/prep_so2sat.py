"""Benchmark So2Sat preparation: HDF5 -> TFRecord MB/s and peak memory against a bare h5py read.

    python bench/prep_so2sat.py [--size 1.5GB] [--work /tmp/eorecords-bench/so2sat] [--workers 2] [--repeats 3]

Generates (once, cached, outside the repository) a synthetic ``training.h5`` in the real layout
(float64 sen1/sen2/label, at least ``--size`` of data, plus ``training_geo.h5``), then measures,
``--repeats`` times each, printing the median and the range:
  * a bare chunked h5py read of sen1, sen2 and label (``--read_rows`` rows at a time), the target's
    reference;
  * the device read: the file read with O_DIRECT in 4 MB blocks (no page cache at all: what the
    disk, or the host behind a virtual disk, delivers);
  * the floor: the least any conversion to float32 files does (the bare read, the float32 cast,
    a buffered write and fsync of the cast pixels; no checks, statistics, encoding or checksums) in
    ``--workers`` processes over contiguous row ranges;
  * ``python -m prep.so2sat`` on the same file (run as a child process: planning with the label
    check, conversion in the workers, statistics, manifest),
each with the file evicted from the page cache (``cold``: posix_fadvise DONTNEED on this file
only, so the disk, or the host's cache of it, is read) and with the file in the page cache
(``warm``: the bare read is then a memory copy). MB/s count the float64 HDF5 bytes of sen1 +
sen2 + label. Peak RSS, sampled every 50 ms: the largest sum over the process tree, and the peak of
its largest process (VmHWM). Targets: peak RSS < 1 GB, conversion within 1.5x
of the bare read. MB per CPU-second (user + system time of all processes) are also printed: on a
shared machine they say more than wall-clock rates.
"""
from __future__ import annotations

import argparse
import json
import mmap
import multiprocessing
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
import numpy as np  # noqa: E402

from prep.datasets.so2sat import synthetic as synth  # noqa: E402

ROW_BYTES = (32 * 32 * 18 + 17) * 8


def dataset_file(work: str, size: str) -> tuple[str, int]:
    """Returns (path, rows) of a synthetic So2Sat ``training.h5`` of ``size`` under ``work``, generating it once.

    Args:
        work: the benchmark's folder.
        size: a data size ("1.5GB") or a row count, as ``prep.datasets.so2sat.synthetic.size_arg`` takes it.
    """
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


def device_read(path: str, block: int = 4 << 20) -> tuple[float, float, int] | None:
    """Reads the whole file with O_DIRECT, bypassing the page cache.

    Returns:
        (wall s, CPU s, bytes), or None where the file system does not take O_DIRECT (tmpfs, some
        network file systems).
    """
    if not hasattr(os, "O_DIRECT"):
        return None
    t, c = time.perf_counter(), time.process_time()
    buf = mmap.mmap(-1, block)  # page-aligned, as O_DIRECT needs
    nbytes = 0
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    except OSError:
        buf.close()
        return None
    try:
        while True:
            k = os.readv(fd, [buf])
            nbytes += k
            if k < block:
                break
    finally:
        os.close(fd)
        buf.close()
    return time.perf_counter() - t, time.process_time() - c, nbytes


def _floor_part(args: tuple[str, str, int, int, int]) -> float:
    """Rows [a, b): read, cast to float32 band-major, write and fsync. Returns CPU seconds."""
    path, out, a0, b0, read_rows = args
    c = time.process_time()
    with h5py.File(path, "r") as f, open(out, "wb", buffering=4 << 20) as w:
        d1, d2, dl = f["sen1"], f["sen2"], f["label"]
        b1 = np.empty((read_rows,) + d1.shape[1:], d1.dtype)
        b2 = np.empty((read_rows,) + d2.shape[1:], d2.dtype)
        x = np.empty((read_rows, 18, 32, 32), np.float32)
        for a in range(a0, b0, read_rows):
            m = min(b0, a + read_rows) - a
            d1.read_direct(b1, np.s_[a:a + m], np.s_[:m])
            d2.read_direct(b2, np.s_[a:a + m], np.s_[:m])
            dl[a:a + m]
            np.copyto(x[:m, :8], b1[:m].transpose(0, 3, 1, 2), casting="unsafe")
            np.copyto(x[:m, 8:], b2[:m].transpose(0, 3, 1, 2), casting="unsafe")
            w.write(memoryview(x[:m]).cast("B"))
        w.flush()
        os.fsync(w.fileno())
    return time.process_time() - c


def floor_convert(path: str, out: str, rows: int, workers: int, read_rows: int) -> tuple[float, float]:
    """The floor conversion in ``workers`` processes. Returns (wall s, CPU s of the workers)."""
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    edges = np.linspace(0, rows, workers + 1).astype(int)
    parts = [(path, os.path.join(out, f"part{i}.f32"), int(a), int(b), read_rows)
             for i, (a, b) in enumerate(zip(edges[:-1], edges[1:]))]
    t = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        cpu = sum(pool.map(_floor_part, parts))
    dt = time.perf_counter() - t
    shutil.rmtree(out, ignore_errors=True)
    return dt, cpu


def _tree_rss(pid: int) -> tuple[int, int]:
    """Returns (sum of VmRSS, largest VmHWM) in bytes over ``pid`` and its descendants.

    That is the tree's resident memory now, and the peak of its largest process so far (VmHWM
    holds peaks between samples).
    """
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    total, largest, todo = 0, 0, [pid]
    while todo:
        p = todo.pop()
        todo += children.get(p, [])
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
                    elif line.startswith("VmHWM:"):
                        largest = max(largest, int(line.split()[1]) * 1024)
        except OSError:
            pass
    return total, largest


def _cpu_children() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def convert(path: str, out: str, workers: int, read_rows: int) -> tuple[float, float, int, int]:
    """Runs the converter (``python -m prep.so2sat``) as a child process and measures it.

    Returns:
        (seconds, CPU seconds of all its processes, peak tree RSS, peak single-process RSS), RSS in bytes.

    Raises:
        SystemExit: the conversion failed (with its output).
    """
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "prep.so2sat", "--h5", path, "--out", out, f"--workers={workers}",
           f"--read_rows={read_rows}", "--noprogress"]
    cpu0 = _cpu_children()
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = [0, 0]

    def sample():
        while proc.poll() is None:
            tree, one = _tree_rss(proc.pid)
            peak[0], peak[1] = max(peak[0], tree), max(peak[1], one)
            time.sleep(0.05)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    output = proc.communicate()[0]
    dt = time.perf_counter() - t
    cpu = _cpu_children() - cpu0
    th.join()
    if proc.returncode:
        raise SystemExit(f"conversion failed:\n{output}")
    return dt, cpu, peak[0], peak[1]


def _span(values: list[float], fmt: str = "{:,.0f}") -> str:
    """'median (min-max)' of the repeats, or the single value."""
    med = fmt.format(float(np.median(values)))
    return med if len(values) == 1 else f"{med} ({fmt.format(min(values))}-{fmt.format(max(values))})"


def measure(path: str, rows: int, mode: str, args: argparse.Namespace, out: str) -> dict:
    """Runs one round of every measure with the file ``cold`` (evicted from the page cache) or ``warm``.

    Args:
        path: the HDF5 file.
        rows: its row count.
        mode: "cold" or "warm".
        args: the parsed command line (``read_rows``, ``workers``).
        out: the converter's output folder.

    Returns:
        ``{measure: value}``: MB/s of float64 input (bare read, floor, prep; device read when cold),
        MB per CPU-second, patches/s, CPU us per patch, peak RSS in MB and the ratios to prep.
    """
    mb = rows * ROW_BYTES / 1e6
    r = {}
    cold = mode == "cold"
    if cold:
        evict(path)
    else:
        bare_read(path, args.read_rows)  # fills the page cache; nothing below evicts the file
    dt, dcpu, nbytes = bare_read(path, args.read_rows)
    r["bare_mb_s"], r["bare_mb_per_cpu_s"] = nbytes / 1e6 / dt, nbytes / 1e6 / max(dcpu, 1e-9)
    if cold:  # O_DIRECT never uses the page cache: one figure, taken with the cold round
        direct = device_read(path)
        r["device_mb_s"] = direct[2] / 1e6 / direct[0] if direct else float("nan")
    if cold:
        evict(path)
    dt, fcpu = floor_convert(path, out + "-floor", rows, args.workers, args.read_rows)
    r["floor_mb_s"], r["floor_mb_per_cpu_s"] = mb / dt, mb / max(fcpu, 1e-9)
    if cold:
        evict(path)
    ct, ccpu, tree, single = convert(path, out, args.workers, args.read_rows)
    r["prep_mb_s"], r["prep_mb_per_cpu_s"] = mb / ct, mb / max(ccpu, 1e-9)
    r["prep_patches_s"], r["prep_us_cpu_per_patch"] = rows / ct, ccpu / rows * 1e6
    r["prep_peak_rss_tree_mb"], r["prep_peak_rss_process_mb"] = tree / 1e6, single / 1e6
    r["ratio_bare_to_prep"] = r["bare_mb_s"] / r["prep_mb_s"]
    r["ratio_floor_to_prep"] = r["floor_mb_s"] / r["prep_mb_s"]
    return r


def main() -> None:
    """Runs the benchmark with the command-line arguments and prints the figures (see the module docstring).

    Raises:
        SystemExit: ``--work`` inside the repository, or a failed conversion.
    """
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="1.5GB", help="data size (or rows) of the generated training.h5")
    ap.add_argument("--work", default="/tmp/eorecords-bench/so2sat", help="folder for the file and the output")
    ap.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), help="converter workers")
    ap.add_argument("--read_rows", type=int, default=64, help="rows per read, both for the bare read and prep")
    ap.add_argument("--repeats", type=int, default=3, help="rounds of every measure (median and range printed)")
    args = ap.parse_args()
    if os.path.abspath(args.work).startswith(REPO + os.sep):
        raise SystemExit("--work must lie outside the repository")
    path, rows = dataset_file(args.work, args.size)
    size = os.path.getsize(path)
    print(f"file: {path} ({size / 1e9:.2f} GB, {rows} rows); cpus: {os.cpu_count()}, "
          f"load average {os.getloadavg()[0]:.1f}; {args.workers} workers, {args.repeats} rounds")
    out = os.path.join(args.work, "out")
    rounds = {"cold": [], "warm": []}
    for i in range(args.repeats):
        for mode in rounds:
            r = measure(path, rows, mode, args, out)
            rounds[mode].append(r)
            print(f"round {i + 1} {mode}: bare {r['bare_mb_s']:,.0f} MB/s, floor {r['floor_mb_s']:,.0f}, "
                  f"prep.so2sat {r['prep_mb_s']:,.0f} (ratio to bare {r['ratio_bare_to_prep']:.2f}x)"
                  + (f", device (O_DIRECT) {r['device_mb_s']:,.0f}" if mode == "cold" else ""), flush=True)
    m = json.load(open(os.path.join(out, "manifest.json")))
    out_bytes = sum(sh["bytes"] for s in m["splits"].values() for sh in s["shards"])
    shutil.rmtree(out, ignore_errors=True)
    print(f"\noutput: {out_bytes / 1e9:.2f} GB in {len(m['splits']['train']['shards'])} shards "
          f"({out_bytes / rows:.0f} bytes per patch, float32)")
    print("MB/s of float64 input, median (range) over the rounds:")
    print(f"{'':6}{'bare h5py read':>22}{'floor':>22}{'prep.so2sat':>22}{'bare/prep':>20}{'floor/prep':>20}")
    for mode, rs in rounds.items():
        col = {k: [r[k] for r in rs] for k in rs[0]}
        print(f"{mode:6}{_span(col['bare_mb_s']):>22}{_span(col['floor_mb_s']):>22}{_span(col['prep_mb_s']):>22}"
              f"{_span(col['ratio_bare_to_prep'], '{:.2f}x'):>20}{_span(col['ratio_floor_to_prep'], '{:.2f}x'):>20}")
        print(f"{'':6}per CPU-second: bare {_span(col['bare_mb_per_cpu_s'])} MB, floor "
              f"{_span(col['floor_mb_per_cpu_s'])} MB, prep.so2sat {_span(col['prep_mb_per_cpu_s'])} MB "
              f"({_span(col['prep_us_cpu_per_patch'])} us of CPU per patch); prep "
              f"{_span(col['prep_patches_s'])} patches/s")
    device = [r["device_mb_s"] for r in rounds["cold"]]
    peak = [r["prep_peak_rss_tree_mb"] for rs in rounds.values() for r in rs]
    single = [r["prep_peak_rss_process_mb"] for rs in rounds.values() for r in rs]
    direct = f"{_span(device)} MB/s" if np.isfinite(device).all() else "not supported on this file system"
    print(f"device read (O_DIRECT): {direct}; peak RSS: all processes {_span(peak)} MB, "
          f"largest process {_span(single)} MB (target < 1,000)")
    medians = {f"{mode}_{k}": float(np.median([r[k] for r in rs])) for mode, rs in rounds.items() for k in rs[0]}
    summary = {k: round(v, 2) if np.isfinite(v) else None for k, v in medians.items()}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
