"""prep.synthetic: the synthetic BigEarthNet-S2 archive has the real layout, is deterministic and learnable."""
from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from rasterio.crs import CRS

from prep import tiff
from prep.datasets.bigearthnet import spec as ben
from prep.datasets.bigearthnet import synthetic as syn
from prep.datasets.bigearthnet.synthetic import extract_examples, generate_bigearthnet
from splits import bigearthnet as splits

REPO = Path(__file__).resolve().parents[1]
N, SEED = 30, 7


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    names = generate_bigearthnet(root, N, SEED, num_no_target=2, num_snow=1, num_cloud=1)
    return root, names


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _lines(path: Path) -> list[str]:
    text = path.read_text()
    assert "\r" not in text and (text == "" or text.endswith("\n"))
    return text.splitlines()


# --- layout ----------------------------------------------------------------------------

def test_layout_and_split_csvs(archive):
    root, names = archive
    assert len(names) == N == len(set(names))
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == sorted(names)
    expected_files = {f"{{n}}_{b}.tif" for b in ben.BAND_NAMES} | {"{n}_labels_metadata.json"}
    for n in names:
        assert sorted(p.name for p in (root / n).iterdir()) == sorted(f.format(n=n) for f in expected_files)
        assert ben.parse_patch_name(n)  # the real naming pattern
    split_names = {s: _lines(root / f"{s}.csv") for s in ("train", "val", "test")}
    listed = [n for s in split_names.values() for n in s]
    assert sorted(listed) == sorted(names)  # a partition, no header line
    assert all(split_names.values())
    assert len(split_names["train"]) > len(split_names["val"])


def test_bands_shapes_dtypes_and_georeferencing(archive):
    root, names = archive
    for n in names[:10]:
        meta = json.loads((root / n / f"{n}_labels_metadata.json").read_text())
        c = meta["coordinates"]
        assert c["lrx"] - c["ulx"] == 1200 and c["uly"] - c["lry"] == 1200
        epsg = CRS.from_wkt(meta["projection"]).to_epsg()
        assert 32601 <= epsg <= 32660
        for b in ben.BANDS:
            path = root / n / f"{n}_{b.name}.tif"
            arr = tiff.read_band(path, shape=b.shape, dtype="uint16")
            assert arr.max() > 0
            g = tiff.read_georef(path)  # rasterio reads the written CRS and transform back
            assert g["epsg"] == epsg
            assert g["shape"] == b.shape
            assert g["transform"] == pytest.approx((b.resolution_m, 0, c["ulx"], 0, -b.resolution_m, c["uly"]))
            assert g["bounds"] == pytest.approx((c["ulx"], c["uly"], c["lrx"], c["lry"]))


def test_tiffs_have_the_real_files_structure(archive):
    """Same tags and strip layout as the real archive: 34-row strips at 120 px, one strip otherwise."""
    root, names = archive
    n = names[0]
    for band, size, strips in (("B02", 29192, 4), ("B05", 7560, 1), ("B01", 1160, 1)):
        data = (root / n / f"{n}_{band}.tif").read_bytes()
        assert len(data) == size and data[:4] == b"II*\0"
        (count,) = np.frombuffer(data, "<u2", 1, 8)
        tags = np.frombuffer(data, "<u2", count * 6, 10).reshape(count, 6)[:, 0].tolist()
        assert tags == [256, 257, 258, 259, 262, 273, 277, 278, 279, 284, 339, 33550, 33922, 34735, 34737]
        strip_offsets_count = int(np.frombuffer(data, "<u4", 1, 10 + 12 * 5 + 4)[0])
        assert strip_offsets_count == strips


def test_json_metadata(archive):
    root, names = archive
    for n in names:
        meta = json.loads((root / n / f"{n}_labels_metadata.json").read_text())
        assert list(meta) == ["labels", "coordinates", "projection", "tile_source", "acquisition_date"]
        assert meta["labels"] and all(lab in ben.INDEX_43 for lab in meta["labels"])
        assert [ben.INDEX_43[lab] for lab in meta["labels"]] == sorted(ben.INDEX_43[lab] for lab in meta["labels"])
        assert list(meta["coordinates"]) == ["ulx", "uly", "lrx", "lry"]
        assert all(isinstance(v, int) and v % 60 == 0 for v in meta["coordinates"].values())
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", meta["acquisition_date"])
        parts = ben.parse_patch_name(n)
        date = meta["acquisition_date"]
        assert parts["date"] == date[:10].replace("-", "")
        assert int(parts["time"]) == int(date[11:].replace(":", ""))
        assert meta["tile_source"].startswith(f"{parts['satellite']}_MSIL1C_{parts['date']}T{parts['time']}_")
        assert meta["tile_source"].endswith(".SAFE")


