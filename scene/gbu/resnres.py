"""Residential / non-residential (product 4 of the GBU workflow): a per-pixel classifier on built-up pixels.

Features, in this order: ``[BUFRAC, R, G, B, NIR]`` (BUFRAC 0..1 and the scene's reflectance
0..1). Training reads a labelled raster on the scene's grid (1 = residential, 2 = non-residential,
anything else unlabelled) and fits a scikit-learn random forest on the labelled built-up pixels.
The saved model (joblib) carries its feature order, classes and scikit-learn version, checked on
load. Applied where BUFRAC > 0, then a 3 x 3 majority filter; non-built-up = 0; nodata 255 (uint8).
(Upstream orders the features [BUFRAC, R, B, G, NIR]; a model saved here states its own order.)
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np
from scipy import ndimage

from prep.errors import InputError

FEATURES = ("BUFRAC", "R", "G", "B", "NIR")
RESIDENTIAL, NON_RESIDENTIAL = 1, 2
CLASS_NAMES = {0: "not built-up", RESIDENTIAL: "residential", NON_RESIDENTIAL: "non-residential"}
NODATA = 255
MAX_SAMPLES = 200_000


def features(bufrac: np.ndarray, refl: np.ndarray) -> np.ndarray:
    """The classifier's feature matrix of a block.

    Args:
      bufrac: ``(rows, cols)`` BUFRAC.
      refl: ``(4, rows, cols)`` reflectance R, G, B, NIR.

    Returns:
      ``(rows * cols, 5)`` float32 in the order of ``FEATURES``.
    """
    return np.concatenate([bufrac[None], refl], axis=0).reshape(len(FEATURES), -1).T.astype(np.float32)


def training_samples(bufrac: np.ndarray, refl: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The labelled, valid, built-up pixels of a block.

    Args:
      bufrac: ``(rows, cols)`` BUFRAC (cleaned).
      refl: ``(4, rows, cols)`` reflectance.
      labels: ``(rows, cols)`` 1 = residential, 2 = non-residential, other = unlabelled.

    Returns:
      ``(x, y)``: ``(n, 5)`` float32 features and ``(n,)`` uint8 labels of the pixels labelled 1 or
      2 with BUFRAC > 0 and valid reflectance.
    """
    x = features(bufrac, refl)
    y = labels.reshape(-1)
    with np.errstate(invalid="ignore"):
        keep = np.isin(y, (RESIDENTIAL, NON_RESIDENTIAL)) & (x[:, 0] > 0) & np.all(np.isfinite(x), axis=1)
    return x[keep], y[keep].astype(np.uint8)


def train(x: np.ndarray, y: np.ndarray, *, max_samples: int = MAX_SAMPLES, seed: int = 0) -> Any:
    """Fit the RES/NRES random forest.

    Args:
      x: ``(n, 5)`` features (``FEATURES`` order).
      y: ``(n,)`` labels 1/2.
      max_samples: at most this many pixels, drawn at random (``seed``) when there are more.
      seed: random seed of the draw and of the forest (same inputs + seed -> same model).

    Returns:
      The fitted ``sklearn.ensemble.RandomForestClassifier``.

    Raises:
      InputError: fewer than the two classes among the labelled built-up pixels.
    """
    from sklearn.ensemble import RandomForestClassifier

    present = sorted(set(np.unique(y).tolist()))
    if present != [RESIDENTIAL, NON_RESIDENTIAL]:
        raise InputError(f"RES/NRES training needs pixels of both classes 1 and 2 with BUFRAC > 0; found {present}")
    if len(y) > max_samples:
        pick = np.sort(np.random.default_rng(seed).choice(len(y), size=max_samples, replace=False))
        x, y = x[pick], y[pick]
    model = RandomForestClassifier(n_estimators=50, min_samples_leaf=2, random_state=seed, n_jobs=1)
    return model.fit(x, y)


def save_model(model: Any, path: str | os.PathLike) -> None:
    """Save a fitted classifier with its feature order (joblib).

    Args:
      model: a fitted scikit-learn classifier.
      path: the ``.joblib`` file to write.
    """
    import joblib
    import sklearn

    from prep.files import atomic_path

    with atomic_path(path) as tmp:
        joblib.dump({"model": model, "features": list(FEATURES), "classes": CLASS_NAMES,
                     "sklearn_version": sklearn.__version__}, tmp)


def load_model(path: str | os.PathLike) -> Any:
    """Load a classifier saved by ``save_model``, checking its feature order.

    Args:
      path: the ``.joblib`` file.

    Returns:
      The classifier.

    Raises:
      InputError: missing or unreadable file, not a saved RES/NRES model, or another feature order.
    """
    import joblib

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError("RES/NRES model not found", path=path)
    try:
        saved = joblib.load(path)
    except Exception as e:  # noqa: BLE001 - pickle raises many types on a foreign file
        why = (str(e).splitlines() or [""])[0]
        why = why if len(why) <= 120 else why[:117] + "..."  # pickle quotes the foreign bytes it met
        raise InputError(f"not a readable RES/NRES model: {type(e).__name__}: {why}", path=path) from None
    if not isinstance(saved, dict) or "model" not in saved or "features" not in saved:
        raise InputError("not a RES/NRES model saved by eorecords (no model/features)", path=path)
    if list(saved["features"]) != list(FEATURES):
        raise InputError(f"model features {saved['features']} differ from {list(FEATURES)}", path=path)
    return saved["model"]


def classify(model: Any, bufrac: np.ndarray, refl: np.ndarray) -> np.ndarray:
    """Per-pixel RES/NRES classes of a block, before the majority filter.

    Args:
      model: the classifier.
      bufrac: ``(rows, cols)`` cleaned BUFRAC.
      refl: ``(4, rows, cols)`` reflectance.

    Returns:
      ``(rows, cols)`` uint8: 1/2 where BUFRAC > 0 and the pixel is valid, 0 where BUFRAC is 0,
      255 where BUFRAC or the reflectance is nodata.
    """
    x = features(bufrac, refl)
    valid = np.all(np.isfinite(x), axis=1)
    built = valid & (x[:, 0] > 0)
    out = np.full(x.shape[0], NODATA, dtype=np.uint8)
    out[valid] = 0
    if built.any():
        out[built] = model.predict(x[built]).astype(np.uint8)
    return out.reshape(bufrac.shape)


def majority(classes: np.ndarray) -> np.ndarray:
    """3 x 3 majority filter of the built-up pixels' classes.

    Each pixel of class 1 or 2 takes the class with more pixels among the 1s and 2s of its 3 x 3
    neighbourhood (itself included; outside the raster counts as neither); a tie keeps its class.
    Pixels 0 and 255 are left as they are.

    Args:
      classes: ``(rows, cols)`` uint8 from ``classify``.

    Returns:
      ``(rows, cols)`` uint8.
    """
    ones = np.ones((3, 3), dtype=np.int32)
    n_res = ndimage.convolve((classes == RESIDENTIAL).astype(np.int32), ones, mode="constant")
    n_nres = ndimage.convolve((classes == NON_RESIDENTIAL).astype(np.int32), ones, mode="constant")
    out = classes.copy()
    built = (classes == RESIDENTIAL) | (classes == NON_RESIDENTIAL)
    out[built & (n_res > n_nres)] = RESIDENTIAL
    out[built & (n_nres > n_res)] = NON_RESIDENTIAL
    return out
