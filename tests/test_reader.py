"""prep.reader: decoding of both schemas, band selection, resampling, statistics, augmentation, determinism.

The prepared outputs are written by the real path: a synthetic raw archive (prep.synthetic) converted
by prep.bigearthnet / prep.so2sat.
"""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from prep import reader
from prep.datasets.bigearthnet import band_stats, raw
from prep.datasets.bigearthnet import command as prep_ben
from prep.datasets.bigearthnet import spec as ben
from prep.datasets.bigearthnet import synthetic as synth

NUM_PATCHES = 40


def prepare_bigearthnet(root, out, schema, num_patches=NUM_PATCHES, seed=0, shard_size_mb=2.0,
                        compression="NONE"):
    """A synthetic raw archive under ``root`` (written once) prepared into ``out`` with ``schema``."""
    if not os.path.exists(os.path.join(root, "train.csv")):
        synth.generate_bigearthnet(root, num_patches, seed=seed)
    lists = [os.path.join(root, f"{s}.csv") for s in ("train", "val", "test")]
    excl = [os.path.join(root, f) for f in (synth.NO_TARGET_LIST, synth.SNOW_LIST, synth.CLOUD_LIST)]
    prep_ben.prepare(str(root), str(out), lists, schema=schema, exclusion_lists=excl, shard_size_mb=shard_size_mb,
                     compression=compression)
    return str(out)


@pytest.fixture(scope="module")
def ben_dirs(tmp_path_factory):
    base = tmp_path_factory.mktemp("ben")
    root = base / "raw"
    return {
        "root": str(root),
        "compact": prepare_bigearthnet(root, base / "compact", "compact"),
        "upstream": prepare_bigearthnet(root, base / "upstream", "upstream"),
    }


def patch_names(data_dir, split):
    """Patch names in record order, parsed without the reader."""
    m = reader.load_manifest(data_dir)
    files = [os.path.join(data_dir, s["file"]) for s in m["splits"][split]["shards"]]
    desc = {"patch_name": tf.io.FixedLenFeature([], tf.string)}
    return [tf.io.parse_single_example(r, desc)["patch_name"].numpy().decode()
            for r in tf.data.TFRecordDataset(files)]


def collect(ds):
    feats, targets = [], []
    for x, y in ds:
        feats.append({k: v.numpy() for k, v in x.items()})
        targets.append(y.numpy())
    return {k: np.concatenate([f[k] for f in feats]) for k in feats[0]}, np.concatenate(targets)


def read(data_dir, split="train", **kw):
    kw.setdefault("batch_size", 8)
    return collect(reader.make_dataset(data_dir, split, **kw))


# --- decoding ---------------------------------------------------------------------------------


@pytest.mark.parametrize("schema", ["compact", "upstream"])
def test_pixel_exact_decoding_of_every_band(ben_dirs, schema):
    d = ben_dirs[schema]
    names = patch_names(d, "train")
    x, y = read(d, bands="10m+20m+60m", per_resolution=True, normalize=None)
    assert set(x) == {"10m", "20m", "60m"}
    assert len(names) == len(y) == reader.num_examples(reader.load_manifest(d), "train")
    order = {"10m": ben.BAND_PRESETS["10m"], "20m": ben.BAND_PRESETS["20m"], "60m": ben.BAND_PRESETS["60m"]}
    for i, name in enumerate(names):
        patch = raw.read_patch(ben_dirs["root"], name)
        for group, bands in order.items():
            for c, b in enumerate(bands):
                np.testing.assert_array_equal(x[group][i, :, :, c], patch["bands"][b].astype(np.float32),
                                              err_msg=f"{schema} {name} {b}")
        expected = np.zeros(19, np.float32)
        expected[ben.indices_19(ben.indices_43(patch["labels43"]))] = 1
        np.testing.assert_array_equal(y[i], expected)
    assert y.dtype == np.float32 and x["10m"].dtype == np.float32


def test_both_schemas_give_identical_batches(ben_dirs):
    a, ya = read(ben_dirs["compact"], "val", bands="all")
    b, yb = read(ben_dirs["upstream"], "val", bands="all")
    np.testing.assert_array_equal(a["image"], b["image"])
    np.testing.assert_array_equal(ya, yb)


