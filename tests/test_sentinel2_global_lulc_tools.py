"""Sentinel2GlobalLULC tools: offline geocoding, TIFF -> JPEG, the Earth Engine export request."""
from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from prep.datasets.sentinel2_global_lulc import gee_export, geocode, raw, synthetic, tojpeg
from prep.datasets.sentinel2_global_lulc.spec import LulcInputError

REPO = Path(__file__).resolve().parents[1]


# --- geocode ----------------------------------------------------------------------------------------

def _points(path, rows):
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(rows)


def test_geocode_adds_places_offline_for_any_class(tmp_path):
    src, dst = tmp_path / "pts.csv", tmp_path / "out.csv"
    _points(src, [(2.1734, 41.3851, 0.93, 29, 0.61), (151.2, -33.9, 0.8, "WaterBodyMari", 0.4),
                  (2.3574, 48.9362, 1.0, 3, 0.9)])
    assert geocode.geocode_csv(str(src), str(dst)) == 3
    rows = list(csv.DictReader(dst.open(encoding="utf-8")))
    assert [r["class"] for r in rows] == ["29", "WaterBodyMari", "3"]
    assert (rows[0]["country_code"], rows[0]["admin1"]) == ("ES", "Catalonia")
    assert (rows[1]["country_code"], rows[1]["admin1"]) == ("AU", "New South Wales")
    assert (rows[2]["admin1"], rows[2]["admin2"], rows[2]["locality"]) == ("Île-de-France", "Seine-Saint-Denis",
                                                                          "Saint-Denis")
    assert float(rows[1]["longitude"]) == 151.2 and float(rows[1]["latitude"]) == -33.9


def test_geocode_with_a_fake_search_and_missing_levels(tmp_path):
    src, dst = tmp_path / "pts.csv", tmp_path / "out.csv"
    _points(src, [(10, 20, 0.9, 1, 0.1)])
    calls = []

    def search(points):
        calls.append(points)
        return [{"country_code": "NE", "state": None, "county": "", "city": "Agadez"}]

    geocode.geocode_csv(str(src), str(dst), search)
    assert calls == [[(20.0, 10.0)]]
    (row,) = csv.DictReader(dst.open(encoding="utf-8"))
    assert (row["country_code"], row["admin1"], row["admin2"], row["locality"]) == ("NE", "", "", "Agadez")


def test_geocode_bad_rows_name_the_file_line_and_field(tmp_path):
    src = tmp_path / "pts.csv"
    _points(src, [(10, 20, 0.9, 1, 0.1), ("east", 20, 0.9, 1, 0.1)])
    with pytest.raises(LulcInputError, match=r"pts.csv: line 2: field 'longitude'"):
        geocode.read_points(str(src))
    _points(src, [(10, 20, 0.9)])
    with pytest.raises(LulcInputError, match="line 1: 3 columns"):
        geocode.read_points(str(src))


# --- TIFF -> JPEG ----------------------------------------------------------------------------------

def test_stretch_is_the_published_visualisation():
    x = np.array([0, 1, 1779.5, 3558, 5000, np.nan])
    assert tojpeg.stretch(x).tolist() == [0, 0, 128, 255, 255, 0]


def test_raw_composites_are_stretched_and_8bit_tiffs_are_not(tmp_path):
    from PIL import Image

    tifs, out = tmp_path / "tif" / "29_UrbanBlUpArea", tmp_path / "jpg"
    tifs.mkdir(parents=True)
    rng = np.random.default_rng(0)
    dn = rng.integers(1, 3558, (16, 16, 3)).astype(np.uint16)
    synthetic.write_tiff(str(tifs / "raw.tif"), dn)
    vis = rng.integers(0, 256, (16, 16, 3)).astype(np.uint8)
    synthetic.write_tiff(str(tifs / "vis.tif"), vis)
    assert tojpeg.convert_tree(str(tmp_path / "tif"), str(out)) == 2
    raw_jpg = np.asarray(Image.open(out / "29_UrbanBlUpArea" / "raw.jpg"), np.float64)
    vis_jpg = np.asarray(Image.open(out / "29_UrbanBlUpArea" / "vis.jpg"), np.float64)
    assert np.abs(raw_jpg - tojpeg.stretch(dn)).mean() < 1.5  # quality 100, 4:4:4: near lossless
    assert np.abs(vis_jpg - vis).mean() < 1.5
    assert np.abs(vis_jpg - tojpeg.stretch(vis)).mean() > 50  # a second stretch would darken it
    with Image.open(out / "29_UrbanBlUpArea" / "vis.jpg") as im:
        assert im.format == "JPEG" and all(layer[1:3] == (1, 1) for layer in im.layer)  # 4:4:4
    with pytest.raises(LulcInputError, match="field 'dtype'"):
        tojpeg.tiff_to_rgb(str(tifs / "raw.tif"), "none")


# --- Earth Engine export ----------------------------------------------------------------------------

class Fake:
    """A stand-in for the ``ee`` module: every attribute and call is a node; calls are recorded."""

    def __init__(self, log, path="ee"):
        self._log, self._path = log, path

    def __getattr__(self, name):
        return Fake(self._log, f"{self._path}.{name}")

    def __call__(self, *args, **kwargs):
        self._log.append((self._path, args, kwargs))
        if self._path.endswith(".map"):
            args[0](Fake(self._log, "img"))  # Earth Engine traces the mapped function once
        return Fake(self._log, f"{self._path}()")


def _calls(log, suffix):
    return [(a, k) for p, a, k in log if p.endswith(suffix)]


