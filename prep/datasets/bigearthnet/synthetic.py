"""Synthetic BigEarthNet-S2 archive in the real on-disk format, with labels learnable from pixels.

Layout written under ``out_dir`` (as in the real archive, FACTS.md section 1):

- ``<patch>/<patch>_<band>.tif`` for the 12 bands: single-band uint16 GeoTIFFs at native size
  (120/60/20 px), uncompressed and striped, byte for byte the layout GDAL gives the real files,
  in a WGS 84 / UTM CRS whose geotransform matches the JSON coordinates;
- ``<patch>/<patch>_labels_metadata.json`` with ``labels`` (43-class names), ``coordinates``
  {ulx, uly, lrx, lry}, ``projection`` (WKT), ``tile_source``, ``acquisition_date``;
- ``train.csv``, ``val.csv``, ``test.csv``: one patch name per line, no header;
- ``patches_with_no_19_class_targets.csv``: patches whose labels all lie in the 11 classes
  without a 19-class target (they are listed in the split CSVs too, so preparation has to
  leave them out); ``patches_with_seasonal_snow.csv`` and ``patches_with_cloud_and_shadow.csv``:
  patches with a snow or cloud/shadow overlay on their pixels (labels unchanged).

Patch names follow the real pattern ``S2A_MSIL2A_20170717T113321_28_89``; acquisitions before
10:00 get the real archive's 5-digit times (``...T93020_69_24``).

Pixels: each patch is split into Voronoi regions, each region is one of the patch's 43-class
labels and takes that class's fixed spectral signature (12 bands) times a region brightness and
a patch illumination factor, plus noise. Coarser bands average the finer region map, so every
label present leaves its spectrum in the pixels and the 19-class labels can be learnt.

Everything is deterministic given the seed: the same call writes the same bytes, whatever the
number of workers.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime
import functools
import json
import multiprocessing
import os
import tarfile
from pathlib import Path, PurePosixPath
from typing import Sequence

import numpy as np

from prep import cli, files, tiff
from prep.datasets.bigearthnet import spec as ben
from prep.datasets.contract import ContractArchive
from prep.errors import UsageError

SPLITS = ("train", "val", "test")
NO_TARGET_LIST = "patches_with_no_19_class_targets.csv"
SNOW_LIST = "patches_with_seasonal_snow.csv"
CLOUD_LIST = "patches_with_cloud_and_shadow.csv"
PATCH_METRES = 1200  # every patch covers 1.2 km x 1.2 km
GRID = 60  # the region map is drawn on the 20 m grid (60 x 60)

# --- the synthetic world: fixed, independent of the seed -----------------------------------

# Archetype reflectance spectra (x 10000) in canonical band order
# B01 B02 B03 B04 B05 B06 B07 B08 B8A B09 B11 B12.
_ARCHETYPES = {
    "urban": (1300, 1200, 1250, 1350, 1450, 1550, 1650, 1750, 1800, 650, 2300, 2000),
    "bare": (1500, 1600, 1900, 2300, 2500, 2700, 2800, 2900, 3000, 950, 3800, 3300),
    "crop": (450, 550, 850, 700, 1250, 2500, 3000, 3300, 3450, 1050, 2500, 1500),
    "grass": (400, 500, 750, 600, 1100, 2200, 2700, 2900, 3050, 950, 2300, 1300),
    "broadleaf": (250, 300, 550, 300, 850, 2500, 3200, 3500, 3600, 1050, 1700, 750),
    "conifer": (200, 250, 400, 220, 600, 1500, 1900, 2100, 2200, 700, 1100, 500),
    "shrub": (350, 450, 650, 550, 950, 1800, 2200, 2400, 2500, 800, 2200, 1400),
    "wetland": (300, 380, 550, 400, 700, 1200, 1450, 1550, 1600, 500, 1000, 550),
    "water": (350, 400, 450, 280, 220, 170, 150, 120, 110, 60, 50, 35),
    "burnt": (350, 400, 450, 500, 600, 800, 950, 1000, 1050, 400, 1800, 1700),
}
# 43-class index -> archetype, and relative frequency (roughly the real archive's ordering).
_CLASSES = (
    ("urban", 1.5), ("urban", 5.0), ("urban", 2.0), ("urban", 0.6), ("urban", 0.2), ("urban", 0.2),
    ("bare", 0.5), ("bare", 0.2), ("bare", 0.2), ("grass", 0.4), ("grass", 0.5),
    ("crop", 10.0), ("crop", 1.0), ("water", 0.3), ("crop", 0.8), ("shrub", 1.0), ("shrub", 1.0),
    ("grass", 7.0), ("crop", 0.4), ("crop", 5.0), ("grass", 6.0), ("broadleaf", 1.5),
    ("broadleaf", 6.0), ("conifer", 9.0), ("conifer", 8.0), ("grass", 1.5), ("shrub", 1.2),
    ("shrub", 1.5), ("shrub", 7.0), ("bare", 0.5), ("bare", 0.3), ("bare", 0.6), ("burnt", 0.2),
    ("wetland", 1.0), ("wetland", 1.5), ("wetland", 0.4), ("water", 0.2), ("water", 0.2),
    ("water", 0.6), ("water", 4.0), ("water", 0.3), ("water", 0.3), ("water", 4.0),
)
assert len(_CLASSES) == len(ben.LABELS_43)


def _signatures() -> np.ndarray:
    """(43, 12) float32 class spectra: archetype x a class-specific per-band factor (fixed seed)."""
    rng = np.random.default_rng(20170613)
    arche = np.array([_ARCHETYPES[a] for a, _ in _CLASSES], dtype=np.float64)
    factor = np.exp(0.25 * rng.standard_normal(arche.shape))
    return (arche * factor).astype(np.float32)


SIGNATURES = _signatures()
_FREQ = np.array([f for _, f in _CLASSES], dtype=np.float64)
_DROPPED = np.flatnonzero(ben.MAP_43_TO_19 < 0)
_SNOW = np.array((9000, 9200, 9100, 9000, 8800, 8500, 8300, 8100, 7900, 3000, 900, 700), np.float32)
_CLOUD = np.array((7800, 7900, 8000, 8100, 8200, 8200, 8200, 8200, 8100, 3600, 6500, 5500), np.float32)
_SHADOW_FACTOR = np.float32(0.35)
_LABEL_COUNTS = (0.25, 0.30, 0.22, 0.13, 0.07, 0.03)  # P(1 .. 6 labels in a patch)

_BAND_INDEX = {name: i for i, name in enumerate(ben.BAND_NAMES)}
_BY_RES = {res: [b for b in ben.BANDS if b.resolution_m == res] for res in (10, 20, 60)}

# MGRS tiles (id, UTM EPSG, upper-left easting, upper-left northing): patches lie on their 1.2 km grid.
TILES = (
    ("29SND", 32629, 499980, 4400040),
    ("29UPU", 32629, 600000, 5900040),
    ("31UFS", 32631, 600000, 5700000),
    ("32TNS", 32632, 499980, 5100000),
    ("33UUP", 32633, 300000, 5400000),
    ("34VER", 32634, 499980, 6700020),
    ("35VPK", 32635, 600000, 7000020),
    ("35ULA", 32635, 300000, 6200040),
)
_TILE_PATCHES = 91  # patches per tile side (109.8 km / 1.2 km)
_FIRST_DAY = datetime.date(2017, 6, 1)
_DAYS = 365


def utm_wkt(epsg: int) -> str:
    """WKT of a WGS 84 / UTM zone, in the form the archive's JSON files carry."""
    name = tiff.utm_epsg_citation(epsg)
    zone, south = epsg % 100, epsg // 100 == 327
    return (
        f'PROJCS["{name}",GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",6378137,298.257223563,'
        'AUTHORITY["EPSG","7030"]],AUTHORITY["EPSG","6326"]],PRIMEM["Greenwich",0,AUTHORITY["EPSG","8901"]],'
        'UNIT["degree",0.0174532925199433,AUTHORITY["EPSG","9122"]],AXIS["Latitude",NORTH],'
        'AXIS["Longitude",EAST],AUTHORITY["EPSG","4326"]],PROJECTION["Transverse_Mercator"],'
        f'PARAMETER["latitude_of_origin",0],PARAMETER["central_meridian",{6 * zone - 183}],'
        'PARAMETER["scale_factor",0.9996],PARAMETER["false_easting",500000],'
        f'PARAMETER["false_northing",{10000000 if south else 0}],UNIT["metre",1,AUTHORITY["EPSG","9001"]],'
        f'AXIS["Easting",EAST],AXIS["Northing",NORTH],AUTHORITY["EPSG","{epsg}"]]'
    )