def test_gzip_shards(ben_dirs, tmp_path):
    d = prepare_bigearthnet(ben_dirs["root"], tmp_path / "gz", "compact", compression="GZIP")
    assert reader.shard_files(d, reader.load_manifest(d), "train")[0].endswith(".tfrecord.gz")
    a, ya = read(d, "val", bands="rgb")
    b, yb = read(ben_dirs["compact"], "val", bands="rgb")
    np.testing.assert_array_equal(a["image"], b["image"])
    np.testing.assert_array_equal(ya, yb)


# --- selection and resampling -----------------------------------------------------------------


def test_input_spec_and_shapes_after_selection(ben_dirs):
    d = ben_dirs["compact"]
    m = reader.load_manifest(d)
    cases = {
        ("10m20m", False): {"image": (120, 120, 10)},
        ("all", False): {"image": (120, 120, 12)},
        ("rgb", False): {"image": (120, 120, 3)},
        ("20m", False): {"image": (60, 60, 6)},
        ("B01,B09", False): {"image": (20, 20, 2)},
        ("B12,B01,B04", False): {"image": (120, 120, 3)},
        ("10m+20m+60m", True): {"10m": (120, 120, 4), "20m": (60, 60, 6), "60m": (20, 20, 2)},
        ("B05,B02", True): {"20m": (60, 60, 1), "10m": (120, 120, 1)},
    }
    for (bands, per_res), spec in cases.items():
        assert reader.input_spec(m, bands, per_res) == spec, bands
        x, _ = next(iter(reader.make_dataset(d, "train", bands=bands, per_resolution=per_res, batch_size=3)))
        assert {k: tuple(v.shape[1:]) for k, v in x.items()} == spec, bands
        assert all(v.shape[0] == 3 for v in x.values())
    assert reader.input_spec(m, "10m20m") == {"image": (120, 120, 10)}
    assert reader.resolve_bands(ben.SPEC, "10m+20m+60m") == (
        "B04", "B03", "B02", "B08", "B05", "B06", "B07", "B8A", "B11", "B12", "B01", "B09")
    with pytest.raises(KeyError, match="B13"):
        reader.input_spec(m, "B02,B13")
    with pytest.raises(ValueError, match="repeats"):
        reader.input_spec(m, "10m+rgb")


@pytest.mark.parametrize("method", ["bicubic", "bilinear", "nearest"])
def test_resampling_matches_tf_image_resize(ben_dirs, method):
    d = ben_dirs["compact"]
    native, _ = read(d, "val", bands="10m+20m+60m", per_resolution=True, normalize=None)
    x, _ = read(d, "val", bands="all", resample=method, normalize=None)
    for c, b in enumerate(ben.BAND_NAMES):
        group = ben.SPEC.band(b).group
        src = native[group][..., list(reader.resolve_bands(ben.SPEC, "10m+20m+60m")).index(b)
                            - {"10m": 0, "20m": 4, "60m": 10}[group]]
        want = tf.image.resize(src[..., None], (120, 120), method=method).numpy()[..., 0]
        np.testing.assert_allclose(x["image"][..., c], want, rtol=1e-5, atol=1e-2, err_msg=f"{method} {b}")
        if group == "10m":
            np.testing.assert_array_equal(x["image"][..., c], src)
    # the per-axis weights are the op's own, and the plain-TF path gives the same numbers
    w = reader.resize_weights(60, 120, method)
    np.testing.assert_allclose(w.sum(1), 1.0, atol=1e-6)
    y, _ = read(d, "val", bands="all", resample=method, normalize=None, jit_compile=False)
    np.testing.assert_allclose(y["image"], x["image"], rtol=1e-5, atol=1e-2)


def test_unknown_resample_method(ben_dirs):
    with pytest.raises(ValueError, match="resample must be one of"):
        reader.make_dataset(ben_dirs["compact"], "train", resample="cubic")


# --- normalization ----------------------------------------------------------------------------


