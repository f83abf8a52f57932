"""Evaluate a trained model, or a saved predictions file, with the papers' metrics and readable reports.

Two ways in:

  python evaluate.py --model RUN_DIR_OR_.keras [--data_dir OUT] [--split test] [--out_dir DIR]
  python evaluate.py --predictions FILE.npz --out_dir DIR

With --model the model runs over the prepared split (prep.reader.make_dataset; bands,
per-resolution inputs, resampling and normalisation come from RUN/input_config.json, or from the
flags for a bare .keras file), its logits go through a sigmoid (multi-label) or a softmax
(single-label), and the predictions are written to DIR/predictions.npz beside the report.
--out_dir defaults to RUN/eval for a run directory and to MODEL_eval beside a bare MODEL.keras
file. With --predictions the metrics are recomputed from such a file without the model (and
without loading Keras or TensorFlow); --out_dir is required. A predictions file holds scores
(N x C float), targets (N x C multi-hot, or N class indices for single-label), class_names and
optionally task.

Multi-label predictions threshold the scores at --threshold (0.5), or at per-class thresholds
that maximise F1 on a validation split: --threshold_split val (with --model) or
--thresholds_from VAL_PREDICTIONS.npz (either mode; a .json list of C numbers is also read).
Single-label predictions are the top-scoring class: giving any of these threshold flags for
single-label data is refused (exit 2) rather than silently ignored.

k-fold runs (train.py --all_folds N): --all_folds N evaluates folds 0..N-1, '{fold}' in --model
(and --data_dir, if given) replaced by each fold number, each fold's report in OUT/fold<k>, then
writes the folds summary OUT/folds_summary.json and .md (every fold's overall accuracy, kappa and
macro F1 -- micro and macro F1 for multi-label data -- and each class's F1, with the mean and the
standard deviation over folds; evaluation/folds.py) and prints it as a table; --out_dir is
required. --fold K evaluates fold K alone ('{fold}' replaced in --model, --data_dir, --out_dir).

  python evaluate.py --model 'runs/lulc_fold{fold}' --data_dir 'lulc_fold{fold}' --all_folds 5 --out_dir eval_folds

Segmentation data (a mask target, e.g. SEN12MS prepared with --target dfc10_mask; a UNet-* model):
--model runs the model over the split and accumulates the pixel confusion matrix over the pixels
whose target is not ignored; the report holds mIoU, per-class IoU, overall (pixel) accuracy, kappa
and the majority-class baseline (evaluation/segmentation_report.py). The per-pixel predictions are
not saved (a split's masks are large), so --predictions and the threshold flags do not apply.

Writes into the output folder: eval_result.json, eval_details.json, per_class_metrics.csv,
report.md and the PNG plots (see evaluation/report.py), and prints a table. Bad input (a missing
or malformed file, a model that does not fit the data) is reported as one line,
"error: FILE: problem", exit status 1; a missing or contradictory flag exits 2.
"""
from __future__ import annotations

import functools
import json
import math
import os
import sys
import zipfile
import zlib
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np
from absl import flags, logging

from evaluation import folds, metrics, report, segmentation, segmentation_report
from prep import cli
from prep.datasets.spec import Task
from prep.errors import InputError, UsageError

if TYPE_CHECKING:  # for the hints only: --predictions runs without Keras or TensorFlow
    import keras
    import tensorflow as tf

FLAGS = flags.FLAGS

DEFAULT_THRESHOLD = 0.5
INPUT_CONFIG = "input_config.json"
PREDICTIONS_NPZ = "predictions.npz"
RUN_EVAL_DIR = "eval"  # --out_dir for a run directory: RUN/eval
FILE_EVAL_SUFFIX = "_eval"  # --out_dir for a bare .keras file: <stem>_eval beside it


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
    flags.DEFINE_string("out_dir", None, "Directory for the report files. Required with --predictions; with --model "
                        f"it defaults to RUN/{RUN_EVAL_DIR} (run directory) or MODEL{FILE_EVAL_SUFFIX} beside "
                        "MODEL.keras.")
    flags.DEFINE_enum("task", "auto", ["auto"] + [t.value for t in Task],
                      "Task; auto takes it from the manifest / input_config / predictions file, else from the "
                      "targets' shape (N x C = multi-label, N = single-label).")
    flags.DEFINE_float("threshold", DEFAULT_THRESHOLD, "Score threshold for a positive multi-label decision "
                       "(refused for single-label data, whose prediction is the top-scoring class).")
    flags.DEFINE_string("thresholds_from", None, "Per-class thresholds (multi-label): a validation predictions .npz "
                        "(thresholds maximising each class's F1 on it) or a .json list of C thresholds.")
    flags.DEFINE_string("threshold_split", None, "With --model (multi-label): pick per-class F1-maximising "
                        "thresholds on this split (e.g. val) and apply them to --split.")
    flags.DEFINE_integer("batch_size", 256, "Batch size for running the model.")
    flags.DEFINE_integer("max_batches", 0, "Stop after this many batches (0 = the whole split); for quick checks.")
    flags.DEFINE_string("bands", None, "For a bare .keras file: band preset (10m20m, all, ...) or a comma-separated "
                        "list. Ignored when input_config.json is found.")
    flags.DEFINE_boolean("per_resolution", None, "For a bare .keras file: one input per resolution group.")
    flags.DEFINE_string("resample", None, "For a bare .keras file: resampling of coarser bands (bicubic, ...).")
    flags.DEFINE_string("normalize", None, "For a bare .keras file: manifest, upstream or none.")
    flags.DEFINE_boolean("plots", True, "Write the PNG plots.")
    flags.DEFINE_integer("fold", None, "k-fold runs: evaluate fold K, '{fold}' in --model, --data_dir and --out_dir "
                         "replaced by K.", lower_bound=0)
    flags.DEFINE_integer("all_folds", 0, "k-fold runs: evaluate folds 0..N-1 ('{fold}' in --model and --data_dir "
                         "replaced by each), each report in OUT/fold<k>, and write OUT/folds_summary.json/.md: every "
                         "fold, mean and standard deviation (0 = off).", lower_bound=0)


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


