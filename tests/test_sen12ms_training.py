"""SEN12MS training: the segmentation mask target against the lc / dfc rasters, the masked loss, the U-Net,
and train.py + evaluate.py end to end for segmentation and multi-label (single-label: test_sen12ms.py)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from sklearn.metrics import cohen_kappa_score, confusion_matrix, jaccard_score

from models import training
from prep import cli, reader, tfrecord
from prep.datasets.sen12ms import command, raw, synthetic
from prep.datasets.spec import IGNORE_INDEX

SCENES = {("ROIs1158_spring", 63): 2, ("ROIs1158_spring", 1): 4, ("ROIs1868_summer", 5): 4,
          ("ROIs1970_fall", 8): 2}
# The simplified (DFC2020) scheme, typed here from its definition: IGBP 1-5 forests, 6-7 shrublands,
# 8-9 savannas, 10 grassland, 11 wetlands, 12 and 14 croplands, 13 urban, 15 snow/ice, 16 barren, 17 water.
DFC_OF_IGBP = {1: 0, 2: 0, 3: 0, 4: 0, 5: 0, 6: 1, 7: 1, 8: 2, 9: 2, 10: 3, 11: 4, 12: 5, 13: 6, 14: 5, 15: 7,
               16: 8, 17: 9}


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    root = tmp_path_factory.mktemp("sen12ms_seg") / "raw"
    synthetic.write_archive(str(root), SCENES, seed=7)
    synthetic.write_dfc2020(str(root), validation=2, test=2, seed=7)
    return root


def prepare(root, out, target) -> dict:
    return cli.write_plan(command.plan(str(root), target=target, shard_size_mb=10.0), str(out), workers=1)


@pytest.fixture(scope="module")
def masks(archive, tmp_path_factory):
    base = tmp_path_factory.mktemp("prepared")
    return {t: (base / t, prepare(archive, base / t, t)) for t in ("dfc10_mask", "igbp17_mask")}


def keys_in_order(out, manifest, split) -> list[tuple]:
    """The (season, scene, patch) of each record of ``split``, in the reader's (shard) order."""
    keys = []
    for sh in manifest["splits"][split]["shards"]:
        for r in tfrecord.read_records(Path(out) / sh["file"]):
            f = tf.train.Example.FromString(r).features.feature
            keys.append((f["meta/season"].bytes_list.value[0].decode(), int(f["meta/scene"].int64_list.value[0]),
                         int(f["meta/patch"].int64_list.value[0])))
    return keys


def raster(root, key, modality) -> np.ndarray:
    import rasterio

    with rasterio.open(os.path.join(root, raw.rel_path(key, modality, str(root)))) as src:
        return src.read()


def expected_mask(root, key, target) -> np.ndarray:
    """The class ids of one patch computed from its raw files: the IGBP layer, or DFC2020's dfc labels."""
    if target == "dfc10_mask" and key[0].startswith("ROIs0000"):
        dfc = raster(root, key, "dfc")[0].astype(np.int64)
        return np.where((dfc >= 1) & (dfc <= 10), dfc - 1, IGNORE_INDEX)
    igbp = raster(root, key, "lc")[0].astype(np.int64)
    if target == "igbp17_mask":
        return igbp - 1
    return np.vectorize(DFC_OF_IGBP.get)(igbp)


@pytest.mark.parametrize("target", ["dfc10_mask", "igbp17_mask"])
def test_mask_target_equals_the_lc_and_dfc_rasters(archive, masks, target):
    out, manifest = masks[target]
    assert manifest["task"] == "segmentation" and len(manifest["classes"]) == (10 if target == "dfc10_mask" else 17)
    seen = set()
    for split in manifest["splits"]:
        keys = keys_in_order(out, manifest, split)
        ys = [y.numpy() for _, y in reader.make_dataset(out, split, bands="rgb", batch_size=3)]
        y = np.concatenate(ys)
        assert y.dtype == np.int32 and y.shape == (len(keys), 256, 256)
        for k, m in zip(keys, y):
            np.testing.assert_array_equal(m, expected_mask(archive, k, target))
        seen |= set(np.unique(y).tolist())
    assert len(seen - {IGNORE_INDEX}) > 3
    # DFC2020's high-resolution labels hold ignored pixels (0 and 255); the IGBP layer has none
    assert (IGNORE_INDEX in seen) == (target == "dfc10_mask")


