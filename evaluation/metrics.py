"""Multi-label and single-label classification metrics, accumulated over batches (numpy only).

Two accumulators, one per task, each with ``update(scores, targets)`` and ``result()``:

- ``MultiLabelAccumulator``: scores N x C (probabilities, e.g. sigmoid outputs), targets N x C
  multi-hot. ``result()`` returns every metric of the BigEarthNet evaluation under its key names
  (see ``multi_label_keys``) plus average precision (mAP).
- ``SingleLabelAccumulator``: scores N x C (e.g. softmax outputs), targets N class indices (or N x C
  one-hot). ``result()`` returns overall accuracy, Cohen's kappa, average accuracy, per-class
  precision / recall / F1 and average precision (see ``single_label_keys``); the confusion matrix is
  ``confusion_matrix()``. ``confusion_metrics(cm)`` computes the same from a confusion matrix alone.

Memory is bounded by the predictions: an accumulator keeps the scores (float32) and targets (bool)
it has seen, N x C each, for the ranking-free metrics that need them (average precision, threshold
selection, plots); never images. The thresholded counts and the per-sample sums are accumulated in
``update``; the ranking metrics are computed per batch in row chunks of bounded size.

Definitions (n = samples, C = classes, y = targets, s = scores, p = predictions)
--------------------------------------------------------------------------------
- Prediction: class j is predicted for sample i when ``s[i, j] >= threshold[j]`` (0.5 by default;
  a per-class vector is accepted, see ``select_thresholds``). Single-label prediction = argmax of
  the scores (the first index on ties).
- ``sample_*``: computed per sample from its tp / fp / fn, then averaged over samples (sklearn
  ``average="samples"``). ``micro_*``: from tp / fp / fn summed over the split. ``macro_*_class<j>``:
  per class j; ``macro_*_class_avg``: the unweighted mean over ALL C classes, classes without
  positives included (sklearn ``average="macro"``).
- precision = tp / (tp + fp), recall = tp / (tp + fn),
  F-beta = (1 + b^2) tp / ((1 + b^2) tp + b^2 fn + fp) for b = 1, 2 and 0.5,
  accuracy (``sample_accuracy``, ``micro_accuracy``, ``macro_accuracy_class*``) is the Jaccard index
  tp / (tp + fp + fn).
- ``hamming_loss``: fraction of wrong (sample, class) decisions. ``subset_accuracy``: fraction of
  samples whose predicted label set equals the true set exactly.
- ``one_error``: fraction of samples whose top-scored class (first index on ties) is not a true
  class.
- ``coverage``: sklearn ``coverage_error``: how many classes must be taken, from the top score
  down, to include every true class, ties counted pessimistically; the best value is the number
  of true classes (not that number minus one as in some textbooks). The BigEarthNet evaluation
  counts the same way (rank of a class = number of classes scoring at least as high, itself
  included), so its values and ours agree.
- ``ranking_loss``: sklearn ``label_ranking_loss``: fraction of (true, false) class pairs with
  s_true <= s_false (ties count as wrongly ordered).
- ``label_ranking_avg_precision``: sklearn ``label_ranking_average_precision_score``.
- ``label_cardinality``: mean number of true classes per sample.
- ``*_average_precision``: sklearn ``average_precision_score`` (step-wise area under the
  precision-recall curve, no interpolation), per class (``average_precision_class<j>``), and its
  averages: ``micro_average_precision`` (all (sample, class) decisions pooled),
  ``macro_average_precision`` (mean over ALL C classes, a class with no positive sample counting
  as AP 0: sklearn's ``average="macro"``, and the mAP the papers report),
  ``macro_average_precision_present_classes`` (mean over the classes with at least one positive
  sample only: AP is undefined for the others, so this is the mAP of the classes the split can
  measure; it equals ``macro_average_precision`` when every class occurs) and
  ``weighted_average_precision`` (weighted by class support, which leaves those classes out too).
  ``classes_without_positives()`` lists the classes concerned; the reports name them.
- Single-label: ``overall_accuracy`` = trace / n; ``cohen_kappa`` = (p_o - p_e) / (1 - p_e) with
  p_e from the row and column marginals (sklearn ``cohen_kappa_score``); ``average_accuracy`` =
  mean recall over the classes that occur in the targets (sklearn ``balanced_accuracy_score``);
  per-class and macro / weighted precision, recall and F1 as sklearn.

Edge cases (all values finite: no NaN ever reaches the JSON)
-------------------------------------------------------------
Every ratio whose denominator is 0 is 0, as sklearn with ``zero_division=0``:
- a class with no positives: its recall, F-scores, accuracy and average precision are 0 (its
  precision too unless it was predicted) and it still counts in the macro averages
  (``macro_average_precision`` included); it has weight 0 in the weighted averages and is left
  out of ``macro_average_precision_present_classes`` (0 when no class has a positive sample).
  Single-label: a class absent from the targets is such a class (one-hot targets).
- a sample with no true classes: recall 0; precision, F-scores and Jaccard 0 (even when nothing is
  predicted for it); it counts as exact (``subset_accuracy`` 1) when nothing is predicted;
  ``coverage`` 0, ``ranking_loss`` 0 and ``label_ranking_avg_precision`` 1 (sklearn; the ranking
  is meaningless, the original BigEarthNet code gave 0 here; the official BigEarthNet-19 splits
  have no such samples); ``one_error`` 1 (its top class is not a true class).
- a sample whose classes are all true: ``ranking_loss`` 0, ``label_ranking_avg_precision`` 1.
- all-zero predictions: precision 0 wherever nothing is predicted.
- single-label: p_e = 1 (one class in both targets and predictions) gives ``cohen_kappa`` 0
  (sklearn would return NaN); an empty accumulator gives 0 everywhere.
- the scores must be finite: a NaN or infinite score raises ValueError naming the batch. They are
  stored and ranked as float32 (scores equal in float32 are ties) and compared with the
  thresholds in float64.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from prep.datasets.spec import Task

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

MULTI_LABEL = Task.MULTI_LABEL
SINGLE_LABEL = Task.SINGLE_LABEL

# Averaged over samples (the BigEarthNet evaluation's first group).
SAMPLE_KEYS = (
    "sample_precision",
    "sample_recall",
    "sample_f1_score",
    "sample_f2_score",
    "sample_f0_5_score",
    "hamming_loss",
    "subset_accuracy",
    "sample_accuracy",
    "one_error",
    "coverage",
    "label_cardinality",
    "ranking_loss",
    "label_ranking_avg_precision",
)
# Accumulated over the split (its second group).
MICRO_KEYS = (
    "micro_precision",
    "micro_recall",
    "micro_f1_score",
    "micro_f2_score",
    "micro_f0_5_score",
    "micro_accuracy",
)
MACRO_AVG_KEYS = (
    "macro_precision_class_avg",
    "macro_recall_class_avg",
    "macro_f1_score_class_avg",
    "macro_f2_score_class_avg",
    "macro_f0_5_score_class_avg",
    "macro_accuracy_class_avg",
)
# Per class: prefix + str(j).
MACRO_CLASS_PREFIXES = (
    "macro_precision_class",
    "macro_recall_class",
    "macro_f1_score_class",
    "macro_f2_score_class",
    "macro_f0_5_score_class",
    "macro_accuracy_class",
)
AP_KEYS = ("micro_average_precision", "macro_average_precision", "macro_average_precision_present_classes",
           "weighted_average_precision")
AP_CLASS_PREFIX = "average_precision_class"

SINGLE_KEYS = (
    "overall_accuracy",
    "cohen_kappa",
    "average_accuracy",
    "macro_precision_class_avg",
    "macro_recall_class_avg",
    "macro_f1_score_class_avg",
    "weighted_precision",
    "weighted_recall",
    "weighted_f1_score",
)
SINGLE_CLASS_PREFIXES = ("macro_precision_class", "macro_recall_class", "macro_f1_score_class")

# Elements (rows x C x C) of one pairwise comparison block in the ranking metrics.
_PAIRWISE_BLOCK = 1 << 22


def multi_label_keys(num_classes: int, average_precision: bool = True) -> list[str]:
    """Lists every key ``MultiLabelAccumulator.result()`` returns, in report order.

    The sample, micro and macro keys are those of the BigEarthNet evaluation's eval_result.json.

    Args:
        num_classes: C; the per-class keys run ``<prefix>0`` .. ``<prefix>{C-1}``.
        average_precision: include ``AP_KEYS`` and ``average_precision_class<j>`` (False when the
            accumulator keeps no scores).
    """
    keys = list(SAMPLE_KEYS) + list(MICRO_KEYS) + list(MACRO_AVG_KEYS)
    keys += [f"{p}{j}" for p in MACRO_CLASS_PREFIXES for j in range(num_classes)]
    if average_precision:
        keys += list(AP_KEYS) + [f"{AP_CLASS_PREFIX}{j}" for j in range(num_classes)]
    return keys


def single_label_keys(num_classes: int, average_precision: bool = True) -> list[str]:
    """Lists every key ``SingleLabelAccumulator.result()`` returns, in report order.

    Args:
        num_classes: C; the per-class keys run ``<prefix>0`` .. ``<prefix>{C-1}``.
        average_precision: include ``AP_KEYS`` and ``average_precision_class<j>``.
    """
    keys = list(SINGLE_KEYS) + [f"{p}{j}" for p in SINGLE_CLASS_PREFIXES for j in range(num_classes)]
    if average_precision:
        keys += list(AP_KEYS) + [f"{AP_CLASS_PREFIX}{j}" for j in range(num_classes)]
    return keys


def safe_divide(num: ArrayLike, den: ArrayLike) -> np.ndarray:
    """Divides ``num / den`` elementwise in float64, giving 0 where ``den == 0`` (sklearn's zero_division=0).

    Returns:
        float64 array of the broadcast shape of ``num`` and ``den`` (0-d for scalars).
    """
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.zeros(np.broadcast(num, den).shape, dtype=np.float64)
    np.divide(num, den, out=out, where=den != 0)
    return out


def fbeta_from_counts(tp: ArrayLike, fp: ArrayLike, fn: ArrayLike, beta: float) -> np.ndarray:
    """Computes F-beta from counts: (1 + b^2) tp / ((1 + b^2) tp + b^2 fn + fp), 0 when undefined.

    Args:
        tp: true positives (scalar or array).
        fp: false positives, broadcastable with ``tp``.
        fn: false negatives, broadcastable with ``tp``.
        beta: recall is weighted beta times as much as precision (1, 2 and 0.5 in the BigEarthNet keys).

    Returns:
        float64 array of the broadcast shape (0-d for scalars).
    """
    b2 = beta * beta
    tp = np.asarray(tp, dtype=np.float64)
    return safe_divide((1.0 + b2) * tp, (1.0 + b2) * tp + b2 * np.asarray(fn, np.float64) + np.asarray(fp, np.float64))


# --------------------------------------------------------------------------------------------
# Ranking and average precision


def ranking_sums(scores: np.ndarray, targets: np.ndarray) -> tuple[float, float, float]:
    """Sums over samples of coverage, ranking loss and label ranking average precision.

    The rank of class j in sample i is the number of classes scoring at least s[i, j] (itself
    included). Works on row blocks so that memory stays near ``_PAIRWISE_BLOCK`` floats.
    """
    n, c = scores.shape
    if n == 0:
        return 0.0, 0.0, 0.0
    rows = max(1, _PAIRWISE_BLOCK // max(1, c * c))
    cov = rl = lrap = 0.0
    for start in range(0, n, rows):
        s = scores[start:start + rows]
        y = targets[start:start + rows].astype(np.float32)
        # ge[i, j, k] = s[i, k] >= s[i, j]
        ge = (s[:, None, :] >= s[:, :, None]).astype(np.float32)
        rank = ge.sum(axis=2)  # [i, j]
        nlab = y.sum(axis=1)
        # coverage: largest rank among the true classes (0 without true classes)
        cov += float((rank * y).max(axis=1).sum())
        # true classes ranked at or above each class: [i, j] = sum_k ge[i, j, k] y[i, k]
        true_above = np.matmul(ge, y[:, :, None])[:, :, 0]
        neg = c - nlab
        # ranking loss: pairs (true j, false k) with s_k >= s_j
        bad = ((rank - true_above) * y).sum(axis=1)
        rl += float(safe_divide(bad, nlab * neg).sum())
        # LRAP: mean over true j of true_above / rank; 1 when all or none are true
        per = safe_divide((safe_divide(true_above, rank) * y).sum(axis=1), nlab)
        per = np.where((nlab == 0) | (neg == 0), 1.0, per)
        lrap += float(per.sum())
    return cov, rl, lrap


def precision_recall_curve(scores: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Computes precision and recall at every distinct score threshold, high to low.

    Args:
        scores: N scores of one binary problem (flattened if not 1-D).
        targets: N binary targets (bool or 0/1), flattened likewise.

    Returns:
        (precision, recall, thresholds), each ``[T]`` for the T distinct scores, where entry t
        counts the samples scoring >= thresholds[t]. With no positives recall is 0 everywhere;
        with N = 0 all three are empty.
    """
    scores = np.asarray(scores).ravel()
    if not np.issubdtype(scores.dtype, np.floating):
        scores = scores.astype(np.float64)
    targets = np.asarray(targets).ravel().astype(bool)
    if scores.size == 0:
        empty = np.zeros(0)
        return empty, empty, empty
    # Ties are grouped below, so the order inside a run of equal scores does not matter.
    order = np.argsort(scores)[::-1]
    s = scores[order]
    y = targets[order]
    last = np.flatnonzero(np.r_[s[1:] != s[:-1], True])  # last index of each run of equal scores
    tps = np.cumsum(y, dtype=np.float64)[last]
    predicted = last + 1.0
    positives = tps[-1]
    return safe_divide(tps, predicted), safe_divide(tps, positives), s[last]


def average_precision(scores: np.ndarray, targets: np.ndarray) -> float:
    """Computes sklearn's average_precision_score for one binary problem: sum_t (R_t - R_{t-1}) P_t.

    Step-wise, without interpolation; 0 without positives. ``scores`` and ``targets`` are N values each.
    """
    precision, recall, _ = precision_recall_curve(scores, targets)
    if recall.size == 0 or recall[-1] == 0:
        return 0.0
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def average_precision_summary(scores: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, dict[str, float]]:
    """Per-class average precision and its averages (the keys of ``AP_KEYS``).

    Args:
      scores: N x C scores (any real values; only their order matters).
      targets: N x C multi-hot (or one-hot) targets, bool or 0/1.

    Returns:
      (per-class AP, length C float64; 0 for a class with no positive sample) and
      {key: value} for ``micro_average_precision``, ``macro_average_precision`` (mean over all
      C classes), ``macro_average_precision_present_classes`` (mean over the classes with a
      positive sample; 0 when there is none) and ``weighted_average_precision``.
    """
    targets = targets.astype(bool)
    c = scores.shape[1]
    per_class = np.array([average_precision(scores[:, j], targets[:, j]) for j in range(c)], dtype=np.float64)
    support = targets.sum(axis=0).astype(np.float64)
    present = support > 0
    total = support.sum()
    summary = {
        "micro_average_precision": average_precision(scores.ravel(), targets.ravel()),
        "macro_average_precision": float(per_class.mean()) if c else 0.0,
        "macro_average_precision_present_classes": float(per_class[present].mean()) if present.any() else 0.0,
        "weighted_average_precision": float((per_class * support).sum() / total) if total else 0.0,
    }
    return per_class, summary


def select_thresholds(scores: np.ndarray, targets: np.ndarray, default: float = 0.5) -> np.ndarray:
    """Per-class thresholds maximizing F1 on (validation) scores and multi-hot targets.

    For each class the best cut of its scores, high to low, is found; the threshold is placed
    midway between the lowest selected score and the next lower distinct score (just below the
    lowest score when every sample is selected), so that ``s >= threshold`` reproduces the best
    cut on these scores. Classes without positives (F1 is 0 at every cut) keep ``default``.
    Ties in F1 go to the highest threshold.
    """
    scores = np.asarray(scores, dtype=np.float64)
    targets = np.asarray(targets).astype(bool)
    if scores.ndim != 2 or scores.shape != targets.shape:
        raise ValueError(f"select_thresholds: scores {scores.shape} and targets {targets.shape} must both be N x C")
    out = np.full(scores.shape[1], float(default), dtype=np.float64)
    for j in range(scores.shape[1]):
        precision, recall, thr = precision_recall_curve(scores[:, j], targets[:, j])
        if thr.size == 0 or recall[-1] == 0:
            continue
        f1 = safe_divide(2 * precision * recall, precision + recall)
        best = int(np.argmax(f1))
        if best + 1 < thr.size:
            out[j] = 0.5 * (thr[best] + thr[best + 1])
        else:
            out[j] = float(np.nextafter(thr[best], -np.inf))
    return out


# --------------------------------------------------------------------------------------------
# Accumulators


def _as_scores(scores, name: str, num_classes: int, batch: int) -> np.ndarray:
    s = np.asarray(scores)
    if s.ndim != 2 or s.shape[1] != num_classes:
        raise ValueError(f"{name}: batch {batch}: scores must be N x {num_classes}, got shape {s.shape}")
    s = s.astype(np.float32, copy=False)
    if not np.isfinite(s).all():
        raise ValueError(f"{name}: batch {batch}: scores contain NaN or infinite values")
    return s


class MultiLabelAccumulator:
    """Streaming multi-label metrics: ``update(scores, targets)`` per batch, then ``result()``.

    ``threshold`` is a float or a length-C vector; ``keep_scores=False`` drops the stored
    predictions (and with them average precision, threshold selection and the plots).
    """

    task = MULTI_LABEL

    def __init__(self, num_classes: int, threshold: float | Sequence[float] = 0.5, keep_scores: bool = True):
        self.num_classes = int(num_classes)
        thr = np.asarray(threshold, dtype=np.float64)
        if thr.ndim == 0:
            thr = np.full(self.num_classes, float(thr))
        if thr.shape != (self.num_classes,) or not np.isfinite(thr).all():
            raise ValueError(f"threshold must be a number or {self.num_classes} finite numbers, got {threshold!r}")
        self.thresholds = thr
        self.keep_scores = keep_scores
        self.n = 0
        self._batches = 0
        c = self.num_classes
        self.tp = np.zeros(c, np.int64)
        self.fp = np.zeros(c, np.int64)
        self.fn = np.zeros(c, np.int64)
        self._sums = dict.fromkeys(SAMPLE_KEYS, 0.0)
        self._scores: list[np.ndarray] = []
        self._targets: list[np.ndarray] = []
        self._ap = None

    def update(self, scores: ArrayLike, targets: ArrayLike) -> None:
        """Adds one batch.

        Args:
            scores: ``[N, C]`` finite scores, e.g. sigmoid probabilities (stored as float32, compared
                with the thresholds in float64).
            targets: ``[N, C]`` multi-hot targets, bool or 0/1.

        Raises:
            ValueError: scores not ``[N, C]``, NaN or infinite scores, or targets of another shape;
                the message names the batch (counted from 1).
        """
        self._batches += 1
        s = _as_scores(scores, "MultiLabelAccumulator", self.num_classes, self._batches)
        y = np.asarray(targets)
        if y.shape != s.shape:
            raise ValueError(f"MultiLabelAccumulator: batch {self._batches}: targets shape {y.shape} != scores shape {s.shape}")
        y = y.astype(bool)
        if len(s) == 0:
            return
        p = s.astype(np.float64) >= self.thresholds
        tp_m = p & y
        self.tp += tp_m.sum(axis=0)
        self.fp += (p & ~y).sum(axis=0)
        self.fn += (~p & y).sum(axis=0)

        tp = tp_m.sum(axis=1).astype(np.float64)
        npred = p.sum(axis=1).astype(np.float64)
        nlab = y.sum(axis=1).astype(np.float64)
        wrong = npred + nlab - 2 * tp
        fp, fn = npred - tp, nlab - tp
        sums = self._sums
        sums["sample_precision"] += safe_divide(tp, npred).sum()
        sums["sample_recall"] += safe_divide(tp, nlab).sum()
        sums["sample_f1_score"] += fbeta_from_counts(tp, fp, fn, 1.0).sum()
        sums["sample_f2_score"] += fbeta_from_counts(tp, fp, fn, 2.0).sum()
        sums["sample_f0_5_score"] += fbeta_from_counts(tp, fp, fn, 0.5).sum()
        sums["hamming_loss"] += wrong.sum() / self.num_classes
        sums["subset_accuracy"] += float((wrong == 0).sum())
        sums["sample_accuracy"] += safe_divide(tp, npred + nlab - tp).sum()
        top = np.argmax(s, axis=1)
        sums["one_error"] += float((~y[np.arange(len(y)), top]).sum())
        sums["label_cardinality"] += nlab.sum()
        cov, rl, lrap = ranking_sums(s, y)
        sums["coverage"] += cov
        sums["ranking_loss"] += rl
        sums["label_ranking_avg_precision"] += lrap
        self.n += len(s)
        if self.keep_scores:
            self._scores.append(s.copy())
            self._targets.append(y)

    def scores(self) -> np.ndarray:
        """Returns the stored scores, ``[N, C]`` float32 in update order (``[0, C]`` if none or ``keep_scores=False``)."""
        return np.concatenate(self._scores) if self._scores else np.zeros((0, self.num_classes), np.float32)

    def targets(self) -> np.ndarray:
        """Returns the stored targets, ``[N, C]`` bool multi-hot in update order (``[0, C]`` if none kept)."""
        return np.concatenate(self._targets) if self._targets else np.zeros((0, self.num_classes), bool)

    def classes_without_positives(self) -> list[int]:
        """Lists the classes no sample seen so far has as a true class (their AP is undefined, see the module doc)."""
        return [int(j) for j in np.flatnonzero(self.tp + self.fn == 0)]

    def per_class(self) -> dict[str, np.ndarray]:
        """Returns per-class ``[C]`` arrays keyed by metric name.

        Keys: support, predicted, tp, fp, fn (int64); precision, recall, f1, f2, f0_5, accuracy
        (Jaccard), threshold and, when scores are kept, average_precision (float64).
        """
        tp, fp, fn = self.tp, self.fp, self.fn
        out = {
            "support": tp + fn,
            "predicted": tp + fp,
            "tp": tp.copy(),
            "fp": fp.copy(),
            "fn": fn.copy(),
            "precision": safe_divide(tp, tp + fp),
            "recall": safe_divide(tp, tp + fn),
            "f1": fbeta_from_counts(tp, fp, fn, 1.0),
            "f2": fbeta_from_counts(tp, fp, fn, 2.0),
            "f0_5": fbeta_from_counts(tp, fp, fn, 0.5),
            "accuracy": safe_divide(tp, tp + fp + fn),
            "threshold": self.thresholds.copy(),
        }
        if self.keep_scores:
            out["average_precision"] = self._average_precision()[0]
        return out

    def _average_precision(self):
        if self._ap is None or self._ap[0] != self.n:
            self._ap = (self.n, average_precision_summary(self.scores(), self.targets()))
        return self._ap[1]

    def result(self) -> dict[str, float]:
        """Returns every metric under its ``multi_label_keys`` key (definitions in the module docstring).

        All values are finite; without samples they are 0. Average precision is included only when
        the accumulator keeps its scores.
        """
        n = self.n
        res = {k: (float(self._sums[k]) / n if n else 0.0) for k in SAMPLE_KEYS}
        tp, fp, fn = (float(a.sum()) for a in (self.tp, self.fp, self.fn))
        mp = float(safe_divide(tp, tp + fp))
        mr = float(safe_divide(tp, tp + fn))
        res["micro_precision"] = mp
        res["micro_recall"] = mr
        for key, beta in (("micro_f1_score", 1.0), ("micro_f2_score", 2.0), ("micro_f0_5_score", 0.5)):
            res[key] = float(fbeta_from_counts(tp, fp, fn, beta))
        res["micro_accuracy"] = float(safe_divide(tp, tp + fp + fn))
        pc = self.per_class()
        names = {"precision": "macro_precision_class", "recall": "macro_recall_class", "f1": "macro_f1_score_class",
                 "f2": "macro_f2_score_class", "f0_5": "macro_f0_5_score_class", "accuracy": "macro_accuracy_class"}
        for field, prefix in names.items():
            res[prefix + "_avg"] = float(pc[field].mean()) if self.num_classes else 0.0
        for field, prefix in names.items():
            for j, v in enumerate(pc[field]):
                res[f"{prefix}{j}"] = float(v)
        if self.keep_scores:
            _, summary = self._average_precision()
            res.update(summary)
            for j, v in enumerate(pc["average_precision"]):
                res[f"{AP_CLASS_PREFIX}{j}"] = float(v)
        return {k: res[k] for k in multi_label_keys(self.num_classes, self.keep_scores)}


def confusion_metrics(cm: ArrayLike) -> dict[str, float]:
    """Computes the single-label metrics (``SINGLE_KEYS`` and the per-class keys) from a confusion matrix.

    OA = trace / n; Cohen's kappa (Cohen, 1960) = (p_o - p_e) / (1 - p_e), 0 when p_e = 1;
    average accuracy = mean recall over the classes present in the targets; precision, recall and
    F1 per class, macro- and support-weighted-averaged as sklearn with ``zero_division=0``.

    Args:
        cm: ``[C, C]`` counts, rows = true class, columns = predicted class.

    Raises:
        ValueError: ``cm`` is not square.
    """
    cm = np.asarray(cm, dtype=np.float64)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"confusion matrix must be square, got shape {cm.shape}")
    c = cm.shape[0]
    n = cm.sum()
    tp = np.diag(cm)
    true_per_class = cm.sum(axis=1)
    pred_per_class = cm.sum(axis=0)
    precision = safe_divide(tp, pred_per_class)
    recall = safe_divide(tp, true_per_class)
    f1 = fbeta_from_counts(tp, pred_per_class - tp, true_per_class - tp, 1.0)
    po = float(safe_divide(tp.sum(), n))
    pe = float(safe_divide((true_per_class * pred_per_class).sum(), n * n))
    present = true_per_class > 0
    res = {
        "overall_accuracy": po,
        "cohen_kappa": (po - pe) / (1.0 - pe) if n and pe < 1.0 else 0.0,
        "average_accuracy": float(recall[present].mean()) if present.any() else 0.0,
        "macro_precision_class_avg": float(precision.mean()) if c else 0.0,
        "macro_recall_class_avg": float(recall.mean()) if c else 0.0,
        "macro_f1_score_class_avg": float(f1.mean()) if c else 0.0,
        "weighted_precision": float(safe_divide((precision * true_per_class).sum(), n)),
        "weighted_recall": float(safe_divide((recall * true_per_class).sum(), n)),
        "weighted_f1_score": float(safe_divide((f1 * true_per_class).sum(), n)),
    }
    for prefix, values in zip(SINGLE_CLASS_PREFIXES, (precision, recall, f1)):
        for j, v in enumerate(values):
            res[f"{prefix}{j}"] = float(v)
    return res


