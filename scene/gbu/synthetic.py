"""A generated scene for the GBU products, on the georeference of a real BigEarthNet-S2 patch.

``generate(out_dir)`` writes, on the CRS and origin of a real example patch of the
bigearthnet-common wheel (10 m pixels, extended to ``size`` x ``size``):

- ``scene.tif``: 4 bands B4, B3, B2, B8 (R, G, B, NIR), uint16 reflectance x 10000, nodata 0,
  with vegetation, bare soil, residential blocks (darker, moderate NIR), non-residential blocks
  (bright roofs, high blue), parks inside the built-up area and a nodata corner;
- ``probability.tif``: the built-up probability as scene inference writes it (uint16 x 10000,
  nodata 65535): high on the blocks and parks, low elsewhere;
- ``labels.tif``: uint8 RES/NRES training labels (1 residential, 2 non-residential) on the west
  half's blocks, 0 elsewhere; ``truth.tif``: the same classes on every block (for checking);
- ``streets.geojson``: two street lines in lon/lat with a ``width`` in metres.

The classes are separable by construction (non-residential roofs are brighter in B2 than any
residential pixel). Run ``python -m scene.gbu.synthetic -o DIR`` (``--size``, ``--seed``, ``--patch``).
"""
from __future__ import annotations

import functools
import json
import os
import sys
import tarfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from absl import flags

from prep import cli

EXAMPLE_PATCH = "S2A_MSIL2A_20171221T112501_56_35"  # UTM 29N, central Portugal
SIZE = 512

# mean reflectance (R, G, B, NIR) of each cover
VEGETATION = (0.04, 0.07, 0.04, 0.35)
SOIL = (0.16, 0.13, 0.10, 0.22)
RESIDENTIAL = (0.11, 0.10, 0.08, 0.17)
NON_RESIDENTIAL = (0.24, 0.25, 0.28, 0.28)
PARK = (0.05, 0.08, 0.05, 0.33)


def patch_georeference(patch: str = EXAMPLE_PATCH) -> tuple[Any, Any]:
    """The CRS and affine transform of a real BigEarthNet-S2 example patch (its 10 m band B04).

    Args:
      patch: the patch name (one of the six in the bigearthnet-common wheel).

    Returns:
      ``(crs, transform)``.

    Raises:
      KeyError: no such patch in the example archive.
      FileNotFoundError: bigearthnet-common is not installed.
    """
    from rasterio.io import MemoryFile

    from splits import bigearthnet as splits

    with tarfile.open(splits.example_archive("S2"), "r:*") as tar:
        names = [m for m in tar.getmembers() if m.name.endswith(f"/{patch}_B04.tif")]
        if not names:
            raise KeyError(f"no example patch {patch!r} in {splits.example_archive('S2')}")
        data = tar.extractfile(names[0]).read()
    with MemoryFile(data) as mem, mem.open() as ds:
        return ds.crs, ds.transform


