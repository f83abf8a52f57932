"""The GBU chain: from a scene (or an existing built-up probability raster) to every GBU product.

``run_chain`` does, in order, each step switchable:

0. ``--aoi``: crop the inputs to the area of interest (``aoi.crop``);
   ``--scene`` without ``--bufrac``: built-up probability by ``scene.inference.predict_scene``;
1. ``bufrac.tif``: BUFRAC = probability / 10000 (``bufrac``);
2. ``bufrac_clean.tif``: threshold, street mask, NDVI (``cleaning``, ``streets``);
3. ``greenness.tif``: NDVI inside the closed built-up mask (``greenness``);
4. ``resnres.tif``: residential / non-residential classes (``resnres``), with the classifier
   trained from a labelled raster (saved as ``resnres_model.joblib``) or loaded;
5. ``bufrac_<CRS>_<res>.tif``: the cleaned BUFRAC averaged to coarser grids (``aggregate``);
6. ``quicklook/<product>.png`` of each product and ``quicklook/overview.png`` of the main ones
   (``quicklook``);

and writes ``products.json``: every product with its path, dtype, nodata and meaning, the steps
skipped and why, and the figures (built-up pixels and area before and after cleaning, RES/NRES
pixel counts, aggregated areas). Steps 1-4 go block by block (``block_size``); step 3 reads each
block with a halo of the kernel's size and step 4 with a halo of 1 pixel, so the result does not
depend on the block size. Steps 2 (NDVI rule), 3 and 4 need the scene's bands: with ``--bufrac``
alone they are skipped, and said so.
"""
from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import rasterio

from prep.errors import InputError, UsageError
from prep.files import atomic_path
from scene.gbu import aggregate as agg
from scene.gbu import bufrac as bf
from scene.gbu import cleaning, ndvi, rasters, resnres
from scene.gbu import greenness as green

PRODUCTS = {
    "bufrac": ("float32", "NaN", "built-up fraction 0..1 = probability / 10000"),
    "bufrac_clean": ("float32", "NaN", "BUFRAC cleaned: <= threshold, streets and NDVI > ndvi_max set to 0"),
    "greenness": ("float32", "NaN", "NDVI (-1..1) inside the morphological closing of the built-up mask"),
    "resnres": ("uint8", "255", "0 not built-up, 1 residential, 2 non-residential (3 x 3 majority)"),
}
AGGREGATE_MEANING = "band 1 mean BUFRAC over the valid part of the cell (NaN: none), band 2 coverage 0..1"
RESNRES_COLOURS = {0: ("not built-up", "#f7f7f7"), 1: ("residential", "#e66101"), 2: ("non-residential", "#5e3c99")}


@dataclass
class ChainOptions:
    """What the chain does; defaults are the GBU workflow's.

    Attributes:
      clean: write the cleaned BUFRAC (threshold, streets, NDVI).
      threshold: BUFRAC at or below it -> 0.
      ndvi_max: NDVI above it -> 0.
      streets: vector file of street lines with widths (metres), or None.
      streets_width_field: the width attribute.
      streets_reproject: reproject a street file in another CRS (else refuse it).
      greenness: write the greenness product.
      kernel: (rows, cols) of the elliptical closing kernel, pixels.
      resnres_labels: labelled raster to train the RES/NRES classifier on, or None.
      resnres_model: a saved RES/NRES classifier to apply, or None.
      resnres_samples: at most this many training pixels.
      seed: random seed of the RES/NRES training.
      aggregate: aggregation targets ``CRS=RESOLUTION``; empty for none.
      quicklooks: draw the PNGs.
      offset: DN offset to remove from the scene (1000 for processing baseline >= 04.00).
      block_size: block edge in pixels.
      progress: show progress bars.
      model: the GHS-S2Net model for ``predict_scene`` (None: its default).
      batch_size: ``predict_scene``'s batch size (None: its default).
    """

    clean: bool = True
    threshold: float = cleaning.THRESHOLD
    ndvi_max: float = cleaning.NDVI_MAX
    streets: str | None = None
    streets_width_field: str = "width"
    streets_reproject: bool = True
    greenness: bool = True
    kernel: tuple[int, int] = green.KERNEL
    resnres_labels: str | None = None
    resnres_model: str | None = None
    resnres_samples: int = resnres.MAX_SAMPLES
    seed: int = 0
    aggregate: tuple[str, ...] = agg.DEFAULT_TARGETS
    quicklooks: bool = True
    offset: int = 0
    block_size: int = 1024
    progress: bool = True
    model: Any = None
    batch_size: int | None = None


