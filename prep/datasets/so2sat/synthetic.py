"""Synthetic So2Sat LCZ42 HDF5 files in the real layout, for tests, demos and benchmarks.

``write_file`` writes one ``<name>.h5`` with float64 ``sen1`` (N,32,32,8), ``sen2`` (N,32,32,10)
and one-hot ``label`` (N,17), and beside it ``<name>_geo.h5`` with the geolocation, in one of
the two published layouts:

- ``"coord"``: ``coord`` (N,6) = UTM x, UTM y of the patch centre, S1 row, S1 col, S2 row, S2 col;
  ``epsg`` (N,1); ``tfw`` (N,6) ordered x0, pixel width, 0, y0, 0, pixel height (positive),
  with (x0, y0) the upper-left corner;
- ``"city"`` (2026 release): ``city`` (N,1) names, ``epsg`` (N,1), ``tfw`` (N,6) in world-file
  order A, D, B, E, C, F with (C, F) the upper-left corner; no ``coord``.

Rows are written in chunks, so files of any size take bounded memory. Sentinel-2 values are
integer DN / 10000 like the real files; the class shifts a few bands so a model can learn it.
``write_release`` lays out a whole version-2 (training/validation/testing) or version-3
(random/block/culture_10 training/testing pairs) release.
"""
from __future__ import annotations

import functools
import os

import h5py
import numpy as np

from prep import cli
from prep.datasets.contract import ContractArchive
from prep.datasets.so2sat import spec as s2s
from prep.errors import UsageError

SEN1_SCALE = np.array([0.05, 0.05, 0.12, 0.12, 0.03, 0.09, 0.01, 0.01])
SEN2_BASE_DN = np.array([900, 1000, 1100, 1300, 1700, 1900, 2100, 2200, 1800, 1300])


