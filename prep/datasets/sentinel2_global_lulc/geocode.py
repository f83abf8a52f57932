"""Offline reverse geocoding of tile centres: ``python -m prep lulc geocode --csv IN --out OUT``.

Input: the CSV of pure-tile centres exported from Earth Engine, no header, columns longitude,
latitude, purity, class, gHM (any class: the class column is kept as given, an ID 1..29 or a
name). Output: the same rows with four more columns, country code, admin1, admin2, locality
(GeoNames places of population >= 1000 via the ``reverse-geocode`` package, whose data ships with
it: nothing is downloaded), plus a header row. Upstream hard-coded one class and called a pandas
API that no longer exists; this reads and writes with the csv module and takes every class.

Missing levels are empty strings. File names use the places with spaces replaced by '-'
(raw.TileName.file_stem).
"""
from __future__ import annotations

import csv
import functools
from typing import Callable, Sequence

from absl import flags

from prep import cli, files
from prep.datasets.sentinel2_global_lulc.spec import LulcInputError

FLAGS = flags.FLAGS
IN_COLUMNS = ("longitude", "latitude", "purity", "class", "gHM")
OUT_COLUMNS = IN_COLUMNS + ("country_code", "admin1", "admin2", "locality")


@functools.cache
def define_flags() -> None:
    """Declare the flags of ``geocode``."""
    flags.DEFINE_string("csv", None, "Coordinates CSV without header: longitude, latitude, purity, class, gHM.")
    flags.DEFINE_string("out", None, "Output CSV (header + the input columns + country_code, admin1, admin2, "
                        "locality).")


def read_points(path: str) -> list[tuple[float, float, str, str, str]]:
    """Reads a coordinates CSV (no header): [(lon, lat, purity, class, gHM)], purity/class/gHM as given.

    Raises:
      LulcInputError: a row without 5 columns, or a coordinate that is not a number or out of range
        (naming the file, line and field).
    """
    out = []
    with open(path, encoding="utf-8", newline="") as fh:
        for line, row in enumerate(csv.reader(fh), 1):
            if not row or not "".join(row).strip():
                continue
            if len(row) < 5:
                raise LulcInputError(f"{path}: line {line}: {len(row)} columns, expected 5 ({', '.join(IN_COLUMNS)})")
            try:
                lon, lat = float(row[0]), float(row[1])
            except ValueError:
                field = "longitude" if not _is_float(row[0]) else "latitude"
                raise LulcInputError(f"{path}: line {line}: field '{field}' is not a number") from None
            if not (-180 <= lon <= 180 and -90 <= lat <= 90):
                raise LulcInputError(f"{path}: line {line}: field 'longitude/latitude' = {lon}, {lat} out of range")
            out.append((lon, lat, row[2].strip(), row[3].strip(), row[4].strip()))
    return out


def _is_float(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def default_search() -> Callable[[Sequence[tuple[float, float]]], list[dict]]:
    """The offline GeoNames search: ``reverse_geocode.search([(lat, lon), ...]) -> [dict]``.

    Raises:
      LulcInputError: the ``reverse-geocode`` package is not installed.
    """
    try:
        import reverse_geocode
    except ImportError:
        raise LulcInputError("geocode needs the 'reverse-geocode' package (pip install reverse-geocode)") from None
    return reverse_geocode.search


def places(points: Sequence[tuple[float, float]],
           search: Callable[[Sequence[tuple[float, float]]], list[dict]] | None = None) -> list[tuple[str, ...]]:
    """Country code, admin1, admin2, locality of each (lat, lon) point, '' for a missing level.

    Args:
      points: (latitude, longitude) in degrees.
      search: the geocoder (default: ``default_search()``); returns dicts with country_code, state,
        county and city.
    """
    if not points:
        return []
    search = search or default_search()
    out = []
    for r in search(list(points)):
        out.append(tuple(str(r.get(k) or "") for k in ("country_code", "state", "county", "city")))
    return out


def geocode_csv(src: str, dst: str, search: Callable | None = None) -> int:
    """Geocodes the coordinates CSV ``src`` into ``dst`` (atomic write); returns the rows written."""
    rows = read_points(src)
    found = places([(lat, lon) for lon, lat, *_ in rows], search)
    with files.atomic_write(dst, "w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(OUT_COLUMNS)
        for (lon, lat, purity, cls, ghm), place in zip(rows, found):
            w.writerow([repr(lon), repr(lat), purity, cls, ghm, *place])
    return len(rows)


def main(argv: list[str]) -> int:
    """Geocode the CSV the flags name."""
    cli.no_arguments(argv)
    cli.required("csv", "out")
    n = geocode_csv(FLAGS.csv, FLAGS.out)
    print(f"{FLAGS.out}: {n} rows geocoded")
    return 0