def _predict(scene: str, dst: Path, options: ChainOptions) -> str:
    """The built-up probability of a scene through scene inference (imported here: optional)."""
    try:
        from scene.inference import predict_scene
    except ImportError as e:
        raise UsageError(f"--scene needs scene inference (scene.inference.predict_scene: {e}); "
                         "give its output with --bufrac instead") from None
    kwargs: dict[str, Any] = dict(model=options.model, block_size=options.block_size, cog=False,
                                  # ours is the DN offset to remove, predict_scene's the one to add
                                  offset=-float(options.offset) if options.offset else None,
                                  progress=options.progress)
    if options.batch_size:
        kwargs["batch_size"] = options.batch_size
    return os.fspath(predict_scene(scene, dst, **kwargs))


def _write_blocks(outputs: dict[str, tuple[Path, dict]], like: Any, size: int, desc: str, progress: bool,
                  compute: Callable[[Any], dict[str, np.ndarray]]) -> None:
    """Write several single-band products block by block; each file appears only when complete."""
    with contextlib.ExitStack() as stack:
        files = {}
        for name, (path, profile) in outputs.items():
            tmp = stack.enter_context(atomic_path(path))
            files[name] = stack.enter_context(rasterio.open(tmp, "w", **profile))
        bar = stack.enter_context(rasters.progress_bar(rasters.n_blocks(like.height, like.width, size), desc, progress))
        for window in rasters.blocks(like.height, like.width, size):
            for name, data in compute(window).items():
                files[name].write(data, 1, window=window)
            bar.update(1)
        for f in files.values():
            f.close()


def run_chain(out_dir: str | os.PathLike, *, bufrac: str | None = None, scene: str | None = None,
              aoi: Any = None, options: ChainOptions | None = None,
              echo: Callable[[str], None] | None = print) -> dict:
    """Run the GBU chain and write every product into ``out_dir`` (see the module doc).

    Args:
      out_dir: the output folder (created).
      bufrac: the built-up probability raster (uint16 x 10000, nodata 65535, or float32 0..1), or
        None to predict it from ``scene``.
      scene: the 4-band scene (B4, B3, B2, B8; uint16 x 10000), or None.
      aoi: an ``aoi.AOI`` to crop the inputs to, or None.
      options: the steps and their parameters.
      echo: where progress lines go (None: nowhere).

    Returns:
      The content of ``products.json``: ``{"products": {name: {...}}, "skipped": {step: reason},
      "figures": {...}, "inputs": {...}}``.

    Raises:
      UsageError: neither ``bufrac`` nor ``scene``, or ``scene`` without scene inference installed.
      InputError: a missing, unreadable or malformed input (named), inputs on different grids, a
        bad street file or RES/NRES model.
    """
    try:
        return _run_chain(out_dir, bufrac=bufrac, scene=scene, aoi=aoi, options=options, echo=echo)
    except rasterio.errors.RasterioIOError as e:  # a corrupt block found while reading, after opening
        labels = options.resnres_labels if options else None
        raise rasters.read_error(e, [bufrac, scene, labels]) from None