# --- the catalogue: names, labels, places, splits ------------------------------------------

@dataclasses.dataclass(frozen=True)
class PatchSpec:
    """Everything needed to write one synthetic patch (picklable, for worker processes)."""

    index: int
    name: str
    labels43: tuple[int, ...]  # sorted 43-class indices
    epsg: int
    ulx: int
    uly: int
    tile_source: str
    acquisition_date: str  # "YYYY-MM-DD HH:MM:SS"
    split: str
    overlay: str = ""  # "" | "snow" | "cloud"

    @property
    def coordinates(self) -> dict:
        """The JSON ``coordinates``: ``ulx``, ``uly``, ``lrx``, ``lry`` in metres of the patch's UTM CRS (1200 m box)."""
        return {"ulx": self.ulx, "uly": self.uly, "lrx": self.ulx + PATCH_METRES, "lry": self.uly - PATCH_METRES}

    def metadata(self) -> dict:
        """The patch's ``<patch>_labels_metadata.json`` content, as in the real archive.

        ``labels`` (43-class CLC Level-3 names), ``coordinates``, ``projection`` (the UTM zone's
        WKT), ``tile_source`` and ``acquisition_date``; no ``BigEarthNet_19_labels``.
        """
        return {
            "labels": [ben.LABELS_43[i] for i in self.labels43],
            "coordinates": self.coordinates,
            "projection": utm_wkt(self.epsg),
            "tile_source": self.tile_source,
            "acquisition_date": self.acquisition_date,
        }


