"""Per-fold and mean/std report of k-fold runs: ``python -m prep lulc fold_report --eval_dirs E0 E1 ... --out R``.

Each ``--eval_dirs`` folder is one fold's ``evaluate.py --split test --out_dir`` output (its
``eval_result.json``; the confusion matrix plot per fold is in the same folder). Writes
``R/fold_report.json`` and ``R/fold_report.md``: overall accuracy, Cohen's kappa, macro F1 and the
F1 of each class for every fold, with the mean and the standard deviation over folds (sample
standard deviation, ddof = 1; 0 for a single fold).
"""
from __future__ import annotations

import functools
import json
import os
from typing import Sequence

import numpy as np
from absl import flags

from prep import cli, files
from prep.datasets.sentinel2_global_lulc import spec as sp
from prep.datasets.sentinel2_global_lulc.spec import LulcInputError

FLAGS = flags.FLAGS
METRICS = (("overall_accuracy", "OA"), ("cohen_kappa", "kappa"), ("macro_f1_score_class_avg", "macro F1"))


@functools.cache
def define_flags() -> None:
    """Declare the flags of ``fold_report``."""
    flags.DEFINE_list("eval_dirs", None, "evaluate.py output folders, one per fold, in fold order.")
    flags.DEFINE_string("out", None, "Folder for fold_report.json and fold_report.md.")


def _load(folder: str) -> dict:
    path = os.path.join(folder, "eval_result.json")
    if not os.path.isfile(path):
        raise LulcInputError(f"{path}: missing (run evaluate.py --out_dir {folder} first)")
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _stats(values: Sequence[float]) -> dict:
    v = np.asarray(values, np.float64)
    return {"folds": v.tolist(), "mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0}


def summarize(eval_dirs: Sequence[str]) -> dict:
    """Per-fold values and their mean/std of OA, kappa, macro F1 and each class's F1.

    Args:
      eval_dirs: evaluate.py output folders, one per fold.

    Returns:
      ``{"folds": k, "metrics": {name: {"folds", "mean", "std"}}, "per_class_f1": {class: {...}}}``.

    Raises:
      LulcInputError: no folders, or a folder without eval_result.json, or a metric missing (naming it).
    """
    if not eval_dirs:
        raise LulcInputError("no --eval_dirs given")
    results = [_load(d) for d in eval_dirs]
    for d, r in zip(eval_dirs, results):
        for key, _ in METRICS:
            if key not in r:
                raise LulcInputError(f"{d}/eval_result.json: field '{key}' missing (a single-label evaluation?)")
    out = {"folds": len(results), "eval_dirs": list(eval_dirs),
           "metrics": {key: _stats([r[key] for r in results]) for key, _ in METRICS}, "per_class_f1": {}}
    for i, name in enumerate(sp.CLASS_NAMES):
        key = f"macro_f1_score_class{i}"
        if all(key in r for r in results):
            out["per_class_f1"][name] = _stats([r[key] for r in results])
    return out


def markdown(summary: dict) -> str:
    """The summary as a Markdown report: one row per metric and class, one column per fold, then mean and std."""
    k = summary["folds"]
    head = "| | " + " | ".join(f"fold {i}" for i in range(k)) + " | mean | std |\n" + "|---" * (k + 3) + "|\n"
    lines = [f"# {k}-fold results\n", head]
    rows = [(label, summary["metrics"][key]) for key, label in METRICS]
    rows += [(f"F1 {name}", s) for name, s in summary["per_class_f1"].items()]
    for label, s in rows:
        lines.append(f"| {label} | " + " | ".join(f"{v:.4f}" for v in s["folds"])
                     + f" | {s['mean']:.4f} | {s['std']:.4f} |\n")
    return "".join(lines)


def main(argv: list[str]) -> int:
    """Write the fold report the flags describe."""
    cli.no_arguments(argv)
    cli.required("eval_dirs", "out")
    s = summarize(FLAGS.eval_dirs)
    os.makedirs(FLAGS.out, exist_ok=True)
    files.write_json_atomic(os.path.join(FLAGS.out, "fold_report.json"), s)
    with files.atomic_write(os.path.join(FLAGS.out, "fold_report.md")) as f:
        f.write(markdown(s))
    m = s["metrics"]
    print(f"{s['folds']} folds: OA {m['overall_accuracy']['mean']:.4f} +- {m['overall_accuracy']['std']:.4f}, "
          f"kappa {m['cohen_kappa']['mean']:.4f} +- {m['cohen_kappa']['std']:.4f}")
    return 0