def _geocoded(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(geocode.OUT_COLUMNS)
        w.writerows(rows)


def test_the_export_request_is_the_published_one(tmp_path):
    src = tmp_path / "geo.csv"
    _geocoded(src, [(2.1734, 41.3851, 0.87, 29, 0.61, "ES", "Catalonia", "Barcelona", "Barri Gòtic"),
                    (-47.06, -22.9, 0.9, "Grassland", 0.2, "BR", "São Paulo", "", "Campinas"),
                    (2.2, 41.4, 1.0, 29, 0.5, "ES", "Catalonia", "Barcelona", "Badalona")])
    names = gee_export.tile_names(str(src))
    log = []
    started = gee_export.export_tiles(Fake(log), names, "drive_folder")
    assert started[0] == "29_UrbanBlUpArea_87%_000001_0.61_(+41.3851000000,+2.1734000000)_ES_Catalonia_Barcelona_Barri-Gòtic"
    assert started[1].startswith("3_Grasslands____90%_000001_0.2_(-22.9000000000,-47.0600000000)_BR_São-Paulo__Campinas")
    assert started[2].startswith("29_UrbanBlUpArea_100%_000002_")
    assert raw.parse_name(started[1] + ".tif").admin2 == ""
    n = len(started)
    assert _calls(log, "ee.ImageCollection").count((("COPERNICUS/S2",), {})) == n
    assert _calls(log, "ee.ImageCollection").count((("COPERNICUS/S2_CLOUD_PROBABILITY",), {})) == n
    assert _calls(log, ".filterDate") == [(("2015-06-23", "2020-10-27"), {})] * 2 * n
    (box, _), *_ = _calls(log, "ee.Geometry.Rectangle")
    assert box[0] == pytest.approx([2.1634, 41.3751, 2.1834, 41.3951])
    (_, join), *_ = _calls(log, "saveFirst().apply")
    assert set(join) == {"primary", "secondary", "condition"}
    assert _calls(log, "ee.Filter.equals")[0] == ((), {"leftField": "system:index", "rightField": "system:index"})
    assert _calls(log, "img.get()") == [] and ((("cloud_mask",), {}) in _calls(log, "img.get"))
    assert _calls(log, ".select")[0] == (("probability",), {})
    assert _calls(log, ".lt") == [((20,), {})] * n
    assert _calls(log, "ee.Reducer.percentile") == [(([25],), {})] * n
    assert _calls(log, ".unmask") == [((0,), {})] * n
    assert _calls(log, ".visualize") == [((), {"bands": ["B4_p25", "B3_p25", "B2_p25"], "min": 1, "max": 3558})] * n
    exports = _calls(log, "ee.batch.Export.image.toDrive")
    assert len(exports) == n and len(_calls(log, "toDrive().start")) == n
    _, kw = exports[0]
    assert kw["scale"] == 10 and kw["folder"] == "drive_folder" and kw["fileNamePrefix"] == started[0]
    assert kw["fileFormat"] == "GeoTIFF" and kw["region"]._path == "ee.Geometry.Rectangle()"
    assert kw["image"]._path.endswith(".visualize()")


def test_without_the_package_or_credentials_it_stops_clearly(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ee", None)  # import ee -> ImportError
    with pytest.raises(LulcInputError, match=r"earthengine-api: pip install 'eorecords\[gee\]'"):
        gee_export.import_ee()

    class NoCredentials:
        def Initialize(self, **kwargs):
            raise RuntimeError("Please authorize access to your Earth Engine account")

    with pytest.raises(LulcInputError, match="earthengine authenticate"):
        gee_export.initialize(NoCredentials())
    src = tmp_path / "geo.csv"
    _geocoded(src, [(2.0, 41.0, 0.9, 29, 0.5, "ES", "", "", "")])
    r = subprocess.run([sys.executable, "-c", "import sys; sys.modules['ee'] = None; from prep.__main__ import run; "
                        f"run(['prep', 'lulc', 'gee_export', '--csv', {str(src)!r}])"],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "earthengine-api" in r.stderr and "Traceback" not in r.stderr


def test_a_bad_class_in_the_export_csv_names_line_and_field(tmp_path):
    src = tmp_path / "geo.csv"
    _geocoded(src, [(2.0, 41.0, 0.9, "Vineyards", 0.5, "ES", "", "", "")])
    with pytest.raises(LulcInputError, match="line 2: field 'class'"):
        gee_export.tile_names(str(src))


# --- k-fold report -------------------------------------------------------------------------------------

def test_fold_report_gives_each_fold_and_mean_and_std(tmp_path):
    import json

    from prep.datasets.sentinel2_global_lulc import fold_report

    dirs = []
    for k, (oa, kappa) in enumerate([(0.8, 0.7), (0.9, 0.8), (0.7, 0.6)]):
        d = tmp_path / f"ev{k}"
        d.mkdir()
        result = {"overall_accuracy": oa, "cohen_kappa": kappa, "macro_f1_score_class_avg": oa - 0.1}
        result.update({f"macro_f1_score_class{i}": oa for i in range(29)})
        (d / "eval_result.json").write_text(json.dumps(result))
        dirs.append(str(d))
    s = fold_report.summarize(dirs)
    assert s["metrics"]["overall_accuracy"]["folds"] == [0.8, 0.9, 0.7]
    assert s["metrics"]["overall_accuracy"]["mean"] == pytest.approx(0.8)
    assert s["metrics"]["cohen_kappa"]["std"] == pytest.approx(0.1)
    assert s["per_class_f1"]["BarrenLands__"]["mean"] == pytest.approx(0.8) and len(s["per_class_f1"]) == 29
    md = fold_report.markdown(s)
    assert "| OA | 0.8000 | 0.9000 | 0.7000 | 0.8000 | 0.1000 |" in md
    with pytest.raises(LulcInputError, match="eval_result.json: missing"):
        fold_report.summarize([str(tmp_path)])
