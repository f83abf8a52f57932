"""So2Sat patches as georeferenced GeoTIFFs: ``python -m prep so2sat geotiff``.

    python -m prep so2sat geotiff --h5 validation.h5 --rows 0,10-12 --out_dir TIFS

One file per row and sensor (``<file>_<row>_sen1.tif`` / ``_sen2.tif``), with the CRS and
transform of the row's geolocation (``raw`` reads both published ``tfw`` orders), band
descriptions and the row's class as tags. Each file is read back and its CRS and transform checked.
"""
from __future__ import annotations

import functools
import os
import re
from typing import Iterable, Sequence

import numpy as np
from absl import flags

from prep import cli
from prep.datasets.so2sat import raw
from prep.datasets.so2sat import spec as s2s
from prep.datasets.so2sat.raw import So2SatInputError


def parse_rows(text: str, n: int, path: str) -> list[int]:
    """'0,5,10-20' -> sorted unique rows, checked against the file's N rows."""
    rows: set[int] = set()
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m:
            raise So2SatInputError(f"--rows: cannot read {part!r} (use e.g. 0,5,10-20)")
        a, b = int(m.group(1)), int(m.group(2) or m.group(1))
        if b < a:
            raise So2SatInputError(f"--rows: range {part!r} runs backwards")
        if b >= n:
            raise So2SatInputError(f"{path}: --rows {part} is beyond the file's {raw.describe_rows(0, n)}")
        rows.update(range(a, b + 1))
    if not rows:
        raise So2SatInputError("--rows selects no rows")
    return sorted(rows)


def export_geotiffs(h5_path: str, rows: str | Iterable[int], out_dir: str, geo_path: str | None = None,
                    sensors: Sequence[str] = ("sen1", "sen2"), tfw_order: str = "auto",
                    keep_float64: bool = False) -> list[str]:
    """Write the chosen rows' patches as georeferenced GeoTIFFs; each is read back and checked."""
    import rasterio
    from rasterio.crs import CRS
    from rasterio.transform import Affine

    bad = [s for s in sensors if s not in ("sen1", "sen2")]
    if bad or not sensors:
        raise So2SatInputError(f"--sensors: choose from sen1, sen2 (got {', '.join(sensors) or 'nothing'})")
    n = raw.inspect_h5(h5_path)
    geo_path = geo_path or raw.find_geo(h5_path)
    if not geo_path:
        raise So2SatInputError(f"{h5_path}: no geolocation file ({os.path.splitext(h5_path)[0]}_geo.h5 not "
                               "found); pass --geo")
    info = raw.inspect_geo(geo_path, n, tfw_order)
    rows = parse_rows(rows, n, h5_path) if isinstance(rows, str) else sorted(set(int(r) for r in rows))
    if rows and (rows[0] < 0 or rows[-1] >= n):
        raise So2SatInputError(f"{h5_path}: rows must lie in {raw.describe_rows(0, n)}")
    dtype = "float64" if keep_float64 else "float32"
    prefix = raw.source_name(h5_path).replace("/", "_").removesuffix(".h5")
    os.makedirs(out_dir, exist_ok=True)
    written = []
    with raw.open_h5(h5_path) as f, raw.open_h5(geo_path) as g:
        for row in rows:
            geo = raw.read_geo(g, info, row, row + 1)[0]
            cls = int(raw.label_indices(raw.read_slice(f["label"], row, row + 1, h5_path), h5_path, row)[0])
            transform = Affine(*geo.transform)
            crs = CRS.from_epsg(geo.epsg)
            for sensor in sensors:
                names = s2s.SEN1_BANDS if sensor == "sen1" else s2s.SEN2_BANDS
                pixels = raw.read_slice(f[sensor], row, row + 1, h5_path)[0]
                data = np.ascontiguousarray(pixels.transpose(2, 0, 1), dtype)
                path = os.path.join(out_dir, f"{prefix}_{row:06d}_{sensor}.tif")
                with rasterio.open(path, "w", driver="GTiff", height=data.shape[1], width=data.shape[2],
                                   count=data.shape[0], dtype=dtype, crs=crs, transform=transform) as dst:
                    dst.write(data)
                    for k, name in enumerate(names, 1):
                        dst.set_band_description(k, s2s.SEN1_DESCRIPTIONS.get(name, f"Sentinel-2 {name}"))
                    dst.update_tags(source=raw.source_name(h5_path), row=str(row), lcz_index=str(cls),
                                    lcz_code=s2s.LCZ_CODES[cls], lcz_name=s2s.CLASS_NAMES[cls], city=geo.city)
                with rasterio.open(path) as chk:
                    if chk.crs.to_epsg() != geo.epsg or not chk.transform.almost_equals(transform, 1e-6):
                        raise So2SatInputError(f"{path}: read back CRS {chk.crs} / transform {chk.transform}, "
                                               f"expected EPSG:{geo.epsg} / {transform}")
                written.append(path)
    return written


# --- the command ----------------------------------------------------------------------------------

@functools.cache
def define_flags() -> None:
    """Declare the ``geotiff`` command's flags: the HDF5 inputs, the rows, the sensors, the output folder."""
    from prep.datasets.so2sat import command

    command.define_input_flags()
    flags.DEFINE_string("rows", None, "Rows to export, e.g. '0,5,10-20' (0-based, ranges inclusive; required).")
    flags.DEFINE_list("sensors", ["sen1", "sen2"], "Which patches to write per row (sen1, sen2).")
    flags.DEFINE_string("out_dir", None, "Folder for the GeoTIFFs (required).", short_name="o")
    flags.DEFINE_alias("out", "out_dir")


def main(argv: list[str]) -> int:
    """Export the rows named by the flags from each ``--h5`` file."""
    cli.no_arguments(argv)
    cli.required("h5", "rows", "out_dir")
    f = flags.FLAGS
    geos = f.geo or [None] * len(f.h5)
    if len(geos) != len(f.h5):
        raise cli.UsageError(f"--geo gives {len(geos)} files for {len(f.h5)} --h5 files (one per --h5 file)")
    for h5_path, geo in zip(f.h5, geos):
        paths = export_geotiffs(h5_path, f.rows, f.out_dir, None if geo == "none" else geo, f.sensors,
                                f.tfw_order, f.keep_float64)
        print(f"{h5_path}: wrote {len(paths)} GeoTIFFs to {f.out_dir} (CRS and transform checked)")
    return 0
