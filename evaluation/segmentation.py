"""Segmentation metrics: a streaming confusion matrix over label masks, per-class IoU and mIoU.

For SEN12MS land-cover masks (IGBP -> DFC mapped low-resolution masks, DFC2020 high-resolution
masks with 0 / 255 = ignore) and any other per-pixel classification. numpy only.

Definitions (``C`` classes, confusion matrix ``M[true, predicted]`` over the pixels whose true
label is not ignored):

- ``iou_class<j>`` = M[j, j] / (row j sum + column j sum - M[j, j]); NaN when class j appears
  neither in the truth nor in the predictions (it then does not count in the mean);
- ``miou`` = the mean of the defined per-class IoUs;
- ``pixel_accuracy`` = trace / total; ``mean_class_accuracy`` = mean over classes present in the
  truth of M[j, j] / row j sum;
- ``frequency_weighted_iou`` = sum over classes of (row j sum / total) x IoU_j (defined ones).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from numpy.typing import ArrayLike


class SegmentationAccumulator:
    """Streaming confusion matrix of integer label masks.

    Args:
      num_classes: C; labels are 0 .. C-1 after ``offset``.
      ignore: true-label values (before ``offset``) whose pixels are left out (e.g. (0, 255) for DFC2020).
      offset: subtracted from both masks before counting (1 for masks whose classes are 1 .. C).
    """

    def __init__(self, num_classes: int, ignore: Sequence[int] = (), offset: int = 0):
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        self.num_classes = int(num_classes)
        self.ignore = tuple(int(v) for v in ignore)
        self.offset = int(offset)
        self.matrix = np.zeros((self.num_classes, self.num_classes), np.int64)

    def update(self, y_true: ArrayLike, y_pred: ArrayLike) -> None:
        """Adds a batch of masks (any equal shapes; integer labels).

        Raises:
          ValueError: different shapes, or a (not ignored) label outside the C classes.
        """
        t = np.asarray(y_true).astype(np.int64).ravel()
        p = np.asarray(y_pred).astype(np.int64).ravel()
        if np.shape(y_true) != np.shape(y_pred):
            raise ValueError(f"mask shapes differ: {np.shape(y_true)} and {np.shape(y_pred)}")
        keep = ~np.isin(t, self.ignore) if self.ignore else np.ones_like(t, bool)
        t, p = t[keep] - self.offset, p[keep] - self.offset
        c = self.num_classes
        for name, v in (("true", t), ("predicted", p)):
            if v.size and (v.min() < 0 or v.max() >= c):
                raise ValueError(f"{name} labels outside 0..{c - 1} (after offset {self.offset}): "
                                 f"{sorted(set(np.unique(v[(v < 0) | (v >= c)]).tolist()))[:10]}")
        self.matrix += np.bincount(t * c + p, minlength=c * c).reshape(c, c)

    def result(self) -> dict[str, float]:
        """The metrics of the module doc: ``iou_class<j>``, ``miou``, ``pixel_accuracy``, ... ."""
        return iou_metrics(self.matrix)


def iou_metrics(matrix: ArrayLike) -> dict[str, float]:
    """Per-class IoU, mIoU and pixel accuracies from a confusion matrix.

    Args:
      matrix: [C, C] counts, rows = true class, columns = predicted class.

    Returns:
      ``iou_class<j>`` (NaN for a class absent from truth and predictions), ``miou``,
      ``pixel_accuracy``, ``mean_class_accuracy``, ``frequency_weighted_iou`` (see the module doc).

    Raises:
      ValueError: a matrix that is not square.
    """
    m = np.asarray(matrix, np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"confusion matrix must be square, got shape {m.shape}")
    tp = np.diag(m)
    rows, cols = m.sum(1), m.sum(0)
    union = rows + cols - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, tp / np.where(union > 0, union, 1), np.nan)
        acc = np.where(rows > 0, tp / np.where(rows > 0, rows, 1), np.nan)
    total = m.sum()
    defined = ~np.isnan(iou)
    out = {f"iou_class{j}": float(v) for j, v in enumerate(iou)}
    out["miou"] = float(iou[defined].mean()) if defined.any() else float("nan")
    out["pixel_accuracy"] = float(tp.sum() / total) if total else float("nan")
    out["mean_class_accuracy"] = float(np.nanmean(acc)) if (rows > 0).any() else float("nan")
    out["frequency_weighted_iou"] = float((rows[defined] / total * iou[defined]).sum()) if total else float("nan")
    return out


def igbp_to_dfc_mask(igbp: ArrayLike) -> np.ndarray:
    """An IGBP mask (codes 0..17) -> the DFC mask (1..10; 0 where the IGBP code is 0), via SEN12MS's table.

    Raises:
      ValueError: codes outside 0..17.
    """
    from prep.datasets.sen12ms.spec import IGBP_TO_DFC  # the one table (numpy-only import)

    table = np.array(IGBP_TO_DFC, np.uint8)
    a = np.asarray(igbp)
    if a.size and (a.min() < 0 or a.max() > 17):
        raise ValueError("IGBP codes outside 0..17")
    return table[a]


def majority_baseline(matrix: ArrayLike, class_names: Sequence[str] | None = None) -> dict:
    """The best constant segmentation: every pixel the most frequent true class.

    It maximises pixel accuracy among constant answers, and mIoU too: predicting class k everywhere
    gives IoU_k = (pixels of k) / (all pixels) and IoU 0 for every other class in the truth, so mIoU is
    the majority share over the number of classes present (a constant class absent from the truth would
    add a zero IoU).

    Args:
      matrix: [C, C] confusion counts of the evaluated model (rows = true class); only its row sums are used.
      class_names: C names for the description (default: class indices).

    Returns:
      ``{"metric": "miou", "value", "pixel_accuracy", "class", "description"}``; zeros when there are no pixels.
    """
    rows = np.asarray(matrix, np.float64).sum(1)
    names = list(class_names) if class_names is not None else [str(j) for j in range(len(rows))]
    if rows.sum() <= 0:
        return {"metric": "miou", "value": 0.0, "pixel_accuracy": 0.0, "class": None, "description": "no pixels"}
    top = int(np.argmax(rows))
    constant = np.zeros((len(rows), len(rows)))
    constant[:, top] = rows
    r = iou_metrics(constant)
    return {"metric": "miou", "value": r["miou"], "pixel_accuracy": r["pixel_accuracy"], "class": names[top],
            "description": f"every pixel {names[top]!r}"}
