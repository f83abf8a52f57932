"""evaluation.segmentation against scikit-learn's confusion matrix."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix, jaccard_score

from evaluation.segmentation import SegmentationAccumulator, igbp_to_dfc_mask, iou_metrics


def test_streaming_matrix_and_iou_equal_sklearn():
    rng = np.random.default_rng(0)
    acc = SegmentationAccumulator(10, ignore=(0, 255), offset=1)
    ts, ps = [], []
    for _ in range(3):
        t = rng.integers(1, 11, (4, 32, 32))
        t[:, :3] = 255
        t[:, 3, :5] = 0
        p = np.where(rng.random(t.shape) < 0.6, t, rng.integers(1, 11, t.shape))
        p = np.clip(p, 1, 10)
        acc.update(t, p)
        keep = (t != 0) & (t != 255)
        ts.append(t[keep] - 1)
        ps.append(p[keep] - 1)
    t, p = np.concatenate(ts), np.concatenate(ps)
    cm = confusion_matrix(t, p, labels=range(10))
    np.testing.assert_array_equal(acc.matrix, cm)
    r = acc.result()
    np.testing.assert_allclose([r[f"iou_class{j}"] for j in range(10)],
                               jaccard_score(t, p, labels=range(10), average=None))
    assert r["miou"] == pytest.approx(jaccard_score(t, p, labels=range(10), average="macro"))
    assert r["pixel_accuracy"] == pytest.approx((t == p).mean())
    assert r["frequency_weighted_iou"] == pytest.approx(
        jaccard_score(t, p, labels=range(10), average="weighted"))


def test_absent_classes_do_not_count_and_errors():
    r = iou_metrics(np.array([[5, 1, 0], [0, 4, 0], [0, 0, 0]]))
    assert np.isnan(r["iou_class2"]) and r["miou"] == pytest.approx((5 / 6 + 4 / 5) / 2)
    acc = SegmentationAccumulator(3)
    with pytest.raises(ValueError, match="outside"):
        acc.update(np.array([0, 3]), np.array([0, 1]))
    with pytest.raises(ValueError, match="shapes differ"):
        acc.update(np.zeros(3), np.zeros(4))
    np.testing.assert_array_equal(igbp_to_dfc_mask(np.arange(18)), [0, 1, 1, 1, 1, 1, 2, 2, 3, 3, 4, 5, 6, 7, 6, 8, 9, 10])


def test_majority_baseline_is_the_best_constant_by_sklearn():
    from evaluation.segmentation import majority_baseline

    rng = np.random.default_rng(2)
    t = rng.choice(6, size=5000, p=[0.4, 0.25, 0.2, 0.15, 0.0, 0.0])
    p = rng.integers(0, 6, t.size)
    b = majority_baseline(confusion_matrix(t, p, labels=range(6)), list("abcdef"))
    scores = {}
    for k in range(6):  # every constant answer, scored by sklearn over the classes it involves
        const = np.full_like(t, k)
        labels = sorted(set(t.tolist()) | {k})
        scores[k] = (jaccard_score(t, const, labels=labels, average="macro", zero_division=0), (t == k).mean())
    best = max(scores, key=lambda k: scores[k][0])
    assert b["class"] == "abcdef"[best] == "a"
    assert b["value"] == pytest.approx(scores[best][0]) and b["pixel_accuracy"] == pytest.approx(scores[best][1])
    assert b["pixel_accuracy"] == max(v[1] for v in scores.values())
    assert majority_baseline(np.zeros((3, 3)))["value"] == 0.0
