"""reBEN segmentation: the reference map as the reader's per-pixel target (``--target mask``).

The expected masks are computed here from the raw CLC reference-map GeoTIFFs with a CLC code ->
19-class name table typed from the nomenclature (not the package's), in both class orders; then
train.py (UNet-Tiny, padded to 128 x 128) and evaluate.py run end to end and the report's mIoU is
recomputed with sklearn from the saved best model.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from sklearn.metrics import jaccard_score

from prep import cli, reader, tfrecord, tiff
from prep.datasets.bigearthnet import spec as ben
from prep.datasets.reben import command, raw, synthetic
from prep.datasets.spec import IGNORE_INDEX
from prep.errors import UsageError

REPO = Path(__file__).resolve().parents[1]
# CLC 2018 Level-3 code -> BigEarthNet 19-class name (the 19-class nomenclature's grouping); codes not
# listed (roads 122, ports, airports, mines, dumps, construction, urban green, sport, bare rock, burnt
# areas, glaciers 335, intertidal flats) have no 19-class target.
CLC_19_NAME = {
    111: "Urban fabric", 112: "Urban fabric", 121: "Industrial or commercial units",
    211: "Arable land", 212: "Arable land", 213: "Arable land",
    221: "Permanent crops", 222: "Permanent crops", 223: "Permanent crops", 241: "Permanent crops",
    231: "Pastures", 242: "Complex cultivation patterns",
    243: "Land principally occupied by agriculture, with significant areas of natural vegetation",
    244: "Agro-forestry areas", 311: "Broad-leaved forest", 312: "Coniferous forest", 313: "Mixed forest",
    321: "Natural grassland and sparsely vegetated areas", 333: "Natural grassland and sparsely vegetated areas",
    322: "Moors, heathland and sclerophyllous vegetation", 323: "Moors, heathland and sclerophyllous vegetation",
    324: "Transitional woodland, shrub", 331: "Beaches, dunes, sands",
    411: "Inland wetlands", 412: "Inland wetlands", 421: "Coastal wetlands", 422: "Coastal wetlands",
    511: "Inland waters", 512: "Inland waters", 521: "Marine waters", 522: "Marine waters", 523: "Marine waters",
}


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("reben_seg") / "raw"
    synthetic.generate_reben(root, 16, seed=5, num_snow=0, num_cloud=0, split_fractions=(0.5, 0.25, 0.25))
    return root


@pytest.fixture(scope="module")
def prepared(archive, tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("reben_seg_out")
    out = {}
    for order in ("nomenclature", "alphabetical"):
        cli.write_plan(command.plan(str(archive), reference_maps=True, class_order=order, target="mask",
                                    shard_size_mb=50), str(base / order), workers=1)
        out[order] = base / order
    return out


def patch_ids_in_order(out: Path, manifest, split: str) -> list[str]:
    """The patch id of each record of ``split`` in shard order (the reader's order without shuffling)."""
    ids = []
    for sh in manifest["splits"][split]["shards"]:
        for r in tfrecord.read_records(out / sh["file"]):
            ids.append(tf.train.Example.FromString(r).features.feature["patch_id"].bytes_list.value[0].decode())
    return ids


def expected_mask(archive: Path, patch_id: str, classes: list[str]) -> np.ndarray:
    """Per-pixel class ids of a patch from its raw reference map: the code's 19-class name's index in ``classes``."""
    codes = tiff.read_band(raw.reference_map_path(str(archive), patch_id))
    ids = {c: classes.index(n) for c, n in CLC_19_NAME.items()}
    return np.vectorize(lambda c: ids.get(int(c), IGNORE_INDEX))(codes).astype(np.int64)


@pytest.mark.parametrize("order", ["nomenclature", "alphabetical"])
def test_the_mask_target_is_the_reference_map_mapped_per_pixel(archive, prepared, order):
    out = prepared[order]
    manifest = reader.load_manifest(str(out))
    assert manifest["task"] == "segmentation" and manifest["schema"] == "s2_refmap_mask"
    classes = manifest["classes"]
    assert set(classes) == set(CLC_19_NAME.values()) and len(classes) == 19
    assert classes == (sorted(ben.LABELS_19) if order == "alphabetical" else list(ben.LABELS_19))
    seen = set()
    for split in ("train", "test"):
        ids = patch_ids_in_order(out, manifest, split)
        ds = reader.make_dataset(out, split, bands="rgb", normalize=False, batch_size=3)
        got = np.concatenate([y.numpy() for _, y in ds])
        assert got.shape == (len(ids), 120, 120) and got.dtype == np.int32
        want = np.stack([expected_mask(archive, pid, classes) for pid in ids])
        np.testing.assert_array_equal(got, want)
        seen |= set(np.unique(got).tolist())
        # the manifest's class counts: the patches holding a pixel of each class
        counts = manifest["splits"][split]["class_counts"]
        per_class = {classes[j]: int(sum((m == j).any() for m in want)) for j in range(19)}
        assert {k: v for k, v in counts.items() if v} == {k: v for k, v in per_class.items() if v}
    assert IGNORE_INDEX in seen and len(seen - {IGNORE_INDEX}) > 3  # roads/glaciers ignored; several classes


def test_target_mask_without_reference_maps_is_a_usage_error(archive, tmp_path):
    with pytest.raises(UsageError, match="--reference_maps"):
        command.plan(str(archive), target="mask")
    r = subprocess.run([sys.executable, "-m", "prep", "reben", "-r", str(archive), "-o", str(tmp_path / "o"),
                        "--target", "mask"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert r.returncode == 2, r.stderr
    assert "--reference_maps" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "o").exists()


def test_segmentation_trains_and_evaluates_on_reference_maps(archive, prepared, tmp_path):
    import evaluate
    import models
    import train

    data = prepared["alphabetical"]
    cfg = train.TrainConfig(str(data), str(tmp_path / "run"), model="UNet-Tiny", bands="10m", epochs=1,
                            batch_size=4, model_options={"pad_to_stride": True}, evaluate_test=False,
                            export_saved_model=False, progress=False, seed=1)
    summary = train.train(cfg)
    assert summary["best_metric"] == "miou" and 0 <= summary["history"][0]["val_miou"] <= 1
    res = evaluate.evaluate_model(str(tmp_path / "run"), str(tmp_path / "eval"), split="test", echo=None)
    assert res["task"] == "segmentation"
    result = json.loads((tmp_path / "eval" / "eval_result.json").read_text())
    assert "miou" in result and "mIoU" in (tmp_path / "eval" / "report.md").read_text()

    # the report's mIoU, recomputed: the best model run by hand against the raw reference maps, then sklearn
    manifest = reader.load_manifest(str(data))
    model = models.load_model(tmp_path / "run" / "best.keras")
    config = json.loads((tmp_path / "run" / "input_config.json").read_text())
    ds = reader.make_dataset(data, "test", bands=config["bands"],
                             normalize=evaluate.input_settings(config, {})["normalize"], batch_size=2)
    preds = np.concatenate([model(x, training=False).numpy().argmax(-1) for x, _ in ds])
    assert preds.shape[1:] == (120, 120)
    truth = np.stack([expected_mask(archive, pid, manifest["classes"])
                      for pid in patch_ids_in_order(data, manifest, "test")])
    valid = truth != IGNORE_INDEX
    t, p = truth[valid], preds[valid]
    labels = sorted(set(t.tolist()) | set(p.tolist()))
    assert result["miou"] == pytest.approx(jaccard_score(t, p, labels=labels, average="macro"), abs=1e-6)
    assert result["overall_accuracy"] == pytest.approx((t == p).mean(), abs=1e-9)


def test_unet_on_120_pixels_without_padding_is_bad_input(prepared, tmp_path):
    """A U-Net on the 120 x 120 maps without pad_to_stride: one line naming the option, no traceback, no run folder."""
    import train
    from prep.errors import InputError

    cfg = train.TrainConfig(str(prepared["alphabetical"]), str(tmp_path / "run"), model="UNet-Tiny", bands="10m",
                            epochs=1, batch_size=4, evaluate_test=False, export_saved_model=False, progress=False)
    with pytest.raises(InputError, match="not a multiple of 32.*pad_to_stride=true") as e:
        train.train(cfg)
    assert e.value.path == "--model UNet-Tiny"
    assert not (tmp_path / "run").exists()
