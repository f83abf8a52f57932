"""k-fold summaries: every fold's metrics with their mean and standard deviation over folds.

Used by ``evaluate.py --all_folds N`` (which evaluates each fold first) and by
``python -m prep lulc fold_report`` (which reads evaluate.py output folders). A summary holds, for
each headline metric and each class's F1, the value of every fold, the mean and the sample standard
deviation (ddof = 1; 0 for a single fold). Single-label headline metrics: overall accuracy, Cohen's
kappa, macro F1; multi-label: micro F1 and macro F1; segmentation: mIoU, then the single-label ones
over pixels. numpy only (no Keras, no TensorFlow).
"""
from __future__ import annotations

import os
from typing import Mapping, Sequence

import numpy as np

from prep import files
from prep.errors import InputError

SINGLE_LABEL_METRICS = ("overall_accuracy", "cohen_kappa", "macro_f1_score_class_avg")
MULTI_LABEL_METRICS = ("micro_f1_score", "macro_f1_score_class_avg")
SEGMENTATION_METRICS = ("miou", "overall_accuracy", "cohen_kappa", "macro_f1_score_class_avg")  # over pixels
LABELS = {"miou": "mIoU", "overall_accuracy": "OA", "cohen_kappa": "kappa", "macro_f1_score_class_avg": "macro F1",
          "micro_f1_score": "micro F1"}
EVAL_JSON = "eval_result.json"


def stats(values: Sequence[float]) -> dict:
    """``{"folds": values, "mean", "std"}`` with the sample standard deviation (ddof = 1; 0 for one value)."""
    v = np.asarray(values, np.float64)
    return {"folds": v.tolist(), "mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0}


def summarize(results: Sequence[Mapping], class_names: Sequence[str], sources: Sequence[str],
              metrics: Sequence[str] = SINGLE_LABEL_METRICS) -> dict:
    """Per-fold values and their mean/std of the headline ``metrics`` and of each class's F1.

    Args:
      results: one ``eval_result.json`` dict per fold, in fold order.
      class_names: the class names in class-index order (``macro_f1_score_class<i>`` is class i's F1).
      sources: one evaluation folder per fold (named in messages and kept in the summary).
      metrics: the headline metric keys (``SINGLE_LABEL_METRICS``, ``MULTI_LABEL_METRICS`` or
        ``SEGMENTATION_METRICS``).

    Returns:
      ``{"folds": k, "eval_dirs": sources, "metrics": {key: stats}, "per_class_f1": {class: stats}}``;
      a class is listed when every fold has its F1.

    Raises:
      InputError: no folds, or a fold without one of ``metrics`` (naming its eval_result.json and the field).
    """
    if not results:
        raise InputError("no folds to summarize")
    for d, r in zip(sources, results):
        for key in metrics:
            if key not in r:
                raise InputError(f"field '{key}' missing (a {'single' if key == 'micro_f1_score' else 'multi'}"
                                 "-label evaluation?)", path=os.path.join(d, EVAL_JSON))
    out = {"folds": len(results), "eval_dirs": list(sources),
           "metrics": {key: stats([r[key] for r in results]) for key in metrics}, "per_class_f1": {}}
    for i, name in enumerate(class_names):
        key = f"macro_f1_score_class{i}"
        if all(key in r for r in results):
            out["per_class_f1"][name] = stats([r[key] for r in results])
    return out


def markdown(summary: Mapping) -> str:
    """The summary as Markdown: one row per metric and class, one column per fold, then mean and std."""
    k = summary["folds"]
    head = "| | " + " | ".join(f"fold {i}" for i in range(k)) + " | mean | std |\n" + "|---" * (k + 3) + "|\n"
    lines = [f"# {k}-fold results\n", head]
    rows = [(LABELS.get(key, key), s) for key, s in summary["metrics"].items()]
    rows += [(f"F1 {name}", s) for name, s in summary["per_class_f1"].items()]
    for label, s in rows:
        lines.append(f"| {label} | " + " | ".join(f"{v:.4f}" for v in s["folds"])
                     + f" | {s['mean']:.4f} | {s['std']:.4f} |\n")
    return "".join(lines)


def console_table(summary: Mapping) -> str:
    """The headline metrics as a plain-text table: one row per metric, a column per fold, mean and std."""
    k = summary["folds"]
    width = max(len(LABELS.get(key, key)) for key in summary["metrics"])
    lines = [f"{'':{width}s} " + " ".join(f"{f'fold {i}':>8s}" for i in range(k)) + f" {'mean':>8s} {'std':>8s}"]
    for key, s in summary["metrics"].items():
        lines.append(f"{LABELS.get(key, key):{width}s} " + " ".join(f"{v:8.4f}" for v in s["folds"])
                     + f" {s['mean']:8.4f} {s['std']:8.4f}")
    return "\n".join(lines)


def write_summary(out_dir: str, summary: Mapping, stem: str) -> list[str]:
    """Writes ``out_dir/<stem>.json`` and ``out_dir/<stem>.md`` (atomically; folder created); returns their paths."""
    os.makedirs(out_dir, exist_ok=True)
    json_path, md_path = os.path.join(out_dir, f"{stem}.json"), os.path.join(out_dir, f"{stem}.md")
    files.write_json_atomic(json_path, dict(summary))
    with files.atomic_write(md_path) as f:
        f.write(markdown(summary))
    return [json_path, md_path]
