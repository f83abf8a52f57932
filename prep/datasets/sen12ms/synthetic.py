"""Synthetic SEN12MS archives in the real layout, for tests, demos and benchmarks.

``write_archive`` writes the season tree ``ROIs<id>_<season>/{s1,s2,lc}_<scene>/
ROIs<id>_<season>_<s1|s2|lc>_<scene>_p<k>.tif``: 256 x 256 GeoTIFFs in a UTM CRS with
float32 S1 (VV, VH in dB, some patches with NaN pixels), uint16 S2 (13 bands; some pixels above
32767) and uint16 lc (4 layers, IGBP codes 1..17). The IGBP layer of each patch is a few class
runs with chosen pixel counts: one dominant class, exact ties between two classes and classes just
above and just below the 0.1 multi-label share. Each pixel's S2 and S1 values follow the signature
of its own IGBP class (a class-dependent level per band plus noise), so the scene labels (from the
class shares) and the per-pixel masks are both learnable from the pixels. ``tarballs=True`` also writes the per-season tarballs
(``ROIs1158_spring_s2.tar.gz`` ...) of the same files.
"""
from __future__ import annotations

import functools
import os
import tarfile

import numpy as np

from prep import cli
from prep.datasets.contract import ContractArchive
from prep.datasets.sen12ms import spec as sp

S2_BASE = np.array([1300, 1100, 1000, 900, 1200, 1700, 1900, 2000, 2100, 700, 20, 1600, 1100], np.float64)
N_CLASSES = 17


