"""BigEarthNet v2 (reBEN): band order, class orders, CLC -> 19 per pixel, splits, snow/cloud, S1, bad input.

Every preparation here runs on a small synthetic archive in the published layout
(``prep.datasets.reben.synthetic``); the expected values are computed in the test from the
parquet files and the v1 tables, independently of the code under test where it matters.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from prep import cli, tiff
from prep.datasets.bigearthnet import spec as ben
from prep.datasets.reben import command, raw, synthetic
from prep.datasets.reben import spec as sp
from prep.manifest import load
from prep.tfrecord import parse_example, read_records

REPO = Path(__file__).resolve().parents[1]
DOCUMENTED_ORDER = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    """12 patches: 10 in metadata.parquet, one snow and one cloud/shadow patch in the second file."""
    root = tmp_path_factory.mktemp("reben") / "raw"
    synthetic.generate_reben(root, 12, seed=3, num_snow=1, num_cloud=1)
    return root


def copy_of(archive: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "raw"
    shutil.copytree(archive, dst)
    return dst


def prepare(root: Path, out: Path, **kw) -> dict:
    cli.write_plan(command.plan(str(root), shard_size_mb=50, **kw), str(out))
    return load(out)


def records(out: Path) -> dict[str, dict]:
    """patch_id -> decoded features (values), with the split under "split"."""
    m = load(out)
    got = {}
    for split, s in m.splits.items():
        for sh in s["shards"]:
            for rec in read_records(out / sh["file"]):
                f = {k: v.values for k, v in parse_example(rec).items()}
                f["split"] = split
                got[f["patch_id"][0].decode()] = f
    return got


def metadata_rows(root: Path) -> list[dict]:
    return (pq.read_table(root / raw.METADATA).to_pylist()
            + pq.read_table(root / raw.SNOW_CLOUD_METADATA).to_pylist())


# --- tables -------------------------------------------------------------------------------------

def test_the_clc_code_table_agrees_with_the_43_to_19_table():
    assert len(sp.CLC_CODES_43) == 43 and list(sp.CLC_CODES_43) == sorted(set(sp.CLC_CODES_43))
    assert 335 not in sp.CLC_CODES_43 and 335 not in sp.CLC_TO_19  # glaciers: not a BigEarthNet class
    assert set(sp.CLC_TO_19) <= set(sp.CLC_CODES_43)
    for i, code in enumerate(sp.CLC_CODES_43):
        assert sp.CLC_TO_19.get(code, -1) == ben.MAP_43_TO_19[i], (code, ben.LABELS_43[i])
    # spot checks against the CLC nomenclature by name
    by_name = dict(zip(ben.LABELS_43, sp.CLC_CODES_43))
    assert by_name["Coniferous forest"] == 312 and by_name["Sea and ocean"] == 523
    assert by_name["Annual crops associated with permanent crops"] == 241
    assert ben.LABELS_19[sp.CLC_TO_19[241]] == "Permanent crops"


def test_reference_map_codes_map_per_pixel_and_unmapped_codes_are_ignored():
    codes = np.array([[111, 112, 122, 335], [0, 523, 999, 243], [241, 333, 423, 65535]], np.uint16)
    names = {111: "Urban fabric", 112: "Urban fabric", 523: "Marine waters", 241: "Permanent crops",
             243: "Land principally occupied by agriculture, with significant areas of natural vegetation",
             333: "Natural grassland and sparsely vegetated areas"}  # 122, 335, 0, 999, 423, 65535: no target
    for order in ("nomenclature", "alphabetical"):
        classes = sp.class_names(order)
        expected = np.array([[classes.index(names[c]) if c in names else 255 for c in row] for row in codes.tolist()])
        got = sp.reference_map_classes(codes, order)
        assert got.dtype == np.uint8 and got.shape == codes.shape
        np.testing.assert_array_equal(got, expected)
    signed = np.array([-1, 312, 70000], np.int32)  # out-of-range values in a wider dtype: ignore
    np.testing.assert_array_equal(sp.reference_map_classes(signed), [255, 9, 255])


def test_the_alphabetical_order_is_the_sorted_nomenclature():
    alpha = sp.class_names("alphabetical")
    assert list(alpha) == sorted(ben.LABELS_19) and alpha != ben.LABELS_19
    assert alpha[0] == "Agro-forestry areas" and sp.nomenclature_index("alphabetical")[0] == 7
    assert sp.nomenclature_index("nomenclature") == tuple(range(19))


# --- preparation --------------------------------------------------------------------------------

def test_band_order_is_the_documented_one_each_band_file_a_distinct_constant(archive, tmp_path):
    root = copy_of(archive, tmp_path)
    row = pq.read_table(root / raw.METADATA).to_pylist()[0]
    pid, s1 = row["patch_id"], row["s1_name"]
    constants = {b: 1000 + 100 * i for i, b in enumerate(DOCUMENTED_ORDER)}
    for b in sp.S2_BANDS:
        tiff.write_band(raw.s2_band_path(str(root), pid, b.name), np.full(b.shape, constants[b.name], np.uint16),
                        32633, 300000, 5400000, b.resolution_m)
    for name, value in (("VV", -7.5), ("VH", -19.25)):
        tiff.write_band(raw.s1_band_path(str(root), s1, name), np.full(sp.PATCH, value, np.float32),
                        32633, 300000, 5400000, 10)
    out = tmp_path / "out"
    m = prepare(root, out, with_s1=True)
    assert m.band_names == DOCUMENTED_ORDER + ("VV", "VH")
    assert [tuple(b["shape"]) for b in m.bands][:12] == [ben.SPEC.band(b).shape for b in DOCUMENTED_ORDER]
    rec = records(out)[pid]
    for b in sp.S2_BANDS:
        px = np.frombuffer(rec[f"bands/{b.name}"][0], "<u2")
        assert px.size == b.size and (px == constants[b.name]).all(), b.name
    assert (np.frombuffer(rec["bands/VV"][0], "<f4") == -7.5).all()
    assert (np.frombuffer(rec["bands/VH"][0], "<f4") == -19.25).all()

    from prep import reader  # the reader's channels follow the selection's order, constants intact

    split = rec["split"]
    ds = reader.make_dataset(out, split, bands="all_s1s2", normalize=None, batch_size=64, resample="nearest")
    x, _ = next(iter(ds))
    ids = [f["patch_id"][0].decode() for f in records(out).values() if f["split"] == split]
    image = x["image"].numpy()[ids.index(pid)]
    want = [constants[b] for b in DOCUMENTED_ORDER] + [-7.5, -19.25]
    np.testing.assert_array_equal(image.reshape(-1, 14)[0], np.float32(want))
    np.testing.assert_array_equal(image.min(axis=(0, 1)), image.max(axis=(0, 1)))


def test_both_class_orders_map_to_the_same_labels_and_pixels(archive, tmp_path):
    nom = prepare(archive, tmp_path / "nom", reference_maps=True)
    alpha = prepare(archive, tmp_path / "alpha", reference_maps=True, class_order="alphabetical")
    assert nom.classes == list(ben.LABELS_19) and alpha.classes == sorted(ben.LABELS_19)
    assert alpha["reben"]["class_order"] == "alphabetical"
    index = alpha["reben"]["nomenclature_index"]
    assert [ben.LABELS_19[i] for i in index] == alpha.classes
    a, n = records(tmp_path / "alpha"), records(tmp_path / "nom")
    listed = {r["patch_id"]: set(r["labels"]) for r in metadata_rows(archive)}
    assert a.keys() == n.keys() and len(a) == 10
    for pid in a:
        ha, hn = a[pid]["labels19/multi_hot"], n[pid]["labels19/multi_hot"]
        assert [hn[i] for i in index] == list(ha)
        assert {alpha.classes[j] for j in np.flatnonzero(ha)} == listed[pid] == {nom.classes[j] for j in np.flatnonzero(hn)}
        assert {x.decode() for x in a[pid]["labels19/names"]} == listed[pid]
        ma = np.frombuffer(a[pid]["reference_map"][0], np.uint8)
        mn = np.frombuffer(n[pid]["reference_map"][0], np.uint8)
        assert ma.size == 120 * 120 and ((ma == 255) == (mn == 255)).all()
        keep = mn != 255
        assert [alpha.classes[v] for v in ma[keep]] == [nom.classes[v] for v in mn[keep]]
    assert alpha.splits["train"]["class_counts"] == nom.splits["train"]["class_counts"]  # by name


def test_reference_maps_hold_the_codes_mapped_independently(archive, tmp_path):
    prepare(archive, tmp_path / "out", reference_maps=True)
    code_to_name = {c: ben.LABELS_19[ben.MAP_43_TO_19[i]] for i, c in enumerate(sp.CLC_CODES_43)
                    if ben.MAP_43_TO_19[i] >= 0}
    recs = records(tmp_path / "out")
    seen_ignore = False
    for pid, f in recs.items():
        codes = tiff.read_band(raw.reference_map_path(str(archive), pid))
        got = np.frombuffer(f["reference_map"][0], np.uint8).reshape(120, 120)
        want = np.vectorize(lambda c: ben.LABELS_19.index(code_to_name[c]) if c in code_to_name else 255)(codes)
        np.testing.assert_array_equal(got, want)
        seen_ignore |= bool((got == 255).any())
    assert seen_ignore  # the archive has unmapped codes, so the ignore value is exercised


def test_splits_and_snow_cloud_patches_come_from_the_parquet_files(archive, tmp_path):
    rows = metadata_rows(archive)
    flagged = {r["patch_id"]: r for r in rows if r["contains_seasonal_snow"] or r["contains_cloud_or_shadow"]}
    assert len(flagged) == 2 and len(rows) == 12
    m = prepare(archive, tmp_path / "out")
    recs = records(tmp_path / "out")
    names = {"train": "train", "validation": "val", "test": "test"}
    for r in rows:
        split = names[r["split"]]
        if r["patch_id"] in flagged:
            assert r["patch_id"] not in recs
        else:
            assert recs[r["patch_id"]]["split"] == split
    for split in m.splits:
        s = m.splits[split]
        assert s["listed"] == sum(names[r["split"]] == split for r in rows)
        assert s["listed"] == s["written"] + s["excluded"] + s["skipped"]
    reasons = {e["key"]: e["reason"] for e in m["excluded"]}
    assert reasons.keys() == flagged.keys()
    for pid, r in flagged.items():
        assert ("seasonal snow" in reasons[pid]) == r["contains_seasonal_snow"]
        assert ("cloud" in reasons[pid]) == r["contains_cloud_or_shadow"]
    assert m["reben"]["metadata_rows"] == {raw.METADATA: 10, raw.SNOW_CLOUD_METADATA: 2}

    kept = prepare(archive, tmp_path / "kept", keep_excluded=True)
    assert kept.totals["written"] == 12 and kept.totals["excluded"] == 0
    recs = records(tmp_path / "kept")
    for pid, r in flagged.items():
        assert recs[pid]["meta/seasonal_snow"][0] == r["contains_seasonal_snow"]
        assert recs[pid]["meta/cloud_or_shadow"][0] == r["contains_cloud_or_shadow"]


def test_s1_is_optional(archive, tmp_path):
    from prep import reader

    m = prepare(archive, tmp_path / "out")
    assert m.schema == "s2" and "VV" not in m.band_names
    rec = next(iter(records(tmp_path / "out").values()))
    assert not any(k in rec for k in ("bands/VV", "bands/VH", "reference_map"))
    with pytest.raises(reader.ReaderError, match="VV, VH are not in the records"):
        reader.layout(m, "s1s2")


# --- bad input -----------------------------------------------------------------------------------

def run_prep(root: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run([sys.executable, "-m", "prep", "reben", "-r", str(root), "-o", str(out), "--noprogress",
                           *extra], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def _missing_band(root: Path) -> str:
    pid = pq.read_table(root / raw.METADATA).column("patch_id")[0].as_py()
    path = raw.s2_band_path(str(root), pid, "B8A")
    os.remove(path)
    return path


def _malformed_parquet(root: Path) -> str:
    path = root / raw.METADATA
    path.write_bytes(b"PAR1 this is not a parquet file")
    return str(path)


def _unknown_label(root: Path) -> str:
    rows = pq.read_table(root / raw.METADATA).to_pylist()
    rows[1]["labels"] = ["Arable land", "Glaciers"]
    synthetic.write_metadata(root / raw.METADATA, rows)
    return str(root / raw.METADATA)


@pytest.mark.parametrize("breakage,problem", [(_missing_band, "B8A.tif: "), (_malformed_parquet, "not a readable Parquet"),
                                              (_unknown_label, "row 1 .*unknown label 'Glaciers'")])
def test_bad_input_is_one_error_line_naming_the_file(archive, tmp_path, breakage, problem):
    import re

    root = copy_of(archive, tmp_path)
    path = breakage(root)
    r = run_prep(root, tmp_path / "out")
    assert r.returncode == 1, r.stderr
    line = r.stderr.strip().splitlines()[-1]
    assert line.startswith("error: ") and path in line and re.search(problem, line), line
    assert "Traceback" not in r.stderr


def test_a_bad_row_is_skipped_and_counted_with_on_error_skip(archive, tmp_path):
    root = copy_of(archive, tmp_path)
    _unknown_label(root)
    m = prepare(root, tmp_path / "out", on_error="skip")
    assert m.totals["skipped"] == 1 and "unknown label 'Glaciers'" in m["skipped"][0]["reason"]
    assert m.totals["listed"] == 12 == m.totals["written"] + m.totals["excluded"] + m.totals["skipped"]


def test_unusable_metadata_rows_and_columns_name_the_file_and_row(archive, tmp_path):
    import pyarrow as pa

    rows = pq.read_table(archive / raw.METADATA).to_pylist()[:3]
    bad_split = [dict(r) for r in rows]
    bad_split[2]["split"] = "holdout"
    synthetic.write_metadata(tmp_path / "a.parquet", bad_split)
    with pytest.raises(sp.RebenInputError, match=r"a\.parquet: row 2 \(S2.*\): split value 'holdout' is not one of"):
        raw.read_metadata(str(tmp_path / "a.parquet"))
    no_flag = pa.Table.from_pylist(rows).drop_columns(["contains_seasonal_snow"])
    pq.write_table(no_flag, tmp_path / "b.parquet")
    with pytest.raises(sp.RebenInputError, match=r"b\.parquet: no column contains_seasonal_snow"):
        raw.read_metadata(str(tmp_path / "b.parquet"))
    null_flag = [dict(r) for r in rows]
    null_flag[0]["contains_cloud_or_shadow"] = None
    synthetic.write_metadata(tmp_path / "c.parquet", null_flag)
    with pytest.raises(sp.RebenInputError, match=r"row 0 .*contains_cloud_or_shadow is None, not true or false"):
        raw.read_metadata(str(tmp_path / "c.parquet"))


def test_the_tfds_builder_gives_the_records_values(archive, tmp_path):
    import tensorflow_datasets as tfds

    from prep.datasets.reben.tfds_builder import Reben

    prepare(archive, tmp_path / "out", with_s1=True, reference_maps=True)
    recs = records(tmp_path / "out")
    builder = Reben(config="s1s2_refmap", data_dir=str(tmp_path / "tfds"))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(archive)))
    assert {s: builder.info.splits[s].num_examples for s in builder.info.splits} == {
        {"val": "validation"}.get(s, s): n["written"] for s, n in load(tmp_path / "out").splits.items() if n["written"]}
    for ex in tfds.as_numpy(builder.as_dataset(split="train")):
        rec = recs[ex["patch_id"].decode()]
        assert rec["split"] == "train"
        np.testing.assert_array_equal(ex["labels_multi_hot"], rec["labels19/multi_hot"])
        np.testing.assert_array_equal(ex["reference_map"].ravel(), np.frombuffer(rec["reference_map"][0], np.uint8))
        np.testing.assert_array_equal(ex["B8A"].ravel(), np.frombuffer(rec["bands/B8A"][0], "<u2"))
        np.testing.assert_array_equal(ex["VH"].ravel(), np.frombuffer(rec["bands/VH"][0], "<f4"))
        assert ex["B01"].shape == (20, 20) and ex["VV"].shape == (120, 120) and ex["VV"].dtype == np.float32


@pytest.mark.parametrize("dataset, args", [
    ("reben", ["--num_patches", "5", "--num_snow", "100"]),
    ("bigearthnet_mm", ["--num_patches", "3", "--num_no_target", "5"]),
    ("bigearthnet", ["--num_patches", "3", "--num_snow", "5"]),
    ("reben", ["--num_patches", "2", "--seed", "-1"]),
])
def test_synthetic_flags_that_cannot_be_met_are_usage_errors(dataset, args, tmp_path):
    """More special patches than patches, or a negative seed: exit 2 and one line, no traceback, no files."""
    r = subprocess.run([sys.executable, "-m", "prep.synthetic", dataset, "-o", str(tmp_path / "o"), *args],
                       capture_output=True, text=True, cwd=REPO, timeout=120,
                       env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("error: ") and not (tmp_path / "o").exists()


def test_a_folder_given_as_metadata_is_named_as_a_folder(tmp_path):
    with pytest.raises(sp.RebenInputError, match="a folder, not a Parquet file"):
        raw.read_metadata(str(tmp_path))


@pytest.mark.parametrize("flag, folder", [("with_s1", "BigEarthNet-S1"), ("reference_maps", "Reference_Maps")])
def test_an_absent_folder_asked_for_is_named_before_any_patch_is_read(flag, folder, tmp_path):
    """--with_s1 / --reference_maps without their folder: one error naming it, also under on_error=skip
    (not one skipped patch per row)."""
    root = tmp_path / "raw"
    root.mkdir()
    (root / "metadata.parquet").write_bytes(b"not read")
    with pytest.raises(sp.RebenInputError, match=f"no such folder \\(--{flag} reads it\\)") as e:
        command.plan(str(root), **{flag: True}, on_error="skip")
    assert e.value.path == str(root / folder)
