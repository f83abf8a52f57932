"""prep.verify without TensorFlow: every record checked against the schema, every kind of tampering found."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from prep import tfrecord
from prep.datasets.bigearthnet import command as ben_command
from prep.datasets.bigearthnet.synthetic import generate_bigearthnet
from prep.datasets.spec import Field
from prep.verify import verify

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """{schema: folder} of one small synthetic archive prepared in both schemas (two train shards)."""
    raw = tmp_path_factory.mktemp("raw")
    generate_bigearthnet(raw, 12, seed=8)
    splits = [str(raw / f"{s}.csv") for s in ("train", "val", "test")]
    out = {}
    for schema in ("compact", "upstream"):
        out[schema] = tmp_path_factory.mktemp(schema)
        ben_command.prepare(str(raw), str(out[schema]), splits, schema=schema, keep_excluded=True, shard_size_mb=0.5)
    return out


@pytest.fixture
def compact(prepared, tmp_path):
    """A writable copy of the compact-schema folder; returns (folder, manifest, first train shard)."""
    out = tmp_path / "out"
    shutil.copytree(prepared["compact"], out)
    m = json.loads((out / "manifest.json").read_text())
    return out, m, out / m["splits"]["train"]["shards"][0]["file"]


def rewrite(shard: Path, edit) -> None:
    """Rewrite ``shard`` with ``edit(index, record) -> record or None`` (None drops it); CRCs stay valid."""
    records = list(tfrecord.read_records(shard))
    with tfrecord.TFRecordWriter(shard) as w:
        for i, rec in enumerate(records):
            new = edit(i, rec)
            if new is not None:
                w.write(new)


def reencode(record: bytes, change) -> bytes:
    """The record decoded, ``change(values, fields)`` applied, encoded again."""
    parsed = tfrecord.parse_example(record)
    fields = {k: Field(k, f.kind, None) for k, f in parsed.items()}
    values = {k: f.values for k, f in parsed.items()}
    change(values, fields)
    return tfrecord.encode_example(list(fields.values()), values)


def test_prepared_folders_verify_clean_in_both_schemas(prepared):
    for out in prepared.values():
        assert verify(str(out)) == []


def test_verify_does_not_import_tensorflow(prepared):
    code = ("import sys; from prep.verify import verify; "
            f"assert verify({str(prepared['upstream'])!r}) == []; print(sorted(m for m in sys.modules if "
            "m.split('.')[0] in ('tensorflow', 'keras')))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0 and r.stdout.strip() == "[]", (r.stdout, r.stderr)
    r = subprocess.run([sys.executable, "-m", "prep.verify", str(prepared["compact"])], capture_output=True, text=True,
                       cwd=ROOT)
    assert r.returncode == 0 and r.stdout.startswith("OK ") and r.stderr == "", r.stderr


def _drop(key):
    return lambda v, f: (v.pop(key), f.pop(key))


def _set(key, kind, value):
    return lambda v, f: (v.update({key: value}), f.update({key: Field(key, kind, None)}))


def _cut_band(key, n):
    return lambda v, f: v.update({key: [v[key][0][:-n]]})


TAMPERING = {  # how one record of the shard is changed -> what verify says about it
    "band 2 bytes short": (_cut_band("bands/B02", 2), "feature 'bands/B02' holds 28798 bytes in 1 record(s), expected 28800"),
    "feature missing": (_drop("meta/epsg"), "record 1: feature 'meta/epsg' is missing"),
    "wrong kind": (_set("labels19/multi_hot", "float", np.zeros(19, np.float32)),
                   "record 1: feature 'labels19/multi_hot' is a float list, the schema says int64"),
    "wrong length": (lambda v, f: v.update({"labels19/multi_hot": v["labels19/multi_hot"][:18]}),
                     "record 1: feature 'labels19/multi_hot' holds 18 value(s), the schema says 19"),
    "extra feature": (_set("bands/B13", "bytes", [b"x"]), "record 1: feature 'bands/B13' is not in the schema"),
    "two band values": (lambda v, f: v.update({"bands/B01": [v["bands/B01"][0], b""]}),
                        "record 1: feature 'bands/B01' holds 2 value(s), the schema says 1"),
}


@pytest.mark.parametrize("case", list(TAMPERING))
def test_each_record_problem_is_reported_with_the_shard_and_record(compact, case):
    out, m, shard = compact
    change, expected = TAMPERING[case]
    rewrite(shard, lambda i, rec: reencode(rec, change) if i == 1 else rec)
    problems = verify(str(out))
    assert any(p.startswith(f"{shard}: SHA-256 ") for p in problems), problems  # the bytes changed
    assert [p for p in problems if expected in p and p.startswith(f"{shard}: ")], problems


def test_a_record_that_is_not_an_example(compact):
    out, m, shard = compact
    rewrite(shard, lambda i, rec: b"\x0a\xff\xff\x03garbage" if i in (0, 2) else rec)
    problems = verify(str(out))
    assert f"{shard}: 2 record(s) do not parse with the schema; first, record 0: not a tf.train.Example: " \
           f"field 1 at byte 0 runs past the end of its message" in problems, problems


def test_counts_sizes_missing_shards_and_reconciliation(compact):
    out, m, shard = compact
    rewrite(shard, lambda i, rec: None if i == 0 else rec)  # one record fewer
    problems = verify(str(out))
    n = m["splits"]["train"]["shards"][0]["records"]
    assert f"{shard}: {n - 1} records, manifest says {n}" in problems
    assert any(p.startswith(f"{shard}: ") and "bytes, manifest says" in p for p in problems)
    m["splits"]["val"]["listed"] += 1
    m["splits"]["test"]["written"] += 1
    (out / "manifest.json").write_text(json.dumps(m))
    other = out / m["splits"]["train"]["shards"][1]["file"]
    os.remove(other)
    problems = verify(str(out))
    assert f"{other}: missing" in problems
    assert any(p.startswith("split val: listed") for p in problems)
    assert "split test: shard record counts do not add up to written=" + str(m["splits"]["test"]["written"]) in problems


def test_bad_crc_and_truncation_are_reported(compact):
    out, m, shard = compact
    original = shard.read_bytes()
    data = bytearray(original)
    data[5000] ^= 0xFF
    shard.write_bytes(bytes(data))
    problems = verify(str(out))
    assert any("SHA-256" in p for p in problems) and any("bad data CRC" in p for p in problems)
    shard.write_bytes(original[:-10])
    assert any("truncated record" in p for p in verify(str(out)))


def test_upstream_schema_int64_bands_are_counted(prepared, tmp_path):
    out = tmp_path / "up"
    shutil.copytree(prepared["upstream"], out)
    m = json.loads((out / "manifest.json").read_text())
    shard = out / m["splits"]["train"]["shards"][0]["file"]
    rewrite(shard, lambda i, rec: reencode(rec, lambda v, f: v.update({"B8A": v["B8A"][:-1]})) if i == 0 else rec)
    problems = verify(str(out))
    assert f"{shard}: 1 record(s) do not parse with the schema; first, record 0: feature 'B8A' holds 3599 value(s), " \
           "the schema says 3600" in problems, problems


def test_the_command_prints_each_mismatch_and_exits_1(compact):
    out, m, shard = compact
    rewrite(shard, lambda i, rec: reencode(rec, _drop("patch_name")))
    r = subprocess.run([sys.executable, "-m", "prep.verify", str(out)], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 1 and r.stderr.strip().splitlines() == [f"3 problem(s) in {out}"], r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == f"MISMATCH {shard}: {shard.stat().st_size} bytes, manifest says {m['splits']['train']['shards'][0]['bytes']}"
    assert lines[1].startswith(f"MISMATCH {shard}: SHA-256")
    assert lines[2] == (f"MISMATCH {shard}: {m['splits']['train']['shards'][0]['records']} record(s) do not parse "
                        "with the schema; first, record 0: feature 'patch_name' is missing")
