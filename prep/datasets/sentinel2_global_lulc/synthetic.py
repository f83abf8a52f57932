"""Synthetic Sentinel2GlobalLULC trees in the published layout, for tests, demos and benchmarks.

``write_tree`` writes ``<out>/Sentinel2LULC_JPEG/<ID>_<ShortName>/<published file name>.jpg`` RGB
JPEG tiles (or 8-bit RGB GeoTIFFs with ``fmt="tiff"``) and one CSV per class
(``<out>/Sentinel2LULC_CSV/<ID>_<ShortName>_CSV.csv``, columns as raw.CSV_COLUMNS, with a header).
Names are realistic: purity 75..100 %, 6-digit image IDs, gHM 0..1, signed 10-decimal coordinates
on every continent (negative ones included), place names with '-' and non-ASCII letters, some
admin levels missing. Each class has its own mean colour and stripe frequency, so labels are
learnable from colour and texture.

    python -m prep.synthetic lulc --out_dir TREE --per_class 20 [--tile_px 224]
"""
from __future__ import annotations

import csv
import functools
import io
import os

import numpy as np
from absl import flags

from prep import cli
from prep.datasets.contract import ContractArchive
from prep.datasets.sentinel2_global_lulc import raw
from prep.datasets.sentinel2_global_lulc import spec as sp

# (country code, admin1, admin2, locality, lat, lon): '' = a missing level
PLACES = (
    ("ES", "Catalunya", "Barcelona", "Barcelona", 41.3851, 2.1734),
    ("FR", "Île-de-France", "Paris", "Saint-Denis", 48.9362, 2.3574),
    ("BR", "São-Paulo", "", "Campinas", -22.9056, -47.0608),
    ("NA", "Erongo", "", "", -21.2264, 14.8714),
    ("CH", "Zürich", "Bezirk-Zürich", "Zürich", 47.3769, 8.5417),
    ("US", "Alaska", "North-Slope-Borough", "Utqiaġvik", 71.2906, -156.7886),
    ("AR", "Tierra-del-Fuego", "Ushuaia", "Ushuaia", -54.8019, -68.3030),
    ("CN", "Xinjiang", "Hotan", "Hotan", 37.1142, 79.9228),
    ("AU", "Queensland", "Cairns", "Cairns", -16.9186, 145.7781),
    ("GL", "", "", "", 72.0000, -40.0000),
)


def _colour(cid: int) -> np.ndarray:
    h = (cid - 1) / sp.NUM_CLASSES
    k = np.array([0.0, 1 / 3, 2 / 3])
    return 128 + 90 * np.cos(2 * np.pi * (h - k))


def tile_pixels(cid: int, px: int, rng: np.random.Generator) -> np.ndarray:
    """A uint8 [px, px, 3] tile for class ``cid``: the class colour, stripes of a class period, noise."""
    yy, xx = np.mgrid[0:px, 0:px]
    period = 4 + (cid % 5) * 3
    angle = (cid % 4) * np.pi / 4
    stripes = np.sin(2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / period)
    x = _colour(cid)[None, None, :] + 30 * stripes[..., None] + rng.normal(0, 12, (px, px, 3))
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def tile_name(cid: int, image_id: int, rng: np.random.Generator) -> raw.TileName:
    """Realistic metadata for one tile of class ``cid`` (a place from ``PLACES``, jittered)."""
    cc, a1, a2, loc, lat, lon = PLACES[int(rng.integers(len(PLACES)))]
    lat = float(np.clip(lat + rng.uniform(-0.5, 0.5), -89.9, 89.9))
    lon = float(np.clip(lon + rng.uniform(-0.5, 0.5), -179.9, 179.9))
    return raw.TileName(cid, sp.CLASS_BY_ID[cid].short_name, float(rng.integers(75, 101)), image_id,
                        round(float(rng.uniform(0, 1)), 2), round(lat, 10), round(lon, 10), cc, a1, a2, loc)