def test_augmented_masks_stay_on_their_pixels(masks):
    """With the IGBP layer itself as the image, the augmented mask must be its mapping, pixel by pixel."""
    out, manifest = masks["igbp17_mask"]
    ds = reader.make_dataset(out, "train", bands="IGBP", normalize=None, batch_size=4, training=True,
                             seed=3, deterministic=True, augment="dihedral", jit_compile=False)
    moved = 0
    for x, y in ds.take(2):
        codes = x["image"].numpy()[..., 0].astype(np.int64)
        np.testing.assert_array_equal(y.numpy(), codes - 1)
        moved += 1
    assert moved == 2
    plain = np.concatenate([y.numpy() for _, y in reader.make_dataset(out, "train", bands="IGBP", normalize=None,
                                                                          batch_size=4)])
    # the augmentation did move some masks (else the check above proves nothing)
    aug = next(iter(ds))[1].numpy()
    assert any(not any(np.array_equal(a, p) for p in plain) for a in aug)


def test_loss_leaves_out_ignored_pixels():
    rng = np.random.default_rng(0)
    c = 5
    y = rng.integers(0, c, (3, 8, 8)).astype(np.int32)
    y[0, :4] = IGNORE_INDEX
    y[2] = IGNORE_INDEX  # an image without a valid pixel
    logits = rng.normal(size=(3, 8, 8, c)).astype(np.float32)
    loss = training.make_loss("segmentation", c)
    got = loss(tf.constant(y), tf.constant(logits)).numpy()
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    for i in range(3):
        valid = y[i] != IGNORE_INDEX
        want = -np.mean(np.take_along_axis(logp[i], np.maximum(y[i], 0)[..., None], -1)[..., 0][valid]) \
            if valid.any() else 0.0
        assert got[i] == pytest.approx(want, rel=1e-5)
    # whatever the logits at ignored pixels, the loss stays the same
    logits2 = logits.copy()
    logits2[y == IGNORE_INDEX] = 50.0 * rng.normal(size=(int((y == IGNORE_INDEX).sum()), c))
    np.testing.assert_allclose(loss(tf.constant(y), tf.constant(logits2)).numpy(), got, rtol=1e-6)
    # class weights scale each pixel by its class
    w = np.arange(1, c + 1, dtype=np.float32)
    weighted = training.make_loss("segmentation", c, class_weights=w)(tf.constant(y), tf.constant(logits)).numpy()
    valid = y[1] != IGNORE_INDEX
    nll = -np.take_along_axis(logp[1], y[1][..., None], -1)[..., 0]
    assert weighted[1] == pytest.approx((nll * w[y[1]])[valid].sum() / valid.sum(), rel=1e-5)


def test_pixel_counts_and_confusion_equal_sklearn():
    rng = np.random.default_rng(1)
    c = 4
    y = rng.integers(0, c, (2, 16, 16)).astype(np.int32)
    y[:, :3] = IGNORE_INDEX
    logits = rng.normal(size=(2, 16, 16, c)).astype(np.float32)
    pred = logits.argmax(-1)
    valid = y != IGNORE_INDEX
    cm = training.make_confusion(c)(tf.constant(y), tf.constant(logits)).numpy()
    np.testing.assert_array_equal(cm, confusion_matrix(y[valid], pred[valid], labels=range(c)))
    right, wrong, _ = (float(v) for v in training.make_counts("segmentation")(tf.constant(y), tf.constant(logits)))
    assert right == (pred[valid] == y[valid]).sum() and right + wrong == valid.sum()


@pytest.mark.parametrize("size,bands", [(64, 2), (128, 13)])
def test_unet_gives_per_pixel_logits_at_the_input_size(size, bands):
    import models

    m = models.build("UNet-Tiny", {"image": (size, size, bands)}, 10, "segmentation")
    y = m({"image": np.zeros((2, size, size, bands), np.float32)})
    assert tuple(y.shape) == (2, size, size, 10) and y.dtype == "float32"
    assert models.get("UNet-ResNet50").default_task == "segmentation"
    with pytest.raises(ValueError, match="multiple of 32"):
        models.build("UNet-Tiny", {"image": (80, 80, bands)}, 10, "segmentation")
    with pytest.raises(ValueError, match="segmentation"):
        models.build("UNet-Tiny", {"image": (64, 64, bands)}, 10, "multi_label")


