"""train.py: a small K-BranchCNN learns, resume equivalence, run directory, flag files, losses, and the
command line's one-line errors (nothing written when a run cannot start).

To stay fast on one core the training runs use a "mini" BigEarthNet: the same bands, presets,
classes and compact schema with every grid 5x smaller (24/12/4 px), written by the real shard
writer from the synthetic archive's pixels (block-averaged). K-BranchCNN builds for it as is.
"""
from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import train
from models import training
from prep import datasets, reader, shards
from prep.datasets.bigearthnet import spec as ben
from prep.datasets.bigearthnet import synthetic as synth
from prep.datasets.spec import Band, DatasetSpec
from prep.errors import UsageError
from tests.conftest import command_flags

FACTOR = 5
MINI = DatasetSpec(
    name="bigearthnet19_mini",
    version="1.0.0",
    task=ben.SPEC.task,
    bands=tuple(Band(b.name, (b.shape[0] // FACTOR, b.shape[1] // FACTOR), b.dtype, b.resolution_m * FACTOR,
                     b.group) for b in ben.BANDS),
    class_names=ben.LABELS_19,
    schemas={"compact": ben.COMPACT},
    default_schema="compact",
    band_presets=ben.BAND_PRESETS,
)
REFERENCE_CONFIGS = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "reference", "bigearthnet",
                                 "configs")
CONFIGS = os.path.join(os.path.dirname(__file__), "..", "configs")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def produce_mini(items):
    for spec in items:
        full = synth.synthesize_bands(spec, seed=0)
        bands = {}
        for b in MINI.bands:
            h, w = b.shape
            a = full[b.name].astype(np.float64).reshape(h, FACTOR, w, FACTOR).mean(axis=(1, 3))
            bands[b.name] = np.rint(a).astype(np.uint16)
        patch = {"name": spec.name, "bands": bands, "labels43": [ben.LABELS_43[i] for i in spec.labels43],
                 "coordinates": list(spec.coordinates.values()), "epsg": spec.epsg,
                 "acquisition_date": spec.acquisition_date, "tile_source": spec.tile_source}
        yield shards.Record(spec.name, ben.record_values(patch, ben.COMPACT), bands, ben.indices_19(spec.labels43))


@pytest.fixture(scope="module")
def mini_dir(tmp_path_factory):
    real_get = datasets.get
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(datasets, "get", lambda name: MINI if name == MINI.name else real_get(name))
        specs = synth.plan_bigearthnet(400, seed=3, split_fractions=(0.6, 0.2, 0.2), num_no_target=0,
                                       num_snow=0, num_cloud=0)
        splits = {s: [sp for sp in specs if sp.split == s] for s in ("train", "val", "test")}
        out = str(tmp_path_factory.mktemp("mini") / "records")
        shards.write_dataset(out, MINI, "compact", splits, produce_mini, records_per_shard=64, progress=False,
                             item_key=lambda sp: sp.name)
        yield out


def config(data_dir, run_dir, **kw):
    base = dict(data_dir=data_dir, out_dir=str(run_dir), model="K-BranchCNN", epochs=2, batch_size=16,
                learning_rate=1e-3, shuffle_buffer=256, progress=False, evaluate_test=False,
                export_saved_model=False, checkpoint_every_steps=0, deterministic=True, seed=7)
    base.update(kw)
    return train.TrainConfig(**base)


def labels(data_dir, split):
    return np.concatenate([y.numpy() for _, y in reader.make_dataset(data_dir, split, bands="rgb", batch_size=64)])


def best_constant_micro_f1(train_y, test_y):
    """Micro-F1 of the best fixed label set (the k most frequent training classes, best k)."""
    order = np.argsort(-train_y.mean(0), kind="stable")
    best = 0.0
    for k in range(1, len(order) + 1):
        p = np.zeros(test_y.shape[1])
        p[order[:k]] = 1
        tp = float((test_y * p).sum())
        fp = p.sum() * len(test_y) - tp
        fn = float(test_y.sum()) - tp
        best = max(best, 2 * tp / (2 * tp + fp + fn))
    return best


