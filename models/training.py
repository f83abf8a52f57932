"""The reusable pieces of a training run (train.py).

Inputs, strategy, learning rate, optimizer, loss, micro-F1 counts, history and curves,
run-directory files.

Flag-free: train.py turns its flags into a ``TrainConfig`` and calls these. ``make_schedule`` and
``make_optimizer`` read the named attributes of that config (any object with them will do).
"""
from __future__ import annotations

import csv
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import keras
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import summary_pb2

import models
from prep.datasets.spec import IGNORE_INDEX, Task
from prep.errors import InputError, UsageError
from prep.files import atomic_write, sha256_file, write_json_atomic

if TYPE_CHECKING:
    from prep.datasets.spec import DatasetSpec
    from train import TrainConfig

HISTORY_FIELDS = ("epoch", "step", "learning_rate", "loss", "micro_f1", "val_loss", "val_micro_f1", "seconds",
                  "val_miou")  # val_miou: segmentation runs only (empty otherwise)


# --- inputs and data ------------------------------------------------------------------------------

def default_inputs(model_name: str, spec: DatasetSpec) -> tuple[str, bool]:
    """Returns (bands, per_resolution): the model's published inputs, expressed for the dataset ``spec``.

    The dataset's package says how each model is fed (``Dataset.model_input``): a model whose
    published inputs are band presets of the dataset (K-BranchCNN: 10m, 20m, 60m) gets them per
    resolution; other models get the dataset's ``model_inputs`` entry or its ``default_bands``
    (BigEarthNet 10m20m, So2Sat sen2). A dataset outside the registry gets all its bands.

    Args:
        model_name: a model name (``models.names()``); an unknown one is taken as a single-image model.
        spec: the dataset's definition (the manifest's dataset).

    Returns:
        A band selection for ``prep.reader`` (a preset such as "10m20m", or presets joined with
        "+") and whether to deliver one input per resolution group.
    """
    from prep import datasets

    try:
        input_names = list(models.default_input_spec(model_name))
    except KeyError:
        input_names = ["image"]
    try:
        ds = datasets.dataset(spec.name)
    except KeyError:  # a definition made on the fly (tests): the generic rule
        if input_names != ["image"] and all(k in spec.band_presets for k in input_names):
            return "+".join(input_names), True
        return "all", False
    choice = ds.model_input(model_name, input_names)
    return choice.bands, choice.per_resolution


def model_options(name: str, options: Mapping[str, Any], unfreeze: bool = False) -> dict:
    """Returns the keyword options for ``models.build(name, ...)``: ``options``, plus ``unfreeze=True`` with --unfreeze.

    Raises:
        UsageError: ``unfreeze`` for a model without that option (one without a pretrained backbone to fine-tune).
    """
    out = dict(options)
    if unfreeze:
        if "unfreeze" not in models.options(name):
            raise UsageError(f"model {name} has no backbone to fine-tune (no 'unfreeze' option; the TL-* "
                             "transfer-learning models have one)", path="--unfreeze")
        out["unfreeze"] = True
    return out


def epoch_seed(seed: int, epoch: int) -> int:
    """Returns the data seed of one epoch, in [0, 2**31).

    A function of (seed, epoch) only (``np.random.SeedSequence``), so a resumed run sees the same data.
    """
    return int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(epoch)]).generate_state(1)[0] & 0x7FFFFFFF)


def class_weight_vector(option: str, manifest: Mapping, split: str) -> np.ndarray | None:
    """Returns per-class loss weights from the --class_weights option, or None.

    Args:
        option: "none" (or "" / None), "balanced" (inverse class frequency of ``split``, scaled to
            mean 1), a ``.json`` file ``{class name: weight}`` (scaled to mean 1) or one
            comma-separated weight per class (taken as given).
        manifest: the prepared dataset's manifest.json (``classes`` and per-split ``class_counts``).
        split: the split whose class counts "balanced" uses.

    Returns:
        ``[num_classes]`` float32 in the manifest's class order, or None for "none".

    Raises:
        InputError: "balanced" without class counts in the manifest, or a JSON file missing classes.
        UsageError: a comma list that does not parse or has the wrong length.
        OSError: the JSON file cannot be read.
    """
    classes = list(manifest["classes"])
    if option in (None, "", "none"):
        return None
    if option == "balanced":
        counts_map = manifest["splits"][split].get("class_counts") or {}
        counts = np.array([float(counts_map.get(c, 0)) for c in classes])
        if not counts.any():
            raise InputError(f"the manifest has no class counts for split {split!r}", path="--class_weights balanced")
        w = 1.0 / np.maximum(counts, 1.0)
    elif option.endswith(".json"):
        with open(option, encoding="utf-8") as f:
            table = json.load(f)
        missing = [c for c in classes if c not in table]
        if missing:
            raise InputError(f"no weight for classes {missing}", path=option)
        w = np.array([float(table[c]) for c in classes])
    else:
        try:
            w = np.array([float(v) for v in option.split(",")])
        except ValueError:
            raise UsageError(f"expected none, balanced, a .json file or {len(classes)} comma-separated numbers",
                             path=f"--class_weights {option}") from None
        if len(w) != len(classes):
            raise UsageError(f"{len(w)} values for {len(classes)} classes", path=f"--class_weights {option}")
        return w.astype(np.float32)
    return (w / w.mean()).astype(np.float32)


