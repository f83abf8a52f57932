"""The end-to-end demo behind ``make demo``: synthetic + real BigEarthNet-S2 -> records -> model -> metrics.

1. writes a synthetic BigEarthNet-S2 archive in the real format and adds the six real example
   patches of the bigearthnet-common wheel (three to train, three to test);
2. prepares sharded TFRecords with ``python -m prep bigearthnet`` and checks them with prep.verify;
3. trains a small K-BranchCNN with train.py and evaluates it on the test split with evaluate.py.
Everything lands in ``--out_dir`` (default ``demo_out/``). It runs any number of times: a rerun
reuses the archive, keeps the finished shards, reuses a finished training run (an unfinished one
starts afresh, and the demo says which) and writes the report again. The report prints the best
constant predictor's score beside the model's.
"""
from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import time

from absl import flags

from prep import cli
from prep.errors import EORecordsError

FLAGS = flags.FLAGS


@functools.cache  # declared once per process, however often run() or a test calls it
def define_flags() -> None:
    """Declare the command's flags (called by run(); importing this module defines none)."""
    flags.DEFINE_string("out_dir", "demo_out", "Folder for the archive, records, run and report.", short_name="o")
    flags.DEFINE_alias("out", "out_dir")
    flags.DEFINE_integer("num_patches", 800, "Synthetic patches (plus the six real ones).")
    flags.DEFINE_integer("seed", 0, "Seed of the synthetic archive and of training.")
    flags.DEFINE_integer("epochs", 12, "Training epochs of the demo model.")
    flags.DEFINE_integer("batch_size", 32, "Training batch size of the demo model.")
    flags.DEFINE_float("learning_rate", 3e-3, "Learning rate of the demo model.")
    flags.DEFINE_string("model", "K-BranchCNN", "Model to train (see models.names()).")
    flags.DEFINE_bool("train", True, "Train and evaluate after preparing (false: stop after the records).")


def _step(title: str) -> float:
    print(f"\n=== {title}", flush=True)
    return time.time()


def _run(cmd: list[str]) -> None:
    print("$ " + " ".join(cmd), flush=True)
    code = subprocess.run(cmd).returncode
    if code:
        raise EORecordsError(f"this step stopped with exit status {code} (its message is above)", path=cmd[2])


def _train_args(run_dir: str) -> tuple[list[str], str]:
    """How to (re)start training: a finished run is reused, anything else starts afresh."""
    if os.path.exists(os.path.join(run_dir, "final.keras")):
        return [], f"reusing the finished run in {run_dir} (delete it to train again)"
    if os.path.exists(run_dir) and os.listdir(run_dir):
        return ["--overwrite"], f"{run_dir} holds an unfinished run: starting it afresh"
    return [], "training a new run"


def main(argv: list[str]) -> int:
    """Run the four steps; each reuses what an earlier run finished (the demo runs any number of times)."""
    cli.no_arguments(argv)
    from prep.datasets.bigearthnet.synthetic import extract_examples, generate_bigearthnet

    out = os.path.abspath(FLAGS.out_dir)
    raw, records = os.path.join(out, "raw"), os.path.join(out, "records")
    run_dir, report = os.path.join(out, "run"), os.path.join(out, "eval")
    t0 = _step(f"1/4 synthetic BigEarthNet-S2 archive ({FLAGS.num_patches} patches) + 6 real patches -> {raw}")
    marker = os.path.join(raw, ".complete")
    if os.path.exists(marker):
        print("   reusing the archive written by an earlier run")
    else:
        if os.path.exists(raw):
            shutil.rmtree(raw)  # an archive without its marker was interrupted: write it again
        generate_bigearthnet(raw, FLAGS.num_patches, FLAGS.seed, workers=os.cpu_count() or 1, progress=True)
        real = [p.name for p in extract_examples(raw)]
        for split, names in (("train", real[:3]), ("test", real[3:])):
            with open(os.path.join(raw, f"{split}.csv"), "a") as f:
                f.write("".join(f"{n}\n" for n in names))
        open(marker, "w").close()
    print(f"   {time.time() - t0:.1f} s")

    t0 = _step(f"2/4 prepare TFRecords -> {records} (a rerun keeps the finished shards)")
    lists = [os.path.join(raw, f) for f in sorted(os.listdir(raw)) if f.startswith("patches_with_")]
    cmd = [sys.executable, "-m", "prep", "bigearthnet", "--root_folder", raw, "--out_dir", records, "--noprogress",
           "--splits", *(os.path.join(raw, f"{s}.csv") for s in ("train", "val", "test"))]
    cmd += ["--exclusion_lists", *lists]
    _run(cmd)
    _run([sys.executable, "-m", "prep.verify", records])
    print(f"   {time.time() - t0:.1f} s")
    if not FLAGS.train:
        return 0

    extra, note = _train_args(run_dir)
    t0 = _step(f"3/4 train {FLAGS.model} -> {run_dir}: {note}")
    if not note.startswith("reusing"):
        _run([sys.executable, "train.py", f"--data_dir={records}", f"--model={FLAGS.model}", f"--out_dir={run_dir}",
              f"--epochs={FLAGS.epochs}", f"--batch_size={FLAGS.batch_size}", f"--learning_rate={FLAGS.learning_rate}",
              f"--seed={FLAGS.seed}", "--noevaluate_test", "--noexport_saved_model", "--noprogress", *extra])
    print(f"   {time.time() - t0:.1f} s")

    t0 = _step(f"4/4 evaluate on the test split -> {report}")
    _run([sys.executable, "evaluate.py", f"--model={run_dir}", f"--data_dir={records}", "--split=test",
          f"--out_dir={report}"])
    print(f"   {time.time() - t0:.1f} s\n\nreport: {os.path.join(report, 'report.md')}")
    return 0


def run(argv: list[str] | None = None) -> None:
    """Entry point of ``make demo`` (``python -m prep.demo``)."""
    cli.run_command(sys.modules[__name__], argv)


if __name__ == "__main__":
    run()
