"""Evaluate a trained model, or a saved predictions file, with the papers' metrics and readable reports.

Two ways in:

  python evaluate.py --model RUN_DIR_OR_.keras --data_dir OUT --split test --out_dir DIR
  python evaluate.py --predictions FILE.npz --out_dir DIR

With ``--model`` the model runs over the prepared split (``prep.reader.make_dataset``; bands,
per-resolution inputs, resampling and normalisation come from RUN/input_config.json, or from the
flags for a bare .keras file), its logits go through a sigmoid (multi-label) or a softmax
(single-label), and the predictions are written to DIR/predictions.npz beside the report. With
``--predictions`` the metrics are recomputed from such a file without the model. A predictions
file holds ``scores`` (N x C float), ``targets`` (N x C multi-hot, or N class indices for
single-label), ``class_names`` and optionally ``task``.

Multi-label predictions threshold the scores at ``--threshold`` (0.5), or at per-class thresholds
that maximise F1 on a validation split: ``--threshold_split val`` (with ``--model``) or
``--thresholds_from VAL_PREDICTIONS.npz`` (either mode; a .json list of C numbers is also read).

Writes into --out_dir: eval_result.json, eval_details.json, per_class_metrics.csv, report.md and
the PNG plots (see evaluation/report.py), and prints a table.
"""
from __future__ import annotations

import functools
import json
import math
import os

import numpy as np
from absl import app, flags, logging

from evaluation import metrics, report

FLAGS = flags.FLAGS


@functools.cache  # declared once per process, however often run() or a test calls it
def define_flags() -> None:
    """Declare the command's flags (called by run(); importing this module defines none)."""
    flags.DEFINE_string("predictions", None, "Predictions .npz (scores, targets, class_names[, task]) to evaluate "
                        "without a model.")
    flags.DEFINE_string("model", None, "A run directory written by train.py, or a .keras model file.")
    flags.DEFINE_string("checkpoint", "best", "With a run directory: which model to load, best (best.keras) or "
                        "final (final.keras).")
    flags.DEFINE_string("data_dir", None, "Prepared dataset directory (holds manifest.json); with --model. "
                        "Defaults to the data_dir in the run's input_config.json.")
    flags.DEFINE_string("split", "test", "Split to evaluate with --model.")
    flags.DEFINE_string("out_dir", None, "Directory for the report files.")
    flags.DEFINE_enum("task", "auto", ["auto", metrics.MULTI_LABEL, metrics.SINGLE_LABEL],
                      "Task; auto takes it from the manifest / input_config / predictions file, else from the "
                      "targets' shape (N x C = multi-label, N = single-label).")
    flags.DEFINE_float("threshold", 0.5, "Score threshold for a positive multi-label decision.")
    flags.DEFINE_string("thresholds_from", None, "Per-class thresholds: a validation predictions .npz (thresholds "
                        "maximising each class's F1 on it) or a .json list of C thresholds.")
    flags.DEFINE_string("threshold_split", None, "With --model: pick per-class F1-maximising thresholds on this "
                        "split (e.g. val) and apply them to --split.")
    flags.DEFINE_integer("batch_size", 256, "Batch size for running the model.")
    flags.DEFINE_integer("max_batches", 0, "Stop after this many batches (0 = the whole split); for quick checks.")
    flags.DEFINE_string("bands", None, "For a bare .keras file: band preset (10m20m, all, ...) or a comma-separated "
                        "list. Ignored when input_config.json is found.")
    flags.DEFINE_boolean("per_resolution", None, "For a bare .keras file: one input per resolution group.")
    flags.DEFINE_string("resample", None, "For a bare .keras file: resampling of coarser bands (bicubic, ...).")
    flags.DEFINE_string("normalize", None, "For a bare .keras file: manifest, upstream or none.")
    flags.DEFINE_boolean("plots", True, "Write the PNG plots.")

INPUT_CONFIG = "input_config.json"
PREDICTIONS_NPZ = "predictions.npz"


# --------------------------------------------------------------------------------------------
# Predictions files


def save_predictions(path: str, scores: np.ndarray, targets: np.ndarray, class_names, task: str, **extra) -> None:
    """Write a predictions file (compressed npz) that ``load_predictions`` reads back."""
    np.savez_compressed(path, scores=np.asarray(scores, np.float32), targets=np.asarray(targets),
                        class_names=np.asarray(list(class_names), dtype=str), task=np.asarray(task),
                        **{k: np.asarray(v) for k, v in extra.items()})


