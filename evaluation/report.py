"""Evaluation reports people read: eval_result.json, per-class CSV, Markdown, PNG plots, console table.

``write_report(out_dir, accumulator, class_names, meta)`` writes, for either task:

- ``eval_result.json``: flat {metric key: number} under the BigEarthNet evaluation's key names
  (``evaluation.metrics``), finite numbers only (json ``allow_nan=False``).
- ``eval_details.json``: task, sample count, class names, the classes with no positive sample
  (``classes_without_positives``: their AP is 0 in ``macro_average_precision`` and left out of
  ``macro_average_precision_present_classes``), thresholds, the confusion matrix (single-label)
  and whatever ``meta`` holds (source files, split, ...).
- ``per_class_metrics.csv``: one row per class (support, counts, precision, recall, F-scores, AP).
- ``report.md``: headline metrics, the classes with no positive sample, every summary metric, the
  per-class table and the plots. The console table names those classes too (when there are any).
- ``per_class_f1.png``, ``precision_recall.png``; ``confusion_matrix.png`` and
  ``confusion_matrix.csv`` (single-label); ``label_cooccurrence.png`` (multi-label).

Plots use matplotlib's Agg canvas directly (no pyplot state, no display needed).
"""
from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Callable
from typing import Any, Sequence

import numpy as np

from evaluation import baseline, metrics

EVAL_JSON = "eval_result.json"
DETAILS_JSON = "eval_details.json"
PER_CLASS_CSV = "per_class_metrics.csv"
REPORT_MD = "report.md"
F1_PNG = "per_class_f1.png"
PR_PNG = "precision_recall.png"
CONFUSION_PNG = "confusion_matrix.png"
CONFUSION_CSV = "confusion_matrix.csv"
COOCCURRENCE_PNG = "label_cooccurrence.png"

HEADLINE = {
    metrics.MULTI_LABEL: (
        ("micro_f1_score", "micro F1"),
        ("macro_f1_score_class_avg", "macro F1"),
        ("sample_f1_score", "sample F1"),
        ("micro_precision", "micro precision"),
        ("micro_recall", "micro recall"),
        ("micro_average_precision", "micro AP"),
        ("macro_average_precision", "macro AP (mAP)"),
        ("macro_average_precision_present_classes", "mAP, present classes"),
        ("hamming_loss", "Hamming loss"),
        ("subset_accuracy", "subset accuracy"),
        ("one_error", "one-error"),
        ("coverage", "coverage"),
        ("ranking_loss", "ranking loss"),
        ("label_ranking_avg_precision", "label ranking AP"),
    ),
    metrics.SINGLE_LABEL: (
        ("overall_accuracy", "overall accuracy"),
        ("cohen_kappa", "Cohen's kappa"),
        ("average_accuracy", "average accuracy"),
        ("macro_f1_score_class_avg", "macro F1"),
        ("weighted_f1_score", "weighted F1"),
        ("macro_average_precision", "macro AP"),
        ("macro_average_precision_present_classes", "mAP, present classes"),
    ),
}


# --------------------------------------------------------------------------------------------
# Tables


def _check_finite(result: dict) -> dict[str, float]:
    out = {}
    for key, value in result.items():
        v = float(value)
        if not math.isfinite(v):
            raise ValueError(f"metric {key} is {v}: eval_result.json holds finite numbers only")
        out[key] = v
    return out


def write_json(path: str, obj: Any) -> None:
    """Writes ``obj`` as indented JSON with a final newline.

    Raises:
        ValueError: ``obj`` holds NaN or infinity (``allow_nan=False``).
        TypeError: ``obj`` holds a value JSON cannot represent.
    """
    with open(path, "w") as f:
        json.dump(obj, f, indent=2, allow_nan=False)
        f.write("\n")


