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
    (tmp_path / "t2").mkdir()  # no patch listed twice: the missing folder is the error
    with pytest.raises(shards.PrepError, match="1 of the 6 patches to prepare from the split files train.csv, "
                                               r"test.csv have no patch folder here \(5 present\)"):
        cli.prepare(str(root), str(tmp_path / "a"), [train, write_split(tmp_path / "t2" / "test.csv", names[4:])])
    m = cli.prepare(str(root), str(tmp_path / "b"), [train, test], keep_excluded=True, on_error="skip")
    reasons = {(s["split"], s["key"]): s["reason"] for s in m["skipped"]}
    assert list(reasons) == [("test", names[3])] and "also listed in split 'train'" in reasons[("test", names[3])]
    assert (tmp_path / "b" / "missing.csv").read_text() == "split,key\ntrain,S2A_MSIL2A_20990101T000000_1_1\n"
    t = m["totals"]
    assert (t["listed"], t["written"], t["skipped"], t["missing"]) == (8, 6, 1, 1)
    assert t["listed"] == t["written"] + t["excluded"] + t["skipped"] + t["missing"]


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
    # the last line counts the patches written, not those planned
    read = 6 - excluded
    assert cli.summary(m, 2.0).splitlines()[-1] == (
        f"wrote 1 shard: {read - 1} patches (1 skipped) in 2.0 s ({read / 2:.0f} patches/s read)")


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


# --- what a new user hit (root-folder lists, missing folders, flags, split names, reruns) ----------

def _lines(path):
    return [x.strip() for x in open(path).read().splitlines() if x.strip()]


