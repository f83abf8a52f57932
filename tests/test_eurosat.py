"""EuroSAT (multispectral): the stored band order, the class table, split files, bad input, records."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from prep import cli, tfrecord
from prep.datasets.eurosat import command, raw, synthetic
from prep.datasets.eurosat import spec as sp
from prep.datasets.eurosat.spec import EurosatInputError
from splits import eurosat as rules

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def prepare(root, out, workers: int = 1, **kw) -> dict:
    return cli.write_plan(command.plan(str(root), shard_size_mb=kw.pop("shard_size_mb", 10.0), **kw), str(out),
                          workers=workers)


def records(out) -> dict[str, dict]:
    """patch id -> parsed feature values of every record in ``out``, with its split under ``_split``."""
    import tensorflow as tf

    m = json.loads((Path(out) / "manifest.json").read_text())
    recs = {}
    for name, split in m["splits"].items():
        for sh in split["shards"]:
            for r in tfrecord.read_records(Path(out) / sh["file"]):
                f = tf.train.Example.FromString(r).features.feature
                v = {k: (list(x.bytes_list.value) or list(x.int64_list.value) or list(x.float_list.value))
                     for k, x in f.items()}
                v["_split"] = name
                recs[v["patch_id"][0].decode()] = v
    return recs


def split_paths(root) -> list[str]:
    return [str(Path(root) / f"eurosat-{s}.txt") for s in ("train", "val", "test")]


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    root = tmp_path_factory.mktemp("eurosat") / "raw"
    written = synthetic.write_archive(str(root), 5, seed=5, split_files=True)
    return root, written


def test_class_table_and_published_counts():
    # the published images per class, typed here from the dataset's description (27,000 in all)
    published = {"AnnualCrop": 3000, "Forest": 3000, "HerbaceousVegetation": 3000, "Highway": 2500,
                 "Industrial": 2500, "Pasture": 2000, "PermanentCrop": 2500, "Residential": 3000, "River": 2500,
                 "SeaLake": 3000}
    assert sp.OFFICIAL_COUNTS == published and sum(sp.OFFICIAL_COUNTS.values()) == sp.NUM_IMAGES == 27_000
    assert sp.CLASS_NAMES == tuple(sorted(published))  # the TFDS / torchgeo class index order
    assert sp.SPEC.num_classes == 10 and sp.SPEC.task == "single_label"
    # the stratified split of the published archive has exactly the common split files' sizes
    keys = [(c, n) for c, k in published.items() for n in range(1, k + 1)]
    splits = rules.stratified(keys)
    assert {s: len(v) for s, v in splits.items()} == rules.COMMON_SPLIT_SIZES == {"train": 16200, "val": 5400,
                                                                                  "test": 5400}
    for c, k in published.items():  # every class 60 / 20 / 20
        assert [sum(1 for x in splits[s] if x[0] == c) for s in rules.SPLITS] == [k * 3 // 5, k // 5, k // 5]
    assert sorted(sum(splits.values(), [])) == sorted(keys)  # disjoint and complete


def test_stratified_split_is_seeded_and_order_free():
    keys = [(c, n) for c in sp.CLASS_NAMES for n in range(1, 21)]
    a = rules.stratified(keys, seed=3)
    assert a == rules.stratified(list(reversed(keys)), seed=3)
    assert a != rules.stratified(keys, seed=4)
    assert {s: len(v) for s, v in rules.stratified(keys, (0.5, 0.25, 0.25)).items()} == {"train": 100, "val": 50,
                                                                                        "test": 50}
    with pytest.raises(ValueError, match="summing to 1"):
        rules.stratified(keys, (0.6, 0.3, 0.3))


def test_bands_are_named_by_their_stored_order(tmp_path):
    """File band k holds the constant 100 k: ``rgb`` must give B04, B03, B02 and B8A file band 13."""
    from prep import reader

    assert sp.BAND_NAMES[8:] == ("B09", "B10", "B11", "B12", "B8A")  # B8A stored last, not ninth
    pixels = (np.arange(1, 14, dtype=np.uint16) * 100)[:, None, None] * np.ones((1, 64, 64), np.uint16)
    synthetic.write_tif(str(tmp_path / "raw" / "EuroSAT_MS" / "Forest" / "Forest_1.tif"), pixels)
    prepare(tmp_path / "raw", tmp_path / "out")
    (rec,) = records(tmp_path / "out").values()
    stored = {b: int(np.frombuffer(rec[f"bands/{b}"][0], "<u2")[0]) for b in sp.BAND_NAMES}
    assert stored["B8A"] == 1300 and stored["B09"] == 900 and stored["B12"] == 1200 and stored["B01"] == 100
    assert [stored[b] for b in sp.SPEC.resolve_bands("land")] == [200, 300, 400, 500, 600, 700, 800, 1300, 1100, 1200]
    for bands, want in (("rgb", [400, 300, 200]), ("B8A,B09,B08", [1300, 900, 800])):
        x, y = next(iter(reader.make_dataset(tmp_path / "out", "train", bands=bands, normalize=None, batch_size=1)))
        assert x["image"].shape == (1, 64, 64, len(want))
        assert x["image"].numpy()[0, 5, 7].tolist() == want, bands
        assert int(y[0]) == sp.CLASS_INDEX["Forest"]


def test_records_equal_the_files(archive, tmp_path):
    import rasterio

    root, written = archive
    out = tmp_path / "out"
    m = prepare(root, out, workers=2)
    recs = records(out)
    assert len(recs) == len(written) == 50 and m["totals"]["written"] == 50
    assert {s: v["written"] for s, v in m["splits"].items()} == {"train": 30, "val": 10, "test": 10}
    for rel in written:
        cls, file = rel.split("/")
        rec = recs[file[:-4]]
        with rasterio.open(root / "EuroSAT_MS" / rel) as src:
            want, crs, t = src.read(), src.crs, src.transform
        for i, b in enumerate(sp.BAND_NAMES):
            np.testing.assert_array_equal(np.frombuffer(rec[f"bands/{b}"][0], "<u2").reshape(64, 64), want[i])
        assert rec["label/index"] == [sp.CLASS_NAMES.index(cls)] and rec["label/name"] == [cls.encode()]
        assert rec["meta/file"] == [rel.encode()] and rec["meta/number"] == [int(file[:-4].split("_")[1])]
        assert rec["geo/epsg"] == [crs.to_epsg()] and rec["geo/crs"][0].decode() == crs.to_wkt()
        assert np.frombuffer(rec["geo/transform"][0], "<f8").tolist() == list(t)[:6]
    assert m["eurosat"]["images_found"] == {c: 5 for c in sp.CLASS_NAMES}
    assert "stratified" in m["eurosat"]["split_rule"] and m["flags"]["fractions"] == [0.6, 0.2, 0.2]


def test_split_files_map_jpg_names_to_the_tifs(archive, tmp_path):
    root, written = archive
    out = tmp_path / "out"
    files = dict(zip(rules.SPLITS, split_paths(root)))
    m = prepare(root, out, split_files=files)
    recs = records(out)
    for split, path in files.items():
        names = [line.strip() for line in open(path) if line.strip()]
        assert all(n.endswith(".jpg") for n in names)
        got = [k for k, v in recs.items() if v["_split"] == split]
        assert sorted(got) == sorted(n[:-4] for n in names) and m["splits"][split]["written"] == len(names)
    assert m["eurosat"]["unlisted"] == [] and not (out / "missing.csv").exists()


def test_missing_and_unmatched_names_are_reported(archive, tmp_path):
    import shutil

    src, _ = archive
    root = tmp_path / "raw"
    shutil.copytree(src, root)
    test_names = [x.strip() for x in (root / "eurosat-test.txt").read_text().splitlines()]
    gone = test_names[0]  # listed, file deleted
    cls = gone.rsplit("_", 1)[0]
    os.remove(root / "EuroSAT_MS" / cls / gone.replace(".jpg", ".tif"))
    with open(root / "eurosat-test.txt", "a") as f:
        f.write("Glacier_7.jpg\n" + test_names[1] + "\n")  # a name of no class, a repeat
    synthetic.write_tif(str(root / "EuroSAT_MS" / "River" / "River_99.tif"), synthetic.image(8, np.random.default_rng(0)))
    files = dict(zip(rules.SPLITS, split_paths(root)))
    with pytest.raises(EurosatInputError, match=r"eurosat-test.txt: line 11: 'Glacier_7.jpg' names no EuroSAT class"):
        command.plan(str(root), files)
    os.rename(root / "eurosat-test.txt", root / "t.txt")
    lines = (root / "t.txt").read_text().splitlines()[:-2]
    (root / "eurosat-test.txt").write_text("\n".join(lines) + "\n")
    first = rf"\(first: line 1 '{gone}' -> {cls}/{gone[:-4]}.tif\)"
    with pytest.raises(EurosatInputError, match=rf"eurosat-test.txt: 1 of 50 listed images are not in .* {first} - "
                                                r".*--on_error=skip"):
        command.plan(str(root), files)
    os.replace(root / "t.txt", root / "eurosat-test.txt")
    out = tmp_path / "out"
    m = prepare(root, out, split_files=files, on_error="skip")
    t = m["splits"]["test"]
    assert (t["listed"], t["written"], t["skipped"], t["missing"]) == (12, 9, 2, 1)
    for s in m["splits"].values():
        assert s["listed"] == s["written"] + s["excluded"] + s["skipped"] + s["missing"]
    assert (out / "missing.csv").read_text() == f"split,key\ntest,{cls}/{gone[:-4]}.tif\n"
    reasons = " ".join(x["reason"] for x in m["skipped"])
    assert "'Glacier_7.jpg' names no EuroSAT class" in reasons and "listed again (first: " in reasons
    assert m["eurosat"]["unlisted"] == [{"file": "River/River_99.tif", "reason": "in no split file"}]


def bad_files(root: Path) -> dict[str, str]:
    """Three bad images beside good ones: file -> the problem the error must name."""
    base = root / "EuroSAT_MS"
    synthetic.write_archive(str(root), {"Forest": 2, "River": 2}, seed=1)
    rng = np.random.default_rng(0)
    good = synthetic.image(1, rng)
    synthetic.write_tif(str(base / "Forest" / "Forest_3.tif"), good[:12])
    synthetic.write_tif(str(base / "River" / "River_3.tif"), good.astype(np.uint8))
    synthetic.write_tif(str(base / "River" / "River_4.tif"), good[:, :32, :32])
    return {"Forest/Forest_3.tif": "12 bands, expected 13", "River/River_3.tif": "dtype uint8, expected uint16",
            "River/River_4.tif": "shape (32, 32), expected (64, 64)"}


def test_bad_input_names_the_file_on_the_command_line(tmp_path):
    bad = bad_files(tmp_path / "raw")
    args = [sys.executable, "-m", "prep", "eurosat", "-r", str(tmp_path / "raw"), "--fractions", "1,0,0",
            "--noprogress", "--workers", "1"]
    r = subprocess.run(args + ["-o", str(tmp_path / "a")], cwd=REPO, env=ENV, capture_output=True, text=True)
    first = sorted(bad)[0]
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert f"error: Forest_3: {tmp_path / 'raw' / 'EuroSAT_MS' / first}: {bad[first]}" in r.stderr
    r = subprocess.run(args + ["-o", str(tmp_path / "b"), "--on_error", "skip"], cwd=REPO, env=ENV,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    m = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert m["splits"]["train"]["written"] == 4 and m["splits"]["train"]["skipped"] == 3
    reasons = {x["key"]: x["reason"] for x in m["skipped"]}
    for rel, problem in bad.items():
        assert reasons[rel.split("/")[1][:-4]].startswith(f"{tmp_path / 'raw' / 'EuroSAT_MS' / rel}: {problem}")
    r = subprocess.run(args[:6] + ["-o", str(tmp_path / "c"), "--fractions", "0.5,0.5,0.5"], cwd=REPO, env=ENV,
                       capture_output=True, text=True)
    assert r.returncode == 2 and "--fractions" in r.stderr and "Traceback" not in r.stderr


def test_a_misnamed_file_and_other_folders_are_reported(tmp_path):
    root = tmp_path / "raw"
    synthetic.write_archive(str(root), {"Forest": 2}, layout="")  # class folders at the root itself
    synthetic.write_tif(str(root / "Forest" / "River_1.tif"), synthetic.image(8, np.random.default_rng(0)))
    (root / "thumbnails").mkdir()
    with pytest.raises(EurosatInputError, match="River_1.tif: named for class 'River' but in the class folder 'Forest'"):
        command.plan(str(root))
    m = prepare(root, tmp_path / "out", on_error="skip", fractions=(1.0, 0.0, 0.0))
    assert m["splits"]["train"]["written"] == 2 and m["skipped"][0]["key"] == "Forest/River_1.tif"
    assert m["eurosat"]["other_folders"] == ["thumbnails"]
    with pytest.raises(EurosatInputError, match="no EuroSAT class folder"):
        command.plan(str(tmp_path / "out"))
    first_zip = tmp_path / "zip"  # the first EuroSATallBands.zip's deep layout
    synthetic.write_archive(str(first_zip), {"Pasture": 1}, layout="ds/images/remote_sensing/otherDatasets/sentinel_2/tif")
    assert raw.scan(str(first_zip)).images == {("Pasture", 1): "Pasture/Pasture_1.tif"}


def test_synthetic_labels_are_learnable_from_the_pixels():
    """A nearest-class-mean rule on per-band means classifies fresh synthetic images (what train.py relies on)."""
    rng = np.random.default_rng(1)
    means = np.stack([synthetic.image(c, rng).reshape(13, -1).mean(1) for c in range(10)])
    for c in range(10):
        x = synthetic.image(c, rng).reshape(13, -1).mean(1)
        assert int(np.argmin(np.abs(means - x).sum(1))) == c


def test_default_model_input_is_all_13_bands():
    from models import training
    from prep import datasets

    ds = datasets.dataset("eurosat")
    assert ds is datasets.dataset("eurosat_ms") is datasets.dataset("EuroSAT")
    assert training.default_inputs(ds.default_model, ds.spec) == ("all", False)
    assert ds.spec.resolve_bands("all") == sp.BAND_NAMES and ds.upstream_stats is None


def test_tfds_builder_reads_split_files_in_the_manual_folder(archive):
    from prep.datasets.eurosat import tfds_builder

    root, _ = archive
    items = tfds_builder.split_items(str(root))
    names = [x.strip()[:-4] for x in open(split_paths(root)[1]) if x.strip()]
    assert [r.split("/")[1][:-4] for r in items["val"][1]] == names
    values = next(r for r in raw.produce(items["val"][1][:1], items["val"][0])).values
    ex = tfds_builder.example(values, sp.SPEC.resolve_bands("rgb"))
    assert ex["image"].shape == (64, 64, 3) and ex["image"].dtype == np.uint16
    np.testing.assert_array_equal(ex["image"][..., 0], np.frombuffer(values["bands/B04"][0], "<u2").reshape(64, 64))


def test_split_list_flag_forms_and_its_first_name(archive, tmp_path):
    """--split_list repeated with NAME=FILE, as a comma list, and under its first name --split_files: one plan."""
    root, _ = archive
    train, val, test = split_paths(root)
    forms = {"repeated": ["--split_list", f"train={train}", "--split_list", f"val={val}", "--split_list",
                          f"test={test}"],
             "comma": ["--split_list", f"{train},{val},{test}"],
             "alias": ["--split_files", f"{train},{val},{test}"]}
    shards = {}
    for form, flags in forms.items():
        r = subprocess.run([sys.executable, "-m", "prep", "eurosat", "-r", str(root), "-o", str(tmp_path / form),
                            "--noprogress", "--workers", "1", *flags], cwd=REPO, env=ENV, capture_output=True,
                           text=True)
        assert r.returncode == 0, r.stderr[-2000:]
        m = json.loads((tmp_path / form / "manifest.json").read_text())
        shards[form] = {s: [sh["sha256"] for sh in v["shards"]] for s, v in m["splits"].items()}
    assert shards["repeated"] == shards["comma"] == shards["alias"] and set(shards["comma"]) == {"train", "val", "test"}
def test_split_files_with_stratified_split_flags_is_a_usage_error(archive, tmp_path):
    """--split_files replace the stratified split: --fractions or --split_seed beside them are refused, not ignored."""
    root, _ = archive
    files = ",".join(split_paths(root))
    base = [sys.executable, "-m", "prep", "eurosat", "-r", str(root), "--split_files", files, "--noprogress"]
    for extra in (["--fractions", "0.5,0.3,0.2"], ["--split_seed", "3"]):
        r = subprocess.run(base + ["-o", str(tmp_path / "o"), *extra], cwd=REPO, env=ENV, capture_output=True,
                           text=True)
        assert r.returncode == 2 and extra[0] in r.stderr and "--split_list" in r.stderr, r.stderr
        assert "Traceback" not in r.stderr and not (tmp_path / "o").exists()


def test_a_split_file_that_is_not_text_names_the_file(archive, tmp_path):
    """A binary (non-UTF-8) split file: one line naming it and exit 1, never a UnicodeDecodeError traceback."""
    root, _ = archive
    bad = tmp_path / "eurosat-train.txt"
    bad.write_bytes(b"\xff\xfe\x00AnnualCrop_1.jpg\n")
    with pytest.raises(EurosatInputError, match="not a readable split file"):
        command.plan(str(root), {"train": str(bad)})
    r = subprocess.run([sys.executable, "-m", "prep", "eurosat", "-r", str(root), "-o", str(tmp_path / "o"),
                        "--split_files", str(bad), "--noprogress"], cwd=REPO, env=ENV, capture_output=True, text=True)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith(f"error: {bad}: not a readable split file")


def test_a_folder_given_as_split_file_is_named_as_a_folder(archive):
    root, _ = archive
    with pytest.raises(EurosatInputError, match="a folder, not a split file"):
        command.parse_split_files([f"train={root}"])