# --- distribution ---------------------------------------------------------------------------------

def make_strategy(name: str, tpu: str = "") -> tf.distribute.Strategy:
    """Returns the tf.distribute strategy named by --strategy, connecting to the TPU for "tpu".

    Args:
        name: "default", "mirrored", "multi_worker" or "tpu".
        tpu: the TPU name or address ('' = the local TPU); used by "tpu" only.

    Raises:
        ValueError: unknown name.
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or None)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    raise ValueError(f"unknown strategy {name!r}; one of default, mirrored, multi_worker, tpu")


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Tells whether this process writes the run directory (the chief, or worker 0 of a chief-less cluster)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return True
    return resolver.task_type == "chief" or (resolver.task_type == "worker" and resolver.task_id == 0
                                             and "chief" not in resolver.cluster_spec().as_dict())


def barrier(strategy: tf.distribute.Strategy) -> None:
    """Wait until every worker of ``strategy`` has reached this call (an all-reduce of one number).

    A multi-worker run ends with it: a worker whose process exits stops sending heartbeats, which
    the coordination service on the chief reports as a crashed task while the chief still writes.
    Returns at once with one replica.
    """
    if strategy.num_replicas_in_sync <= 1:
        return

    def one():
        return tf.ones([])

    @tf.function(autograph=False)
    def all_reduce():
        return strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(one), axis=None)

    all_reduce()


def shard_by_data(ds: tf.data.Dataset) -> tf.data.Dataset:
    """``ds`` with the DATA auto-shard policy, for ``strategy.experimental_distribute_dataset``.

    Every worker of a multi-worker strategy then reads the whole pipeline (same files, same seeded
    order) and takes its replicas' slices of each global batch, so step k of a run of N workers sees
    the examples of step k of a one-worker run with the same global batch. The default (AUTO) would
    give each worker different shard files. No effect on one worker.

    Args:
      ds: a dataset batched with the global batch size.

    Returns:
      The same dataset with the option set.
    """
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options)


def synchronize_batch_norm(model: keras.Model) -> int:
    """Make every BatchNormalization layer of ``model`` compute its statistics over all replicas.

    With several replicas each one sees a slice of the global batch; synchronized batch norm
    all-reduces the batch mean and variance (Keras's ``synchronized=True``, TensorFlow backend), so
    the forward pass, the gradients and the moving statistics are those of one replica on the whole
    global batch. To be called inside ``strategy.scope()`` before the model is first called; the
    saved model carries ``synchronized: true``, which one replica ignores.

    Args:
      model: a built Keras model (nested models included).

    Returns:
      The number of BatchNormalization layers changed.
    """
    n = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization) and not layer.synchronized:
            layer.synchronized = True
            n += 1
        elif hasattr(layer, "layers"):  # a nested model
            n += synchronize_batch_norm(layer)
    return n


# --- learning rate and optimizer ------------------------------------------------------------------

def make_schedule(cfg: TrainConfig, steps_per_epoch: int) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """Returns the learning rate of ``cfg.lr_schedule`` with its linear warm-up.

    Args:
        cfg: reads ``learning_rate``, ``epochs``, ``lr_schedule`` ("constant", "cosine", "step" or
            "exponential"), ``lr_warmup_epochs``, ``lr_decay_epochs`` and ``lr_decay_factor``
            (any object with these attributes will do).
        steps_per_epoch: optimizer steps per epoch (schedules count steps, the options epochs).

    Returns:
        A float (constant, no warm-up) or a Keras schedule over optimizer steps.

    Raises:
        UsageError: a warm-up with the step or exponential schedule.
        ValueError: unknown schedule.
    """
    lr = float(cfg.learning_rate)
    total = max(1, cfg.epochs * steps_per_epoch)
    warmup = int(round(cfg.lr_warmup_epochs * steps_per_epoch))
    decay_steps = max(1, int(round(cfg.lr_decay_epochs * steps_per_epoch)))
    if warmup and cfg.lr_schedule not in ("constant", "cosine"):
        raise UsageError("works with the constant and cosine schedules only",
                         path=f"--lr_warmup_epochs {cfg.lr_warmup_epochs} --lr_schedule {cfg.lr_schedule}")
    if cfg.lr_schedule == "constant":
        if not warmup:
            return lr
        return keras.optimizers.schedules.CosineDecay(0.0, 1, alpha=1.0, warmup_target=lr, warmup_steps=warmup)
    if cfg.lr_schedule == "cosine":
        if not warmup:
            return keras.optimizers.schedules.CosineDecay(lr, total)
        return keras.optimizers.schedules.CosineDecay(0.0, max(1, total - warmup), warmup_target=lr,
                                                      warmup_steps=warmup)
    if cfg.lr_schedule in ("step", "exponential"):
        return keras.optimizers.schedules.ExponentialDecay(lr, decay_steps, cfg.lr_decay_factor,
                                                           staircase=cfg.lr_schedule == "step")
    raise ValueError(f"unknown --lr_schedule {cfg.lr_schedule!r}")


def make_optimizer(cfg: TrainConfig,
                   schedule: float | keras.optimizers.schedules.LearningRateSchedule) -> keras.optimizers.Optimizer:
    """Returns the Keras optimizer of ``cfg.optimizer`` with its weight decay and momentum.

    Args:
        cfg: reads ``optimizer`` ("adam", "adamw", "nadam", "sgd" or "rmsprop"), ``weight_decay``
            (decoupled, 0 = none), ``momentum`` (SGD and RMSprop) and ``nesterov`` (SGD).
        schedule: the learning rate, as ``make_schedule`` returns it.

    Raises:
        ValueError: unknown optimizer.
    """
    wd = cfg.weight_decay or None
    if cfg.optimizer == "adam":
        opt = keras.optimizers.Adam(schedule, weight_decay=wd)
    elif cfg.optimizer == "adamw":
        opt = keras.optimizers.AdamW(schedule, weight_decay=cfg.weight_decay)
    elif cfg.optimizer == "nadam":
        opt = keras.optimizers.Nadam(schedule, weight_decay=wd)
    elif cfg.optimizer == "sgd":
        opt = keras.optimizers.SGD(schedule, momentum=cfg.momentum, nesterov=bool(getattr(cfg, "nesterov", False)),
                                   weight_decay=wd)
    elif cfg.optimizer == "rmsprop":
        opt = keras.optimizers.RMSprop(schedule, momentum=cfg.momentum, weight_decay=wd)
    else:
        raise ValueError(f"unknown --optimizer {cfg.optimizer!r}")
    return opt


def current_lr(optimizer: keras.optimizers.Optimizer) -> float:
    """Returns the optimizer's learning rate at its current step."""
    lr = optimizer.learning_rate
    return float(np.asarray(lr))


# --- loss and micro-F1 ----------------------------------------------------------------------------

def make_loss(task: str, num_classes: int, label_smoothing: float = 0.0,
              class_weights: np.ndarray | Sequence[float] | None = None) -> Callable[[tf.Tensor, tf.Tensor], tf.Tensor]:
    """Returns ``loss(targets, logits)``, the per-example loss of ``task``.

    Multi-label: sigmoid cross-entropy averaged over classes, targets ``[batch, num_classes]``
    multi-hot float32, label smoothing towards 0.5. Single-label: softmax cross-entropy, targets
    ``[batch]`` int32 class indices, label smoothing towards uniform. Segmentation: per-pixel
    softmax cross-entropy on ``[batch, H, W, C]`` logits and ``[batch, H, W]`` int32 targets, pixels
    whose target is ``IGNORE_INDEX`` (-1) left out: each example's loss is the mean over its valid
    pixels (0 for an example without any), class weights scaling each pixel by its class.

    Args:
        task: "multi_label", "single_label" or "segmentation".
        num_classes: C, the width of the ``[batch, C]`` (segmentation: ``[batch, H, W, C]``) float32 logits.
        label_smoothing: smoothing factor in [0, 1) (0 = none).
        class_weights: ``[C]`` weights scaling each class's term (multi-label), each example by
            its class (single-label) or each pixel by its class (segmentation); None = unweighted.

    Returns:
        A function ``(targets, logits) -> [batch]`` float32 loss.

    Raises:
        ValueError: unknown task.
    """
    ls = float(label_smoothing)
    w = None if class_weights is None else tf.constant(np.asarray(class_weights, np.float32))
    if task == Task.MULTI_LABEL:
        def loss(y, logits):
            t = y * (1.0 - ls) + 0.5 * ls if ls else y
            e = tf.nn.sigmoid_cross_entropy_with_logits(labels=t, logits=logits)
            if w is not None:
                e = e * w
            return tf.reduce_mean(e, axis=-1)
    elif task == Task.SINGLE_LABEL:
        def loss(y, logits):
            if ls:
                t = tf.one_hot(y, num_classes) * (1.0 - ls) + ls / num_classes
                e = tf.nn.softmax_cross_entropy_with_logits(labels=t, logits=logits)
            else:
                e = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
            if w is not None:
                e = e * tf.gather(w, y)
            return e
    elif task == Task.SEGMENTATION:
        def loss(y, logits):
            valid = tf.not_equal(y, IGNORE_INDEX)
            t = tf.where(valid, y, 0)
            if ls:
                e = tf.nn.softmax_cross_entropy_with_logits(
                    labels=tf.one_hot(t, num_classes) * (1.0 - ls) + ls / num_classes, logits=logits)
            else:
                e = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=t, logits=logits)
            weight = tf.cast(valid, tf.float32)
            if w is not None:
                weight = weight * tf.gather(w, t)
            n = tf.reduce_sum(tf.cast(valid, tf.float32), axis=[1, 2])
            return tf.math.divide_no_nan(tf.reduce_sum(e * weight, axis=[1, 2]), n)
    else:
        raise ValueError(f"unknown task {task!r}")
    return loss