def test_segmentation_trains_and_evaluates(archive, masks, tmp_path):
    import evaluate
    import models
    import train

    data, _ = masks["dfc10_mask"]
    cfg = train.TrainConfig(str(data), str(tmp_path / "run"), model="UNet-Tiny", epochs=2, batch_size=4,
                            evaluate_test=True, test_split="dfc2020_val", export_saved_model=False, progress=False,
                            seed=1)
    summary = train.train(cfg)
    hist = summary["history"]
    assert [r["epoch"] for r in hist] == [1, 2] and all(0 <= r["val_miou"] <= 1 for r in hist)
    assert summary["best_metric"] == "miou" and summary["best_val_miou"] == max(r["val_miou"] for r in hist)
    assert "val_miou" in (tmp_path / "run" / "history.csv").read_text().splitlines()[0]
    ev = tmp_path / "run" / "eval_dfc2020_val"
    result = json.loads((ev / "eval_result.json").read_text())
    assert {"miou", "overall_accuracy", "cohen_kappa"} <= set(result)
    for f in ("report.md", "per_class_iou.png", "per_class_metrics.csv", "confusion_matrix.csv"):
        assert (ev / f).exists(), f
    assert "majority" in (ev / "report.md").read_text() or "every pixel" in (ev / "report.md").read_text()

    # the report's mIoU and OA, recomputed: best.keras run by hand against the dfc rasters, then sklearn
    manifest = reader.load_manifest(str(data))
    model = models.load_model(tmp_path / "run" / "best.keras")
    config = json.loads((tmp_path / "run" / "input_config.json").read_text())
    ds = reader.make_dataset(data, "dfc2020_val", bands=config["bands"], normalize=evaluate.input_settings(
        config, {})["normalize"], batch_size=2)
    preds = np.concatenate([model(x, training=False).numpy().argmax(-1) for x, _ in ds])
    truth = np.stack([expected_mask(archive, k, "dfc10_mask") for k in keys_in_order(data, manifest, "dfc2020_val")])
    valid = truth != IGNORE_INDEX
    t, p = truth[valid], preds[valid]
    labels = sorted(set(t.tolist()) | set(p.tolist()))
    assert result["miou"] == pytest.approx(jaccard_score(t, p, labels=labels, average="macro"), abs=1e-6)
    assert result["overall_accuracy"] == pytest.approx((t == p).mean(), abs=1e-9)
    assert result["cohen_kappa"] == pytest.approx(cohen_kappa_score(t, p), abs=1e-6)
    per_class = jaccard_score(t, p, labels=labels, average=None)
    for j, v in zip(labels, per_class):
        assert result[f"iou_class{j}"] == pytest.approx(v, abs=1e-9)
    assert not any(f"iou_class{j}" in result for j in set(range(10)) - set(labels))
    details = json.loads((ev / "eval_details.json").read_text())
    assert details["pixels"] == valid.sum()
    top = np.bincount(t, minlength=10).argmax()
    assert details["best_constant_predictor"]["pixel_accuracy"] == pytest.approx((t == top).mean())

    # masks are evaluated with --model only; a classification model on mask data is refused, before the run
    # folder is made
    from prep.errors import InputError, UsageError

    with pytest.raises(UsageError, match="segmentation"):
        evaluate.evaluate_predictions(str(tmp_path / "none.npz"), str(tmp_path / "e"), task="segmentation")

    with pytest.raises(InputError, match="segmentation"):
        train.train(train.TrainConfig(str(data), str(tmp_path / "bad"), model="So2Sat-ResNet11", batch_size=4,
                                      progress=False))
    assert not (tmp_path / "bad").exists()

    # the segmentation model on scene-label records of the same classes: refused before anything is written
    prepare(archive, tmp_path / "multi", "dfc10_multi")
    with pytest.raises(InputError, match="trained for segmentation.*multi_label"):
        evaluate.evaluate_model(str(tmp_path / "run"), str(tmp_path / "ev_multi"), data_dir=str(tmp_path / "multi"),
                                split="test", echo=None)
    assert not (tmp_path / "ev_multi").exists()


