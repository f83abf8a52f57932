"""What the preparation benches share: timing ``python -m prep <dataset>`` and the reader's rate."""
from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import time
from typing import Sequence


def run_prepare(dataset: str, args: Sequence[str], out: str, workers: int = 1) -> tuple[float, str, int]:
    """Runs ``python -m prep <dataset> <args> -o out --workers N`` on an emptied ``out``.

    Args:
      dataset: the registered dataset's command name (``sen12ms``, ``eurosat`` ...).
      args: its input flags (``-r ROOT`` ...).
      out: the output folder (deleted first).
      workers: ``--workers``.

    Returns:
      (seconds of the whole command, its start-up and planning included; the command's own rate
      line's figures, e.g. ``"56 patches/s, 155 MB/s of input"``, which time the writing alone, or
      "?"; peak RSS in KB of the largest child process so far).

    Raises:
      subprocess.CalledProcessError: the command failed (its output is in the exception).
    """
    shutil.rmtree(out, ignore_errors=True)
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "prep", dataset, *args, "-o", out, "--workers", str(workers),
                        "--noprogress"], check=True, capture_output=True, text=True,
                       env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    seconds = time.perf_counter() - t
    line = next((x for x in r.stdout.splitlines() if x.startswith("wrote ")), "")
    rate = line.split("(")[-1].rstrip(")") if "(" in line else "?"
    return seconds, rate, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss


def reader_rate(out: str, bands: str, batches: int = 8, batch_size: int = 64, **options) -> float:
    """Samples/s of ``prep.reader``'s training pipeline on the ``train`` split, after one warm-up batch.

    Args:
      out: the prepared folder.
      bands: the band selection (a preset such as ``s1s2``).
      batches: batches timed.
      batch_size: samples per batch.
      **options: more ``prep.reader.make_dataset`` keyword arguments (``normalize`` ...).

    Returns:
      Samples per second of wall-clock time.
    """
    from prep import reader

    ds = reader.make_dataset(out, "train", bands=bands, batch_size=batch_size, training=True, seed=0,
                             **options).repeat()
    it = iter(ds)
    next(it)
    t = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches * batch_size / (time.perf_counter() - t)
