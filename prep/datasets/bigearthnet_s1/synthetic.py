"""Synthetic BigEarthNet-S1 archives (and S1 + S2 pairs for MM) in the real on-disk format.

The catalogue is the BigEarthNet-S2 generator's (``prep.datasets.bigearthnet.synthetic``: names,
labels, places, splits, snow/cloud/no-target patches); each S2 patch gets an S1 twin on the same
1.2 km box. Layout written under ``out_dir`` (FACTS.md section 1, as the real archives):

- S1 only (``with_s2=False``): ``<s1 patch>/<s1 patch>_VV.tif``, ``_VH.tif`` (single-band float32
  GeoTIFFs, dB, 120 x 120 at 10 m, in the patch's UTM CRS) and ``<s1 patch>_labels_metadata.json``
  in the S1 spelling (``labels``, ``coordinates`` {ulx, uly, lrx, lly}, ``projection``,
  ``corresponding_s2_patch``, ``scene_source``, ``acquisition_time`` ``YYYY-MM-DDTHH:MM:SS``);
  beside them ``train.csv``, ``val.csv``, ``test.csv`` and the three ``patches_with_*.csv`` lists
  naming the S2 twins, as the official lists do, and the pairing table
  ``s1_s2_name_country_season.csv`` (the wheel's format).
- MM (``with_s2=True``): the S2 archive in ``BigEarthNet-v1.0/`` and the S1 folders above in
  ``BigEarthNet-S1-v1.0/`` (the folders the official tarballs extract to).

S1 names follow the real pattern ``S1A_IW_GRDH_1SDV_20170613T165043_33UUP_87_48`` (the S2 twin's
MGRS tile, column and row). Pixels: Voronoi regions, one per label of the patch, each with its
class's VV/VH backscatter, times gamma-distributed speckle (4.4 looks), in dB: the labels can be
learnt from VV and VH, and VV and VH differ everywhere. Deterministic given the seed.
"""
from __future__ import annotations

import datetime
import functools
import json
import os
import shutil
import zlib
from pathlib import Path
from typing import Sequence

import numpy as np

from prep import cli, tiff
from prep.datasets.bigearthnet import spec as ben
from prep.datasets.bigearthnet import synthetic as s2synth
from prep.datasets.contract import ContractArchive
from prep.errors import UsageError
from splits import bigearthnet_s1 as pairing_lists

S2_FOLDER = "BigEarthNet-v1.0"
S1_FOLDER = "BigEarthNet-S1-v1.0"
SPLITS = s2synth.SPLITS
LISTS = tuple(f"{s}.csv" for s in SPLITS) + (s2synth.NO_TARGET_LIST, s2synth.SNOW_LIST, s2synth.CLOUD_LIST)
PIXELS = 120
COUNTRIES = {"29SND": "Portugal", "29UPU": "Ireland", "31UFS": "Belgium", "32TNS": "Switzerland",
             "33UUP": "Austria", "34VER": "Finland", "35VPK": "Finland", "35ULA": "Lithuania"}
LOOKS = 4.4  # equivalent number of looks of the speckle


def _class_backscatter() -> np.ndarray:
    """(43, 2) VV, VH in dB per 43-class index: water dark, forest and urban bright, spread in between."""
    i = np.arange(len(ben.LABELS_43), dtype=np.float64)
    vv = -20.0 + 14.0 * ((i * 0.6180339887) % 1.0)
    vh = vv - 5.0 - 5.0 * ((i * 0.3819660113) % 1.0)
    water = [ben.INDEX_43[n] for n in ("Water courses", "Water bodies", "Coastal lagoons", "Estuaries",
                                       "Sea and ocean")]
    vv[water], vh[water] = -24.0, -31.0
    return np.stack([vv, vh], axis=1).astype(np.float32)


BACKSCATTER_DB = _class_backscatter()


