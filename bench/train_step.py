"""Training throughput of the registered models: samples per second of full training steps.

A step is forward, loss, backward and Adam update, on random data.

    python bench/train_step.py --models K-BranchCNN,ResNet50 --batch_size 32
    python bench/train_step.py --mixed_precision --batch_size 256      # on a GPU

Each model gets its published input spec (``models.default_input_spec``), class count
and task, a few untimed warm-up steps (tracing, allocation), then ``--steps`` timed
steps; one line per model carries "samples/s". Data are random tensors already in
memory, so the figure is the model's alone, not the input pipeline's.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

from prep.datasets.spec import Task  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("models", ["K-BranchCNN", "VGG16", "ResNet50", "DenseNet121", "Sen2LCZ-Net",
                             "GHS-S2Net"],
                  "Comma-separated model names (see models.names()).")
flags.DEFINE_integer("batch_size", 32, "Samples per training step.")
flags.DEFINE_integer("warmup", 2, "Untimed steps before timing (tracing, allocation).")
flags.DEFINE_integer("steps", 5, "Timed training steps per model.")
flags.DEFINE_bool("mixed_precision", False,
                  "Train under the mixed_float16 policy (use on GPUs; loss scaling is automatic).")
flags.DEFINE_bool("jit_compile", False, "Compile the train step with XLA.")
flags.DEFINE_integer("seed", 0, "Seed for weights and random data.")
flags.DEFINE_string("output_json", None, "Also write the figures to this JSON file.")


def _device_name(tf) -> str:
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        return f"GPU {details.get('device_name', gpus[0].name)} x{len(gpus)}"
    return f"CPU {platform.processor() or platform.machine()} ({os.cpu_count()} logical cores)"


def bench_model(name: str, batch_size: int, warmup: int, steps: int, jit_compile: bool, seed: int) -> dict:
    """Times ``steps`` training steps of model ``name`` on random data in memory, after ``warmup`` untimed ones.

    The model gets its published input spec, class count and task; the loss is sigmoid
    (multi-label) or sparse softmax (single-label) cross-entropy on logits, Adam at 1e-3.

    Returns:
        ``{"model", "params", "batch_size", "steps", "seconds", "samples_per_s", "final_loss"}``.

    Raises:
        KeyError: unknown model name.
    """
    import keras
    import numpy as np

    import models

    info = models.get(name)
    spec = models.default_input_spec(name)
    keras.utils.set_random_seed(seed)
    model = models.build(name, spec, info.default_num_classes, info.default_task)
    rng = np.random.default_rng(seed)
    x = {k: rng.normal(size=(batch_size,) + tuple(s)).astype("float32") for k, s in spec.items()}
    if info.default_task == Task.MULTI_LABEL:
        y = (rng.random((batch_size, info.default_num_classes)) < 0.2).astype("float32")
        loss = keras.losses.BinaryCrossentropy(from_logits=True)
    else:
        y = rng.integers(0, info.default_num_classes, batch_size).astype("int32")
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss, jit_compile=jit_compile)
    for _ in range(warmup):
        model.train_on_batch(x, y)
    start = time.perf_counter()
    for _ in range(steps):
        last = model.train_on_batch(x, y)  # returns host values: each step is finished
    seconds = time.perf_counter() - start
    return {"model": name, "params": model.count_params(), "batch_size": batch_size,
            "steps": steps, "seconds": seconds, "samples_per_s": batch_size * steps / seconds,
            "final_loss": float(np.asarray(last).ravel()[0])}


def main(argv: list[str]) -> None:
    """Benchmarks every model of ``--models`` and prints one "samples/s" line each (absl main; ``argv`` unused)."""
    del argv
    import keras
    import tensorflow as tf

    if FLAGS.mixed_precision:
        keras.config.set_dtype_policy("mixed_float16")
    device = _device_name(tf)
    precision = "mixed_float16" if FLAGS.mixed_precision else "float32"
    print(f"device: {device}; precision: {precision}; batch {FLAGS.batch_size}; "
          f"{FLAGS.warmup} warm-up + {FLAGS.steps} timed steps", flush=True)
    results = []
    for name in FLAGS.models:
        r = bench_model(name, FLAGS.batch_size, FLAGS.warmup, FLAGS.steps, FLAGS.jit_compile,
                        FLAGS.seed)
        r.update(device=device, precision=precision)
        results.append(r)
        print(f"{name}: {r['samples_per_s']:.1f} samples/s ({r['params']:,} params, batch "
              f"{r['batch_size']}, {r['steps']} steps in {r['seconds']:.2f} s, {precision}, {device})",
              flush=True)
    if FLAGS.output_json:
        with open(FLAGS.output_json, "w") as f:
            json.dump(results, f, indent=1)


def run() -> None:
    """Parses the flags and runs ``main`` (``absl.app.run``)."""
    app.run(main)


if __name__ == "__main__":
    run()
