"""Per-fold and mean/std report of k-fold runs: ``python -m prep lulc fold_report --eval_dirs E0 E1 ... --out R``.

Each ``--eval_dirs`` folder is one fold's ``evaluate.py --split test --out_dir`` output (its
``eval_result.json``; the confusion matrix plot per fold is in the same folder). Writes
``R/fold_report.json`` and ``R/fold_report.md``: overall accuracy, Cohen's kappa, macro F1 and the
F1 of each class for every fold, with the mean and the standard deviation over folds (sample
standard deviation, ddof = 1; 0 for a single fold). The summary is ``evaluation.folds``', shared
with ``evaluate.py --all_folds N``, which evaluates the folds and summarizes them in one command.
"""
from __future__ import annotations

import functools
import json
import os
from typing import Sequence

from absl import flags

from evaluation import folds
from prep import cli
from prep.datasets.sentinel2_global_lulc import spec as sp
from prep.datasets.sentinel2_global_lulc.spec import LulcInputError

FLAGS = flags.FLAGS


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


def summarize(eval_dirs: Sequence[str]) -> dict:
    """Per-fold values and their mean/std of OA, kappa, macro F1 and each class's F1 (``evaluation.folds``).

    Args:
      eval_dirs: evaluate.py output folders, one per fold.

    Returns:
      ``{"folds": k, "metrics": {name: {"folds", "mean", "std"}}, "per_class_f1": {class: {...}}}``.

    Raises:
      LulcInputError: no folders, or a folder without eval_result.json.
      InputError: a metric missing (naming the file and the field).
    """
    if not eval_dirs:
        raise LulcInputError("no --eval_dirs given")
    return folds.summarize([_load(d) for d in eval_dirs], sp.CLASS_NAMES, eval_dirs)


def markdown(summary: dict) -> str:
    """The summary as a Markdown report (``evaluation.folds.markdown``)."""
    return folds.markdown(summary)


def main(argv: list[str]) -> int:
    """Write the fold report the flags describe."""
    cli.no_arguments(argv)
    cli.required("eval_dirs", "out")
    s = summarize(FLAGS.eval_dirs)
    folds.write_summary(FLAGS.out, s, "fold_report")
    m = s["metrics"]
    print(f"{s['folds']} folds: OA {m['overall_accuracy']['mean']:.4f} +- {m['overall_accuracy']['std']:.4f}, "
          f"kappa {m['cohen_kappa']['mean']:.4f} +- {m['cohen_kappa']['std']:.4f}")
    return 0