def _season(month: int) -> str:
    return ("Winter", "Spring", "Summer", "Fall")[(month % 12) // 3]


def s1_twin(spec: s2synth.PatchSpec) -> dict:
    """The S1 twin of a synthetic S2 patch: ``name``, ``acquisition_time``, ``scene_source``, ``tile``, ``season``.

    The S1 acquisition is 0 to 2 days after the S2 one, at a time drawn from the S2 acquisition
    (so all patches of one S2 acquisition share one S1 scene).
    """
    tile = spec.tile_source.split("_T", 1)[1][:5]
    rng = np.random.default_rng(zlib.crc32(spec.name.rsplit("_", 2)[0].encode()))
    s2_time = datetime.datetime.strptime(spec.acquisition_date, "%Y-%m-%d %H:%M:%S")
    start = datetime.datetime.combine(s2_time.date(), datetime.time(int(rng.choice((4, 5, 6, 16, 17))),
                                                                    int(rng.integers(60)), int(rng.integers(60))))
    start += datetime.timedelta(days=int(rng.integers(3)))
    sat = "S1A" if rng.random() < 0.7 else "S1B"
    stamp = start.strftime("%Y%m%dT%H%M%S")
    end = (start + datetime.timedelta(seconds=25)).strftime("%Y%m%dT%H%M%S")
    orbit, take, crc = int(rng.integers(1, 20000)), int(rng.integers(1 << 20)), int(rng.integers(1 << 16))
    col, row = spec.name.rsplit("_", 2)[1:]
    return {
        "name": f"{sat}_IW_GRDH_1SDV_{stamp}_{tile}_{col}_{row}",
        "acquisition_time": start.strftime("%Y-%m-%dT%H:%M:%S"),
        "scene_source": f"{sat}_IW_GRDH_1SDV_{stamp}_{end}_{orbit:06d}_{take:06X}_{crc:04X}",
        "tile": tile,
        "season": _season(start.month),
    }


def synthesize_s1(spec: s2synth.PatchSpec, seed: int = 0) -> dict[str, np.ndarray]:
    """VV and VH (120, 120) float32 dB of one patch, deterministic in (seed, index)."""
    rng = np.random.default_rng([int(seed), 11, spec.index])
    labels = np.asarray(spec.labels43)
    n_seeds = len(labels) + int(rng.integers(1, 5))
    owner = np.concatenate([labels, rng.choice(labels, size=n_seeds - len(labels))])
    points = rng.uniform(0, PIXELS, size=(n_seeds, 2)).astype(np.float32)
    g = np.arange(PIXELS, dtype=np.float32) + 0.5
    d = (g[None, :, None] - points[:, 0, None, None]) ** 2 + (g[None, None, :] - points[:, 1, None, None]) ** 2
    region = d.argmin(axis=0)
    db = BACKSCATTER_DB[owner] + rng.normal(0, 1.0, size=(n_seeds, 1)).astype(np.float32)  # (regions, 2)
    out = {}
    for k, band in enumerate(("VV", "VH")):
        linear = 10.0 ** (db[region, k] / 10.0)
        speckle = rng.gamma(LOOKS, 1.0 / LOOKS, size=(PIXELS, PIXELS))
        out[band] = (10.0 * np.log10(linear * speckle)).astype(np.float32)
    return out


def s1_metadata(spec: s2synth.PatchSpec, twin: dict) -> dict:
    """The S1 patch JSON, in the real archive's key order and spellings (``acquisition_time``, ``lly``)."""
    c = spec.coordinates
    return {
        "labels": [ben.LABELS_43[i] for i in spec.labels43],
        "coordinates": {"ulx": c["ulx"], "uly": c["uly"], "lrx": c["lrx"], "lly": c["lry"]},
        "projection": s2synth.utm_wkt(spec.epsg),
        "corresponding_s2_patch": spec.name,
        "scene_source": twin["scene_source"],
        "acquisition_time": twin["acquisition_time"],
    }


def write_s1_patch(out_dir: str | os.PathLike, spec: s2synth.PatchSpec, twin: dict, seed: int = 0) -> Path:
    """Write one S1 patch folder (VV, VH float32 GeoTIFFs + JSON) under ``out_dir``; returns the folder."""
    folder = Path(out_dir) / twin["name"]
    folder.mkdir(parents=True, exist_ok=True)
    bands = synthesize_s1(spec, seed)
    for band in ("VV", "VH"):
        tiff.write_band(folder / f"{twin['name']}_{band}.tif", bands[band], spec.epsg, spec.ulx, spec.uly, 10)
    with open(folder / f"{twin['name']}_labels_metadata.json", "w", encoding="utf-8") as f:
        f.write(json.dumps(s1_metadata(spec, twin)))
    return folder


def _write_list(path: Path, names: Sequence[str]) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write("".join(f"{n}\n" for n in names))


def generate(out_dir: str | os.PathLike, num_patches: int, seed: int = 0, *, with_s2: bool = False,
             split_fractions: Sequence[float] = (0.6, 0.2, 0.2), num_no_target: int | None = None,
             num_snow: int | None = None, num_cloud: int | None = None, workers: int = 1,
             progress: bool = False) -> list[tuple[str, str]]:
    """Write a synthetic BigEarthNet-S1 archive (``with_s2``: S1 + S2 for MM) under ``out_dir``.

    See the module doc for the layout. ``num_no_target`` / ``num_snow`` / ``num_cloud`` are the
    special patches of the S2 catalogue (``prep.datasets.bigearthnet.synthetic.plan_bigearthnet``).

    Returns:
      (S1 name, S2 name) per pair, in catalogue order.

    Raises:
      ValueError: as ``plan_bigearthnet`` (``num_patches`` < 1, bad fractions, too many special patches).
    """
    out = Path(out_dir)
    specs = s2synth.plan_bigearthnet(num_patches, seed, split_fractions=split_fractions,  # checks, before any write
                                     num_no_target=num_no_target, num_snow=num_snow, num_cloud=num_cloud)
    s1_root = out / S1_FOLDER if with_s2 else out
    s1_root.mkdir(parents=True, exist_ok=True)
    if with_s2:
        s2synth.generate_bigearthnet(out / S2_FOLDER, num_patches, seed, workers=workers,
                                     split_fractions=split_fractions, num_no_target=num_no_target,
                                     num_snow=num_snow, num_cloud=num_cloud, progress=progress)
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(specs), unit="patch", desc="synthetic BigEarthNet-S1")
    rows, used = [], set()
    for spec in specs:
        twin = s1_twin(spec)
        while twin["name"] in used:  # two S2 acquisitions drawn onto one S1 second: move by a second
            t = datetime.datetime.strptime(twin["acquisition_time"], "%Y-%m-%dT%H:%M:%S") + datetime.timedelta(seconds=1)
            stamp = t.strftime("%Y%m%dT%H%M%S")
            twin = {**twin, "acquisition_time": t.strftime("%Y-%m-%dT%H:%M:%S"),
                    "name": f"{twin['name'][:17]}{stamp}{twin['name'][32:]}"}
        used.add(twin["name"])
        write_s1_patch(s1_root, spec, twin, seed)
        rows.append((twin["name"], spec.name, COUNTRIES.get(twin["tile"], "Austria"), twin["season"]))
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    pairing_lists.write_pairing(s1_root / pairing_lists.FOLDER_PAIRING_FILE, rows)
    if with_s2:  # the lists the S2 generator wrote, beside the S1 folders too
        for name in LISTS:
            shutil.copyfile(out / S2_FOLDER / name, s1_root / name)
    else:
        for s in SPLITS:
            _write_list(s1_root / f"{s}.csv", [sp.name for sp in specs if sp.split == s])
        _write_list(s1_root / s2synth.NO_TARGET_LIST, [sp.name for sp in specs if not ben.indices_19(sp.labels43)])
        _write_list(s1_root / s2synth.SNOW_LIST, [sp.name for sp in specs if sp.overlay == "snow"])
        _write_list(s1_root / s2synth.CLOUD_LIST, [sp.name for sp in specs if sp.overlay == "cloud"])
    return [(r[0], r[1]) for r in rows]


