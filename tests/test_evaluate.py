"""evaluate.py end to end: --predictions (subprocess, as users run it), thresholds, task detection,
errors, the report files (valid PNGs, complete JSON without NaN), and --model with a tiny Keras model
over a stand-in dataset."""
from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from absl import app

import evaluate
from evaluation import metrics, report
from tests.conftest import command_flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
BEN19 = ["Urban fabric", "Industrial or commercial units", "Arable land", "Permanent crops", "Pastures",
         "Complex cultivation patterns",
         "Land principally occupied by agriculture, with significant areas of natural vegetation",
         "Agro-forestry areas", "Broad-leaved forest", "Coniferous forest", "Mixed forest",
         "Natural grassland and sparsely vegetated areas", "Moors, heathland and sclerophyllous vegetation",
         "Transitional woodland, shrub", "Beaches, dunes, sands", "Inland wetlands", "Coastal wetlands",
         "Inland waters", "Marine waters"]


def multi_label_data(seed=0, n=600, c=19):
    rng = np.random.default_rng(seed)
    y = rng.random((n, c)) < rng.uniform(0.02, 0.4, c)
    y[:, -1] = False  # a class without positives
    s = np.clip(0.35 * y + rng.normal(0.3, 0.2, (n, c)), 0, 1).astype(np.float32)
    return s, y


def single_label_data(seed=0, n=500, c=17):
    rng = np.random.default_rng(seed)
    t = rng.integers(0, c, n)
    logits = rng.normal(0, 1, (n, c))
    logits[np.arange(n), t] += 1.5
    return evaluate.softmax(logits), t


def assert_valid_png(path):
    from matplotlib import image

    with open(path, "rb") as f:
        assert f.read(8) == PNG_SIGNATURE, path
    pixels = image.imread(path)
    assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 100
    assert pixels.std() > 0  # not a blank canvas


def load_json_strict(path):
    with open(path) as f:
        return json.load(f, parse_constant=lambda c: pytest.fail(f"{path} holds {c}"))


