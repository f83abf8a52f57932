"""Sentinel2GlobalLULC: the file-name parser, the class-folder/CSV reader, bad input, records, folds."""
from __future__ import annotations

import csv
import os
import shutil

import numpy as np
import pytest

from prep.datasets.sentinel2_global_lulc import command, folds, raw, synthetic
from prep.datasets.sentinel2_global_lulc import spec as sp
from prep.datasets.sentinel2_global_lulc.spec import LulcInputError
from splits import sentinel2_global_lulc as fold_split

EXAMPLE = "29_UrbanBlUpArea_87%_000123_0.61_(+41.3851000000,+2.1734000000)_ES_Catalunya_Barcelona_Barcelona.jpg"


# --- the spec -------------------------------------------------------------------------------------

def test_29_classes_in_id_order_with_the_published_short_names():
    assert [c.id for c in sp.CLASSES] == list(range(1, 30))
    assert sp.CLASS_NAMES[0] == "BarrenLands__" and sp.CLASS_NAMES[28] == "UrbanBlUpArea"
    assert all(len(n) == 13 for n in sp.CLASS_NAMES)
    assert [c.index for c in sp.CLASSES] == list(range(29))
    assert sp.SPEC.band("B04").shape == (224, 224) and sp.SPEC.num_classes == 29


# --- the file-name parser -------------------------------------------------------------------------

def test_parses_every_field_of_the_published_example():
    n = raw.parse_name("Sentinel2LULC_JPEG/29_UrbanBlUpArea/" + EXAMPLE)
    assert (n.class_id, n.class_name, n.index) == (29, "UrbanBlUpArea", 28)
    assert (n.purity, n.image_id, n.ghm) == (87.0, 123, 0.61)
    assert (n.lat, n.lon) == (41.3851, 2.1734)
    assert (n.country_code, n.admin1, n.admin2, n.locality) == ("ES", "Catalunya", "Barcelona", "Barcelona")
    assert n.file_stem() + ".jpg" == EXAMPLE


def test_class_names_with_trailing_underscores():
    n = raw.parse_name("1_BarrenLands___100%_000001_0.02_(+23.1000000000,+5.2000000000)_DZ_Tamanrasset_In-Guezzam_"
                       "In-Guezzam.jpg")
    assert (n.class_id, n.class_name, n.purity, n.image_id) == (1, "BarrenLands__", 100.0, 1)
    n = raw.parse_name("3_Grasslands____76%_004567_0.1_(+46.0000000000,+100.0000000000)_MN_Arkhangai_Tsenkher_Ikh.tif")
    assert n.class_name == "Grasslands___" and n.purity == 76.0


def test_negative_coordinates():
    n = raw.parse_name("21_WaterBodyMari_99%_000042_0.0_(-33.9000000000,-151.2000000000)_AU_New-South-Wales_"
                       "Sydney_Sydney.jpg")
    assert (n.lat, n.lon) == (-33.9, -151.2)
    n = raw.parse_name("23_PermanentSnow_95%_000007_-0.01_(-77.8463000000,+166.6682000000)_AQ___.jpg")
    assert (n.lat, n.lon, n.ghm) == (-77.8463, 166.6682, -0.01)


def test_place_names_with_dashes_and_non_ascii_letters():
    n = raw.parse_name("29_UrbanBlUpArea_90%_000321_0.88_(+48.9362000000,+2.3574000000)_FR_Île-de-France_"
                       "Seine-Saint-Denis_Saint-Denis.jpg")
    assert (n.admin1, n.admin2, n.locality) == ("Île-de-France", "Seine-Saint-Denis", "Saint-Denis")
    n = raw.parse_name("18_WetlandMangro_80%_000009_0.3_(+10.0000000000,-85.0000000000)_CR_Guanacaste_Nicoya_"
                       "São-Tomé-Ñandú.jpg")
    assert n.locality == "São-Tomé-Ñandú"


def test_missing_admin_levels():
    n = raw.parse_name("1_BarrenLands___88%_000002_0.0_(-21.2000000000,+14.8000000000)_NA_Erongo__.jpg")
    assert (n.country_code, n.admin1, n.admin2, n.locality) == ("NA", "Erongo", "", "")
    n = raw.parse_name("21_WaterBodyMari_100%_000003_0.0_(+10.0000000000,-30.0000000000).jpg")
    assert (n.country_code, n.admin1, n.admin2, n.locality) == ("", "", "", "")
    n = raw.parse_name("22_WaterBodyCont_77%_000004_0.2_(+60.0000000000,+25.0000000000)_FI_Uusimaa")
    assert (n.country_code, n.admin1, n.admin2, n.locality) == ("FI", "Uusimaa", "", "")


