"""Segmentation evaluation reports: eval_result.json, per-class IoU CSV, confusion matrix, report.md, plots.

``write_segmentation_report(out_dir, accumulator, class_names, meta)`` writes, for a filled
``evaluation.segmentation.SegmentationAccumulator`` (pixels with an ignored target left out):

- ``eval_result.json``: ``miou``, ``overall_accuracy`` (= ``pixel_accuracy``: correct / valid pixels),
  ``cohen_kappa`` (over pixels), ``mean_class_accuracy``, ``frequency_weighted_iou``,
  ``macro_f1_score_class_avg`` and per class ``iou_class<j>`` and ``macro_precision_class<j>``,
  ``macro_recall_class<j>``, ``macro_f1_score_class<j>`` (the single-label key names); a class
  absent from both truth and predictions has no IoU (it is left out of the file and of the mean).
- ``eval_details.json``: task, pixel count, classes, the classes without an IoU, the confusion matrix,
  the best constant (majority-class) segmentation and ``meta``.
- ``per_class_metrics.csv``: class, support and predicted pixels, IoU, precision, recall, F1.
- ``confusion_matrix.csv`` / ``.png``, ``per_class_iou.png`` (bar chart), ``report.md``.
"""
from __future__ import annotations

import csv
import math
import os
from collections.abc import Callable
from typing import Sequence

import numpy as np

from evaluation import metrics, report
from evaluation.segmentation import SegmentationAccumulator, iou_metrics, majority_baseline

IOU_PNG = "per_class_iou.png"
HEADLINE = (("miou", "mIoU"), ("overall_accuracy", "overall accuracy"), ("cohen_kappa", "Cohen's kappa"),
            ("mean_class_accuracy", "mean class accuracy"), ("frequency_weighted_iou", "frequency-weighted IoU"),
            ("macro_f1_score_class_avg", "macro F1"))


def segmentation_result(matrix: np.ndarray) -> tuple[dict[str, float], list[dict]]:
    """The summary metrics and per-class rows of a pixel confusion matrix.

    Args:
      matrix: [C, C] pixel counts, rows = true class, columns = predicted class.

    Returns:
      (result, rows): result as in the module doc (finite numbers only); rows one dict per class
      (index, support, predicted, iou (NaN when undefined), precision, recall, f1).
    """
    cm = np.asarray(matrix, np.float64)
    iou = iou_metrics(cm)
    conf = metrics.confusion_metrics(cm)
    result = {"miou": iou["miou"] if not math.isnan(iou["miou"]) else 0.0,
              "overall_accuracy": conf["overall_accuracy"], "pixel_accuracy": conf["overall_accuracy"],
              "cohen_kappa": conf["cohen_kappa"],
              "mean_class_accuracy": 0.0 if math.isnan(iou["mean_class_accuracy"]) else iou["mean_class_accuracy"],
              "frequency_weighted_iou": 0.0 if math.isnan(iou["frequency_weighted_iou"])
              else iou["frequency_weighted_iou"],
              "macro_f1_score_class_avg": conf["macro_f1_score_class_avg"], "pixels": float(cm.sum())}
    rows = []
    for j in range(cm.shape[0]):
        v = iou[f"iou_class{j}"]
        if not math.isnan(v):
            result[f"iou_class{j}"] = v
        row = {"index": j, "support": int(cm[j].sum()), "predicted": int(cm[:, j].sum()), "iou": v}
        for key, prefix in zip(("precision", "recall", "f1"), metrics.SINGLE_CLASS_PREFIXES):
            row[key] = conf[f"{prefix}{j}"]
            result[f"{prefix}{j}"] = conf[f"{prefix}{j}"]
        rows.append(row)
    return result, rows


def plot_per_class_iou(path: str, rows: list[dict], title: str, baseline: dict | None = None) -> None:
    """Plots a horizontal bar chart of each class's IoU to the PNG ``path`` (undefined IoUs shown as "n/a")."""
    names = [r["class"] for r in rows]
    iou = [0.0 if math.isnan(r["iou"]) else r["iou"] for r in rows]
    fig = report._figure(9, 1.5 + 0.32 * len(rows))
    ax = fig.add_subplot()
    y = np.arange(len(rows))
    ax.barh(y, iou, color="tab:green")
    for yi, r, v in zip(y, rows, iou):
        ax.text(min(v + 0.01, 0.9), yi, "n/a" if math.isnan(r["iou"]) else f"{v:.3f}", va="center", fontsize=8)
    if baseline and baseline.get("class") is not None:
        ax.axvline(baseline["value"], color="tab:red", ls="--", lw=1, label=f"majority-class mIoU {baseline['value']:.3f}")
        ax.legend(loc="lower right", fontsize=8)
    ax.set_yticks(y, names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("IoU")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path)