def per_class_rows(per_class: dict[str, np.ndarray], class_names: Sequence[str]) -> list[dict]:
    """Makes one row dict per class: index, class name, then the ``per_class`` columns in a fixed order.

    Args:
        per_class: ``{metric: [C] array}`` as ``per_class()`` of an accumulator returns it; columns
            it lacks are left out.
        class_names: the C class names, in class-index order.

    Returns:
        C dicts; integer counts as int, ratios as float.
    """
    columns = ("support", "predicted", "tp", "fp", "fn", "precision", "recall", "f1", "f2", "f0_5",
               "accuracy", "average_precision", "threshold")
    rows = []
    for j, name in enumerate(class_names):
        row = {"index": j, "class": name}
        for col in columns:
            if col in per_class:
                v = per_class[col][j]
                row[col] = int(v) if np.issubdtype(np.asarray(v).dtype, np.integer) else float(v)
        rows.append(row)
    return rows


def write_per_class_csv(path: str, rows: list[dict]) -> None:
    """Writes ``per_class_rows`` output as CSV (floats with 6 decimals; header only when ``rows`` is empty)."""
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0].keys()) if rows else ["index", "class"])
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in row.items()})


def write_confusion_csv(path: str, cm: np.ndarray, class_names: Sequence[str]) -> None:
    """Writes the ``[C, C]`` confusion matrix as CSV: rows = true class, columns = predicted, labelled by name."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["true \\ predicted"] + list(class_names))
        for name, row in zip(class_names, cm):
            writer.writerow([name] + [int(v) for v in row])


def _short(name: str, width: int = 38) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"


def absent_classes_note(names: Sequence[str]) -> str:
    """Returns one line naming the classes with no positive sample ("none" when every class has one)."""
    if not names:
        return "classes without a positive sample: none"
    return (f"{len(names)} class(es) without a positive sample (AP 0 in macro AP, left out of mAP over present "
            f"classes): " + "; ".join(names))


def baseline_line(baseline: dict | None) -> str:
    """One line naming the best constant predictor's score (``evaluation.baseline``), or ""."""
    if not baseline:
        return ""
    label = "micro F1" if baseline["metric"] == "micro_f1_score" else "OA"
    return f"best constant predictor ({baseline['description']}): {label} {baseline['value']:.4f}"


def console_table(task: str, result: dict, rows: list[dict], samples: int | None = None,
                  absent: Sequence[str] = (), baseline: dict | None = None) -> str:
    """Formats a fixed-width text table for the console.

    Headline metrics (``HEADLINE[task]``), the best constant predictor (when ``baseline`` is given),
    the classes ``absent`` (no positive sample; a line only when there are some), then one line per
    class (support, precision, recall, F1 and AP if known).

    Args:
        task: "multi_label" or "single_label".
        result: the accumulator's ``result()``.
        rows: ``per_class_rows`` output.
        samples: sample count for the title (left out when None).
        absent: names of the classes without a positive sample.
        baseline: the best constant predictor (``evaluation.baseline``: ``metric``, ``value``,
            ``description``), or None.

    Raises:
        KeyError: unknown task.
    """
    title = f"{task.replace('_', '-')} evaluation" + (f", {samples} samples" if samples is not None else "")
    lines = [title, "=" * len(title)]
    for key, label in HEADLINE[task]:
        if key in result:
            lines.append(f"  {label:<22} {result[key]:8.4f}")
    if baseline:
        lines += ["", "  " + baseline_line(baseline)]
    if absent:
        lines += ["", "  " + absent_classes_note(absent)]
    width = max([len(_short(r["class"])) for r in rows] + [5])
    has_ap = any("average_precision" in r for r in rows)
    head = f"  {'#':>3} {'class':<{width}} {'support':>8} {'prec':>7} {'recall':>7} {'F1':>7}"
    head += f" {'AP':>7}" if has_ap else ""
    lines += ["", head, "  " + "-" * (len(head) - 2)]
    for r in rows:
        line = (f"  {r['index']:>3} {_short(r['class']):<{width}} {r['support']:>8d} {r['precision']:7.4f} "
                f"{r['recall']:7.4f} {r['f1']:7.4f}")
        if has_ap:
            line += f" {r.get('average_precision', 0.0):7.4f}"
        lines.append(line)
    return "\n".join(lines)


