r"""Train a model on prepared TFRecords.

    python train.py --data_dir OUT --model K-BranchCNN --epochs 100 --batch_size 1000 \
        --learning_rate 1e-3 --out_dir RUN
    python train.py --flagfile configs/K-BranchCNN_BigEarthNet-19.flags --data_dir OUT --out_dir RUN

The input pipeline is ``prep.reader`` (bands, resampling and normalization by flag; by default the
input the model was published with: K-BranchCNN gets its three resolution groups, the 120x120x10
models B04 B03 B02 B08 + bicubic-upsampled 20 m bands), the model comes from ``models.build``.
Loss: sigmoid cross-entropy for multi-label datasets, softmax cross-entropy for single-label ones
(on logits), per-pixel softmax cross-entropy without the ignored pixels (``IGNORE_INDEX``) for
segmentation masks (e.g. SEN12MS prepared with ``--target dfc10_mask``; models UNet-*), optional
label smoothing and class weights; Adam by default, optional learning-rate
schedule; mixed precision and tf.distribute strategies.

The run folder RUN (--out_dir, or -o; --run_dir is an alias kept for old command lines) receives:

  flags.json            every option of the run
  run_info.json         git commit, manifest SHA-256, library versions, devices
  input_config.json     what the model expects of its input (bands, resampling, statistics, classes)
  checkpoints/          tf.train checkpoints every --checkpoint_every_steps and at each epoch end
  logs/train, logs/val  TensorBoard summaries
  history.csv           per-epoch (numbered from 1) loss, micro-F1, learning rate, validation loss and micro-F1
                        (segmentation: pixel accuracy as micro-F1, and the validation mIoU)
  curves.png            training curves
  best.keras            the model with the best validation micro-F1 (segmentation: the best validation mIoU)
  final.keras           the model after the last epoch, and saved_model/ (SavedModel for serving:
                        serving_default gives "logits" and "probabilities", the signature "metadata"
                        the class names; models/serving.py)
  serving.keras         with --preprocess=device or --export_preprocess: the final model behind its
                        preprocessing (raw bands at native resolution in), as saved_model/ then is
  eval_test/            the best model evaluated on the test split (evaluate.py), when asked

With ``--strategy multi_worker`` (one process per worker, each with its ``TF_CONFIG``) only the
chief writes RUN; the other workers keep their part of each (collective) checkpoint save in
RUN/workers/<index>/ and remove it at the end. Each global batch is split over the workers, batch
norm is synchronized over the replicas, and a lost worker stops the run with one line.

``--resume`` continues from the latest checkpoint with the same step count, optimizer state,
random-number state and data order: the data of epoch e come from a seed derived from (--seed, e),
and a mid-epoch checkpoint skips the batches already seen, so with --deterministic a killed and
resumed run ends with the same weights as an uninterrupted one.

Everything is checked before RUN is created or written (the data folder and its manifest, the
model name, the bands the model needs, the batch size against the split): a run that cannot start
says why on one line and leaves no files behind.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import logging as pylogging  # the standard library's, for TensorFlow's logger
import os
import sys
import time
from typing import Any, Mapping

from absl import flags, logging

from prep import cli
from prep.errors import EORecordsError, InputError, UsageError

FLAGS = flags.FLAGS

# The choices of --optimizer, --lr_schedule and --strategy. models.training implements them; train()
# imports it (and TensorFlow) when it runs, so importing this module or --help stays light.
OPTIMIZERS = ("adam", "adamw", "nadam", "sgd", "rmsprop")
SCHEDULES = ("constant", "cosine", "step", "exponential")
STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")


@dataclasses.dataclass
class TrainConfig:
    """Every option of a training run (the flags, one to one).

    Each field is the flag of its name declared by ``define_flags`` (same default, same meaning;
    see ``python train.py --help``), except ``model_options``: the ``--model_option key=value``
    pairs as a mapping, passed to ``models.build`` as keyword arguments. ``augment`` and
    ``normalize`` are None for "none"; ``bands`` and ``per_resolution`` are None for the input the
    model was published with. Units: the ``lr_*_epochs`` in epochs (fractions allowed),
    ``shuffle_buffer`` in records, the ``*_steps`` in optimizer steps, ``batch_size`` in examples
    over all replicas together (global).
    """

    data_dir: str
    out_dir: str
    model: str = ""  # "": the dataset's default model (prep.datasets: K-BranchCNN for BigEarthNet-S2 ...)
    model_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    unfreeze: bool = False
    epochs: int = 100
    batch_size: int = 256
    val_batch_size: int = 0
    learning_rate: float = 1e-3
    optimizer: str = "adam"
    weight_decay: float = 0.0
    momentum: float = 0.9
    nesterov: bool = False
    lr_schedule: str = "constant"
    lr_warmup_epochs: float = 0.0
    lr_decay_epochs: float = 5.0
    lr_decay_factor: float = 0.5
    label_smoothing: float = 0.0
    class_weights: str = "none"
    bands: str | None = None
    per_resolution: bool | None = None
    resample: str = "bicubic"
    normalize: str | None = "manifest"
    augment: str | None = "dihedral"
    shuffle_buffer: int = 10_000
    cache: bool = False
    seed: int = 42
    deterministic: bool = False
    mixed_precision: bool = False
    strategy: str = "default"
    tpu: str = ""
    jit_compile: bool = False
    steps_per_epoch: int = 0
    max_steps: int = 0
    train_split: str = "train"
    val_split: str = "val"
    test_split: str = "test"
    checkpoint_every_steps: int = 500
    keep_checkpoints: int = 3
    log_every_steps: int = 50
    resume: bool = False
    overwrite: bool = False
    init_from: str | None = None
    evaluate_test: bool = True
    export_saved_model: bool = True
    preprocess: str = "host"
    export_preprocess: bool = False
    progress: bool = True


# --- flags -----------------------------------------------------------------------------------------


@functools.cache  # declared once per process, however often run() or a test calls it
def define_flags() -> None:
    """Declare the command's flags (called by run(); importing this module defines none).

    The defaults are ``TrainConfig``'s. Cached: a second call in the same process does nothing.
    """
    d = TrainConfig("", "")
    flags.DEFINE_string("data_dir", None, "Prepared dataset directory (holds manifest.json).")
    flags.DEFINE_string("out_dir", None, "Run folder for checkpoints, logs, models and reports.", short_name="o")
    flags.DEFINE_alias("run_dir", "out_dir")  # its former name, for old command lines and flag files
    flags.DEFINE_string("model", d.model, "Model name for models.build (K-BranchCNN, VGG16, ResNet50, "
                        "DenseNet121, Sen2LCZ-Net, keras:<Application>, hub:<backbone>, ...; for mask targets "
                        "UNet-ResNet50 or UNet-Tiny). Default: the dataset's default model (K-BranchCNN for "
                        "BigEarthNet-S2, Sen2LCZ-Net for So2Sat and EuroSAT, ResNet50 for SEN12MS, ...; "
                        "`python -m prep <dataset> --help` does not list it, the README's table does).")
    flags.DEFINE_multi_string("model_option", [], "Model builder option as key=value (value parsed as JSON "
                              "when it can be); repeatable. E.g. pad_to_stride=true for a U-Net on sizes that "
                              "are not multiples of 32 (BigEarthNet's 120x120).")
    flags.DEFINE_boolean("unfreeze", d.unfreeze, "Fine-tune the pretrained backbone too (transfer-learning models "
                         "TL-*; sets their unfreeze option). Default: frozen.")
    flags.DEFINE_integer("epochs", d.epochs, "Number of epochs.", lower_bound=1)
    flags.DEFINE_integer("batch_size", d.batch_size, "Global training batch size.", lower_bound=1)
    flags.DEFINE_integer("val_batch_size", d.val_batch_size, "Validation/test batch size (0 = --batch_size).",
                         lower_bound=0)
    flags.DEFINE_float("learning_rate", d.learning_rate, "Initial (peak) learning rate.")
    flags.DEFINE_enum("optimizer", d.optimizer, OPTIMIZERS, "Optimizer.")
    flags.DEFINE_float("weight_decay", d.weight_decay, "Decoupled weight decay (adamw, sgd, ...); 0 = none.")
    flags.DEFINE_float("momentum", d.momentum, "Momentum of sgd / rmsprop.")
    flags.DEFINE_boolean("nesterov", d.nesterov, "Nesterov momentum (sgd).")
    flags.DEFINE_enum("lr_schedule", d.lr_schedule, SCHEDULES, "Learning-rate schedule: constant, cosine "
                      "(to 0 at the last step), step (x lr_decay_factor every lr_decay_epochs), exponential "
                      "(the same, continuously).")
    flags.DEFINE_float("lr_warmup_epochs", d.lr_warmup_epochs, "Linear warm-up from 0 over this many epochs "
                       "(constant and cosine schedules).")
    flags.DEFINE_float("lr_decay_epochs", d.lr_decay_epochs, "Epochs per decay step (step, exponential).")
    flags.DEFINE_float("lr_decay_factor", d.lr_decay_factor, "Decay factor per lr_decay_epochs (step, exponential).")
    flags.DEFINE_float("label_smoothing", d.label_smoothing, "Label smoothing (0 = none).")
    flags.DEFINE_string("class_weights", d.class_weights, "Per-class loss weights: none, balanced (inverse train "
                        "class frequency, mean 1), a comma list of one weight per class, or a JSON file "
                        "{class name: weight}.")
    flags.DEFINE_string("bands", d.bands, "Band preset (10m20m, all, ...), comma list of band names, or presets "
                        "joined by '+'. Default: the input the model was published with.")
    flags.DEFINE_boolean("per_resolution", d.per_resolution, "One input per resolution group (10m/20m/60m). "
                         "Default: as the model's inputs (true for K-BranchCNN).")
    flags.DEFINE_enum("resample", d.resample, ["bicubic", "bilinear", "nearest", "area", "lanczos3", "lanczos5",
                                               "mitchellcubic", "gaussian"],
                      "Resampling of coarser bands to the finest selected grid.")
    flags.DEFINE_string("normalize", d.normalize, "Per-band normalization: manifest (train-split statistics), "
                        "upstream (the published table), none, or a JSON file {band: {mean, std}}.")
    flags.DEFINE_enum("augment", d.augment, ["dihedral", "flips", "none"], "Training augmentation: flips and "
                      "90-degree rotations (dihedral), flips only, or none.")
    flags.DEFINE_integer("shuffle_buffer", d.shuffle_buffer, "Shuffle buffer in records.", lower_bound=0)
    flags.DEFINE_boolean("cache", d.cache, "Cache the serialized training records in a local temporary file "
                         "during the first epoch and read them from there afterwards (for slow storage).")
    flags.DEFINE_integer("seed", d.seed, "Random seed (weights, data order, augmentation, dropout).")
    flags.DEFINE_boolean("deterministic", d.deterministic, "Deterministic data order and ops (identical runs, "
                         "exact resume); slower.")
    flags.DEFINE_boolean("mixed_precision", d.mixed_precision, "Mixed precision (float16 with loss scaling; "
                         "bfloat16 on TPU).")
    flags.DEFINE_enum("strategy", d.strategy, STRATEGIES, "tf.distribute strategy: default (one device), "
                      "mirrored (this machine's GPUs), multi_worker (one process per worker, each with its "
                      "TF_CONFIG; worker 0 writes the run folder), tpu.")
    flags.DEFINE_string("tpu", d.tpu, "TPU name or address for --strategy tpu ('' = local / from environment).")
    flags.DEFINE_boolean("jit_compile", d.jit_compile, "XLA-compile the training step.")
    flags.DEFINE_integer("steps_per_epoch", d.steps_per_epoch, "Cap on training steps per epoch (0 = whole split).",
                         lower_bound=0)
    flags.DEFINE_integer("max_steps", d.max_steps, "Stop after this many steps in all (0 = no limit); the run "
                         "can be continued with --resume.", lower_bound=0)
    flags.DEFINE_string("train_split", d.train_split, "Training split.")
    flags.DEFINE_string("val_split", d.val_split, "Validation split (best model by its micro-F1; by its mIoU "
                        "for segmentation); '' = none.")
    flags.DEFINE_string("test_split", d.test_split, "Split evaluated at the end with --evaluate_test.")
    flags.DEFINE_integer("checkpoint_every_steps", d.checkpoint_every_steps, "Checkpoint every N steps "
                         "(0 = at epoch ends only).", lower_bound=0)
    flags.DEFINE_integer("keep_checkpoints", d.keep_checkpoints, "Checkpoints kept.", lower_bound=1)
    flags.DEFINE_integer("log_every_steps", d.log_every_steps, "TensorBoard training summaries every N steps.",
                         lower_bound=1)
    flags.DEFINE_boolean("resume", d.resume, "Continue from the latest checkpoint in --out_dir.")
    flags.DEFINE_boolean("overwrite", d.overwrite, "Start afresh even if --out_dir holds checkpoints.")
    flags.DEFINE_string("init_from", d.init_from, "Initial weights: a pretrained name or path "
                        "(pretrained.load_into), e.g. K-BranchCNN or a run directory.")
    flags.DEFINE_boolean("evaluate_test", d.evaluate_test, "Evaluate the best model on --test_split at the end.")
    flags.DEFINE_boolean("export_saved_model", d.export_saved_model, "Export RUN/saved_model for serving.")
    flags.DEFINE_enum("preprocess", d.preprocess, ["host", "device"], "Where resampling, normalization and "
                      "augmentation run: host (the input pipeline, on the CPU) or device (a Preprocess layer in the "
                      "training step; the pipeline delivers raw bands). Same tensors for the same --seed.")
    flags.DEFINE_boolean("export_preprocess", d.export_preprocess, "Include the preprocessing in the exports "
                         "(saved_model/ and serving.keras take raw bands at native resolution); always with "
                         "--preprocess=device.")
    flags.DEFINE_boolean("progress", d.progress, "Show progress bars.")
    flags.DEFINE_integer("fold", None, "k-fold runs: train fold K, '{fold}' in --data_dir and --out_dir replaced by K "
                         "(one prepared folder per fold, e.g. python -m prep lulc --test_fold K).", lower_bound=0)
    flags.DEFINE_integer("all_folds", 0, "k-fold runs: train folds 0..N-1 one after another, as --fold does "
                         "(0 = off).", lower_bound=0)


def _parse_option(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise UsageError("expected key=value", path=f"--model_option {text}")
    key, value = text.split("=", 1)
    try:
        return key.strip(), json.loads(value)
    except json.JSONDecodeError:
        return key.strip(), value


def default_model(manifest: Mapping[str, Any]) -> str:
    """The registered dataset's default model (``prep.datasets``' ``Dataset.default_model``) for a manifest.

    A segmentation manifest (mask targets) gets ``UNet-ResNet50``: the datasets' defaults are
    scene classifiers.

    Raises:
      UsageError: the manifest's dataset is not registered (then --model must name one).
    """
    from prep import datasets

    if manifest.get("task") == "segmentation":
        return "UNet-ResNet50"
    try:
        return datasets.dataset(manifest["dataset"]).default_model
    except KeyError:
        raise UsageError(f"dataset {manifest.get('dataset')!r} is not registered, so it has no default model: "
                         "give --model") from None


def config_from_flags() -> TrainConfig:
    """The TrainConfig of the parsed flags (--augment none and --normalize none become None).

    Each ``--model_option key=value`` becomes ``model_options[key]``, the value parsed as JSON when
    it can be (``key=3`` gives 3, ``key=relu`` the string "relu"). The flags must be declared
    (``define_flags``) and parsed.

    Returns:
      The run's ``TrainConfig``; ``normalize`` "none" or "" (any case) and ``augment`` "none" are None.

    Raises:
      UsageError: a ``--model_option`` without ``=``.
    """
    names = [f.name for f in dataclasses.fields(TrainConfig) if f.name != "model_options"]
    values = {n: FLAGS[n].value for n in names}
    values["model_options"] = dict(_parse_option(t) for t in FLAGS.model_option)
    if values["augment"] == "none":
        values["augment"] = None
    if isinstance(values["normalize"], str) and values["normalize"].lower() in ("none", ""):
        values["normalize"] = None
    return TrainConfig(**values)


# --- training --------------------------------------------------------------------------------------


class RunDirError(EORecordsError, RuntimeError):
    """The run folder (--out_dir) does not fit the request.

    Raised for a folder holding checkpoints without --resume or --overwrite, or a --resume with
    flags that differ from the run's flags.json in a setting the checkpoints depend on.
    """


class WorkerLostError(EORecordsError, RuntimeError):
    """A worker of a ``--strategy multi_worker`` run stopped (its collectives failed or timed out).

    The run cannot go on with fewer workers; all of them are started again with ``--resume``.
    """


# TensorFlow's errors of a collective whose peer is gone (its coordination service misses the heartbeats)
_PEER_LOST = ("UnavailableError", "AbortedError", "DeadlineExceededError", "CancelledError")

_MUST_MATCH = ("model", "bands", "per_resolution", "batch_size", "resample", "normalize", "data_dir")


def _check_resume(run_dir: str, cfg_dict: Mapping) -> None:
    path = os.path.join(run_dir, "flags.json")
    if not os.path.exists(path):
        return
    with open(path, encoding="utf-8") as f:
        before = json.load(f)
    diff = [k for k in _MUST_MATCH if k in before and before[k] != cfg_dict.get(k)]
    if diff:
        raise RunDirError(f"--resume with different {', '.join(diff)} "
                          f"({', '.join(f'{k}: {before[k]!r} -> {cfg_dict.get(k)!r}' for k in diff)})", path=path,
                          hint="resume with the flags of the run, or start a new --out_dir")


def check_data_dir(data_dir: str) -> None:
    """Raise InputError unless ``data_dir`` holds a valid manifest (no TensorFlow needed).

    The manifest is loaded and checked by ``prep.manifest.load``, so a wrong path or an unfinished
    or foreign folder fails before TensorFlow is imported.

    Args:
      data_dir: the --data_dir value: the output folder of a finished preparation
        (``python -m prep <dataset>``).

    Raises:
      InputError: ``data_dir`` does not exist, is not a folder, holds no manifest.json, or holds one
        that is malformed; a missing folder or manifest names the flag and the folder.
    """
    from prep import manifest

    hint = "--data_dir takes the output folder of a finished preparation (python -m prep.bigearthnet, prep.so2sat)"
    try:
        manifest.load(data_dir)
    except manifest.ManifestMissing as e:  # the folder itself: name the flag
        raise InputError(e.problem, path=f"--data_dir {data_dir}", hint=hint) from None


def _check_model(name: str) -> Mapping[str, tuple]:
    """The default input spec of model ``name``; UsageError listing the known names if there is none."""
    import models

    try:
        return models.default_input_spec(name)
    except KeyError:
        raise UsageError(f"unknown model; known: {', '.join(models.names())}, keras:<Application>, "
                         "hub:<backbone>", path=f"--model {name}",
                         hint='python -c "import models; print(models.names())" lists them') from None


def _input_spec(cfg: TrainConfig, manifest: Mapping, model_inputs: Mapping[str, tuple]) -> dict:
    """The data's input spec for cfg.bands / cfg.per_resolution, checked against the model's inputs.

    The inputs are those the model is named by (K-BranchCNN: 10m, 20m, 60m); InputError naming
    the model, dataset and bands otherwise.
    """
    from prep import reader

    spec = reader.dataset_spec(manifest)
    presets = ", ".join(spec.band_presets)
    flag = f"--bands {cfg.bands}" + (" --per_resolution" if cfg.per_resolution else "")
    try:
        input_spec = reader.input_spec(manifest, cfg.bands, cfg.per_resolution)
    except (KeyError, ValueError) as e:  # unknown band or preset, bands on different grids (ReaderError)
        raise InputError(str(e.args[0] if e.args else e), path=flag,
                         hint=f"the {manifest['dataset']} presets: {presets}, or a comma list of band names; "
                         "presets joined by '+'") from None
    needs = list(model_inputs)
    if needs != ["image"] and sorted(needs) != sorted(input_spec):
        wanted = ", ".join(f"{k} ({v[-1]} bands)" for k, v in model_inputs.items())
        dataset = manifest["dataset"]
        if all(k in spec.band_presets for k in needs):
            raise InputError(f"the model takes the inputs {wanted}; {flag} gives {', '.join(input_spec)}",
                             path=f"--model {cfg.model}", hint=f"pass --bands {'+'.join(needs)} --per_resolution")
        raise InputError(f"the model takes one input per band preset: {wanted}; the {dataset} records in "
                         f"{cfg.data_dir} have no such presets ({flag} gives {', '.join(input_spec)})",
                         path=f"--model {cfg.model}",
                         hint=f"choose a model with one image input, or --bands (the {dataset} presets: {presets}) "
                         f"with --per_resolution giving the groups {', '.join(needs)}")
    return input_spec


def _check_batch_size(cfg: TrainConfig, manifest: Mapping) -> int:
    """Training steps per epoch; InputError when the training split holds less than one batch."""
    from prep import reader

    n_train = reader.num_examples(manifest, cfg.train_split)  # ReaderError naming the splits if absent
    if n_train == 0:
        raise InputError(f"the training split {cfg.train_split!r} holds no records", path=f"--data_dir {cfg.data_dir}",
                         hint="prepare the dataset with a non-empty training split, or choose --train_split")
    steps = n_train // cfg.batch_size
    if steps == 0:
        smaller = 1 << (n_train.bit_length() - 1)
        raise InputError(f"the training split {cfg.train_split!r} holds {n_train} records, fewer than one batch",
                         path=f"--batch_size {cfg.batch_size}",
                         hint=f"pass --batch_size {n_train} or less (e.g. --batch_size {smaller})")
    return min(steps, cfg.steps_per_epoch) if cfg.steps_per_epoch else steps


def _check_task(name: str, task: str) -> None:
    """InputError when a registered segmentation model (UNet-*) meets scene labels; before any model is built."""
    import models

    try:
        info = models.registry.get(name)
    except KeyError:  # keras:<Application>, hub:<backbone>: classification models, checked by _check_output
        return
    if info.default_task == "segmentation" and task != "segmentation":
        raise InputError(f"the model gives per-pixel scores; the data's task is {task}", path=f"--model {name}",
                         hint="choose a classification model, or prepare a mask target (e.g. --target dfc10_mask)")


def _check_output(model, task: str, name: str) -> None:
    """InputError unless the model's output fits the task: [B, H, W, C] for segmentation, [B, C] otherwise."""
    rank = len(model.output.shape)
    if task == "segmentation" and rank != 4:
        raise InputError("the data hold per-pixel masks (segmentation); this model gives one score vector per image",
                         path=f"--model {name}", hint="choose a segmentation model: UNet-ResNet50, UNet-Tiny")
    if task != "segmentation" and rank != 2:
        raise InputError(f"the model gives per-pixel scores; the data's task is {task}", path=f"--model {name}",
                         hint="choose a classification model, or prepare a mask target (e.g. --target dfc10_mask)")