def _default_special(n: int) -> int:
    return 0 if n < 10 else max(1, n // 100)


def _sample_labels(rng: np.random.Generator, no_target: bool) -> tuple[int, ...]:
    if no_target:
        k = int(rng.integers(1, 3))
        return tuple(sorted(int(i) for i in rng.choice(_DROPPED, size=k, replace=False)))
    p = _FREQ / _FREQ.sum()
    while True:
        k = int(rng.choice(len(_LABEL_COUNTS), p=_LABEL_COUNTS)) + 1
        labels = rng.choice(len(p), size=k, replace=False, p=p)
        if (ben.MAP_43_TO_19[labels] >= 0).any():
            return tuple(sorted(int(i) for i in labels))


def _acquisition(rng: np.random.Generator):
    tile_id, epsg, tx, ty = TILES[int(rng.integers(len(TILES)))]
    sat = "S2A" if rng.random() < 0.6 else "S2B"
    day = _FIRST_DAY + datetime.timedelta(days=int(rng.integers(_DAYS)))
    hour = int(rng.choice((9, 10, 11), p=(0.4, 0.4, 0.2)))
    minute, second = int(rng.integers(60)), int(rng.integers(60))
    stamp = datetime.datetime.combine(day, datetime.time(hour, minute, second))
    short_time = str(hour * 10000 + minute * 100 + second)  # 5 digits before 10:00, as in the archive
    processed = stamp + datetime.timedelta(minutes=int(rng.integers(1, 90)))
    orbit = int(rng.integers(1, 144))
    date = day.strftime("%Y%m%d")
    source = (f"{sat}_MSIL1C_{date}T{short_time}_N0205_R{orbit:03d}_T{tile_id}_"
              f"{processed.strftime('%Y%m%dT%H%M%S')}.SAFE")
    prefix = f"{sat}_MSIL2A_{date}T{short_time}"
    return prefix, epsg, tx, ty, source, stamp.strftime("%Y-%m-%d %H:%M:%S")


def plan_bigearthnet(num_patches: int, seed: int = 0, *, split_fractions: Sequence[float] = (0.6, 0.2, 0.2),
                     num_no_target: int | None = None, num_snow: int | None = None,
                     num_cloud: int | None = None) -> list[PatchSpec]:
    """The catalogue of a synthetic archive: one PatchSpec per patch, in generation order.

    Deterministic in ``seed``. Patches lie on the 1.2 km grid of a few MGRS tiles (``TILES``), in
    acquisitions of about 40 patches; each has 1 to 6 43-class labels with at least one 19-class
    target, except the ``num_no_target`` patches (labels only among the 11 classes without one).
    ``num_snow`` / ``num_cloud`` patches get a snow or cloud/shadow overlay. The special patches
    (default for each: 1 per 100 patches, none under 10) go round-robin over the splits in use; the
    rest are cut by ``split_fractions`` (train, val, test).

    Raises:
      ValueError: ``num_patches`` < 1, ``split_fractions`` not three non-negative numbers with a
        positive sum, or more special patches than patches.
    """
    n = int(num_patches)
    if n < 1:
        raise ValueError(f"num_patches must be at least 1, got {num_patches}")
    fr = np.asarray(split_fractions, dtype=np.float64)
    if fr.shape != (3,) or (fr < 0).any() or fr.sum() <= 0:
        raise ValueError(f"split_fractions must be 3 non-negative numbers (train, val, test), got {split_fractions}")
    counts = {kind: _default_special(n) if v is None else int(v)
              for kind, v in (("no_target", num_no_target), ("snow", num_snow), ("cloud", num_cloud))}
    if any(v < 0 for v in counts.values()) or sum(counts.values()) > n:
        raise ValueError(f"special patches {counts} do not fit in {n} patches")
    rng = np.random.default_rng([int(seed), 2])

    # Special roles on distinct patches.
    order = rng.permutation(n)
    role = [""] * n
    at = 0
    for kind in ("no_target", "snow", "cloud"):
        for i in order[at:at + counts[kind]]:
            role[int(i)] = kind
        at += counts[kind]

    # Acquisitions of about 40 patches each; unique (tile, col, row) cells inside each.
    n_acq = max(1, -(-n // 40))
    acquisitions, prefixes = [], set()
    while len(acquisitions) < n_acq:
        acq = _acquisition(rng)
        if acq[0] not in prefixes:
            prefixes.add(acq[0])
            acquisitions.append(acq)
    per_acq = np.bincount(rng.integers(n_acq, size=n), minlength=n_acq)

    specs, idx = [], 0
    for a, k in enumerate(per_acq):
        prefix, epsg, tx, ty, source, date = acquisitions[a]
        cells = rng.choice(_TILE_PATCHES * _TILE_PATCHES, size=int(k), replace=False)
        for cell in cells:
            col, row = int(cell % _TILE_PATCHES), int(cell // _TILE_PATCHES)
            labels = _sample_labels(rng, role[idx] == "no_target")
            specs.append(PatchSpec(
                index=idx, name=f"{prefix}_{col}_{row}", labels43=labels, epsg=epsg,
                ulx=tx + col * PATCH_METRES, uly=ty - row * PATCH_METRES, tile_source=source,
                acquisition_date=date, split="",
                overlay=role[idx] if role[idx] in ("snow", "cloud") else ""))
            idx += 1

    # Splits: special patches round-robin over the splits in use, the rest shuffled and cut.
    used = [s for s, f in zip(SPLITS, fr) if f > 0]
    split_of = [""] * n
    special = [i for i in range(n) if role[i]]
    for j, i in enumerate(special):
        split_of[i] = used[j % len(used)]
    rest = [i for i in rng.permutation(n).tolist() if not role[i]]
    cuts = np.floor(np.cumsum(fr / fr.sum()) * len(rest) + 0.5).astype(int)
    start = 0
    for s, end in zip(SPLITS, cuts):
        for i in rest[start:end]:
            split_of[i] = s
        start = end
    return [dataclasses.replace(sp, split=split_of[sp.index]) for sp in specs]


# --- pixels ---------------------------------------------------------------------------------

def synthesize_bands(spec: PatchSpec, seed: int = 0) -> dict[str, np.ndarray]:
    """The 12 uint16 bands of one patch (name -> native-size array), deterministic in (seed, index)."""
    rng = np.random.default_rng([int(seed), 1, spec.index])
    labels = np.asarray(spec.labels43)
    # Voronoi regions: every label gets one seed point, extra points go to random labels.
    n_seeds = len(labels) + int(rng.integers(1, 5))
    owner = np.concatenate([labels, rng.choice(labels, size=n_seeds - len(labels))])
    spectra = SIGNATURES[owner] * np.exp(0.08 * rng.standard_normal((n_seeds, 1))).astype(np.float32)
    points = rng.uniform(0, GRID, size=(n_seeds, 2)).astype(np.float32)
    g = np.arange(GRID, dtype=np.float32) + 0.5
    d = (g[None, :, None] - points[:, 0, None, None]) ** 2 + (g[None, None, :] - points[:, 1, None, None]) ** 2
    region = d.argmin(axis=0)  # (60, 60) seed index
    if spec.overlay:
        yy, xx = np.meshgrid(g, g, indexing="ij")
        cy, cx = rng.uniform(0, GRID, size=2)
        r = rng.uniform(12, 30)
        blob = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
        extra = [_SNOW] if spec.overlay == "snow" else [_CLOUD]
        spectra = np.concatenate([spectra, np.stack(extra)])
        if spec.overlay == "cloud":  # the shadow: the blob shifted, darkening what lies beneath
            shift = rng.integers(6, 12, size=2)
            shadow = np.roll(blob, tuple(int(s) for s in shift), axis=(0, 1)) & ~blob
            spectra = np.concatenate([spectra, spectra[:n_seeds] * _SHADOW_FACTOR])
            region = np.where(shadow, region + n_seeds + 1, region)
        region = np.where(blob, n_seeds, region)
    illumination = np.float32(np.exp(0.1 * rng.standard_normal()))
    table = np.ascontiguousarray((spectra * illumination).T)  # (12, n_regions)
    image20 = table[:, region]  # (12, 60, 60) noise-free reflectance on the 20 m grid
    noise = rng.standard_normal(ben.PIXELS_PER_PATCH, dtype=np.float32)
    out, at = {}, 0
    for b in ben.BANDS:
        base = image20[_BAND_INDEX[b.name]]
        if b.resolution_m == 10:
            base = np.repeat(np.repeat(base, 2, axis=0), 2, axis=1)
        elif b.resolution_m == 60:
            base = base.reshape(20, 3, 20, 3).mean(axis=(1, 3))
        v = base + (0.03 * base + 15.0) * noise[at:at + b.size].reshape(b.shape)
        at += b.size
        out[b.name] = np.clip(np.rint(v), 0, 65535).astype(np.uint16)
    return out


def write_patch(out_dir: str | os.PathLike, spec: PatchSpec, seed: int = 0, tiff_writer: str = "native") -> Path:
    """Write one patch folder (12 GeoTIFFs + JSON) under ``out_dir``; returns the folder.

    The bands are ``synthesize_bands(spec, seed)``: single-band uint16 GeoTIFFs at native size
    (120, 60 or 20 px for 10, 20 or 60 m) georeferenced at (``spec.ulx``, ``spec.uly``) in
    EPSG:``spec.epsg``. An existing folder of the same name is written into (files replaced).

    Raises:
      ValueError: ``tiff_writer`` other than ``"native"`` and ``"rasterio"``.
    """
    folder = Path(out_dir) / spec.name
    folder.mkdir(parents=True, exist_ok=True)
    bands = synthesize_bands(spec, seed)
    for b in ben.BANDS:
        path = folder / f"{spec.name}_{b.name}.tif"
        if tiff_writer == "native":
            tiff.write_band(path, bands[b.name], spec.epsg, spec.ulx, spec.uly, b.resolution_m)
        elif tiff_writer == "rasterio":
            _write_rasterio(path, bands[b.name], spec, b.resolution_m)
        else:
            raise ValueError(f"unknown tiff_writer {tiff_writer!r} (native or rasterio)")
    with open(folder / f"{spec.name}_labels_metadata.json", "w", encoding="utf-8") as f:
        f.write(json.dumps(spec.metadata()))
    return folder


def _write_rasterio(path, array, spec: PatchSpec, res: float) -> None:
    import rasterio
    from rasterio.transform import Affine

    with rasterio.open(path, "w", driver="GTiff", width=array.shape[1], height=array.shape[0], count=1,
                       dtype=array.dtype, crs=f"EPSG:{spec.epsg}",
                       transform=Affine(res, 0, spec.ulx, 0, -res, spec.uly)) as ds:
        ds.write(array, 1)


def _write_chunk(out_dir: str, specs: list[PatchSpec], seed: int, tiff_writer: str) -> int:
    for spec in specs:
        write_patch(out_dir, spec, seed, tiff_writer)
    return len(specs)


def _write_list(path: Path, names: Sequence[str]) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write("".join(f"{n}\n" for n in names))


def generate_bigearthnet(out_dir: str | os.PathLike, num_patches: int, seed: int = 0, *, workers: int = 1,
                         split_fractions: Sequence[float] = (0.6, 0.2, 0.2), num_no_target: int | None = None,
                         num_snow: int | None = None, num_cloud: int | None = None,
                         tiff_writer: str = "native", progress: bool = False) -> list[str]:
    """Write a synthetic BigEarthNet-S2 archive under ``out_dir``; returns the patch names.

    ``num_no_target`` / ``num_snow`` / ``num_cloud`` special patches (default: 1 per 100 patches,
    none under 10 patches) are listed in the three ``patches_with_*.csv`` files. ``tiff_writer``
    "native" writes the GeoTIFF bytes directly (fast); "rasterio" goes through GDAL.
    ``split_fractions`` are the relative sizes of train, val and test (normalised to sum 1).

    Raises:
      ValueError: ``num_patches`` < 1, ``split_fractions`` not three non-negative numbers with a
        positive sum, more special patches than patches, or an unknown ``tiff_writer``.
    """
    specs = plan_bigearthnet(num_patches, seed, split_fractions=split_fractions, num_no_target=num_no_target,
                             num_snow=num_snow, num_cloud=num_cloud)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(specs), unit="patch", desc="synthetic BigEarthNet")
    chunk = max(1, min(50, -(-len(specs) // (4 * max(1, workers)))))
    chunks = [specs[i:i + chunk] for i in range(0, len(specs), chunk)]
    if workers > 1 and len(chunks) > 1:
        ctx = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=ctx) as pool:
            futures = [pool.submit(_write_chunk, str(out), c, seed, tiff_writer) for c in chunks]
            for fut in concurrent.futures.as_completed(futures):
                done = fut.result()
                if bar is not None:
                    bar.update(done)
    else:
        for c in chunks:
            _write_chunk(str(out), c, seed, tiff_writer)
            if bar is not None:
                bar.update(len(c))
    if bar is not None:
        bar.close()
    for s in SPLITS:
        _write_list(out / f"{s}.csv", [sp.name for sp in specs if sp.split == s])
    _write_list(out / NO_TARGET_LIST, [sp.name for sp in specs if not ben.indices_19(sp.labels43)])
    _write_list(out / SNOW_LIST, [sp.name for sp in specs if sp.overlay == "snow"])
    _write_list(out / CLOUD_LIST, [sp.name for sp in specs if sp.overlay == "cloud"])
    return [sp.name for sp in specs]


# --- the six real patches -------------------------------------------------------------------

def extract_examples(dest: str | os.PathLike, modality: str = "S2") -> list[Path]:
    """Extract the real example patches of the bigearthnet-common wheel into ``dest/<patch>/``.

    Through ``prep.files.extract_archive`` (the archive's top folder dropped, each patch folder
    replacing its namesake in ``dest``, anything else in ``dest`` kept): only regular files and
    folders, only inside ``dest``. Returns the patch folders, sorted.

    Raises:
      prep.files.ArchiveError: an unsafe or unreadable archive (named in the message).
      KeyError: ``modality`` other than ``"S2"`` and ``"S1"``.
      FileNotFoundError: bigearthnet-common (which ships the archives) is not installed.
    """
    from splits import bigearthnet as splits

    archive = splits.example_archive(modality)
    dest = Path(dest)
    with tarfile.open(archive, "r:*") as tar:
        top = sorted({PurePosixPath(m.name).parts[1] for m in tar if len(PurePosixPath(m.name).parts) > 1})
    files.extract_archive(archive, dest, strip_components=1, merge=True)
    return sorted(p for p in (dest / name for name in top) if p.is_dir())


# --- the contract test's archive ------------------------------------------------------------

def contract_archive(out_dir: str, seed: int = 0) -> ContractArchive:
    """A small archive (72 patches, one each on the no-target, snow and cloud lists) for the contract test."""
    generate_bigearthnet(out_dir, 72, seed=seed, num_no_target=1, num_snow=1, num_cloud=1)
    root = Path(out_dir)
    return ContractArchive(
        raw_dir=str(root),
        prepare_args=("--root_folder", str(root), "--splits", *(str(root / f"{s}.csv") for s in SPLITS),
                      "--exclusion_lists", str(root / SNOW_LIST), str(root / CLOUD_LIST), str(root / NO_TARGET_LIST)),
        tfds_config="s2_10m20m",
        tfds_split_names={"train": "train", "val": "val", "test": "test"},
    )


# --- command line ---------------------------------------------------------------------------

@functools.cache
def define_flags() -> None:
    """Declare the command's flags (called by ``python -m prep.synthetic bigearthnet`` only)."""
    from absl import flags

    flags.DEFINE_string("out_dir", None, "Folder to write the archive into (patch folders, split CSVs, lists; "
                        "required).", short_name="o")
    flags.DEFINE_alias("out", "out_dir")
    flags.DEFINE_integer("num_patches", 200, "Number of synthetic patches.", lower_bound=1)
    flags.DEFINE_integer("seed", 0, "Random seed; the same seed writes the same bytes.", lower_bound=0)
    flags.DEFINE_integer("workers", 1, "Worker processes (output identical for any count).", lower_bound=1)
    flags.DEFINE_list("split_fractions", ["0.6", "0.2", "0.2"], "Fractions of train,val,test.")
    flags.DEFINE_integer("num_no_target", None, "Patches labelled only with classes that have no "
                         "19-class target (default: 1 per 100 patches).", lower_bound=0)
    flags.DEFINE_integer("num_snow", None, "Patches with a seasonal-snow overlay (default: 1 per 100).",
                         lower_bound=0)
    flags.DEFINE_integer("num_cloud", None, "Patches with a cloud and shadow overlay (default: 1 per 100).",
                         lower_bound=0)
    flags.DEFINE_enum("tiff_writer", "native", ["native", "rasterio"],
                      "How to write the GeoTIFFs: native (fast, GDAL's byte layout) or rasterio.")
    flags.DEFINE_bool("add_examples", False, "Also extract the six real example patches into --out_dir "
                      "(not listed in the split CSVs).")
    flags.DEFINE_bool("overwrite", False, "Write into an --out_dir that already holds files: everything in it is "
                      "deleted first, so old and new patches never mix.")


def main(argv: list[str]) -> int:
    """Write the archive the flags describe and print the split sizes."""
    import time

    from absl import flags

    cli.no_arguments(argv)
    cli.required("out_dir")
    f = flags.FLAGS
    try:
        fractions = [float(x) for x in f.split_fractions]
    except ValueError:
        raise UsageError(f"--split_fractions: expected three numbers, got {','.join(f.split_fractions)}") from None
    cli.refuse_nonempty(f.out_dir, f.overwrite)
    t0 = time.perf_counter()
    try:
        names = generate_bigearthnet(
            f.out_dir, f.num_patches, f.seed, workers=f.workers, split_fractions=fractions,
            num_no_target=f.num_no_target, num_snow=f.num_snow, num_cloud=f.num_cloud, tiff_writer=f.tiff_writer,
            progress=True)
    except ValueError as e:  # special patches or fractions that do not fit (planned before any file is written)
        raise UsageError(str(e)) from None
    dt = time.perf_counter() - t0
    print(f"wrote {len(names)} synthetic patches to {f.out_dir} in {dt:.1f} s ({len(names) / dt:.0f} patches/s)")
    for s in SPLITS:
        print(f"  {s}.csv: {len(open(os.path.join(f.out_dir, f'{s}.csv')).read().split())} patches")
    if f.add_examples:
        folders = extract_examples(f.out_dir)
        print(f"  + {len(folders)} real example patches")
    return 0