def test_each_band_gets_its_own_statistic_whatever_the_order(ben_dirs):
    d = ben_dirs["compact"]
    m = reader.load_manifest(d)
    raw_x, _ = read(d, "val", bands="all", normalize=None)
    stats = m["statistics"]["train"]
    for order in ("B08,B02,B04,B03", "B12,B01,B03", "10m20m"):
        names = reader.resolve_bands(ben.SPEC, order)
        for mode in ("manifest", "upstream"):
            x, _ = read(d, "val", bands=order, normalize=mode)
            for c, b in enumerate(names):
                mean, std = ((stats[b]["mean"], stats[b]["std"]) if mode == "manifest"
                             else band_stats.S2[b])
                want = (raw_x["image"][..., ben.BAND_NAMES.index(b)] - mean) / std
                np.testing.assert_allclose(x["image"][..., c], want, rtol=1e-4, atol=1e-4,
                                           err_msg=f"{order} {mode} {b}")
    # per-resolution delivery: every group normalized by band name too
    x, _ = read(d, "val", bands="B05,B02,B01", per_resolution=True, normalize="manifest")
    for g, b in (("20m", "B05"), ("10m", "B02"), ("60m", "B01")):
        got = x[g][..., 0]
        assert abs(got.mean() - (raw_x["image"][..., ben.BAND_NAMES.index(b)].mean() - stats[b]["mean"])
                   / stats[b]["std"]) < 0.1, b


def test_statistics_sources(ben_dirs, tmp_path):
    m = reader.load_manifest(ben_dirs["compact"])
    table = {"B02": {"mean": 1.0, "std": 2.0}, "B03": [3.0, 4.0]}
    assert reader.band_statistics(m, table, ("B03", "B02")) == {"B03": (3.0, 4.0), "B02": (1.0, 2.0)}
    path = tmp_path / "stats.json"
    path.write_text(json.dumps(table))
    assert reader.band_statistics(m, str(path), ("B02",)) == {"B02": (1.0, 2.0)}
    assert reader.band_statistics(m, None, ("B02",)) is None
    assert reader.band_statistics(m, "upstream", ("B8A",)) == {"B8A": band_stats.S2["B8A"]}
    with pytest.raises(ValueError, match="no statistics for band B04"):
        reader.band_statistics(m, table, ("B04",))
    no_stats = dict(m, statistics={})
    with pytest.raises(ValueError, match="no train-split statistics"):
        reader.band_statistics(no_stats, "manifest", ("B02",))
    cfg = reader.input_config(ben_dirs["compact"], m, "B04,B02", False, "bicubic", "manifest")
    assert cfg["bands"] == ["B04", "B02"] and cfg["classes"] == list(ben.LABELS_19)
    assert cfg["statistics"]["B02"]["mean"] == m["statistics"]["train"]["B02"]["mean"]
    assert cfg["input_spec"] == {"image": [120, 120, 2]} and cfg["task"] == "multi_label"


# --- augmentation and determinism -------------------------------------------------------------


def _dihedral_variants(img):
    out = []
    for t in range(8):
        v = img
        if t & 1:
            v = v[:, ::-1]
        if t & 2:
            v = v[::-1, :]
        if t & 4:
            v = np.swapaxes(v, 0, 1)
        out.append(v)
    return out


def _which(img, ref, atol=1e-3):
    hits = [t for t, v in enumerate(_dihedral_variants(ref)) if np.allclose(img, v, atol=atol)]
    assert hits, "augmented image is no flip/rotation of the original"
    return hits[0]


def test_augmentation_is_a_dihedral_transform_and_keeps_labels(ben_dirs):
    d = ben_dirs["compact"]
    plain, y0 = read(d, "train", bands="10m20m")
    aug, y1 = read(d, "train", bands="10m20m", augment="dihedral", seed=1, deterministic=True)
    np.testing.assert_array_equal(y0, y1)
    kinds = {_which(aug["image"][i], plain["image"][i]) for i in range(len(y0))}
    assert len(kinds) >= 4, kinds
    # per resolution: one transform per sample, the same for every group
    plain, _ = read(d, "train", bands="10m+20m+60m", per_resolution=True)
    aug, y2 = read(d, "train", bands="10m+20m+60m", per_resolution=True, augment="dihedral", seed=2,
                   deterministic=True)
    np.testing.assert_array_equal(y0, y2)
    for i in range(len(y0)):
        ts = {g: _which(aug[g][i], plain[g][i]) for g in ("10m", "20m", "60m")}
        assert len(set(ts.values())) == 1, ts
    # flips only: never a transpose of a non-symmetric image
    aug, _ = read(d, "train", bands="rgb", augment="flips", seed=3, deterministic=True)
    plain, _ = read(d, "train", bands="rgb")
    assert {_which(aug["image"][i], plain["image"][i]) for i in range(len(y0))} <= {0, 1, 2, 3}