def test_synthetic_archive_prepares_without_n_using_its_own_lists(tmp_path):
    """`prep.synthetic bigearthnet --num_patches 300` then `prep.bigearthnet -r raw -o records`: the split
    CSVs and the three exclusion lists in the root folder are used (they failed with `no patch folder`)."""
    raw, out = tmp_path / "raw", tmp_path / "records"
    for cmd in (["prep.synthetic", "bigearthnet", "--out_dir", str(raw), "--num_patches", "300"],
                ["prep.bigearthnet", "-r", str(raw), "-o", str(out), "--workers=2", "--noprogress"]):
        r = subprocess.run([sys.executable, "-m", *cmd], capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
    m = json.load(open(out / "manifest.json"))
    left_out = {n for f in ("patches_with_seasonal_snow.csv", "patches_with_cloud_and_shadow.csv",
                            "patches_with_no_19_class_targets.csv") for n in _lines(raw / f)}
    assert len(left_out) == 9  # 3 of each by default for 300 patches
    for split in ("train", "val", "test"):
        listed = _lines(raw / f"{split}.csv")
        s = m["splits"][split]
        assert (s["listed"], s["written"], s["missing"]) == (len(listed), len([n for n in listed if n not in left_out]), 0)
    assert m["totals"]["written"] == 291 and m["flags"]["split_source"] == "root folder"
    assert m["flags"]["exclusion_lists"] == ["patches_with_seasonal_snow.csv", "patches_with_cloud_and_shadow.csv",
                                             "patches_with_no_19_class_targets.csv"]
    assert verify(str(out)) == []


def test_root_folder_split_files_may_be_compressed_and_given_lists_win(tmp_path, archive):
    import bz2
    import lzma

    root, names = archive(0)
    (root / "train.csv.bz2").write_bytes(bz2.compress("".join(f"{n}\n" for n in names[:3]).encode()))
    (root / "test.csv").write_text("".join(f"{n}\n" for n in names[3:]))
    m = cli.prepare(str(root), str(tmp_path / "a"), keep_excluded=True)
    assert {k: s["written"] for k, s in m["splits"].items()} == {"train": 3, "test": 3}
    m = cli.prepare(str(root), str(tmp_path / "b"), [write_split(tmp_path / "all.csv", names)], keep_excluded=True)
    assert list(m["splits"]) == ["all"] and m["flags"]["split_source"] == "split files"
    xz = tmp_path / "mine.txt.xz"
    xz.write_bytes(lzma.compress("".join(f"{n}\t{i}\n" for i, n in enumerate(names)).encode()))
    m = cli.prepare(str(root), str(tmp_path / "c"), [str(xz)], keep_excluded=True)
    assert list(m["splits"]) == ["mine"] and m["splits"]["mine"]["written"] == 6


def test_official_splits_with_missing_folders_say_how_many_and_what_to_pass(tmp_path, s2_examples):
    out = tmp_path / "out"
    with pytest.raises(shards.PrepError) as e:
        cli.prepare(str(s2_examples), str(out))
    msg = str(e.value)
    for part in ("519,279 of the 519,284 patches to prepare from the official splits", "(5 present)",
                 "1 patch folder(s) here are in none of these splits", "-n train.csv val.csv test.csv",
                 "train.csv, val.csv and test.csv", "--on_error=skip", "missing.csv"):
        assert part in msg, (part, msg)
    assert not out.exists()  # refused while planning: nothing written, nothing to block a rerun
    r = subprocess.run([sys.executable, "-m", "prep.bigearthnet", "-r", str(s2_examples), "-o", str(out),
                        "--noprogress"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and r.stderr.startswith("error: ")
    assert "519,279 of the 519,284" in r.stderr and "--on_error=skip" in r.stderr


def test_partial_archive_with_skip_plans_only_the_patches_present(tmp_path, s2_examples):
    """The six real patches against the official splits: a handful of shards, a small manifest, the
    missing patches counted per split and listed in missing.csv, counts reconciling."""
    out = tmp_path / "out"
    m = cli.prepare(str(s2_examples), str(out), on_error="skip")
    tfrecords = sorted(f.name for f in out.iterdir() if ".tfrecord" in f.name)
    assert tfrecords == ["test-00000-of-00001.tfrecord", "train-00000-of-00001.tfrecord",
                         "val-00000-of-00001.tfrecord"]
    assert (out / "manifest.json").stat().st_size < 50_000
    official_sizes = {s: len(official.official_split(s)) for s in official.SPLITS}
    written = {"train": 4, "val": 0, "test": 1}
    for split, s in m["splits"].items():
        assert (s["listed"], s["written"], s["excluded"], s["skipped"]) == (official_sizes[split], written[split], 0, 0)
        assert s["missing"] == s["listed"] - s["written"]
        assert s["listed"] == s["written"] + s["excluded"] + s["skipped"] + s["missing"]
    assert m["totals"]["missing"] == 519_279 and m["missing_list"] == "missing.csv"
    rows = (out / "missing.csv").read_text().splitlines()
    assert rows[0] == "split,key" and len(rows) == 1 + 519_279
    assert rows[1] == f"train,{official.official_split('train')[0]}"
    present = {p.name for p in s2_examples.iterdir()}
    assert not present & {r.split(",")[1] for r in rows[1:]}
    assert m["skipped"] == [] and "missing   519279" in cli.summary(m) and verify(str(out)) == []
    # deterministic: a second folder gets the same bytes, a rerun keeps everything
    again = tmp_path / "again"
    cli.prepare(str(s2_examples), str(again), on_error="skip", workers=2)
    for f in ("manifest.json", "missing.csv", *tfrecords):
        assert (again / f).read_bytes() == (out / f).read_bytes(), f
    m2 = cli.prepare(str(s2_examples), str(out), on_error="skip")
    assert m2.run["shards_kept"] == 3 and m2.run["shards_written"] == 0
    assert (out / "missing.csv").read_bytes() == (again / "missing.csv").read_bytes()


def test_several_values_after_one_flag_for_every_multi_value_flag(tmp_path):
    """`-n a b c`, `--exclusion_lists a b` (and So2Sat's `--h5`, `--split_names`, `--geo`) after one
    flag, the flag repeated, and `--flag=a`: all the same."""
    from absl import flags as absl_flags

    from prep.datasets.so2sat import command as so2sat
    from tests.conftest import command_flags

    def parse(module, argv):
        return absl_flags.FLAGS(["prog"] + module.expand_nargs(argv))

    with command_flags(cli) as f:
        for argv in (["-n", "a", "b", "c", "--exclusion_lists", "x", "y"],
                     ["-n", "a", "--splits", "b", "-n=c", "--exclusion_lists", "x", "--exclusion_lists", "y"],
                     ["--splits=a", "-n", "b", "c", "--exclusion_lists=x", "--exclusion_lists", "y", "-r", "r"]):
            f.unparse_flags()
            assert parse(cli, argv) == ["prog"]
            assert (f.splits, f.exclusion_lists) == (["a", "b", "c"], ["x", "y"]), argv
    with command_flags(so2sat) as f:
        for argv in (["--h5", "a.h5", "b.h5", "--geo", "none", "b_geo.h5", "--split_names", "s", "t"],
                     ["--h5=a.h5", "--h5", "b.h5", "--geo=none", "--geo=b_geo.h5", "--split_names", "s,t"],
                     ["--h5", "a.h5", "--h5=b.h5", "--geo", "none", "--geo", "b_geo.h5", "--split_names=s",
                      "--split_names", "t"]):
            f.unparse_flags()
            assert parse(so2sat, argv) == ["prog"]
            assert (f.h5, f.geo, so2sat.split_list(f.split_names)) == (["a.h5", "b.h5"], ["none", "b_geo.h5"],
                                                                        ["s", "t"]), argv


def test_exclusion_lists_after_one_flag_on_the_command_line(tmp_path, archive):
    root, names = archive(0)
    a = write_split(tmp_path / "haze.csv", [names[0]])
    b = write_split(tmp_path / "smoke.csv", [names[1]])
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "prep.bigearthnet", "-r", str(root), "-o", str(out), "-n",
                        write_split(tmp_path / "train.csv", names), "--exclusion_lists", a, b, "--noprogress"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    m = json.load(open(out / "manifest.json"))
    reasons = {e["key"]: e["reason"] for e in m["excluded"]}
    assert reasons[names[0]] == "listed in haze.csv" and reasons[names[1]] == "listed in smoke.csv"
    assert m["flags"]["exclusion_lists"] == ["haze.csv", "smoke.csv"]


def test_split_files_are_named_without_any_list_extension(tmp_path, archive):
    from prep import reader

    for path, name in (("train.csv", "train"), ("d/mytrain.txt", "mytrain"), ("val.lst.xz", "val"),
                       ("x/fold.1.tsv.gz", "fold.1"), ("test.csv.bz2", "test"), ("a.list", "a"), ("b.txt.bz2", "b")):
        assert official.split_name(path) == name, path
    root, names = archive(0)
    out = tmp_path / "out"
    m = cli.prepare(str(root), str(out), [write_split(tmp_path / "mytrain.txt", names)], keep_excluded=True)
    assert list(m["splits"]) == ["mytrain"] and m["flags"]["splits"] == ["mytrain"]
    with pytest.raises(reader.ReaderError, match=r"no train-split statistics \(splits: mytrain\)"):
        reader.make_dataset(str(out), split="train")  # normalised with the train split's statistics
    with pytest.raises(reader.ReaderError, match=r"no split 'train' \(splits: mytrain\)"):
        reader.make_dataset(str(out), split="train", normalize=None)
    with pytest.raises(reader.ReaderError, match=r"no train-split statistics \(splits: mytrain\)"):
        reader.band_statistics(reader.load_manifest(str(out)), "manifest", ["B02"])


def _parts(out):
    return sorted(os.listdir(os.path.join(out, ".parts")))


def test_a_failed_run_that_finished_no_shard_does_not_block_a_rerun(tmp_path, archive):
    root, names = archive(0)
    break_patch(root, names[1], "corrupt")
    split = write_split(tmp_path / "train.csv", names)
    out = str(tmp_path / "out")
    with pytest.raises(shards.PrepError, match=names[1]):
        cli.prepare(str(root), out, [split], keep_excluded=True)
    assert _parts(out) == ["plan.json"]  # no empty .incomplete left behind
    # other flags (another split list, --on_error=skip) on the same folder: accepted, no --overwrite
    m = cli.prepare(str(root), out, [split], keep_excluded=True, on_error="skip")
    assert m["splits"]["train"]["skipped"] == 1
    ref = str(tmp_path / "ref")
    cli.prepare(str(root), ref, [split], keep_excluded=True, on_error="skip")
    assert shard_bytes(out) == shard_bytes(ref)
    assert open(os.path.join(out, "manifest.json")).read() == open(os.path.join(ref, "manifest.json")).read()
    # a folder holding finished output of another preparation is still refused
    with pytest.raises(shards.PrepError, match="different preparation.*--keep_excluded"):
        cli.prepare(str(root), out, [split], on_error="skip")


def test_failing_workers_leave_no_incomplete_files(tmp_path, archive):
    root, names = archive(10)  # 16 patches, 4 shards of 4
    for i in range(0, 16, 4):
        break_patch(root, names[i + 1], "corrupt")
    out = str(tmp_path / "out")
    with pytest.raises(shards.PrepError):
        cli.prepare(str(root), out, [write_split(tmp_path / "train.csv", names)], shard_size_mb=0.8,
                    keep_excluded=True, workers=2)
    assert not [f for f in _parts(out) if f.endswith(".incomplete")]
    assert not [f for f in os.listdir(out) if ".tfrecord" in f]


def test_changing_only_on_error_keeps_the_finished_shards(tmp_path, archive):
    root, names = archive(10)  # 16 patches, 4 shards of 4
    split = write_split(tmp_path / "train.csv", names)
    args = dict(shard_size_mb=0.8, keep_excluded=True)
    victim = names[9]  # in the third shard
    band = root / victim / f"{victim}_B03.tif"
    saved = band.read_bytes()
    band.write_bytes(b"not a tiff")
    ref_skip = str(tmp_path / "ref_skip")
    cli.prepare(str(root), ref_skip, [split], on_error="skip", **args)
    out = str(tmp_path / "out")
    with pytest.raises(shards.PrepError, match=victim):
        cli.prepare(str(root), out, [split], **args)
    finished = {f: os.stat(os.path.join(out, f)).st_mtime_ns for f in os.listdir(out) if f.endswith(".tfrecord")}
    assert len(finished) == 2
    m = cli.prepare(str(root), out, [split], on_error="skip", **args)  # same shards: not a different preparation
    assert m.run == {"shards_kept": 2, "items_kept": 8, "shards_written": 2, "items_written": 8}
    assert all(os.stat(os.path.join(out, f)).st_mtime_ns == t for f, t in finished.items())
    assert shard_bytes(out) == shard_bytes(ref_skip)
    assert open(os.path.join(out, "manifest.json")).read() == open(os.path.join(ref_skip, "manifest.json")).read()
    # back to --on_error=fail: the shard finished with a skip is redone, and stops at its bad patch
    with pytest.raises(shards.PrepError, match=victim):
        cli.prepare(str(root), out, [split], **args)
    band.write_bytes(saved)
    m = cli.prepare(str(root), out, [split], **args)
    assert m.run["shards_kept"] == 3 and m.run["shards_written"] == 1 and m["totals"]["skipped"] == 0
    ref = str(tmp_path / "ref")
    cli.prepare(str(root), ref, [split], **args)
    assert shard_bytes(out) == shard_bytes(ref)
    assert open(os.path.join(out, "manifest.json")).read() == open(os.path.join(ref, "manifest.json")).read()


def test_rerun_summary_says_what_was_kept_and_rates_only_new_work(tmp_path, archive):
    root, names = archive(10)
    split = write_split(tmp_path / "train.csv", names)
    out = str(tmp_path / "out")
    args = dict(shard_size_mb=0.8, keep_excluded=True)
    m = cli.prepare(str(root), out, [split], **args)
    saved = open(os.path.join(out, "manifest.json"), "rb").read()
    assert m.run == {"shards_kept": 0, "items_kept": 0, "shards_written": 4, "items_written": 16}
    assert cli.summary(m, 2.0).splitlines()[-1] == "wrote 4 shards: 16 patches in 2.0 s (8 patches/s)"
    m = cli.prepare(str(root), out, [split], **args)
    assert m.run == {"shards_kept": 4, "items_kept": 16, "shards_written": 0, "items_written": 0}
    last = cli.summary(m, 0.01, input_bytes=10**9).splitlines()[-1]
    assert last == "kept all 4 shards (16 patches) finished by an earlier run: nothing left to write (0.0 s)"
    assert open(os.path.join(out, "manifest.json"), "rb").read() == saved  # the run info is not saved
    os.remove(os.path.join(out, ".parts", "train-00003-of-00004.tfrecord.json"))
    m = cli.prepare(str(root), out, [split], **args)
    assert cli.summary(m, 2.0, input_bytes=16 * 10**6).splitlines()[-1] == (
        "kept 3 shards (12 patches) finished by an earlier run; wrote 1 shard: 4 patches in 2.0 s "
        "(2 patches/s, 2 MB/s of input)")
    assert open(os.path.join(out, "manifest.json"), "rb").read() == saved
    m = json.loads(saved)  # a manifest read back: the whole preparation, as before
    assert cli.summary(m, 2.0).splitlines()[-1] == "16 patches in 2.0 s (8 patches/s)"
