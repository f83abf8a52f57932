"""Benchmark: every multi-label metric (and the single-label ones) over BigEarthNet-test-sized predictions.

125,866 x 19 random scores and multi-hot targets (the size of the BigEarthNet-19 test split), fed
to the streaming accumulator in batches as evaluate.py does, then ``result()`` and ``per_class()``.
Target: under 2 s for the multi-label metrics. The last line printed holds the figure.

  python bench/metrics.py [--samples 125866] [--classes 19] [--batch 8192] [--repeat 3]
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from evaluation import metrics  # noqa: E402


def run_once(scores: np.ndarray, targets: np.ndarray, batch: int, task: str,
             threshold: float = 0.5) -> tuple[float, dict[str, float]]:
    """Times one evaluation: accumulator updates of ``batch`` rows, then ``result()`` and ``per_class()``.

    Args:
        scores: ``[N, C]`` float32 scores.
        targets: ``[N, C]`` bool multi-hot (multi-label) or ``[N]`` class indices (single-label).
        batch: rows per ``update``.
        task: "multi_label" or "single_label".
        threshold: multi-label decision threshold.

    Returns:
        (wall-clock seconds, the metrics dict).
    """
    t0 = time.perf_counter()
    acc = metrics.make_accumulator(task, scores.shape[1], threshold=threshold)
    for start in range(0, len(scores), batch):
        acc.update(scores[start:start + batch], targets[start:start + batch])
    result = acc.result()
    acc.per_class()
    return time.perf_counter() - t0, result


def main(argv: list[str] | None = None) -> int:
    """Runs the benchmark with command-line ``argv`` (None = ``sys.argv[1:]``); returns the exit status 0."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=125_866, help="number of predictions (rows)")
    parser.add_argument("--classes", type=int, default=19, help="number of classes (columns)")
    parser.add_argument("--batch", type=int, default=8192, help="rows per accumulator update")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs; the best is reported")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    n, c = args.samples, args.classes
    scores = rng.random((n, c), dtype=np.float32)
    targets = rng.random((n, c)) < 0.15
    labels = rng.integers(0, c, n)

    # threshold selection on a "validation" half, as --thresholds_from does
    t0 = time.perf_counter()
    metrics.select_thresholds(scores[: n // 2], targets[: n // 2])
    t_select = time.perf_counter() - t0

    multi, single = [], []
    for _ in range(args.repeat):
        seconds, result = run_once(scores, targets, args.batch, metrics.MULTI_LABEL)
        multi.append(seconds)
        single.append(run_once(scores, labels, args.batch, metrics.SINGLE_LABEL)[0])
    print(f"{len(result)} multi-label metric keys over {n:,} x {c} predictions, batches of {args.batch}")
    print(f"multi-label runs (s):  {', '.join(f'{s:.3f}' for s in multi)}")
    print(f"single-label runs (s): {', '.join(f'{s:.3f}' for s in single)}")
    print(f"per-class threshold selection on {n // 2:,} rows: {t_select:.3f} s")
    best = min(multi)
    verdict = "under" if best < 2.0 else "OVER"
    print(f"all multi-label metrics, {n:,} x {c}: {best:.3f} s (best of {args.repeat}; {verdict} the 2 s target)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
