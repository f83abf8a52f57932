"""The best constant predictor: the score a model must beat before it has learned anything.

A constant predictor gives every sample the same answer, chosen knowing the evaluated split's
class frequencies (so it is the best any constant can do there: an upper bound for "no signal").

- Multi-label: the fixed label set S maximising micro-F1. With P positive labels in N samples and
  ``s_j`` positives of class j, predicting S gives TP = sum of s_j over S, FP = |S| N - TP and
  FN = P - TP, so micro-F1 = 2 TP / (|S| N + P): for each size k the best S is the k most frequent
  classes, and the best k is found by trying them all.
- Single-label: always the most frequent class; its overall accuracy (OA) and Cohen's kappa, 0 by
  construction.

Reported by evaluate.py beside the model's own scores (console table, report.md, eval_details.json).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from prep.datasets.spec import Task


def best_constant(task: str, support: np.ndarray, n: int, class_names: Sequence[str]) -> dict:
    """The best constant predictor's score on a split with per-class ``support`` in ``n`` samples.

    Args:
      task: ``Task.MULTI_LABEL`` or ``Task.SINGLE_LABEL``.
      support: [C] number of samples holding each class (multi-label) or of each class (single-label).
      n: number of samples evaluated.
      class_names: [C] names, for the description.

    Returns:
      ``{"metric", "value", "classes", "description"}``: micro F1 (multi-label) or OA (single-label)
      of the best constant answer, the classes it predicts and a one-line description. ``value`` is
      0 when ``n`` is 0.
    """
    support = np.asarray(support, dtype=np.float64)
    if n <= 0 or support.sum() == 0:
        return {"metric": "micro_f1_score" if task == Task.MULTI_LABEL else "overall_accuracy", "value": 0.0,
                "classes": [], "description": "no samples"}
    order = np.argsort(-support, kind="stable")
    if task == Task.MULTI_LABEL:
        positives = support.sum()
        tp = np.cumsum(support[order])
        k = np.arange(1, len(order) + 1)
        f1 = 2 * tp / (k * n + positives)
        best = int(np.argmax(f1))
        chosen = [class_names[j] for j in order[: best + 1]]
        return {"metric": "micro_f1_score", "value": float(f1[best]), "classes": chosen,
                "description": f"always the {best + 1} most frequent class(es)"}
    top = int(order[0])
    return {"metric": "overall_accuracy", "value": float(support[top] / n), "classes": [class_names[top]],
            "description": f"always {class_names[top]!r}"}


__all__ = ["best_constant"]