@pytest.mark.parametrize("name, field", [
    ("picture.jpg", "class ID"),
    ("29_UrbanBlUpArea_87_000123_0.61_(+41.3,+2.1)_ES_a_b_c.jpg", "purity"),
    ("29_UrbanBlUpArea_87%_000123_0.61_(41.3;2.1)_ES_a_b_c.jpg", "latitude"),
    ("29_BarrenLands___87%_000123_0.61_(+41.3,+2.1)_ES_a_b_c.jpg", "class name"),
    ("30_UrbanBlUpArea_87%_000123_0.61_(+41.3,+2.1)_ES_a_b_c.jpg", "class ID"),
    ("29_UrbanBlUpArea_87%_000123_0.61_(+91.3,+2.1)_ES_a_b_c.jpg", "latitude"),
    ("29_UrbanBlUpArea_87%_000123_0.61_(+41.3,+2.1)_ES_a_b_c_d.jpg", "place"),
])
def test_a_name_that_does_not_parse_names_the_file_and_the_field(name, field):
    with pytest.raises(LulcInputError, match=f"{name[:10]}.*field '{field}'"):
        raw.parse_name(name)


# --- the class-folder layout, CSVs and bad input ---------------------------------------------------

@pytest.fixture()
def tree(tmp_path):
    root = tmp_path / "lulc"
    synthetic.write_tree(str(root), per_class=5, tile_px=32, seed=1, classes=(1, 3, 21, 29))
    return root


def test_scan_reads_the_class_folders_and_csvs(tree):
    s = raw.scan(str(tree))
    assert len(s.tiles) == 20 and not s.bad and s.csv_rows == 20
    assert [t.name.class_id for t in s.tiles] == sorted(t.name.class_id for t in s.tiles)
    assert all(t.num_s2_images >= 20 for t in s.tiles)
    assert s.tiles[0].key.startswith("1_BarrenLands__/1_BarrenLands___")


def test_a_class_folder_that_disagrees_with_the_id_is_bad_input(tree):
    src = next((tree / "Sentinel2LULC_JPEG" / "1_BarrenLands__").iterdir())
    shutil.move(str(src), str(tree / "Sentinel2LULC_JPEG" / "3_Grasslands___" / src.name))
    (key, reason), = raw.scan(str(tree)).bad
    assert src.name in reason and "field 'class ID'" in reason and "3_Grasslands___" in reason
    with pytest.raises(LulcInputError, match="field 'class ID'"):
        command.plan(str(tree), tile_px=32)