def test_training_mode_shuffles_and_augments(ben_dirs):
    d = ben_dirs["compact"]
    x0, y0 = read(d, "train", bands="rgb")
    x1, y1 = read(d, "train", bands="rgb", training=True, shuffle_buffer=64, seed=5, deterministic=True)
    assert len(y1) == len(y0)
    assert not np.array_equal(y0, y1) or not np.array_equal(x0["image"], x1["image"])
    # same multiset of label rows
    assert sorted(map(tuple, y0)) == sorted(map(tuple, y1))


def test_deterministic_mode_gives_identical_batches(ben_dirs):
    d = ben_dirs["compact"]
    kw = dict(bands="10m20m", training=True, shuffle_buffer=32, batch_size=4, deterministic=True)

    def epochs(seed, n=2):
        ds = reader.make_dataset(d, "train", seed=seed, **kw)
        return [collect(ds) for _ in range(n)]

    a, b, c = epochs(11), epochs(11), epochs(12)
    for (xa, ya), (xb, yb) in zip(a, b):
        np.testing.assert_array_equal(xa["image"], xb["image"])
        np.testing.assert_array_equal(ya, yb)
    assert not np.array_equal(a[0][0]["image"], a[1][0]["image"])  # a new order each pass
    assert not np.array_equal(a[0][0]["image"], c[0][0]["image"])  # another seed, another order
    # skipping batches resumes the same sequence
    ds = reader.make_dataset(d, "train", seed=11, skip_batches=2, **kw)
    xs, ys = collect(ds)
    np.testing.assert_array_equal(xs["image"], a[0][0]["image"][8:])
    np.testing.assert_array_equal(ys, a[0][1][8:])


