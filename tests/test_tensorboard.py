"""The TensorBoard summaries train.py writes, read back with TensorBoard's own event reader.

A short run on a small synthetic So2Sat LCZ42 release (prepared by the real command) logs every
step. TensorBoard's plugin event accumulator, the reader behind ``tensorboard --logdir RUN``, must
list the scalars under its scalars plugin, at the right steps, with the values of history.csv:
the per-step training loss averages to the epoch's loss, the learning rate is the flag's.
"""
from __future__ import annotations

import csv
import glob
import os

import numpy as np
import pytest
from tensorboard.backend.event_processing import plugin_event_accumulator as event_accumulator
from tensorboard.util import tensor_util

import train
from prep.datasets.so2sat import command as so2sat
from prep.datasets.so2sat.synthetic import write_release

STEPS_PER_EPOCH = 4  # 64 training rows, batch 16
LR = 0.01


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("so2sat_tb")
    paths = write_release(str(root / "raw"), 2, {"training": 64, "validation": 16, "testing": 16}, seed=2)
    so2sat.prepare(list(paths.values()), str(root / "data"), shard_size_mb=0.3)
    cfg = train.TrainConfig(data_dir=str(root / "data"), out_dir=str(root / "run"), model="Sen2LCZ-Net",
                            model_options={"depth": 5, "filters": 4}, epochs=2, batch_size=16, learning_rate=LR,
                            shuffle_buffer=64, seed=3, deterministic=True, log_every_steps=1,
                            checkpoint_every_steps=0, evaluate_test=False, export_saved_model=False, progress=False)
    train.train(cfg)
    return root / "run"


def scalars(run_dir, kind):
    """TensorBoard's view of RUN/logs/<kind>: {tag: [(step, value), ...]} of the scalars plugin's tags."""
    files = glob.glob(os.path.join(run_dir, "logs", kind, "events.out.tfevents.*"))
    assert len(files) == 1, files
    acc = event_accumulator.EventAccumulator(os.path.dirname(files[0]), size_guidance={"tensors": 0})
    acc.Reload()
    out = {}
    for tag in acc.PluginTagToContent("scalars"):
        out[tag] = [(e.step, float(tensor_util.make_ndarray(e.tensor_proto)))
                    for e in acc.Tensors(tag)]
    return out


def test_event_files_hold_the_runs_scalars(run_dir):
    with open(run_dir / "history.csv", newline="") as f:
        hist = list(csv.DictReader(f))
    ends = [STEPS_PER_EPOCH, 2 * STEPS_PER_EPOCH]
    assert [int(r["step"]) for r in hist] == ends

    tr = scalars(run_dir, "train")
    assert sorted(tr) == ["epoch_loss", "epoch_micro_f1", "learning_rate", "loss"]
    assert [s for s, _ in tr["loss"]] == list(range(1, 2 * STEPS_PER_EPOCH + 1))  # --log_every_steps 1
    assert [v for _, v in tr["learning_rate"]] == pytest.approx([LR] * 2 * STEPS_PER_EPOCH)
    assert [s for s, _ in tr["epoch_loss"]] == ends
    for e, row in enumerate(hist):
        per_step = [v for s, v in tr["loss"] if e * STEPS_PER_EPOCH < s <= (e + 1) * STEPS_PER_EPOCH]
        assert np.mean(per_step) == pytest.approx(float(row["loss"]), rel=1e-6)
        assert tr["epoch_loss"][e][1] == pytest.approx(float(row["loss"]), rel=1e-6)
        assert tr["epoch_micro_f1"][e][1] == pytest.approx(float(row["micro_f1"]), rel=1e-6)

    val = scalars(run_dir, "val")
    assert sorted(val) == ["epoch_loss", "epoch_micro_f1"]
    assert [s for s, _ in val["epoch_loss"]] == ends
    assert [v for _, v in val["epoch_loss"]] == pytest.approx([float(r["val_loss"]) for r in hist], rel=1e-6)
    assert [v for _, v in val["epoch_micro_f1"]] == pytest.approx([float(r["val_micro_f1"]) for r in hist],
                                                                 rel=1e-6, abs=1e-7)
