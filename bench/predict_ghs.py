"""Scene inference with GHS-S2Net: Mpixel/s and peak RSS of ``predict_scene`` beside upstream's per-pixel method.

    python bench/predict_ghs.py                       # the 10,980 x 10,980 granule (takes long on 2 cores)
    python bench/predict_ghs.py --size 1024 --crop 256

Generates a ``--size`` x ``--size`` 4-band uint16 scene (smooth random reflectance with a no-data
border, the CRS and transform of a real BigEarthNet-S2 example patch), writes random GHS-S2Net
weights, then, each in its own process so that each peak RSS is its own:

- ours: ``scene.inference.predict_scene`` over the whole scene (reads, blocks with halo,
  convolutional network, writing the tiled DEFLATE GeoTIFF; model loading included);
- upstream's method on a ``--crop`` x ``--crop`` crop: reflect-pad 2 px, one 5x5x4 window per pixel
  (``extract_patches_2d``'s copy), the patch-by-patch Keras model, ``predict`` in batches of
  ``--baseline_batch`` windows (upstream: 800,000).

Prints Mpixel/s and peak RSS of each and the speed-up. Both run the same float32 network on the
same CPU threads; the outputs of the two are compared on the crop (max |difference| of the stored
uint16 values).
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("size", 10980, "Scene side in pixels (a Sentinel-2 granule is 10,980).")
flags.DEFINE_integer("crop", 1000, "Side of the crop the per-pixel method runs on.")
flags.DEFINE_integer("block_size", 512, "predict_scene block side.")
flags.DEFINE_integer("batch_size", 32768, "predict_scene output pixels per model call.")
flags.DEFINE_integer("baseline_batch", 100000, "Windows per predict call of the per-pixel method.")
flags.DEFINE_string("work_dir", None, "Folder for the scene, weights and outputs (default: a temporary one).")
flags.DEFINE_enum("part", "all", ["all", "ours", "upstream"], "Run one part in this process (used internally).")
flags.DEFINE_string("output_json", None, "Also write the figures to this JSON file.")


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MB (Linux ``ru_maxrss`` is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def make_scene(path: Path, size: int, seed: int = 0) -> None:
    """Writes a ``size`` x ``size`` 4-band uint16 GeoTIFF in strips (memory independent of ``size``).

    Values: a smooth field of 200..6000 DN per band plus noise, 0 (no-data) in a 30-pixel border on
    the left, as the edge of a granule; CRS and transform of the first real BigEarthNet-S2 example.

    Args:
        path: the GeoTIFF to write.
        size: side in pixels.
        seed: random seed.
    """
    import tarfile

    import numpy as np
    import rasterio

    from splits import bigearthnet

    with tarfile.open(bigearthnet.example_archive("S2"), "r:bz2") as tar:
        member = sorted(m.name for m in tar.getmembers() if m.name.endswith("_B04.tif"))[0]
        with rasterio.MemoryFile(tar.extractfile(member).read()) as mem, mem.open() as ds:
            crs, transform = ds.crs, ds.transform
    rng = np.random.default_rng(seed)
    strip = 256
    cols = np.arange(size, dtype=np.float32)
    with rasterio.open(path, "w", driver="GTiff", height=size, width=size, count=4, dtype="uint16", crs=crs,
                       transform=transform, tiled=True, blockxsize=256, blockysize=256, BIGTIFF="IF_SAFER") as out:
        for row0 in range(0, size, strip):
            rows = min(strip, size - row0)
            r = np.arange(row0, row0 + rows, dtype=np.float32)[:, None]
            data = np.empty((4, rows, size), np.uint16)
            for b in range(4):
                field = 3100 + 2900 * np.sin(r / (70.0 + 13 * b)) * np.cos(cols / (90.0 + 7 * b))
                data[b] = np.clip(field + rng.normal(0, 150, (rows, size)), 1, 10000)
            data[:, :, :30] = 0
            out.write(data, window=rasterio.windows.Window(0, row0, size, rows))


def run_ours(work: Path) -> dict:
    """Times ``predict_scene`` on the scene. Returns the figures (Mpixel/s, seconds, peak RSS)."""
    from scene import inference

    t = time.perf_counter()
    inference.predict_scene(work / "scene.tif", work / "ours.tif", model=str(work / "ghs.weights.h5"),
                            block_size=FLAGS.block_size, batch_size=FLAGS.batch_size, progress=True)
    seconds = time.perf_counter() - t
    return {"pixels": FLAGS.size ** 2, "seconds": seconds, "mpixel_s": FLAGS.size ** 2 / seconds / 1e6,
            "peak_rss_mb": peak_rss_mb()}


def run_upstream(work: Path) -> dict:
    """Times upstream's per-pixel method on the crop. Returns the figures and its uint16 output."""
    import numpy as np
    import rasterio
    from numpy.lib.stride_tricks import sliding_window_view

    from models import ghs

    crop = FLAGS.crop
    model = ghs.build_ghs_s2net(ghs.DEFAULT_INPUT_SPEC, final_activation="sigmoid")
    model.load_weights(work / "ghs.weights.h5")
    t = time.perf_counter()
    with rasterio.open(work / "scene.tif") as ds:
        dn = ds.read(window=rasterio.windows.Window(0, 0, crop, crop))
    valid = np.all(dn > 0, axis=0)
    x = np.minimum(np.moveaxis(dn, 0, -1).astype(np.float32), 10000) / 10000.0
    padded = np.pad(x, ((2, 2), (2, 2), (0, 0)), mode="reflect")
    windows5 = np.ascontiguousarray(sliding_window_view(padded, (5, 5), axis=(0, 1)).transpose(0, 1, 3, 4, 2)
                                    ).reshape(-1, 5, 5, 4)  # the 25x copy extract_patches_2d makes
    prob = model.predict({"image": windows5}, batch_size=FLAGS.baseline_batch, verbose=0)[:, 1]
    out = (prob * 10000).astype(np.uint16).reshape(crop, crop)
    out[~valid] = 65535
    seconds = time.perf_counter() - t
    np.save(work / "upstream.npy", out)
    return {"pixels": crop ** 2, "seconds": seconds, "mpixel_s": crop ** 2 / seconds / 1e6,
            "peak_rss_mb": peak_rss_mb()}