class SingleLabelAccumulator:
    """Streaming single-label metrics: ``update(scores, targets)`` per batch, then ``result()``.

    targets are N class indices or N x C one-hot rows. The prediction is the argmax of the scores.
    """

    task = SINGLE_LABEL

    def __init__(self, num_classes: int, keep_scores: bool = True):
        self.num_classes = int(num_classes)
        self.keep_scores = keep_scores
        self.n = 0
        self._batches = 0
        self.cm = np.zeros((self.num_classes, self.num_classes), np.int64)
        self._scores: list[np.ndarray] = []
        self._targets: list[np.ndarray] = []
        self._ap = None

    def update(self, scores: ArrayLike, targets: ArrayLike) -> None:
        """Adds one batch; the prediction is the argmax of each row of ``scores``.

        Args:
            scores: ``[N, C]`` finite scores, e.g. softmax probabilities.
            targets: ``[N]`` class indices in 0..C-1 (integers, of any dtype) or ``[N, C]`` one-hot rows.

        Raises:
            ValueError: scores not ``[N, C]``, NaN or infinite scores, targets of the wrong shape,
                not integers, or outside 0..C-1; the message names the batch (counted from 1).
        """
        self._batches += 1
        c = self.num_classes
        s = _as_scores(scores, "SingleLabelAccumulator", c, self._batches)
        t = np.asarray(targets)
        if t.ndim == 2 and t.shape == s.shape:
            t = np.argmax(t, axis=1)
        if t.ndim != 1 or len(t) != len(s):
            raise ValueError(f"SingleLabelAccumulator: batch {self._batches}: targets must be {len(s)} class indices, "
                             f"got shape {t.shape}")
        if len(s) == 0:
            return
        if not np.issubdtype(t.dtype, np.integer):
            if not np.all(np.equal(np.mod(t, 1), 0)):
                raise ValueError(f"SingleLabelAccumulator: batch {self._batches}: targets are not integers")
        t = t.astype(np.int64)
        if t.min() < 0 or t.max() >= c:
            raise ValueError(f"SingleLabelAccumulator: batch {self._batches}: target index outside 0..{c - 1}")
        pred = np.argmax(s, axis=1)
        self.cm += np.bincount(t * c + pred, minlength=c * c).reshape(c, c)
        self.n += len(s)
        if self.keep_scores:
            self._scores.append(s.copy())
            self._targets.append(t)

    def scores(self) -> np.ndarray:
        """Returns the stored scores, ``[N, C]`` float32 in update order (``[0, C]`` if none or ``keep_scores=False``)."""
        return np.concatenate(self._scores) if self._scores else np.zeros((0, self.num_classes), np.float32)

    def targets(self) -> np.ndarray:
        """Returns the stored targets, ``[N]`` int64 class indices in update order (``[0]`` if none kept)."""
        return np.concatenate(self._targets) if self._targets else np.zeros(0, np.int64)

    def confusion_matrix(self) -> np.ndarray:
        """Returns a copy of the ``[C, C]`` int64 confusion matrix (rows = true class, columns = predicted)."""
        return self.cm.copy()

    def classes_without_positives(self) -> list[int]:
        """Lists the classes that are no sample's true class so far (their AP is undefined, see the module doc)."""
        return [int(j) for j in np.flatnonzero(self.cm.sum(axis=1) == 0)]

    def one_hot_targets(self) -> np.ndarray:
        """Returns the stored targets as ``[N, C]`` bool one-hot rows."""
        t = self.targets()
        out = np.zeros((len(t), self.num_classes), bool)
        out[np.arange(len(t)), t] = True
        return out

    def per_class(self) -> dict[str, np.ndarray]:
        """Returns per-class ``[C]`` arrays keyed by metric name.

        Keys: support, predicted, tp, fp, fn (int64); precision, recall, f1 and, when scores are kept,
        average_precision (float64).
        """
        cm = self.cm
        tp = np.diag(cm).copy()
        support = cm.sum(axis=1)
        predicted = cm.sum(axis=0)
        out = {
            "support": support,
            "predicted": predicted,
            "tp": tp,
            "fp": predicted - tp,
            "fn": support - tp,
            "precision": safe_divide(tp, predicted),
            "recall": safe_divide(tp, support),
            "f1": fbeta_from_counts(tp, predicted - tp, support - tp, 1.0),
        }
        if self.keep_scores:
            out["average_precision"] = self._average_precision()[0]
        return out

    def _average_precision(self):
        if self._ap is None or self._ap[0] != self.n:
            self._ap = (self.n, average_precision_summary(self.scores(), self.one_hot_targets()))
        return self._ap[1]

    def result(self) -> dict[str, float]:
        """Returns every metric under its ``single_label_keys`` key (OA, kappa, AA, per-class P/R/F1, AP).

        All values are finite; an empty accumulator gives 0 everywhere.
        """
        res = confusion_metrics(self.cm)
        if self.keep_scores:
            per_class, summary = self._average_precision()
            res.update(summary)
            for j, v in enumerate(per_class):
                res[f"{AP_CLASS_PREFIX}{j}"] = float(v)
        return {k: res[k] for k in single_label_keys(self.num_classes, self.keep_scores)}


