"""evaluate.py end to end: --predictions (subprocess, as users run it), thresholds, task detection,
errors, the report files (valid PNGs, complete JSON without NaN), and --model with a tiny Keras model
over a stand-in dataset."""
from __future__ import annotations

import csv
import json
import math
import os
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest

import evaluate
from evaluation import metrics, report
from prep.errors import InputError, UsageError
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


def run_cli(*args, cwd=ROOT, program=None):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", MPLBACKEND="Agg")
    command = [program] if program else [sys.executable, os.path.join(ROOT, "evaluate.py")]
    return subprocess.run([*command, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=120)


def assert_one_line_error(proc, code, *fragments):
    """The command failed with exit status ``code`` and one stderr line, ``error: ...``, holding ``fragments``."""
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


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
    def check(name, problem, **arrays):
        path = tmp_path / name
        if arrays:
            np.savez(path, **arrays)
        with pytest.raises(InputError, match=rf"^{re.escape(str(path))}: {problem}"):
            evaluate.load_predictions(str(path))

    check("nope.npz", "no such file")
    check("a.npz", r"missing array\(s\) targets", scores=np.zeros((4, 3)))
    check("a2.npz", r"missing array\(s\) scores, targets", logits=np.zeros((4, 3)))
    check("b.npz", "1 class_names for 3", scores=np.zeros((4, 3)), targets=np.zeros((4, 3)), class_names=np.array(["x"]))
    check("c.npz", "scores contain NaN", scores=np.full((2, 2), np.nan), targets=np.zeros(2, int))
    check("d.npz", r"scores must be N x C, got shape \(4,\)", scores=np.zeros(4), targets=np.zeros(4))
    check("e.npz", r"targets shape \(5,\) fits neither", scores=np.zeros((4, 3)), targets=np.zeros(5))
    check("f.npz", "multi-label targets must be 0 or 1", scores=np.zeros((2, 3)), targets=np.full((2, 3), 0.9))
    check("g.npz", r"single-label targets must be class indices 0\.\.2, found 0\.\.3", scores=np.zeros((2, 3)),
          targets=np.array([0, 3]))
    check("h.npz", "unknown task 'regression'", scores=np.zeros((2, 3)), targets=np.zeros(2, int), task="regression")
    check("i.npz", "scores hold no predictions", scores=np.zeros((0, 3)), targets=np.zeros(0, int))
    check("j.npz", "scores must be numbers", scores=np.array([["a", "b"]]), targets=np.zeros(1, int))
    (tmp_path / "text.npz").write_text("scores,targets\n0.1,1\n")
    check("text.npz", "not a readable .npz archive")
    np.save(tmp_path / "plain.npy", np.zeros((2, 3)))
    check("plain.npy", r"holds a single array \(.npy\)")
    # the errors are InputErrors and, for callers that caught them before, still ValueErrors
    assert issubclass(InputError, ValueError)
    with pytest.raises(UsageError, match="exactly one of --predictions"):
        main_with_flags(f"--out_dir={tmp_path}")
    with pytest.raises(UsageError, match="--threshold_split needs --model"):
        main_with_flags(f"--out_dir={tmp_path}", f"--predictions={tmp_path / 'a.npz'}", "--threshold_split=val")


def test_cli_reports_bad_predictions_files_in_one_line(tmp_path):
    proc = run_cli("--predictions", "nothere.npz", "--out_dir", "o", cwd=tmp_path)
    assert assert_one_line_error(proc, 1) == "error: nothere.npz: no such file"
    np.savez(tmp_path / "noscores.npz", targets=np.zeros((4, 3)), class_names=np.array(list("abc")))
    proc = run_cli("--predictions=noscores.npz", "--out_dir=o", cwd=tmp_path)
    assert_one_line_error(proc, 1, "error: noscores.npz: missing array(s) scores", "class_names")
    np.savez(tmp_path / "shapes.npz", scores=np.zeros((4, 3)), targets=np.zeros((4, 2)))
    proc = run_cli("--predictions=shapes.npz", "--out_dir=o", cwd=tmp_path)
    assert_one_line_error(proc, 1, "error: shapes.npz: targets shape (4, 2) fits neither (4,) nor (4, 3)")
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 not really a zip")
    proc = run_cli("--predictions=junk.npz", "--out_dir=o", cwd=tmp_path)
    assert_one_line_error(proc, 1, "error: junk.npz: not a readable .npz archive")
    s, y = multi_label_data(n=50, c=4)
    evaluate.save_predictions(tmp_path / "ok.npz", s, y, list("abcd"), "multi_label")
    proc = run_cli("--predictions=ok.npz", "--out_dir=o", "--thresholds_from=thr.json", cwd=tmp_path)
    assert_one_line_error(proc, 1, "error: thr.json: no such file")
    assert not (tmp_path / "o").exists()


def test_cli_usage_errors_and_help(tmp_path):
    proc = run_cli(cwd=tmp_path)
    assert_one_line_error(proc, 2, "give exactly one of --predictions", "(python evaluate.py --help)")
    proc = run_cli("--predictions=p.npz", cwd=tmp_path)
    assert_one_line_error(proc, 2, "--out_dir is required", "--help")
    proc = run_cli("--predictions=p.npz", "--out_dir=o", "extra", cwd=tmp_path)
    assert_one_line_error(proc, 2, "unexpected arguments: extra", "--help")
    proc = run_cli("--predictions=p.npz", "--out_dir=o", "--treshold=0.3", cwd=tmp_path)
    assert_one_line_error(proc, 2, "treshold", "--help")
    # help from the installed console script: the command's description and its own flags
    script = os.path.join(os.path.dirname(sys.executable), "eorecords-evaluate")
    if not os.path.exists(script):
        pytest.skip("eorecords-evaluate is not installed (pip install -e .)")
    proc = run_cli("--help", cwd=tmp_path, program=script)
    assert proc.returncode in (0, 1) and not proc.stderr, proc.stderr  # absl exits 1 after printing the help
    assert "Evaluate a trained model, or a saved predictions file" in proc.stdout
    for flag in ("--predictions", "--model", "--out_dir", "--threshold", "--thresholds_from", "--split"):
        assert flag in proc.stdout, flag
    proc = run_cli(program=script, cwd=tmp_path)
    assert_one_line_error(proc, 2, "give exactly one of --predictions", "(eorecords-evaluate --help)")


def test_threshold_flags_are_refused_for_single_label_data(tmp_path):
    s, t = single_label_data(n=60, c=5)
    evaluate.save_predictions(tmp_path / "so2sat.npz", s, t, list("abcde"), "single_label")
    proc = run_cli("--predictions=so2sat.npz", "--out_dir=o", "--threshold=0.3", cwd=tmp_path)
    assert_one_line_error(proc, 2, "so2sat.npz: single-label data: --threshold applies to multi-label data only")
    assert not (tmp_path / "o").exists()
    # even at its default value: given is given
    proc = run_cli("--predictions=so2sat.npz", "--out_dir=o", "--threshold=0.5", cwd=tmp_path)
    assert_one_line_error(proc, 2, "--threshold")
    (tmp_path / "thr.json").write_text("[0.5, 0.5, 0.5, 0.5, 0.5]")
    with pytest.raises(UsageError, match="--thresholds_from applies to multi-label data only"):
        evaluate.evaluate_predictions(str(tmp_path / "so2sat.npz"), str(tmp_path / "o"),
                                      thresholds_from=str(tmp_path / "thr.json"), echo=None)
    # not given: single-label evaluates (the library default is "not given", not 0.5)
    proc = run_cli("--predictions=so2sat.npz", "--out_dir=o", "--noplots", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "threshold" not in load_json_strict(tmp_path / "o" / report.DETAILS_JSON)


def test_predictions_cli_does_not_load_keras(tmp_path):
    # evaluate.py --predictions needs numpy and matplotlib only: a fresh interpreter running it to the
    # end (report, plots) must never have imported Keras or TensorFlow
    s, y = multi_label_data(n=80, c=5)
    evaluate.save_predictions(tmp_path / "p.npz", s, y, list("abcde"), "multi_label")
    code = ("import atexit, sys\n"
            "atexit.register(lambda: print('LOADED', sorted(m for m in ('keras', 'tensorflow') if m in sys.modules)))\n"
            f"sys.argv = ['evaluate.py', '--predictions={tmp_path / 'p.npz'}', '--out_dir={tmp_path / 'o'}']\n"
            "import evaluate\n"
            "evaluate.run()\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env=dict(os.environ, MPLBACKEND="Agg"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "LOADED []"
    assert (tmp_path / "o" / report.PR_PNG).exists()


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
    # the multi-label threshold options are refused for single-label data, before the model loads
    for option in ({"threshold": 0.3}, {"threshold_split": "val"}, {"thresholds_from": "thr.json"}):
        (name, _), = option.items()
        with pytest.raises(UsageError, match=f"single-label data: --{name} applies to multi-label data only"):
            evaluate.evaluate_model(str(path), str(out), data_dir=str(tmp_path), echo=None, **option)


def _registry_style_model(c, spec=None, seed=0):
    """A tiny model built the way models.build builds every model: a dict of inputs named after the
    input_spec keys (models.common.make_inputs / finish)."""
    import keras

    from models import common

    keras.utils.set_random_seed(seed)
    inputs = common.make_inputs(spec or {"image": (4, 4, 3)})
    flat = [keras.layers.Flatten()(inputs[k]) for k in inputs]
    x = flat[0] if len(flat) == 1 else keras.layers.Concatenate()(flat)
    return common.finish(inputs, keras.layers.Dense(c)(x), "tiny")


def _structure_warnings(caught):
    return [str(w.message) for w in caught if "structure" in str(w.message)]


def test_model_inputs_fed_in_the_structure_the_model_was_built_with(tmp_path, monkeypatch):
    rng = np.random.default_rng(4)
    c = 3
    classes = ["a", "b", "c"]
    data = {"test": (rng.normal(size=(40, 4, 4, 3)).astype(np.float32), (rng.random((40, c)) < 0.4).astype(np.float32))}
    _fake_reader(monkeypatch, "multi_label", classes, data)
    model = _registry_style_model(c)
    x = data["test"][0][:4]
    with warnings.catch_warnings(record=True) as caught:  # the test can see the warning: a bare tensor gives it
        warnings.simplefilter("always")
        model(x, training=False)
    assert _structure_warnings(caught)

    run = tmp_path / "run"
    run.mkdir()
    model.save(run / "best.keras")
    (run / "input_config.json").write_text(json.dumps({"data_dir": "/somewhere", "task": "multi_label",
                                                       "classes": classes, "bands": ["B04", "B03", "B02"]}))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        main_with_flags(f"--model={run}", "--batch_size=16", "--noplots")  # no --out_dir: RUN/eval
    assert not _structure_warnings(caught), _structure_warnings(caught)
    scores = evaluate.load_predictions(str(run / "eval" / "predictions.npz"))[0]
    expected = evaluate.sigmoid(np.asarray(model({"image": data["test"][0]}, training=False)))
    assert np.allclose(scores, expected, atol=1e-6)
    assert (run / "eval" / report.EVAL_JSON).exists()

    # a bare .keras file: MODEL_eval beside it
    model.save(tmp_path / "m.keras")
    main_with_flags(f"--model={tmp_path / 'm.keras'}", f"--data_dir={tmp_path}", "--bands=B04,B03,B02", "--noplots")
    assert (tmp_path / "m_eval" / "predictions.npz").exists()
    assert evaluate.default_out_dir(str(run)) == os.path.join(str(run), "eval")
    assert evaluate.default_out_dir("runs/x/best.keras") == os.path.join("runs/x", "best_eval")
    assert evaluate.default_out_dir("m.keras") == "m_eval"


def test_model_inputs_for_each_input_structure():
    import keras

    x = np.zeros((2, 4, 4, 3), np.float32)
    inp = keras.Input((4, 4, 3), name="image")
    out = keras.layers.Dense(2)(keras.layers.Flatten()(inp))
    for model, expected_type in ((keras.Model({"image": inp}, out), dict), (keras.Model(inp, out), np.ndarray),
                                 (keras.Model([inp], out), list)):
        for features in ({"image": x}, x, {"renamed": x}):
            fed = evaluate.model_inputs(model, features)
            assert isinstance(fed, expected_type)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                model(fed, training=False)
            assert not _structure_warnings(caught), (model.input, features)
    # per-resolution inputs (K-BranchCNN style) take the feature of their name
    multi = _registry_style_model(2, {"10m": (4, 4, 3), "20m": (2, 2, 3)})
    features = {"20m": np.ones((2, 2, 2, 3), np.float32), "10m": x}
    fed = evaluate.model_inputs(multi, features)
    assert list(fed) == ["10m", "20m"] and fed["20m"] is features["20m"]
    with pytest.raises(InputError, match=r"^recs: the model's inputs \['10m', '20m'\] do not match the data's features "
                                         r"\['image'\]"):
        evaluate.model_inputs(multi, {"image": x}, "recs")


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
