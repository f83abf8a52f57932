"""BigEarthNet-S1 and BigEarthNet-MM (S1 + S2 pairs): the six real S1 twins, JSON spellings, pairing,
exclusion through the S2 twin, label agreement, VV/VH channels, upstream statistics, MM models.

The contract (synthetic archives, Beam, TFDS, train, evaluate) is tests/test_contract.py; here the
dataset-specific behaviour, on the real example patches of the bigearthnet-common wheel where it can.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio

from prep import tfrecord
from prep.datasets.bigearthnet import spec as ben
from prep.datasets.bigearthnet_mm import command as mm_command
from prep.datasets.bigearthnet_s1 import command as s1_command
from prep.datasets.bigearthnet_s1 import raw as s1raw
from prep.datasets.bigearthnet_s1 import synthetic as s1synth
from prep.shards import PrepError
from splits import bigearthnet_s1 as pairing_lists
from tests.conftest import extract_examples

REPO = Path(__file__).resolve().parents[1]
SNOW_S2 = "S2B_MSIL2A_20180204T94161_57_38"  # the one example on the official seasonal-snow list
SNOW_S1 = "S1A_IW_GRDH_1SDV_20180204T043253_35VPK_57_38"
# BigEarthNet-S1 published statistics (dB), re-typed here: the test does not read them from the package
VV_MEAN, VV_STD = -12.619993741972035, 5.115911777546365
VH_MEAN, VH_STD = -19.29044597721542, 5.464428464912864


@pytest.fixture(scope="module")
def examples(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(S1 root, S2 root, split file listing the six S2 names) of the wheel's real example patches."""
    base = tmp_path_factory.mktemp("ben_s1_examples")
    s1 = extract_examples(base / "s1", "S1")
    s2 = extract_examples(base / "s2", "S2")
    split = base / "train.csv"
    split.write_text("".join(f"{p.name}\n" for p in sorted(s2.iterdir())))
    return s1, s2, split


def records(out: Path) -> dict[str, dict]:
    """patch key -> parsed features (pure-Python parser) of every record of a prepared folder."""
    found = {}
    for shard in sorted(out.glob("*.tfrecord")):
        for rec in tfrecord.read_records(shard):
            f = {k: v.values for k, v in tfrecord.parse_example(rec).items()}
            found[f["patch_name"][0].decode()] = f
    return found


