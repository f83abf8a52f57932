"""train.py --strategy multi_worker: two worker processes on 127.0.0.1 against one worker.

Each worker is ``python train.py ... --strategy multi_worker`` with its own ``TF_CONFIG`` (a
cluster of two workers on free local ports, worker 0 the chief); MultiWorkerMirroredStrategy's
collectives run over gRPC on 127.0.0.1. The data are a small synthetic So2Sat LCZ42 release
prepared by the real command; the model a small Sen2LCZ-Net with batch norm (synchronized over the
replicas by train.py) and no dropout (dropout masks are drawn per replica, so a run with dropout is
equivalent in distribution only), trained with SGD, so the weights differ only by the order of
float sums. One test, to keep the processes few (each pays TensorFlow's start-up): two workers
start; worker 1 is killed after the first checkpoint; the chief stops with a one-line error; both
start again with ``--resume`` and finish. Checked: the weights at every checkpoint equal those of
a one-worker run with the same global batch (run beside them), the history too; only the chief
wrote checkpoints, summaries, models and the SavedModel, and no worker scratch is left.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from prep.datasets.so2sat import command as so2sat
from prep.datasets.so2sat.synthetic import write_release

REPO = Path(__file__).resolve().parents[1]
STEPS_PER_EPOCH = 4  # 64 training rows, global batch 16
TIMEOUT = 600  # seconds per process: generous, the machine is shared
FLAGS = ["--model", "Sen2LCZ-Net", "--model_option", "depth=5", "--model_option", "filters=4",
         "--model_option", "dropout=0", "--batch_size", "16", "--optimizer", "sgd", "--learning_rate", "0.05",
         "--deterministic", "--seed", "7", "--shuffle_buffer", "64", "--checkpoint_every_steps", "2",
         "--keep_checkpoints", "10", "--noprogress", "--noevaluate_test"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("so2sat_mw")
    paths = write_release(str(root / "raw"), 2, {"training": 64, "validation": 16, "testing": 16}, seed=1)
    so2sat.prepare(list(paths.values()), str(root / "data"), shard_size_mb=0.3)  # several shards per split
    return str(root / "data")


def train_cmd(data_dir, out_dir, *extra):
    return [sys.executable, str(REPO / "train.py"), "--data_dir", data_dir, "--out_dir", str(out_dir), *FLAGS, *extra]


def env(tf_config=None):
    e = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    if tf_config is not None:
        e["TF_CONFIG"] = json.dumps(tf_config)
    return e


def start(cmd, log, tf_config=None):
    return subprocess.Popen(cmd, env=env(tf_config), cwd=REPO, stdout=open(log, "w"), stderr=subprocess.STDOUT)


def free_ports(n):
    """n ports the operating system calls free now (bound to port 0, then released)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def start_workers(data_dir, out_dir, logs, *extra):
    ports = free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    return [start(train_cmd(data_dir, out_dir, "--strategy", "multi_worker", *extra), log,
                  {"cluster": cluster, "task": {"type": "worker", "index": i}}) for i, log in enumerate(logs)]


def port_taken(log):
    text = Path(log).read_text(errors="replace").lower()
    return "address already in use" in text or "could not start grpc server" in text


def run_workers(data_dir, out_dir, tmp_path, *extra, attempts=3):
    """Two workers to the end; started again on fresh ports in the rare case a port was taken meanwhile.

    Returns the workers' process ids, the chief's first.
    """
    for attempt in range(attempts):
        logs = [tmp_path / f"worker{i}-{attempt}.log" for i in range(2)]
        procs = start_workers(data_dir, out_dir, logs, *extra)
        codes = [p.wait(timeout=TIMEOUT) for p in procs]
        if codes == [0, 0] or not any(port_taken(log) for log in logs):
            break
    for code, log in zip(codes, logs):
        assert code == 0, Path(log).read_text(errors="replace")[-4000:]
    return [p.pid for p in procs]


def model_weights(run_dir, step):
    reader = tf.train.load_checkpoint(os.path.join(run_dir, "checkpoints", f"ckpt-{step}"))
    names = [k for k in reader.get_variable_to_shape_map() if k.startswith("model_variables/")]
    assert names
    return {k: reader.get_tensor(k) for k in names}


def assert_same_weights(run_a, step_a, run_b, step_b):
    a, b = model_weights(run_a, step_a), model_weights(run_b, step_b)
    assert a.keys() == b.keys()
    for k in a:  # the same up to the order of float sums (observed: < 1e-6)
        np.testing.assert_allclose(a[k], b[k], rtol=1e-4, atol=2e-5, err_msg=k)


