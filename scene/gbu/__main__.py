"""Make the GHS built-up (GBU) products of a scene: BUFRAC, cleaned BUFRAC, greenness, RES/NRES, aggregates.

  python -m scene.gbu --scene SCENE.tif -o OUT                  # predicts BUFRAC with GHS-S2Net first
  python -m scene.gbu --bufrac PREDICTION.tif --scene SCENE.tif -o OUT
  python -m scene.gbu --bufrac PREDICTION.tif -o OUT            # BUFRAC, threshold/streets cleaning, aggregates

The scene has 4 bands B4, B3, B2, B8 (R, G, B, NIR), uint16 reflectance x 10000 (pixels with a
band 0 are nodata). --bufrac is a built-up probability raster on the scene's grid: uint16
probability x 10000 with nodata 65535 (what scene inference writes), or float32 0..1.

Products in OUT (GeoTIFF on the input grid unless said; products.json lists them with their
dtype, nodata and meaning, the steps skipped and why, and the figures):

  bufrac.tif           float32 0..1, nodata NaN: probability / 10000
  bufrac_clean.tif     float32, nodata NaN: BUFRAC <= --threshold -> 0; --streets: centre inside a
                       buffered street -> 0, other touched pixels x 0.5; NDVI > --ndvi_max -> 0
  greenness.tif        float32 NDVI inside the closing of the built-up mask (elliptical --kernel), NaN elsewhere
  resnres.tif          uint8 0 not built-up, 1 residential, 2 non-residential, 255 nodata (random forest on
                       [BUFRAC, R, G, B, NIR] where BUFRAC > 0, 3 x 3 majority); needs --resnres_labels
                       (trains and saves resnres_model.joblib) or --resnres_model
  bufrac_<CRS>_<res>.tif  2 bands float32: mean cleaned BUFRAC over the cell's valid part (NaN: none)
                       and the cell's valid fraction, for each --aggregate target (average resampling)
  quicklook/*.png      a picture of each product with a colour bar or legend

--aoi crops the inputs first: WEST,SOUTH,EAST,NORTH in degrees, or a GeoJSON / GBU AOI file
(scene/gbu/example_aoi.json; --aoi_name picks an area). Bad input is reported as
"error: FILE: problem" with exit status 1; a missing or contradictory flag exits 2.
"""
from __future__ import annotations

import functools
import os
import re
import sys
from typing import Sequence

from absl import flags

from prep import cli
from prep.errors import EORecordsError, UsageError

FLAGS = flags.FLAGS


@functools.cache
def define_flags() -> None:
    """Declare the command's flags (called by ``run``)."""
    from scene.gbu import aggregate, cleaning

    flags.DEFINE_string("bufrac", None, "Built-up probability raster: uint16 x 10000 (nodata 65535) or float32 0..1.")
    flags.DEFINE_string("scene", None, "4-band scene B4, B3, B2, B8 (uint16 reflectance x 10000); without --bufrac "
                        "its built-up probability is predicted first (scene.inference.predict_scene).")
    flags.DEFINE_string("out_dir", None, "Folder for the products.", short_name="o")
    flags.DEFINE_bool("overwrite", False, "Replace the content of a non-empty --out_dir.")
    flags.DEFINE_string("aoi", None, "Area of interest: WEST,SOUTH,EAST,NORTH (degrees) or a GeoJSON / GBU AOI file.")
    flags.DEFINE_string("aoi_name", None, "Which area of an --aoi file holding several.")
    flags.DEFINE_bool("clean", True, "Write bufrac_clean.tif (threshold, streets, NDVI rules).")
    flags.DEFINE_float("threshold", cleaning.THRESHOLD, "Cleaning: BUFRAC at or below it -> 0.")
    flags.DEFINE_float("ndvi_max", cleaning.NDVI_MAX, "Cleaning: BUFRAC -> 0 where NDVI is above it.")
    flags.DEFINE_string("streets", None, "Cleaning: vector file of street lines with a width in metres "
                        "(needs the 'streets' extra: geopandas, shapely).")
    flags.DEFINE_string("streets_width_field", "width", "The street width attribute (metres, full width).")
    flags.DEFINE_bool("streets_reproject", True, "Reproject a street file in another CRS; --nostreets_reproject "
                      "refuses it.")
    flags.DEFINE_bool("greenness", True, "Write greenness.tif (needs --scene).")
    flags.DEFINE_string("kernel", "60x60", "Greenness closing kernel, ROWSxCOLS pixels (elliptical), or one number.")
    flags.DEFINE_string("resnres_labels", None, "Raster on the scene's grid: 1 residential, 2 non-residential, "
                        "other unlabelled; trains the RES/NRES classifier (saved as resnres_model.joblib).")
    flags.DEFINE_string("resnres_model", None, "A saved RES/NRES classifier (resnres_model.joblib) to apply.")
    flags.DEFINE_integer("resnres_samples", 200_000, "At most this many training pixels (drawn at random).",
                         lower_bound=2)
    flags.DEFINE_integer("seed", 0, "Random seed of the RES/NRES training.")
    flags.DEFINE_list("aggregate", list(aggregate.DEFAULT_TARGETS), "Aggregation targets CRS=RESOLUTION (metres, "
                      "arc-seconds for a geographic CRS); --aggregate= for none.")
    flags.DEFINE_bool("quicklooks", True, "Draw quicklook/<product>.png.")
    flags.DEFINE_string("model", None, "With --scene alone: the GHS-S2Net model for scene inference (default: its own).")
    flags.DEFINE_integer("batch_size", None, "With --scene alone: scene inference's batch size.", lower_bound=1)
    flags.DEFINE_integer("offset", 0, "DN offset added to the scene before scaling, as predict.py's --offset "
                         "(-1000 for Sentinel-2 processing baseline >= 04.00, 0 before).", upper_bound=0)
    flags.DEFINE_integer("block_size", 1024, "Block edge in pixels.", lower_bound=16)
    flags.DEFINE_bool("progress", True, "Show progress bars.")


