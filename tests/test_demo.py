"""The main job (make demo) runs any number of times: a rerun reuses what the first run finished.

A small configuration of the same command (fewer patches, one epoch), twice on one folder: both
exit 0, the second says it reuses the archive and the finished run, keeps every shard, and the
report is written again; after a run is left unfinished the next one starts it afresh and says so.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}


def demo(out: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "prep.demo", "--out_dir", str(out), "--num_patches", "60", "--epochs", "1",
           "--batch_size", "16"]
    r = subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r


def test_the_demo_runs_twice_and_reuses_its_work(tmp_path):
    out = tmp_path / "demo"
    first = demo(out)
    assert "training a new run" in first.stdout and "best constant predictor" in first.stdout
    shards = {p.name: p.stat().st_mtime_ns for p in (out / "records").glob("*.tfrecord")}
    second = demo(out)
    assert "reusing the archive" in second.stdout and "reusing the finished run" in second.stdout
    assert {p.name: p.stat().st_mtime_ns for p in (out / "records").glob("*.tfrecord")} == shards
    assert (out / "eval" / "report.md").is_file()
    # an unfinished run (here: its final model removed) is started afresh, and the demo says so
    (out / "run" / "final.keras").unlink()
    shutil.rmtree(out / "eval")
    third = demo(out)
    assert "holds an unfinished run: starting it afresh" in third.stdout
    assert (out / "run" / "final.keras").is_file() and (out / "eval" / "report.md").is_file()