def test_multi_label_trains_and_evaluates(archive, tmp_path):
    """The upstream set-up (Adam 1e-3, weight decay 1e-5, upstream z-scores, VV VH), on a small model."""
    import evaluate
    import train

    data = tmp_path / "multi"
    prepare(archive, data, "dfc10_multi")
    cfg = train.TrainConfig(str(data), str(tmp_path / "run"), model="So2Sat-ResNet11", bands="s1",
                            per_resolution=False, epochs=1, batch_size=4, optimizer="adam", learning_rate=1e-3,
                            weight_decay=1e-5, normalize="upstream", augment=None, evaluate_test=False,
                            export_saved_model=False, progress=False)
    summary = train.train(cfg)
    assert summary["best_metric"] == "micro_f1" and summary["best_val_micro_f1"] == summary["history"][0]["val_micro_f1"]
    out = evaluate.evaluate_model(str(tmp_path / "run"), str(tmp_path / "eval"), split="test", echo=None)
    assert out["task"] == "multi_label"
    result = json.loads((tmp_path / "eval" / "eval_result.json").read_text())
    assert {"micro_f1_score", "macro_f1_score_class_avg", "macro_average_precision"} <= set(result)
    config = json.loads((tmp_path / "run" / "input_config.json").read_text())
    assert config["task"] == "multi_label" and config["bands"] == ["VV", "VH"] and len(config["classes"]) == 10
    # the scores saved are the model's sigmoid outputs on the test split, the targets the records' multi-hot labels
    saved = np.load(tmp_path / "eval" / "predictions.npz")
    assert saved["scores"].shape == saved["targets"].shape == (2, 10)
    from sklearn.metrics import f1_score

    assert result["micro_f1_score"] == pytest.approx(
        f1_score(saved["targets"], saved["scores"] >= 0.5, average="micro", zero_division=0))

    # the reverse of a classification model on masks: a U-Net on scene labels is refused as bad input
    # (one line, no traceback), before the run folder is made
    from prep.errors import InputError

    with pytest.raises(InputError, match="per-pixel scores; the data's task is multi_label"):
        train.train(train.TrainConfig(str(data), str(tmp_path / "bad"), model="UNet-Tiny", batch_size=4,
                                      progress=False))
    assert not (tmp_path / "bad").exists()


def test_segmentation_flagfiles():
    import re

    import models
    from prep.datasets.sen12ms import spec as sp

    defined = set(re.findall(r'DEFINE_\w+\(\s*"(\w+)"', (Path(__file__).resolve().parents[1] / "train.py").read_text()))
    files = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*_SEN12MS-seg_*.flags"))
    assert len(files) == 2
    for f in files:
        values = dict(line[2:].split("=", 1) if "=" in line else (line[2:], "") for line in f.read_text().splitlines()
                      if line.startswith("--"))
        assert all(n in defined or (n.startswith("no") and n[2:] in defined) for n in values), f.name
        assert models.get(values["model"]).default_task == "segmentation"
        assert len(sp.SPEC.resolve_bands(values["bands"])) in (10, 12)
        assert (values["batch_size"], values["learning_rate"], values["weight_decay"], values["optimizer"]) == (
            "64", "0.001", "0.00001", "adam")


def test_segmentation_folds_summary():
    from evaluation import folds
    from evaluation.segmentation_report import segmentation_result

    rng = np.random.default_rng(4)
    results = []
    for _ in range(2):
        t = rng.integers(0, 3, 400)
        p = np.where(rng.random(400) < 0.7, t, rng.integers(0, 3, 400))
        results.append(segmentation_result(confusion_matrix(t, p, labels=range(3)))[0])
        assert results[-1]["miou"] == pytest.approx(jaccard_score(t, p, average="macro"))
    s = folds.summarize(results, ["a", "b", "c"], ["f0", "f1"], folds.SEGMENTATION_METRICS)
    assert s["metrics"]["miou"]["mean"] == pytest.approx(np.mean([r["miou"] for r in results]))
    assert set(s["per_class_f1"]) == {"a", "b", "c"} and "mIoU" in folds.console_table(s)