def parse_kernel(text: str) -> tuple[int, int]:
    """``"60x60"`` or ``"60"`` -> (rows, cols).

    Args:
      text: the --kernel value.

    Returns:
      ``(rows, cols)``, each >= 1.

    Raises:
      UsageError: another form.
    """
    m = re.fullmatch(r"\s*(\d+)\s*(?:[xX*]\s*(\d+))?\s*", text or "")
    if not m or int(m.group(1)) < 1 or int(m.group(2) or 1) < 1:
        raise UsageError(f"--kernel {text!r}: expected ROWSxCOLS (e.g. 60x60) or one number")
    rows = int(m.group(1))
    return rows, int(m.group(2) or rows)


def main(argv: Sequence[str]) -> int:
    """Run the chain as the flags say.

    Args:
      argv: absl's remaining command line; only the program name is accepted.

    Returns:
      The exit status, 0.

    Raises:
      UsageError: extra arguments, no --out_dir, neither --bufrac nor --scene, a bad --kernel,
        --aggregate or --aoi, both --resnres_labels and --resnres_model, a non-empty --out_dir
        without --overwrite, or with --overwrite one holding an input.
      InputError: a missing, unreadable or malformed input file.
      EORecordsError: out of memory (a --kernel or --block_size too large).
    """
    from scene.gbu.aggregate import parse_target
    from scene.gbu.aoi import parse_aoi
    from scene.gbu.chain import ChainOptions, run_chain

    cli.no_arguments(argv)
    cli.required("out_dir")
    if not (FLAGS.bufrac or FLAGS.scene):
        raise UsageError("give --bufrac (a built-up probability raster) or --scene (a 4-band scene), or both")
    if FLAGS.resnres_labels and FLAGS.resnres_model:
        raise UsageError("give --resnres_labels (train) or --resnres_model (apply), not both")
    targets = tuple(t for t in FLAGS.aggregate if t.strip())
    for t in targets:
        parse_target(t)
    options = ChainOptions(
        clean=FLAGS.clean, threshold=FLAGS.threshold, ndvi_max=FLAGS.ndvi_max, streets=FLAGS.streets,
        streets_width_field=FLAGS.streets_width_field, streets_reproject=FLAGS.streets_reproject,
        greenness=FLAGS.greenness, kernel=parse_kernel(FLAGS.kernel), resnres_labels=FLAGS.resnres_labels,
        resnres_model=FLAGS.resnres_model, resnres_samples=FLAGS.resnres_samples, seed=FLAGS.seed,
        aggregate=targets, quicklooks=FLAGS.quicklooks, offset=-FLAGS.offset, block_size=FLAGS.block_size,
        progress=FLAGS.progress, model=FLAGS.model, batch_size=FLAGS.batch_size)
    aoi = parse_aoi(FLAGS.aoi, FLAGS.aoi_name) if FLAGS.aoi else None
    if FLAGS.greenness and FLAGS["greenness"].present and not FLAGS.scene:
        raise UsageError("--greenness needs --scene (NDVI)")
    aoi_file = FLAGS.aoi if FLAGS.aoi and os.path.exists(FLAGS.aoi) else None
    cli.refuse_nonempty(FLAGS.out_dir, FLAGS.overwrite, [FLAGS.bufrac, FLAGS.scene, FLAGS.resnres_labels,
                                                         FLAGS.resnres_model, FLAGS.streets, aoi_file])
    try:
        report = run_chain(FLAGS.out_dir, bufrac=FLAGS.bufrac, scene=FLAGS.scene, aoi=aoi, options=options)
    except MemoryError:  # the closing and the majority filter hold a block plus its halo of one kernel
        k = options.kernel
        raise EORecordsError(f"out of memory with --kernel {k[0]}x{k[1]} and --block_size {options.block_size}",
                             hint="use a smaller --kernel (pixels) or --block_size") from None
    print(f"\nwrote {len(report['products'])} products to {FLAGS.out_dir} (products.json)")
    return 0


def run(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``python -m scene.gbu``.

    Args:
      argv: the command line; None: ``sys.argv``.

    Raises:
      SystemExit: always; 0 on success, 1 for bad input, 2 for a usage error.
    """
    cli.run_command(sys.modules[__name__], argv)


if __name__ == "__main__":
    run()