def read_tif(path: Path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read(1)


def s2_labels_19(s2_root: Path, s2: str) -> np.ndarray:
    """The 19-class multi-hot of an S2 JSON, computed here from the nomenclature's conversion table."""
    names = json.loads((s2_root / s2 / f"{s2}_labels_metadata.json").read_text())["labels"]
    hot = np.zeros(19, np.int64)
    for j, sources in enumerate(ben.CONVERSION_19):
        hot[j] = any(ben.LABELS_43[i] in names for i in sources)
    return hot


# --- the six real S1 twins ------------------------------------------------------------------------

def test_the_six_real_s1_twins_prepare_with_their_s2_twins_labels(examples, tmp_path):
    s1_root, s2_root, split = examples
    out = tmp_path / "s1"
    m = s1_command.prepare(str(s1_root), str(out), split_paths=[str(split)])  # the wheel's pairing table
    assert m["flags"]["pairing"] == "s1_s2_name_country_season.csv.bz2"
    assert m["splits"]["train"]["written"] == 5 and m["splits"]["train"]["excluded"] == 1
    (excluded,) = m["excluded"]
    assert excluded["key"] == SNOW_S1 and "seasonal snow" in excluded["reason"] and SNOW_S2 in excluded["reason"]
    got = records(out)
    assert len(got) == 5
    for s1, f in got.items():
        s2 = f["patch_name_s2"][0].decode()
        meta = json.loads((s1_root / s1 / f"{s1}_labels_metadata.json").read_text())
        assert s2 == meta["corresponding_s2_patch"]
        np.testing.assert_array_equal(f["labels19/multi_hot"], s2_labels_19(s2_root, s2))
        vv = np.frombuffer(f["bands/VV"][0], "<f4").reshape(120, 120)
        np.testing.assert_array_equal(vv, read_tif(s1_root / s1 / f"{s1}_VV.tif"))
        # the S1 spellings recorded in the S2 fields: lly as lry, acquisition_time as acquisition_date
        c = meta["coordinates"]
        assert list(f["meta/coordinates"]) == [c["ulx"], c["uly"], c["lrx"], c["lly"]]
        assert f["meta/acquisition_date"][0].decode() == meta["acquisition_time"].replace("T", " ")
        assert f["meta/tile_source"][0].decode() == meta["scene_source"]


def test_the_six_real_pairs_prepare_as_mm_records_with_the_upstream_keys(examples, tmp_path):
    s1_root, s2_root, split = examples
    out = tmp_path / "mm"
    m = mm_command.plan(str(s1_root), str(s2_root), [str(split)], schema="upstream")
    from prep import cli

    manifest = cli.write_plan(m, str(out))
    assert manifest["splits"]["train"]["written"] == 5
    got = records(out)
    for s2, f in got.items():
        s1 = f["patch_name_s1"][0].decode()
        assert f["patch_name_s2"][0].decode() == s2
        for band in ("VV", "VH"):  # FloatList 14,400, row-major
            assert f[band].dtype == np.float32 and f[band].shape == (14400,)
            np.testing.assert_array_equal(f[band].reshape(120, 120), read_tif(s1_root / s1 / f"{s1}_{band}.tif"))
        np.testing.assert_array_equal(f["B02"].reshape(120, 120), read_tif(s2_root / s2 / f"{s2}_B02.tif"))
        assert f["B01"].shape == (400,) and f["B05"].shape == (3600,)
        np.testing.assert_array_equal(f["BigEarthNet-19_labels_multi_hot"], s2_labels_19(s2_root, s2))


# --- JSON spellings and bad input --------------------------------------------------------------------

def copy_patch(src_root: Path, name: str, dst_root: Path) -> Path:
    shutil.copytree(src_root / name, dst_root / name)
    return dst_root / name / f"{name}_labels_metadata.json"


def test_both_spellings_of_time_and_box_read_into_the_same_fields(examples, tmp_path):
    s1_root, _, _ = examples
    name = sorted(p.name for p in s1_root.iterdir())[0]
    path = copy_patch(s1_root, name, tmp_path)
    s1_style = s1raw.read_patch(str(tmp_path), name)
    meta = json.loads(path.read_text())
    meta["acquisition_date"] = meta.pop("acquisition_time").replace("T", " ")
    meta["coordinates"]["lry"] = meta["coordinates"].pop("lly")
    path.write_text(json.dumps(meta))
    s2_style = s1raw.read_patch(str(tmp_path), name)
    assert s1_style["coordinates"] == s2_style["coordinates"] == [
        meta["coordinates"][k] for k in ("ulx", "uly", "lrx", "lry")]
    assert s1_style["acquisition_date"] == s2_style["acquisition_date"] == meta["acquisition_date"]
    assert len(s1_style["acquisition_date"]) == 19 and s1_style["acquisition_date"][10] == " "


def test_a_json_without_labels_is_an_error_naming_the_file(examples, tmp_path):
    s1_root, s2_root, split = examples
    root = tmp_path / "s1"
    shutil.copytree(s1_root, root)
    name = sorted(p.name for p in root.iterdir())[0]
    path = root / name / f"{name}_labels_metadata.json"
    meta = json.loads(path.read_text())
    del meta["labels"]
    path.write_text(json.dumps(meta))
    r = subprocess.run([sys.executable, "-m", "prep", "bigearthnet_s1", "-r", str(root), "-n", str(split), "-o",
                        str(tmp_path / "out"), "--noprogress", "--workers", "1"],
                       capture_output=True, text=True, timeout=300, cwd=REPO)
    assert r.returncode == 1 and r.stderr.startswith("error: "), r.stderr
    assert "Traceback" not in r.stderr and str(path) in r.stderr and "'labels'" in r.stderr
    # with --on_error=skip it is listed with the reason, and the counts reconcile
    m = s1_command.prepare(str(root), str(tmp_path / "skip"), split_paths=[str(split)], on_error="skip")
    t = m["splits"]["train"]
    assert (t["listed"], t["written"], t["excluded"], t["skipped"]) == (6, 4, 1, 1)


def test_a_malformed_pairing_table_is_an_error_naming_the_file(tmp_path):
    bad = tmp_path / "pairs.csv"
    bad.write_text("a,b\nx,y\n")
    with pytest.raises(Exception, match=r"pairs.csv: no header with s1_name and s2_name"):
        pairing_lists.read_pairing(bad)
    bad.write_text("s1_name,s2_name,country,season\nS1,S2a,X,Y\nS1,S2b,X,Y\n")
    with pytest.raises(Exception, match=r"line 3: S1 is paired twice"):
        pairing_lists.read_pairing(bad)


def test_the_wheel_pairing_table_pairs_the_real_examples(examples):
    s1_root, _, _ = examples
    table = pairing_lists.official_pairing()
    assert len(table) == 590_326
    for p in s1_root.iterdir():
        meta = json.loads((p / f"{p.name}_labels_metadata.json").read_text())
        assert table.s1_to_s2[p.name] == meta["corresponding_s2_patch"]
        assert table.s2_to_s1[meta["corresponding_s2_patch"]] == p.name


# --- synthetic archives: exclusion through the twin, VV/VH channels, disagreement ---------------------

@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> tuple[Path, list[tuple[str, str]]]:
    """A synthetic MM archive of 24 pairs (one snow, one cloud, one no-target)."""
    base = tmp_path_factory.mktemp("ben_mm_synthetic")
    pairs = s1synth.generate(base, 24, seed=3, with_s2=True, num_snow=1, num_cloud=1, num_no_target=1)
    return base, pairs


def test_an_s1_patch_is_excluded_when_its_s2_twin_is(synthetic, tmp_path):
    base, pairs = synthetic
    s1_root = base / s1synth.S1_FOLDER
    twin = dict((s2, s1) for s1, s2 in pairs)
    snow = (base / s1synth.S2_FOLDER / "patches_with_seasonal_snow.csv").read_text().split()
    cloud = (base / s1synth.S2_FOLDER / "patches_with_cloud_and_shadow.csv").read_text().split()
    extra = tmp_path / "mine.csv"  # a user list of S2 names leaves out their S1 twins too
    user = [s2 for _, s2 in pairs if s2 not in snow + cloud][:2]
    extra.write_text("".join(f"{n}\n" for n in user))
    m = s1_command.prepare(str(s1_root), str(tmp_path / "out"), exclusion_lists=[str(extra)])
    excluded = {e["key"]: e["reason"] for e in m["excluded"]}
    assert excluded[twin[snow[0]]] == f"listed in patches_with_seasonal_snow.csv (S2 twin {snow[0]})"
    assert excluded[twin[cloud[0]]] == f"listed in patches_with_cloud_and_shadow.csv (S2 twin {cloud[0]})"
    for s2 in user:
        assert excluded[twin[s2]] == f"listed in mine.csv (S2 twin {s2})"
    written = set(records(tmp_path / "out"))
    assert not written & set(excluded) and len(written) + len(excluded) == 24


def test_vv_and_vh_each_land_in_their_own_channel(synthetic, tmp_path):
    """A peer's reader once parsed VH from the VV feature: VV != VH everywhere, and each is found where asked."""
    from prep import reader

    base, pairs = synthetic
    s1_root, s2_root = base / s1synth.S1_FOLDER, base / s1synth.S2_FOLDER
    for s1, _ in pairs:
        assert (read_tif(s1_root / s1 / f"{s1}_VV.tif") != read_tif(s1_root / s1 / f"{s1}_VH.tif")).all()
    s1_of = dict((s2, s1) for s1, s2 in pairs)
    for schema in ("compact", "upstream"):
        out = tmp_path / f"s1_{schema}"
        s1_command.prepare(str(s1_root), str(out), schema=schema)
        names = [f["patch_name"][0].decode() for f in records(out).values()]
        x, _ = next(iter(reader.make_dataset(out, "train", bands="VH,VV", batch_size=64, normalize=None)))
        image = x["image"].numpy()
        train = [n for n in names if n in {s1_of[s] for s in (s2_root / "train.csv").read_text().split()}]
        order = [f["patch_name"][0].decode() for f in records_in_split(out, "train")]
        assert sorted(order) == sorted(train) and len(order) == image.shape[0]
        for i, s1 in enumerate(order):
            np.testing.assert_array_equal(image[i, ..., 0], read_tif(s1_root / s1 / f"{s1}_VH.tif"))
            np.testing.assert_array_equal(image[i, ..., 1], read_tif(s1_root / s1 / f"{s1}_VV.tif"))
        # upstream normalisation: the published BigEarthNet-S1 mean and std per band name
        x, _ = next(iter(reader.make_dataset(out, "train", bands="s1", batch_size=64, normalize="upstream")))
        vv = read_tif(s1_root / order[0] / f"{order[0]}_VV.tif")
        vh = read_tif(s1_root / order[0] / f"{order[0]}_VH.tif")
        np.testing.assert_allclose(x["image"].numpy()[0, ..., 0], (vv - VV_MEAN) / VV_STD, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(x["image"].numpy()[0, ..., 1], (vh - VH_MEAN) / VH_STD, rtol=1e-5, atol=1e-5)
    # MM: the mm input is the 10 S2 bands (B04 first) then VV, VH
    out = tmp_path / "mm"
    from prep import cli

    cli.write_plan(mm_command.plan(str(s1_root), str(s2_root)), str(out))
    x, _ = next(iter(reader.make_dataset(out, "train", bands="mm", batch_size=64, normalize=None)))
    image = x["image"].numpy()
    assert image.shape[-1] == 12
    for i, f in enumerate(records_in_split(out, "train")):
        s1, s2 = f["patch_name_s1"][0].decode(), f["patch_name_s2"][0].decode()
        np.testing.assert_array_equal(image[i, ..., 0], read_tif(s2_root / s2 / f"{s2}_B04.tif"))
        np.testing.assert_array_equal(image[i, ..., 10], read_tif(s1_root / s1 / f"{s1}_VV.tif"))
        np.testing.assert_array_equal(image[i, ..., 11], read_tif(s1_root / s1 / f"{s1}_VH.tif"))


def records_in_split(out: Path, split: str) -> list[dict]:
    """The parsed records of one split, in record order."""
    found = []
    for shard in sorted(out.glob(f"{split}-*.tfrecord")):
        for rec in tfrecord.read_records(shard):
            found.append({k: v.values for k, v in tfrecord.parse_example(rec).items()})
    return found


def test_s1_labels_that_disagree_with_the_s2_twin_are_reported(synthetic, tmp_path):
    base, pairs = synthetic
    s1_root = tmp_path / "s1"
    shutil.copytree(base / s1synth.S1_FOLDER, s1_root)
    s2_root = base / s1synth.S2_FOLDER
    train = (s2_root / "train.csv").read_text().split()
    s1, s2 = next((a, b) for a, b in pairs if b == train[0])
    path = s1_root / s1 / f"{s1}_labels_metadata.json"
    meta = json.loads(path.read_text())
    added = next(n for n in ben.LABELS_43 if n not in meta["labels"])
    meta["labels"].append(added)
    path.write_text(json.dumps(meta))
    with pytest.raises(PrepError, match="the S1 labels disagree with the S2 twin's"):
        cli_prepare_mm(s1_root, s2_root, tmp_path / "fail", "fail")
    m = cli_prepare_mm(s1_root, s2_root, tmp_path / "skip", "skip")
    t = m["splits"]["train"]
    assert t["skipped"] == 1 and t["listed"] == t["written"] + t["excluded"] + t["skipped"]
    (entry,) = m["skipped"]
    assert entry["key"] == s2 and str(path) in entry["reason"] and repr([added]) in entry["reason"]
    assert s2 not in records(tmp_path / "skip")


def cli_prepare_mm(s1_root: Path, s2_root: Path, out: Path, on_error: str) -> dict:
    from prep import cli

    return cli.write_plan(mm_command.plan(str(s1_root), str(s2_root), on_error=on_error), str(out))


# --- models --------------------------------------------------------------------------------------

def test_the_mm_configurations_build_and_their_flag_files_carry_the_upstream_values():
    from absl import flags

    import models
    import train
    from models import training
    from prep import datasets
    from tests.conftest import REFERENCE, command_flags

    mm = datasets.get("bigearthnet_mm_19")
    expected = {"ResNet50": (500, 600), "ResNet101": (500, 600), "ResNet152": (256, 300), "VGG16": (1000, 300),
                "VGG19": (1000, 300)}  # model: (batch size, checkpoint every n steps)
    with command_flags(train):
        for model, (batch, every) in expected.items():
            assert training.default_inputs(model, mm) == ("mm", False)
            path = REPO / "configs" / f"{model}_BigEarthNetMM-19.flags"
            flags.FLAGS.unparse_flags()
            try:
                flags.FLAGS(["train.py", f"--flagfile={path}", "--data_dir=d", "--out_dir=r"])
                cfg = train.config_from_flags()
            finally:
                flags.FLAGS.unparse_flags()
            assert (cfg.model, cfg.batch_size, cfg.learning_rate, cfg.epochs, cfg.seed) == (model, batch, 1e-3, 100, 42)
            assert cfg.bands == "mm" and not cfg.per_resolution and cfg.normalize == "upstream"
            assert cfg.checkpoint_every_steps == every and cfg.shuffle_buffer == 130000
            ref = REFERENCE / "bigearthnet" / "configs" / f"{model}_BigEarthNetMM-19_labels.json"
            if ref.exists():  # the upstream MM configuration itself, when the reference folder is present
                up = json.loads(ref.read_text())
                assert up["modality"] == "MM" and (up["batch_size"], up["learning_rate"], up["nb_epoch"],
                                                   up["save_checkpoint_per_iteration"]) == (batch, 1e-3, 100, every)
    assert mm.resolve_bands("mm") == ("B04", "B03", "B02", "B08", "B05", "B06", "B07", "B8A", "B11", "B12",
                                           "VV", "VH")
    for model in ("ResNet50", "VGG16"):  # a first conv taking the 12 channels, 19 logits
        net = models.build(model, {"image": (32, 32, 12)}, 19)
        assert net.output_shape == (None, 19)
        first = next(w for w in net.weights if len(w.shape) == 4)
        assert tuple(first.shape)[2] == 12, (model, first.shape)


def test_the_tfds_builders_deliver_the_geotiff_pixels(synthetic, tmp_path):
    import tensorflow_datasets as tfds

    from prep.datasets.bigearthnet_mm.tfds_builder import BigearthnetMM19
    from prep.datasets.bigearthnet_s1.tfds_builder import BigearthnetS1_19

    base, _ = synthetic
    s1_root, s2_root = base / s1synth.S1_FOLDER, base / s1synth.S2_FOLDER
    for cls, manual, config in ((BigearthnetS1_19, s1_root, "s1"), (BigearthnetMM19, base, "mm")):
        builder = cls(config=config, data_dir=str(tmp_path / config))
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual)))
        for ex in tfds.as_numpy(builder.as_dataset(split="test").take(2)):
            if config == "s1":
                s1 = ex["patch_name"].decode()
                vv, vh = ex["image"][..., 0], ex["image"][..., 1]
            else:
                s1, s2 = ex["patch_name_s1"].decode(), ex["patch_name_s2"].decode()
                vv, vh = ex["VV"], ex["VH"]
                np.testing.assert_array_equal(ex["B05"], read_tif(s2_root / s2 / f"{s2}_B05.tif"))
            np.testing.assert_array_equal(vv, read_tif(s1_root / s1 / f"{s1}_VV.tif"))
            np.testing.assert_array_equal(vh, read_tif(s1_root / s1 / f"{s1}_VH.tif"))