def make_accumulator(task: str, num_classes: int, threshold: float | Sequence[float] = 0.5,
                     keep_scores: bool = True) -> MultiLabelAccumulator | SingleLabelAccumulator:
    """Makes the accumulator for ``task`` (a ``Task`` or its value, "multi_label" / "single_label").

    Args:
        task: the learning task.
        num_classes: C.
        threshold: multi-label decision threshold, one value or C values (ignored for single-label).
        keep_scores: store the scores for average precision, threshold selection and plots.

    Raises:
        ValueError: for any other task, or an invalid threshold.
    """
    if task == MULTI_LABEL:
        return MultiLabelAccumulator(num_classes, threshold=threshold, keep_scores=keep_scores)
    if task == SINGLE_LABEL:
        return SingleLabelAccumulator(num_classes, keep_scores=keep_scores)
    raise ValueError(f"unknown task {task!r}: expected {MULTI_LABEL!r} or {SINGLE_LABEL!r}")


def compute(task: str, scores: ArrayLike, targets: ArrayLike, threshold: float | Sequence[float] = 0.5) -> dict[str, float]:
    """Computes all metrics of ``task`` over whole arrays at once (one update).

    Args:
        task: "multi_label" or "single_label".
        scores: ``[N, C]`` finite scores.
        targets: ``[N, C]`` multi-hot (multi-label) or ``[N]`` class indices / ``[N, C]`` one-hot.
        threshold: multi-label decision threshold, one value or C values.

    Returns:
        ``result()`` of the filled accumulator.

    Raises:
        ValueError: unknown task, or arrays the accumulator rejects.
    """
    scores = np.asarray(scores)
    acc = make_accumulator(task, scores.shape[1], threshold=threshold)
    acc.update(scores, targets)
    return acc.result()