def _run_chain(out_dir: str | os.PathLike, *, bufrac: str | None, scene: str | None, aoi: Any,
               options: ChainOptions | None, echo: Callable[[str], None] | None) -> dict:
    """``run_chain`` without the translation of read failures (same arguments)."""
    from scene.gbu import aoi as aoi_mod

    options = options or ChainOptions()
    say = echo or (lambda _: None)
    if not bufrac and not scene:
        raise UsageError("give --bufrac (a built-up probability raster) or --scene (a 4-band scene), or both")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    inputs = {"bufrac": bufrac, "scene": scene, "aoi": None}
    labels_path = options.resnres_labels
    # validate the inputs before any long work
    with contextlib.ExitStack() as stack:
        opened = []  # the scene first: the grid the others must be on
        if scene:
            opened.append(stack.enter_context(rasters.open_raster(scene, "scene (B4, B3, B2, B8)", bands=4)))
        if bufrac:
            opened.append(stack.enter_context(rasters.open_raster(bufrac, "built-up probability", bands=1)))
        if labels_path:
            opened.append(stack.enter_context(rasters.open_raster(labels_path, "RES/NRES labels", bands=1)))
        for other in opened[1:] if aoi is None else []:  # one grid: refused here, not after the first steps
            rasters.same_grid(opened[0], other)  # (with an AOI, the crops are compared later)
    resnres_model = None
    if options.resnres_model and scene:  # a foreign or broken file fails here, not after the first steps
        resnres_model = resnres.load_model(options.resnres_model)
    if aoi is not None:
        inputs["aoi"] = {"name": aoi.name, "source": aoi.source}
        if scene:
            shape = aoi_mod.crop(scene, out / "aoi_scene.tif", aoi, "scene (B4, B3, B2, B8)", bands=4, fill=0)
            scene = os.fspath(out / "aoi_scene.tif")
            say(f"AOI {aoi.name}: scene cropped to {shape[0]} x {shape[1]} px")
        if bufrac:
            with rasters.open_raster(bufrac, "built-up probability", bands=1) as ds:
                fill = bf.UINT16_NODATA if ds.dtypes[0] == "uint16" and ds.nodata is None else None
            shape = aoi_mod.crop(bufrac, out / "aoi_probability.tif", aoi, "built-up probability", bands=1, fill=fill)
            bufrac = os.fspath(out / "aoi_probability.tif")
            say(f"AOI {aoi.name}: probability cropped to {shape[0]} x {shape[1]} px")
        if labels_path:
            aoi_mod.crop(labels_path, out / "aoi_labels.tif", aoi, "RES/NRES labels", bands=1, fill=0)
            labels_path = os.fspath(out / "aoi_labels.tif")
    if not bufrac:
        say(f"predicting built-up probability of {scene}")
        bufrac = _predict(scene, out / "prediction.tif", options)
        inputs["prediction"] = bufrac
    products: dict[str, dict] = {}
    skipped: dict[str, str] = {}
    figures: dict[str, Any] = {}
    size = options.block_size

    def record(name: str, path: Path, dtype: str, nodata: str, meaning: str) -> None:
        products[name] = {"path": path.name, "dtype": dtype, "nodata": nodata, "meaning": meaning}

    with contextlib.ExitStack() as stack:
        prob = stack.enter_context(rasters.open_raster(bufrac, "built-up probability", bands=1))
        bands = None
        if scene:
            bands = stack.enter_context(rasters.open_raster(scene, "scene (B4, B3, B2, B8)", bands=4))
            rasters.same_grid(bands, prob)
        pixel_area = abs(prob.transform.a * prob.transform.e)
        polygons = tree = None
        if options.clean and options.streets:
            from scene.gbu.streets import load_streets, street_index

            polygons = load_streets(options.streets, prob.crs, width_field=options.streets_width_field,
                                    reproject=options.streets_reproject)
            tree = street_index(polygons) if polygons else None
            say(f"streets: {len(polygons)} buffered lines from {options.streets}")
        if not options.clean:
            skipped["clean"] = "--noclean"
        elif bands is None:
            skipped["clean: NDVI rule"] = "no --scene: NDVI needs the scene's R and NIR bands"
        counts = {"valid": 0, "built": 0, "built_clean": 0, "area": 0.0, "area_clean": 0.0}

        def step1(window: Any) -> dict[str, np.ndarray]:
            b = bf.read_bufrac(prob, window)
            result = {"bufrac": b}
            valid = ~np.isnan(b)
            counts["valid"] += int(valid.sum())
            counts["built"] += int((b[valid] > 0).sum())
            counts["area"] += float(np.nansum(b)) * pixel_area
            if options.clean:
                v = ndvi.ndvi(ndvi.reflectance(bands.read(window=window), options.offset)) if bands is not None else None
                centre = touched = None
                if polygons is not None:
                    from scene.gbu.streets import street_masks

                    centre, touched = street_masks(polygons, prob.window_transform(window), b.shape, tree)
                c = cleaning.clean(b, v, street_centre=centre, street_touched=touched, threshold=options.threshold,
                                   ndvi_max=options.ndvi_max)
                counts["built_clean"] += int((c[valid] > 0).sum())
                counts["area_clean"] += float(np.nansum(c)) * pixel_area
                result["bufrac_clean"] = c
            return result

        outputs = {"bufrac": (out / "bufrac.tif", rasters.product_profile(prob, "float32"))}
        if options.clean:
            outputs["bufrac_clean"] = (out / "bufrac_clean.tif", rasters.product_profile(prob, "float32"))
        _write_blocks(outputs, prob, size, "BUFRAC", options.progress, step1)
        for name, (path, _) in outputs.items():
            record(name, path, *PRODUCTS[name])
        figures.update(valid_pixels=counts["valid"], pixel_area_m2=pixel_area, built_up_pixels=counts["built"],
                       built_up_area_km2=counts["area"] / 1e6)
        if options.clean:
            figures.update(built_up_pixels_clean=counts["built_clean"], built_up_area_clean_km2=counts["area_clean"] / 1e6)
        say(f"BUFRAC: {counts['built']} built-up pixels of {counts['valid']} valid, "
            f"{counts['area'] / 1e6:.4f} km2 built-up"
            + (f"; cleaned: {counts['built_clean']} pixels, {counts['area_clean'] / 1e6:.4f} km2" if options.clean else ""))
        final = out / ("bufrac_clean.tif" if options.clean else "bufrac.tif")
        built_src = stack.enter_context(rasterio.open(final))

        if not options.greenness:
            skipped["greenness"] = "--nogreenness"
        elif bands is None:
            skipped["greenness"] = "no --scene: NDVI needs the scene's R and NIR bands"
        else:
            kernel = green.ellipse_kernel(*options.kernel)
            halo = green.halo(kernel)

            def step3(window: Any) -> dict[str, np.ndarray]:
                grown, inner = rasters.halo_window(window, halo, prob.height, prob.width)
                built = built_src.read(1, window=grown) > 0  # NaN > 0 is False
                v = ndvi.ndvi(ndvi.reflectance(bands.read(window=grown), options.offset))
                return {"greenness": green.greenness(v, built, kernel)[inner]}

            path = out / "greenness.tif"
            _write_blocks({"greenness": (path, rasters.product_profile(prob, "float32"))}, prob, size,
                          "greenness", options.progress, step3)
            record("greenness", path, *PRODUCTS["greenness"])
            figures["greenness_kernel_px"] = list(options.kernel)

        if not (options.resnres_labels or options.resnres_model):
            skipped["resnres"] = "no --resnres_labels nor --resnres_model"
        elif bands is None:
            skipped["resnres"] = "no --scene: the classifier needs the scene's bands"
        else:
            if labels_path:
                model = _train_resnres(labels_path, prob, bands, built_src, options, figures, say)
                resnres.save_model(model, out / "resnres_model.joblib")
                products["resnres_model"] = {"path": "resnres_model.joblib", "features": list(resnres.FEATURES)}
            else:
                model = resnres_model if resnres_model is not None else resnres.load_model(options.resnres_model)
            class_counts = np.zeros(256, dtype=np.int64)

            def step4(window: Any) -> dict[str, np.ndarray]:
                grown, inner = rasters.halo_window(window, 1, prob.height, prob.width)
                b = bf.to_bufrac(built_src.read(1, window=grown), "float32", None, final)
                refl = ndvi.reflectance(bands.read(window=grown), options.offset)
                classes = resnres.majority(resnres.classify(model, b, refl))[inner]
                class_counts[:] += np.bincount(classes.ravel(), minlength=256)
                return {"resnres": classes}

            path = out / "resnres.tif"
            _write_blocks({"resnres": (path, rasters.product_profile(prob, "uint8"))}, prob, size, "RES/NRES",
                          options.progress, step4)
            record("resnres", path, *PRODUCTS["resnres"])
            figures["resnres_pixels"] = {name: int(class_counts[v]) for v, name in resnres.CLASS_NAMES.items()}
            say(f"RES/NRES: {figures['resnres_pixels']}")

    if options.aggregate:
        targets = [agg.parse_target(t) for t in options.aggregate]
        results = agg.aggregate(final, out, targets)
        figures["aggregated_built_up_area_km2"] = {}
        for target, r in zip(targets, results):
            name = f"bufrac_{target.name}"
            record(name, Path(r["path"]), "float32", "NaN", AGGREGATE_MEANING)
            products[name].update(crs=target.crs, resolution=target.resolution, shape=r["shape"])
            figures["aggregated_built_up_area_km2"][target.name] = r["built_up_area_m2"] / 1e6
            say(f"aggregated to {target.crs} at {target.resolution:g}"
                f"{'s' if target.rasterio_crs.is_geographic else ' m'}: {r['shape'][0]} x {r['shape'][1]} cells, "
                f"{r['built_up_area_m2'] / 1e6:.4f} km2 built-up")
    else:
        skipped["aggregate"] = "no --aggregate targets"

    if options.quicklooks:
        _quicklooks(out, products)
    else:
        skipped["quicklooks"] = "--noquicklooks"
    report = {"products": products, "skipped": skipped, "figures": figures, "inputs": inputs,
              "options": {k: v for k, v in vars(options).items() if k != "model"}}
    with atomic_path(out / "products.json") as tmp:
        Path(tmp).write_text(json.dumps(report, indent=1, default=str) + "\n", encoding="utf-8")
    for step, reason in skipped.items():
        say(f"skipped {step}: {reason}")
    return report