def make_counts(task: str) -> Callable[[tf.Tensor, tf.Tensor], tuple[tf.Tensor, tf.Tensor, tf.Tensor]]:
    """Returns ``counts(targets, logits) -> (tp, fp, fn)``, the batch's float32 scalar counts for micro-F1.

    Multi-label (targets ``[batch, C]`` multi-hot): prediction = sigmoid >= 0.5 (logit >= 0) per
    class, counts summed over examples and classes. Single-label (targets ``[batch]`` int32): the
    top-1 class, so tp = correct and fp = fn = wrong (micro-F1 = overall accuracy). Segmentation
    (targets ``[batch, H, W]``): the same per pixel, over the pixels not ``IGNORE_INDEX`` (micro-F1 =
    pixel accuracy). Any other task gets the single-label counts.
    """

    def multi(y, logits):
        pred = tf.cast(logits >= 0.0, tf.float32)
        tp = tf.reduce_sum(pred * y)
        return tp, tf.reduce_sum(pred) - tp, tf.reduce_sum(y) - tp

    def single(y, logits):
        right = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), y), tf.float32))
        wrong = tf.cast(tf.shape(y)[0], tf.float32) - right
        return right, wrong, wrong

    def pixels(y, logits):
        valid = tf.cast(tf.not_equal(y, IGNORE_INDEX), tf.float32)
        right = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), y), tf.float32) * valid)
        wrong = tf.reduce_sum(valid) - right
        return right, wrong, wrong

    return {Task.MULTI_LABEL: multi, Task.SEGMENTATION: pixels}.get(task, single)