def _blocks(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Class map (0 background, 1 residential, 2 non-residential, 3 park) and a soil mask."""
    classes = np.zeros((size, size), dtype=np.uint8)
    step = max(size // 8, 8)
    for r in range(step // 2, size - step // 2, step):
        for c in range(step // 2, size - step // 2, step):
            if rng.random() < 0.45:
                continue
            h, w = rng.integers(step // 3, step - 2, size=2)
            classes[r:r + h, c:c + w] = 1 if rng.random() < 0.6 else 2
            if rng.random() < 0.3:  # a small park inside the block
                classes[r + h // 3:r + h // 3 + max(h // 4, 1), c + w // 3:c + w // 3 + max(w // 4, 1)] = 3
    soil = np.zeros((size, size), dtype=bool)
    soil[size * 5 // 8:size * 7 // 8, : size // 4] = True
    soil &= classes == 0
    return classes, soil


def generate(out_dir: str | os.PathLike, *, size: int = SIZE, seed: int = 0, patch: str = EXAMPLE_PATCH) -> dict:
    """Write the generated scene and its companions (see the module doc).

    Args:
      out_dir: the folder to write into (created).
      size: rows and columns of the scene (>= 64).
      seed: random seed (same seed -> same files).
      patch: the real example patch whose georeference the scene takes.

    Returns:
      Paths by name (``scene``, ``probability``, ``labels``, ``truth``, ``streets``) and ``crs``,
      ``transform``.
    """
    import rasterio

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    crs, transform = patch_georeference(patch)
    classes, soil = _blocks(rng, size)
    refl = np.empty((4, size, size), dtype=np.float32)
    prob = rng.uniform(0.0, 0.08, size=(size, size)).astype(np.float32)
    for value, cover, (lo, hi) in ((0, VEGETATION, (None, None)), (1, RESIDENTIAL, (0.55, 0.95)),
                                   (2, NON_RESIDENTIAL, (0.6, 0.98)), (3, PARK, (0.4, 0.7))):
        where = classes == value
        refl[:, where] = np.asarray(cover, dtype=np.float32)[:, None]
        if lo is not None:
            prob[where] = rng.uniform(lo, hi, size=int(where.sum()))
    refl[:, soil] = np.asarray(SOIL, dtype=np.float32)[:, None]
    prob[soil] = rng.uniform(0.05, 0.3, size=int(soil.sum()))  # bare soil: some false built-up
    refl *= rng.uniform(0.93, 1.07, size=refl.shape).astype(np.float32)
    dn = np.clip(np.rint(refl * 10000), 1, 10000).astype(np.uint16)
    prob_u16 = np.rint(prob * 10000).astype(np.uint16)
    corner = size // 10
    dn[:, -corner:, -corner:] = 0  # a nodata corner
    prob_u16[-corner:, -corner:] = 65535
    truth = np.where(classes == 1, 1, np.where(classes == 2, 2, 0)).astype(np.uint8)
    labels = truth.copy()
    labels[:, size // 2:] = 0
    common = dict(driver="GTiff", width=size, height=size, crs=crs, transform=transform, compress="deflate")
    paths = {name: out / f"{name}.tif" for name in ("scene", "probability", "labels", "truth")}
    with rasterio.open(paths["scene"], "w", count=4, dtype="uint16", nodata=0, **common) as ds:
        ds.write(dn)
        for i, band in enumerate(("B04 (R)", "B03 (G)", "B02 (B)", "B08 (NIR)"), 1):
            ds.set_band_description(i, band)
    with rasterio.open(paths["probability"], "w", count=1, dtype="uint16", nodata=65535, **common) as ds:
        ds.write(prob_u16, 1)
    for name, data in (("labels", labels), ("truth", truth)):
        with rasterio.open(paths[name], "w", count=1, dtype="uint8", nodata=None, **common) as ds:
            ds.write(data, 1)
    paths["streets"] = out / "streets.geojson"
    _write_streets(paths["streets"], crs, transform, size)
    return {**{k: str(v) for k, v in paths.items()}, "crs": crs, "transform": transform}


def _write_streets(path: Path, crs: Any, transform: Any, size: int) -> None:
    """Two streets across the scene, in lon/lat GeoJSON (so that using them reprojects)."""
    from rasterio.warp import transform as warp

    def line(pixels: list[tuple[float, float]]) -> list[list[float]]:
        xs, ys = zip(*[transform @ (c, r) for r, c in pixels])
        lon, lat = warp(crs, "EPSG:4326", list(xs), list(ys))
        return [[round(a, 7), round(b, 7)] for a, b in zip(lon, lat)]

    mid = size / 2 + 0.3
    features = [
        {"type": "Feature", "properties": {"name": "east-west avenue", "width": 25.0},
         "geometry": {"type": "LineString", "coordinates": line([(mid, 0), (mid, size)])}},
        {"type": "Feature", "properties": {"name": "diagonal street", "width": 12.0},
         "geometry": {"type": "LineString", "coordinates": line([(0, 0), (size * 0.8, size * 0.8)])}},
    ]
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}) + "\n", encoding="utf-8")


@functools.cache
def define_flags() -> None:
    """Declare the command's flags (called by ``run``)."""
    flags.DEFINE_string("out_dir", None, "Folder to write the generated scene into.", short_name="o")
    flags.DEFINE_integer("size", SIZE, "Rows and columns of the scene (10 m pixels).", lower_bound=64)
    flags.DEFINE_integer("seed", 0, "Random seed (same seed -> same files).")
    flags.DEFINE_string("patch", EXAMPLE_PATCH, "Real BigEarthNet-S2 example patch whose CRS and origin the scene takes.")


def main(argv: Sequence[str]) -> int:
    """Write the generated scene into --out_dir.

    Args:
      argv: absl's remaining command line; only the program name is accepted.

    Returns:
      The exit status, 0.

    Raises:
      UsageError: no --out_dir, extra arguments, an --out_dir that is a file, or an unknown --patch.
    """
    from prep.errors import UsageError

    cli.no_arguments(argv)
    cli.required("out_dir")
    f = flags.FLAGS
    if os.path.exists(f.out_dir) and not os.path.isdir(f.out_dir):
        raise UsageError(f"{f.out_dir}: exists and is not a folder")
    try:
        paths = generate(f.out_dir, size=f.size, seed=f.seed, patch=f.patch)
    except KeyError as e:
        raise UsageError(str(e.args[0])) from None
    for name in ("scene", "probability", "labels", "truth", "streets"):
        print(f"wrote {paths[name]}")
    return 0


def run(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``python -m scene.gbu.synthetic``.

    Args:
      argv: the command line; None: ``sys.argv``.

    Raises:
      SystemExit: always; 0 on success, 2 for a usage error.
    """
    cli.run_command(sys.modules[__name__], argv)


if __name__ == "__main__":
    run()