# --------------------------------------------------------------------------------------------
# Predictions files


def save_predictions(path: str | os.PathLike, scores: np.ndarray, targets: np.ndarray, class_names: Sequence[str],
                     task: str, **extra: Any) -> None:
    """Write a predictions file (compressed npz) that ``load_predictions`` reads back.

    Args:
      path: the .npz file to write.
      scores: N x C probabilities (stored as float32).
      targets: N x C multi-hot, or N class indices (single-label).
      class_names: C names.
      task: a ``Task`` value.
      **extra: more arrays to store (e.g. ``split``).

    Raises:
      OSError: ``path`` cannot be written (numpy appends ".npz" to a name without it).
    """
    np.savez_compressed(path, scores=np.asarray(scores, np.float32), targets=np.asarray(targets),
                        class_names=np.asarray(list(class_names), dtype=str), task=np.asarray(str(task)),
                        **{k: np.asarray(v) for k, v in extra.items()})


def infer_task(targets: np.ndarray, declared: str | None = None) -> Task:
    """The declared task when given (not "auto"), else N class indices -> single-label, N x C -> multi-label.

    Args:
      targets: N class indices (1-D) or N x C multi-hot (2-D); only the number of dimensions is used.
      declared: a ``Task`` value, or None / "" / "auto" to infer it from ``targets``.

    Returns:
      The ``Task``.

    Raises:
      ValueError: ``declared`` is not a task name.
    """
    if declared and declared != "auto":
        try:
            return Task(declared)
        except ValueError:
            raise ValueError(f"unknown task {declared!r} (expected {' or '.join(t.value for t in Task)})") from None
    return Task.SINGLE_LABEL if np.ndim(targets) == 1 else Task.MULTI_LABEL