def infer_task(targets: np.ndarray, declared: str | None = None) -> str:
    """The declared task when given, else N class indices -> single-label, N x C -> multi-label."""
    if declared and declared != "auto":
        if declared not in (metrics.MULTI_LABEL, metrics.SINGLE_LABEL):
            raise ValueError(f"unknown task {declared!r}")
        return declared
    return metrics.SINGLE_LABEL if np.ndim(targets) == 1 else metrics.MULTI_LABEL


def load_predictions(path: str, task: str = "auto"):
    """(scores, targets, class_names, task) from a predictions .npz, checked for consistency."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: predictions file not found")
    with np.load(path, allow_pickle=False) as z:
        missing = [k for k in ("scores", "targets") if k not in z]
        if missing:
            raise ValueError(f"{path}: missing array(s) {missing}; a predictions file holds scores, targets, class_names")
        scores = z["scores"]
        targets = z["targets"]
        names = [str(n) for n in z["class_names"]] if "class_names" in z else None
        stored_task = str(z["task"]) if "task" in z else None
    if scores.ndim != 2:
        raise ValueError(f"{path}: scores must be N x C, got shape {scores.shape}")
    n, c = scores.shape
    if targets.shape not in ((n,), (n, c)):
        raise ValueError(f"{path}: targets shape {targets.shape} fits neither ({n},) nor ({n}, {c})")
    if names is None:
        names = [f"class {j}" for j in range(c)]
    if len(names) != c:
        raise ValueError(f"{path}: {len(names)} class_names for {c} score columns")
    chosen = task if task and task != "auto" else stored_task
    task = infer_task(targets, chosen)
    if task == metrics.MULTI_LABEL and targets.shape != (n, c):
        raise ValueError(f"{path}: multi-label targets must be N x C multi-hot, got shape {targets.shape}")
    if not np.isfinite(scores).all():
        raise ValueError(f"{path}: scores contain NaN or infinite values")
    return scores, targets, names, task


def load_thresholds(path: str, num_classes: int, default: float = 0.5) -> np.ndarray:
    """Per-class thresholds from a .json list (or {"thresholds": [...]}) or chosen on a predictions .npz."""
    if path.endswith(".json"):
        with open(path) as f:
            data = json.load(f)
        if isinstance(data, dict):
            data = data.get("thresholds")
        thr = np.asarray(data, dtype=np.float64)
        if thr.shape != (num_classes,) or not np.isfinite(thr).all():
            raise ValueError(f"{path}: expected a list of {num_classes} finite thresholds")
        return thr
    scores, targets, _, task = load_predictions(path, metrics.MULTI_LABEL)
    if scores.shape[1] != num_classes:
        raise ValueError(f"{path}: {scores.shape[1]} classes, the evaluated predictions have {num_classes}")
    return metrics.select_thresholds(scores, targets, default=default)


# --------------------------------------------------------------------------------------------
# Evaluation


def evaluate_arrays(scores, targets, class_names, task, out_dir, *, threshold=0.5, meta=None, plots=True,
                    batch_rows=8192, echo=print) -> dict:
    """Accumulate (in row batches) and write the report; returns write_report's dict."""
    scores = np.asarray(scores)
    acc = metrics.make_accumulator(task, scores.shape[1], threshold=threshold)
    for start in range(0, len(scores), batch_rows):
        acc.update(scores[start:start + batch_rows], np.asarray(targets)[start:start + batch_rows])
    return report.write_report(out_dir, acc, class_names, meta=meta, plots=plots, echo=echo)


def evaluate_predictions(path: str, out_dir: str, *, task="auto", threshold=0.5, thresholds_from=None,
                         plots=True, echo=print) -> dict:
    scores, targets, names, task = load_predictions(path, task)
    meta = {"predictions": os.path.abspath(path)}
    if task == metrics.MULTI_LABEL:
        if thresholds_from:
            threshold = load_thresholds(thresholds_from, scores.shape[1], default=threshold)
            meta["thresholds_from"] = os.path.abspath(thresholds_from)
        else:
            meta["threshold"] = float(threshold)
    return evaluate_arrays(scores, targets, names, task, out_dir, threshold=threshold, meta=meta, plots=plots,
                           echo=echo)


