"""So2Sat LCZ42: definition, HDF5 -> TFRecord conversion, splits, geolocation, GeoTIFF export, bad input."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from prep import shards, tfrecord
from prep.datasets import get
from prep.datasets.so2sat import command as so2sat
from prep.datasets.so2sat import geotiff as so2sat_geotiff
from prep.datasets.so2sat import raw as raw_so2sat
from prep.datasets.so2sat import spec as s2s
from prep.datasets.so2sat import synthetic as synth
from prep.datasets.so2sat.raw import So2SatInputError

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO.parent / "shared" / "reference" / "so2sat"


# --- fixtures ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def v2(tmp_path_factory) -> dict[str, str]:
    """A small version-2 release with *_geo.h5 in the 'coord' layout."""
    root = tmp_path_factory.mktemp("so2sat_v2")
    return synth.write_release(str(root), 2, {"training": 45, "validation": 20, "testing": 17}, seed=3,
                               chunk_rows=16)


@pytest.fixture(scope="module")
def v2_out(v2, tmp_path_factory) -> str:
    out = str(tmp_path_factory.mktemp("so2sat_v2_out"))
    so2sat.prepare([v2["training"], v2["validation"], v2["testing"]], out, shard_size_mb=1.0, read_rows=7)
    return out


def parse_all(out: str, split: str, spec=s2s.SPEC) -> list[dict]:
    """Every record of a split, parsed with tf.io.parse_single_example, as numpy values."""
    import tensorflow as tf

    from prep.features import feature_description

    manifest = json.load(open(os.path.join(out, "manifest.json")))
    desc = feature_description(spec.schema("compact"))
    rows = []
    for sh in manifest["splits"][split]["shards"]:
        for rec in tfrecord.read_records(os.path.join(out, sh["file"])):
            ex = tf.io.parse_single_example(rec, desc)
            rows.append({k: (tf.sparse.to_dense(v) if isinstance(v, tf.SparseTensor) else v).numpy()
                         for k, v in ex.items()})
    return rows


def shard_bytes(out: str) -> dict[str, bytes]:
    return {p: open(os.path.join(out, p), "rb").read() for p in sorted(os.listdir(out)) if ".tfrecord" in p}


def make_h5(path, n=6, *, sen1=(32, 32, 8), sen2=(32, 32, 10), label_n=None, labels=None, drop=()):
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        if "sen1" not in drop:
            f["sen1"] = rng.random((n,) + sen1)
        if "sen2" not in drop:
            f["sen2"] = rng.random((n,) + sen2)
        if "label" not in drop:
            if labels is None:
                labels = np.eye(17)[np.arange(label_n if label_n is not None else n) % 17]
            f["label"] = labels
    return str(path)


# --- the definition ------------------------------------------------------------------------------

def test_spec_bands_classes_presets():
    spec = get("so2sat_lcz42")
    assert spec is s2s.SPEC and spec.task == "single_label"
    assert spec.band_names[:8] == ("VH_re", "VH_im", "VV_re", "VV_im", "VH_lee", "VV_lee", "C12_re", "C12_im")
    assert spec.band_names[8:] == ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")
    assert spec.schema().band_keys["B02"] == "bands/B2"  # records keep the keys they were first written with
    assert all(b.shape == (32, 32) and b.dtype == "float32" and b.resolution_m == 10 for b in spec.bands)
    assert spec.resolve_bands("rgb") == ("B04", "B03", "B02") == spec.resolve_bands("B4,B3,B2")
    assert spec.resolve_bands("sen1") == s2s.SEN1_BANDS and spec.resolve_bands("sen2") == s2s.SEN2_BANDS
    assert spec.resolve_bands("all") == spec.band_names
    assert spec.num_classes == 17 and spec.class_names[0] == "Compact high rise" and spec.class_names[-1] == "Water"
    schema = spec.schema("compact")
    assert schema.label_key == "label/index" and schema.label_encoding == "index"
    assert s2s.spec_for_dtype("float64").band("B2").dtype == "float64"
    with pytest.raises(ValueError):
        s2s.spec_for_dtype("uint16")


def test_class_table_matches_reference():
    path = REFERENCE / "lcz_classes.json"
    if not path.exists():
        pytest.skip("reference folder absent")
    ref = json.load(open(path))["classes"]
    assert [c["name"] for c in ref] == list(s2s.CLASS_NAMES)
    assert [c["lcz_code"] for c in ref] == list(s2s.LCZ_CODES)
    cities = json.load(open(REFERENCE / "city_epsg.json"))
    assert cities["training_cities"] == s2s.TRAINING_CITY_EPSG
    assert cities["validation_testing_cities"] == s2s.VALIDATION_TESTING_CITY_EPSG


def test_synthetic_files_have_the_real_layout(v2):
    with h5py.File(v2["training"]) as f:
        assert sorted(f) == ["label", "sen1", "sen2"]
        assert f["sen1"].shape == (45, 32, 32, 8) and f["sen1"].dtype == np.float64
        assert f["sen2"].shape == (45, 32, 32, 10) and f["sen2"].dtype == np.float64
        assert f["label"].shape == (45, 17)
        lab = f["label"][:]
        assert ((lab == 0) | (lab == 1)).all() and (lab.sum(1) == 1).all()
        dn = f["sen2"][:] * 10000
        assert np.allclose(dn, np.rint(dn), atol=1e-6)  # reflectance = integer DN / 10000
    with h5py.File(v2["training"].replace(".h5", "_geo.h5")) as g:
        assert sorted(g) == ["coord", "epsg", "tfw"]
        assert g["coord"].shape == (45, 6) and g["epsg"].shape == (45, 1) and g["tfw"].shape == (45, 6)
        assert set(g["epsg"][:, 0]) <= set(s2s.TRAINING_CITY_EPSG.values())


# --- conversion ----------------------------------------------------------------------------------

def test_round_trip_within_float32(v2, v2_out):
    manifest = json.load(open(os.path.join(v2_out, "manifest.json")))
    assert manifest["dataset"] == "so2sat_lcz42" and manifest["task"] == "single_label"
    assert list(manifest["splits"]) == ["train", "val", "test"]
    assert manifest["splits"]["train"]["written"] == 45 and len(manifest["splits"]["train"]["shards"]) > 1
    assert manifest["classes"] == list(s2s.CLASS_NAMES)
    assert [b["dtype"] for b in manifest["bands"]] == ["float32"] * 18
    recs = parse_all(v2_out, "train")
    with h5py.File(v2["training"]) as f, h5py.File(v2["training"].replace(".h5", "_geo.h5")) as g:
        sen1, sen2, label = f["sen1"][:], f["sen2"][:], f["label"][:]
        coord, epsg, tfw = g["coord"][:], g["epsg"][:, 0], g["tfw"][:]
    assert [int(r["meta/row"][0]) for r in recs] == list(range(45))
    for r in recs:
        i = int(r["meta/row"][0])
        assert r["patch_id"][0] == f"training.h5:{i}".encode()
        assert int(r["label/index"][0]) == int(np.argmax(label[i]))
        for c, name in enumerate(s2s.SEN1_BANDS):
            px = np.frombuffer(r[s2s.BAND_KEYS[name]][0], "<f4").reshape(32, 32)
            np.testing.assert_array_equal(px, sen1[i, :, :, c].astype(np.float32))
            np.testing.assert_allclose(px, sen1[i, :, :, c], rtol=2.0 ** -24, atol=0)
        for c, name in enumerate(s2s.SEN2_BANDS):
            px = np.frombuffer(r[s2s.BAND_KEYS[name]][0], "<f4").reshape(32, 32)
            np.testing.assert_allclose(px, sen2[i, :, :, c], rtol=2.0 ** -24, atol=0)
            # the DN survives the cast
            np.testing.assert_array_equal(np.rint(px.astype(np.float64) * 10000), np.rint(sen2[i, :, :, c] * 10000))
        geo = s2s.decode_geo(r)
        assert geo.epsg == epsg[i]
        assert geo.utm == tuple(coord[i, :2]) and geo.tfw == tuple(tfw[i])
        assert geo.pixel == tuple(int(v) for v in coord[i, 2:])
        a, b, c0, d, e, f0 = geo.transform
        assert (a, e, b, d) == (10.0, -10.0, 0.0, 0.0)
        # the centre given in 'coord' is 16 pixels from the upper-left corner
        assert (c0 + 160, f0 - 160) == pytest.approx(tuple(coord[i, :2]), abs=1e-6)
    counts = manifest["splits"]["train"]["class_counts"]
    assert sum(counts.values()) == 45
    assert counts[s2s.CLASS_NAMES[int(np.argmax(label[0]))]] >= 1


def test_statistics_and_verify(v2, v2_out):
    from prep.verify import verify

    assert verify(v2_out) == []
    manifest = json.load(open(os.path.join(v2_out, "manifest.json")))
    with h5py.File(v2["validation"]) as f:
        b4 = f["sen2"][:, :, :, 2].astype(np.float32).astype(np.float64)
    st = manifest["statistics"]["val"]["B04"]
    assert st["mean"] == pytest.approx(b4.mean(), rel=1e-9)
    assert st["min"] == pytest.approx(b4.min()) and st["max"] == pytest.approx(b4.max())


def test_keep_float64_is_exact(v2, tmp_path):
    out = str(tmp_path / "f64")
    manifest = so2sat.prepare([v2["testing"]], out, keep_float64=True, max_rows=5)
    assert manifest["bands"][0]["dtype"] == "float64" and manifest["flags"]["dtype"] == "float64"
    recs = parse_all(out, "test", s2s.spec_for_dtype("float64"))
    assert len(recs) == 5
    with h5py.File(v2["testing"]) as f:
        sen1 = f["sen1"][:5]
    for r in recs:
        i = int(r["meta/row"][0])
        px = np.frombuffer(r["bands/VV_lee"][0], "<f8").reshape(32, 32)
        np.testing.assert_array_equal(px, sen1[i, :, :, 5])


def test_same_shards_for_any_worker_count_and_resume(v2, v2_out, tmp_path):
    out2 = str(tmp_path / "w2")
    m2 = so2sat.prepare([v2["training"], v2["validation"], v2["testing"]], out2, shard_size_mb=1.0, read_rows=7,
                        workers=2)
    m1 = json.load(open(os.path.join(v2_out, "manifest.json")))
    assert m2["splits"] == m1["splits"]
    assert m2["statistics"] == m1["statistics"]
    assert shard_bytes(out2) == shard_bytes(v2_out)
    # the read size changes neither the shards nor the statistics
    out3 = str(tmp_path / "r64")
    m3 = so2sat.prepare([v2["training"], v2["validation"], v2["testing"]], out3, shard_size_mb=1.0, read_rows=64)
    assert shard_bytes(out3) == shard_bytes(v2_out) and m3["statistics"] == m1["statistics"]
    # a rerun after losing a shard rewrites it identically
    first = m2["splits"]["train"]["shards"][1]["file"]
    os.remove(os.path.join(out2, first))
    so2sat.prepare([v2["training"], v2["validation"], v2["testing"]], out2, shard_size_mb=1.0, read_rows=7)
    assert shard_bytes(out2) == shard_bytes(v2_out)


def test_chunked_compressed_input_gives_the_same_shards(v2, tmp_path):
    chunked = synth.write_file(str(tmp_path / "in" / "testing.h5"), 17, seed=3 * 1000 + 2, chunk_rows=16,
                               cities=s2s.VALIDATION_TESTING_CITY_EPSG, h5_chunks=True)["h5"]
    with h5py.File(chunked) as f:
        assert f["sen1"].chunks == (17, 32, 32, 8) and f["sen1"].compression == "gzip"
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    so2sat.prepare([v2["testing"]], a, read_rows=5)
    so2sat.prepare([chunked], b, read_rows=5)
    assert shard_bytes(a) == shard_bytes(b)


def test_without_geolocation_records_are_empty_geo(v2, tmp_path):
    out = str(tmp_path / "nogeo")
    so2sat.prepare([v2["validation"]], out, geolocation=False, max_rows=3)
    recs = parse_all(out, "val")
    assert [int(r["geo/epsg"][0]) for r in recs] == [0, 0, 0]
    assert all(r["geo/transform"][0] == b"" and s2s.decode_geo(r) is None for r in recs)


# --- split names ---------------------------------------------------------------------------------

def test_version3_split_names(tmp_path):
    rel = synth.write_release(str(tmp_path / "v3"), 3, {"training": 5, "testing": 4}, geo_layout="city")
    paths = list(rel.values())
    assert raw_so2sat.split_names_for(paths) == ["random_train", "random_test", "block_train", "block_test",
                                             "culture_10_train", "culture_10_test"]
    assert raw_so2sat.split_names_for([rel["block/training"], rel["block/testing"]]) == ["train", "test"]
    assert raw_so2sat.split_names_for(["/x/culture10_testing.h5", "/x/random-training.h5"]) == [
        "culture_10_test", "random_train"]
    assert raw_so2sat.split_names_for(["/d/training.h5", "/d/validation.h5", "/d/testing.h5"]) == [
        "train", "val", "test"]
    assert raw_so2sat.split_names_for(paths[:2], ["a", "b"]) == ["a", "b"]
    with pytest.raises(So2SatInputError, match="same split"):
        raw_so2sat.split_names_for([rel["random/training"], rel["block/training"]], ["x", "x"])
    with pytest.raises(So2SatInputError, match="same split"):
        raw_so2sat.split_names_for(["/a/training.h5", "/b/training.h5"])
    with pytest.raises(So2SatInputError, match="--split_names"):
        raw_so2sat.split_names_for(["/a/patches.h5"])
    with pytest.raises(So2SatInputError, match="2 names for 1"):
        raw_so2sat.split_names_for(["/a/training.h5"], ["a", "b"])

    out = str(tmp_path / "out")
    manifest = so2sat.prepare(paths, out)
    assert list(manifest["splits"]) == ["random_train", "random_test", "block_train", "block_test",
                                        "culture_10_train", "culture_10_test"]
    assert manifest["so2sat"]["release"] == 3
    assert manifest["so2sat"]["scenarios"] == ["block", "culture_10", "random"]
    recs = parse_all(out, "block_test")
    assert recs[0]["meta/source"][0] == b"block/testing.h5"
    geo = s2s.decode_geo(recs[0])  # 'city' layout: world-file order, no coord
    with h5py.File(rel["block/testing"].replace(".h5", "_geo.h5")) as g:
        tfw, city = g["tfw"][0], g["city"][0, 0].decode()
    assert geo.city == city and geo.pixel == ()
    assert geo.transform == (tfw[0], tfw[2], tfw[4], tfw[1], tfw[3], tfw[5])
    assert geo.utm == (tfw[4] + 160, tfw[5] - 160)
    assert geo.epsg == s2s.VALIDATION_TESTING_CITY_EPSG[city]


# --- GeoTIFF export ------------------------------------------------------------------------------

@pytest.mark.parametrize("layout", ["coord", "city"])
def test_geotiff_round_trip(tmp_path, layout):
    import rasterio

    info = synth.write_file(str(tmp_path / "validation.h5"), 30, geo_layout=layout,
                            cities=s2s.VALIDATION_TESTING_CITY_EPSG)
    out = str(tmp_path / "out")
    so2sat.prepare([info["h5"]], out)
    recs = {int(r["meta/row"][0]): r for r in parse_all(out, "val")}
    paths = so2sat_geotiff.export_geotiffs(info["h5"], "0,3-4,29", str(tmp_path / "tif"))
    assert len(paths) == 8
    with h5py.File(info["h5"]) as f:
        for path in paths:
            row = int(os.path.basename(path).split("_")[1])
            sensor = "sen1" if path.endswith("sen1.tif") else "sen2"
            geo = s2s.decode_geo(recs[row])
            with rasterio.open(path) as src:
                assert src.crs.to_epsg() == geo.epsg
                assert tuple(src.transform)[:6] == pytest.approx(geo.transform, abs=1e-9)
                assert src.count == (8 if sensor == "sen1" else 10) and src.dtypes[0] == "float32"
                # the patch centre lies at the record's UTM coordinates
                cx, cy = src.transform @ (16, 16)
                assert (cx, cy) == pytest.approx(geo.utm, abs=1e-6)
                np.testing.assert_array_equal(src.read(), f[sensor][row].transpose(2, 0, 1).astype(np.float32))
                assert src.tags()["lcz_index"] == str(int(np.argmax(f["label"][row])))
    with pytest.raises(So2SatInputError, match="beyond"):
        so2sat_geotiff.export_geotiffs(info["h5"], "30", str(tmp_path / "tif"))
    os.remove(info["geo"])
    with pytest.raises(So2SatInputError, match="no geolocation"):
        so2sat_geotiff.export_geotiffs(info["h5"], "0", str(tmp_path / "tif"))


def test_tfw_order_detection():
    assert raw_so2sat.detect_tfw_order(np.array([550335.858, 10, 0, 4183214.43, 0, 10]), "f") == "gdal"
    assert raw_so2sat.detect_tfw_order(np.array([10, 0, 0, -10, 550335.858, 4183214.43]), "f") == "worldfile"
    with pytest.raises(So2SatInputError, match="--tfw_order"):
        raw_so2sat.detect_tfw_order(np.zeros(6), "f")
    t = raw_so2sat.tfw_to_transform(np.array([[5.0, 10, 0, 7.0, 0, 10]]), "gdal")
    assert t.tolist() == [[10, 0, 5, 0, -10, 7]]


# --- bad input -----------------------------------------------------------------------------------

def test_missing_dataset(tmp_path):
    p = make_h5(tmp_path / "training.h5", drop=("sen2",))
    with pytest.raises(So2SatInputError, match=r"training\.h5: dataset 'sen2' missing"):
        so2sat.prepare([p], str(tmp_path / "o"))


def test_mismatched_rows(tmp_path):
    p = make_h5(tmp_path / "training.h5", n=6, label_n=4)
    with pytest.raises(So2SatInputError, match=r"training\.h5: .*'label' has rows 0\.\.3.*rows 4\.\.5"):
        so2sat.prepare([p], str(tmp_path / "o"))


def test_wrong_patch_shape(tmp_path):
    p = make_h5(tmp_path / "training.h5", sen2=(32, 32, 13))
    with pytest.raises(So2SatInputError, match=r"dataset 'sen2' rows 0\.\.5 has shape \(6, 32, 32, 13\)"):
        so2sat.prepare([p], str(tmp_path / "o"))


def test_non_one_hot_rows_are_named(tmp_path):
    labels = np.eye(17)[np.arange(80) % 17]
    labels[7, 3] = 1  # two ones
    labels[70] = 0  # none
    labels[71, 2] = 0.5  # soft
    p = make_h5(tmp_path / "training.h5", n=80, labels=labels)
    with pytest.raises(So2SatInputError, match=r"'label' rows 0\.\.79: 3 row\(s\) not one-hot.*rows 7, 70, 71"):
        so2sat.prepare([p], str(tmp_path / "o"))
    # the workers check too (e.g. when the planning check is bypassed)
    src = raw_so2sat.Source(p, "training.h5", "train", 80)
    with pytest.raises(So2SatInputError, match=r"'label' rows 64\.\.79: .*rows 70, 71"):
        list(raw_so2sat.produce([(0, r) for r in range(64, 80)], (src,), read_rows=16))


def test_truncated_file(tmp_path):
    p = synth.write_file(str(tmp_path / "testing.h5"), 20, geo=False)["h5"]
    data = open(p, "rb").read()
    open(p, "wb").write(data[: len(data) // 2])
    with pytest.raises(So2SatInputError, match=r"testing\.h5: truncated HDF5 file"):
        so2sat.prepare([p], str(tmp_path / "o"))
    open(p, "wb").write(b"not hdf5")
    with pytest.raises(So2SatInputError, match="not a readable HDF5"):
        so2sat.prepare([p], str(tmp_path / "o"))
    with pytest.raises(So2SatInputError, match="no such file"):
        so2sat.prepare([str(tmp_path / "nope_testing.h5")], str(tmp_path / "o"))


def test_geo_rows_must_match(tmp_path):
    info = synth.write_file(str(tmp_path / "testing.h5"), 10)
    with h5py.File(info["geo"], "a") as g:
        del g["tfw"]
        g["tfw"] = np.zeros((9, 6))
    with pytest.raises(So2SatInputError, match=r"testing_geo\.h5: .*images: rows 0\.\.9.*'tfw': rows 0\.\.8"):
        so2sat.prepare([info["h5"]], str(tmp_path / "o"))
    so2sat.prepare([info["h5"]], str(tmp_path / "o"), geolocation=False)  # fine without


def test_non_finite_pixels_fail_or_skip(tmp_path):
    p = synth.write_file(str(tmp_path / "testing.h5"), 12, geo=False)["h5"]
    with h5py.File(p, "a") as f:
        f["sen1"][5, 0, 0, 0] = np.nan
        f["sen2"][9, 1, 1, 1] = 1e39  # beyond float32
    with pytest.raises(shards.PrepError, match=r"testing\.h5: dataset 'sen1' row 5: 1 non-finite"):
        so2sat.prepare([p], str(tmp_path / "a"))
    m = so2sat.prepare([p], str(tmp_path / "b"), on_error="skip")
    assert m["splits"]["test"]["written"] == 10
    assert [s["key"] for s in m["skipped"]] == ["testing.h5:5", "testing.h5:9"]
    assert "float32 range" in m["skipped"][1]["reason"]
    m = so2sat.prepare([p], str(tmp_path / "c"), on_error="skip", keep_float64=True)
    assert [s["key"] for s in m["skipped"]] == ["testing.h5:5"]


# --- command line --------------------------------------------------------------------------------

def test_cli_convert_and_geotiff(v2, tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    out = tmp_path / "cli"
    cmd = [sys.executable, "-m", "prep.so2sat", "--h5", v2["validation"], v2["testing"], "--out", str(out),
           "--max_rows", "4", "--noprogress", "--workers", "1"]
    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "MB/s" in r.stdout
    m = json.load(open(out / "manifest.json"))
    assert {k: v["written"] for k, v in m["splits"].items()} == {"val": 4, "test": 4}
    cmd = [sys.executable, "-m", "prep.so2sat", "geotiff", "--h5", v2["testing"], "--rows", "2",
           "--sensors", "sen2", "--out", str(tmp_path / "tif")]
    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(tmp_path / "tif")) == ["testing_000002_sen2.tif"]
    bad = make_h5(tmp_path / "training.h5", drop=("label",))
    r = subprocess.run([sys.executable, "-m", "prep.so2sat", "--h5", bad, "--out", str(tmp_path / "x")],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "dataset 'label' missing" in r.stderr


def test_cli_several_values_after_one_flag():
    argv = ["prog", "--h5", "a.h5", "b.h5", "--geo", "none", "b_geo.h5", "--out", "o", "--split_names"]
    assert so2sat.expand_nargs(argv) == ["prog", "--h5", "a.h5", "--h5", "b.h5", "--geo", "none", "--geo",
                                         "b_geo.h5", "--out", "o", "--split_names"]


def test_synthetic_cli(tmp_path):
    from prep import datasets

    assert datasets.dataset("so2sat").synthetic == "prep.datasets.so2sat.synthetic"
    cmd = [sys.executable, "-m", "prep.synthetic", "so2sat", "--out", str(tmp_path), "--release", "3", "--rows", "3",
           "--geo_layout", "city"]
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    with h5py.File(tmp_path / "culture_10" / "testing_geo.h5") as g:
        assert sorted(g) == ["city", "epsg", "tfw"] and g["tfw"].shape == (3, 6)
    assert synth.size_arg("1.5GB") * (32 * 32 * 18 + 17) * 8 >= 1.5e9 and synth.size_arg("12") == 12
