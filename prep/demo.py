"""The end-to-end demo behind ``make demo``: synthetic + real BigEarthNet-S2 -> records -> model -> metrics.

1. writes a synthetic BigEarthNet-S2 archive in the real format and adds the six real example
   patches of the bigearthnet-common wheel (three to train, three to test);
2. prepares sharded TFRecords with prep.bigearthnet and checks them with prep.verify;
3. trains a small K-BranchCNN with train.py and evaluates it on the test split with evaluate.py.
Everything lands in ``--out`` (default ``demo_out/``); rerunning reuses what is already there.
"""
from __future__ import annotations

import functools
import os
import subprocess
import sys
import time

from absl import app, flags

FLAGS = flags.FLAGS


@functools.cache  # declared once per process, however often run() or a test calls it
def define_flags() -> None:
    """Declare the command's flags (called by run(); importing this module defines none)."""
    flags.DEFINE_string("out", "demo_out", "Folder for the archive, records, run and report.")
    flags.DEFINE_integer("num_patches", 400, "Synthetic patches (plus the six real ones).")
    flags.DEFINE_integer("seed", 0, "Seed of the synthetic archive and of training.")
    flags.DEFINE_integer("epochs", 8, "Training epochs of the demo model.")
    flags.DEFINE_string("model", "K-BranchCNN", "Model to train (see models.names()).")
    flags.DEFINE_bool("train", True, "Train and evaluate after preparing (false: stop after the records).")


def _step(title: str) -> float:
    print(f"\n=== {title}", flush=True)
    return time.time()


def _run(cmd: list[str]) -> None:
    print("$ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def main(argv):
    del argv
    from prep.datasets.bigearthnet.synthetic import extract_examples, generate_bigearthnet

    out = os.path.abspath(FLAGS.out)
    raw, records = os.path.join(out, "raw"), os.path.join(out, "records")
    run_dir, report = os.path.join(out, "run"), os.path.join(out, "eval")
    t0 = _step(f"1/4 synthetic BigEarthNet-S2 archive ({FLAGS.num_patches} patches) + 6 real patches -> {raw}")
    marker = os.path.join(raw, ".complete")
    if not os.path.exists(marker):
        generate_bigearthnet(raw, FLAGS.num_patches, FLAGS.seed, workers=os.cpu_count() or 1, progress=True)
        real = [p.name for p in extract_examples(raw)]
        for split, names in (("train", real[:3]), ("test", real[3:])):
            with open(os.path.join(raw, f"{split}.csv"), "a") as f:
                f.write("".join(f"{n}\n" for n in names))
        open(marker, "w").close()
    print(f"   {time.time() - t0:.1f} s")

    t0 = _step(f"2/4 prepare TFRecords -> {records}")
    lists = [os.path.join(raw, f) for f in sorted(os.listdir(raw)) if f.startswith("patches_with_")]
    cmd = [sys.executable, "-m", "prep.bigearthnet", "-r", raw, "-o", records,
           "-n", *(os.path.join(raw, f"{s}.csv") for s in ("train", "val", "test"))]
    cmd += [f"--exclusion_lists={p}" for p in lists]
    _run(cmd)
    _run([sys.executable, "-m", "prep.verify", records])
    print(f"   {time.time() - t0:.1f} s")
    if not FLAGS.train:
        return 0

    t0 = _step(f"3/4 train {FLAGS.model} -> {run_dir}")
    _run([sys.executable, "-m", "train", f"--data_dir={records}", f"--model={FLAGS.model}", f"--run_dir={run_dir}",
          f"--epochs={FLAGS.epochs}", "--batch_size=32", "--learning_rate=1e-3", f"--seed={FLAGS.seed}",
          "--noevaluate_test"])
    print(f"   {time.time() - t0:.1f} s")

    t0 = _step(f"4/4 evaluate on the test split -> {report}")
    _run([sys.executable, "-m", "evaluate", f"--model={run_dir}", f"--data_dir={records}", "--split=test",
          f"--out_dir={report}"])
    print(f"   {time.time() - t0:.1f} s\n\nreport: {os.path.join(report, 'report.md')}")
    return 0


def run():
    define_flags()
    app.run(main)


if __name__ == "__main__":
    run()
