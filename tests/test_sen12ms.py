"""SEN12MS: labels against the lc rasters, S1 NaNs, splits, bad input, tarballs, reader presets."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from prep import cli, tfrecord
from prep.datasets.sen12ms import command, raw, synthetic, tarball
from prep.datasets.sen12ms import spec as sp
from splits import sen12ms as rules

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "sen12ms"
SCENES = {("ROIs1158_spring", 63): 3, ("ROIs1158_spring", 1): 3, ("ROIs1868_summer", 5): 3,
          ("ROIs1970_fall", 8): 3, ("ROIs2017_winter", 9): 3}


def prepare(root, out, **kw) -> dict:
    workers = kw.pop("workers", 1)
    return cli.write_plan(command.plan(str(root), shard_size_mb=kw.pop("shard_size_mb", 10.0), **kw), str(out),
                          workers=workers)


def records(out) -> dict[str, dict]:
    """patch id -> parsed feature values of every record in ``out``."""
    import tensorflow as tf

    m = json.loads((Path(out) / "manifest.json").read_text())
    recs = {}
    for split in m["splits"].values():
        for sh in split["shards"]:
            for r in tfrecord.read_records(Path(out) / sh["file"]):
                f = tf.train.Example.FromString(r).features.feature
                v = {k: (list(x.bytes_list.value) or list(x.int64_list.value) or list(x.float_list.value))
                     for k, x in f.items()}
                recs[v["patch_id"][0].decode()] = v
    return recs


def read_file(root, key, modality) -> np.ndarray:
    import rasterio

    with rasterio.open(os.path.join(root, raw.rel_path(key, modality))) as src:
        return src.read()


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    root = tmp_path_factory.mktemp("sen12ms") / "raw"
    info = synthetic.write_archive(str(root), SCENES, seed=3, tarballs=True)
    return root, info


@pytest.fixture(scope="module")
def prepared(archive, tmp_path_factory):
    root, _ = archive
    out = tmp_path_factory.mktemp("rec") / "out"
    return out, prepare(root, out, workers=2)


def test_spec_tables():
    assert sp.SPEC.band_names[:13] == sp.S2_BANDS and "B10" in sp.S2_BANDS and "B8A" in sp.S2_BANDS
    assert sp.SPEC.band("VV").dtype == "float32" and sp.SPEC.band("B02").dtype == "uint16"
    assert sp.SPEC.resolve_bands("rgb") == ("B04", "B03", "B02")
    assert sp.SPEC.resolve_bands("bgr_upstream") == ("B02", "B03", "B04")
    assert len(sp.SPEC.resolve_bands("s2_10")) == 10 and "B10" not in sp.SPEC.resolve_bands("s2_10")
    assert sp.SPEC.resolve_bands("s1s2") == sp.S2_LAND_BANDS + ("VV", "VH")
    assert len(sp.IGBP_CLASSES) == 17 and len(sp.DFC_CLASSES) == 10
    # the simplified scheme as published: Forest = IGBP 1-5, Shrubland 6-7, Savanna 8-9, Grassland 10,
    # Wetlands 11, Croplands 12 + 14, Urban 13, Snow/Ice 15, Barren 16, Water 17
    groups = {1: [1, 2, 3, 4, 5], 2: [6, 7], 3: [8, 9], 4: [10], 5: [11], 6: [12, 14], 7: [13], 8: [15], 9: [16],
              10: [17]}
    assert {d: [i for i in range(1, 18) if sp.IGBP_TO_DFC[i] == d] for d in range(1, 11)} == groups
    ref = REFERENCE / "igbp_classes.json"
    if ref.exists():
        data = json.loads(ref.read_text())
        assert {c["id"]: c["igbp_full_ids"] for c in data["igbp_simplified_10"]} == groups
        assert [c["name"] for c in data["igbp_simplified_10"]] == list(sp.DFC_CLASSES)


def test_synthetic_files_have_the_real_layout(archive):
    root, info = archive
    key = info[0]["key"]
    s1, s2, lc = (read_file(root, key, m) for m in ("s1", "s2", "lc"))
    assert s1.shape == (2, 256, 256) and s1.dtype == np.float32
    assert s2.shape == (13, 256, 256) and s2.dtype == np.uint16 and s2.max() > 32767
    assert lc.shape == (4, 256, 256) and lc.dtype == np.uint16 and 1 <= lc[0].min() and lc[0].max() <= 17
    assert any(np.isnan(read_file(root, i["key"], "s1")).any() for i in info)
    assert sorted(os.listdir(root / "tarballs"))[0] == "ROIs1158_spring_lc.tar.gz"


def test_every_label_kind_equals_the_lc_rasters(archive, prepared):
    root, info = archive
    out, manifest = prepared
    recs = records(out)
    assert len(recs) == len(info) == manifest["totals"]["written"]
    kinds = set()
    for i in info:
        key = i["key"]
        v = recs[sp.patch_id(*key)]
        igbp = read_file(root, key, "lc")[0].astype(np.int64)
        total = igbp.size
        c17 = np.array([(igbp == code).sum() for code in range(1, 18)])
        c10 = np.array([sum(c17[code - 1] for code in range(1, 18) if sp.IGBP_TO_DFC[code] == d)
                        for d in range(1, 11)])
        for nom, c in (("igbp17", c17), ("dfc10", c10)):
            np.testing.assert_array_equal(np.array(v[f"{nom}/fractions"], np.float32),
                                          (c / total).astype(np.float32))
            top = c.max()
            assert v[f"{nom}/index"] == [min(j for j in range(len(c)) if c[j] == top)]
            # multi-hot at 0.1: count / total >= 1/10  <=>  10 * count >= total (integers, no rounding)
            assert v[f"{nom}/multi_hot"] == [int(10 * x >= total) for x in c]
        if (c17 == c17.max()).sum() > 1:
            kinds.add("tie")
        if ((10 * c17 >= total) & (10 * c17 < total + 10)).any() and ((10 * c17 < total) & (10 * c17 > total - 10)).any():
            kinds.add("threshold")
    assert kinds == {"tie", "threshold"}  # the archive holds both cases
    assert manifest["sen12ms"]["classes"] == {"igbp17": list(sp.IGBP_CLASSES), "dfc10": list(sp.DFC_CLASSES)}


def test_label_threshold_flag(archive, tmp_path):
    root, info = archive
    prepare(root, tmp_path / "t", label_threshold=0.25, target="igbp17_single")
    m = json.loads((tmp_path / "t" / "manifest.json").read_text())
    assert m["task"] == "single_label" and m["classes"] == list(sp.IGBP_CLASSES) and m["schema"] == "igbp17_single"
    for i in info:
        igbp = read_file(root, i["key"], "lc")[0]
        c = np.array([(igbp == code).sum() for code in range(1, 18)])
        assert records(tmp_path / "t")[sp.patch_id(*i["key"])]["igbp17/multi_hot"] == [int(4 * x >= igbp.size)
                                                                                        for x in c]
        break


def test_pixels_round_trip_and_s1_nans_reconcile(archive, prepared):
    root, info = archive
    out, manifest = prepared
    recs = records(out)
    notes = {n["key"]: n["s1_nan_values"] for n in manifest["notes"]}
    nan_patches = {sp.patch_id(*i["key"]): i["s1_nan"] for i in info if i["s1_nan"]}
    assert notes == nan_patches and nan_patches
    clean = sum(1 for k in recs if k not in notes)
    assert len(notes) + clean == manifest["totals"]["written"]
    for i in info:
        key = i["key"]
        v = recs[sp.patch_id(*key)]
        s1 = read_file(root, key, "s1")
        got = np.stack([np.frombuffer(v[f"bands/{b}"][0], "<f4").reshape(256, 256) for b in sp.S1_BANDS])
        np.testing.assert_array_equal(got, np.where(np.isnan(s1), 0, s1))
        assert v["meta/s1_nan"] == [int(np.isnan(s1).sum())]
        s2 = read_file(root, key, "s2")
        got2 = np.stack([np.frombuffer(v[f"bands/{b}"][0], "<u2").reshape(256, 256) for b in sp.S2_BANDS])
        np.testing.assert_array_equal(got2, s2)  # values above 32767 included
        lc = read_file(root, key, "lc")
        np.testing.assert_array_equal(np.frombuffer(v["bands/IGBP"][0], "<u2").reshape(256, 256), lc[0])
        assert v["meta/season"] == [key[0].encode()] and v["meta/scene"] == [key[1]] and v["meta/patch"] == [key[2]]
        assert v["geo/epsg"][0] == 32600 + 1 + key[1] % 60 and b"UTM" in v["geo/crs"][0]
        assert np.frombuffer(v["geo/transform"][0], "<f8")[[0, 4]].tolist() == [10.0, -10.0]


def test_s1_nan_fail_names_the_file(archive, tmp_path):
    root, info = archive
    m = prepare(root, tmp_path / "f", s1_nan="fail", on_error="skip")
    nan_keys = {sp.patch_id(*i["key"]) for i in info if i["s1_nan"]}
    assert {s["key"] for s in m["skipped"]} == nan_keys
    for s in m["skipped"]:
        assert "_s1_" in s["reason"] and "NaN values" in s["reason"]
    assert "notes" not in m
    assert m["totals"]["written"] + m["totals"]["skipped"] == len(info)


def test_splits_are_disjoint_scene_grouped_and_seeded(prepared):
    out, manifest = prepared
    recs = records(out)
    by_split = {split: s["written"] for split, s in manifest["splits"].items()}
    assert set(manifest["splits"]) == {"train", "val", "test"}
    keys = [rules.parse_name(k) for k in recs]
    splits = rules.assign(keys)
    flat = [k for v in splits.values() for k in v]
    assert len(flat) == len(set(flat)) == len(keys)
    scenes = {s: {(k[0], k[1]) for k in v} for s, v in splits.items()}
    assert not (scenes["train"] & scenes["val"]) and not (scenes["train"] & scenes["test"])
    assert not (scenes["val"] & scenes["test"])
    assert all(rules.is_holdout(*s) for s in scenes["test"])
    assert not any(rules.is_holdout(*s) for s in scenes["train"] | scenes["val"])
    assert {s: len(v) for s, v in splits.items()} == by_split
    assert manifest["sen12ms"]["val_scenes"] == sorted(f"{a}/{b}" for a, b in scenes["val"])


def test_val_rule_on_many_scenes():
    keys = [("ROIs1158_spring", s, p) for s in range(200, 300) for p in range(1 + s % 7)]
    keys += [("ROIs1970_fall", 120, p) for p in range(30)]
    a, b = rules.assign(keys, seed=1), rules.assign(keys, seed=1)
    assert a == b and rules.assign(keys, seed=2) != a
    rest = len(keys) - 30
    assert len(a["test"]) == 30 and 0.1 * rest <= len(a["val"]) < 0.1 * rest + 7
    val_scenes = {k[1] for k in a["val"]}
    assert not val_scenes & {k[1] for k in a["train"]}
    assert set(rules.assign(keys, val_fraction=0)) == {"train", "test"}
    with pytest.raises(ValueError):
        rules.assign(keys, val_fraction=1.0)


def test_user_split_lists_replace_the_rules(archive, tmp_path):
    root, info = archive
    names = [f"{k[0]}_s2_{k[1]}_p{k[2]}.tif" for k in (i["key"] for i in info)]
    (tmp_path / "a.txt").write_text("\n".join(names[:4]) + "\n")
    (tmp_path / "b.txt").write_text("\n".join(names[4:6]) + "\n")
    lists = command.read_split_lists([f"mine={tmp_path / 'a.txt'}", f"other={tmp_path / 'b.txt'}"])
    m = prepare(root, tmp_path / "o", split_lists=lists)
    assert {s: v["written"] for s, v in m["splits"].items()} == {"mine": 4, "other": 2}
    # the triplets in no list are reported, never silently dropped: written + unlisted = found
    found = {sp.patch_id(*i["key"]) for i in info}
    unlisted = m["sen12ms"]["unlisted"]
    assert unlisted["count"] == len(found) - 6 == len(unlisted["patches"])
    assert set(unlisted["patches"]) == found - {sp.patch_id(*i["key"]) for i in info[:6]}
    # DFC2020's sets are not prepared with user lists: they are reported too
    dfc_root = tmp_path / "dfc"
    synthetic.write_archive(str(dfc_root), {("ROIs1158_spring", 63): 1}, seed=1)
    synthetic.write_dfc2020(str(dfc_root), validation=1, test=2, seed=1)
    (tmp_path / "c.txt").write_text("ROIs1158_spring_s2_63_p1.tif\n")
    p = command.plan(str(dfc_root), split_lists=command.read_split_lists([f"train={tmp_path / 'c.txt'}"]))
    assert p.extra["sen12ms"]["unlisted"]["count"] == 3
    assert all(x.startswith("ROIs0000_") for x in p.extra["sen12ms"]["unlisted"]["patches"])
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(command.Sen12msInputError, match="name no patch"):
        command.plan(str(root), split_lists=command.read_split_lists([f"test={tmp_path / 'empty.txt'}"]))
    with pytest.raises(ValueError, match="listed in split"):
        rules.from_lists({"a": names[:2], "b": names[1:2]})


def test_holdout_scenes_hold_the_published_test_list():
    holdout = REFERENCE / "SEN12MS_holdOutScenes.txt"
    test_list = REFERENCE / "test_list.txt"
    if not (holdout.exists() and test_list.exists()):
        pytest.skip("the published lists are not in this checkout's reference folder")
    published = {(line.split("/")[0], int(line.strip().split("_")[-1])) for line in holdout.read_text().split()}
    assert published == rules.HOLDOUT_SCENES and len(rules.HOLDOUT_SCENES) == 26
    names = test_list.read_text().split()
    assert len(names) == rules.TEST_LIST_SIZE == 18106
    assert all("_s2_" in n and rules.is_holdout(*rules.parse_name(n)[:2]) for n in names)


def _bad_archive(tmp_path, archive) -> tuple[Path, dict[str, str]]:
    """A copy of one scene with one problem per patch: patch id -> expected words in the reason."""
    src_root, _ = archive
    root = tmp_path / "bad"
    season, scene = "ROIs1158_spring", 1
    for m in sp.MODALITIES:
        shutil.copytree(src_root / season / f"{m}_{scene}", root / season / f"{m}_{scene}")
    keys = raw.find_triplets(str(root))
    expect = {}
    os.remove(root / raw.rel_path(keys[0], "lc"))
    expect[sp.patch_id(*keys[0])] = ["_lc_", "missing"]
    (root / raw.rel_path(keys[1], "s2")).write_bytes(b"not a tiff")
    expect[sp.patch_id(*keys[1])] = ["_s2_", "not a readable GeoTIFF"]
    synthetic._write_tif(str(root / raw.rel_path(keys[2], "s1")), np.zeros((3, 256, 256), np.float32), 32631, 0, 0)
    expect[sp.patch_id(*keys[2])] = ["_s1_", "3 bands, expected 2"]
    for extra, problem, pixels in (
            (("ROIs1158_spring", 1, 9), "shape (128, 128), expected (256, 256)", np.zeros((13, 128, 128), np.uint16)),
            (("ROIs1158_spring", 1, 10), "dtype int16, expected uint16", np.zeros((13, 256, 256), np.int16))):
        for m in ("s1", "lc"):  # good twins, copied from a good triplet of the archive
            shutil.copy(src_root / raw.rel_path(keys[0], m), root / raw.rel_path(extra, m))
        synthetic._write_tif(str(root / raw.rel_path(extra, "s2")), pixels, 32631, 0, 0)
        expect[sp.patch_id(*extra)] = ["_s2_", problem]
    bad_lc = ("ROIs1158_spring", 1, 11)
    for m in ("s1", "s2"):
        shutil.copy(src_root / raw.rel_path(keys[0], m), root / raw.rel_path(bad_lc, m))
    synthetic._write_tif(str(root / raw.rel_path(bad_lc, "lc")), np.full((4, 256, 256), 18, np.uint16), 32631, 0, 0)
    expect[sp.patch_id(*bad_lc)] = ["_lc_", "IGBP codes [18] outside 1..17"]
    return root, expect


def test_bad_input_is_named(archive, tmp_path):
    root, expect = _bad_archive(tmp_path, archive)
    m = prepare(root, tmp_path / "out", on_error="skip")
    reasons = {s["key"]: s["reason"] for s in m["skipped"]}
    assert set(reasons) == set(expect)
    for key, words in expect.items():
        assert all(w in reasons[key] for w in words), (key, reasons[key])
        assert str(root) in reasons[key]
    from prep.errors import PrepError

    with pytest.raises(PrepError, match=r"\.tif"):
        prepare(root, tmp_path / "out2")


def test_bad_input_on_the_command_line(archive, tmp_path):
    import subprocess
    import sys

    root, _ = _bad_archive(tmp_path, archive)
    r = subprocess.run([sys.executable, "-m", "prep", "sen12ms", "-r", str(root), "-o", str(tmp_path / "o"),
                        "--noprogress", "--workers", "1"], capture_output=True, text=True,
                       env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert r.returncode == 1 and r.stderr.strip().splitlines()[-1].startswith("error: ") and ".tif" in r.stderr


def test_tarballs_give_the_same_shards(archive, prepared, tmp_path):
    root, info = archive
    out, manifest = prepared
    assert tarball.list_triplets(tarball.find_tarballs(str(root / "tarballs"))) == sorted(i["key"] for i in info)
    m2 = prepare(root / "tarballs", tmp_path / "tar", workers=2)
    assert m2["flags"]["input"] == "tarballs"
    for split, s in manifest["splits"].items():
        assert [sh["sha256"] for sh in s["shards"]] == [sh["sha256"] for sh in m2["splits"][split]["shards"]]
    assert m2["notes"] == manifest["notes"] and m2["statistics"] == manifest["statistics"]


def test_reader_presets_and_upstream_normalisation(prepared):
    from prep import reader

    out, manifest = prepared
    x, y = next(iter(reader.make_dataset(out, "train", bands="s1s2", batch_size=2, normalize="upstream")))
    assert tuple(x["image"].shape) == (2, 256, 256, 12) and tuple(y.shape) == (2, 10)
    rgb, _ = next(iter(reader.make_dataset(out, "test", bands="rgb", batch_size=1, normalize=None)))
    bgr, _ = next(iter(reader.make_dataset(out, "test", bands="bgr_upstream", batch_size=1, normalize=None)))
    np.testing.assert_array_equal(rgb["image"].numpy()[..., ::-1], bgr["image"].numpy())
    s2, _ = next(iter(reader.make_dataset(out, "test", bands="s2_all", batch_size=1, normalize=None)))
    assert s2["image"].numpy()[0, 0, 0, 0] > 32767  # B01 at (0, 0) holds a value above 32767


def test_the_reader_clips_s1_before_normalising(prepared):
    from prep import reader

    out, manifest = prepared
    x, _ = next(iter(reader.make_dataset(out, "test", bands="s1", batch_size=3, normalize=None)))
    recs = records(out)
    ids = [sp.patch_id(*k) for k in rules.assign([rules.parse_name(r) for r in recs])["test"]][:3]
    stored = np.stack([np.stack([np.frombuffer(recs[i][f"bands/{b}"][0], "<f4").reshape(256, 256)
                                 for b in sp.S1_BANDS], -1) for i in ids])
    np.testing.assert_array_equal(x["image"].numpy(), np.clip(stored, -25, 0))
    assert stored.min() < -25 and stored.max() > 0  # the records keep the dB values the clip changes
    z, _ = next(iter(reader.make_dataset(out, "test", bands="s1", batch_size=3, normalize="upstream")))
    from prep.datasets.sen12ms import UPSTREAM_STATS

    mean = np.array([UPSTREAM_STATS[b][0] for b in sp.S1_BANDS], np.float32)
    std = np.array([UPSTREAM_STATS[b][1] for b in sp.S1_BANDS], np.float32)
    np.testing.assert_allclose(z["image"].numpy(), (np.clip(stored, -25, 0) - mean) / std, rtol=1e-5, atol=1e-5)


def test_upstream_flagfiles():
    import re

    repo = Path(__file__).resolve().parents[1]
    defined = set(re.findall(r'DEFINE_\w+\(\s*"(\w+)"', (repo / "train.py").read_text()))
    files = sorted((repo / "configs").glob("*_SEN12MS_*.flags"))
    assert len(files) == 36  # 9 models x 4 inputs
    import models

    for f in files:
        values = dict(line[2:].split("=", 1) if "=" in line else (line[2:], "") for line in f.read_text().splitlines()
                      if line.startswith("--"))
        for name in values:
            assert name in defined or (name.startswith("no") and name[2:] in defined), (f.name, name)
        assert values["model"] in models.names()
        assert len(sp.SPEC.resolve_bands(values["bands"])) in (2, 3, 10, 12)
        assert (values["batch_size"], values["learning_rate"], values["weight_decay"]) == ("64", "0.001", "0.00001")


@pytest.mark.parametrize("size", [128, 256])
def test_densenet_head_works_at_any_size(size):
    import models

    m = models.build("DenseNet121", {"image": (size, size, 12)}, 10, "multi_label")
    y = m(np.zeros((1, size, size, 12), np.float32))
    assert tuple(y.shape) == (1, 10)


def test_single_label_trains_and_evaluates_with_an_upstream_flagfile(archive, tmp_path):
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    root, _ = archive
    prepare(root, tmp_path / "single", target="igbp17_single")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}

    def run(*args):
        r = subprocess.run([sys.executable, *args], cwd=repo, env=env, capture_output=True, text=True, timeout=900)
        assert r.returncode == 0, r.stderr[-3000:]

    run("train.py", "--flagfile", "configs/ResNet50_SEN12MS_RGB.flags", "--data_dir", str(tmp_path / "single"),
        "--out_dir", str(tmp_path / "run"), "--epochs", "1", "--batch_size", "4", "--noevaluate_test",
        "--noexport_saved_model", "--noprogress")
    run("evaluate.py", "--model", str(tmp_path / "run"), "--data_dir", str(tmp_path / "single"), "--split", "test",
        "--out_dir", str(tmp_path / "eval"))
    result = json.loads((tmp_path / "eval" / "eval_result.json").read_text())
    text = json.dumps(result).lower()
    assert "kappa" in text or "accuracy" in text
    config = json.loads((tmp_path / "run" / "input_config.json").read_text())
    assert config["bands"] == ["B02", "B03", "B04"] and config["task"] == "single_label"
    assert len(config["classes"]) == 17


def test_only_the_four_season_folders_are_read(archive, tmp_path):
    root, info = archive
    mixed = tmp_path / "mixed"
    shutil.copytree(root / "ROIs1158_spring", mixed / "ROIs1158_spring")
    for folder in ("ROIs0000_test/s2_0", "ROIs0000_validation/s2_validation"):
        (mixed / folder).mkdir(parents=True)
    shutil.copy(root / raw.rel_path(info[0]["key"], "s2"), mixed / "ROIs0000_test/s2_0/ROIs0000_test_s2_0_p0.tif")
    keys = raw.find_triplets(str(mixed))
    assert keys and all(k[0] == "ROIs1158_spring" for k in keys)


def test_dfc2020_sets_prepare_as_extra_splits(tmp_path):
    root = tmp_path / "raw"
    synthetic.write_archive(str(root), {("ROIs1158_spring", 1): 3, ("ROIs1158_spring", 2): 3,
                                        ("ROIs1158_spring", 63): 2}, seed=5)
    dfc = synthetic.write_dfc2020(str(root), validation=3, test=2, seed=5)
    assert (root / "ROIs0000_validation" / "dfc_validation").is_dir() and (root / "ROIs0000_test" / "s2_0").is_dir()
    m = prepare(root, tmp_path / "out")
    assert {s: v["written"] for s, v in m["splits"].items()} == {"train": 3, "val": 3, "test": 2, "dfc2020_val": 3,
                                                                 "dfc2020_test": 2}
    recs = records(tmp_path / "out")
    table = np.asarray(sp.IGBP_TO_DFC, np.uint8)
    for i in dfc:
        v = recs[sp.patch_id(*i["key"])]
        mask = np.frombuffer(v["dfc/mask"][0], np.uint8).reshape(256, 256)
        np.testing.assert_array_equal(mask, i["dfc"])
        assert set(np.unique(mask)) >= {0, 255}
        igbp = read_file(root, i["key"], "lc")[0] if i["key"][0] == "ROIs0000_test" else None
        low = np.frombuffer(v["dfc/mask_lowres"][0], np.uint8).reshape(256, 256)
        ours = np.frombuffer(v["bands/IGBP"][0], "<u2").reshape(256, 256)
        np.testing.assert_array_equal(low, table[ours])
        if igbp is not None:
            np.testing.assert_array_equal(ours, igbp)
        assert not (mask[mask != 255] == 0).all() and (low != mask).any()  # the high-resolution labels differ
    for k, v in recs.items():
        if not k.startswith("ROIs0000"):
            assert v["dfc/mask"] == [b""] and len(v["dfc/mask_lowres"][0]) == 256 * 256
    m2 = prepare(root, tmp_path / "none", dfc2020=False)
    assert set(m2["splits"]) == {"train", "val", "test"}
    # a DFC2020 patch without its label file is bad input, named
    os.remove(root / "ROIs0000_test" / "dfc_0" / "ROIs0000_test_dfc_0_p1.tif")
    m3 = prepare(root, tmp_path / "bad", on_error="skip")
    assert [(s["key"], "dfc_0" in s["reason"] and "missing" in s["reason"]) for s in m3["skipped"]] == [
        ("ROIs0000_test_0_p1", True)]


def test_tfds_single_label_config(tmp_path):
    import tensorflow_datasets as tfds

    from prep.datasets.sen12ms.tfds_builder import Sen12ms

    root = tmp_path / "raw"
    info = synthetic.write_archive(str(root), {("ROIs1158_spring", 1): 2, ("ROIs1158_spring", 2): 2,
                                               ("ROIs1158_spring", 63): 2}, seed=7)
    builder = Sen12ms(config="s2_10_igbp17_single", data_dir=str(tmp_path / "tfds"))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(root)))
    assert {s: builder.info.splits[s].num_examples for s in builder.info.splits} == {"train": 2, "validation": 2,
                                                                                     "test": 2}
    for ex in tfds.as_numpy(builder.as_dataset(split="test")):
        key = rules.parse_name(ex["patch_id"].decode())
        assert ex["image"].shape == (256, 256, 10) and ex["image"].dtype == np.uint16
        igbp = read_file(root, key, "lc")[0]
        counts = np.array([(igbp == c).sum() for c in range(1, 18)])
        assert ex["label"] == int(np.argmax(counts))
        np.testing.assert_array_equal(ex["image"][..., 0], read_file(root, key, "s2")[1])  # B02
    assert len(info) == 6


def test_s1_state_equals_float_state(archive):
    from prep.stats import float_state

    root, info = archive
    t = raw.read_triplet(str(root), info[1]["key"])
    for b in sp.S1_BANDS:
        ours, ref = raw.s1_state(t["bands"][b]), float_state(t["bands"][b])
        assert ours["sumsq"] == pytest.approx(ref["sumsq"], rel=1e-12)
        assert {k: v for k, v in ours.items() if k not in ("sample", "sumsq")} == {
            k: v for k, v in ref.items() if k not in ("sample", "sumsq")}
        np.testing.assert_array_equal(ours["sample"], ref["sample"])


def test_fast_geotiff_read_equals_rasterio(archive, monkeypatch):
    """The numpy read of the triplet files gives rasterio's pixels, CRS WKT and transform, bit for bit."""
    root, info = archive
    fast = {}
    for item in info[:3]:
        for modality in sp.MODALITIES:
            path = os.path.join(root, raw.rel_path(item["key"], modality))
            fast[path, modality] = raw.read_tif(path, modality)
    calls = []
    real = raw._read_simple
    monkeypatch.setattr(raw, "_read_simple", lambda path, data: calls.append(real(path, data)) or None)
    for (path, modality), (pixels, georef) in fast.items():
        want, want_georef = raw.read_tif(path, modality)
        np.testing.assert_array_equal(pixels, want)
        assert pixels.dtype == want.dtype
        assert georef["crs"] == want_georef["crs"] and georef["epsg"] == want_georef["epsg"]
        assert [repr(v) for v in georef["transform"]] == [repr(v) for v in want_georef["transform"]]
    assert len(calls) == len(fast) and all(c is not None for c in calls)  # the fast path did read them all


def test_split_list_with_split_rule_flags_is_a_usage_error(archive, tmp_path):
    """--split_list replaces the rules: --val_fraction or --split_seed beside it are refused, not ignored."""
    import subprocess
    import sys

    root, info = archive
    (tmp_path / "t.txt").write_text(f"{sp.patch_id(*info[0]['key'])}\n")
    for extra in (["--val_fraction", "0.3"], ["--split_seed", "4"]):
        r = subprocess.run([sys.executable, "-m", "prep", "sen12ms", "-r", str(root), "-o", str(tmp_path / "o"),
                            "--split_list", f"test={tmp_path / 't.txt'}", "--noprogress", *extra],
                           capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
        assert r.returncode == 2 and extra[0] in r.stderr and "--split_list" in r.stderr, r.stderr
        assert "Traceback" not in r.stderr and not (tmp_path / "o").exists()


def test_a_folder_given_as_split_list_is_named_as_a_folder(tmp_path):
    with pytest.raises(command.Sen12msInputError, match="a folder, not a split list"):
        command.read_split_lists([f"test={tmp_path}"])