def test_names_epsg_zones_and_label_distribution():
    specs = syn.plan_bigearthnet(2000, 11)
    times = [ben.parse_patch_name(s.name)["time"] for s in specs]
    assert any(len(t) == 5 for t in times) and any(len(t) == 6 for t in times)
    assert len({s.epsg for s in specs}) >= 4
    assert len({s.name for s in specs}) == len(specs)
    n_labels = np.array([len(s.labels43) for s in specs])
    assert 1.8 < n_labels.mean() < 3.5
    assert (n_labels >= 3).mean() > 0.25 and (n_labels == 1).mean() > 0.1
    counts19 = np.zeros(19, int)
    for s in specs:
        counts19[ben.indices_19(s.labels43)] += 1
    assert (counts19 > 0).all()  # every 19-class target occurs
    assert counts19.max() > 10 * counts19.min()  # imbalanced like the real archive


def test_special_patch_lists(archive):
    root, names = archive
    no_target = _lines(root / syn.NO_TARGET_LIST)
    snow, cloud = _lines(root / syn.SNOW_LIST), _lines(root / syn.CLOUD_LIST)
    assert len(no_target) == 2 and len(snow) == 1 and len(cloud) == 1
    assert not (set(no_target) & set(snow)) and not (set(snow) & set(cloud))
    in_splits = {n for s in ("train", "val", "test") for n in _lines(root / f"{s}.csv")}
    assert set(no_target + snow + cloud) <= in_splits  # preparation must leave them out itself
    for n in names:
        labels = json.loads((root / n / f"{n}_labels_metadata.json").read_text())["labels"]
        targets = ben.indices_19(ben.indices_43(labels))
        assert (not targets) == (n in no_target), n
    # the overlays are visible: snow is bright in the blue band, darker in SWIR
    b02 = tiff.read_band(root / snow[0] / f"{snow[0]}_B02.tif")
    assert (b02 > 7000).mean() > 0.05


def test_default_special_counts():
    specs = syn.plan_bigearthnet(300, 1)
    assert sum(not ben.indices_19(s.labels43) for s in specs) == 3
    assert sum(s.overlay == "snow" for s in specs) == 3 and sum(s.overlay == "cloud" for s in specs) == 3
    assert not any(s.overlay for s in syn.plan_bigearthnet(5, 1))
    with pytest.raises(ValueError, match="do not fit"):
        syn.plan_bigearthnet(3, 1, num_no_target=2, num_snow=2)


# --- determinism -------------------------------------------------------------------------

def test_deterministic_byte_for_byte_and_seed_matters(tmp_path, archive):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    generate_bigearthnet(a, 8, 3)
    generate_bigearthnet(b, 8, 3, workers=2)  # worker processes write the same bytes
    generate_bigearthnet(c, 8, 4)
    ta, tb = _tree(a), _tree(b)
    assert ta == tb
    assert set(_tree(c)) != set(ta)
    # a rerun of the fixture's call gives the same names and the same bytes
    root, names = archive
    again = tmp_path / "again"
    assert generate_bigearthnet(again, N, SEED, num_no_target=2, num_snow=1, num_cloud=1) == names
    assert _tree(again) == _tree(root)


def test_pixels_in_files_equal_in_memory_synthesis(archive):
    root, names = archive
    specs = {s.name: s for s in syn.plan_bigearthnet(N, SEED, num_no_target=2, num_snow=1, num_cloud=1)}
    n = names[3]
    bands = syn.synthesize_bands(specs[n], SEED)
    for b in ben.BANDS:
        np.testing.assert_array_equal(tiff.read_band(root / n / f"{n}_{b.name}.tif"), bands[b.name])


def test_rasterio_writer_gives_same_pixels_and_georef(tmp_path):
    native, rio = tmp_path / "native", tmp_path / "rio"
    names = generate_bigearthnet(native, 2, 5)
    assert generate_bigearthnet(rio, 2, 5, tiff_writer="rasterio") == names
    for n in names:
        for b in ben.BAND_NAMES:
            p, q = native / n / f"{n}_{b}.tif", rio / n / f"{n}_{b}.tif"
            np.testing.assert_array_equal(tiff.read_band(p), tiff.read_band(q))
            gp, gq = tiff.read_georef(p), tiff.read_georef(q)
            assert gp["epsg"] == gq["epsg"] and gp["transform"] == gq["transform"]


# --- learnability --------------------------------------------------------------------------

