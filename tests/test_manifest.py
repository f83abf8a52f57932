"""prep.manifest: the one manifest loader, its typed view, and one error line per bad folder or file."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from prep import manifest, reader
from prep.datasets.bigearthnet import command as ben_command
from prep.datasets.bigearthnet.synthetic import generate_bigearthnet
from prep.datasets.spec import Task
from prep.errors import InputError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    raw = tmp_path_factory.mktemp("raw")
    generate_bigearthnet(raw, 10, seed=4)
    out = tmp_path_factory.mktemp("rec")
    m = ben_command.prepare(str(raw), str(out), [str(raw / f"{s}.csv") for s in ("train", "val", "test")],
                            keep_excluded=True)
    return out, m


def test_typed_view_of_a_prepared_folder(prepared):
    out, written = prepared
    m = manifest.load(out)
    assert isinstance(m, dict) and m == written  # the JSON as written, keys and all
    assert json.loads(json.dumps(m)) == json.loads(json.dumps(written))
    assert m.path == os.path.join(str(out), "manifest.json") and m.data_dir == str(out)
    assert (m.dataset, m.schema, m.task) == ("bigearthnet19", "compact", Task.MULTI_LABEL)
    assert m.spec.name == "bigearthnet19" and m.record_schema.name == "compact"
    assert m.band_names == tuple(b["name"] for b in written["bands"]) and len(m.band_names) == 12
    assert m.classes == written["classes"] and len(m.classes) == 19
    assert m.splits is m["splits"] and set(m.splits) == {"train", "val", "test"}
    assert m.totals == written["totals"] and m.totals["written"] == 10
    assert m.compression == "NONE"
    with pytest.raises(AttributeError):
        m.dataset = "other"  # read-only
    assert reader.load_manifest is manifest.load  # the reader's name for the same loader


def run_verify(path, cwd):
    r = subprocess.run([sys.executable, "-m", "prep.verify", str(path)], capture_output=True, text=True, cwd=cwd,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    return r.returncode, r.stderr.strip().splitlines(), r.stdout


def _write(folder: Path, data) -> str:
    folder.mkdir()
    path = folder / "manifest.json"
    path.write_bytes(data) if isinstance(data, bytes) else path.write_text(data)
    return folder.name


def make_case(case: str, tmp: Path, written: dict) -> str:
    """Lay out the bad folder or manifest of ``case`` under ``tmp``; returns the argument for prep.verify."""
    if case == "no such folder":
        return "nothere"
    if case == "not a folder":
        (tmp / "file.txt").write_text("x")
        return "file.txt"
    if case == "empty folder":
        (tmp / "empty").mkdir()
        return "empty"
    if case == "unfinished":
        (tmp / "half" / ".parts").mkdir(parents=True)
        return "half"
    if case == "malformed JSON":
        return _write(tmp / "bad", '{"format": "eorecords-manifest", ')
    if case == "not UTF-8":
        return _write(tmp / "bin", b"\xff\xfe{}")
    if case == "a JSON list":
        return _write(tmp / "list", "[1, 2]")
    if case == "another format":
        return _write(tmp / "other", '{"format": "tfds"}')
    if case == "missing keys":
        return _write(tmp / "nokeys", json.dumps({k: v for k, v in written.items() if k != "classes"}))
    if case == "unknown dataset":
        return _write(tmp / "mars", json.dumps({**written, "dataset": "mars"}))
    assert case == "unknown schema"
    return _write(tmp / "schema", json.dumps({**written, "schema": "tiny"}))


CASES = {  # case -> what the one error line says
    "no such folder": "error: nothere: no such folder - ",
    "not a folder": "error: file.txt: not a folder",
    "empty folder": "error: empty: no manifest.json in this folder: not a prepared output folder - ",
    "unfinished": "error: half: no manifest.json: the preparation did not finish",
    "malformed JSON": "bad/manifest.json: malformed JSON (Expecting property name",
    "not UTF-8": "bin/manifest.json: malformed JSON (not UTF-8",
    "a JSON list": "list/manifest.json: not an eorecords manifest (a JSON list",
    "another format": "other/manifest.json: not an eorecords manifest (format='tfds'",
    "missing keys": "nokeys/manifest.json: manifest lacks 'classes' - ",
    "unknown dataset": "mars/manifest.json: unknown dataset 'mars'; known: bigearthnet19",
    "unknown schema": "schema/manifest.json: dataset 'bigearthnet19' has no schema 'tiny'; schemas: compact",
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_bad_folder_or_manifest_is_one_error_line(case, prepared, tmp_path):
    expected = CASES[case]
    arg = make_case(case, tmp_path, prepared[1])
    status, lines, out = run_verify(arg, tmp_path)
    assert status == 1 and out == "", (status, lines, out)
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], lines
    with pytest.raises(InputError) as e:  # the same error from the library
        manifest.load(tmp_path / arg)
    assert expected.split(": ", 2)[-1].split(" - ")[0] in str(e.value)


def test_missing_folder_or_manifest_is_also_a_file_not_found_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such folder"):
        manifest.load(tmp_path / "nothere")
    with pytest.raises(FileNotFoundError, match="no manifest"):
        reader.load_manifest(tmp_path)


def test_train_and_evaluate_read_through_the_loader(prepared, tmp_path):
    import evaluate
    import train

    bad = str(tmp_path / _write(tmp_path / "bad", "{"))
    with pytest.raises(InputError, match="malformed JSON"):
        evaluate.load_manifest(bad)
    with pytest.raises(InputError, match="malformed JSON"):  # before TensorFlow is imported
        train.check_data_dir(bad)
    with pytest.raises(InputError, match="^--data_dir .*nothere: no such folder - --data_dir takes"):
        train.check_data_dir(str(tmp_path / "nothere"))
    assert evaluate.load_manifest(str(prepared[0])).dataset == "bigearthnet19"


def test_totals_are_summed_from_the_splits_when_absent():
    m = manifest.Manifest({"splits": {"a": {"listed": 3, "written": 2, "excluded": 1, "skipped": 0},
                                      "b": {"listed": 2, "written": 1, "excluded": 0, "skipped": 0, "missing": 1}}})
    assert m.totals == {"listed": 5, "written": 3, "excluded": 1, "skipped": 0, "missing": 1}
    assert m.path is None and m.data_dir is None and m.compression == "NONE"