def _read_npz(path: str) -> dict[str, np.ndarray]:
    """Every array of an .npz file, read eagerly; InputError when the file is missing or not an .npz archive."""
    if not os.path.exists(path):
        raise InputError("no such file", path=path)
    if os.path.isdir(path):
        raise InputError("is a directory, not a predictions .npz file", path=path)
    try:
        z = np.load(path, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise InputError("holds a single array (.npy), not an .npz archive of scores, targets and class_names",
                             path=path)
        with z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        if isinstance(e, InputError):
            raise
        raise InputError(f"not a readable .npz archive ({_first_line(e)})", path=path) from None


def load_predictions(path: str | os.PathLike, task: str = "auto") -> tuple[np.ndarray, np.ndarray, list[str], Task]:
    """Read a predictions .npz and check it for consistency.

    Args:
      path: a file written by ``save_predictions`` (or any .npz with ``scores`` N x C and
        ``targets`` N x C or N; ``class_names`` (C) and ``task`` are optional).
      task: "auto" (the stored task, else from the targets' shape) or a ``Task`` value.

    Returns:
      (scores N x C, targets, class names, task).

    Raises:
      InputError: the file is missing, not an .npz archive, lacks ``scores`` or ``targets``, or its
        arrays do not fit together (shapes, class count, non-finite scores, targets that are not
        0/1 or valid class indices); the message names the file and the problem.
    """
    path = os.fspath(path)
    arrays = _read_npz(path)
    missing = [k for k in ("scores", "targets") if k not in arrays]
    if missing:
        raise InputError(f"missing array(s) {', '.join(missing)}; a predictions file holds scores (N x C), targets "
                         f"(N x C or N) and class_names (C); it has {', '.join(sorted(arrays)) or 'none'}", path=path)
    scores, targets = arrays["scores"], arrays["targets"]

    def bad(problem: str):
        return InputError(problem, path=path)

    for name, a in (("scores", scores), ("targets", targets)):
        if not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
            raise bad(f"{name} must be numbers, got dtype {a.dtype}")
    if scores.ndim != 2:
        raise bad(f"scores must be N x C, got shape {scores.shape}")
    n, c = scores.shape
    if n == 0 or c == 0:
        raise bad(f"scores hold no predictions (shape {scores.shape})")
    if targets.shape not in ((n,), (n, c)):
        raise bad(f"targets shape {targets.shape} fits neither ({n},) nor ({n}, {c}) (scores are {n} x {c})")
    if "class_names" in arrays:
        raw = arrays["class_names"]
        if raw.ndim != 1:
            raise bad(f"class_names must be a list of {c} names, got shape {raw.shape}")
        names = [str(v) for v in raw]
    else:
        names = [f"class {j}" for j in range(c)]
    if len(names) != c:
        raise bad(f"{len(names)} class_names for {c} score columns")
    stored_task = str(arrays["task"]) if "task" in arrays else None
    chosen = task if task and task != "auto" else stored_task
    try:
        task = infer_task(targets, chosen)
    except ValueError as e:
        raise bad(str(e)) from None
    if task == Task.MULTI_LABEL:
        if targets.shape != (n, c):
            raise bad(f"multi-label targets must be N x C multi-hot, got shape {targets.shape}")
        if not np.isin(targets, (0, 1)).all():
            raise bad("multi-label targets must be 0 or 1")
    elif targets.ndim == 1:
        if not np.isfinite(targets).all() or not np.equal(np.mod(targets, 1), 0).all():
            raise bad("single-label targets must be whole class indices")
        if targets.min() < 0 or targets.max() >= c:
            raise bad(f"single-label targets must be class indices 0..{c - 1}, found {targets.min()}..{targets.max()}")
    if not np.isfinite(scores).all():
        raise bad("scores contain NaN or infinite values")
    return scores, targets, names, task


def load_thresholds(path: str, num_classes: int, default: float = DEFAULT_THRESHOLD) -> np.ndarray:
    """Per-class thresholds from a .json list (or {"thresholds": [...]}), or chosen on a predictions .npz.

    From an .npz the thresholds maximise each class's F1 on it (``metrics.select_thresholds``);
    a class without positives there keeps ``default``.

    Args:
      path: a .json file (a list of C numbers, or {"thresholds": [...]}), else a multi-label
        predictions .npz (see ``load_predictions``), e.g. of the validation split.
      num_classes: C, the class count of the predictions the thresholds are for.
      default: the threshold of a class without positives in the .npz (unused for .json).

    Returns:
      float64 array of ``num_classes`` thresholds.

    Raises:
      InputError: the file is missing or unreadable, or holds another number of classes.
    """
    if path.endswith(".json"):
        try:
            with open(path) as f:
                data = json.load(f)
        except FileNotFoundError:
            raise InputError("no such file", path=path) from None
        except (OSError, json.JSONDecodeError) as e:
            raise InputError(f"not a readable JSON file ({_first_line(e)})", path=path) from None
        if isinstance(data, dict):
            data = data.get("thresholds")
        try:
            thr = np.asarray(data, dtype=np.float64)
        except (TypeError, ValueError):
            thr = np.zeros(0)
        if thr.shape != (num_classes,) or not np.isfinite(thr).all():
            raise InputError(f"expected a list of {num_classes} finite thresholds", path=path)
        return thr
    scores, targets, _, task = load_predictions(path, Task.MULTI_LABEL)
    if scores.shape[1] != num_classes:
        raise InputError(f"{scores.shape[1]} classes, the evaluated predictions have {num_classes}", path=path)
    return metrics.select_thresholds(scores, targets, default=default)


def _refuse_thresholds_for_single_label(source: str, **given: Any) -> None:
    """UsageError when a threshold option (name=value, None = not given) comes with single-label data."""
    named = [f"--{name}" for name, value in given.items() if value not in (None, "")]
    if named:
        raise UsageError(f"single-label data: {' and '.join(named)} applies to multi-label data only (a single-label "
                         "prediction is the top-scoring class); leave it out", path=source)


# --------------------------------------------------------------------------------------------
# Evaluation


def evaluate_arrays(scores: np.ndarray, targets: np.ndarray, class_names: Sequence[str], task: str,
                    out_dir: str, *, threshold: float | Sequence[float] = DEFAULT_THRESHOLD, meta: dict | None = None,
                    plots: bool = True, batch_rows: int = 8192, echo: Callable[[str], Any] | None = print) -> dict:
    """Accumulate the predictions (in row batches, as a model run would) and write the report.

    Args:
      scores: N x C probabilities.
      targets: N x C multi-hot, or N class indices (single-label).
      class_names: C names.
      task: a ``Task`` value.
      out_dir: folder for the report files (created).
      threshold: multi-label decision threshold, one number or C (unused for single-label).
      meta: extra fields for eval_details.json and report.md (sources, split, ...).
      plots: write the PNG plots.
      batch_rows: rows per accumulator update.
      echo: called with the console table (None: not printed).

    Returns:
      ``evaluation.report.write_report``'s dict: {"result", "files", "table"}.

    Raises:
      ValueError: an unknown task, an invalid threshold, a class_names count other than C, or a
        metric that is not finite (``evaluation.metrics``, ``evaluation.report``).
      OSError: ``out_dir`` cannot be written.
    """
    scores = np.asarray(scores)
    acc = metrics.make_accumulator(task, scores.shape[1], threshold=threshold)
    for start in range(0, len(scores), batch_rows):
        acc.update(scores[start:start + batch_rows], np.asarray(targets)[start:start + batch_rows])
    return report.write_report(out_dir, acc, class_names, meta=meta, plots=plots, echo=echo)


def evaluate_predictions(path: str, out_dir: str, *, task: str = "auto", threshold: float | None = None,
                         thresholds_from: str | None = None, plots: bool = True,
                         echo: Callable[[str], Any] | None = print) -> dict:
    """Evaluate a predictions .npz (see ``load_predictions``) and write the report into ``out_dir``.

    ``threshold`` (None: ``DEFAULT_THRESHOLD``) or ``thresholds_from`` (see ``load_thresholds``)
    set the multi-label decisions.

    Args:
      path: the predictions .npz (scores N x C, targets N x C or N, class_names C).
      out_dir: folder for the report files (created).
      task: "auto" (the stored task, else from the targets' shape) or a ``Task`` value.
      threshold: multi-label decision threshold; None: not given.
      thresholds_from: per-class thresholds file (.json or validation predictions .npz); None: not given.
      plots: write the PNG plots.
      echo: called with the console table (None: not printed).

    Returns:
      ``evaluate_arrays``' dict.

    Raises:
      InputError: an unreadable or inconsistent predictions or thresholds file.
      UsageError: ``threshold`` or ``thresholds_from`` given for single-label predictions.
    """
    if task == Task.SEGMENTATION:
        raise UsageError("segmentation is evaluated with --model (the per-pixel predictions are not saved)",
                         path=os.fspath(path))
    scores, targets, names, task = load_predictions(path, task)
    meta = {"predictions": os.path.abspath(path)}
    if task == Task.SINGLE_LABEL:
        _refuse_thresholds_for_single_label(os.fspath(path), threshold=threshold, thresholds_from=thresholds_from)
    threshold = DEFAULT_THRESHOLD if threshold is None else float(threshold)
    if task == Task.MULTI_LABEL:
        if thresholds_from:
            threshold = load_thresholds(thresholds_from, scores.shape[1], default=threshold)
            meta["thresholds_from"] = os.path.abspath(thresholds_from)
        else:
            meta["threshold"] = threshold
    return evaluate_arrays(scores, targets, names, task, out_dir, threshold=threshold, meta=meta, plots=plots,
                           echo=echo)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function of logits (any shape), computed in float64, returned as float32.

    Args:
      x: logits, any shape (multi-label: N x C).

    Returns:
      Probabilities in [0, 1], float32, the shape of ``x``.
    """
    x = np.asarray(x, np.float64)
    return (0.5 * (1.0 + np.tanh(0.5 * x))).astype(np.float32)


def softmax(x: np.ndarray) -> np.ndarray:
    """Softmax over the last axis of N x C logits (float64 inside, float32 out).

    Args:
      x: N x C logits (single-label).

    Returns:
      N x C float32 probabilities, each row summing to 1.
    """
    x = np.asarray(x, np.float64)
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def resolve_model(path: str, checkpoint: str = "best") -> tuple[str, dict | None]:
    """(model file, input_config or None) for a run directory or a .keras file.

    A run directory gives ``<checkpoint>.keras`` (else best.keras, else final.keras) and its
    input_config.json; a .keras file gives itself and the input_config.json beside it, if any.

    Args:
      path: a run directory written by train.py, or a .keras file.
      checkpoint: with a run directory, the model preferred: "best" or "final".

    Returns:
      (path of the .keras file, the parsed input_config.json or None when a bare .keras file has none).

    Raises:
      InputError: no such model, no model file in the run directory, no (readable) input_config.json.
    """
    if os.path.isdir(path):
        candidates = [os.path.join(path, f"{checkpoint}.keras")]
        candidates += [os.path.join(path, f"{n}.keras") for n in ("best", "final") if n != checkpoint]
        model_file = next((p for p in candidates if os.path.exists(p)), None)
        if model_file is None:
            raise InputError(f"no {checkpoint}.keras (nor best/final.keras) in the run directory", path=path)
        config_path = os.path.join(path, INPUT_CONFIG)
        if not os.path.exists(config_path):
            raise InputError("the run directory has no input_config.json", path=config_path)
    else:
        if not os.path.exists(path):
            raise InputError("no such model (a run directory or a .keras file)", path=path)
        model_file = path
        config_path = os.path.join(os.path.dirname(os.path.abspath(path)), INPUT_CONFIG)
    config = None
    if os.path.exists(config_path):
        try:
            with open(config_path) as f:
                config = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            raise InputError(f"not a readable JSON file ({_first_line(e)})", path=config_path) from None
    return model_file, config


def default_out_dir(model_path: str) -> str:
    """Where ``--model`` writes without ``--out_dir``: RUN/eval, or ``<stem>_eval`` beside a .keras file.

    Args:
      model_path: a run directory (gives RUN/eval) or a .keras file (runs/m.keras -> runs/m_eval).

    Returns:
      The report folder's path (not created).
    """
    if os.path.isdir(model_path):
        return os.path.join(model_path, RUN_EVAL_DIR)
    head, name = os.path.split(os.path.normpath(model_path))
    return os.path.join(head, os.path.splitext(name)[0] + FILE_EVAL_SUFFIX)


def input_settings(config: dict | None, overrides: dict) -> dict:
    """make_dataset keyword arguments from input_config.json, else the flags, else the defaults.

    The defaults are bands "10m20m", per_resolution False, resample "bicubic", normalize "manifest".
    A comma list of bands becomes a list, normalize "none" becomes None, and the training statistics
    of input_config.json (``statistics``, per-band mean and std) replace a normalization name.

    Args:
      config: the parsed input_config.json of the model, or None for a bare .keras file.
      overrides: the --bands, --per_resolution, --resample and --normalize values (None: not
        given); used only without ``config``.

    Returns:
      {"bands", "per_resolution", "resample", "normalize"} for ``make_dataset``.
    """
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
    """The prepared dataset's manifest, loaded and checked by ``prep.manifest.load``.

    Args:
      data_dir: the prepared dataset directory (holds manifest.json).

    Returns:
      The parsed manifest (a ``prep.manifest.Manifest``, a dict).

    Raises:
      InputError: no such folder, no manifest.json in it, or one that is malformed, not an
        eorecords manifest or of an unknown dataset.
    """
    from prep import manifest

    return manifest.load(data_dir)


def make_dataset(data_dir: str, split: str, settings: dict, batch_size: int) -> tf.data.Dataset:
    """The split as a deterministic, unshuffled tf.data dataset of (features dict, targets) batches.

    Through ``prep.reader.make_dataset`` (training=False): features {"image": float32 [B, H, W, C]},
    or one float32 tensor per resolution group with per_resolution; targets float32 multi-hot
    [B, C] (multi-label) or int32 class indices [B] (single-label). The last batch may be smaller.

    Args:
      data_dir: the prepared dataset directory.
      split: the split to read.
      settings: ``input_settings``' keyword arguments (bands, per_resolution, resample, normalize).
      batch_size: B, examples per batch.

    Returns:
      The batched ``tf.data.Dataset``.

    Raises:
      InputError: (``prep.reader.ReaderError``) no such split, or settings the data do not allow.
    """
    from prep import reader

    return reader.make_dataset(data_dir, split, batch_size=batch_size, training=False, deterministic=True,
                               **settings)


def load_model(model_file: str) -> keras.Model:
    """The model, through ``models.load_model`` (which registers the project's custom layers).

    Args:
      model_file: a .keras file (loaded without compiling).

    Returns:
      The Keras model.

    Raises:
      InputError: the file is not a loadable Keras model.
    """
    import models

    try:
        return models.load_model(model_file, compile=False)
    except (OSError, ValueError, TypeError, KeyError, zipfile.BadZipFile) as e:
        raise InputError(f"cannot load the model ({_first_line(e)})", path=model_file) from None


def _input_names(model: keras.Model) -> list[str]:
    return [t.name for t in model.inputs]


def model_inputs(model: keras.Model, features: Any, source: str = "the data") -> Any:
    """``features`` in the structure the model was built with, so that Keras matches them as is.

    Models built by ``models.build`` take a dict {input name: tensor} (names = the input_spec keys,
    as the reader's feature dict has them); other functional models may take one tensor or a
    list. ``features`` is the reader's dict (or one tensor); each model input takes the feature
    of its name, or the only feature when both have exactly one.

    Args:
      model: the Keras model.
      features: a batch's features: {name: tensor}, or one tensor.
      source: what the features come from, named in the error (e.g. the data directory).

    Returns:
      A dict, list or tuple of tensors, or one tensor, as ``model.input`` is structured.

    Raises:
      InputError: a model input has no feature of its name (e.g. per-resolution inputs asked of
        single-image data), naming both sides.
    """
    available = dict(features) if isinstance(features, Mapping) else None
    names = _input_names(model)

    def pick(name: str):
        if available is None:
            if len(names) == 1:
                return features
        elif name in available:
            return available[name]
        elif len(names) == 1 and len(available) == 1:
            return next(iter(available.values()))
        given = sorted(available) if available is not None else "one unnamed tensor"
        raise InputError(f"the model's inputs {names} do not match the data's features {given}", path=source)

    expected = model.input
    if isinstance(expected, Mapping):
        return {key: pick(key) for key in expected}
    if isinstance(expected, (list, tuple)):
        return type(expected)(pick(t.name) for t in expected)
    return pick(expected.name)


def predict_split(model: keras.Model, data_dir: str, split: str, settings: dict, task: str, num_classes: int,
                  batch_size: int, max_batches: int = 0, total: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Run the model over a split: (scores N x C float32, targets), activation applied.

    The logits go through ``sigmoid`` (multi-label) or ``softmax`` (single-label); a tqdm bar
    shows the batches.

    Args:
      model: the Keras model (C logits per example).
      data_dir: the prepared dataset directory.
      split: the split to run over.
      settings: ``input_settings``' keyword arguments.
      task: a ``Task`` value.
      num_classes: C.
      batch_size: examples per batch.
      max_batches: stop after this many batches (0 = the whole split).
      total: the split's record count, for the progress bar only (None: unknown).

    Returns:
      (scores N x C float32 probabilities, targets N x C multi-hot or N class indices), N the
      records read.

    Raises:
      InputError: the model's inputs or outputs do not fit the data, or the split is empty.
    """
    from tqdm import tqdm

    ds = make_dataset(data_dir, split, settings, batch_size)
    activation = sigmoid if task == Task.MULTI_LABEL else softmax
    n_batches = math.ceil(total / batch_size) if total else None
    if max_batches:
        n_batches = min(n_batches or max_batches, max_batches)
    scores, targets = [], []
    for i, (features, y) in enumerate(tqdm(ds, total=n_batches, desc=f"{split}", unit="batch")):
        if max_batches and i >= max_batches:
            break
        logits = np.asarray(model(model_inputs(model, features, data_dir), training=False))
        if logits.ndim != 2 or logits.shape[1] != num_classes:
            raise InputError(f"the model's output shape {logits.shape} does not fit the dataset's {num_classes} "
                             "classes", path=data_dir)
        scores.append(activation(logits))
        targets.append(np.asarray(y))
    if not scores:
        raise InputError(f"split {split!r} yielded no batches", path=data_dir)
    return np.concatenate(scores), np.concatenate(targets)


def predict_masks(model: keras.Model, data_dir: str, split: str, settings: dict, num_classes: int, batch_size: int,
                  max_batches: int = 0, total: int | None = None) -> segmentation.SegmentationAccumulator:
    """Run a segmentation model over ``split`` and accumulate its pixel confusion matrix.

    Each pixel's prediction is the argmax of its C logits; pixels whose target is
    ``IGNORE_INDEX`` are left out. A tqdm bar shows the batches.

    Args:
      model: the Keras model (per-pixel logits [B, H, W, C]).
      data_dir: the prepared dataset directory (a mask schema).
      split: the split to run over.
      settings: ``input_settings``' keyword arguments.
      num_classes: C.
      batch_size: examples per batch.
      max_batches: stop after this many batches (0 = the whole split).
      total: the split's record count, for the progress bar only (None: unknown).

    Returns:
      The filled ``SegmentationAccumulator`` (its ``samples`` attribute: the images read).

    Raises:
      InputError: the model's output does not fit the masks, or the split is empty.
    """
    from tqdm import tqdm

    from prep.datasets.spec import IGNORE_INDEX

    ds = make_dataset(data_dir, split, settings, batch_size)
    acc = segmentation.SegmentationAccumulator(num_classes, ignore=(IGNORE_INDEX,))
    acc.samples = 0
    n_batches = math.ceil(total / batch_size) if total else None
    if max_batches:
        n_batches = min(n_batches or max_batches, max_batches)
    for i, (features, y) in enumerate(tqdm(ds, total=n_batches, desc=f"{split}", unit="batch")):
        if max_batches and i >= max_batches:
            break
        logits = np.asarray(model(model_inputs(model, features, data_dir), training=False))
        y = np.asarray(y)
        if logits.shape != (*y.shape, num_classes):
            raise InputError(f"the model's output shape {logits.shape} does not fit the masks {y.shape} of the "
                             f"dataset's {num_classes} classes (a segmentation model gives [B, H, W, C] logits)",
                             path=data_dir)
        acc.update(y, logits.argmax(-1))
        acc.samples += len(y)
    if not acc.samples:
        raise InputError(f"split {split!r} yielded no batches", path=data_dir)
    return acc


def evaluate_model(model_path: str, out_dir: str | None = None, *, data_dir: str | None = None, split: str = "test",
                   checkpoint: str = "best", task: str = "auto", threshold: float | None = None,
                   thresholds_from: str | None = None, threshold_split: str | None = None, batch_size: int = 256,
                   max_batches: int = 0, overrides: Mapping[str, Any] | None = None, plots: bool = True,
                   echo: Callable[[str], Any] | None = print) -> dict:
    """Run a model over a prepared split, save its predictions and write the report.

    Args:
      model_path: a run directory written by train.py, or a .keras file.
      out_dir: report folder; None: ``default_out_dir(model_path)``.
      data_dir: prepared dataset (default: the run's input_config.json data_dir).
      split: the split evaluated.
      checkpoint: best or final (run directory).
      task: "auto" (input_config, else manifest) or a ``Task`` value.
      threshold: multi-label decision threshold (None: not given; ``DEFAULT_THRESHOLD`` is then
        used); refused for single-label data.
      thresholds_from: per-class thresholds file, see ``load_thresholds`` (None: not given);
        refused for single-label data.
      threshold_split: a split to pick per-class F1-maximising thresholds on (its predictions are
        saved too, as predictions_<split>.npz); None: not given; refused for single-label data.
      batch_size: examples per model batch.
      max_batches: batches per split (0 = all).
      overrides: input settings for a bare .keras file (bands, per_resolution, resample, normalize).
      plots: write the PNG plots.
      echo: called with the console table (None: not printed).

    Returns:
      ``evaluate_arrays``' dict; "files" also lists the predictions file(s) written; "out_dir", "classes"
      (the class names) and "task" (a ``Task``) are added.

    Raises:
      InputError: missing or inconsistent model, config, manifest or split.
      UsageError: no data_dir to be found, an undeterminable task, threshold options with single-label data.
    """
    model_file, config = resolve_model(model_path, checkpoint)
    if out_dir is None:
        out_dir = default_out_dir(model_path)
    data_dir = data_dir or (config or {}).get("data_dir")
    if not data_dir:
        raise UsageError("--data_dir is required (the model has no input_config.json naming it)")
    manifest = load_manifest(data_dir)
    if split not in manifest.get("splits", {}):
        raise InputError(f"no split {split!r} in manifest.json (has {sorted(manifest.get('splits', {}))})", path=data_dir)
    class_names = list(manifest["classes"])
    if config and config.get("classes") and list(config["classes"]) != class_names:
        raise InputError(f"the model's classes (input_config.json) differ from {data_dir}'s manifest", path=model_path)
    trained_on, data_task = (config or {}).get("task"), manifest.get("task")
    if trained_on and data_task and (trained_on == Task.SEGMENTATION) != (data_task == Task.SEGMENTATION):
        raise InputError(f"the model was trained for {trained_on} (input_config.json); {data_dir} holds {data_task} "
                         "targets", path=model_path)
    if task == "auto":
        task = trained_on or data_task
    if task not in tuple(Task):
        raise UsageError(f"cannot tell the task (manifest task is {manifest.get('task')!r}); pass --task", path=data_dir)
    task = Task(task)
    if task == Task.SINGLE_LABEL:
        _refuse_thresholds_for_single_label(data_dir, threshold=threshold, thresholds_from=thresholds_from,
                                            threshold_split=threshold_split)
    if task == Task.SEGMENTATION:
        given = [f"--{k}" for k, v in (("threshold", threshold), ("thresholds_from", thresholds_from),
                                        ("threshold_split", threshold_split)) if v not in (None, "")]
        if given:
            raise UsageError(f"segmentation data: {' and '.join(given)} applies to multi-label data only (a pixel's "
                             "prediction is its top-scoring class); leave it out", path=data_dir)
    threshold = DEFAULT_THRESHOLD if threshold is None else float(threshold)
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
    if task == Task.SEGMENTATION:
        acc = predict_masks(model, data_dir, split, settings, len(class_names), batch_size, max_batches,
                            written(split))
        meta["samples"] = acc.samples
        out = segmentation_report.write_segmentation_report(out_dir, acc, class_names, meta=meta, plots=plots,
                                                            echo=echo)
        out["out_dir"] = out_dir
        out["classes"], out["task"] = class_names, task
        return out
    val_path = None
    if task == Task.MULTI_LABEL:
        if threshold_split:
            if threshold_split not in manifest["splits"]:
                raise InputError(f"no split {threshold_split!r} to pick thresholds on", path=data_dir)
            val_scores, val_targets = predict_split(model, data_dir, threshold_split, settings, task,
                                                    len(class_names), batch_size, max_batches,
                                                    written(threshold_split))
            val_path = os.path.join(out_dir, f"predictions_{threshold_split}.npz")
            save_predictions(val_path, val_scores, val_targets, class_names, task, split=threshold_split)
            threshold = metrics.select_thresholds(val_scores, val_targets, default=threshold)
            meta["thresholds_from"] = f"split {threshold_split} (F1-maximising per class)"
        elif thresholds_from:
            threshold = load_thresholds(thresholds_from, len(class_names), default=threshold)
            meta["thresholds_from"] = os.path.abspath(thresholds_from)
        else:
            meta["threshold"] = threshold
    scores, targets = predict_split(model, data_dir, split, settings, task, len(class_names), batch_size,
                                    max_batches, written(split))
    pred_path = os.path.join(out_dir, PREDICTIONS_NPZ)
    save_predictions(pred_path, scores, targets, class_names, task, split=split)
    meta["predictions"] = os.path.abspath(pred_path)
    out = evaluate_arrays(scores, targets, class_names, task, out_dir, threshold=threshold, meta=meta, plots=plots,
                          echo=echo)
    out["files"] += [pred_path] + ([val_path] if val_path else [])
    out["out_dir"] = out_dir
    out["classes"], out["task"] = class_names, task
    return out


def fold_list(model: str, data_dir: str | None, out_dir: str | None, fold: int | None, all_folds: int) -> list[int]:
    """The folds --fold / --all_folds ask for (``[]`` when neither is given), the flags checked.

    Args:
      model: the --model value; it must contain '{fold}' for a fold run.
      data_dir: the --data_dir value or None (then each run's input_config.json names its data).
      out_dir: the --out_dir value or None.
      fold: --fold (None: not given).
      all_folds: --all_folds (0: off).

    Returns:
      ``[fold]``, ``list(range(all_folds))`` or ``[]``.

    Raises:
      UsageError: both given; no '{fold}' in --model or in a given --data_dir; --all_folds without
        --out_dir, or with '{fold}' in it (it is the summary folder).
    """
    if fold is not None and all_folds:
        raise UsageError("give --fold or --all_folds, not both")
    if fold is None and not all_folds:
        return []
    if "{fold}" not in model:
        raise UsageError("--model must contain '{fold}' with --fold/--all_folds (e.g. runs/lulc_fold{fold})")
    if data_dir and "{fold}" not in data_dir:
        raise UsageError("--data_dir must contain '{fold}' with --fold/--all_folds (e.g. lulc_fold{fold}), or be "
                         "left out (each run's input_config.json names its data)")
    if not all_folds:
        return [fold]
    if not out_dir or "{fold}" in out_dir:
        raise UsageError("--all_folds needs --out_dir OUT without '{fold}': the folds summary goes there and fold "
                         "k's report to OUT/fold<k>")
    return list(range(all_folds))


def evaluate_folds(model: str, fold_numbers: Sequence[int], out_dir: str, *, data_dir: str | None = None,
                   echo: Callable[[str], Any] | None = print, **kwargs: Any) -> dict:
    """Evaluate each fold's model (``evaluate_model``) and write the folds summary (``evaluation.folds``).

    Args:
      model: a run directory or .keras path with '{fold}' for the fold number (e.g. runs/lulc_fold{fold}).
      fold_numbers: the folds, in order.
      out_dir: the summary folder; fold k's report goes to ``out_dir/fold<k>``.
      data_dir: the prepared data with '{fold}' (None: each run's input_config.json data_dir).
      echo: called with each fold's table and the summary table (None: not printed).
      **kwargs: more ``evaluate_model`` arguments (split, checkpoint, task, thresholds, batch_size, ...).

    Returns:
      ``{"summary": the summary, "folds": each fold's evaluate_model dict, "files": every file written,
      "out_dir": out_dir}``.

    Raises:
      InputError: as ``evaluate_model``, or folds whose class names or task differ.
      UsageError: as ``evaluate_model``.
    """
    runs = []
    for k in fold_numbers:
        if echo:
            echo(f"\n== fold {k}")
        runs.append(evaluate_model(model.replace("{fold}", str(k)), os.path.join(out_dir, f"fold{k}"),
                                   data_dir=data_dir.replace("{fold}", str(k)) if data_dir else None, echo=echo,
                                   **kwargs))
    first = runs[0]
    for k, r in zip(fold_numbers, runs):
        if (r["classes"], r["task"]) != (first["classes"], first["task"]):
            raise InputError(f"fold {k} has other classes or another task than fold {fold_numbers[0]}",
                             path=r["out_dir"])
    chosen = {Task.SINGLE_LABEL: folds.SINGLE_LABEL_METRICS, Task.SEGMENTATION: folds.SEGMENTATION_METRICS}.get(
        first["task"], folds.MULTI_LABEL_METRICS)
    summary = folds.summarize([r["result"] for r in runs], first["classes"], [r["out_dir"] for r in runs], chosen)
    written = folds.write_summary(out_dir, summary, "folds_summary")
    if echo:
        echo(f"\n{summary['folds']} folds:\n{folds.console_table(summary)}")
    return {"summary": summary, "folds": runs, "files": [f for r in runs for f in r["files"]] + written,
            "out_dir": out_dir}


def main(argv: Sequence[str]) -> int:
    """The command (run by ``run`` through ``prep.cli.run_command``); returns the exit status 0.

    Evaluates --predictions (``evaluate_predictions``) or --model (``evaluate_model``; every fold
    with ``evaluate_folds`` for --all_folds) as the flags say and prints how many files were written where.

    Args:
      argv: absl's remaining command line; only the program name is accepted.

    Returns:
      The exit status, 0.

    Raises:
      UsageError: arguments besides the flags, not exactly one of --predictions and --model, no
        --out_dir with --predictions, --threshold_split or --fold/--all_folds with --predictions,
        a fold flag without '{fold}' (see ``fold_list``), or a contradictory flag (see ``evaluate_model``).
      InputError: a missing, unreadable or inconsistent file, model, manifest or split.
    """
    cli.no_arguments(argv)
    if bool(FLAGS.predictions) == bool(FLAGS.model):
        raise UsageError("give exactly one of --predictions FILE.npz or --model RUN_DIR_OR_.keras")
    if FLAGS.predictions and (FLAGS.fold is not None or FLAGS.all_folds):
        raise UsageError("--fold/--all_folds evaluate models: give --model with '{fold}', not --predictions")
    # None = not given: the threshold options are refused for single-label data only when given
    threshold = FLAGS.threshold if FLAGS["threshold"].present else None
    if FLAGS.predictions:
        cli.required("out_dir")
        if FLAGS.threshold_split:
            raise UsageError("--threshold_split needs --model; with --predictions use --thresholds_from")
        out = evaluate_predictions(FLAGS.predictions, FLAGS.out_dir, task=FLAGS.task, threshold=threshold,
                                   thresholds_from=FLAGS.thresholds_from, plots=FLAGS.plots)
        out_dir = FLAGS.out_dir
    else:
        overrides = {"bands": FLAGS.bands, "per_resolution": FLAGS.per_resolution, "resample": FLAGS.resample,
                     "normalize": FLAGS.normalize}
        fold_numbers = fold_list(FLAGS.model, FLAGS.data_dir, FLAGS.out_dir, FLAGS.fold, FLAGS.all_folds)
        options = dict(split=FLAGS.split, checkpoint=FLAGS.checkpoint, task=FLAGS.task, threshold=threshold,
                       thresholds_from=FLAGS.thresholds_from, threshold_split=FLAGS.threshold_split,
                       batch_size=FLAGS.batch_size, max_batches=FLAGS.max_batches, overrides=overrides,
                       plots=FLAGS.plots)
        if FLAGS.all_folds:
            out = evaluate_folds(FLAGS.model, fold_numbers, FLAGS.out_dir, data_dir=FLAGS.data_dir, **options)
        else:
            def sub(v: str | None) -> str | None:
                return v.replace("{fold}", str(fold_numbers[0])) if v and fold_numbers else v

            out = evaluate_model(sub(FLAGS.model), sub(FLAGS.out_dir), data_dir=sub(FLAGS.data_dir), **options)
        out_dir = out["out_dir"]
    print(f"\nwrote {len(out['files'])} files to {out_dir}")
    return 0


def run(argv: Sequence[str] | None = None) -> None:
    """Console entry point (``eorecords-evaluate``; also ``python evaluate.py``).

    Args:
      argv: the command line (``argv[0]`` the program); None: ``sys.argv``.

    Raises:
      SystemExit: always; 0 on success, 1 for bad input, 2 for a usage error.
    """
    cli.run_command(sys.modules[__name__], argv)


if __name__ == "__main__":
    run()