def console_table(result: dict, rows: list[dict], baseline: dict) -> str:
    """A fixed-width table: headline metrics, the majority-class baseline, one line per class."""
    title = f"segmentation evaluation, {int(result['pixels'])} valid pixels"
    lines = [title, "=" * len(title)]
    lines += [f"  {label:<24} {result[key]:8.4f}" for key, label in HEADLINE]
    lines += ["", f"  best constant ({baseline['description']}): mIoU {baseline['value']:.4f}, "
                  f"OA {baseline['pixel_accuracy']:.4f}", ""]
    width = max([len(r["class"]) for r in rows] + [5])
    head = f"  {'#':>3} {'class':<{width}} {'pixels':>10} {'IoU':>7} {'prec':>7} {'recall':>7} {'F1':>7}"
    lines += [head, "  " + "-" * (len(head) - 2)]
    for r in rows:
        iou = "    n/a" if math.isnan(r["iou"]) else f"{r['iou']:7.4f}"
        lines.append(f"  {r['index']:>3} {r['class']:<{width}} {r['support']:>10d} {iou} {r['precision']:7.4f} "
                     f"{r['recall']:7.4f} {r['f1']:7.4f}")
    return "\n".join(lines)


def markdown_report(result: dict, rows: list[dict], meta: dict, images: Sequence[str], baseline: dict) -> str:
    """report.md: sources, the majority-class baseline, headline metrics, per-class table, plots."""
    out = ["# Evaluation report (segmentation)", ""]
    for key in ("model", "data_dir", "split", "samples"):
        if meta.get(key) not in (None, ""):
            out.append(f"- {key.replace('_', ' ')}: `{meta[key]}`")
    out.append(f"- valid pixels: {int(result['pixels'])} (pixels whose target is ignored are left out)")
    out.append(f"- best constant segmentation ({baseline['description']}): mIoU {baseline['value']:.4f}, "
               f"OA {baseline['pixel_accuracy']:.4f}: the score a model must beat to have learned anything")
    out += ["", "## Headline", "", "| metric | value |", "|---|---|"]
    out += [f"| {label} (`{key}`) | {result[key]:.4f} |" for key, label in HEADLINE]
    out += ["", "## Per class", "", "| # | class | pixels | predicted | IoU | precision | recall | F1 |",
            "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        iou = "n/a" if math.isnan(r["iou"]) else f"{r['iou']:.4f}"
        out.append(f"| {r['index']} | {r['class']} | {r['support']} | {r['predicted']} | {iou} | "
                   f"{r['precision']:.4f} | {r['recall']:.4f} | {r['f1']:.4f} |")
    if images:
        out += ["", "## Plots", ""]
        for img in images:
            out += [f"![{img}]({img})", ""]
    return "\n".join(out).rstrip() + "\n"


def write_segmentation_report(out_dir: str, acc: SegmentationAccumulator, class_names: Sequence[str],
                              meta: dict | None = None, plots: bool = True,
                              echo: Callable[[str], object] | None = print) -> dict:
    """Writes the report files of the module doc for the filled accumulator ``acc`` into ``out_dir``.

    Args:
      out_dir: the folder to write into (created if missing).
      acc: the filled pixel accumulator (its ``matrix``, classes 0..C-1).
      class_names: the C class names, in class-id order.
      meta: extra entries for eval_details.json and report.md (model, data_dir, split, samples...).
      plots: write the PNG plots.
      echo: called with the console table (None = silent).

    Returns:
      ``{"result": metrics dict, "files": [paths written], "table": console table}``.

    Raises:
      ValueError: ``len(class_names)`` differs from the accumulator's class count.
      OSError: ``out_dir`` cannot be written.
    """
    meta = dict(meta or {})
    class_names = list(class_names)
    if len(class_names) != acc.num_classes:
        raise ValueError(f"{len(class_names)} class names for {acc.num_classes} classes")
    os.makedirs(out_dir, exist_ok=True)
    result, rows = segmentation_result(acc.matrix)
    for r in rows:
        r["class"] = class_names[r["index"]]
    constant = majority_baseline(acc.matrix, class_names)
    files: list[str] = []

    def path(name):
        p = os.path.join(out_dir, name)
        files.append(p)
        return p

    report.write_json(path(report.EVAL_JSON), result)
    details = {"task": "segmentation", "pixels": int(acc.matrix.sum()), "classes": class_names,
               "classes_without_iou": [r["class"] for r in rows if math.isnan(r["iou"])],
               "best_constant_predictor": constant, "confusion_matrix_rows_true_cols_pred": acc.matrix.tolist(),
               **meta}
    report.write_json(path(report.DETAILS_JSON), details)
    with open(path(report.PER_CLASS_CSV), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["index", "class", "support", "predicted", "iou", "precision", "recall", "f1"])
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if isinstance(v, float) and math.isnan(v) else f"{v:.6f}" if isinstance(v, float) else v)
                        for k, v in r.items()})
    report.write_confusion_csv(path(report.CONFUSION_CSV), acc.matrix, class_names)
    images = []
    if plots:
        plot_per_class_iou(path(IOU_PNG), rows, f"Per-class IoU ({int(acc.matrix.sum())} pixels)", constant)
        report.plot_confusion(path(report.CONFUSION_PNG), acc.matrix, class_names)
        images += [IOU_PNG, report.CONFUSION_PNG]
    with open(path(report.REPORT_MD), "w") as f:
        f.write(markdown_report(result, rows, meta, images, constant))
    table = console_table(result, rows, constant)
    if echo:
        echo(table)
    return {"result": result, "files": files, "table": table}
