r"""Apply GHS-S2Net to a whole Sentinel-2 scene and write the built-up probability as a GeoTIFF.

    python predict.py --input S2_composite_32T.tif --output built_up.tif
    python predict.py --input S2B_MSIL2A_20230601T102559_N0509_R108_T32TQM_20230601T133128.SAFE \
        --output T32TQM_built_up.tif --cog
    python predict.py --input folder_of_band_tifs --offset -1000 --model MODEL_CNN_32T --output out.tif

--input is either a 4-band GHS composite GeoTIFF (bands B4, B3, B2, B8; uint16) or a Sentinel-2 L1C
/ L2A product folder (SAFE, JP2 or GeoTIFF band files): its 10 m bands B02, B03, B04, B08 are
stacked in the model's order, and the processing baseline in the product metadata decides the DN
offset (-1000 from baseline 04.00 on); a folder without metadata needs --offset. Reflectance is
clip(DN + offset, 0, 10000) / 10000.

The model is the published GHS-S2Net of the scene's UTM grid zone (from the product's tile id, else
from the scene's CRS and centre; fetched and converted on first use, see `python -m pretrained`),
or --model: a registry name (MODEL_CNN_32T), a published Keras-2 .h5 file, a .weights.h5 / .keras
file or a train.py run folder of a GHS-S2Net.

Other models: with --model naming a train.py run folder (or a .keras file with input_config.json
beside it) of a patch classifier, --input is a GeoTIFF of the model's bands on its grid, cut into
tiles of the model's input size; the output has one pixel per tile and a band per class
(probability x 10000, uint16, nodata 65535; see scene/tiles.py), or, for a segmentation run (e.g.
UNet-ResNet50 on SEN12MS masks), a class id per pixel (uint8, nodata 255) on the scene's grid.

The scene is read and written block by block (--block_size) with a 2-pixel halo (reflect padding
only at the scene's edges), and the network runs convolutionally over each block: peak memory does
not depend on the scene's size. Output: uint16 probability x 10000, nodata 65535 where any input
band is 0, tiled and DEFLATE-compressed (or a COG with --cog), with the input's CRS and transform.
An interrupted run continues where it stopped when started again with the same flags (finished
blocks are kept in <output>.part and <output>.part.json until the GeoTIFF is complete).
"""
from __future__ import annotations

import functools
import os
import sys

from absl import flags

from prep import cli
from prep.errors import InputError, UsageError

FLAGS = flags.FLAGS


@functools.cache  # declared once per process, however often run() or a test calls it
def define_flags() -> None:
    """Declare the command's flags (called by run(); importing this module defines none)."""
    from scene import windows

    flags.DEFINE_string("input", None, "The scene: a 4-band GHS composite GeoTIFF (B4, B3, B2, B8, uint16) or a "
                        "Sentinel-2 L1C/L2A product folder (SAFE, JP2 or GeoTIFF band files).", short_name="i")
    flags.DEFINE_string("output", None, "The output GeoTIFF (uint16 probability x 10000, nodata 65535).",
                        short_name="o")
    flags.DEFINE_string("model", None, "A pretrained registry name (MODEL_CNN_32T), a Keras-2 .h5 file, a "
                        ".weights.h5 / .keras file or a train.py run folder; default: the published GHS-S2Net of "
                        "the scene's UTM grid zone (from the tile id, else the CRS). A run folder of a patch "
                        "classifier predicts one value per tile.")
    flags.DEFINE_float("offset", None, "DN offset added before scaling, e.g. -1000 (processing baseline 04.00 "
                       "and later) or 0; default: from the product metadata (0 for a composite). Required for a "
                       "product folder without MTD_*.xml.")
    flags.DEFINE_integer("block_size", 512, "Block side in pixels for windowed reads and writes (and the unit "
                         "of resuming).", lower_bound=1)
    flags.DEFINE_integer("batch_size", windows.DEFAULT_BATCH_SIZE, "Output pixels per model call (memory "
                         "grows with it: ~batch_size x 2 KB per 512-channel activation); for a patch classifier, "
                         "input pixels per call (at least one tile).", lower_bound=1)
    flags.DEFINE_boolean("cog", False, "Write a Cloud-Optimized GeoTIFF (with average overviews) instead of a "
                         "tiled GeoTIFF.")
    flags.DEFINE_string("cache_dir", None, "Pretrained cache folder (default: $EORECORDS_CACHE, else "
                        "~/.cache/eorecords).")
    flags.DEFINE_boolean("progress", True, "Show a progress bar.")


