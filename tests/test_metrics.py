"""evaluation.metrics against scikit-learn on random, adversarial and hypothesis-generated inputs,
the documented edge cases, and the So2Sat LCZ42 baseline's published confusion matrix."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from evaluation import metrics

REFERENCE = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "reference")
SO2SAT_BASELINE = os.path.join(REFERENCE, "so2sat", "baseline_sen2LCZ_drop_results.json")


def sklearn_multi_label(scores, targets, threshold=0.5) -> dict[str, float]:
    """Every multi-label key computed with scikit-learn (plus numpy for the two it lacks)."""
    s = np.asarray(scores, np.float32)
    y = np.asarray(targets).astype(int)
    p = (s.astype(np.float64) >= np.broadcast_to(threshold, (s.shape[1],))).astype(int)
    n, c = y.shape
    ref = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for avg, prefix in (("samples", "sample"), ("micro", "micro")):
            ref[f"{prefix}_precision"] = skm.precision_score(y, p, average=avg, zero_division=0)
            ref[f"{prefix}_recall"] = skm.recall_score(y, p, average=avg, zero_division=0)
            ref[f"{prefix}_f1_score"] = skm.f1_score(y, p, average=avg, zero_division=0)
            ref[f"{prefix}_f2_score"] = skm.fbeta_score(y, p, beta=2, average=avg, zero_division=0)
            ref[f"{prefix}_f0_5_score"] = skm.fbeta_score(y, p, beta=0.5, average=avg, zero_division=0)
            ref[f"{prefix}_accuracy"] = skm.jaccard_score(y, p, average=avg, zero_division=0)
        ref["hamming_loss"] = skm.hamming_loss(y, p)
        ref["subset_accuracy"] = skm.accuracy_score(y, p)
        ref["one_error"] = float(np.mean(y[np.arange(n), np.argmax(s, axis=1)] == 0))
        ref["coverage"] = skm.coverage_error(y, s)
        ref["label_cardinality"] = float(y.sum(axis=1).mean())
        ref["ranking_loss"] = skm.label_ranking_loss(y, s)
        ref["label_ranking_avg_precision"] = skm.label_ranking_average_precision_score(y, s)
        per_class = {
            "macro_precision_class": skm.precision_score(y, p, average=None, zero_division=0),
            "macro_recall_class": skm.recall_score(y, p, average=None, zero_division=0),
            "macro_f1_score_class": skm.f1_score(y, p, average=None, zero_division=0),
            "macro_f2_score_class": skm.fbeta_score(y, p, beta=2, average=None, zero_division=0),
            "macro_f0_5_score_class": skm.fbeta_score(y, p, beta=0.5, average=None, zero_division=0),
            "macro_accuracy_class": skm.jaccard_score(y, p, average=None, zero_division=0),
        }
        for prefix, values in per_class.items():
            ref[prefix + "_avg"] = float(np.mean(values))
            for j, v in enumerate(values):
                ref[f"{prefix}{j}"] = v
        ap = np.array([skm.average_precision_score(y[:, j], s[:, j]) if y[:, j].any() else 0.0 for j in range(c)])
        for j, v in enumerate(ap):
            ref[f"average_precision_class{j}"] = v
        ref["macro_average_precision"] = float(ap.mean())
        present = [skm.average_precision_score(y[:, j], s[:, j]) for j in range(c) if y[:, j].any()]
        ref["macro_average_precision_present_classes"] = float(np.mean(present)) if present else 0.0
        ref["micro_average_precision"] = skm.average_precision_score(y.ravel(), s.ravel()) if y.any() else 0.0
        support = y.sum(axis=0)
        ref["weighted_average_precision"] = float((ap * support).sum() / support.sum()) if support.sum() else 0.0
    return {k: float(v) for k, v in ref.items()}


def sklearn_single_label(scores, targets) -> dict[str, float]:
    s = np.asarray(scores, np.float32)
    t = np.asarray(targets)
    c = s.shape[1]
    p = np.argmax(s, axis=1)
    labels = list(range(c))
    ref = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref["overall_accuracy"] = skm.accuracy_score(t, p)
        kappa = skm.cohen_kappa_score(t, p, labels=labels)
        ref["cohen_kappa"] = 0.0 if np.isnan(kappa) else kappa
        ref["average_accuracy"] = skm.balanced_accuracy_score(t, p)
        prec, rec, f1, _ = skm.precision_recall_fscore_support(t, p, labels=labels, average=None, zero_division=0)
        for avg in ("macro", "weighted"):
            mp, mr, mf, _ = skm.precision_recall_fscore_support(t, p, labels=labels, average=avg, zero_division=0)
            if avg == "macro":
                ref.update(macro_precision_class_avg=mp, macro_recall_class_avg=mr, macro_f1_score_class_avg=mf)
            else:
                ref.update(weighted_precision=mp, weighted_recall=mr, weighted_f1_score=mf)
        for prefix, values in zip(metrics.SINGLE_CLASS_PREFIXES, (prec, rec, f1)):
            for j, v in enumerate(values):
                ref[f"{prefix}{j}"] = v
        onehot = np.eye(c, dtype=int)[t]
        ap = np.array([skm.average_precision_score(onehot[:, j], s[:, j]) if onehot[:, j].any() else 0.0
                       for j in range(c)])
        for j, v in enumerate(ap):
            ref[f"average_precision_class{j}"] = v
        ref["macro_average_precision"] = float(ap.mean())
        present = [skm.average_precision_score(onehot[:, j], s[:, j]) for j in range(c) if onehot[:, j].any()]
        ref["macro_average_precision_present_classes"] = float(np.mean(present)) if present else 0.0
        ref["micro_average_precision"] = skm.average_precision_score(onehot.ravel(), s.ravel())
        support = onehot.sum(axis=0)
        ref["weighted_average_precision"] = float((ap * support).sum() / support.sum())
    return {k: float(v) for k, v in ref.items()}


def assert_matches(ours: dict, ref: dict, tol=1e-9):
    missing = set(ref) - set(ours)
    assert not missing, f"keys missing from our result: {sorted(missing)}"
    bad = {k: (ours[k], ref[k]) for k in ref if not np.isclose(ours[k], ref[k], rtol=0, atol=tol)}
    assert not bad, f"differ from scikit-learn: {bad}"


def adversarial_multi_label(rng, n=300, c=7):
    """Ties everywhere, a class with no positives, a class always positive, empty and full rows,
    rows predicted empty, scores exactly at the threshold."""
    s = (rng.integers(0, 11, size=(n, c)) / 10).astype(np.float32)  # many ties, many 0.5s
    y = rng.random((n, c)) < 0.35
    y[:, 2] = False          # no positives
    y[:, 4] = True           # every sample positive
    y[:10] = False           # samples with no labels
    y[10:15] = True          # samples with every label
    s[15:25] = 0.0           # all-zero predictions (nothing predicted)
    s[25:30] = 0.7           # one score repeated over the row
    return s, y


# --------------------------------------------------------------------------------------------
# Multi-label


def test_key_names_are_the_upstream_ones():
    keys = metrics.multi_label_keys(19)
    for k in ("sample_precision", "sample_recall", "sample_f1_score", "sample_f2_score", "sample_f0_5_score",
              "hamming_loss", "subset_accuracy", "sample_accuracy", "one_error", "coverage", "label_cardinality",
              "ranking_loss", "label_ranking_avg_precision", "micro_precision", "micro_recall", "micro_f1_score",
              "micro_f2_score", "micro_f0_5_score", "micro_accuracy", "macro_precision_class_avg",
              "macro_recall_class_avg", "macro_f1_score_class_avg", "macro_f2_score_class_avg",
              "macro_f0_5_score_class_avg", "macro_accuracy_class_avg", "macro_precision_class0",
              "macro_f0_5_score_class18", "macro_accuracy_class18", "micro_average_precision",
              "macro_average_precision", "weighted_average_precision"):
        assert k in keys
    assert len(keys) == 13 + 6 + 6 + 6 * 19 + 4 + 19
    assert len(set(keys)) == len(keys)


@pytest.mark.parametrize("seed,n,c,density", [(0, 400, 19, 0.15), (1, 97, 5, 0.5), (2, 50, 43, 0.05), (3, 1, 3, 0.5)])
def test_multi_label_random_matches_sklearn(seed, n, c, density):
    rng = np.random.default_rng(seed)
    s = rng.random((n, c)).astype(np.float32)
    y = rng.random((n, c)) < density
    res = metrics.compute(metrics.MULTI_LABEL, s, y)
    assert list(res) == metrics.multi_label_keys(c)
    assert_matches(res, sklearn_multi_label(s, y))


def test_multi_label_adversarial_matches_sklearn():
    rng = np.random.default_rng(7)
    s, y = adversarial_multi_label(rng)
    assert_matches(metrics.compute(metrics.MULTI_LABEL, s, y), sklearn_multi_label(s, y))


def test_per_class_thresholds_match_sklearn():
    rng = np.random.default_rng(8)
    s, y = adversarial_multi_label(rng, n=200, c=6)
    thr = np.array([0.05, 0.5, 0.3, 0.95, 0.65, 0.5])
    res = metrics.compute(metrics.MULTI_LABEL, s, y, threshold=thr)
    assert_matches(res, sklearn_multi_label(s, y, threshold=thr))
    assert res != metrics.compute(metrics.MULTI_LABEL, s, y)


@st.composite
def multi_label_inputs(draw):
    n = draw(st.integers(1, 24))
    c = draw(st.integers(2, 6))  # sklearn reads a single column as binary, not multi-label
    levels = draw(st.sampled_from([3, 5, 11, 1000]))  # few levels = many ties
    s = np.array(draw(st.lists(st.integers(0, levels - 1), min_size=n * c, max_size=n * c)), np.float32)
    y = np.array(draw(st.lists(st.booleans(), min_size=n * c, max_size=n * c)))
    return (s / (levels - 1)).reshape(n, c), y.reshape(n, c)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(multi_label_inputs())
def test_multi_label_hypothesis_matches_sklearn(data):
    s, y = data
    res = metrics.compute(metrics.MULTI_LABEL, s, y)
    assert_matches(res, sklearn_multi_label(s, y))
    json.dumps(res, allow_nan=False)


@settings(max_examples=25, deadline=None)
@given(multi_label_inputs(), st.lists(st.integers(0, 24), max_size=4))
def test_streaming_equals_one_shot(data, cuts):
    s, y = data
    one = metrics.compute(metrics.MULTI_LABEL, s, y)
    acc = metrics.MultiLabelAccumulator(s.shape[1])
    bounds = [0] + sorted(min(k, len(s)) for k in cuts) + [len(s)]
    for a, b in zip(bounds[:-1], bounds[1:]):
        acc.update(s[a:b], y[a:b])  # empty batches included
    streamed = acc.result()
    assert acc.n == len(s)
    assert_matches(streamed, one, tol=1e-12)


def test_ranking_blocks_do_not_change_results(monkeypatch):
    rng = np.random.default_rng(4)
    s, y = adversarial_multi_label(rng, n=123, c=5)
    full = metrics.ranking_sums(s, y)
    monkeypatch.setattr(metrics, "_PAIRWISE_BLOCK", 5 * 5 * 7)  # 7 rows per block
    assert np.allclose(metrics.ranking_sums(s, y), full, rtol=0, atol=1e-9)


# Edge cases, each with the value the module docstring promises.

def test_edge_class_without_positives():
    s = np.array([[0.9, 0.8], [0.2, 0.7], [0.6, 0.1]], np.float32)
    y = np.array([[1, 0], [0, 0], [1, 0]], bool)
    res = metrics.compute(metrics.MULTI_LABEL, s, y)
    assert res["macro_recall_class1"] == 0.0
    assert res["macro_precision_class1"] == 0.0  # predicted twice, never right
    assert res["macro_f1_score_class1"] == 0.0
    assert res["macro_accuracy_class1"] == 0.0
    assert res["average_precision_class1"] == 0.0
    assert res["macro_recall_class_avg"] == pytest.approx((1.0 + 0.0) / 2)  # still in the macro average
    assert res["weighted_average_precision"] == pytest.approx(res["average_precision_class0"])
    assert res["macro_average_precision"] == pytest.approx(res["average_precision_class0"] / 2)
    assert res["macro_average_precision_present_classes"] == pytest.approx(res["average_precision_class0"])


def test_average_precision_with_a_class_without_positives():
    # a BigEarthNet-19-sized split where "Agro-forestry areas" (class 7) never occurs
    rng = np.random.default_rng(11)
    n, c, absent = 400, 19, 7
    y = rng.random((n, c)) < rng.uniform(0.05, 0.4, c)
    y[:, absent] = False
    s = np.clip(0.3 * y + rng.normal(0.35, 0.2, (n, c)), 0, 1).astype(np.float32)
    acc = metrics.MultiLabelAccumulator(c)
    for a in range(0, n, 150):
        acc.update(s[a:a + 150], y[a:a + 150])
    res = acc.result()
    present = [j for j in range(c) if j != absent]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns that class 7 has no positive sample
        sk_all = skm.average_precision_score(y.astype(int), s, average="macro")
        sk_per_class = skm.average_precision_score(y.astype(int), s, average=None)
    sk_present = skm.average_precision_score(y[:, present].astype(int), s[:, present], average="macro")
    assert sk_per_class[absent] == 0.0  # sklearn's convention, which macro_average_precision keeps
    assert res["average_precision_class7"] == 0.0
    assert res["macro_average_precision"] == pytest.approx(sk_all, abs=1e-9)
    assert res["macro_average_precision_present_classes"] == pytest.approx(sk_present, abs=1e-9)
    assert res["macro_average_precision_present_classes"] > res["macro_average_precision"]
    assert acc.classes_without_positives() == [absent]

    # single-label: a class that is no sample's label (LCZ 7 of 17) is the same case
    t = rng.integers(0, 16, n)
    t[t >= 6] += 1
    logits = rng.normal(0, 1, (n, 17))
    logits[np.arange(n), t] += 1.0
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    single = metrics.SingleLabelAccumulator(17)
    single.update(probs, t)
    res = single.result()
    onehot = np.eye(17, dtype=int)[t]
    occurring = np.flatnonzero(onehot.any(axis=0))
    assert list(occurring) == [j for j in range(17) if j != 6]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sk_all = skm.average_precision_score(onehot, probs, average="macro")
    sk_present = skm.average_precision_score(onehot[:, occurring], probs[:, occurring], average="macro")
    assert res["macro_average_precision"] == pytest.approx(sk_all, abs=1e-9)
    assert res["macro_average_precision_present_classes"] == pytest.approx(sk_present, abs=1e-9)
    assert single.classes_without_positives() == [6]


def test_edge_samples_without_labels():
    s = np.array([[0.9, 0.1, 0.4], [0.2, 0.3, 0.1], [0.6, 0.7, 0.8]], np.float32)
    y = np.zeros((3, 3), bool)
    res = metrics.compute(metrics.MULTI_LABEL, s, y)
    assert res["coverage"] == 0.0
    assert res["ranking_loss"] == 0.0
    assert res["label_ranking_avg_precision"] == 1.0  # sklearn's convention
    assert res["one_error"] == 1.0
    assert res["label_cardinality"] == 0.0
    assert res["sample_recall"] == 0.0
    # the second sample is predicted empty and is empty: exact, but precision / F1 / Jaccard stay 0
    assert res["subset_accuracy"] == pytest.approx(1 / 3)
    assert res["sample_precision"] == 0.0 and res["sample_f1_score"] == 0.0 and res["sample_accuracy"] == 0.0
    assert res["micro_precision"] == 0.0 and res["micro_recall"] == 0.0
    assert all(np.isfinite(list(res.values())))


def test_edge_all_zero_predictions():
    rng = np.random.default_rng(5)
    y = rng.random((40, 4)) < 0.4
    s = np.zeros((40, 4), np.float32)
    res = metrics.compute(metrics.MULTI_LABEL, s, y)
    for k in ("sample_precision", "sample_recall", "sample_f1_score", "micro_precision", "micro_f1_score",
              "macro_precision_class_avg", "macro_f1_score_class_avg", "micro_accuracy"):
        assert res[k] == 0.0, k
    assert res["hamming_loss"] == pytest.approx(y.mean())
    assert res["coverage"] == pytest.approx(np.where(y.any(axis=1), 4, 0).mean())  # all tied: pessimistic
    assert_matches(res, sklearn_multi_label(s, y))


def test_empty_accumulator_is_all_zero_and_json_safe():
    for acc in (metrics.MultiLabelAccumulator(3), metrics.SingleLabelAccumulator(3)):
        res = acc.result()
        assert set(res.values()) == {0.0}
        json.dumps(res, allow_nan=False)


def test_one_error_and_coverage_by_hand():
    # sample 0: top class 2 is true; true classes {0, 2} need the top 3 (0 ties with 1 -> pessimistic)
    # sample 1: top class 0 is false; true class {1} is ranked 2nd
    s = np.array([[0.5, 0.5, 0.9], [0.8, 0.6, 0.1]], np.float32)
    y = np.array([[1, 0, 1], [0, 1, 0]], bool)
    res = metrics.compute(metrics.MULTI_LABEL, s, y)
    assert res["one_error"] == 0.5
    assert res["coverage"] == pytest.approx((3 + 2) / 2)
    # perfect ranking: coverage equals the number of true labels (sklearn / BigEarthNet, not minus one)
    s = np.array([[0.9, 0.8, 0.1]], np.float32)
    y = np.array([[1, 1, 0]], bool)
    assert metrics.compute(metrics.MULTI_LABEL, s, y)["coverage"] == 2.0
    # ties on the top score go to the first index
    s = np.array([[0.7, 0.7]], np.float32)
    assert metrics.compute(metrics.MULTI_LABEL, s, np.array([[0, 1]], bool))["one_error"] == 1.0
    assert metrics.compute(metrics.MULTI_LABEL, s, np.array([[1, 0]], bool))["one_error"] == 0.0


def test_bad_inputs_raise_clear_errors():
    acc = metrics.MultiLabelAccumulator(3)
    with pytest.raises(ValueError, match="NaN"):
        acc.update(np.array([[0.1, np.nan, 0.2]]), np.zeros((1, 3)))
    with pytest.raises(ValueError, match="targets shape"):
        acc.update(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="N x 3"):
        acc.update(np.zeros((2, 4)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="threshold"):
        metrics.MultiLabelAccumulator(3, threshold=[0.5, 0.5])
    single = metrics.SingleLabelAccumulator(3)
    with pytest.raises(ValueError, match="outside"):
        single.update(np.zeros((2, 3)), np.array([0, 3]))
    with pytest.raises(ValueError, match="unknown task"):
        metrics.make_accumulator("regression", 3)


# Threshold selection

def test_select_thresholds_reach_the_best_f1_per_class():
    rng = np.random.default_rng(9)
    n, c = 300, 5
    y = rng.random((n, c)) < np.array([0.1, 0.3, 0.5, 0.0, 0.2])
    s = np.clip(0.25 * y + rng.normal(0.4, 0.2, (n, c)), 0, 1).astype(np.float32)
    s[:40, 1] = 0.55  # a block of ties
    thr = metrics.select_thresholds(s, y, default=0.5)
    assert thr[3] == 0.5  # no positives: default kept
    pred = s.astype(np.float64) >= thr
    for j in (0, 1, 2, 4):
        best = max(skm.f1_score(y[:, j], s[:, j] >= t, zero_division=0) for t in np.unique(s[:, j]))
        assert skm.f1_score(y[:, j], pred[:, j], zero_division=0) == pytest.approx(best, abs=1e-12)
    # the selected thresholds beat (or equal) the flat 0.5 on the data they were chosen on
    tuned = metrics.compute(metrics.MULTI_LABEL, s, y, threshold=thr)
    flat = metrics.compute(metrics.MULTI_LABEL, s, y)
    assert tuned["macro_f1_score_class_avg"] >= flat["macro_f1_score_class_avg"]


def test_select_thresholds_keeps_adjacent_float32_scores_apart():
    a = np.float32(0.3)
    b = np.nextafter(a, np.float32(0))  # the float32 just below
    s = np.array([[a], [b]], np.float32)
    y = np.array([[1], [0]], bool)
    thr = metrics.select_thresholds(s, y)
    assert list(s[:, 0].astype(np.float64) >= thr[0]) == [True, False]
    thr = metrics.select_thresholds(s, np.array([[1], [1]], bool))  # everything selected
    assert list(s[:, 0].astype(np.float64) >= thr[0]) == [True, True]


# --------------------------------------------------------------------------------------------
# Single-label


@pytest.mark.parametrize("seed,n,c", [(0, 500, 17), (1, 60, 4), (2, 30, 10)])
def test_single_label_random_matches_sklearn(seed, n, c):
    rng = np.random.default_rng(seed)
    t = rng.integers(0, c, n)
    t[t == 1] = 0  # class 1 never occurs in the targets
    s = rng.random((n, c)).astype(np.float32)
    s[np.arange(n), t] += 0.3
    s[:, 2] = -1.0  # class 2 never predicted
    res = metrics.compute(metrics.SINGLE_LABEL, s, t)
    assert list(res) == metrics.single_label_keys(c)
    assert_matches(res, sklearn_single_label(s, t))
    acc = metrics.SingleLabelAccumulator(c)
    acc.update(s, t)
    assert (acc.confusion_matrix() == skm.confusion_matrix(t, np.argmax(s, axis=1), labels=range(c))).all()


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 30), st.integers(1, 6), st.data())
def test_single_label_hypothesis_matches_sklearn(n, c, data):
    t = np.array(data.draw(st.lists(st.integers(0, c - 1), min_size=n, max_size=n)))
    s = np.array(data.draw(st.lists(st.integers(0, 4), min_size=n * c, max_size=n * c)), np.float32).reshape(n, c)
    res = metrics.compute(metrics.SINGLE_LABEL, s, t)
    assert_matches(res, sklearn_single_label(s, t))
    json.dumps(res, allow_nan=False)


def test_single_label_one_hot_targets_and_streaming():
    rng = np.random.default_rng(3)
    t = rng.integers(0, 5, 200)
    s = rng.random((200, 5)).astype(np.float32)
    acc = metrics.SingleLabelAccumulator(5)
    for a in range(0, 200, 33):
        acc.update(s[a:a + 33], np.eye(5)[t[a:a + 33]])  # one-hot rows, as in So2Sat's label arrays
    assert_matches(acc.result(), metrics.compute(metrics.SINGLE_LABEL, s, t), tol=1e-12)


def test_single_label_kappa_undefined_is_zero():
    # one class in both targets and predictions: p_e = 1, sklearn gives NaN, we give 0
    res = metrics.confusion_metrics(np.array([[5, 0], [0, 0]]))
    assert res["cohen_kappa"] == 0.0
    assert res["overall_accuracy"] == 1.0
    assert res["average_accuracy"] == 1.0  # class 1 has no true samples: left out, as sklearn
    json.dumps(res, allow_nan=False)


def _so2sat_baseline():
    if not os.path.exists(SO2SAT_BASELINE):
        pytest.skip(f"{SO2SAT_BASELINE} not present")
    with open(SO2SAT_BASELINE) as f:
        return json.load(f)


def test_so2sat_baseline_confusion_matrix_reproduces_published_figures():
    ref = _so2sat_baseline()
    cm = np.array(ref["confusion_matrix_rows_true_cols_pred"])
    assert cm.shape == (17, 17) and cm.sum() == 24188
    res = metrics.confusion_metrics(cm)
    assert round(res["overall_accuracy"], 4) == 0.6937
    assert round(res["cohen_kappa"], 4) == 0.6644
    assert res["overall_accuracy"] == pytest.approx(ref["overall_accuracy"], abs=1e-12)
    assert res["cohen_kappa"] == pytest.approx(ref["cohen_kappa"], abs=1e-12)
    # the same figures through the streaming accumulator fed with the expanded (true, pred) pairs
    t = np.repeat(np.repeat(np.arange(17), 17), cm.ravel())
    p = np.repeat(np.tile(np.arange(17), 17), cm.ravel())
    acc = metrics.SingleLabelAccumulator(17, keep_scores=False)
    scores = np.eye(17, dtype=np.float32)[p]
    for a in range(0, len(t), 5000):
        acc.update(scores[a:a + 5000], t[a:a + 5000])
    assert round(acc.result()["overall_accuracy"], 4) == 0.6937
    assert round(acc.result()["cohen_kappa"], 4) == 0.6644
    assert skm.cohen_kappa_score(t, p) == pytest.approx(res["cohen_kappa"], abs=1e-12)


def test_so2sat_baseline_per_class_report():
    ref = _so2sat_baseline()
    res = metrics.confusion_metrics(np.array(ref["confusion_matrix_rows_true_cols_pred"]))
    rows = re.findall(r"^\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+(\d+)$", ref["classification_report"], re.M)
    assert len(rows) == 17
    for label, prec, rec, f1, _support in rows:
        j = int(label) - 1
        for key, published in (("macro_precision_class", prec), ("macro_recall_class", rec),
                               ("macro_f1_score_class", f1)):
            assert abs(res[f"{key}{j}"] - float(published)) <= 0.005 + 1e-9, (key, j)
    total = re.search(r"avg / total\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)", ref["classification_report"])
    for key, published in zip(("weighted_precision", "weighted_recall", "weighted_f1_score"), total.groups()):
        assert abs(res[key] - float(published)) <= 0.005 + 1e-9, key


def test_evaluation_package_imports_without_keras():
    # the evaluation package is numpy + matplotlib only: importing it must not load Keras (seconds)
    code = ("import sys, evaluation, evaluation.metrics, evaluation.report; "
            "print(sorted(m for m in ('keras', 'tensorflow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert out.stdout.strip() == "[]"


def test_best_constant_predictor_against_every_fixed_label_set():
    """The closed form (k most frequent classes) equals a brute force over all label sets, and sklearn."""
    import itertools

    from sklearn.metrics import f1_score

    from evaluation.baseline import best_constant

    rng = np.random.default_rng(5)
    y = (rng.random((60, 6)) < np.array([0.7, 0.05, 0.4, 0.3, 0.0, 0.2])).astype(int)
    brute = max(f1_score(y, np.tile(np.array(s), (len(y), 1)), average="micro", zero_division=0)
                for s in itertools.product([0, 1], repeat=6) if any(s))
    b = best_constant("multi_label", y.sum(0), len(y), [f"c{j}" for j in range(6)])
    assert b["value"] == pytest.approx(brute, abs=1e-12) and b["classes"][0] == "c0"
    labels = rng.choice(4, size=50, p=[0.1, 0.6, 0.2, 0.1])
    b = best_constant("single_label", np.bincount(labels, minlength=4), 50, list("abcd"))
    assert b["value"] == pytest.approx(np.mean(labels == 1)) and b["classes"] == ["b"]