def _train_resnres(labels_path: str, prob: Any, bands: Any, built_src: Any, options: ChainOptions,
                   figures: dict, say: Callable[[str], None]) -> Any:
    """Collect the labelled built-up pixels block by block and fit the classifier."""
    with rasters.open_raster(labels_path, "RES/NRES labels", bands=1) as lab:
        rasters.same_grid(prob, lab)
        xs, ys = [], []
        for window in rasters.blocks(prob.height, prob.width, options.block_size):
            b = bf.to_bufrac(built_src.read(1, window=window), "float32", None, built_src.name)
            refl = ndvi.reflectance(bands.read(window=window), options.offset)
            x, y = resnres.training_samples(b, refl, lab.read(1, window=window))
            xs.append(x)
            ys.append(y)
    x, y = np.concatenate(xs), np.concatenate(ys)
    try:
        model = resnres.train(x, y, max_samples=options.resnres_samples, seed=options.seed)
    except InputError as e:
        raise InputError(e.problem, path=labels_path) from None
    figures["resnres_training_pixels"] = {"residential": int((y == 1).sum()), "non-residential": int((y == 2).sum()),
                                          "used": int(min(len(y), options.resnres_samples))}
    say(f"RES/NRES: trained on {figures['resnres_training_pixels']}")
    return model