def make_confusion(num_classes: int) -> Callable[[tf.Tensor, tf.Tensor], tf.Tensor]:
    """Returns ``confusion(targets, logits)``: the batch's float32 [C, C] pixel confusion matrix (segmentation).

    Rows are the true class, columns the predicted (argmax) class, over the pixels whose target is not
    ``IGNORE_INDEX``; summed over batches it gives mIoU (``evaluation.segmentation.iou_metrics``).

    Args:
        num_classes: C.
    """

    def confusion(y, logits):
        pred = tf.argmax(logits, -1, output_type=tf.int32)
        valid = tf.not_equal(y, IGNORE_INDEX)
        return tf.math.confusion_matrix(tf.boolean_mask(y, valid), tf.boolean_mask(pred, valid), num_classes,
                                        dtype=tf.float32)

    return confusion


def micro_f1(tp: float, fp: float, fn: float) -> float:
    """Returns micro-F1 = 2 tp / (2 tp + fp + fn) from summed counts (0 when there is nothing to count)."""
    den = 2 * tp + fp + fn
    return 2 * tp / den if den else 0.0


# --- run directory --------------------------------------------------------------------------------

def git_state() -> dict:
    """Returns ``{"git_commit", "git_dirty"}``: the checkout's HEAD and whether tracked files differ.

    Both are None outside a git checkout or without git.
    """
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the folder of train.py

    def git(*args):
        try:
            return subprocess.run(["git", *args], cwd=here, capture_output=True, text=True, timeout=10,
                                  check=True).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"git_commit": commit, "git_dirty": bool(status) if status is not None else None}