def test_drop_remainder_and_cache(ben_dirs, tmp_path):
    d = ben_dirs["compact"]
    m = reader.load_manifest(d)
    n = reader.num_examples(m, "train")
    sizes = [int(y.shape[0]) for _, y in reader.make_dataset(d, "train", bands="rgb", batch_size=7,
                                                              drop_remainder=True)]
    assert sizes == [7] * (n // 7) == [7] * reader.steps_per_epoch(m, "train", 7, drop_remainder=True)
    ds = reader.make_dataset(d, "train", bands="rgb", batch_size=7, cache=str(tmp_path / "cache"))
    a, b = collect(ds), collect(ds)
    np.testing.assert_array_equal(a[0]["image"], b[0]["image"])
    assert reader.steps_per_epoch(m, "train", 7) == -(-n // 7)


# --- errors and single-label data -------------------------------------------------------------


def test_errors_name_the_problem(ben_dirs, tmp_path):
    with pytest.raises(FileNotFoundError, match="no manifest"):
        reader.load_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text("{}")
    with pytest.raises(ValueError, match="not an eorecords manifest"):
        reader.load_manifest(tmp_path)
    with pytest.raises(ValueError, match="no split 'holdout'"):
        reader.make_dataset(ben_dirs["compact"], "holdout")
    with pytest.raises(ValueError, match="augment must be"):
        reader.make_dataset(ben_dirs["compact"], "train", augment="mixup")


def test_so2sat_float_bands_and_class_index_targets(tmp_path):
    from prep.datasets.so2sat import command as prep_so2sat
    from prep.datasets.so2sat import synthetic as synth_so2sat

    files = synth_so2sat.write_release(str(tmp_path / "h5"), 2, {"training": 24, "validation": 8, "testing": 8})
    out = str(tmp_path / "out")
    prep_so2sat.prepare(list(files.values()), out)
    m = reader.load_manifest(out)
    split = next(iter(m["splits"]))
    assert m["task"] == "single_label"
    x, y = read(out, split, bands="sen2", normalize=None)
    assert x["image"].shape[1:] == (32, 32, 10) and y.dtype == np.int32 and y.ndim == 1
    assert y.min() >= 0 and y.max() < 17
    # values are the float32 pixels of the records
    import h5py
    path = next(p for k, p in files.items() if k.split("/")[-1] in split or split in k)
    with h5py.File(path) as f:
        sen2 = f["sen2"][: len(y)].astype(np.float32)
        labels = f["label"][: len(y)].argmax(-1)
    np.testing.assert_array_equal(x["image"], sen2)
    np.testing.assert_array_equal(y, labels)
    xs, _ = read(out, split, bands="B4,VV_lee", normalize="manifest")
    assert xs["image"].shape[1:] == (32, 32, 2)
    with pytest.raises(reader.ReaderError, match="no per-band statistics are published for so2sat_lcz42"):
        reader.make_dataset(out, split, bands="sen2", normalize="upstream")


def test_fixed_offset_slicing_falls_back_when_a_record_differs(ben_dirs, tmp_path):
    """Bands are sliced at the first record's offsets; a batch holding a record with another layout
    (here: an extra feature sorted before the bands, as another writer might add) is parsed instead."""
    import shutil

    from prep import tfrecord

    src = ben_dirs["compact"]
    m = reader.load_manifest(src)
    dst = tmp_path / "mixed"
    dst.mkdir()
    shutil.copy(os.path.join(src, "manifest.json"), dst / "manifest.json")
    for split in m["splits"]:
        for sh in m["splits"][split]["shards"]:
            with tfrecord.TFRecordWriter(str(dst / sh["file"])) as w:
                for i, rec in enumerate(tfrecord.read_records(os.path.join(src, sh["file"]))):
                    if i % 3 == 2:
                        ex = tf.train.Example.FromString(rec)
                        ex.features.feature["aaa/extra"].bytes_list.value.append(b"x" * (i + 1))
                        rec = ex.SerializeToString()
                    w.write(rec)
    sizes = {f"bands/{b}": 2 * ben.SPEC.band(b).size for b in ("B02", "B05")}
    first = next(tfrecord.read_records(reader.shard_files(src, m, "train")[0]))
    layout_ = reader.band_layout(first, sizes)
    assert layout_ is not None and all(first[p:p + 8] for _, _, p in layout_.values())
    assert reader.band_layout(first, {"bands/B13": 10}) is None
    assert reader.band_layout(first, {"bands/B02": 10}) is None  # wrong size
    want, yw = read(src, "train", bands="all", normalize=None, fixed_offsets=False)
    got, yg = read(str(dst), "train", bands="all", normalize=None, batch_size=4)
    np.testing.assert_array_equal(got["image"], want["image"])
    np.testing.assert_array_equal(yg, yw)
    fast, _ = read(src, "train", bands="all", normalize=None)
    np.testing.assert_array_equal(fast["image"], want["image"])


def test_one_sentinel2_vocabulary_across_datasets():
    """ESA's zero-padded names everywhere, short forms as aliases, presets meaning the same bands."""
    from prep import datasets
    from prep.datasets.spec import canonical_band_name

    assert [canonical_band_name(n) for n in ("B2", "b04", "B8", "B8A", "b8a", "B08A", "B11", "VV", "VH_lee")] == [
        "B02", "B04", "B08", "B8A", "B8A", "B8A", "B11", "VV", "VH_lee"]
    ben, s2s = datasets.get("bigearthnet"), datasets.get("so2sat")
    for spec in (ben, s2s):
        assert spec.resolve_bands("B04,B03,B02") == spec.resolve_bands("B4,B3,B2") == ("B04", "B03", "B02")
        assert spec.band("b8a").name == "B8A"
    for preset in set(ben.band_presets) & set(s2s.band_presets) - {"all"}:
        assert ben.band_presets[preset] == s2s.band_presets[preset], preset
    assert {"rgb", "10m", "10m20m"} <= set(ben.band_presets) & set(s2s.band_presets)