def _child(part: str, work: Path) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), f"--part={part}", f"--work_dir={work}",
           f"--size={FLAGS.size}", f"--crop={FLAGS.crop}", f"--block_size={FLAGS.block_size}",
           f"--batch_size={FLAGS.batch_size}", f"--baseline_batch={FLAGS.baseline_batch}"]
    done = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str]) -> None:
    """Runs the benchmark (or, with --part, one half of it) and prints the figures."""
    del argv
    if FLAGS.part != "all":
        work = Path(FLAGS.work_dir)
        result = run_ours(work) if FLAGS.part == "ours" else run_upstream(work)
        print(json.dumps(result))
        return
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(FLAGS.work_dir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        import keras
        import numpy as np
        import rasterio

        from models import ghs

        t = time.perf_counter()
        make_scene(work / "scene.tif", FLAGS.size)
        keras.utils.set_random_seed(0)
        ghs.build_ghs_s2net(ghs.DEFAULT_INPUT_SPEC).save_weights(work / "ghs.weights.h5")
        print(f"generated a {FLAGS.size} x {FLAGS.size} x 4 scene in {time.perf_counter() - t:.1f} s")
        ours = _child("ours", work)
        upstream = _child("upstream", work)
        with rasterio.open(work / "ours.tif") as ds:
            mine = ds.read(1, window=rasterio.windows.Window(0, 0, FLAGS.crop, FLAGS.crop))
        # the crop's last 2 rows and columns see real neighbours in our run, mirrored ones upstream
        diff = int(np.abs(mine.astype(np.int64) - np.load(work / "upstream.npy"))[:-2, :-2].max())
        speedup = ours["mpixel_s"] / upstream["mpixel_s"]
        print(f"ours     (predict_scene, {FLAGS.size}^2 scene, block {FLAGS.block_size}): "
              f"{ours['mpixel_s']:.4f} Mpixel/s ({ours['seconds']:.1f} s), peak RSS {ours['peak_rss_mb']:.0f} MB")
        print(f"upstream (5x5 window per pixel, {FLAGS.crop}^2 crop, batch {FLAGS.baseline_batch}): "
              f"{upstream['mpixel_s']:.4f} Mpixel/s ({upstream['seconds']:.1f} s), "
              f"peak RSS {upstream['peak_rss_mb']:.0f} MB")
        print(f"speed-up {speedup:.2f}x; max |ours - upstream| on the crop: {diff} (uint16 units)")
        if FLAGS.output_json:
            Path(FLAGS.output_json).write_text(json.dumps({"size": FLAGS.size, "crop": FLAGS.crop, "ours": ours,
                                                           "upstream": upstream, "speedup": speedup,
                                                           "max_abs_diff": diff}, indent=1) + "\n")


if __name__ == "__main__":
    app.run(main)
