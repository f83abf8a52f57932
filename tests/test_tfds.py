"""TFDS builders bigearthnet19 and so2sat_lcz42 on data in the real formats.

Fake examples come from the project's synthetic writers (real on-disk layouts) and from the six
real BigEarthNet-S2 patches of the bigearthnet-common wheel. Expected split sizes are worked out
from the split and exclusion files, independently of the builders.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import rasterio
import tensorflow_datasets as tfds

import prep.tfds  # noqa: F401  (registers the builders)
from prep.datasets.bigearthnet import spec as ben
from prep.datasets.bigearthnet import tfds_builder as b19
from prep.datasets.bigearthnet.synthetic import generate_bigearthnet
from prep.datasets.so2sat import spec as s2s
from prep.datasets.so2sat import tfds_builder as s2l
from prep.datasets.so2sat.synthetic import write_release
from splits import bigearthnet as splits

LISTS = ("patches_with_no_19_class_targets.csv", "patches_with_seasonal_snow.csv", "patches_with_cloud_and_shadow.csv")


def lines(path):
    return [x.strip() for x in Path(path).read_text().splitlines() if x.strip()]


def expected_bigearthnet(root) -> dict[str, list[str]]:
    """Patch names per split: the split CSVs minus every name on the three exclusion lists."""
    left_out = {n for f in LISTS for n in lines(Path(root) / f)}
    return {s: [n for n in lines(Path(root) / f"{s}.csv") if n not in left_out] for s in ("train", "val", "test")}


def synthetic_archive(dest, n=24, seed=7):
    generate_bigearthnet(dest, n, seed=seed, num_no_target=1, num_snow=1, num_cloud=1)
    exp = expected_bigearthnet(dest)
    assert sum(len(v) for v in exp.values()) == n - 3  # each special patch is listed in a split
    return exp


class _ManualDir:
    """Mixin for the TFDS builder tests: a temporary manual folder, filled by ``fill(folder)`` before
    the builder test case sets up, removed after it. (Not a TestCase itself, so not collected.)"""

    SKIP_CHECKSUMS = True

    @classmethod
    def fill(cls, folder: str) -> None:
        raise NotImplementedError

    @classmethod
    def setUpClass(cls):
        cls._tmp = tempfile.mkdtemp(prefix=f"{cls.__name__}_")
        cls.fill(cls._tmp)
        cls.EXAMPLE_DIR = cls._tmp
        super().setUpClass()

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        shutil.rmtree(cls._tmp, ignore_errors=True)


class Bigearthnet19Test(_ManualDir, tfds.testing.DatasetBuilderTestCase):
    """Both required configs on a synthetic archive with its own train/val/test CSVs."""

    DATASET_CLASS = b19.Bigearthnet19
    BUILDER_CONFIG_NAMES_TO_TEST = ["s2_all", "s2_rgb"]

    @classmethod
    def fill(cls, folder):
        cls.SPLITS = {s: len(v) for s, v in synthetic_archive(folder).items()}


class So2SatV2Test(_ManualDir, tfds.testing.DatasetBuilderTestCase):
    DATASET_CLASS = s2l.So2satLcz42
    BUILDER_CONFIG_NAMES_TO_TEST = ["v2_all", "v2_rgb"]
    SPLITS = {"train": 20, "val": 7, "test": 9}

    @classmethod
    def fill(cls, folder):
        write_release(folder, 2, {"training": 20, "validation": 7, "testing": 9}, seed=3)


class So2SatV3Test(_ManualDir, tfds.testing.DatasetBuilderTestCase):
    DATASET_CLASS = s2l.So2satLcz42
    BUILDER_CONFIG_NAMES_TO_TEST = ["v3_random_sen2", "v3_culture_10_rgb"]
    SPLITS = {"train": 11, "test": 5}

    @classmethod
    def fill(cls, folder):
        write_release(folder, 3, {"training": 11, "testing": 5}, seed=4, geo_layout="city")


# --- features derived from the dataset definitions ---------------------------------------------

def test_configs_and_features_follow_the_dataset_definition():
    configs = {c.name: c for c in b19.Bigearthnet19.BUILDER_CONFIGS}
    assert {"s2_all", "s2_rgb"} <= set(configs)
    all_info = tfds.builder("bigearthnet19/s2_all", data_dir=tempfile.gettempdir()).info
    feats = all_info.features
    for b in ben.BANDS:  # 12 bands, native sizes, uint16 as in the archive
        assert feats[b.name].shape == b.shape and feats[b.name].np_dtype == np.uint16
    assert feats["labels"].feature.names == list(ben.LABELS_19)
    assert feats["labels_43"].feature.names == list(ben.LABELS_43)
    assert feats["labels_multi_hot"].shape == (19,)
    assert all_info.supervised_keys == ({b: b for b in ben.BAND_NAMES}, "labels_multi_hot")
    rgb = tfds.builder("bigearthnet19/s2_rgb", data_dir=tempfile.gettempdir()).info
    assert rgb.features["image"].shape == (120, 120, 3)
    assert configs["s2_rgb"].bands == ("B04", "B03", "B02")
    s2 = tfds.builder("so2sat_lcz42/v3_block_all", data_dir=tempfile.gettempdir()).info
    assert s2.features["image"].shape == (32, 32, 18)
    assert s2.features["label"].names == list(s2s.CLASS_NAMES)
    names = {c.name for c in s2l.So2satLcz42.BUILDER_CONFIGS}
    for release in ("v2", "v3_random", "v3_block", "v3_culture_10"):
        assert {f"{release}_all", f"{release}_rgb"} <= names
    for builder in (b19.Bigearthnet19, s2l.So2satLcz42):
        assert str(builder.VERSION) in builder.RELEASE_NOTES


# --- BigEarthNet: official splits, exclusions, pixels and labels on the real patches ---------

def test_official_splits_on_the_six_real_patches(tmp_path, s2_examples, monkeypatch):
    """Official lists (cut to the six patches present): 4 train, 1 test, the snow patch left out."""
    present = {p.name for p in s2_examples.iterdir()}
    real = splits.official_split
    monkeypatch.setattr(splits, "official_split", lambda s: tuple(n for n in real(s) if n in present))
    builder = tfds.builder("bigearthnet19/s2_all", data_dir=str(tmp_path / "data"))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(s2_examples)))
    assert {s: i.num_examples for s, i in builder.info.splits.items()} == {"train": 4, "test": 1}
    seen = set()
    for split in ("train", "test"):
        for ex in tfds.as_numpy(builder.as_dataset(split=split)):
            name = ex["patch_name"].decode()
            seen.add(name)
            assert name in real(split)
            for b in ben.BANDS:
                with rasterio.open(s2_examples / name / f"{name}_{b.name}.tif") as ds:
                    np.testing.assert_array_equal(ex[b.name], ds.read(1))
            meta = json.loads((s2_examples / name / f"{name}_labels_metadata.json").read_text())
            assert [ben.LABELS_43[i] for i in ex["labels_43"]] == sorted(meta["labels"], key=ben.LABELS_43.index)
            want19 = sorted({j for j, src in enumerate(ben.CONVERSION_19) for i in ex["labels_43"] if i in src})
            assert list(ex["labels"]) == want19
            assert np.flatnonzero(ex["labels_multi_hot"]).tolist() == want19
            assert ex["coordinates"].tolist() == [meta["coordinates"][k] for k in ("ulx", "uly", "lrx", "lry")]
    snow = [n for n in present if n in splits.exclusion("seasonal_snow")]
    assert len(snow) == 1 and snow[0] not in seen and len(seen) == 5


def test_missing_patch_folders_stop_the_build_with_advice(s2_examples):
    with pytest.raises(FileNotFoundError, match=r"519,279 of the 519,284 patches to prepare from the official splits "
                                                r"\(bigearthnet-common\) have no patch folder here \(5 present\).*train.csv"):
        b19.plan(s2_examples)


def test_command_and_builder_take_the_same_splits_from_one_folder(tmp_path):
    """The preparation command (no -n) and the TFDS builder read a folder's split and exclusion lists
    by one rule (raw.choose_lists): the same split sizes, those of the CSVs minus the three lists."""
    from prep.datasets.bigearthnet import command

    raw = tmp_path / "raw"
    exp = synthetic_archive(raw, n=30, seed=4)
    m = command.prepare(str(raw), str(tmp_path / "records"))
    prepared = {s: v["written"] for s, v in m["splits"].items()}
    builder = tfds.builder("bigearthnet19/s2_rgb", data_dir=str(tmp_path / "tfds"))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(raw)))
    built = {s: info.num_examples for s, info in builder.info.splits.items()}
    assert prepared == built == {s: len(v) for s, v in exp.items()}


def test_archive_folder_inside_the_manual_folder_is_found(tmp_path):
    """Manual folder = where the tarball was extracted (BigEarthNet-v1.0/ inside), CSVs beside it."""
    exp = synthetic_archive(tmp_path / b19.ARCHIVE_FOLDER, n=12, seed=2)
    for f in ("train.csv", "val.csv", "test.csv", *LISTS):
        shutil.move(tmp_path / b19.ARCHIVE_FOLDER / f, tmp_path / f)
    root, items, excluded = b19.plan(tmp_path)
    assert root == tmp_path / b19.ARCHIVE_FOLDER
    assert items == exp and sorted(e["reason"] for e in excluded) == sorted(f"listed in {f}" for f in LISTS)


def test_tfds_load_by_name_with_manual_dir(tmp_path):
    """The documented call: tfds.load by name, manual folder through DownloadConfig."""
    manual = tmp_path / "manual"
    exp = synthetic_archive(manual, n=12, seed=11)
    ds = tfds.load("bigearthnet19", split="test", data_dir=str(tmp_path / "data"),
                   download_and_prepare_kwargs={"download_config": tfds.download.DownloadConfig(manual_dir=str(manual))})
    got = sorted(ex["patch_name"].decode() for ex in tfds.as_numpy(ds))
    assert got == sorted(exp["test"]) and got


def test_tfds_build_command(tmp_path):
    """`tfds build bigearthnet19 --imports prep.tfds` (a fresh process: the tfds CLI's own flags)."""
    manual = tmp_path / "manual"
    exp = synthetic_archive(manual, n=10, seed=5)
    tfds_cli = Path(sys.executable).parent / "tfds"
    cmd = [str(tfds_cli), "build", "bigearthnet19", "--imports", "prep.tfds", "--config", "s2_rgb",
           "--manual_dir", str(manual), "--data_dir", str(tmp_path / "data")]
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert r.returncode == 0, r.stderr[-3000:]
    info = json.loads((tmp_path / "data" / "bigearthnet19" / "s2_rgb" / "1.0.0" / "dataset_info.json").read_text())
    sizes = {s["name"]: sum(int(n) for n in s["shardLengths"]) for s in info["splits"]}
    assert sizes == {s: len(v) for s, v in exp.items() if v}


# --- So2Sat: pixels, labels and geolocation against the HDF5 files ----------------------------

def test_so2sat_examples_match_the_hdf5_rows(tmp_path):
    write_release(str(tmp_path / "m"), 2, {"training": 6, "validation": 3, "testing": 4}, seed=9)
    builder = tfds.builder("so2sat_lcz42/v2_rgb", data_dir=str(tmp_path / "data"))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(tmp_path / "m")))
    with h5py.File(tmp_path / "m" / "testing.h5") as f, h5py.File(tmp_path / "m" / "testing_geo.h5") as g:
        sen2, label, tfw = f["sen2"][:], f["label"][:], g["tfw"][:]
    rows = {}
    for ex in tfds.as_numpy(builder.as_dataset(split="test")):
        src, row = ex["patch_id"].decode().split(":")
        assert src == "testing.h5"
        rows[int(row)] = ex
    assert sorted(rows) == [0, 1, 2, 3]
    rgb = [s2s.SEN2_BANDS.index(b) for b in ("B04", "B03", "B02")]
    for r, ex in rows.items():
        np.testing.assert_array_equal(ex["image"], sen2[r][..., rgb].astype(np.float32))
        assert ex["label"] == int(np.argmax(label[r]))
        # synthetic 'coord' layout: tfw = x0, 10, 0, y0, 0, 10 -> affine (10, 0, x0, 0, -10, y0)
        np.testing.assert_array_equal(ex["transform"], [tfw[r, 1], 0, tfw[r, 0], 0, -tfw[r, 5], tfw[r, 3]])
        assert ex["epsg"] > 32600


def test_so2sat_missing_release_files_are_named(tmp_path):
    write_release(str(tmp_path), 2, {"training": 2, "validation": 2, "testing": 2})
    with pytest.raises(FileNotFoundError, match=r"block/training\.h5"):
        s2l.release_files(tmp_path, "v3_block")