def main(argv: list[str]) -> int:
    """Predict as the flags say and print the output path.

    Run by ``run`` through ``prep.cli.run_command``, which reports an ``EORecordsError`` as one line.

    Args:
      argv: absl's remaining command line; only the program name is accepted.

    Returns:
      The exit status, 0.

    Raises:
      UsageError: arguments besides the flags, no --input or --output, an --output that is a folder or
        an input file, or --cog / --offset / --block_size with a patch classifier.
      InputError: a bad scene or model (see ``scene.inference.predict_scene``).
    """
    cli.no_arguments(argv)
    cli.required("input", "output")
    _check_output(FLAGS.output, [FLAGS.input])
    from scene import inputs, tiles

    if tiles.is_tile_model(FLAGS.model):  # a patch classifier from train.py: one prediction per tile
        ignored = [name for name, given in (("--cog", FLAGS.cog), ("--offset", FLAGS.offset is not None),
                                            ("--block_size", FLAGS["block_size"].present)) if given]
        if ignored:  # they steer GHS-S2Net's scene inference only; silently dropped before
            raise UsageError(f"{', '.join(ignored)}: not used with a patch classifier (--model {FLAGS.model}): "
                             "its input is read as stored and written as a tiled GeoTIFF")
        from prep.quiet import import_tensorflow

        import_tensorflow()
        spec = tiles.find_model(FLAGS.model)[1]["input_spec"]["image"]
        done = tiles.predict_tiles(FLAGS.input, FLAGS.output, model=FLAGS.model, progress=FLAGS.progress,
                                   batch_size=max(1, FLAGS.batch_size // (spec[0] * spec[1])))
        what = (f"{done['nodata_tiles']} nodata" if done["nodata_tiles"] is not None
                else f"a class per pixel, {done['nodata_pixels']} nodata pixels")
        print(f"{done['path']}: {done['tiles'][0]} x {done['tiles'][1]} tiles of {done['tile'][0]} x "
              f"{done['tile'][1]} px ({what}); not classified: the last "
              f"{done['unclassified'][0]} rows and {done['unclassified'][1]} columns")
        return 0

    import warnings

    from rasterio.errors import NotGeoreferencedWarning

    with warnings.catch_warnings():  # a scene without georeference is reported below when it matters
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        scene = inputs.open_scene(FLAGS.input, FLAGS.offset)  # bad input fails here, before TensorFlow loads
    _check_output(FLAGS.output, [path for path, _ in scene.files])
    model = FLAGS.model
    if model is None:
        from scene import zones

        try:
            model = zones.pick_model(scene.crs, scene.transform, (scene.height, scene.width), scene.names)
        except InputError as e:  # about the scene: name it
            raise InputError(e.problem, path=e.path or FLAGS.input, hint=e.hint) from None
        print(f"model: {model} (the scene's UTM grid zone)", file=sys.stderr)
    from prep.quiet import import_tensorflow

    import_tensorflow()
    from scene import inference

    out = inference.predict_scene(FLAGS.input, FLAGS.output, model=model, block_size=FLAGS.block_size,
                                  batch_size=FLAGS.batch_size, cog=FLAGS.cog, offset=FLAGS.offset,
                                  progress=FLAGS.progress, cache=FLAGS.cache_dir)
    print(out)
    return 0


def _check_output(output: str, inputs: list[str]) -> None:
    """Refuse an --output that is a folder or one of the input files (before any work; it would be overwritten).

    Raises:
      UsageError: ``output`` is an existing folder or the same file as one of ``inputs``.
    """
    if os.path.isdir(output):
        raise UsageError("is a folder: give the GeoTIFF file to write", path=f"--output {output}")
    for path in inputs:
        if os.path.isfile(output) and os.path.isfile(path) and os.path.samefile(output, path):
            raise UsageError(f"is the input {path}: it would be overwritten; write elsewhere",
                             path=f"--output {output}")


def run() -> None:
    """Console entry point (``eorecords-predict``; also ``python predict.py``).

    Raises:
      SystemExit: always; 0 on success, 1 for bad input, 2 for a usage error.
    """
    module = sys.modules[__name__]
    script = getattr(module, "__spec__", None) is None
    cli.run_command(module, prog="python predict.py" if script else None)


if __name__ == "__main__":
    run()