def _chunk(rng: np.random.Generator, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    cls = rng.integers(0, s2s.NUM_CLASSES, m)
    label = np.zeros((m, s2s.NUM_CLASSES), np.float64)
    label[np.arange(m), cls] = 1.0
    shift = (cls - 8).astype(np.float64)[:, None, None, None]
    sen1 = rng.standard_normal((m, 32, 32, 8)) * SEN1_SCALE
    sen1[..., 4:6] = np.abs(sen1[..., 4:6]) * (1.0 + 0.05 * (shift + 8))  # intensities are positive
    dn = SEN2_BASE_DN + rng.normal(0.0, 150.0, (m, 32, 32, 10))
    dn[..., 2:4] += 60.0 * shift  # B4, B5 carry the class
    dn[..., 6] -= 40.0 * shift[..., 0]
    sen2 = np.clip(np.rint(dn), 0, 28000) / 10000.0
    return sen1, sen2, label


def _geo_rows(rows: np.ndarray, n: int, cities: dict[str, int]) -> dict[str, np.ndarray]:
    names = list(cities)
    city_idx = rows * len(names) // max(n, 1)
    first = (city_idx * n + len(names) - 1) // len(names)  # first row of each row's city block
    p = rows - first
    r = 16 + 32 * (p // 100)
    c = 16 + 32 * (p % 100)
    epsg = np.array([cities[names[i]] for i in city_idx], np.int64)
    south = epsg // 100 == 327
    east0 = 300000.0 + 2500.0 * city_idx + 0.858
    north0 = np.where(south, 7000000.0, 4000000.0) + 5000.0 * city_idx + 0.43
    x = east0 + 10.0 * c
    y = north0 - 10.0 * r
    return {"city": np.array([names[i].encode() for i in city_idx], dtype="S16"), "epsg": epsg,
            "x": x, "y": y, "s2": np.stack([r, c], 1), "s1": np.stack([r + 35, c], 1)}


def write_file(path: str, n: int, *, seed: int = 0, chunk_rows: int = 512, geo: bool = True,
               geo_layout: str = "coord", cities: dict[str, int] | None = None, h5_chunks: bool = False,
               labels: bool = True) -> dict:
    """Write ``path`` (and ``<stem>_geo.h5`` when ``geo``) with ``n`` rows; returns the paths and class counts.

    ``h5_chunks`` stores sen1/sen2 chunked (64 rows) and gzip-compressed instead of contiguous.
    """
    if geo_layout not in ("coord", "city"):
        raise ValueError(f"geo_layout must be 'coord' or 'city', not {geo_layout!r}")
    cities = cities or s2s.TRAINING_CITY_EPSG
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    geo_path = os.path.splitext(path)[0] + "_geo.h5"
    counts = np.zeros(s2s.NUM_CLASSES, np.int64)
    rows_per_chunk = min(64, max(n, 1))

    def layout(*tail):  # chunked + gzip storage, or the contiguous default
        return {"chunks": (rows_per_chunk,) + tail, "compression": "gzip", "compression_opts": 1} \
            if h5_chunks and n else {}

    with h5py.File(path, "w") as f:
        d1 = f.create_dataset("sen1", (n, 32, 32, 8), np.float64, **layout(32, 32, 8))
        d2 = f.create_dataset("sen2", (n, 32, 32, 10), np.float64, **layout(32, 32, 10))
        dl = f.create_dataset("label", (n, s2s.NUM_CLASSES), np.float64) if labels else None
        for k, a in enumerate(range(0, n, chunk_rows)):
            b = min(n, a + chunk_rows)
            sen1, sen2, label = _chunk(np.random.default_rng([seed, k]), b - a)
            d1[a:b] = sen1
            d2[a:b] = sen2
            if dl is not None:
                dl[a:b] = label
            counts += label.sum(0).astype(np.int64)
    if geo:
        rows = np.arange(n)
        g = _geo_rows(rows, n, cities)
        with h5py.File(geo_path, "w") as f:
            f.create_dataset("epsg", data=g["epsg"][:, None])
            x0, y0 = g["x"] - 160.0, g["y"] + 160.0
            zero, ten = np.zeros(n), np.full(n, 10.0)
            if geo_layout == "coord":
                f.create_dataset("coord", data=np.stack([g["x"], g["y"], g["s1"][:, 0], g["s1"][:, 1],
                                                         g["s2"][:, 0], g["s2"][:, 1]], 1).astype(np.float64))
                f.create_dataset("tfw", data=np.stack([x0, ten, zero, y0, zero, ten], 1))
            else:
                f.create_dataset("city", data=g["city"][:, None])
                f.create_dataset("tfw", data=np.stack([ten, zero, zero, -ten, x0, y0], 1))
    return {"h5": path, "geo": geo_path if geo else None, "class_counts": counts.tolist()}


def write_release(out_dir: str, version: int = 2, sizes: dict[str, int] | None = None, *, seed: int = 0,
                  geo: bool = True, geo_layout: str = "coord", chunk_rows: int = 512) -> dict[str, str]:
    """A whole release under ``out_dir``: split key ("training", "random/testing", ...) -> h5 path."""
    if version == 2:
        names = ["training", "validation", "testing"]
    elif version == 3:
        names = [f"{s}/{r}" for s in s2s.SCENARIOS_V3 for r in ("training", "testing")]
    else:
        raise ValueError(f"So2Sat release version must be 2 or 3, not {version!r}")
    sizes = sizes or {}
    out = {}
    for i, name in enumerate(names):
        role = name.split("/")[-1]
        n = sizes.get(name, sizes.get(role, 64))
        cities = s2s.TRAINING_CITY_EPSG if role == "training" else s2s.VALIDATION_TESTING_CITY_EPSG
        path = os.path.join(out_dir, name + ".h5")
        write_file(path, n, seed=seed * 1000 + i, geo=geo, geo_layout=geo_layout, cities=cities,
                   chunk_rows=chunk_rows)
        out[name] = path
    return out


def size_arg(text: str) -> int:
    """'1000' rows, or a size like '1.5GB' / '200MB' of sen1+sen2+label float64 data -> rows."""
    t = text.strip().upper()
    for unit, mult in (("GB", 1e9), ("MB", 1e6)):
        if t.endswith(unit):
            row_bytes = (32 * 32 * 18 + s2s.NUM_CLASSES) * 8
            return max(1, -int(-float(t[:-len(unit)]) * mult // row_bytes))  # at least that size
    return int(t)


def contract_archive(out_dir: str, seed: int = 0) -> ContractArchive:
    """A small version-2 release (48 / 16 / 16 rows with geolocation) for the contract test."""
    paths = write_release(out_dir, 2, {"training": 48, "validation": 16, "testing": 16}, seed=seed)
    return ContractArchive(raw_dir=out_dir, prepare_args=("--h5", *paths.values()), tfds_config="v2_all",
                           tfds_split_names={"train": "train", "val": "val", "test": "test"})


# --- command line ---------------------------------------------------------------------------

@functools.cache
def define_flags() -> None:
    """Declare the command's absl flags (``python -m prep.synthetic so2sat``)."""
    from absl import flags

    flags.DEFINE_string("out_dir", None, "Output folder (required).", short_name="o")
    flags.DEFINE_alias("out", "out_dir")
    flags.DEFINE_enum("release", "2", ["2", "3"], "2: training/validation/testing.h5; "
                      "3: random|block|culture_10/training|testing.h5.")
    flags.DEFINE_string("rows", "64", "Rows per file, or a float64 data size per file such as 1.5GB or 200MB.")
    flags.DEFINE_string("training_rows", None, "Rows (or size) of the training files only, overriding --rows.")
    flags.DEFINE_enum("geo_layout", "coord", ["coord", "city"], "*_geo.h5 layout: 'coord' (coord/epsg/tfw) or "
                      "'city' (city/epsg/tfw in world-file order, the 2026 release).")
    flags.DEFINE_bool("geolocation", True, "Write the *_geo.h5 geolocation files (--nogeolocation: none).")
    flags.DEFINE_integer("seed", 0, "Random seed (same seed, same files).")
    flags.DEFINE_bool("overwrite", False, "Write into an --out_dir that already holds files (the release's "
                      "files are replaced).")


def main(argv: list[str]) -> int:
    """Write the release the flags describe; print each file's path."""
    from absl import flags

    f = flags.FLAGS
    cli.no_arguments(argv)
    cli.required("out_dir")
    try:
        rows = size_arg(f.rows)
        sizes = {"training": rows, "validation": rows, "testing": rows}
        if f.training_rows:
            sizes["training"] = size_arg(f.training_rows)
    except ValueError as e:
        raise UsageError(f"--rows/--training_rows: {e}") from None
    cli.refuse_nonempty(f.out_dir, f.overwrite)
    paths = write_release(f.out_dir, int(f.release), sizes, seed=f.seed, geo=f.geolocation,
                          geo_layout=f.geo_layout)
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0