def _ridge_f1(x: np.ndarray, y: np.ndarray, n_train: int) -> tuple[float, float, float, float]:
    """Quadratic ridge regression per class, thresholded at 0.5: micro-F1 and Hamming accuracy on
    the held-out rows, and the same for the constant (per-class majority) predictor."""
    z = (x - x[:n_train].mean(0)) / x[:n_train].std(0)
    iu = np.triu_indices(z.shape[1])
    z = np.hstack([z, (z[:, :, None] * z[:, None, :])[:, iu[0], iu[1]], np.ones((len(z), 1))])
    a, b = z[:n_train], z[n_train:]
    w = np.linalg.solve(a.T @ a + np.eye(a.shape[1]), a.T @ y[:n_train])
    pred = (b @ w >= 0.5).astype(int)
    const = np.broadcast_to((y[:n_train].mean(0) >= 0.5).astype(int), pred.shape)
    truth = y[n_train:]

    def f1(p):
        return 2 * (p & truth).sum() / max(1, p.sum() + truth.sum())

    return f1(pred), (pred == truth).mean(), f1(const), (const == truth).mean()


def test_19_class_labels_are_learnable_from_mean_spectra():
    specs = syn.plan_bigearthnet(700, 21, num_no_target=0, num_snow=0, num_cloud=0)
    x = np.array([[np.log(bands[b].mean()) for b in ben.BAND_NAMES]
                  for bands in (syn.synthesize_bands(s, 21) for s in specs)])
    y = np.array([ben.multi_hot(ben.indices_19(s.labels43), 19) for s in specs])
    f1, acc, f1_const, acc_const = _ridge_f1(x, y, 500)
    assert f1 > 0.5 and f1 > f1_const + 0.4, (f1, f1_const)
    assert acc > acc_const + 0.04, (acc, acc_const)
    # control: with the labels shuffled across patches the same learner finds nothing
    f1_shuffled, *_ = _ridge_f1(x, y[np.random.default_rng(0).permutation(len(y))], 500)
    assert f1_shuffled < f1 - 0.25, (f1_shuffled, f1)


# --- the real examples ----------------------------------------------------------------------

def test_extract_examples(tmp_path):
    folders = extract_examples(tmp_path / "real")
    assert len(folders) == 6 and all(p.parent == tmp_path / "real" for p in folders)
    for p in folders:
        assert len(list(p.glob("*.tif"))) == 12
        assert (p / f"{p.name}_labels_metadata.json").is_file()
        ben.parse_patch_name(p.name)
    assert "S2B_MSIL2A_20170924T93020_69_24" in {p.name for p in folders}


def _malicious(path: Path, kind: str) -> Path:
    with tarfile.open(path, "w:bz2") as tar:
        info = tarfile.TarInfo("BigEarthNet-S2-Example/ok/ok.txt")
        data = b"fine"
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        if kind == "dotdot":
            bad = tarfile.TarInfo("BigEarthNet-S2-Example/../../escaped.txt")
            bad.size = 4
            tar.addfile(bad, io.BytesIO(b"evil"))
        elif kind == "absolute":
            bad = tarfile.TarInfo("/tmp/escaped-absolute.txt")
            bad.size = 4
            tar.addfile(bad, io.BytesIO(b"evil"))
        else:
            bad = tarfile.TarInfo("BigEarthNet-S2-Example/ok/link")
            bad.type = tarfile.SYMTYPE
            bad.linkname = "/etc/passwd"
            tar.addfile(bad)
    return path


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink"])
def test_extract_examples_refuses_escaping_members(tmp_path, monkeypatch, kind):
    archive = _malicious(tmp_path / "evil.tar.bz2", kind)
    monkeypatch.setattr(splits, "example_archive", lambda modality="S2": archive)
    dest = tmp_path / "dest" / "inner"
    with pytest.raises(ValueError, match="escapes the target folder|has an absolute path|links are refused"):
        extract_examples(dest)
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "dest" / "escaped.txt").exists()
    assert not (dest / "ok" / "link").exists()


# --- command line ------------------------------------------------------------------------------

def _cli(*args, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "prep.synthetic", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def test_cli_writes_the_same_archive_as_the_api(tmp_path):
    out = tmp_path / "cli"
    r = _cli("bigearthnet", "--out", str(out), "--num_patches", "4", "--seed", "9")
    assert r.returncode == 0, r.stderr
    assert "wrote 4 synthetic patches" in r.stdout
    api = tmp_path / "api"
    generate_bigearthnet(api, 4, 9)
    assert _tree(out) == _tree(api)


def test_cli_help_and_bad_command():
    r = _cli("bigearthnet", "--help")  # absl exits 1 after printing the help
    assert r.returncode in (0, 1) and "--num_patches" in r.stdout and "--seed" in r.stdout
    r = _cli("nonsense")
    assert r.returncode == 2 and "unknown dataset 'nonsense'" in r.stderr and "bigearthnet" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1  # one line, no traceback
    r = _cli()
    assert r.returncode == 2 and "bigearthnet" in r.stderr and "so2sat" in r.stderr