def test_a_csv_row_that_disagrees_with_the_name_is_bad_input(tree):
    path = tree / "Sentinel2LULC_CSV" / "29_UrbanBlUpArea_CSV.csv"
    rows = list(csv.reader(path.open(encoding="utf-8")))
    rows[2][4] = "0.999"  # gHM
    with path.open("w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows(rows)
    (key, reason), = raw.scan(str(tree)).bad
    assert "field 'gHM'" in reason and "29_UrbanBlUpArea_CSV.csv line 3" in reason and key.endswith(".jpg")
    p = command.plan(str(tree), tile_px=32, on_error="skip")
    assert len(p.skipped) == 1 and sum(len(v) for v in p.items.values()) == 19
    from prep.verify import verify

    m = command.prepare(str(tree), str(tree.parent / "rec"), tile_px=32, on_error="skip")
    assert m["totals"]["written"] == 19 and m["splits"]["train"]["skipped"] == 1
    assert "field 'gHM'" in m["skipped"][0]["reason"] and verify(str(tree.parent / "rec")) == []
    assert raw.scan(str(tree), use_csv=False).bad == ()


def test_unparseable_file_name_is_bad_input(tree):
    folder = tree / "Sentinel2LULC_JPEG" / "21_WaterBodyMari"
    shutil.copy(next(folder.iterdir()), folder / "holiday_photo.jpg")
    (key, reason), = raw.scan(str(tree)).bad
    assert key == "21_WaterBodyMari/holiday_photo.jpg" and "field 'class ID'" in reason


def test_a_wrong_sized_tile_is_skipped_naming_the_file_and_field(tree):
    p = command.plan(str(tree), tile_px=48, on_error="skip")
    (result, *_) = list(p.produce(p.items["train"][:1]))
    assert "field 'size'" in result.reason and "32x32" in result.reason


# --- records ----------------------------------------------------------------------------------------

def _examples(out_dir, split=""):
    import tensorflow as tf

    from prep import tfrecord

    for f in sorted(os.listdir(out_dir)):
        if f.endswith(".tfrecord") and f.startswith(split):
            for rec in tfrecord.read_records(os.path.join(out_dir, f)):
                yield tf.train.Example.FromString(rec).features.feature


def test_records_hold_the_jpeg_bytes_as_they_are_and_typed_metadata(tree, tmp_path):
    out = tmp_path / "rec"
    m = command.prepare(str(tree), str(out), tile_px=32)
    assert m["schema"] == "jpeg" and m["totals"]["written"] == 20
    base = raw.class_root(str(tree))
    for feat in _examples(out):
        key = feat["patch_id"].bytes_list.value[0].decode()
        with open(os.path.join(base, key), "rb") as f:
            assert feat["image/jpeg"].bytes_list.value[0] == f.read()
        n = raw.parse_name(key)
        assert feat["label/index"].int64_list.value == [n.index]
        assert feat["meta/class_name"].bytes_list.value[0].decode() == n.class_name
        assert feat["meta/purity"].float_list.value[0] == pytest.approx(n.purity)
        assert feat["meta/ghm"].float_list.value[0] == pytest.approx(n.ghm)
        assert tuple(np.frombuffer(feat["geo/latlon"].bytes_list.value[0], "<f8")) == (n.lat, n.lon)
        assert feat["geo/admin1"].bytes_list.value[0].decode() == n.admin1
        assert feat["meta/num_s2_images"].int64_list.value[0] >= 20


def test_the_reader_decodes_jpeg_records_to_rgb(tree, tmp_path):
    import tensorflow as tf
    from PIL import Image

    from prep import reader

    out = tmp_path / "rec"
    command.prepare(str(tree), str(out), tile_px=32)
    ds = reader.make_dataset(out, "train", bands="rgb", batch_size=64, normalize=None)
    x, y = next(iter(ds))
    assert x["image"].shape[1:] == (32, 32, 3) and x["image"].dtype.name == "float32"
    first = next(_examples(out, "train-"))
    key = first["patch_id"].bytes_list.value[0].decode()
    path = os.path.join(raw.class_root(str(tree)), key)
    with open(path, "rb") as f:
        want = tf.io.decode_jpeg(f.read(), channels=3).numpy().astype(np.float32)
    assert (x["image"][0].numpy() == want).all()  # R, G, B in the file's channel order
    pil = np.asarray(Image.open(path).convert("RGB"), np.float32)
    assert np.abs(x["image"][0].numpy() - pil).mean() < 2  # another decoder: only rounding differs
    assert int(y[0]) == raw.parse_name(key).index


def test_tiff_tiles_become_uint8_rgb_records(tmp_path):
    root = tmp_path / "tif"
    synthetic.write_tree(str(root), per_class=5, tile_px=16, seed=2, fmt="tiff", classes=(5, 6))
    out = tmp_path / "rec"
    m = command.prepare(str(root), str(out), tile_px=16)
    assert m["schema"] == "raw" and m["totals"]["written"] == 10
    feat = next(_examples(out))
    key = feat["patch_id"].bytes_list.value[0].decode()
    x = raw.read_tiff_rgb(os.path.join(raw.class_root(str(root)), key))
    for c, b in enumerate(sp.BAND_NAMES):
        assert feat[f"bands/{b}"].bytes_list.value[0] == x[..., c].tobytes()


# --- folds --------------------------------------------------------------------------------------------

def test_stratified_folds_are_balanced_per_class_deterministic_and_seeded():
    labels = np.repeat(np.arange(29), np.arange(5, 34))
    f = fold_split.stratified_folds(labels, 5, seed=0)
    for c in range(29):
        counts = np.bincount(f[labels == c], minlength=5)
        assert counts.max() - counts.min() <= 1
    assert np.bincount(f).max() - np.bincount(f).min() <= 1
    assert (fold_split.stratified_folds(labels, 5, seed=0) == f).all()
    assert (fold_split.stratified_folds(labels, 5, seed=1) != f).any()


def test_folds_are_disjoint_and_cover_every_tile(tree, tmp_path):
    tests = []
    for k in range(5):
        p = command.plan(str(tree), test_fold=k, tile_px=32)
        train, test = {i[1] for i in p.items["train"]}, {i[1] for i in p.items["test"]}
        assert not train & test and len(train) + len(test) == 20
        tests.append(test)
    assert sorted(k for t in tests for k in t) == sorted({k for t in tests for k in t})
    assert sum(len(t) for t in tests) == 20
    with pytest.raises(Exception, match="test_fold"):
        command.plan(str(tree), test_fold=5, tile_px=32)


def test_grouped_folds_keep_each_group_in_one_fold():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, 400)
    groups = [f"g{g}" for g in rng.integers(0, 40, 400)]
    f = fold_split.grouped_folds(labels, groups, 5, seed=0)
    by_group = {}
    for g, k in zip(groups, f):
        by_group.setdefault(g, set()).add(int(k))
    assert all(len(v) == 1 for v in by_group.values())
    assert set(f.tolist()) == set(range(5)) and np.bincount(f).min() > 40
    assert fold_split.grid_group(41.38, 2.17) == "131:182" and fold_split.grid_group(-0.5, -0.5) == "89:179"