def _history_before(rows: list[dict], start_epoch: int) -> list[dict]:
    """The history.csv rows of the ``start_epoch`` epochs a resumed run has finished.

    Rows are numbered from 1; a history written numbered from 0, by an older train.py, is renumbered.
    """
    if rows and rows[0]["epoch"] == 0:
        rows = [{**r, "epoch": r["epoch"] + 1} for r in rows]
    return [r for r in rows if r["epoch"] <= start_epoch]


def train(cfg: TrainConfig) -> dict:
    """Run (or resume) training as configured; returns a summary (history, best, files, test metrics).

    Everything that can be wrong with the request (data folder, model name, bands, batch size, run
    folder state) is checked before ``cfg.out_dir`` is created or written: an ``EORecordsError``
    then leaves no file behind, and a run folder this call created is removed again if the start
    fails. ``summary["best_score"]`` is None until an epoch has ended. The files written
    into ``cfg.out_dir`` are listed in the module docstring.

    Args:
      cfg: the run's options; ``bands`` / ``per_resolution`` None take the model's published
        input (``models.training.default_inputs``).

    Returns:
      A dict: "out_dir" (the run folder); "history" (one dict per finished epoch, numbered from
      1: epoch, step, learning_rate, loss (mean per example), micro_f1, val_loss, val_micro_f1
      (None without a validation split), seconds (wall time of the epoch, validation included),
      val_miou (segmentation with a validation split, else None)); "stopped" (True when --max_steps
      ended the run before the last epoch); "best_metric" ("miou" for segmentation with a validation
      split, else "micro_f1") and "best_score" (its best value in [0, 1], or None);
      "best_val_micro_f1" / "best_val_miou" (the same value under the metric's name, None under the
      other); "best_by" ("validation", or "training" without a
      validation split); "steps" (optimizer steps taken in all); "test" (``evaluate_best``'s
      result, or None); "files" (final.keras and saved_model/, written by the chief once the last
      epoch ended).

    Raises:
      UsageError: no ``data_dir`` or ``out_dir``, or an unknown model name.
      InputError: a data folder that is not a finished preparation or whose manifest cannot be
        read (``prep.reader.ReaderError``), bands the data lack or the model does not take, a
        training split that is missing or holds fewer records than ``batch_size``, or a model
        whose inputs differ from the data's.
      RunDirError: ``out_dir`` holds checkpoints without ``resume`` or ``overwrite``, or
        ``resume`` with different model, bands, per_resolution, batch_size, resample,
        normalize or data_dir.
      FileNotFoundError: a shard named in the manifest is missing (``main`` reports it as an
        InputError).
    """
    if not cfg.data_dir:
        raise UsageError("--data_dir is required")
    if not cfg.out_dir:
        raise UsageError("--out_dir is required")
    check_data_dir(cfg.data_dir)  # before TensorFlow loads, so a wrong path fails fast

    from prep.quiet import import_tensorflow

    tf = import_tensorflow()  # without its start-up banner
    import keras
    import numpy as np

    import models
    from evaluation.segmentation import iou_metrics
    from models import training
    from prep import reader

    # Everything that can be wrong, checked before the run folder is touched.
    manifest = reader.load_manifest(cfg.data_dir)
    spec = reader.dataset_spec(manifest)
    task = reader.task(manifest)
    classes = list(manifest["classes"])
    if not cfg.model:
        cfg = dataclasses.replace(cfg, model=default_model(manifest))
    model_inputs = _check_model(cfg.model)
    build_options = training.model_options(cfg.model, cfg.model_options, cfg.unfreeze)
    if cfg.bands is None or cfg.per_resolution is None:
        bands, per_res = training.default_inputs(cfg.model, spec)
        cfg = dataclasses.replace(cfg, bands=cfg.bands if cfg.bands is not None else bands,
                                  per_resolution=cfg.per_resolution if cfg.per_resolution is not None else per_res)
    input_spec = _input_spec(cfg, manifest, model_inputs)
    steps = _check_batch_size(cfg, manifest)
    _check_task(cfg.model, task)
    segmentation = task == "segmentation"
    metric = "miou" if segmentation else "micro_f1"  # the best model's criterion
    val_split = cfg.val_split if cfg.val_split and cfg.val_split in manifest["splits"] else None
    if cfg.val_split and val_split is None:
        logging.warning("no split %r in %s; the best model is chosen by training micro-F1", cfg.val_split,
                        cfg.data_dir)
    in_cfg = reader.input_config(cfg.data_dir, manifest, cfg.bands, cfg.per_resolution, cfg.resample, cfg.normalize)
    weights = training.class_weight_vector(cfg.class_weights, manifest, cfg.train_split)

    run_dir = cfg.out_dir
    ckpt_dir = os.path.join(run_dir, "checkpoints")
    has_ckpt = tf.train.latest_checkpoint(ckpt_dir) is not None
    if has_ckpt and not cfg.resume and not cfg.overwrite:
        raise RunDirError("already holds checkpoints", path=f"--out_dir {run_dir}",
                          hint="pass --resume to continue or --overwrite to start again")
    cfg_dict = dataclasses.asdict(cfg)
    cfg_dict["data_dir"] = os.path.abspath(cfg.data_dir)
    if cfg.resume and has_ckpt:
        _check_resume(run_dir, cfg_dict)

    # Randomness and precision.
    keras.utils.set_random_seed(cfg.seed)
    if cfg.deterministic:
        tf.config.experimental.enable_op_determinism()
    strategy = training.make_strategy(cfg.strategy, cfg.tpu)
    chief = training.is_chief(strategy)
    policy = None
    if cfg.mixed_precision:
        policy = "mixed_bfloat16" if cfg.strategy == "tpu" else "mixed_float16"
    keras.mixed_precision.set_global_policy(policy or "float32")
    # a non-chief worker of --strategy multi_worker saves its (identical) checkpoints into a scratch folder
    # it removes at the end: saving is collective, so every worker must save; only the chief keeps
    work_dir = run_dir if chief else os.path.join(run_dir, "workers", str(strategy.cluster_resolver.task_id))
    info = training.run_info(os.path.join(cfg.data_dir, reader.MANIFEST), cfg.strategy, strategy, policy or "float32",
                             input_spec)

    # Data.
    val_bs = cfg.val_batch_size or cfg.batch_size
    device_prep = cfg.preprocess == "device"
    # with mixed precision the host delivers the layers' compute dtype (the same numbers as the
    # first layer's cast, half the bytes)
    half = {"mixed_float16": "float16", "mixed_bfloat16": "bfloat16"}.get(policy or "", "float32")
    common = dict(bands=cfg.bands, per_resolution=cfg.per_resolution, resample=cfg.resample,
                  normalize=cfg.normalize, manifest=manifest, raw=device_prep,
                  output_dtype="float32" if device_prep else half)
    cache = False

    def train_dataset(epoch: int, skip: int):
        ds = reader.make_dataset(cfg.data_dir, cfg.train_split, batch_size=cfg.batch_size, training=True,
                                 shuffle_buffer=cfg.shuffle_buffer, seed=training.epoch_seed(cfg.seed, epoch),
                                 deterministic=cfg.deterministic, cache=cache, drop_remainder=True,
                                 augment=cfg.augment or False, skip_batches=skip, **common)
        return strategy.experimental_distribute_dataset(training.shard_by_data(ds))

    val_ds = None
    if val_split:
        val_ds = strategy.experimental_distribute_dataset(training.shard_by_data(
            reader.make_dataset(cfg.data_dir, val_split, batch_size=val_bs, training=False, **common)))

    # Model, optimizer, loss.
    with strategy.scope():
        try:
            model = models.build(cfg.model, input_spec, len(classes), task, **build_options)
        except ValueError as e:  # the model cannot take this input (e.g. a U-Net on 120 x 120 without padding)
            raise InputError(str(e), path=f"--model {cfg.model}",
                             hint="check --bands and --model_option") from None
        _check_output(model, task, cfg.model)
        if strategy.num_replicas_in_sync > 1:  # batch statistics of the global batch, as on one replica
            training.synchronize_batch_norm(model)
        names = sorted(i.name for i in model.inputs)
        if names != sorted(input_spec):
            raise InputError(f"the model takes inputs {', '.join(names)}, the data give {', '.join(input_spec)}",
                             path=f"--model {cfg.model}", hint="check --bands / --per_resolution")
        if cfg.init_from and not (cfg.resume and has_ckpt):
            import pretrained
            report = pretrained.load_into(model, cfg.init_from)
            skipped = report.get("skipped") or [] if isinstance(report, dict) else []
            logging.info("initial weights from %s: %s tensors loaded, %d layers skipped %s", cfg.init_from,
                         report.get("loaded") if isinstance(report, dict) else "?", len(skipped), skipped[:5])
        pre = None
        if device_prep or cfg.export_preprocess:
            from models import preprocess
            pre = preprocess.build_preprocess(manifest, cfg.bands, cfg.per_resolution, cfg.resample, cfg.normalize)
        # the model the steps call: with --preprocess=device, behind its preprocessing (same weights)
        train_model = preprocess.with_preprocess(model, pre, augment=bool(cfg.augment)) if device_prep else model
        eval_model = preprocess.with_preprocess(model, pre) if device_prep else model
        optimizer = training.make_optimizer(cfg, training.make_schedule(cfg, steps))
        if policy == "mixed_float16":
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        optimizer.build(model.trainable_variables)
        # progress_epoch counts the finished epochs (the 0-based index of the next one; history.csv and
        # the log number epochs from 1)
        progress_epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        progress_batch = tf.Variable(0, dtype=tf.int64, trainable=False, name="batch_in_epoch")
        # -1 until an epoch has ended (a micro-F1 is >= 0); reported as None
        best_metric = tf.Variable(-1.0, dtype=tf.float64, trainable=False, name="best_val_micro_f1")
        # running sums of the current epoch (loss, tp, fp, fn, batches), so a resumed epoch reports the same
        epoch_sums = tf.Variable(tf.zeros([5], tf.float64), trainable=False, name="epoch_sums")
    checkpoint = tf.train.Checkpoint(model_variables=list(model.variables), optimizer=optimizer,
                                     epoch=progress_epoch, batch_in_epoch=progress_batch, best=best_metric,
                                     epoch_sums=epoch_sums)

    # The run folder: written only now. One this call creates is removed again if the start fails.
    created = not os.path.exists(run_dir)
    try:
        if cfg.overwrite and has_ckpt and not cfg.resume and chief:
            import shutil
            shutil.rmtree(ckpt_dir)
            has_ckpt = False
        os.makedirs(work_dir, exist_ok=True)
        if chief:
            training.write_json(os.path.join(run_dir, "flags.json"), cfg_dict)
            training.write_json(os.path.join(run_dir, "input_config.json"), in_cfg)
            runs = []
            info_path = os.path.join(run_dir, "run_info.json")
            if cfg.resume and os.path.exists(info_path):
                with open(info_path, encoding="utf-8") as f:
                    old = json.load(f)
                runs = old.get("previous", []) + [{k: old.get(k) for k in ("git_commit", "git_dirty", "started",
                                                                            "manifest_sha256")}]
            training.write_json(info_path, {**info, "previous": runs})
        manager = tf.train.CheckpointManager(checkpoint, os.path.join(work_dir, "checkpoints"),
                                             max_to_keep=cfg.keep_checkpoints)
        latest = tf.train.latest_checkpoint(ckpt_dir)  # the chief's, on every worker
        if cfg.resume and latest:
            checkpoint.restore(latest).assert_existing_objects_matched()
            logging.info("resumed from %s at epoch %d, batch %d, step %d", latest,
                         int(progress_epoch.numpy()) + 1, int(progress_batch.numpy()),
                         int(optimizer.iterations.numpy()))
        elif cfg.resume:
            logging.info("--resume: no checkpoint in %s, starting afresh", ckpt_dir)
    except BaseException:
        if created:
            import shutil
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    if cfg.cache:  # one file cache shared by the datasets of all epochs, removed at the end
        import tempfile
        cache = os.path.join(tempfile.mkdtemp(prefix="eorecords-cache-"), "train")

    per_example_loss = training.make_loss(task, len(classes), cfg.label_smoothing, weights)
    counts = training.make_counts(task)
    confusion = training.make_confusion(len(classes)) if segmentation else None

    dict_inputs = isinstance(model.input, dict) or device_prep

    def _features(x):
        return x if dict_inputs or len(x) > 1 else next(iter(x.values()))

    def step_fn(x, y):
        with tf.GradientTape() as tape:
            logits = tf.cast(train_model(_features(x), training=True), tf.float32)
            loss = tf.nn.compute_average_loss(per_example_loss(y, logits), global_batch_size=cfg.batch_size)
            if model.losses:
                loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
            scaled = optimizer.scale_loss(loss) if policy == "mixed_float16" else loss
        grads = tape.gradient(scaled, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return (loss, *counts(y, logits))

    def eval_fn(x, y):
        logits = tf.cast(eval_model(_features(x), training=False), tf.float32)
        out = (tf.reduce_sum(per_example_loss(y, logits)), *counts(y, logits), tf.cast(tf.shape(logits)[0], tf.float32))
        return out + (confusion(y, logits),) if segmentation else out

    step_inner = tf.function(step_fn, jit_compile=True) if cfg.jit_compile else step_fn

    @tf.function
    def train_step(x, y):
        out = strategy.run(step_inner, args=(x, y))
        return [strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for v in out]

    @tf.function
    def eval_step(x, y):
        out = strategy.run(eval_fn, args=(x, y))
        return [strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for v in out]

    history_path = os.path.join(run_dir, "history.csv")
    start_epoch = int(progress_epoch.numpy())
    history = _history_before(training.read_history(history_path), start_epoch) if cfg.resume else []
    writers = {k: tf.summary.create_file_writer(os.path.join(run_dir, "logs", k)) if chief
               else tf.summary.create_noop_writer() for k in ("train", "val")}
    from tqdm import tqdm

    stopped = False
    for epoch in range(start_epoch, cfg.epochs):
        skip = int(progress_batch.numpy())
        t0 = time.time()
        it = iter(train_dataset(epoch, skip))
        if not skip:
            epoch_sums.assign(tf.zeros([5], tf.float64))
        loss_sum, tp, fp, fn, seen = (float(v) for v in epoch_sums.numpy())
        seen = int(seen)
        bar = tqdm(total=steps, initial=skip, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch",
                   disable=not (cfg.progress and chief), dynamic_ncols=True)
        for _ in range(skip, steps):
            try:
                x, y = next(it)
            except StopIteration:
                break
            loss, a, b, c = (float(v) for v in train_step(x, y))
            loss_sum, tp, fp, fn, seen = loss_sum + loss, tp + a, fp + b, fn + c, seen + 1
            progress_batch.assign_add(1)
            epoch_sums.assign([loss_sum, tp, fp, fn, seen])
            step = int(optimizer.iterations.numpy())
            bar.update(1)
            bar.set_postfix(loss=f"{loss_sum / seen:.4f}", micro_f1=f"{training.micro_f1(tp, fp, fn):.3f}")
            if step % cfg.log_every_steps == 0:
                with writers["train"].as_default():
                    training.scalar_summary("loss", loss, step)
                    training.scalar_summary("learning_rate", training.current_lr(optimizer), step)
            if cfg.checkpoint_every_steps and step % cfg.checkpoint_every_steps == 0:
                manager.save(checkpoint_number=step)
            if cfg.max_steps and step >= cfg.max_steps:
                stopped = True
                break
        bar.close()
        if stopped:
            if manager.latest_checkpoint is None or not manager.latest_checkpoint.endswith(f"-{step}"):
                manager.save(checkpoint_number=step)
            logging.info("stopped after %d steps (--max_steps); continue with --resume", step)
            break

        row = {"epoch": epoch + 1, "step": int(optimizer.iterations.numpy()),
               "learning_rate": training.current_lr(optimizer), "loss": loss_sum / max(seen, 1),
               "micro_f1": training.micro_f1(tp, fp, fn), "val_loss": None, "val_micro_f1": None}
        if val_ds is not None:
            vl, vtp, vfp, vfn, vn = 0.0, 0.0, 0.0, 0.0, 0
            cm = np.zeros((len(classes), len(classes)))
            for x, y in tqdm(val_ds, desc="validation", unit="batch", leave=False,
                             disable=not (cfg.progress and chief)):
                loss, a, b, c, n, *rest = eval_step(x, y)
                loss, a, b, c = float(loss), float(a), float(b), float(c)
                vl, vtp, vfp, vfn, vn = vl + loss, vtp + a, vfp + b, vfn + c, vn + int(float(n))
                if rest:
                    cm += rest[0].numpy()
            row["val_loss"], row["val_micro_f1"] = vl / max(vn, 1), training.micro_f1(vtp, vfp, vfn)
            if segmentation:
                miou = iou_metrics(cm)["miou"]
                row["val_miou"] = 0.0 if np.isnan(miou) else miou
        row["seconds"] = round(time.time() - t0, 3)
        training.epoch_summaries(writers, row)
        history.append(row)
        if val_ds is None:
            score = row["micro_f1"]
        else:
            score = row[f"val_{metric}"]
        if chief:
            training.write_history(history_path, history)
            title = f"{cfg.model} on {manifest['dataset']}"
            training.plot_curves(os.path.join(run_dir, "curves.png"), history, title)
            if score > float(best_metric.numpy()):
                model.save(os.path.join(run_dir, "best.keras"))
        if score > float(best_metric.numpy()):
            best_metric.assign(score)
        logging.info("epoch %d: loss %.4f micro-F1 %.4f%s%s", row["epoch"], row["loss"], row["micro_f1"],
                     "" if val_ds is None else f", val loss {row['val_loss']:.4f} val micro-F1 {row['val_micro_f1']:.4f}",
                     f" val mIoU {row['val_miou']:.4f}" if row.get("val_miou") is not None else "")
        progress_epoch.assign(epoch + 1)
        progress_batch.assign(0)
        manager.save(checkpoint_number=int(optimizer.iterations.numpy()))
    for w in writers.values():
        w.flush()
    if cache:
        import shutil
        shutil.rmtree(os.path.dirname(cache), ignore_errors=True)

    best = float(best_metric.numpy())
    best = best if best >= 0 else None  # None: no epoch has ended yet
    by_miou = segmentation and val_ds is not None
    summary = {"out_dir": run_dir, "history": history, "stopped": stopped,
               "best_metric": "miou" if by_miou else "micro_f1", "best_score": best,
               "best_val_micro_f1": None if by_miou else best, "best_val_miou": best if by_miou else None,
               "best_by": "validation" if val_ds is not None else "training",
               "steps": int(optimizer.iterations.numpy()), "test": None, "files": []}
    if chief and not stopped:
        final = os.path.join(run_dir, "final.keras")
        model.save(final)
        summary["files"].append(final)
        if pre is not None:
            serving_keras = os.path.join(run_dir, "serving.keras")
            from models import serving
            serving.serving_model(model, pre).save(serving_keras)
            summary["files"].append(serving_keras)
        if cfg.export_saved_model:
            from models import serving
            serving.export_saved_model(model, os.path.join(run_dir, "saved_model"), classes, task, pre)
            summary["files"].append(os.path.join(run_dir, "saved_model"))
        if cfg.evaluate_test:
            summary["test"] = evaluate_best(cfg, manifest)
    if not chief:
        _remove_scratch(work_dir)
    training.barrier(strategy)  # no worker leaves (and stops its heartbeats) while the chief still writes
    return summary


def _remove_scratch(work_dir: str) -> None:
    """Remove a non-chief worker's scratch folder RUN/workers/<id>, and RUN/workers once empty."""
    import shutil

    shutil.rmtree(work_dir, ignore_errors=True)
    try:
        os.rmdir(os.path.dirname(work_dir))
    except OSError:  # another worker's scratch is still there
        pass


def evaluate_best(cfg: TrainConfig, manifest: Mapping) -> dict | None:
    """The best model on the test split through evaluate.py's function (None when there is no test split).

    Evaluates RUN/best.keras (``evaluate.evaluate_model``, checkpoint "best") on ``cfg.test_split``
    with the validation batch size and writes the report into RUN/eval_<test_split>.

    Args:
      cfg: the run's options (out_dir, data_dir, test_split, batch sizes).
      manifest: the prepared dataset's parsed manifest.json.

    Returns:
      ``evaluate.evaluate_model``'s dict ({"result", "files", "table", "out_dir"}), or None when the
      manifest has no ``cfg.test_split`` or evaluate.py cannot be imported (a warning is logged).

    Raises:
      InputError: the model, its input_config.json or the split do not fit (see
        ``evaluate.evaluate_model``).
      UsageError: the task cannot be determined (see ``evaluate.evaluate_model``).
    """
    if cfg.test_split not in manifest["splits"]:
        logging.warning("no split %r in %s: skipping the test evaluation", cfg.test_split, cfg.data_dir)
        return None
    try:
        import evaluate
    except ImportError as e:
        logging.warning("evaluate.py is not available (%s): skipping the test evaluation", e)
        return None
    out_dir = os.path.join(cfg.out_dir, f"eval_{cfg.test_split}")
    return evaluate.evaluate_model(cfg.out_dir, out_dir, data_dir=cfg.data_dir, split=cfg.test_split,
                                   checkpoint="best", batch_size=cfg.val_batch_size or cfg.batch_size,
                                   echo=logging.info)


class _TensorFlowChatter(pylogging.Filter):
    """Drops TensorFlow's own INFO lines and its "not a valid tf.function parameter name" warning.

    The INFO lines are about checkpoint sharding and SavedModel signatures; the warning comes on
    every trace, that input names like "10m" become "arg_10m". Everything else is kept.
    """

    def filter(self, record: pylogging.LogRecord) -> bool:
        if "is not a valid tf.function parameter name" in record.getMessage():
            return False
        return record.levelno >= pylogging.WARNING or f"{os.sep}tensorflow{os.sep}" not in record.pathname


def _quiet_tf_logging() -> None:
    from absl import logging as absl_logging

    absl_logging.get_absl_handler().addFilter(_TensorFlowChatter())


def fold_configs(cfg: TrainConfig, fold: int | None, all_folds: int) -> list[TrainConfig]:
    """The runs of --fold / --all_folds: ``cfg`` with '{fold}' in data_dir and out_dir replaced per fold.

    Returns ``[cfg]`` when neither is given.

    Raises:
      UsageError: both given, or a fold run whose --data_dir or --out_dir lacks '{fold}'.
    """
    if fold is not None and all_folds:
        raise UsageError("give --fold or --all_folds, not both")
    folds = [fold] if fold is not None else list(range(all_folds))
    if not folds:
        return [cfg]
    for name in ("data_dir", "out_dir"):
        if "{fold}" not in getattr(cfg, name):
            raise UsageError(f"--{name} must contain '{{fold}}' with --fold/--all_folds (e.g. lulc_fold{{fold}})")
    return [dataclasses.replace(cfg, data_dir=cfg.data_dir.replace("{fold}", str(k)),
                                out_dir=cfg.out_dir.replace("{fold}", str(k))) for k in folds]


def main(argv: list[str]) -> int:
    """Train as the flags say; print the steps, the best micro-F1 (or that no validation ran) and the run folder.

    Run by ``run`` through ``prep.cli.run_command``, which reports an ``EORecordsError`` as one line.

    Args:
      argv: absl's remaining command line; only the program name is accepted.

    Returns:
      The exit status, 0.

    Raises:
      UsageError: arguments besides the flags, no --data_dir or --out_dir, or --noexport_preprocess with
        --preprocess=device (see also ``train``).
      InputError: a bad data folder, model or bands, or a file that went missing during the run
        (see ``train``).
      RunDirError: the run folder does not fit the request (see ``train``).
      WorkerLostError: with ``--strategy multi_worker``, another worker stopped or became
        unreachable during the run.
    """
    cli.no_arguments(argv)
    cli.required("data_dir", "out_dir")
    if FLAGS.preprocess == "device" and FLAGS["export_preprocess"].present and not FLAGS.export_preprocess:
        raise UsageError("--noexport_preprocess contradicts --preprocess=device, whose exports always include the "
                         "preprocessing (the model is trained behind it); drop one of them")
    _quiet_tf_logging()
    runs = fold_configs(config_from_flags(), FLAGS.fold, FLAGS.all_folds)
    for cfg in runs[:-1]:
        _train_and_report(cfg)
    return _train_and_report(runs[-1])


def _train_and_report(cfg: TrainConfig) -> int:
    try:
        summary = train(cfg)
    except FileNotFoundError as e:  # a shard or file named in a flag that went missing
        raise InputError(str(e)) from None
    except Exception as e:
        if cfg.strategy != "multi_worker" or type(e).__name__ not in _PEER_LOST:
            raise
        import re

        # the peer as TensorFlow names it: "remote target /job:..." (connection lost) or the line after
        # "unhealthy (stopped sending heartbeats):" (coordination service)
        peer = re.search(r"(?:remote target|heartbeats\):)\s*(/job:\w+/replica:\d+/task:\d+)", str(e))
        who = f"worker {peer.group(1)}" if peer else "a worker"
        raise WorkerLostError(f"{who} stopped or cannot be reached ({type(e).__name__}); the run cannot go on "
                              "without it", path=f"--out_dir {cfg.out_dir}",
                              hint="start every worker again with the same flags and --resume") from None
    best = summary["best_score"]
    if best is None:
        result = "no epoch ended, so no validation ran and no best model was kept"
    else:
        result = f"best {summary['best_by']} {'mIoU' if summary['best_metric'] == 'miou' else 'micro-F1'} {best:.4f}"
    print(f"\n{summary['steps']} steps; {result}; run folder {summary['out_dir']}")
    if summary["stopped"]:
        print("stopped early (--max_steps): continue with --resume")
    return 0


def run() -> None:
    """Console entry point (``eorecords-train``; also ``python train.py``).

    Parses ``sys.argv`` and runs ``main`` through ``prep.cli.run_command``.

    Raises:
      SystemExit: always; 0 on success, 1 for bad input, 2 for a usage error.
    """
    module = sys.modules[__name__]
    script = getattr(module, "__spec__", None) is None  # python train.py (not -m train, not the console script)
    cli.run_command(module, prog="python train.py" if script else None)


if __name__ == "__main__":
    run()
