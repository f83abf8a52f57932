"""SEN12MS segmentation end to end on synthetic triplets: mIoU beside the majority-class baseline.

    python bench/seg_sen12ms.py [--scenes 4] [--patches 6] [--epochs 4] [--model UNet-Tiny] [--work DIR]

Writes a synthetic season tree (``--scenes`` scenes per season, ``--patches`` triplets each, plus a
small DFC2020 set), prepares it with ``--target dfc10_mask``, trains ``--model`` (train.py's
``train``: Adam 1e-3, weight decay 1e-5, dihedral augmentation, best model by validation mIoU) and
evaluates the best model (evaluate.py's ``evaluate_model``) on the hold-out ``test`` split (IGBP
masks) and on ``dfc2020_test`` (the high-resolution labels), printing for each split the model's
mIoU and pixel accuracy beside the best constant segmentation (every pixel the majority class),
the training time and the images/s of training.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from prep import cli  # noqa: E402
from prep.datasets.sen12ms import command, synthetic  # noqa: E402
from prep.datasets.sen12ms import spec as sp  # noqa: E402


def main() -> None:
    """Generate, prepare, train, evaluate; print the figures."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenes", type=int, default=4, help="scenes per season (the first is a hold-out scene)")
    p.add_argument("--patches", type=int, default=6, help="triplets per scene")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--model", default="UNet-Tiny")
    p.add_argument("--work", default=None, help="work folder (default: a temporary one, removed at the end)")
    a = p.parse_args()

    import evaluate
    import train

    work = a.work or tempfile.mkdtemp(prefix="eorecords-seg-")
    root, data, run = (os.path.join(work, n) for n in ("raw", "records", "run"))
    for d in (root, data, run):
        shutil.rmtree(d, ignore_errors=True)
    holdout = synthetic.HOLDOUT_FIRST
    scenes = {(s, holdout[s] if i == 0 else 500 + i): a.patches for s in sp.SEASONS for i in range(a.scenes)}
    synthetic.write_archive(root, scenes, seed=11)
    synthetic.write_dfc2020(root, validation=4, test=4, seed=11)
    m = cli.write_plan(command.plan(root, target="dfc10_mask", shard_size_mb=50.0), data, workers=1)
    print("splits:", {s: v["written"] for s, v in m["splits"].items()})
    cfg = train.TrainConfig(data, run, model=a.model, epochs=a.epochs, batch_size=a.batch_size, optimizer="adam",
                            learning_rate=1e-3, weight_decay=1e-5, normalize="upstream", augment="dihedral",
                            evaluate_test=False, export_saved_model=False, progress=False, seed=1)
    t0 = time.time()
    summary = train.train(cfg)
    seconds = time.time() - t0
    images = summary["steps"] * a.batch_size
    print(f"\n{a.model}: {summary['steps']} steps in {seconds:.1f} s ({images / seconds:.1f} images/s incl. "
          f"validation and tracing); best validation mIoU {summary['best_val_miou']:.4f}")
    for split in ("test", "dfc2020_test"):
        out = evaluate.evaluate_model(run, os.path.join(run, f"eval_{split}"), split=split, echo=None,
                                      batch_size=a.batch_size)
        r = out["result"]
        base = json.load(open(os.path.join(run, f"eval_{split}", "eval_details.json")))["best_constant_predictor"]
        print(f"{split:>13}: mIoU {r['miou']:.4f} (majority class {base['value']:.4f}), "
              f"pixel OA {r['overall_accuracy']:.4f} (majority class {base['pixel_accuracy']:.4f}), "
              f"kappa {r['cohen_kappa']:.4f}, {int(r['pixels'])} valid pixels")
    if not a.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