def test_small_kbranch_learns_and_fills_the_run_directory(mini_dir, tmp_path):
    run = tmp_path / "run"
    summary = train.train(config(mini_dir, run, epochs=8, learning_rate=3e-3, evaluate_test=True,
                                 export_saved_model=True, checkpoint_every_steps=20))
    constant = best_constant_micro_f1(labels(mini_dir, "train"), labels(mini_dir, "test"))
    test_f1 = summary["test"]["result"]["micro_f1_score"]
    assert test_f1 > constant + 0.1, (test_f1, constant)
    assert summary["best_val_micro_f1"] == max(r["val_micro_f1"] for r in summary["history"])

    # run directory of the contract
    flags_json = json.loads((run / "flags.json").read_text())
    assert flags_json["model"] == "K-BranchCNN" and flags_json["epochs"] == 8
    assert flags_json["bands"] == "10m+20m+60m" and flags_json["per_resolution"] is True
    cfg = json.loads((run / "input_config.json").read_text())
    assert cfg["per_resolution"] and cfg["bands"][:4] == ["B04", "B03", "B02", "B08"]
    assert cfg["input_spec"] == {"10m": [24, 24, 4], "20m": [12, 12, 6], "60m": [4, 4, 2]}
    assert cfg["classes"] == list(ben.LABELS_19) and cfg["task"] == "multi_label"
    info = json.loads((run / "run_info.json").read_text())
    sha = hashlib.sha256(open(os.path.join(mini_dir, "manifest.json"), "rb").read()).hexdigest()
    assert info["manifest_sha256"] == sha
    assert info["git_commit"] and len(info["git_commit"]) == 40
    history = training.read_history(str(run / "history.csv"))
    assert [r["epoch"] for r in history] == list(range(1, 9))  # numbered from 1, as the log says
    assert history[-1]["step"] == summary["steps"] == 8 * (reader.num_examples(reader.load_manifest(mini_dir),
                                                                                 "train") // 16)
    assert (run / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert glob.glob(str(run / "logs" / "train" / "events.out.tfevents*"))
    assert glob.glob(str(run / "logs" / "val" / "events.out.tfevents*"))
    assert tf.train.latest_checkpoint(str(run / "checkpoints")).endswith(f"ckpt-{summary['steps']}")
    assert (run / "eval_test" / "eval_result.json").exists()

    # best.keras, final.keras and the SavedModel give the same logits
    import models
    x, _ = next(iter(reader.make_dataset(mini_dir, "test", bands="10m+20m+60m", per_resolution=True,
                                         batch_size=4)))
    final = models.load_model(str(run / "final.keras"))
    served = tf.saved_model.load(str(run / "saved_model"))
    np.testing.assert_allclose(served.serve(x).numpy(), final(x, training=False).numpy(), rtol=1e-4, atol=1e-4)
    assert models.load_model(str(run / "best.keras"))(x).shape == (4, 19)


def _weights(run_dir):
    ckpt = tf.train.latest_checkpoint(os.path.join(run_dir, "checkpoints"))
    reader_ = tf.train.load_checkpoint(ckpt)
    return {n: reader_.get_tensor(n) for n, _ in tf.train.list_variables(ckpt) if "model_variables" in n
            or "optimizer" in n}


def test_killed_and_resumed_run_ends_with_the_same_weights(mini_dir, tmp_path):
    steps = 5
    straight = train.train(config(mini_dir, tmp_path / "a", steps_per_epoch=steps, val_split=""))
    # "killed" in the middle of the second epoch, after a mid-epoch checkpoint, then resumed
    first = train.train(config(mini_dir, tmp_path / "b", steps_per_epoch=steps, max_steps=steps + 3,
                               checkpoint_every_steps=2, val_split=""))
    assert first["stopped"] and first["steps"] == steps + 3
    with pytest.raises(train.RunDirError, match="--resume"):
        train.train(config(mini_dir, tmp_path / "b"))
    with pytest.raises(train.RunDirError, match="batch_size"):
        train.train(config(mini_dir, tmp_path / "b", resume=True, batch_size=8))
    resumed = train.train(config(mini_dir, tmp_path / "b", steps_per_epoch=steps, resume=True, val_split=""))
    assert resumed["steps"] == straight["steps"] == 2 * steps
    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert a.keys() == b.keys() and len(a) > 50
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-5, atol=1e-6, err_msg=name)
    ha = training.read_history(str(tmp_path / "a" / "history.csv"))
    hb = training.read_history(str(tmp_path / "b" / "history.csv"))
    assert [r["epoch"] for r in hb] == [1, 2]
    for key in ("loss", "micro_f1", "step"):  # the resumed epoch's figures cover the whole epoch
        np.testing.assert_allclose([r[key] for r in ha], [r[key] for r in hb], rtol=1e-5, err_msg=key)


def test_single_label_training(tmp_path):
    from prep.datasets.so2sat import command as prep_so2sat
    from prep.datasets.so2sat import synthetic as synth_so2sat

    files = synth_so2sat.write_release(str(tmp_path / "h5"), 2, {"training": 48, "validation": 16, "testing": 16})
    out = str(tmp_path / "so2sat")
    prep_so2sat.prepare(list(files.values()), out)
    summary = train.train(config(out, tmp_path / "run", model="So2Sat-ResNet11", epochs=1, batch_size=16,
                                 label_smoothing=0.1, class_weights="balanced", val_split=""))
    cfg = json.loads((tmp_path / "run" / "input_config.json").read_text())
    assert cfg["task"] == "single_label" and cfg["input_spec"] == {"image": [32, 32, 10]}
    assert cfg["bands"] == list(reader.dataset_spec(reader.load_manifest(out)).band_presets["sen2"])
    assert summary["steps"] == 3 and np.isfinite(summary["history"][0]["loss"])
    # evaluate.py on the run: the So2Sat baseline's single-label report
    import evaluate

    result = evaluate.evaluate_model(str(tmp_path / "run"), str(tmp_path / "eval"), checkpoint="final",
                                     echo=lambda *a: None)
    written = json.loads((tmp_path / "eval" / "eval_result.json").read_text())
    assert 0.0 <= written["overall_accuracy"] <= 1.0 and -1.0 <= written["cohen_kappa"] <= 1.0
    assert all(f"macro_f1_score_class{j}" in written for j in range(17))  # per-class F1 of the 17 LCZs
    assert result is not None and any("confusion" in f for f in os.listdir(tmp_path / "eval"))
    scores = np.load(tmp_path / "eval" / "predictions.npz")["scores"]
    assert scores.shape == (16, 17) and np.allclose(scores.sum(axis=1), 1.0, atol=1e-5)  # softmax over 17 LCZs


# --- the command line ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def so2sat_dir(tmp_path_factory):
    """Prepared So2Sat records with 48 training patches (fewer than the default batch of 256)."""
    from prep.datasets.so2sat import command as prep_so2sat
    from prep.datasets.so2sat import synthetic as synth_so2sat

    tmp = tmp_path_factory.mktemp("so2sat_cli")
    files = synth_so2sat.write_release(str(tmp / "h5"), 2, {"training": 48, "validation": 16, "testing": 16})
    prep_so2sat.prepare(list(files.values()), str(tmp / "records"))
    return str(tmp / "records")


TF_BANNER = ("WARNING: All log messages", "I0000", "E0000", "W0000")


def run_train(*args):
    """``python train.py ARGS`` -> (exit status, stderr lines without TensorFlow's C++ banner, stdout)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    p = subprocess.run([sys.executable, "train.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=300)
    lines = [ln for ln in p.stderr.splitlines() if ln.strip() and not ln.startswith(TF_BANNER)]
    return p.returncode, lines, p.stdout


def assert_one_error_line(lines, status, code, *words):
    assert status == code, lines
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    for w in words:
        assert w in lines[0], (w, lines[0])


def test_missing_required_flags_give_one_line_and_exit_2(tmp_path):
    status, lines, out = run_train()
    assert_one_error_line(lines, status, 2, "--data_dir is required", "--help")
    assert out == ""  # no help dump
    status, lines, _ = run_train("--data_dir", str(tmp_path))
    assert_one_error_line(lines, status, 2, "--out_dir is required", "--help")


def test_noexport_preprocess_with_device_preprocessing_is_refused(tmp_path):
    """--preprocess=device always exports the preprocessing: an explicit --noexport_preprocess is a contradiction."""
    status, lines, _ = run_train("--data_dir", str(tmp_path), "--out_dir", str(tmp_path / "run"),
                                 "--preprocess=device", "--noexport_preprocess")
    assert_one_error_line(lines, status, 2, "--noexport_preprocess", "--preprocess=device")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("case", ["missing data_dir", "no manifest", "unknown model", "batch too large",
                                  "model needs other bands"])
def test_a_run_that_cannot_start_says_why_and_writes_nothing(case, so2sat_dir, tmp_path):
    run_dir = tmp_path / "runs" / "new"
    args = ["--data_dir", so2sat_dir, "--out_dir", str(run_dir), "--model", "So2Sat-ResNet11", "--batch_size", "16"]
    if case == "missing data_dir":
        args[1] = str(tmp_path / "nowhere")
        expect = (1, "--data_dir", str(tmp_path / "nowhere"), "no such folder", " - ")
    elif case == "no manifest":
        args[1] = str(tmp_path)
        expect = (1, "--data_dir", str(tmp_path), "manifest.json", " - ")
    elif case == "unknown model":
        args[5] = "Foo"
        expect = (2, "--model Foo", "unknown model", "K-BranchCNN", "So2Sat-ResNet11", "models.names()")
    elif case == "batch too large":
        args = args[:-2]  # the default --batch_size 256 on a split of 48
        expect = (1, "--batch_size 256", "'train'", "48 records", "--batch_size 48 or less")
    else:  # K-BranchCNN's 10m/20m/60m presets are not in So2Sat
        args[5] = "K-BranchCNN"
        expect = (1, "--model K-BranchCNN", "so2sat_lcz42", "10m (4 bands), 20m (6 bands), 60m (2 bands)", "--bands")
    status, lines, _ = run_train(*args)
    assert_one_error_line(lines, status, *expect)
    assert not (tmp_path / "runs").exists()  # not even the parent folders


def test_a_failed_start_leaves_an_existing_run_folder_as_it_was(so2sat_dir, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    status, lines, _ = run_train("--data_dir", so2sat_dir, "--run_dir", str(run_dir),  # the old flag name
                                 "--model", "So2Sat-ResNet11")
    assert_one_error_line(lines, status, 1, "--batch_size 256")
    assert list(run_dir.iterdir()) == []  # no flags.json, nothing


def test_out_dir_has_a_short_name_and_the_old_run_dir_alias():
    from absl import flags

    with command_flags(train):
        for args in (["--out_dir=r"], ["-o", "r"], ["--run_dir=r"]):
            flags.FLAGS.unparse_flags()
            try:
                flags.FLAGS(["train.py", "--data_dir=d", *args])
                assert train.config_from_flags().out_dir == "r", args
            finally:
                flags.FLAGS.unparse_flags()


def test_max_steps_before_any_validation_reports_no_score(mini_dir, tmp_path, capsys):
    from absl import flags

    run_dir = tmp_path / "run"
    with command_flags(train):
        flags.FLAGS.unparse_flags()
        try:
            flags.FLAGS(["train.py", f"--data_dir={mini_dir}", f"--out_dir={run_dir}", "--model=K-BranchCNN",
                         "--batch_size=16", "--max_steps=2", "--checkpoint_every_steps=0", "--noprogress", "--noevaluate_test",
                         "--noexport_saved_model"])
            assert train.main(["train.py"]) == 0
        finally:
            flags.FLAGS.unparse_flags()
    out = capsys.readouterr().out
    assert "2 steps; no epoch ended, so no validation ran" in out and "--resume" in out
    assert "-1.0" not in out  # not the "no score yet" value
    assert not (run_dir / "history.csv").exists() and not (run_dir / "best.keras").exists()
    summary = train.train(config(mini_dir, run_dir, resume=True, max_steps=3))  # still in the first epoch
    assert summary["stopped"] and summary["steps"] == 3 and summary["best_val_micro_f1"] is None


def test_resumed_history_is_numbered_from_one():
    rows = [{"epoch": 0, "loss": 1.0}, {"epoch": 1, "loss": 0.5}, {"epoch": 2, "loss": 0.4}]  # an older train.py
    assert [r["epoch"] for r in train._history_before(rows, 2)] == [1, 2]
    assert [r["epoch"] for r in train._history_before([{"epoch": 1}, {"epoch": 2}], 1)] == [1]


# --- pieces -------------------------------------------------------------------------------------


def test_flag_files_carry_the_upstream_configurations(tmp_path):
    from absl import flags

    with command_flags(train):
        expected = {  # model: (batch size, learning rate)
            "K-BranchCNN": (1000, 1e-3), "VGG16": (1000, 1e-3), "VGG19": (1000, 1e-3),
            "ResNet50": (500, 1e-3), "ResNet101": (500, 1e-3), "ResNet152": (256, 1e-3),
        }
        files = sorted(glob.glob(os.path.join(CONFIGS, "*_BigEarthNet-19.flags")))  # other datasets' beside them
        assert len(files) == len(expected)
        for path in files:
            model = os.path.basename(path).split("_")[0]
            flags.FLAGS.unparse_flags()
            try:
                flags.FLAGS(["train.py", f"--flagfile={path}", "--data_dir=d", "--out_dir=r"])
                cfg = train.config_from_flags()
            finally:
                flags.FLAGS.unparse_flags()
            assert (cfg.model, cfg.batch_size, cfg.learning_rate) == (model, *expected[model]), path
            assert (cfg.epochs, cfg.shuffle_buffer, cfg.seed, cfg.optimizer) == (100, 130000, 42, "adam")
            assert cfg.normalize == "upstream" and cfg.augment is None
            ref = os.path.join(REFERENCE_CONFIGS, f"{model}_BigEarthNet-19_labels.json")
            if os.path.exists(ref):  # the upstream file itself, when the reference folder is present
                up = json.load(open(ref))
                assert (up["model_name"], up["batch_size"], up["learning_rate"], up["nb_epoch"]) == (
                    cfg.model, cfg.batch_size, cfg.learning_rate, cfg.epochs)
                assert up["save_checkpoint_per_iteration"] == cfg.checkpoint_every_steps


def test_default_inputs_follow_the_model():
    assert training.default_inputs("K-BranchCNN", ben.SPEC) == ("10m+20m+60m", True)
    assert training.default_inputs("ResNet50", ben.SPEC) == ("10m20m", False)
    so2sat = datasets.get("so2sat_lcz42")
    assert training.default_inputs("Sen2LCZ-Net", so2sat) == ("sen2", False)


def test_losses_and_class_weights():
    import keras

    rng = np.random.default_rng(0)
    logits = tf.constant(rng.normal(size=(6, 5)), tf.float32)
    y = tf.constant((rng.random((6, 5)) < 0.4).astype(np.float32))
    for ls in (0.0, 0.2):
        got = training.make_loss("multi_label", 5, ls)(y, logits).numpy().mean()
        want = keras.losses.BinaryCrossentropy(from_logits=True, label_smoothing=ls)(y, logits).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-5)
    idx = tf.constant([0, 1, 4, 2, 2, 3])
    for ls in (0.0, 0.1):
        got = training.make_loss("single_label", 5, ls)(idx, logits).numpy().mean()
        want = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=ls)(
            tf.one_hot(idx, 5), logits).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-5)
    w = np.array([1, 2, 0, 1, 1], np.float32)
    plain = training.make_loss("single_label", 5)(idx, logits).numpy()
    np.testing.assert_allclose(training.make_loss("single_label", 5, 0, w)(idx, logits).numpy(), plain * w[idx.numpy()],
                               rtol=1e-6)
    manifest = {"classes": ["a", "b", "c"], "splits": {"train": {"class_counts": {"a": 10, "b": 30, "c": 60}}}}
    bal = training.class_weight_vector("balanced", manifest, "train")
    np.testing.assert_allclose(bal.mean(), 1.0, rtol=1e-6)
    np.testing.assert_allclose(bal[0] / bal[2], 6.0, rtol=1e-6)
    np.testing.assert_allclose(training.class_weight_vector("1,2,3", manifest, "train"), [1, 2, 3])
    assert training.class_weight_vector("none", manifest, "train") is None
    with pytest.raises(ValueError, match="3 classes"):
        training.class_weight_vector("1,2", manifest, "train")
    tp, fp, fn = (float(v) for v in training.make_counts("multi_label")(
        tf.constant([[1.0, 0.0, 1.0]]), tf.constant([[2.0, 1.0, -1.0]])))
    assert (tp, fp, fn) == (1.0, 1.0, 1.0)


def test_learning_rate_schedules():
    cfg = train.TrainConfig("d", "r", epochs=10, learning_rate=0.1)
    assert training.make_schedule(cfg, 100) == 0.1
    step = training.make_schedule(dataclasses.replace(cfg, lr_schedule="step", lr_decay_epochs=2,
                                                   lr_decay_factor=0.5), 100)
    np.testing.assert_allclose([float(step(s)) for s in (0, 199, 200, 450)], [0.1, 0.1, 0.05, 0.025], rtol=1e-6)
    cos = training.make_schedule(dataclasses.replace(cfg, lr_schedule="cosine", lr_warmup_epochs=1), 100)
    np.testing.assert_allclose([float(cos(s)) for s in (0, 50, 100, 1000)], [0.0, 0.05, 0.1, 0.0], atol=1e-6)
    warm = training.make_schedule(dataclasses.replace(cfg, lr_warmup_epochs=2), 100)
    np.testing.assert_allclose([float(warm(s)) for s in (100, 200, 900)], [0.05, 0.1, 0.1], rtol=1e-6)
    assert training.epoch_seed(42, 3) == training.epoch_seed(42, 3) != training.epoch_seed(42, 4)


def test_without_model_the_dataset_s_default_model_is_used():
    for ds in datasets.all_datasets():
        assert train.default_model({"dataset": ds.name, "task": "multi_label"}) == ds.default_model, ds.name
    assert train.default_model({"dataset": "sen12ms", "task": "segmentation"}) == "UNet-ResNet50"
    with pytest.raises(UsageError, match="give --model"):
        train.default_model({"dataset": "mars", "task": "single_label"})
