"""k-fold evaluation: evaluate.py --all_folds on 2 tiny synthetic Sentinel2GlobalLULC folds trained 1 epoch each,
the folds summary (evaluation/folds.py, shared with ``prep lulc fold_report``), the fold flags' usage errors,
and train.py --unfreeze refused for a model without a backbone to fine-tune."""
from __future__ import annotations

import json
import os

import pytest

import evaluate
import train
from evaluation import folds, report
from prep.datasets.sentinel2_global_lulc import command, fold_report, synthetic
from prep.errors import UsageError
from tests.conftest import command_flags

PX = 16
NUM_FOLDS = 2


@pytest.fixture(scope="module")
def fold_runs(tmp_path_factory):
    """(data pattern, run pattern): 2 prepared folds of a tiny tree, a small CNN trained 1 epoch on each."""
    base = tmp_path_factory.mktemp("kfold")
    tree = base / "tree"
    synthetic.write_tree(str(tree), per_class=6, tile_px=PX, seed=4, classes=(1, 3, 21, 29))
    for k in range(NUM_FOLDS):
        command.prepare(str(tree), str(base / f"lulc_fold{k}"), test_fold=k, k=NUM_FOLDS, tile_px=PX)
    cfg = train.TrainConfig(str(base / "lulc_fold{fold}"), str(base / "runs" / "fold{fold}"), model="So2Sat-ResNet11",
                            epochs=1, batch_size=4, bands="rgb", per_resolution=False, normalize=None, augment=None,
                            shuffle_buffer=16, val_split="", progress=False, evaluate_test=False,
                            export_saved_model=False, checkpoint_every_steps=0, seed=1)
    for run in train.fold_configs(cfg, None, NUM_FOLDS):
        train.train(run)
    return str(base / "lulc_fold{fold}"), str(base / "runs" / "fold{fold}"), base


def main_with_flags(*args):
    with command_flags(evaluate) as fv:
        fv(["evaluate.py", *args])
        return evaluate.main(["evaluate.py"])


def test_all_folds_evaluates_each_fold_and_writes_the_summary(fold_runs, tmp_path, capsys):
    data, runs, _ = fold_runs
    out = tmp_path / "eval_folds"
    assert main_with_flags(f"--model={runs}", f"--data_dir={data}", f"--all_folds={NUM_FOLDS}", f"--out_dir={out}",
                           "--split=test") == 0
    printed = capsys.readouterr().out
    results = []
    for k in range(NUM_FOLDS):
        fold_dir = out / f"fold{k}"
        assert (fold_dir / report.CONFUSION_PNG).is_file()  # a confusion matrix plot per fold
        results.append(json.loads((fold_dir / report.EVAL_JSON).read_text()))
        details = json.loads((fold_dir / "eval_details.json").read_text())
        assert details["split"] == "test" and details["data_dir"].endswith(f"lulc_fold{k}")
    summary = json.loads((out / "folds_summary.json").read_text())
    assert summary["folds"] == NUM_FOLDS and set(summary["metrics"]) == set(folds.SINGLE_LABEL_METRICS)
    oa = [r["overall_accuracy"] for r in results]
    assert summary["metrics"]["overall_accuracy"]["folds"] == pytest.approx(oa)
    assert summary["metrics"]["overall_accuracy"]["mean"] == pytest.approx(sum(oa) / 2)
    assert summary["metrics"]["cohen_kappa"]["std"] == pytest.approx(
        abs(results[0]["cohen_kappa"] - results[1]["cohen_kappa"]) / 2 ** 0.5)
    # the four classes of the tree; the per-class F1 is the same as fold_report's from the same folders
    assert list(summary["per_class_f1"])[:1] == ["BarrenLands__"]
    same = fold_report.summarize([str(out / f"fold{k}") for k in range(NUM_FOLDS)])
    assert same["metrics"] == summary["metrics"] and same["per_class_f1"] == summary["per_class_f1"]
    md = (out / "folds_summary.md").read_text()
    assert "| OA |" in md and "| F1 BarrenLands__ |" in md and "| mean | std |" in md
    assert "2 folds:" in printed and "kappa" in printed and "fold 1" in printed


def test_one_fold_replaces_the_placeholder_everywhere(fold_runs, tmp_path):
    data, runs, _ = fold_runs
    out = str(tmp_path / "eval{fold}")
    main_with_flags(f"--model={runs}", f"--data_dir={data}", "--fold=1", f"--out_dir={out}", "--noplots")
    assert (tmp_path / "eval1" / report.EVAL_JSON).is_file()


def test_fold_flags_usage_errors():
    with pytest.raises(UsageError, match="not both"):
        evaluate.fold_list("r{fold}", None, "o", 1, 2)
    with pytest.raises(UsageError, match="--model must contain"):
        evaluate.fold_list("r", None, "o", None, 2)
    with pytest.raises(UsageError, match="--data_dir must contain"):
        evaluate.fold_list("r{fold}", "d", "o", None, 2)
    with pytest.raises(UsageError, match="--all_folds needs --out_dir"):
        evaluate.fold_list("r{fold}", None, None, None, 2)
    with pytest.raises(UsageError, match="--all_folds needs --out_dir"):
        evaluate.fold_list("r{fold}", None, "o{fold}", None, 2)
    assert evaluate.fold_list("r{fold}", None, "o", None, 3) == [0, 1, 2]
    assert evaluate.fold_list("r{fold}", "d{fold}", None, 2, 0) == [2]
    assert evaluate.fold_list("r", None, None, None, 0) == []


def test_fold_flags_with_predictions_are_a_one_line_error(tmp_path):
    with pytest.raises(UsageError, match="--fold/--all_folds evaluate models"):
        main_with_flags(f"--predictions={tmp_path / 'p.npz'}", "--all_folds=2", f"--out_dir={tmp_path}")


def test_unfreeze_is_refused_for_a_model_without_a_backbone(fold_runs, tmp_path):
    data, _, _ = fold_runs
    cfg = train.TrainConfig(data.replace("{fold}", "0"), str(tmp_path / "run"), model="So2Sat-ResNet11",
                            unfreeze=True, epochs=1, batch_size=4, bands="rgb", progress=False)
    with pytest.raises(UsageError, match="^--unfreeze: model So2Sat-ResNet11 has no backbone to fine-tune"):
        train.train(cfg)
    assert not os.path.exists(tmp_path / "run")  # checked before the run folder is made
