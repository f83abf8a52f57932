"""The shard plan: how a split's items are cut into shards."""
import math

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