def run_cli(*args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", MPLBACKEND="Agg")
    return subprocess.run([sys.executable, os.path.join(ROOT, "evaluate.py"), *args], capture_output=True,
                          text=True, cwd=ROOT, env=env, timeout=120)


def main_with_flags(*args):
    """evaluate.main in this process with these command-line flags (restored afterwards)."""
    with command_flags(evaluate) as fv:
        fv(["evaluate.py", *args])
        evaluate.main(["evaluate.py"])


def test_predictions_cli_multi_label_writes_every_file(tmp_path):
    s, y = multi_label_data()
    pred = tmp_path / "preds.npz"
    evaluate.save_predictions(pred, s, y, BEN19, "multi_label")
    out = tmp_path / "report"
    proc = run_cli(f"--predictions={pred}", f"--out_dir={out}")
    assert proc.returncode == 0, proc.stderr
    # the console table: headline metrics and one line per class
    assert "micro F1" in proc.stdout and "Marine waters" in proc.stdout and "Coniferous forest" in proc.stdout

    result = load_json_strict(out / report.EVAL_JSON)
    assert list(result) == metrics.multi_label_keys(19)
    assert all(isinstance(v, float) and math.isfinite(v) for v in result.values())
    expected = metrics.compute(metrics.MULTI_LABEL, s, y)
    assert result == pytest.approx(expected, abs=1e-12)
    assert result["macro_recall_class18"] == 0.0 and result["average_precision_class18"] == 0.0

    for png in (report.F1_PNG, report.PR_PNG, report.COOCCURRENCE_PNG):
        assert_valid_png(out / png)
    assert not (out / report.CONFUSION_PNG).exists()

    with open(out / report.PER_CLASS_CSV) as f:
        rows = list(csv.DictReader(f))
    assert [r["class"] for r in rows] == BEN19
    assert int(rows[2]["support"]) == int(y[:, 2].sum())
    assert float(rows[2]["f1"]) == pytest.approx(result["macro_f1_score_class2"], abs=1e-6)

    md = (out / report.REPORT_MD).read_text()
    assert "| micro F1 (`micro_f1_score`) |" in md and f"![{report.PR_PNG}]({report.PR_PNG})" in md
    assert "Land principally occupied by agriculture" in md
    details = load_json_strict(out / report.DETAILS_JSON)
    assert details["task"] == "multi_label" and details["samples"] == len(s) and details["classes"] == BEN19
    assert details["thresholds"] == [0.5] * 19


def test_report_names_the_classes_without_positives(tmp_path):
    s, y = multi_label_data(seed=3)
    y[:, -1] = np.arange(len(y)) % 10 == 0  # Marine waters occurs here; only Agro-forestry areas does not
    agro = BEN19.index("Agro-forestry areas")
    y[:, agro] = False
    assert y.any(axis=0).sum() == 18
    out = tmp_path / "r"
    res = evaluate.evaluate_arrays(s, y, BEN19, "multi_label", str(out), plots=False, echo=None)
    result = load_json_strict(out / report.EVAL_JSON)
    present = [j for j in range(19) if j != agro]
    ap = np.array([result[f"average_precision_class{j}"] for j in range(19)])
    assert result["macro_average_precision"] == pytest.approx(ap.mean(), abs=1e-12)
    assert result["macro_average_precision_present_classes"] == pytest.approx(ap[present].mean(), abs=1e-12)
    details = load_json_strict(out / report.DETAILS_JSON)
    assert details["classes_without_positives"] == ["Agro-forestry areas"]
    md = (out / report.REPORT_MD).read_text()
    assert "without a positive sample" in md and "Agro-forestry areas" in md.split("## Headline")[0]
    assert "`macro_average_precision_present_classes`" in md
    note = [line for line in res["table"].splitlines() if "without a positive sample" in line]
    assert len(note) == 1 and note[0].endswith("Agro-forestry areas")
    # every class present: no line in the table, "none" in report.md and an empty list in the details
    y[:5, agro] = True
    res = evaluate.evaluate_arrays(s, y, BEN19, "multi_label", str(out), plots=False, echo=None)
    assert "without a positive sample" not in res["table"]
    assert load_json_strict(out / report.DETAILS_JSON)["classes_without_positives"] == []
    assert "classes without a positive sample: none" in (out / report.REPORT_MD).read_text()
    assert res["result"]["macro_average_precision"] == res["result"]["macro_average_precision_present_classes"]


def test_predictions_single_label_confusion_outputs(tmp_path):
    s, t = single_label_data()
    names = [f"LCZ {j + 1}" for j in range(17)]
    pred = tmp_path / "so2sat.npz"
    np.savez(pred, scores=s, targets=t, class_names=np.array(names))  # no task: taken from the 1-D targets
    out = tmp_path / "r"
    res = evaluate.evaluate_predictions(str(pred), str(out), echo=None)
    result = load_json_strict(out / report.EVAL_JSON)
    assert list(result) == metrics.single_label_keys(17)
    assert result == pytest.approx(metrics.compute(metrics.SINGLE_LABEL, s, t), abs=1e-12)
    confusion_pngs = [f for f in os.listdir(out) if "confusion" in f and f.endswith(".png")]
    assert confusion_pngs == [report.CONFUSION_PNG]
    for png in (report.CONFUSION_PNG, report.F1_PNG, report.PR_PNG):
        assert_valid_png(out / png)
    assert not (out / report.COOCCURRENCE_PNG).exists()
    with open(out / report.CONFUSION_CSV) as f:
        cm = np.array([[int(v) for v in row[1:]] for row in list(csv.reader(f))[1:]])
    acc = metrics.SingleLabelAccumulator(17)
    acc.update(s, t)
    assert (cm == acc.confusion_matrix()).all() and cm.sum() == len(t)
    details = load_json_strict(out / report.DETAILS_JSON)
    assert details["confusion_matrix_rows_true_cols_pred"] == cm.tolist()
    assert "overall accuracy" in res["table"] and "LCZ 17" in res["table"]


def test_thresholds_from_validation_predictions(tmp_path):
    val_s, val_y = multi_label_data(seed=1)
    test_s, test_y = multi_label_data(seed=2)
    evaluate.save_predictions(tmp_path / "val.npz", val_s, val_y, BEN19, "multi_label")
    evaluate.save_predictions(tmp_path / "test.npz", test_s, test_y, BEN19, "multi_label")
    main_with_flags(f"--predictions={tmp_path / 'test.npz'}", f"--out_dir={tmp_path / 'out'}",
                    f"--thresholds_from={tmp_path / 'val.npz'}", "--noplots")
    thr = metrics.select_thresholds(val_s, val_y)
    details = load_json_strict(tmp_path / "out" / report.DETAILS_JSON)
    assert details["thresholds"] == pytest.approx(list(thr), abs=1e-12)
    assert details["thresholds"][-1] == 0.5  # no positives in validation: the default stays
    result = load_json_strict(tmp_path / "out" / report.EVAL_JSON)
    assert result == pytest.approx(metrics.compute(metrics.MULTI_LABEL, test_s, test_y, threshold=thr), abs=1e-12)
    assert result != pytest.approx(metrics.compute(metrics.MULTI_LABEL, test_s, test_y), abs=1e-12)
    assert not list((tmp_path / "out").glob("*.png"))  # --noplots
    # the same thresholds from a JSON list
    (tmp_path / "thr.json").write_text(json.dumps(list(thr)))
    assert np.allclose(evaluate.load_thresholds(str(tmp_path / "thr.json"), 19), thr)


def test_task_detection_and_one_hot_single_label(tmp_path):
    s, t = single_label_data(n=80, c=5)
    onehot = np.eye(5, dtype=np.float32)[t]
    evaluate.save_predictions(tmp_path / "p.npz", s, onehot, list("abcde"), "single_label")
    assert evaluate.load_predictions(str(tmp_path / "p.npz"))[3] == "single_label"
    res = evaluate.evaluate_predictions(str(tmp_path / "p.npz"), str(tmp_path / "o"), plots=False, echo=None)
    assert res["result"] == pytest.approx(metrics.compute(metrics.SINGLE_LABEL, s, t), abs=1e-12)
    # no stored task: N x C targets read as multi-label, N targets as single-label
    np.savez(tmp_path / "q.npz", scores=s, targets=onehot, class_names=np.array(list("abcde")))
    assert evaluate.load_predictions(str(tmp_path / "q.npz"))[3] == "multi_label"
    assert evaluate.load_predictions(str(tmp_path / "q.npz"), task="single_label")[3] == "single_label"


def test_bad_predictions_files_are_named_in_errors(tmp_path):
    np.savez(tmp_path / "a.npz", scores=np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"a\.npz: missing array"):
        evaluate.load_predictions(str(tmp_path / "a.npz"))
    np.savez(tmp_path / "b.npz", scores=np.zeros((4, 3)), targets=np.zeros((4, 3)), class_names=np.array(["x"]))
    with pytest.raises(ValueError, match=r"b\.npz: 1 class_names for 3"):
        evaluate.load_predictions(str(tmp_path / "b.npz"))
    np.savez(tmp_path / "c.npz", scores=np.full((2, 2), np.nan), targets=np.zeros(2, int))
    with pytest.raises(ValueError, match=r"c\.npz: scores contain NaN"):
        evaluate.load_predictions(str(tmp_path / "c.npz"))
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        evaluate.load_predictions(str(tmp_path / "nope.npz"))
    with pytest.raises(app.UsageError, match="exactly one of --predictions"):
        main_with_flags(f"--out_dir={tmp_path}")
    with pytest.raises(app.UsageError, match="--threshold_split needs --model"):
        main_with_flags(f"--out_dir={tmp_path}", f"--predictions={tmp_path / 'a.npz'}", "--threshold_split=val")


# --------------------------------------------------------------------------------------------
# --model, with a tiny Keras model and a stand-in for prep.reader


def _fake_reader(monkeypatch, task, classes, data):
    import tensorflow as tf

    manifest = {"task": task, "classes": classes,
                "splits": {split: {"written": len(x)} for split, (x, _) in data.items()}}
    calls = []

    def make_dataset(data_dir, split, settings, batch_size):
        calls.append((split, dict(settings)))
        x, y = data[split]
        return tf.data.Dataset.from_tensor_slices(({"image": x}, y)).batch(batch_size)

    monkeypatch.setattr(evaluate, "load_manifest", lambda data_dir: manifest)
    monkeypatch.setattr(evaluate, "make_dataset", make_dataset)
    return calls


def _tiny_model(c, seed=0):
    import keras

    keras.utils.set_random_seed(seed)
    inp = keras.Input((4, 4, 3), name="image")
    out = keras.layers.Dense(c)(keras.layers.Flatten()(inp))
    return keras.Model(inp, out)


def test_model_multi_label_run_dir(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    c = 6
    classes = [f"c{j}" for j in range(c)]
    data = {split: (rng.normal(size=(n, 4, 4, 3)).astype(np.float32), (rng.random((n, c)) < 0.3).astype(np.float32))
            for split, n in (("val", 70), ("test", 90))}
    calls = _fake_reader(monkeypatch, "multi_label", classes, data)
    run = tmp_path / "run"
    run.mkdir()
    model = _tiny_model(c)
    model.save(run / "final.keras")  # no best.keras: falls back to final
    config = {"data_dir": "/somewhere", "dataset": "toy", "task": "multi_label", "bands": ["B04", "B03", "B02"],
              "per_resolution": False, "resample": "bilinear", "normalize": "manifest", "classes": classes}
    (run / "input_config.json").write_text(json.dumps(config))
    out = tmp_path / "eval"
    res = evaluate.evaluate_model(str(run), str(out), split="test", threshold_split="val", batch_size=32, echo=None)
    # input settings come from input_config.json, the thresholds from the val split
    assert [c_[0] for c_ in calls] == ["val", "test"]
    assert calls[1][1] == {"bands": ["B04", "B03", "B02"], "per_resolution": False, "resample": "bilinear",
                           "normalize": "manifest"}
    logits = {k: np.asarray(model(x, training=False)) for k, (x, _) in data.items()}
    probs = {k: 1 / (1 + np.exp(-v.astype(np.float64))) for k, v in logits.items()}
    saved = evaluate.load_predictions(str(out / "predictions.npz"))
    assert np.allclose(saved[0], probs["test"], atol=1e-6) and (saved[1] == data["test"][1]).all()
    assert saved[2] == classes and saved[3] == "multi_label"
    thr = metrics.select_thresholds(evaluate.load_predictions(str(out / "predictions_val.npz"))[0], data["val"][1])
    assert np.allclose(load_json_strict(out / report.DETAILS_JSON)["thresholds"], thr)
    assert res["result"] == pytest.approx(metrics.compute("multi_label", saved[0], saved[1], threshold=thr))
    assert list(load_json_strict(out / report.EVAL_JSON)) == metrics.multi_label_keys(c)
    assert_valid_png(out / report.COOCCURRENCE_PNG)


def test_model_single_label_keras_file(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    c = 4
    x = rng.normal(size=(50, 4, 4, 3)).astype(np.float32)
    t = rng.integers(0, c, 50).astype(np.int32)
    _fake_reader(monkeypatch, "single_label", list("wxyz"), {"test": (x, t)})
    model = _tiny_model(c, seed=1)
    path = tmp_path / "m.keras"
    model.save(path)
    out = tmp_path / "e"
    evaluate.evaluate_model(str(path), str(out), data_dir=str(tmp_path), batch_size=16,
                            overrides={"bands": "B04,B03,B02", "normalize": "none"}, echo=None)
    scores, targets, names, task = evaluate.load_predictions(str(out / "predictions.npz"))
    logits = np.asarray(model(x, training=False)).astype(np.float64)
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert task == "single_label" and names == list("wxyz") and (targets == t).all()
    assert np.allclose(scores, expected, atol=1e-6)
    assert (out / report.CONFUSION_PNG).exists()
    assert evaluate.input_settings(None, {"bands": "B04,B03,B02", "normalize": "none"}) == {
        "bands": ["B04", "B03", "B02"], "per_resolution": False, "resample": "bicubic", "normalize": None}


def test_model_classes_must_match_manifest(tmp_path, monkeypatch):
    _fake_reader(monkeypatch, "multi_label", ["a", "b"], {"test": (np.zeros((2, 4, 4, 3), np.float32),
                                                                    np.zeros((2, 2), np.float32))})
    run = tmp_path / "run"
    run.mkdir()
    (run / "best.keras").write_text("not loaded")
    (run / "input_config.json").write_text(json.dumps({"data_dir": "d", "classes": ["b", "a"]}))
    with pytest.raises(ValueError, match="classes"):
        evaluate.evaluate_model(str(run), str(tmp_path / "o"), echo=None)


def test_input_settings_use_the_training_statistics():
    stats = {"B04": {"mean": 1.0, "std": 2.0}, "B03": {"mean": 3.0, "std": 4.0}}
    config = {"bands": ["B04", "B03"], "per_resolution": False, "resample": "bilinear", "normalize": "manifest",
              "statistics": stats}
    s = evaluate.input_settings(config, {"bands": "all"})
    assert s["normalize"] == stats and s["bands"] == ["B04", "B03"] and s["resample"] == "bilinear"
    assert evaluate.input_settings({**config, "normalize": "none"}, {})["normalize"] is None
    assert evaluate.input_settings(None, {"bands": "B04,B03"})["bands"] == ["B04", "B03"]