def test_split_file_and_partition_links(tree, tmp_path):
    s = raw.scan(str(tree))
    f, groups = command.assign_folds(s.tiles, 5, "country", 0)
    path = tmp_path / "folds.csv"
    command.write_fold_table(str(path), s.tiles, f, groups)
    table = command.read_fold_table(str(path))
    assert table == {t.key: int(k) for t, k in zip(s.tiles, f)}
    p = command.plan(str(tree), test_fold=1, split_file=str(path), tile_px=32)
    assert {i[1] for i in p.items["test"]} == {k for k, v in table.items() if v == 1}
    n = folds.partition_links(list(s.tiles), f, str(tmp_path / "parts"))
    assert n == 100
    test1 = list((tmp_path / "parts" / "partition1" / "test").rglob("*.jpg"))
    assert len(test1) == int((f == 0).sum()) and all(p.is_symlink() for p in test1)


def test_synthetic_labels_are_learnable_from_colour(tmp_path):
    from PIL import Image

    synthetic.write_tree(str(tmp_path), per_class=4, tile_px=32, seed=3, csvs=False)
    s = raw.scan(str(tmp_path))
    x = np.array([np.asarray(Image.open(t.path).convert("RGB"), np.float64).mean(axis=(0, 1)) for t in s.tiles])
    y = np.array([t.name.index for t in s.tiles])
    correct = 0
    for i in range(len(y)):  # leave-one-out nearest class mean
        others = np.arange(len(y)) != i
        means = np.array([x[others & (y == c)].mean(0) for c in range(29)])
        correct += int(np.argmin(((means - x[i]) ** 2).sum(1)) == y[i])
    assert len(y) == 116 and correct / len(y) > 0.95


def test_the_command_stops_on_bad_input_with_one_line_naming_file_and_field(tree, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    folder = tree / "Sentinel2LULC_JPEG" / "3_Grasslands___"
    shutil.copy(next(folder.iterdir()), folder / "3_Grasslands____80%_00001x_0.1_(+1.0,+2.0)_XX___.jpg")
    r = subprocess.run([sys.executable, "-m", "prep", "lulc", "--root_folder", str(tree), "--tile_px", "32",
                        "--out_dir", str(tmp_path / "out"), "--noprogress"], cwd=Path(__file__).parents[1],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "00001x" in r.stderr and "field 'image ID'" in r.stderr


def test_tfds_builder_folds_match_the_command_and_keep_metadata(tmp_path):
    import tensorflow_datasets as tfds

    from prep.datasets.sentinel2_global_lulc import tfds_builder

    root = tmp_path / "tif"
    synthetic.write_tree(str(root), per_class=5, tile_px=16, seed=4, fmt="tiff", classes=(2, 29))
    builder = tfds_builder.Sentinel2GlobalLulc(config="tiff_fold2", data_dir=str(tmp_path / "tfds"))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(root)))
    p = command.plan(str(root), test_fold=2, tile_px=16)
    assert builder.info.splits["test"].num_examples == len(p.items["test"])
    assert builder.info.splits["train"].num_examples == len(p.items["train"])
    ex = next(iter(tfds.as_numpy(builder.as_dataset(split="test"))))
    key = ex["patch_id"].decode()
    tile = raw.Tile(os.path.join(raw.class_root(str(root)), key), key, raw.parse_name(key))
    assert ex["image"].shape == (16, 16, 3) and ex["label"] == tile.name.index
    assert (ex["image"] == raw.decode(tile)).all()  # PNG: lossless
    assert ex["latitude"] == tile.name.lat and ex["admin1"].decode() == tile.name.admin1
