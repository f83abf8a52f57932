"""Raw delivery and models.preprocess.Preprocess: the device path gives the host path's tensors.

The records are the "mini" BigEarthNet of tests/test_train.py (every grid 5x smaller, compact schema,
written by the real shard writer), so the raw-bytes slicing, resampling and augmentation paths of the
reader all run on real records.
"""
from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

import models
from models import preprocess
from prep import datasets, reader, shards
from prep.datasets.bigearthnet import synthetic as synth
from tests.test_train import MINI, produce_mini


@pytest.fixture(scope="module")
def mini_dir(tmp_path_factory):
    real_get = datasets.get
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(datasets, "get", lambda name: MINI if name == MINI.name else real_get(name))
        specs = synth.plan_bigearthnet(120, seed=4, split_fractions=(0.8, 0.1, 0.1), num_no_target=0,
                                       num_snow=0, num_cloud=0)
        splits = {s: [sp for sp in specs if sp.split == s] for s in ("train", "val", "test")}
        out = str(tmp_path_factory.mktemp("mini") / "records")
        shards.write_dataset(out, MINI, "compact", splits, produce_mini, records_per_shard=32, progress=False,
                             item_key=lambda sp: sp.name)
        yield out


def batches(data_dir, n=2, **kw):
    kw = {"batch_size": 16, "training": True, "seed": 11, "deterministic": True, "shuffle_buffer": 64, **kw}
    return list(reader.make_dataset(data_dir, "train", **kw).take(n))


@pytest.mark.parametrize("bands,per_resolution,augment", [("10m20m", False, "dihedral"),
                                                            ("10m+20m+60m", True, "dihedral"),
                                                            ("all", False, "flips")])
def test_device_preprocessing_gives_the_host_tensors_for_the_same_seed(mini_dir, bands, per_resolution, augment):
    m = reader.load_manifest(mini_dir)
    kw = dict(bands=bands, per_resolution=per_resolution, augment=augment)
    host = batches(mini_dir, **kw)
    raw = batches(mini_dir, raw=True, **kw)
    layer = preprocess.build_preprocess(m, bands, per_resolution)
    for (xh, yh), (xr, yr) in zip(host, raw):
        np.testing.assert_array_equal(yh.numpy(), yr.numpy())  # same records, same order
        bits = xr[preprocess.AUGMENT_KEY].numpy()
        assert bits.any() and not bits.all()
        if augment == "flips":
            assert not bits[:, 2].any()
        out = layer(xr)
        assert sorted(out) == sorted(xh)
        for k in xh:
            assert out[k].dtype == tf.float32
            np.testing.assert_allclose(out[k].numpy(), xh[k].numpy(), rtol=1e-5, atol=1e-4)
        # the draws are applied: without them the tensors differ
        plain = layer({k: v for k, v in xr.items() if k != preprocess.AUGMENT_KEY})
        assert any(not np.allclose(plain[k].numpy(), xh[k].numpy()) for k in xh)


def test_raw_delivery_is_the_stored_band_values(mini_dir):
    """Band-sequential uint16 groups equal the unnormalized per-band values, pixel for pixel."""
    kw = dict(bands="10m+20m+60m", per_resolution=True, training=False, augment=False)
    (xh, _), = batches(mini_dir, 1, normalize=None, **kw)
    (xr, _), = batches(mini_dir, 1, raw=True, **kw)
    assert preprocess.AUGMENT_KEY not in xr
    m = reader.load_manifest(mini_dir)
    spec = reader.layout(m, "10m+20m+60m", True).raw_input_spec()
    assert spec == {"raw_10m": ((4, 24, 24), "uint16"), "raw_20m": ((6, 12, 12), "uint16"),
                    "raw_60m": ((2, 4, 4), "uint16")}
    for g in ("10m", "20m", "60m"):
        r = xr[f"raw_{g}"]
        assert r.dtype == tf.uint16 and tuple(r.shape[1:]) == spec[f"raw_{g}"][0]
        np.testing.assert_array_equal(np.moveaxis(r.numpy(), 1, -1).astype(np.float32), xh[g].numpy())