def markdown_report(task: str, result: dict, rows: list[dict], meta: dict, images: Sequence[str],
                    absent: Sequence[str] = (), baseline: dict | None = None) -> str:
    """Formats report.md.

    The sources (``meta``: model, predictions, data_dir, split, samples, threshold, thresholds_from),
    the best constant predictor (``baseline``, when given), headline metrics, the classes ``absent``
    (no positive sample), every summary metric, the per-class table and the ``images`` (file names
    in the report's folder).

    Raises:
        KeyError: unknown task.
    """
    n_classes = len(rows)
    out = [f"# Evaluation report ({task.replace('_', '-')})", ""]
    for key in ("model", "predictions", "data_dir", "split", "samples", "threshold", "thresholds_from"):
        if meta.get(key) not in (None, ""):
            out.append(f"- {key.replace('_', ' ')}: `{meta[key]}`")
    out.append(f"- {absent_classes_note(absent)}")
    if baseline:
        out.append(f"- {baseline_line(baseline)}: the score a model must beat to have learned anything")
    out += ["", "## Headline", "", "| metric | value |", "|---|---|"]
    for key, label in HEADLINE[task]:
        if key in result:
            out.append(f"| {label} (`{key}`) | {result[key]:.4f} |")
    per_class_keys = {f"{p}{j}" for p in metrics.MACRO_CLASS_PREFIXES + (metrics.AP_CLASS_PREFIX,)
                      for j in range(n_classes)}
    out += ["", "## All summary metrics", "", "| key | value |", "|---|---|"]
    for key, value in result.items():
        if key not in per_class_keys:
            out.append(f"| `{key}` | {value:.6f} |")
    cols = [c for c in ("support", "predicted", "precision", "recall", "f1", "f2", "f0_5", "accuracy",
                        "average_precision", "threshold") if rows and c in rows[0]]
    out += ["", "## Per class", "", "| # | class | " + " | ".join(cols) + " |",
            "|---|---|" + "---|" * len(cols)]
    for r in rows:
        cells = [str(r[c]) if isinstance(r[c], int) else f"{r[c]:.4f}" for c in cols]
        out.append(f"| {r['index']} | {r['class']} | " + " | ".join(cells) + " |")
    if images:
        out += ["", "## Plots", ""]
        for img in images:
            out += [f"![{img}]({img})", ""]
    return "\n".join(out).rstrip() + "\n"


# --------------------------------------------------------------------------------------------
# Plots


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def plot_per_class_f1(path: str, rows: list[dict], title: str) -> None:
    """Plots a horizontal bar chart of each class's F1 (``per_class_rows`` output) to the PNG ``path``."""
    names = [_short(r["class"], 45) for r in rows]
    f1 = [r["f1"] for r in rows]
    fig = _figure(9, 1.5 + 0.32 * len(rows))
    ax = fig.add_subplot()
    y = np.arange(len(rows))
    ax.barh(y, f1, color="tab:blue")
    for yi, v in zip(y, f1):
        ax.text(min(v + 0.01, 0.93), yi, f"{v:.3f}", va="center", fontsize=8)
    ax.set_yticks(y, names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("F1")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path)


def _decimate(x: np.ndarray, y: np.ndarray, max_points: int = 400):
    if len(x) <= max_points:
        return x, y
    idx = np.unique(np.linspace(0, len(x) - 1, max_points).astype(int))
    return x[idx], y[idx]