def history(run_dir):
    lines = (Path(run_dir) / "history.csv").read_text().splitlines()
    cols = lines[0].split(",")
    return [dict(zip(cols, line.split(","))) for line in lines[1:]]


def checkpoint_steps(run_dir):
    return sorted(int(p.name[5:-6]) for p in (Path(run_dir) / "checkpoints").glob("ckpt-*.index"))


def wait_for_checkpoint(run, procs, timeout=TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if tf.train.latest_checkpoint(str(run / "checkpoints")):  # the state file names a complete one
            return
        assert all(p.poll() is None for p in procs), "a worker ended before the first checkpoint"
        time.sleep(0.05)
    raise AssertionError(f"no checkpoint after {timeout} s")


def start_and_kill_worker_1(data_dir, run, tmp_path):
    """Two workers on a long run; worker 1 killed once the chief has a checkpoint. Returns the chief's log and pid."""
    for attempt in range(3):
        logs = [tmp_path / f"killed{i}-{attempt}.log" for i in range(2)]
        procs = start_workers(data_dir, run, logs, "--epochs", "100")
        try:
            wait_for_checkpoint(run, procs)
            break
        except AssertionError:
            for p in procs:
                p.kill()
                p.wait(timeout=TIMEOUT)
            if not any(port_taken(log) for log in logs) or attempt == 2:
                raise
    procs[1].kill()  # worker 1 dies mid-epoch
    procs[1].wait(timeout=TIMEOUT)
    try:  # the chief notices at its next collective (connection lost or heartbeats missed)
        assert procs[0].wait(timeout=TIMEOUT) == 1, logs[0].read_text(errors="replace")[-4000:]
    finally:
        if procs[0].poll() is None:
            procs[0].kill()
    return logs[0], procs[0].pid


def test_two_workers_train_as_one_resume_after_a_kill_and_only_the_chief_writes(data_dir, tmp_path):
    ref = tmp_path / "one_worker"
    ref_log = tmp_path / "one_worker.log"
    ref_proc = start(train_cmd(data_dir, ref, "--epochs", "3", "--noexport_saved_model"), ref_log)
    try:
        run = tmp_path / "run"
        chief_log, first_chief = start_and_kill_worker_1(data_dir, run, tmp_path)
        out = chief_log.read_text(errors="replace")
        assert "Traceback" not in out, out[-4000:]
        last = out.strip().splitlines()[-1]  # one line: what happened and what to do
        assert last.startswith(f"error: --out_dir {run}: ") and "stopped or cannot be reached" in last, last
        assert last.endswith("start every worker again with the same flags and --resume"), last
        killed_at = checkpoint_steps(run)[-1]
        assert 2 <= killed_at < 3 * STEPS_PER_EPOCH  # no worker runs ahead of a dead one

        pids = run_workers(data_dir, run, tmp_path, "--epochs", "3", "--resume")
        assert ref_proc.wait(timeout=TIMEOUT) == 0, ref_log.read_text(errors="replace")[-4000:]
    finally:
        if ref_proc.poll() is None:
            ref_proc.kill()
            ref_proc.wait()

    # the weights of one worker with the same global batch, at every checkpoint of both runs
    steps = checkpoint_steps(run)
    assert steps == list(range(2, 3 * STEPS_PER_EPOCH + 1, 2)) == checkpoint_steps(ref)
    for step in steps:
        assert_same_weights(run, step, ref, step)
    mine, theirs = history(run), history(ref)
    assert [r["step"] for r in mine] == [r["step"] for r in theirs] == ["4", "8", "12"]
    for r, s in zip(mine, theirs):  # losses and counts summed over both workers' halves of each batch
        for col in ("loss", "val_loss", "micro_f1", "val_micro_f1"):
            assert float(r[col]) == pytest.approx(float(s[col]), rel=1e-4, abs=1e-6), col

    # the chief alone wrote: checkpoints, summaries (event files named with the writer's pid), models,
    # SavedModel; the non-chief's scratch checkpoints (RUN/workers/1) are gone
    assert sorted(os.listdir(run)) == ["best.keras", "checkpoints", "curves.png", "final.keras", "flags.json",
                                       "history.csv", "input_config.json", "logs", "run_info.json", "saved_model"]
    events = [p.name for kind in ("train", "val") for p in (run / "logs" / kind).iterdir()]
    assert {int(name.split(".")[-3]) for name in events} == {first_chief, pids[0]}, events  # .<pid>.<n>.v2
    assert (run / "saved_model" / "saved_model.pb").is_file()
    info = json.loads((run / "run_info.json").read_text())
    assert info["strategy"] == "multi_worker" and info["replicas"] == 2