def run_info(manifest_path: str, strategy_name: str, strategy: tf.distribute.Strategy, precision_policy: str,
             input_spec: Mapping) -> dict:
    """Returns the contents of run_info.json: what a run used, to reproduce it.

    The code (git commit, dirty flag), the data (manifest path and SHA-256), the command line, the
    start time, Python/TensorFlow/Keras versions, host, devices, strategy and replica count, the
    precision policy and the model's ``{input name: [H, W, C]}``.

    Raises:
        OSError: the manifest cannot be read.
    """
    return {
        **git_state(),
        "manifest_sha256": sha256_file(manifest_path),
        "manifest": os.path.abspath(manifest_path),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": sys.argv,
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "host": platform.node(),
        "devices": [d.name for d in tf.config.list_logical_devices()],
        "strategy": strategy_name,
        "replicas": strategy.num_replicas_in_sync,
        "precision_policy": precision_policy,
        "input_spec": {k: list(v) for k, v in input_spec.items()},
    }


def write_json(path: str, obj: Any) -> None:
    """Writes ``obj`` as indented JSON (non-JSON values as str) to ``path``, atomically (prep.files)."""
    write_json_atomic(path, obj, indent=2, default=str)


def read_history(path: str) -> list[dict]:
    """Reads history.csv: epoch (numbered from 1) and step as int, the rest float or None; [] when absent."""
    if not os.path.exists(path):
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return [{k: (float(v) if k not in ("epoch", "step") else int(float(v))) if v not in ("", None) else None
                 for k, v in row.items()} for row in csv.DictReader(f)]


def write_history(path: str, rows: Sequence[Mapping]) -> None:
    """Writes history.csv atomically (prep.files): one row per epoch, the columns of HISTORY_FIELDS.

    Epochs are numbered from 1; None is written as an empty cell.
    """
    with atomic_write(path, newline="") as f:
        w = csv.DictWriter(f, fieldnames=HISTORY_FIELDS)
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r.get(k) is None else r[k]) for k in HISTORY_FIELDS})


def plot_curves(path: str, rows: Sequence[Mapping], title: str = "") -> None:
    """Plots curves.png: loss and micro-F1 per epoch, training and (when present) validation.

    Segmentation runs (rows with ``val_miou``) also get the validation mIoU beside the micro-F1.

    The x axis is the rows' epoch numbers (from 1); matplotlib runs on the Agg backend.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, label in ((axes[0], "loss", "loss"), (axes[1], "micro_f1", "micro-F1")):
        ax.plot(epochs, [r.get(key) for r in rows], marker="o", label="train")
        val = [r.get(f"val_{key}") for r in rows]
        if any(v is not None for v in val):
            ax.plot(epochs, [np.nan if v is None else v for v in val], marker="o", label="validation")
        if key == "micro_f1" and any(r.get("val_miou") is not None for r in rows):  # segmentation
            ax.plot(epochs, [np.nan if r.get("val_miou") is None else r["val_miou"] for r in rows], marker="s",
                    label="validation mIoU")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def scalar_summary(name: str, value: float, step: int) -> None:
    """Writes a float32 TensorBoard scalar (the scalars plugin's format) to the default summary writer.

    Needs no tensorboard package.
    """
    meta = summary_pb2.SummaryMetadata(plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))
    tf.summary.write(name, tf.constant(float(value), tf.float32), step=step, metadata=meta)


def epoch_summaries(writers: Mapping[str, tf.summary.SummaryWriter], row: Mapping) -> None:
    """Writes an epoch's history row to TensorBoard at step ``row["step"]``.

    epoch_loss and epoch_micro_f1 go under ``writers["train"]``, and under ``writers["val"]`` when the
    row has validation values.
    """
    for kind, prefix in (("train", ""), ("val", "val_")):
        if row.get(f"{prefix}loss") is None:
            continue
        with writers[kind].as_default():
            scalar_summary("epoch_loss", row[f"{prefix}loss"], row["step"])
            scalar_summary("epoch_micro_f1", row[f"{prefix}micro_f1"], row["step"])