def sigmoid(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return (0.5 * (1.0 + np.tanh(0.5 * x))).astype(np.float32)


def softmax(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def resolve_model(path: str, checkpoint: str = "best") -> tuple[str, dict | None]:
    """(model file, input_config or None) for a run directory or a .keras file."""
    if os.path.isdir(path):
        candidates = [os.path.join(path, f"{checkpoint}.keras")]
        candidates += [os.path.join(path, f"{n}.keras") for n in ("best", "final") if n != checkpoint]
        model_file = next((p for p in candidates if os.path.exists(p)), None)
        if model_file is None:
            raise FileNotFoundError(f"{path}: no {checkpoint}.keras (nor best/final.keras) in the run directory")
        config_path = os.path.join(path, INPUT_CONFIG)
        if not os.path.exists(config_path):
            raise FileNotFoundError(f"{config_path}: the run directory has no input_config.json")
    else:
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path}: model not found")
        model_file = path
        config_path = os.path.join(os.path.dirname(os.path.abspath(path)), INPUT_CONFIG)
    config = None
    if os.path.exists(config_path):
        with open(config_path) as f:
            config = json.load(f)
    return model_file, config


def input_settings(config: dict | None, overrides: dict) -> dict:
    """make_dataset keyword arguments from input_config.json, else the flags, else the defaults."""
    settings = {"bands": "10m20m", "per_resolution": False, "resample": "bicubic", "normalize": "manifest"}
    if config:
        for key in settings:
            if key in config:
                settings[key] = config[key]
    else:
        for key, value in overrides.items():
            if value is not None:
                settings[key] = value
    if isinstance(settings["bands"], str) and "," in settings["bands"]:
        settings["bands"] = [b.strip() for b in settings["bands"].split(",") if b.strip()]
    if isinstance(settings["normalize"], str) and settings["normalize"].lower() == "none":
        settings["normalize"] = None
    if config and config.get("statistics") and settings["normalize"] is not None:
        # the exact per-band (mean, std) the model was trained with, whatever data folder is evaluated
        settings["normalize"] = config["statistics"]
    return settings


def load_manifest(data_dir: str) -> dict:
    from prep import reader

    return reader.load_manifest(data_dir)


def make_dataset(data_dir: str, split: str, settings: dict, batch_size: int):
    from prep import reader

    return reader.make_dataset(data_dir, split, batch_size=batch_size, training=False, deterministic=True,
                               **settings)


def load_model(model_file: str):
    """The model, through ``models.load_model`` (which registers the project's custom layers)."""
    import models

    return models.load_model(model_file, compile=False)


def predict_split(model, data_dir: str, split: str, settings: dict, task: str, num_classes: int,
                  batch_size: int, max_batches: int = 0, total: int | None = None):
    """Run the model over a split: (scores N x C float32, targets), activation applied."""
    from tqdm import tqdm

    ds = make_dataset(data_dir, split, settings, batch_size)
    activation = sigmoid if task == metrics.MULTI_LABEL else softmax
    n_batches = math.ceil(total / batch_size) if total else None
    if max_batches:
        n_batches = min(n_batches or max_batches, max_batches)
    single_input = len(model.inputs) == 1
    scores, targets = [], []
    for i, (features, y) in enumerate(tqdm(ds, total=n_batches, desc=f"{split}", unit="batch")):
        if max_batches and i >= max_batches:
            break
        if isinstance(features, dict) and single_input and len(features) == 1:
            features = next(iter(features.values()))
        logits = np.asarray(model(features, training=False))
        if logits.ndim != 2 or logits.shape[1] != num_classes:
            raise ValueError(f"model output shape {logits.shape} does not fit {num_classes} classes")
        scores.append(activation(logits))
        targets.append(np.asarray(y))
    if not scores:
        raise ValueError(f"{data_dir}: split {split!r} yielded no batches")
    return np.concatenate(scores), np.concatenate(targets)


def evaluate_model(model_path: str, out_dir: str, *, data_dir=None, split="test", checkpoint="best", task="auto",
                   threshold=0.5, thresholds_from=None, threshold_split=None, batch_size=256, max_batches=0,
                   overrides=None, plots=True, echo=print) -> dict:
    model_file, config = resolve_model(model_path, checkpoint)
    data_dir = data_dir or (config or {}).get("data_dir")
    if not data_dir:
        raise ValueError("--data_dir is required (the model has no input_config.json naming it)")
    manifest = load_manifest(data_dir)
    if split not in manifest.get("splits", {}):
        raise ValueError(f"{data_dir}: no split {split!r} in manifest.json (has {sorted(manifest.get('splits', {}))})")
    class_names = list(manifest["classes"])
    if config and config.get("classes") and list(config["classes"]) != class_names:
        raise ValueError(f"{model_path}: the model's classes (input_config.json) differ from {data_dir}'s manifest")
    if task == "auto":
        task = (config or {}).get("task") or manifest.get("task")
    if task not in (metrics.MULTI_LABEL, metrics.SINGLE_LABEL):
        raise ValueError(f"{data_dir}: cannot tell the task (manifest task is {manifest.get('task')!r}); pass --task")
    settings = input_settings(config, overrides or {})
    shown = {k: ("the training statistics" if k == "normalize" and isinstance(v, dict) else v)
             for k, v in settings.items()}
    logging.info("evaluating %s on %s/%s with %s", model_file, data_dir, split, shown)
    model = load_model(model_file)
    os.makedirs(out_dir, exist_ok=True)

    def written(s):
        return manifest["splits"][s].get("written")

    meta = {"model": os.path.abspath(model_file), "data_dir": os.path.abspath(data_dir), "split": split,
            "input": {k: v for k, v in settings.items()}}
    if task == metrics.MULTI_LABEL:
        if threshold_split:
            if threshold_split not in manifest["splits"]:
                raise ValueError(f"{data_dir}: no split {threshold_split!r} to pick thresholds on")
            val_scores, val_targets = predict_split(model, data_dir, threshold_split, settings, task,
                                                    len(class_names), batch_size, max_batches,
                                                    written(threshold_split))
            save_predictions(os.path.join(out_dir, f"predictions_{threshold_split}.npz"), val_scores, val_targets,
                             class_names, task, split=threshold_split)
            threshold = metrics.select_thresholds(val_scores, val_targets, default=threshold)
            meta["thresholds_from"] = f"split {threshold_split} (F1-maximising per class)"
        elif thresholds_from:
            threshold = load_thresholds(thresholds_from, len(class_names), default=threshold)
            meta["thresholds_from"] = os.path.abspath(thresholds_from)
        else:
            meta["threshold"] = float(threshold)
    scores, targets = predict_split(model, data_dir, split, settings, task, len(class_names), batch_size,
                                    max_batches, written(split))
    pred_path = os.path.join(out_dir, PREDICTIONS_NPZ)
    save_predictions(pred_path, scores, targets, class_names, task, split=split)
    meta["predictions"] = os.path.abspath(pred_path)
    out = evaluate_arrays(scores, targets, class_names, task, out_dir, threshold=threshold, meta=meta, plots=plots,
                          echo=echo)
    out["files"] += [pred_path] + ([os.path.join(out_dir, f"predictions_{threshold_split}.npz")]
                                   if task == metrics.MULTI_LABEL and threshold_split else [])
    return out


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not FLAGS.out_dir:
        raise app.UsageError("--out_dir is required")
    if bool(FLAGS.predictions) == bool(FLAGS.model):
        raise app.UsageError("give exactly one of --predictions FILE.npz or --model RUN_DIR_OR_.keras")
    if FLAGS.predictions:
        if FLAGS.threshold_split:
            raise app.UsageError("--threshold_split needs --model; with --predictions use --thresholds_from")
        out = evaluate_predictions(FLAGS.predictions, FLAGS.out_dir, task=FLAGS.task, threshold=FLAGS.threshold,
                                   thresholds_from=FLAGS.thresholds_from, plots=FLAGS.plots)
    else:
        overrides = {"bands": FLAGS.bands, "per_resolution": FLAGS.per_resolution, "resample": FLAGS.resample,
                     "normalize": FLAGS.normalize}
        out = evaluate_model(FLAGS.model, FLAGS.out_dir, data_dir=FLAGS.data_dir, split=FLAGS.split,
                             checkpoint=FLAGS.checkpoint, task=FLAGS.task, threshold=FLAGS.threshold,
                             thresholds_from=FLAGS.thresholds_from, threshold_split=FLAGS.threshold_split,
                             batch_size=FLAGS.batch_size, max_batches=FLAGS.max_batches, overrides=overrides,
                             plots=FLAGS.plots)
    print(f"\nwrote {len(out['files'])} files to {FLAGS.out_dir}")


def run():
    define_flags()
    app.run(main)


if __name__ == "__main__":
    run()
