"""prep.bigearthnet end to end on the six real patches (and renamed copies of them)."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import rasterio
import tensorflow as tf

from prep import shards, tfrecord
from prep.datasets.bigearthnet import command as cli
from prep.datasets.bigearthnet import spec as ben
from prep.features import feature_description
from prep.verify import verify
from splits import bigearthnet as official
from tests.conftest import write_split

# 19-class labels worked out by hand from each real patch's JSON (43-class names -> table).
HAND_LABELS = {
    "S2A_MSIL2A_20170613T101031_87_48": ["Arable land",
                                         "Land principally occupied by agriculture, with significant areas of natural vegetation"],
    "S2A_MSIL2A_20170617T113321_36_85": ["Arable land", "Pastures"],
    "S2A_MSIL2A_20170617T113321_4_55": ["Pastures"],
    "S2A_MSIL2A_20171221T112501_56_35": ["Complex cultivation patterns",
                                         "Land principally occupied by agriculture, with significant areas of natural vegetation",
                                         "Broad-leaved forest", "Transitional woodland, shrub"],
    "S2B_MSIL2A_20170924T93020_69_24": ["Coniferous forest", "Mixed forest", "Transitional woodland, shrub",
                                        "Inland wetlands", "Inland waters"],
    "S2B_MSIL2A_20180204T94161_57_38": ["Arable land", "Coniferous forest", "Mixed forest"],
}

# The upstream reader's feature description (keys, types, lengths), written out independently.
UPSTREAM_DESCRIPTION = {
    **{b: tf.io.FixedLenFeature([400], tf.int64) for b in ("B01", "B09")},
    **{b: tf.io.FixedLenFeature([14400], tf.int64) for b in ("B02", "B03", "B04", "B08")},
    **{b: tf.io.FixedLenFeature([3600], tf.int64) for b in ("B05", "B06", "B07", "B8A", "B11", "B12")},
    "BigEarthNet-19_labels": tf.io.VarLenFeature(tf.string),
    "BigEarthNet-19_labels_multi_hot": tf.io.FixedLenFeature([19], tf.int64),
    "patch_name": tf.io.VarLenFeature(tf.string),
}


def records(out, split):
    m = json.load(open(os.path.join(out, "manifest.json")))
    recs = []
    for sh in m["splits"][split]["shards"]:
        recs += list(tfrecord.read_records(os.path.join(out, sh["file"])))
    return recs


def shard_bytes(out):
    return {f: open(os.path.join(out, f), "rb").read() for f in sorted(os.listdir(out)) if ".tfrecord" in f}


@pytest.mark.parametrize("schema", ["compact", "upstream"])
def test_real_patches_round_trip_pixel_exact(tmp_path, s2_examples, schema):
    names = sorted(p.name for p in s2_examples.iterdir())
    split = write_split(tmp_path / "all.csv", names)
    out = str(tmp_path / "out")
    m = cli.prepare(str(s2_examples), out, [split], schema=schema, keep_excluded=True)
    assert m["splits"]["all"]["written"] == 6
    desc = UPSTREAM_DESCRIPTION if schema == "upstream" else feature_description(ben.SPEC.schema(schema))
    recs = records(out, "all")
    assert len(recs) == 6
    for rec, name in zip(recs, names):  # CSV order is kept
        p = tf.io.parse_single_example(rec, desc)
        got_name = tf.sparse.to_dense(p["patch_name"]).numpy()[0] if schema == "upstream" else p["patch_name"].numpy()[0]
        assert got_name.decode() == name
        for b in ben.BANDS:
            with rasterio.open(s2_examples / name / f"{name}_{b.name}.tif") as ds:
                ref = ds.read(1)
            if schema == "upstream":
                got = p[b.name].numpy().reshape(b.shape)
            else:
                got = np.frombuffer(p[f"bands/{b.name}"].numpy()[0], "<u2").reshape(b.shape)
            np.testing.assert_array_equal(got, ref)
        if schema == "upstream":
            label_names = [s.decode() for s in tf.sparse.to_dense(p["BigEarthNet-19_labels"]).numpy()]
        else:
            label_names = [s.decode() for s in tf.sparse.to_dense(p["labels43/names"]).numpy()]
            idx19 = tf.sparse.to_dense(p["labels19/index"]).numpy().tolist()
            assert [ben.LABELS_19[i] for i in idx19] == HAND_LABELS[name]
            assert p["meta/epsg"].numpy()[0] in (32629, 32633, 32635)
            meta = json.load(open(s2_examples / name / f"{name}_labels_metadata.json"))
            assert p["meta/coordinates"].numpy().tolist() == [meta["coordinates"][k] for k in ("ulx", "uly", "lrx", "lry")]
            assert label_names == sorted(meta["labels"], key=ben.LABELS_43.index)
            label_names = [ben.LABELS_19[i] for i in idx19]
        assert label_names == HAND_LABELS[name]
        mh = p[ben.SPEC.schema(schema).label_key].numpy()
        assert [ben.LABELS_19[i] for i in np.flatnonzero(mh)] == HAND_LABELS[name]


def test_official_exclusions_are_reported_and_counts_reconcile(tmp_path, s2_examples):
    names = sorted(p.name for p in s2_examples.iterdir())
    snow = [n for n in names if n in official.exclusion("seasonal_snow")]
    assert snow, "one of the real examples is on the seasonal-snow list"
    out = str(tmp_path / "out")
    m = cli.prepare(str(s2_examples), out, [write_split(tmp_path / "train.csv", names)])
    s = m["splits"]["train"]
    assert (s["listed"], s["written"], s["excluded"], s["skipped"]) == (6, 6 - len(snow), len(snow), 0)
    assert [e["key"] for e in m["excluded"]] == snow and "seasonal snow" in m["excluded"][0]["reason"]
    assert verify(out) == []


def test_determinism_across_worker_counts_and_gzip(tmp_path, archive):
    root, names = archive(18)
    split = write_split(tmp_path / "train.csv", names)
    outs = {}
    for workers in (1, 2):
        out = str(tmp_path / f"out{workers}")
        cli.prepare(str(root), out, [split], shard_size_mb=0.8, workers=workers, keep_excluded=True)
        outs[workers] = out
    a, b = shard_bytes(outs[1]), shard_bytes(outs[2])
    per = shards.records_per_shard(ben.SPEC, ben.SPEC.schema("compact"), 0.8)
    assert per == 4 and len(a) == 6 and a == b  # 24 patches, 4 per shard
    ma, mb = (open(os.path.join(o, "manifest.json")).read() for o in (outs[1], outs[2]))
    assert ma == mb
    # the command line in a fresh process (no TensorFlow loaded) forks its workers: same bytes again
    forked = str(tmp_path / "forked")
    subprocess.run([sys.executable, "-m", "prep.bigearthnet", "-r", str(root), "-o", forked, "-n", split,
                    "--shard_size_mb=0.8", "--keep_excluded", "--workers=2", "--noprogress"], check=True,
                   stdout=subprocess.DEVNULL)
    assert shard_bytes(forked) == a
    gz = str(tmp_path / "gz")
    cli.prepare(str(root), gz, [split], shard_size_mb=0.8, compression="GZIP", keep_excluded=True)
    assert verify(gz) == []
    ds = tf.data.TFRecordDataset(sorted(os.path.join(gz, f) for f in os.listdir(gz) if f.endswith(".gz")),
                                 compression_type="GZIP")
    assert list(r.numpy() for r in ds) == records(outs[1], "train")


def test_resume_after_interruption_gives_identical_output(tmp_path, archive):
    root, names = archive(10)
    split = write_split(tmp_path / "train.csv", names)
    ref = str(tmp_path / "ref")
    cli.prepare(str(root), ref, [split], shard_size_mb=0.8, keep_excluded=True)
    # interrupt: a patch of the third shard is broken, so the run stops after two finished shards
    per = shards.records_per_shard(ben.SPEC, ben.SPEC.schema("compact"), 0.8)
    victim = names[2 * per]
    band = root / victim / f"{victim}_B03.tif"
    saved = band.read_bytes()
    band.write_bytes(b"not a tiff")
    out = str(tmp_path / "out")
    with pytest.raises(shards.PrepError, match=f"{victim}.*B03"):
        cli.prepare(str(root), out, [split], shard_size_mb=0.8, keep_excluded=True)
    finished = {f: os.stat(os.path.join(out, f)).st_mtime_ns for f in os.listdir(out) if f.endswith(".tfrecord")}
    assert len(finished) == 2 and not os.path.exists(os.path.join(out, "manifest.json"))
    band.write_bytes(saved)
    cli.prepare(str(root), out, [split], shard_size_mb=0.8, keep_excluded=True)
    for f, mtime in finished.items():  # finished shards were kept, not rewritten
        assert os.stat(os.path.join(out, f)).st_mtime_ns == mtime
    assert shard_bytes(out) == shard_bytes(ref)
    assert open(os.path.join(out, "manifest.json")).read() == open(os.path.join(ref, "manifest.json")).read()
    # different flags on the same folder are refused
    with pytest.raises(shards.PrepError, match="schema"):
        cli.prepare(str(root), out, [split], schema="upstream", shard_size_mb=0.8, keep_excluded=True)


def test_killed_run_resumes(tmp_path, archive):
    root, names = archive(12)
    split = write_split(tmp_path / "train.csv", names)
    ref = str(tmp_path / "ref")
    cli.prepare(str(root), ref, [split], shard_size_mb=0.5, keep_excluded=True)
    out = str(tmp_path / "out")
    cmd = [sys.executable, "-m", "prep.bigearthnet", "-r", str(root), "-o", out, "-n", split, "--shard_size_mb=0.5",
           "--keep_excluded", "--workers=1", "--noprogress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    parts = os.path.join(out, ".parts")
    import time
    deadline = time.time() + 60
    while time.time() < deadline and not (os.path.isdir(parts) and any(f.endswith(".json") and "plan" not in f
                                                                        for f in os.listdir(parts))):
        time.sleep(0.01)
    proc.kill()
    proc.wait()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert shard_bytes(out) == shard_bytes(ref)


BAD_INPUTS = [
    ("missing_band", "B05", "not found"),
    ("wrong_size", "B02", "(60, 60)"),
    ("wrong_dtype", "B04", "float32"),
    ("corrupt", "B8A", "B8A"),
    ("malformed_json", "labels_metadata.json", "malformed JSON"),
    ("unknown_label", "labels_metadata.json", "Mars crater"),
]


def break_patch(root, name, how):
    d = root / name
    if how == "missing_band":
        os.remove(d / f"{name}_B05.tif")
    elif how in ("wrong_size", "wrong_dtype"):
        band = "B02" if how == "wrong_size" else "B04"
        src = d / f"{name}_{band}.tif"
        with rasterio.open(src) as ds:
            prof, arr = ds.profile, ds.read(1)
        if how == "wrong_size":
            arr, prof["width"], prof["height"] = arr[:60, :60], 60, 60
        else:
            arr, prof["dtype"] = arr.astype("float32"), "float32"
        with rasterio.open(src, "w", **prof) as ds:
            ds.write(arr, 1)
    elif how == "corrupt":
        p = d / f"{name}_B8A.tif"
        p.write_bytes(p.read_bytes()[:200])
    elif how == "malformed_json":
        (d / f"{name}_labels_metadata.json").write_text('{"labels": ["Pastures"')
    elif how == "unknown_label":
        p = d / f"{name}_labels_metadata.json"
        meta = json.loads(p.read_text())
        meta["labels"].append("Mars crater")
        p.write_text(json.dumps(meta))


@pytest.mark.parametrize("how,file_part,problem", BAD_INPUTS)
def test_bad_input_names_patch_file_and_problem(tmp_path, archive, how, file_part, problem):
    root, names = archive(0)
    victim = names[1]
    break_patch(root, victim, how)
    split = write_split(tmp_path / "train.csv", names)
    with pytest.raises(shards.PrepError) as e:
        cli.prepare(str(root), str(tmp_path / "fail"), [split], keep_excluded=True)
    msg = str(e.value)
    assert victim in msg and file_part in msg and problem in msg, msg
    m = cli.prepare(str(root), str(tmp_path / "skip"), [split], keep_excluded=True, on_error="skip")
    s = m["splits"]["train"]
    assert (s["listed"], s["written"], s["skipped"]) == (6, 5, 1)
    assert m["skipped"][0]["key"] == victim and problem in m["skipped"][0]["reason"]
    assert victim in cli.summary(m) and verify(str(tmp_path / "skip")) == []


def test_split_problems(tmp_path, archive):
    root, names = archive(0)
    train = write_split(tmp_path / "train.csv", names[:4] + ["S2A_MSIL2A_20990101T000000_1_1"])
    test = write_split(tmp_path / "test.csv", names[3:])
    with pytest.raises(shards.PrepError, match="also listed in split 'train'"):
        cli.prepare(str(root), str(tmp_path / "a"), [train, test], keep_excluded=True)
    m = cli.prepare(str(root), str(tmp_path / "b"), [train, test], keep_excluded=True, on_error="skip")
    reasons = {(s["split"], s["key"]): s["reason"] for s in m["skipped"]}
    assert "no patch folder" in reasons[("train", "S2A_MSIL2A_20990101T000000_1_1")]
    assert "also listed in split 'train'" in reasons[("test", names[3])]
    t = m["totals"]
    assert t["listed"] == 8 and t["listed"] == t["written"] + t["excluded"] + t["skipped"] and t["written"] == 6


def test_no_target_patches_are_excluded_or_kept(tmp_path, archive):
    root, names = archive(0)
    p = root / names[0] / f"{names[0]}_labels_metadata.json"
    meta = json.loads(p.read_text())
    meta["labels"] = ["Airports", "Bare rock"]
    p.write_text(json.dumps(meta))
    split = write_split(tmp_path / "train.csv", [names[0], names[2]])
    m = cli.prepare(str(root), str(tmp_path / "a"), [split])
    assert m["splits"]["train"]["excluded"] == 1 and "no 19-class target" in m["excluded"][0]["reason"]
    m = cli.prepare(str(root), str(tmp_path / "b"), [split], keep_excluded=True)
    assert m["splits"]["train"]["written"] == 2


def test_update_json_keeps_other_keys(tmp_path, archive):
    root, names = archive(0)
    split = write_split(tmp_path / "train.csv", names)
    before = {n: json.loads((root / n / f"{n}_labels_metadata.json").read_text()) for n in names}
    cli.prepare(str(root), str(tmp_path / "out"), [split], keep_excluded=True, update_json=True)
    for n in names:
        after = json.loads((root / n / f"{n}_labels_metadata.json").read_text())
        assert after["BigEarthNet_19_labels"] == HAND_LABELS[n]
        assert {k: v for k, v in after.items() if k != "BigEarthNet_19_labels"} == before[n]


def test_statistics_match_numpy(tmp_path, s2_examples):
    names = sorted(p.name for p in s2_examples.iterdir())
    m = cli.prepare(str(s2_examples), str(tmp_path / "out"), [write_split(tmp_path / "train.csv", names)],
                    keep_excluded=True)
    for band in ("B01", "B8A", "B12"):
        px = np.concatenate([rasterio.open(s2_examples / n / f"{n}_{band}.tif").read(1).ravel() for n in names])
        st = m["statistics"]["train"][band]
        assert st["mean"] == pytest.approx(px.mean()) and st["std"] == pytest.approx(px.std())
        assert (st["min"], st["max"]) == (px.min(), px.max())
        for q, v in st["percentiles"].items():
            assert v == np.percentile(px, float(q), method="lower")


def test_verify_detects_tampering(tmp_path, s2_examples):
    names = sorted(p.name for p in s2_examples.iterdir())
    out = tmp_path / "out"
    cli.prepare(str(s2_examples), str(out), [write_split(tmp_path / "train.csv", names)], keep_excluded=True)
    shard = next(f for f in out.iterdir() if f.suffix == ".tfrecord")
    data = bytearray(shard.read_bytes())
    data[5000] ^= 0xFF
    shard.write_bytes(bytes(data))
    problems = verify(str(out))
    assert any("SHA-256" in p for p in problems) and any("CRC" in p for p in problems)
    r = subprocess.run([sys.executable, "-m", "prep.verify", str(out)], capture_output=True, text=True)
    assert r.returncode == 1 and "MISMATCH" in r.stdout


def test_cli_upstream_style_flags_flagfile_and_help(tmp_path, s2_examples):
    names = sorted(p.name for p in s2_examples.iterdir())
    a = write_split(tmp_path / "train.csv", names[:3])
    b = write_split(tmp_path / "val.csv", names[3:])
    assert cli.expand_nargs(["x", "-n", a, b, "-l", "tensorflow"]) == ["x", "--splits", a, "--splits", b, "-l",
                                                                          "tensorflow"]
    flagfile = tmp_path / "prep.flags"
    flagfile.write_text(f"--root_folder={s2_examples}\n--out_folder={tmp_path / 'out'}\n--keep_excluded\n")
    r = subprocess.run([sys.executable, "-m", "prep.bigearthnet", f"--flagfile={flagfile}", "-n", a, b,
                        "--noprogress"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "train" in r.stdout and "val" in r.stdout and "patches/s" in r.stdout
    h = subprocess.run([sys.executable, "-m", "prep.bigearthnet", "--helpfull"], capture_output=True, text=True)
    for flag in ("root_folder", "out_folder", "splits", "library", "update_json", "schema", "shard_size_mb",
                 "compression", "workers", "on_error", "keep_excluded", "overwrite"):
        assert f"{flag}:" in h.stdout  # "--flag:" or "--[no]flag:", each with its help text


def test_extra_exclusion_lists(tmp_path, archive):
    root, names = archive(0)
    lst = write_split(tmp_path / "patches_with_haze.csv", [names[2]])
    split = write_split(tmp_path / "train.csv", names)
    m = cli.prepare(str(root), str(tmp_path / "a"), [split], exclusion_lists=[lst])
    reasons = {e["key"]: e["reason"] for e in m["excluded"]}
    assert reasons[names[2]] == "listed in patches_with_haze.csv"
    assert m["splits"]["train"]["written"] == 6 - len(reasons)
    m = cli.prepare(str(root), str(tmp_path / "b"), [split], exclusion_lists=[lst], keep_excluded=True)
    assert m["splits"]["train"]["written"] == 6


# --- the JSON box against the GeoTIFF georeference -----------------------------------------

def _geotiff_box(root, name) -> tuple:
    with rasterio.open(root / name / f"{name}_B02.tif") as ds:
        b = ds.bounds
    return tuple(int(v) for v in (b.left, b.top, b.right, b.bottom))


def _edit_box(c: dict, how: str) -> None:
    if how == "shifted_300km":
        c["ulx"] += 300_000
        c["lrx"] += 300_000
    elif how == "ulx_300km":
        c["ulx"] += 300_000
    elif how == "flipped":  # lry above uly
        c["uly"], c["lry"] = c["lry"], c["uly"]
    elif how == "span_1190":
        c["lrx"] -= 10
    elif how == "shifted_1m":  # within the 1 m tolerance
        c["ulx"] += 1
        c["lrx"] += 1


BAD_BOXES = [
    ("shifted_300km", "do not match the GeoTIFF georeference of B02"),
    ("ulx_300km", "are not a north-up box"),
    ("flipped", "are not a north-up box"),
    ("span_1190", "span 1190 x 1200 m, expected 1200 x 1200 m"),
    ("epsg", "projection EPSG:32601 does not match the GeoTIFF georeference of B02"),
]


@pytest.mark.parametrize("how,problem", BAD_BOXES)
def test_box_not_matching_the_geotiff_names_patch_json_and_both_boxes(tmp_path, archive, how, problem):
    root, names = archive(0)
    snow = official.exclusion("seasonal_snow")
    victim = next(n for n in names if n not in snow)
    p = root / victim / f"{victim}_labels_metadata.json"
    meta = json.loads(p.read_text())
    if how == "epsg":
        meta["projection"], n = re.subn(r'AUTHORITY\["EPSG","\d+"\]\]$', 'AUTHORITY["EPSG","32601"]]',
                                        meta["projection"])
        assert n == 1
    else:
        _edit_box(meta["coordinates"], how)
    p.write_text(json.dumps(meta))
    json_box = "({}, {}, {}, {})".format(*(meta["coordinates"][k] for k in ("ulx", "uly", "lrx", "lry")))
    tiff_box = "({}, {}, {}, {})".format(*_geotiff_box(root, victim))
    split = write_split(tmp_path / "train.csv", names)
    with pytest.raises(shards.PrepError) as e:
        cli.prepare(str(root), str(tmp_path / "fail"), [split])
    msg = str(e.value)
    for part in (victim, str(p), json_box, tiff_box, problem):
        assert part in msg, (part, msg)
    # --on_error=skip: listed as skipped with that reason, the rest written, the counts reconcile
    m = cli.prepare(str(root), str(tmp_path / "skip"), [split], on_error="skip")
    s = m["splits"]["train"]
    excluded = sum(n in snow for n in names)
    assert excluded >= 1
    assert (s["listed"], s["written"], s["excluded"], s["skipped"]) == (6, 6 - excluded - 1, excluded, 1)
    assert s["listed"] == s["written"] + s["excluded"] + s["skipped"]
    assert [k["key"] for k in m["skipped"]] == [victim]
    reason = m["skipped"][0]["reason"]
    assert problem in reason and json_box in reason and tiff_box in reason and str(p) in reason
    assert victim in cli.summary(m) and verify(str(tmp_path / "skip")) == []


def test_box_within_a_metre_passes(tmp_path, archive):
    root, names = archive(0)
    p = root / names[0] / f"{names[0]}_labels_metadata.json"
    meta = json.loads(p.read_text())
    _edit_box(meta["coordinates"], "shifted_1m")
    p.write_text(json.dumps(meta))
    m = cli.prepare(str(root), str(tmp_path / "out"), [write_split(tmp_path / "train.csv", names)],
                    keep_excluded=True)
    assert m["splits"]["train"]["written"] == 6


def test_real_and_synthetic_patches_pass_the_box_check(tmp_path, s2_examples, monkeypatch):
    from prep import tiff
    from prep.datasets.bigearthnet import raw
    from prep.datasets.bigearthnet.synthetic import generate_bigearthnet

    checked = []
    original = raw.check_coordinates

    def spy(name, *args, **kwargs):
        checked.append(name)
        return original(name, *args, **kwargs)

    monkeypatch.setattr(raw, "check_coordinates", spy)
    monkeypatch.setattr(tiff, "read_georef", None)  # the georeference comes from the bytes read for B02
    real = sorted(p.name for p in s2_examples.iterdir())
    for n in real:
        patch = raw.read_patch(str(s2_examples), n)
        assert patch["epsg"] in (32629, 32633, 32635)
    roots = {}
    for writer in ("native", "rasterio"):
        roots[writer] = tmp_path / writer
        generate_bigearthnet(roots[writer], 12, seed=5, tiff_writer=writer)
    synthetic = sorted(p.name for p in roots["native"].iterdir() if p.is_dir())
    for root in roots.values():
        for n in synthetic:
            raw.read_patch(str(root), n)
    assert checked == real + 2 * synthetic


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_b02_without_georeference_is_bad_input(tmp_path, archive):
    root, names = archive(0)
    victim = names[2]
    src = root / victim / f"{victim}_B02.tif"
    with rasterio.open(src) as ds:
        arr = ds.read(1)
    with rasterio.open(src, "w", driver="GTiff", width=120, height=120, count=1, dtype="uint16") as ds:
        ds.write(arr, 1)
    split = write_split(tmp_path / "train.csv", names)
    m = cli.prepare(str(root), str(tmp_path / "skip"), [split], keep_excluded=True, on_error="skip")
    assert [s["key"] for s in m["skipped"]] == [victim]
    assert "cannot be checked: the GeoTIFF B02 has no georeference" in m["skipped"][0]["reason"]
    assert f"{victim}_labels_metadata.json" in m["skipped"][0]["reason"]