def encode_jpeg(x: np.ndarray, quality: int = 95) -> bytes:
    """uint8 [H, W, 3] RGB -> JPEG bytes (PIL, baseline, 4:2:0 unless quality 100)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(x, "RGB").save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def write_tiff(path: str, x: np.ndarray, lat: float = 0.0, lon: float = 0.0) -> None:
    """An RGB GeoTIFF (EPSG:4326, 10 m pixels at the equator, centred on lat/lon) of [H, W, 3] pixels."""
    import rasterio
    from rasterio.transform import from_origin

    h, w, c = x.shape
    d = 10 / 111_320
    with rasterio.open(path, "w", driver="GTiff", height=h, width=w, count=c, dtype=x.dtype, crs="EPSG:4326",
                       transform=from_origin(lon - w * d / 2, lat + h * d / 2, d, d)) as dst:
        dst.write(np.moveaxis(x, -1, 0))


def write_tree(out_dir: str, per_class: int = 4, tile_px: int = sp.TILE_PX, seed: int = 0, fmt: str = "jpeg",
               classes: tuple[int, ...] | None = None, csvs: bool = True) -> list[str]:
    """Writes a synthetic tree; returns the tile paths.

    Args:
      out_dir: the dataset folder to create (``Sentinel2LULC_JPEG/`` or ``Sentinel2LULC_GeoTiff/`` inside).
      per_class: tiles per class.
      tile_px: tile side in pixels (224 as published).
      seed: random seed (same seed, same bytes).
      fmt: "jpeg" or "tiff" (8-bit visualised RGB GeoTIFFs).
      classes: class IDs to write (default all 29).
      csvs: also write the per-class CSVs.
    """
    rng = np.random.default_rng(seed)
    top = os.path.join(out_dir, "Sentinel2LULC_JPEG" if fmt == "jpeg" else "Sentinel2LULC_GeoTiff")
    paths = []
    for cid in classes or tuple(c.id for c in sp.CLASSES):
        c = sp.CLASS_BY_ID[cid]
        folder = os.path.join(top, f"{cid}_{c.short_name}")
        os.makedirs(folder, exist_ok=True)
        rows = []
        for i in range(per_class):
            name = tile_name(cid, 1 + i * 7 + int(rng.integers(7)), rng)
            x = tile_pixels(cid, tile_px, rng)
            path = os.path.join(folder, name.file_stem() + (".jpg" if fmt == "jpeg" else ".tif"))
            if fmt == "jpeg":
                with open(path, "wb") as f:
                    f.write(encode_jpeg(x))
            else:
                write_tiff(path, x, name.lat, name.lon)
            paths.append(path)
            rows.append((cid, c.short_name, name.image_id, _fmt(name.purity), _fmt(name.ghm), f"{name.lat:.10f}",
                         f"{name.lon:.10f}", name.country_code, name.admin1.replace("-", " "),
                         name.admin2.replace("-", " "), name.locality.replace("-", " "), int(rng.integers(20, 120))))
        if csvs:
            cdir = os.path.join(out_dir, "Sentinel2LULC_CSV")
            os.makedirs(cdir, exist_ok=True)
            with open(os.path.join(cdir, f"{cid}_{c.short_name}_CSV.csv"), "w", encoding="utf-8", newline="") as f:
                w = csv.writer(f, lineterminator="\n")
                w.writerow(["Land Cover Class ID", "Land Cover Class Short Name", "Image ID", "Pixel Purity Value",
                            "gHM Value", "Latitude", "Longitude", "Country Code", "Administrative Level 1",
                            "Administrative Level 2", "Locality", "Number of S2 images"])
                w.writerows(rows)
    return paths


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


CONTRACT_TILE_PX = 80  # small tiles keep the contract test fast; InceptionV3 takes 75 px and more


def contract_archive(out_dir: str, seed: int = 0) -> ContractArchive:
    """A small tree (29 classes x 6 JPEG tiles of 80 px) and the flags that prepare it (fold 0 of 5)."""
    write_tree(out_dir, per_class=6, tile_px=CONTRACT_TILE_PX, seed=seed)
    return ContractArchive(raw_dir=out_dir,
                           prepare_args=("--root_folder", out_dir, "--tile_px", str(CONTRACT_TILE_PX)),
                           tfds_config="fold0", tfds_split_names={"train": "train", "test": "test"})


@functools.cache
def define_flags() -> None:
    """Declare the generator's flags."""
    flags.DEFINE_string("out_dir", None, "Folder to write the tree to.")
    flags.DEFINE_integer("per_class", 4, "Tiles per class.", lower_bound=1)
    flags.DEFINE_integer("tile_px", sp.TILE_PX, "Tile side in pixels.", lower_bound=8)
    flags.DEFINE_integer("seed", 0, "Random seed.")
    flags.DEFINE_enum("format", "jpeg", ["jpeg", "tiff"], "Tile format.")


def main(argv: list[str]) -> int:
    """Write the tree the flags describe."""
    cli.no_arguments(argv)
    cli.required("out_dir")
    f = flags.FLAGS
    paths = write_tree(f.out_dir, f.per_class, f.tile_px, f.seed, f.format)
    print(f"{f.out_dir}: {len(paths)} tiles")
    return 0