def plot_precision_recall(path: str, scores: np.ndarray, targets: np.ndarray, class_names: Sequence[str],
                          ap: np.ndarray) -> None:
    """Plots one precision-recall curve per class (and the micro average) to the PNG ``path``; AP in the legend.

    Args:
        path: the PNG file to write.
        scores: ``[N, C]`` scores.
        targets: ``[N, C]`` bool multi-hot (or one-hot) targets; classes without positives are skipped.
        class_names: the C class names.
        ap: ``[C]`` per-class average precision for the legend.
    """
    import matplotlib

    fig = _figure(11, 7)
    ax = fig.add_subplot()
    cmap = matplotlib.colormaps["tab20"]
    for j, name in enumerate(class_names):
        if not targets[:, j].any():
            continue
        p, r, _ = metrics.precision_recall_curve(scores[:, j], targets[:, j])
        r, p = _decimate(np.r_[0.0, r], np.r_[1.0, p])
        ax.step(r, p, where="post", lw=1, color=cmap(j % 20), label=f"{_short(name, 30)} ({ap[j]:.3f})")
    if targets.size and targets.any():
        p, r, _ = metrics.precision_recall_curve(scores.ravel(), targets.ravel())
        micro_ap = metrics.average_precision(scores.ravel(), targets.ravel())
        r, p = _decimate(np.r_[0.0, r], np.r_[1.0, p])
        ax.step(r, p, where="post", lw=2.5, color="black", label=f"micro average ({micro_ap:.3f})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title("Precision-recall curves (average precision)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(path)


def plot_confusion(path: str, cm: np.ndarray, class_names: Sequence[str]) -> None:
    """Plots the row-normalised ``[C, C]`` confusion matrix (recall on the diagonal) to the PNG ``path``.

    Counts are written in the non-zero cells when C <= 30.
    """
    c = len(class_names)
    norm = metrics.safe_divide(cm, cm.sum(axis=1, keepdims=True))
    size = 3 + 0.45 * c
    fig = _figure(size + 1.5, size)
    ax = fig.add_subplot()
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    if c <= 30:
        for i in range(c):
            for j in range(c):
                if cm[i, j]:
                    ax.text(j, i, str(int(cm[i, j])), ha="center", va="center", fontsize=6,
                            color="white" if norm[i, j] > 0.5 else "black")
    labels = [_short(n, 25) for n in class_names]
    ax.set_xticks(range(c), labels, rotation=90, fontsize=7)
    ax.set_yticks(range(c), labels, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("Confusion matrix (rows normalised, counts in cells)")
    fig.tight_layout()
    fig.savefig(path)


def cooccurrence(labels: np.ndarray) -> np.ndarray:
    """Computes the ``[C, C]`` float64 matrix P(class j | class i) from ``[N, C]`` multi-hot ``labels``.

    Entry (i, j) is how often j is present among the samples that have i (row 0 for a class that
    never occurs).
    """
    y = labels.astype(np.float64)
    counts = y.T @ y
    return metrics.safe_divide(counts, np.diag(counts)[:, None])


def plot_cooccurrence(path: str, targets: np.ndarray, predictions: np.ndarray, class_names: Sequence[str]) -> None:
    """Plots label co-occurrence in the targets and in the thresholded predictions side by side (PNG).

    ``targets`` and ``predictions`` are ``[N, C]`` bool multi-hot; see ``cooccurrence``.
    """
    c = len(class_names)
    size = 3 + 0.4 * c
    fig = _figure(2 * size + 1.5, size + 0.5)
    labels = [_short(n, 25) for n in class_names]
    for k, (mat, title) in enumerate(((targets, "true labels"), (predictions, "predicted labels"))):
        ax = fig.add_subplot(1, 2, k + 1)
        im = ax.imshow(cooccurrence(mat), cmap="viridis", vmin=0, vmax=1)
        ax.set_xticks(range(c), labels, rotation=90, fontsize=6)
        ax.set_yticks(range(c), labels if k == 0 else [""] * c, fontsize=6)
        ax.set_title(f"P(column | row), {title}", fontsize=9)
    fig.colorbar(im, ax=fig.axes, fraction=0.025, pad=0.02)
    fig.savefig(path, bbox_inches="tight")


# --------------------------------------------------------------------------------------------
# Everything


def write_report(out_dir: str, acc: metrics.MultiLabelAccumulator | metrics.SingleLabelAccumulator,
                 class_names: Sequence[str], meta: dict | None = None, plots: bool = True,
                 echo: Callable[[str], object] | None = print) -> dict:
    """Writes every report file for the filled accumulator ``acc`` into ``out_dir`` (see the module docstring).

    Args:
        out_dir: the folder to write into (created if missing).
        acc: a filled multi-label or single-label accumulator.
        class_names: the C class names, in class-index order.
        meta: extra entries for eval_details.json and report.md (model, split, source files...).
        plots: write the PNG plots.
        echo: called with the console table (None = silent).

    Returns:
        ``{"result": metrics dict, "files": [paths written], "table": console table}``.

    Raises:
        ValueError: ``len(class_names)`` differs from the accumulator's class count, or a metric
            is not finite.
        OSError: ``out_dir`` cannot be written.
    """
    meta = dict(meta or {})
    class_names = list(class_names)
    if len(class_names) != acc.num_classes:
        raise ValueError(f"{len(class_names)} class names for {acc.num_classes} classes")
    os.makedirs(out_dir, exist_ok=True)
    task = acc.task
    result = _check_finite(acc.result())
    per_class = acc.per_class()
    rows = per_class_rows(per_class, class_names)
    files = []

    def path(name):
        p = os.path.join(out_dir, name)
        files.append(p)
        return p

    write_json(path(EVAL_JSON), result)
    absent = [class_names[j] for j in acc.classes_without_positives()]
    constant = baseline.best_constant(task, per_class["support"], int(acc.n), class_names)
    details = {"task": str(task), "samples": int(acc.n), "classes": class_names, "classes_without_positives": absent,
               "best_constant_predictor": constant}
    if task == metrics.MULTI_LABEL:
        details["thresholds"] = [float(t) for t in acc.thresholds]
    else:
        details["confusion_matrix_rows_true_cols_pred"] = acc.confusion_matrix().tolist()
    details.update(meta)
    write_json(path(DETAILS_JSON), details)
    write_per_class_csv(path(PER_CLASS_CSV), rows)
    if task == metrics.SINGLE_LABEL:
        write_confusion_csv(path(CONFUSION_CSV), acc.confusion_matrix(), class_names)

    images = []
    if plots:
        plot_per_class_f1(path(F1_PNG), rows, f"Per-class F1 ({acc.n} samples)")
        images.append(F1_PNG)
        if acc.keep_scores and acc.n:
            scores = acc.scores()
            if task == metrics.MULTI_LABEL:
                targets = acc.targets()
            else:
                targets = acc.one_hot_targets()
            plot_precision_recall(path(PR_PNG), scores, targets, class_names, per_class["average_precision"])
            images.append(PR_PNG)
            if task == metrics.MULTI_LABEL:
                predictions = scores.astype(np.float64) >= acc.thresholds
                plot_cooccurrence(path(COOCCURRENCE_PNG), targets, predictions, class_names)
                images.append(COOCCURRENCE_PNG)
        if task == metrics.SINGLE_LABEL:
            plot_confusion(path(CONFUSION_PNG), acc.confusion_matrix(), class_names)
            images.append(CONFUSION_PNG)

    meta.setdefault("samples", acc.n)
    with open(path(REPORT_MD), "w") as f:
        f.write(markdown_report(task, result, rows, meta, images, absent=absent, baseline=constant))
    table = console_table(task, result, rows, samples=acc.n, absent=absent, baseline=constant)
    if echo:
        echo(table)
    return {"result": result, "files": files, "table": table}