def _quicklook_options(name: str) -> dict:
    """How each product is drawn: title, colour map and range, or the RES/NRES classes."""
    if name == "resnres":
        return {"title": "RES/NRES", "classes": RESNRES_COLOURS}
    if name == "greenness":
        return {"title": "greenness (NDVI in the closed built-up area)", "label": "NDVI", "cmap": "RdYlGn",
                "vmin": -1, "vmax": 1}
    title = {"bufrac": "BUFRAC", "bufrac_clean": "BUFRAC, cleaned"}.get(name, f"BUFRAC {name[7:]} (mean)")
    return {"title": title, "label": "built-up fraction", "cmap": "magma", "vmin": 0, "vmax": 1}


def _quicklooks(out: Path, products: dict[str, dict]) -> None:
    """One PNG per raster product in ``out/quicklook``, and ``overview.png`` of the main ones."""
    from scene.gbu.quicklook import overview, quicklook

    folder = out / "quicklook"
    folder.mkdir(exist_ok=True)
    rasters_made = [name for name, info in products.items() if info["path"].endswith(".tif")]
    for name in rasters_made:
        png = quicklook(out / products[name]["path"], folder / f"{name}.png", **_quicklook_options(name))
        products[name]["quicklook"] = os.path.relpath(png, out)
    coarse = [n for n in rasters_made if n.startswith("bufrac_") and n != "bufrac_clean"]
    chosen = [n for n in ("bufrac_clean" if "bufrac_clean" in products else "bufrac", "greenness", "resnres")
              if n in products] + coarse[-1:]
    overview([(out / products[n]["path"], _quicklook_options(n)) for n in chosen], folder / "overview.png")