def contract_archive(out_dir: str, seed: int = 0) -> ContractArchive:
    """A small S1 archive (48 patches, one each on the no-target, snow and cloud lists) for the contract test."""
    generate(out_dir, 48, seed=seed, num_no_target=1, num_snow=1, num_cloud=1)
    root = Path(out_dir)
    return ContractArchive(
        raw_dir=str(root),
        prepare_args=("--root_folder", str(root), "--pairing", str(root / pairing_lists.FOLDER_PAIRING_FILE)),
        tfds_config="s1",
        tfds_split_names={"train": "train", "val": "val", "test": "test"},
    )


@functools.cache
def define_flags() -> None:
    """Declare the command's flags (``python -m prep.synthetic bigearthnet_s1``)."""
    from absl import flags

    flags.DEFINE_string("out_dir", None, "Folder to write the archive into (required).", short_name="o")
    flags.DEFINE_integer("num_patches", 200, "Number of synthetic S1 patches (pairs with --with_s2).", lower_bound=1)
    flags.DEFINE_integer("seed", 0, "Random seed; the same seed writes the same bytes.", lower_bound=0)
    flags.DEFINE_bool("with_s2", False, "Also write the S2 twins: BigEarthNet-v1.0/ (S2) and BigEarthNet-S1-v1.0/ "
                      "(S1), the layout python -m prep bigearthnet_mm reads.")
    flags.DEFINE_list("split_fractions", ["0.6", "0.2", "0.2"], "Fractions of train,val,test.")
    flags.DEFINE_integer("num_no_target", None, "Patches labelled only with classes without a 19-class target "
                         "(default: 1 per 100).", lower_bound=0)
    flags.DEFINE_integer("num_snow", None, "Patches whose S2 twin has seasonal snow (default: 1 per 100).",
                         lower_bound=0)
    flags.DEFINE_integer("num_cloud", None, "Patches whose S2 twin has cloud and shadow (default: 1 per 100).",
                         lower_bound=0)
    flags.DEFINE_integer("workers", 1, "Worker processes for the S2 twins (output identical for any count).",
                         lower_bound=1)
    flags.DEFINE_bool("overwrite", False, "Write into an --out_dir that already holds files: everything in it is "
                      "deleted first.")


def main(argv: list[str]) -> int:
    """Write the archive the flags describe and print where."""
    from absl import flags

    cli.no_arguments(argv)
    cli.required("out_dir")
    f = flags.FLAGS
    try:
        fractions = [float(x) for x in f.split_fractions]
    except ValueError:
        raise UsageError(f"--split_fractions: expected three numbers, got {','.join(f.split_fractions)}") from None
    cli.refuse_nonempty(f.out_dir, f.overwrite)
    try:
        pairs = generate(f.out_dir, f.num_patches, f.seed, with_s2=f.with_s2, split_fractions=fractions,
                         num_no_target=f.num_no_target, num_snow=f.num_snow, num_cloud=f.num_cloud,
                         workers=f.workers, progress=True)
    except ValueError as e:  # special patches or fractions that do not fit (planned before any file is written)
        raise UsageError(str(e)) from None
    where = f"{S2_FOLDER}/ and {S1_FOLDER}/ in {f.out_dir}" if f.with_s2 else f.out_dir
    print(f"wrote {len(pairs)} synthetic {'S1+S2 pairs' if f.with_s2 else 'S1 patches'} to {where}")
    return 0