def _igbp(rng: np.random.Generator, dominant: int, kind: str) -> np.ndarray:
    """A 256x256 IGBP layer (codes 1..17) of class runs with exact pixel counts."""
    n = sp.PIXELS
    others = [c for c in range(1, 18) if c != dominant]
    a, b = rng.choice(others, 2, replace=False)
    if kind == "tie":  # two classes, half each: the single label is the lower code
        counts = {dominant: n // 2, int(a): n // 2}
    elif kind == "threshold":  # one class just at the 0.1 share, one just below
        above, below = int(np.ceil(0.1 * n)), int(np.ceil(0.1 * n)) - 1
        counts = {int(a): above, int(b): below, dominant: n - above - below}
    else:
        k = int(rng.integers(0, n // 4))
        counts = {dominant: n - k, int(a): k}
    flat = np.concatenate([np.full(c, code, np.uint16) for code, c in counts.items()])
    return flat.reshape(sp.PATCH)


def _write_tif(path: str, pixels: np.ndarray, epsg: int, ulx: float, uly: float) -> None:
    import rasterio
    from rasterio.transform import from_origin

    os.makedirs(os.path.dirname(path), exist_ok=True)
    with rasterio.open(path, "w", driver="GTiff", width=pixels.shape[2], height=pixels.shape[1],
                       count=pixels.shape[0], dtype=pixels.dtype.name, crs=f"EPSG:{epsg}",
                       transform=from_origin(ulx, uly, 10.0, 10.0)) as dst:
        dst.write(pixels)


def write_patch(root: str, season: str, scene: int, patch: int, rng: np.random.Generator,
                kind: str = "plain", nan_pixels: int = 0, folder: str | None = None) -> dict:
    """Write the three files of one triplet.

    Args:
      root: the archive root (season folders are created in it).
      season: the season folder, e.g. "ROIs1158_spring".
      scene: the scene number.
      patch: the patch number.
      rng: the random source.
      kind: the IGBP layer: "plain" (dominant + one other class), "tie" (two classes, half each)
        or "threshold" (classes at and just below a 0.1 share).
      nan_pixels: S1 pixels set to NaN (in VV and VH at the same places).
      folder: the part after ``s2_`` in the folder names (default: the scene; DFC2020's validation
        set uses ``validation``); DFC2020 sets (``spec.DFC2020_SETS``) also get a ``dfc`` label file.

    Returns:
      ``{"key": (season, scene, patch), "dominant": IGBP code, "s1_nan": NaN values written (2 x nan_pixels)}``
      and for DFC2020 sets ``"dfc"``: the label mask written.
    """
    dominant = int(1 + (scene * 7 + patch) % N_CLASSES)
    igbp = _igbp(rng, dominant, kind)
    cls = igbp.astype(np.float64)  # per pixel: the signature of each pixel's own IGBP class
    s2 = S2_BASE[:, None, None] * (0.6 + 0.05 * cls) + rng.normal(0, 60, (13, *sp.PATCH))
    s2[3] += 40 * cls  # B04
    s2[7] -= 30 * cls  # B08
    s2 = np.clip(np.rint(s2), 0, 65535).astype(np.uint16)
    s2[0, 0, : 1 + patch % 5] = 40000 + patch  # values above 32767 (saturated pixels)
    s1 = np.stack([-8 - 0.5 * cls + rng.normal(0, 1.5, sp.PATCH),
                   -15 - 0.4 * cls + rng.normal(0, 1.5, sp.PATCH)]).astype(np.float32)
    s1[:, 1, :8] = -30.0 - patch % 7  # radar shadow and calm water below -25 dB, bright targets above 0 dB
    s1[0, 2, :4] = 3.5
    if nan_pixels:
        idx = rng.choice(sp.PIXELS, nan_pixels, replace=False)
        s1.reshape(2, -1)[:, idx] = np.nan
    lc = np.stack([igbp, (igbp + 10) % 40, (igbp % 5) + 1, (igbp % 7) + 1]).astype(np.uint16)
    epsg = 32600 + 1 + scene % 60
    ulx, uly = 300000.0 + 2560.0 * (patch % 50), 5000000.0 - 2560.0 * (patch // 50)
    files = [("s1", s1), ("s2", s2), ("lc", lc)]
    out = {"key": (season, scene, patch), "dominant": dominant, "s1_nan": 2 * nan_pixels}
    if season in sp.DFC2020_SETS:  # high-resolution labels: the mapped IGBP layer, refined, with unlabelled pixels
        dfc = np.asarray(sp.IGBP_TO_DFC, np.uint8)[igbp]
        dfc[100:140, 100:180] = 1 + (patch % 10)
        dfc[:4] = 255
        dfc[4, :10] = 0
        files.append(("dfc", dfc[None]))
        out["dfc"] = dfc
    for modality, pixels in files:
        rel = f"{season}/{modality}_{folder or scene}/{season}_{modality}_{scene}_p{patch}.tif"
        _write_tif(os.path.join(root, rel), pixels, epsg, ulx, uly)
    return out


def write_dfc2020(root: str, validation: int, test: int, seed: int = 0) -> list[dict]:
    """DFC2020's sets: ``ROIs0000_validation/{s1,s2,lc,dfc}_validation/`` and ``ROIs0000_test/{...}_0/``.

    Args:
      root: the archive root.
      validation: patches of the validation set.
      test: patches of the test set.
      seed: random seed.

    Returns:
      One ``write_patch`` dict per patch (with ``"dfc"``, the label mask).
    """
    rng = np.random.default_rng(seed + 1000)
    out = [write_patch(root, "ROIs0000_validation", 0, p, rng, folder="validation") for p in range(validation)]
    return out + [write_patch(root, "ROIs0000_test", 0, p, rng) for p in range(test)]


def write_archive(root: str, scenes: dict[tuple[str, int], int], seed: int = 0, tarballs: bool = False,
                  nan_every: int = 3) -> list[dict]:
    """Write a season tree (and optionally the per-season tarballs beside it).

    Args:
      root: output folder (season folders go in it).
      scenes: (season, scene) -> number of patches (numbered 1..n).
      seed: random seed (same seed, same files).
      tarballs: also write ``<root>/tarballs/<season>_<modality>.tar.gz`` of the same files.
      nan_every: every n-th patch gets S1 NaN pixels (0 = none).

    Returns:
      One ``write_patch`` dict per triplet, in write order.
    """
    rng = np.random.default_rng(seed)
    out, i = [], 0
    for (season, scene), n in sorted(scenes.items()):
        for patch in range(1, n + 1):
            kind = ("plain", "tie", "threshold")[i % 3]
            nan = int(rng.integers(1, 500)) if nan_every and i % nan_every == 1 else 0
            out.append(write_patch(root, season, scene, patch, rng, kind, nan))
            i += 1
    if tarballs:
        write_tarballs(root, os.path.join(root, "tarballs"))
    return out


def write_tarballs(root: str, out_dir: str) -> list[str]:
    """The per-season, per-modality tarballs (``ROIs1158_spring_s2.tar.gz``) of a season tree; returns the paths."""
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for season in sorted(d for d in os.listdir(root) if d in sp.SEASONS):
        for modality in sp.MODALITIES:
            folders = sorted(f for f in os.listdir(os.path.join(root, season)) if f.startswith(modality + "_"))
            if not folders:
                continue
            path = os.path.join(out_dir, f"{season}_{modality}.tar.gz")
            with tarfile.open(path, "w:gz") as tf:
                for folder in folders:
                    tf.add(os.path.join(root, season, folder), arcname=f"{season}/{folder}")
            paths.append(path)
    return paths


CONTRACT_SCENES = {("ROIs1158_spring", 63): 3, ("ROIs1868_summer", 43): 3,  # hold-out scenes: test
                   ("ROIs1158_spring", 1): 3, ("ROIs1158_spring", 2): 3, ("ROIs1868_summer", 5): 3,
                   ("ROIs1970_fall", 8): 3, ("ROIs2017_winter", 9): 3, ("ROIs2017_winter", 11): 3}


def contract_archive(out_dir: str, seed: int = 0) -> ContractArchive:
    """A small tree (24 triplets: 6 in two hold-out scenes, 18 in six others) for the contract test."""
    write_archive(out_dir, CONTRACT_SCENES, seed=seed)
    return ContractArchive(raw_dir=out_dir, prepare_args=("--root_folder", out_dir), tfds_config="s1s2_dfc10_multi",
                           tfds_split_names={"train": "train", "validation": "val", "test": "test"})


# --- command line ---------------------------------------------------------------------------

@functools.cache
def define_flags() -> None:
    """Declare the command's absl flags (``python -m prep.synthetic sen12ms``)."""
    from absl import flags

    flags.DEFINE_string("out_dir", None, "Output folder (required).", short_name="o")
    flags.DEFINE_integer("scenes", 4, "Scenes per season (the first is a hold-out scene).", lower_bound=1)
    flags.DEFINE_integer("patches", 5, "Patches per scene.", lower_bound=1)
    flags.DEFINE_integer("seed", 0, "Random seed (same seed, same files).", lower_bound=0)
    flags.DEFINE_integer("dfc2020", 0, "Patches in each of DFC2020's validation and test sets (0: none).",
                         lower_bound=0)
    flags.DEFINE_bool("tarballs", False, "Also write the per-season tarballs under OUT/tarballs.")
    flags.DEFINE_bool("overwrite", False, "Delete an --out_dir that already holds files first.")


HOLDOUT_FIRST = {"ROIs1158_spring": 63, "ROIs1868_summer": 43, "ROIs1970_fall": 120, "ROIs2017_winter": 64}


def main(argv: list[str]) -> int:
    """Write the archive the flags describe; print the number of triplets."""
    from absl import flags

    f = flags.FLAGS
    cli.no_arguments(argv)
    cli.required("out_dir")
    cli.refuse_nonempty(f.out_dir, f.overwrite)
    scenes = {}
    for season in sp.SEASONS:
        scenes[(season, HOLDOUT_FIRST[season])] = f.patches
        for s in range(1, f.scenes):
            scenes[(season, 200 + s)] = f.patches
    info = write_archive(f.out_dir, scenes, seed=f.seed, tarballs=f.tarballs)
    if f.dfc2020:
        info += write_dfc2020(f.out_dir, f.dfc2020, f.dfc2020, seed=f.seed)
    print(f"{len(info)} triplets in {f.out_dir}")
    return 0
