"""The shard plan: how a split's items are cut into shards."""
import json
import math
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from prep import shards
from prep.datasets.bigearthnet import spec as ben


@given(n=st.integers(0, 5000), per_shard=st.integers(1, 700))
def test_shards_hold_equal_counts_in_item_order(n, per_shard):
    items = list(range(n))
    tasks = shards.plan_shards("/out", {"train": items}, per_shard, None)
    sizes = [len(t.items) for t in tasks]
    assert len(tasks) == max(1, math.ceil(n / per_shard))
    assert max(sizes) <= per_shard and max(sizes) - min(sizes) <= 1
    assert sizes == sorted(sizes, reverse=True)  # the larger shards first
    assert [i for t in tasks for i in t.items] == items  # every item once, in order
    assert [t.index for t in tasks] == list(range(len(tasks)))
    assert all(t.num_shards == len(tasks) for t in tasks)


def test_plan_names_every_split_and_compression():
    tasks = shards.plan_shards("/out", {"train": list(range(10)), "test": [7]}, 4, "GZIP")
    assert [(t.split, len(t.items)) for t in tasks] == [("train", 4), ("train", 3), ("train", 3), ("test", 1)]
    assert tasks[1].path == "/out/train-00001-of-00003.tfrecord.gz"
    assert tasks[3].path == "/out/test-00000-of-00001.tfrecord.gz"


def test_records_per_shard_follows_the_size_and_is_at_least_one():
    schema = ben.SPEC.schema("compact")
    per_record = shards.estimate_record_bytes(ben.SPEC, schema)
    assert shards.records_per_shard(ben.SPEC, schema, 10 * per_record / 1e6) == 10
    assert shards.records_per_shard(ben.SPEC, schema, 1e-6) == 1


def _fingerprint(tasks, **flags):
    schema = ben.SPEC.schema("compact")
    return shards.plan_fingerprint(ben.SPEC, schema, None, tasks, {"schema": "compact", **flags})


def test_fingerprint_holds_what_changes_the_shards_bytes_only():
    tasks = shards.plan_shards("/out", {"train": ["a", "b", "c"]}, 2, None)
    base = _fingerprint(tasks, on_error="fail", shard_size_mb=150.0, records_per_shard=2)
    assert _fingerprint(tasks, on_error="skip", shard_size_mb=149.0, records_per_shard=2) == base
    assert _fingerprint(tasks, on_error="fail", shard_size_mb=150.0, records_per_shard=3) != base
    assert _fingerprint(shards.plan_shards("/out", {"train": ["a", "b", "d"]}, 2, None)) != _fingerprint(tasks)
    assert _fingerprint(shards.plan_shards("/out", {"train": ["a", "b", "c"]}, 3, None)) != _fingerprint(tasks)


def test_check_plan_refuses_finished_output_of_another_plan_only(tmp_path):
    out = str(tmp_path)
    old = _fingerprint(shards.plan_shards(out, {"train": ["a"]}, 1, None), keep_excluded=False)
    new = _fingerprint(shards.plan_shards(out, {"train": ["a"]}, 1, None), keep_excluded=True)
    shards.check_plan(out, old, overwrite=False)
    (tmp_path / ".parts" / "train-00000-of-00001.tfrecord.incomplete").write_bytes(b"")
    assert shards.check_plan(out, new, overwrite=False)  # nothing finished: the old plan is discarded
    assert sorted(os.listdir(tmp_path / ".parts")) == ["plan.json"]
    assert not shards.check_plan(out, new, overwrite=False)  # the same plan: kept
    (tmp_path / "train-00000-of-00001.tfrecord").write_bytes(b"")
    (tmp_path / ".parts" / "train-00000-of-00001.tfrecord.json").write_text("{}")
    with pytest.raises(shards.PrepError, match=r"differs in: flags, --keep_excluded"):
        shards.check_plan(out, old, overwrite=False)
    # a plan.json written before on_error was left out of the fingerprint still matches
    legacy = json.loads((tmp_path / ".parts" / "plan.json").read_text())
    legacy["flags"]["on_error"] = "fail"
    (tmp_path / ".parts" / "plan.json").write_text(json.dumps(legacy))
    assert not shards.check_plan(out, new, overwrite=False)
    assert shards.check_plan(out, old, overwrite=True) and not os.path.exists(tmp_path / "train-00000-of-00001.tfrecord")


def test_finished_shards_with_skips_are_redone_under_fail():
    assert shards.keep_finished({"skipped": []}, "fail") and shards.keep_finished({"skipped": [{}]}, "skip")
    assert not shards.keep_finished({"skipped": [{"key": "x"}]}, "fail")


def test_missing_list_is_one_row_per_item_in_plan_order(tmp_path):
    missing = [{"split": "train", "key": "b"}, {"split": "train", "key": "a"}, {"split": "val", "key": "c"}]
    assert shards.missing_csv(missing) == "split,key\ntrain,b\ntrain,a\nval,c\n"
    shards.write_missing(str(tmp_path), missing)
    assert (tmp_path / shards.MISSING).read_text() == shards.missing_csv(missing)
    shards.write_missing(str(tmp_path), [])
    assert not (tmp_path / shards.MISSING).exists()