def test_preprocess_against_an_independent_numpy_reference(mini_dir):
    """Flips/transposes by numpy, normalization by hand, resampling by tf.image.resize (not the gathers)."""
    m = reader.load_manifest(mini_dir)
    (xr, _), = batches(mini_dir, 1, raw=True, bands="10m20m")
    layer = preprocess.build_preprocess(m, "10m20m")
    got = layer(xr)["image"].numpy()
    stats = m["statistics"]["train"]
    lay = reader.layout(m, "10m20m")
    bits = xr[preprocess.AUGMENT_KEY].numpy()
    for i in range(got.shape[0]):
        parts = {}
        for g in lay.groups:
            a = np.moveaxis(xr[reader.raw_input_name(g)].numpy()[i], 0, -1).astype(np.float64)
            if bits[i, 0]:
                a = a[:, ::-1]
            if bits[i, 1]:
                a = a[::-1]
            if bits[i, 2]:
                a = a.transpose(1, 0, 2)
            for c, b in enumerate(g.bands):
                a[..., c] = (a[..., c] - stats[b]["mean"]) / stats[b]["std"]
            if g.shape != lay.target:
                a = tf.image.resize(a[None].astype(np.float32), lay.target, "bicubic").numpy()[0]
            for c, b in enumerate(g.bands):
                parts[b] = a[..., c]
        want = np.stack([parts[b] for b in lay.bands], -1)
        np.testing.assert_allclose(got[i], want, rtol=1e-4, atol=1e-4)


def test_keras_file_with_preprocessing_round_trips(mini_dir, tmp_path):
    m = reader.load_manifest(mini_dir)
    layer = preprocess.build_preprocess(m, "10m20m")
    inp = keras.Input((24, 24, 10), name="image")
    net = keras.Model(inp, keras.layers.Dense(19, name="logits")(keras.layers.GlobalAveragePooling2D()(inp)))
    full = preprocess.with_preprocess(net, layer)
    assert sorted(i.name for i in full.inputs) == ["raw_12x12", "raw_24x24"]
    (xr, _), = batches(mini_dir, 1, raw=True, bands="10m20m", training=False)
    (xh, _), = batches(mini_dir, 1, bands="10m20m", training=False)
    path = str(tmp_path / "serving.keras")
    full.save(path)
    loaded = models.load_model(path)
    np.testing.assert_allclose(loaded(xr).numpy(), net(xh["image"]).numpy(), rtol=1e-4, atol=1e-4)
    cfg = loaded.get_layer(layer.name).get_config()
    assert cfg["statistics"]["B02"] == pytest.approx([m["statistics"]["train"]["B02"]["mean"],
                                                      m["statistics"]["train"]["B02"]["std"]])


def test_half_precision_delivery_is_the_float32_delivery_rounded(mini_dir):
    (x32, _), = batches(mini_dir, 1, bands="10m20m")
    for dtype in ("bfloat16", "float16"):
        (xh, _), = batches(mini_dir, 1, bands="10m20m", output_dtype=dtype)
        assert xh["image"].dtype == tf.as_dtype(dtype)
        np.testing.assert_array_equal(xh["image"].numpy(), tf.cast(x32["image"], dtype).numpy())
    with pytest.raises(reader.ReaderError, match="output_dtype"):
        reader.make_dataset(mini_dir, "train", output_dtype="int8")


def test_sen12ms_float32_s1_with_clip_beside_uint16_s2(tmp_path):
    """Two stacks on one grid (float32 S1 clipped to [-25, 0] dB, uint16 S2): raw groups and device equivalence."""
    from prep import cli
    from prep.datasets.sen12ms import command, synthetic

    root = tmp_path / "raw"
    synthetic.write_archive(str(root), {("ROIs1158_spring", 63): 4, ("ROIs1868_summer", 5): 4}, seed=3)
    out = tmp_path / "out"
    cli.write_plan(command.plan(str(root), shard_size_mb=10.0), str(out), workers=1)
    m = reader.load_manifest(out)
    split = next(s for s in m["splits"] if reader.num_examples(m, s) >= 2)
    kw = dict(bands="s1s2", batch_size=2, training=True, seed=1, deterministic=True, shuffle_buffer=8)
    (xh, _), = list(reader.make_dataset(out, split, manifest=m, **kw).take(1))
    (xr, _), = list(reader.make_dataset(out, split, manifest=m, raw=True, **kw).take(1))
    dtypes = {k: v.dtype.name for k, v in xr.items() if k != preprocess.AUGMENT_KEY}
    assert sorted(dtypes.values()) == ["float32", "uint16"], dtypes
    s1 = next(v for v in xr.values() if v.dtype == tf.float32).numpy()
    assert np.nanmin(s1) < -25 or np.nanmax(s1) > 0  # the synthetic S1 leaves the clip range
    out_dev = preprocess.build_preprocess(m, "s1s2")(xr)["image"].numpy()
    np.testing.assert_allclose(out_dev, xh["image"].numpy(), rtol=1e-5, atol=1e-4)
