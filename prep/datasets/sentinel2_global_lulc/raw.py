"""Reading the published Sentinel2GlobalLULC layout: file names, class folders, CSVs, tiles.

Flag-free; shared by the command, the TFDS builder and the tests.

File names encode the metadata::

    <ID>_<ShortName>_<purity>%_<imageID>_<gHM>_(<lat>,<lon>)_<CC>_<admin1>_<admin2>_<locality>.jpg

e.g. ``29_UrbanBlUpArea_87%_000123_0.61_(+41.3851000000,+2.1734000000)_ES_Catalunya_Barcelona_Barcelona.jpg``.
Short names may end in underscores (``BarrenLands__``), so the name is read from the fixed fields
around it (the ID before it, ``_<purity>%_`` after it), never by splitting on ``_`` blindly. Place
names have spaces replaced by ``-`` and may hold any Unicode letter. Missing admin levels are empty
fields (``_ES__Barcelona_``) or absent trailing fields (``_ES_Catalunya``); both read as ''.

Layout: one folder per class (named ``<ID>_<ShortName>``, ``<ShortName>`` or ``<ID>``) of JPEG
(``.jpg``/``.jpeg``) or GeoTIFF (``.tif``/``.tiff``) tiles, found directly under the root or under
``Sentinel2LULC_JPEG/`` / ``Sentinel2LULC_GeoTiff/``; per-class CSVs (``<ID>_<ShortName>_CSV.csv``)
anywhere under the root. Bad input (a name that does not parse, a class folder that disagrees with
the ID in the name, a CSV row that disagrees with the name) raises ``LulcInputError`` or becomes a
``Skip`` whose reason names the file and the field.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import os
import re
import unicodedata
from typing import Iterator, Sequence

import numpy as np

from prep import shards
from prep.datasets.sentinel2_global_lulc import spec as sp
from prep.datasets.sentinel2_global_lulc.spec import LulcInputError

JPEG_EXT = (".jpg", ".jpeg")
TIFF_EXT = (".tif", ".tiff")
LAYOUT_FOLDERS = ("Sentinel2LULC_JPEG", "Sentinel2LULC_GeoTiff", "Sentinel2LULC_TIFF")

_NAME = re.compile(
    r"^(?P<id>\d{1,2})_(?P<name>.+?)_(?P<purity>\d+(?:\.\d+)?)%_(?P<image_id>\d+)_(?P<ghm>[+-]?\d+(?:\.\d+)?)"
    r"_\((?P<lat>[+-]?\d+(?:\.\d+)?),(?P<lon>[+-]?\d+(?:\.\d+)?)\)(?P<rest>(?:_[^_]*)*)$")


@dataclasses.dataclass(frozen=True)
class TileName:
    """The metadata in one tile's file name (see the module doc); place names '' when missing."""

    class_id: int
    class_name: str
    purity: float
    image_id: int
    ghm: float
    lat: float
    lon: float
    country_code: str = ""
    admin1: str = ""
    admin2: str = ""
    locality: str = ""

    @property
    def index(self) -> int:
        """Class index 0..28 (ID - 1)."""
        return self.class_id - 1

    def file_stem(self) -> str:
        """The published file-name stem for this metadata (inverse of ``parse_name``, no extension)."""
        place = "_".join(_dash(p) for p in (self.country_code, self.admin1, self.admin2, self.locality))
        return (f"{self.class_id}_{self.class_name}_{_num(self.purity)}%_{self.image_id:06d}_{_num(self.ghm)}_"
                f"({self.lat:+.10f},{self.lon:+.10f})_{place}")


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def _dash(s: str) -> str:
    return s.replace(" ", "-").replace("_", "-")


def parse_name(filename: str) -> TileName:
    """Parses a tile's file name (any folder and extension) into its metadata.

    Args:
      filename: e.g. ``1_BarrenLands___87%_000123_0.61_(-23.5000000000,+15.2000000000)_NA_Erongo__Uis.jpg``.

    Returns:
      The ``TileName``: class ID and short name, purity (percent), image ID, gHM, latitude and longitude
      (degrees), country code, admin1, admin2, locality ('' for missing levels).

    Raises:
      LulcInputError: the name does not match the pattern, the class ID is not 1..29, the short name
        is not that ID's, a coordinate is out of range, or more than four place fields; the message
        names the file and the field.
    """
    base = os.path.basename(filename)
    stem, ext = os.path.splitext(base)
    if ext.lower() not in JPEG_EXT + TIFF_EXT:  # no extension: the coordinates' '.' is no extension
        stem = base
    stem = unicodedata.normalize("NFC", stem)
    m = _NAME.match(stem)
    if not m:
        field = _first_bad_field(stem)
        raise LulcInputError(f"{filename}: file name does not parse: field '{field}' (expected "
                             "<ID>_<ShortName>_<purity>%_<imageID>_<gHM>_(<lat>,<lon>)_<CC>_<admin1>_<admin2>_<locality>)")
    cid = int(m["id"])
    if cid not in sp.CLASS_BY_ID:
        raise LulcInputError(f"{filename}: field 'class ID' = {cid}, not 1..{sp.NUM_CLASSES}")
    if m["name"] != sp.CLASS_BY_ID[cid].short_name:
        raise LulcInputError(f"{filename}: field 'class name' = {m['name']!r}, but class ID {cid} is "
                             f"{sp.CLASS_BY_ID[cid].short_name!r}")
    lat, lon = float(m["lat"]), float(m["lon"])
    if not -90 <= lat <= 90:
        raise LulcInputError(f"{filename}: field 'latitude' = {lat}, outside -90..90")
    if not -180 <= lon <= 180:
        raise LulcInputError(f"{filename}: field 'longitude' = {lon}, outside -180..180")
    rest = m["rest"]
    place = rest[1:].split("_") if rest else []
    if len(place) > 4:
        raise LulcInputError(f"{filename}: field 'place' has {len(place)} parts ({rest[1:]!r}); at most 4 "
                             "(country code, admin1, admin2, locality)")
    place += [""] * (4 - len(place))
    return TileName(cid, m["name"], float(m["purity"]), int(m["image_id"]), float(m["ghm"]), lat, lon, *place)


def _first_bad_field(stem: str) -> str:
    """Names the first field of a stem that does not fit the pattern (for error messages)."""
    checks = (("class ID", r"^\d{1,2}_"), ("class name", r"^\d{1,2}_.+?_\d"),
              ("purity", r"^\d{1,2}_.+?_\d+(?:\.\d+)?%_"), ("image ID", r"^\d{1,2}_.+?_[\d.]+%_\d+_"),
              ("gHM", r"^\d{1,2}_.+?_[\d.]+%_\d+_[+-]?\d+(?:\.\d+)?_\("),
              ("latitude", r"^\d{1,2}_.+?_[\d.]+%_\d+_[+-]?[\d.]+_\([+-]?\d+(?:\.\d+)?,"),
              ("longitude", r"^\d{1,2}_.+?_[\d.]+%_\d+_[+-]?[\d.]+_\([+-]?[\d.]+,[+-]?\d+(?:\.\d+)?\)"))
    for field, pattern in checks:
        if not re.match(pattern, stem):
            return field
    return "place"


# --- class folders and CSVs ------------------------------------------------------------------------

def folder_class(folder: str) -> int | None:
    """The class ID a class folder's name gives (``1_BarrenLands__``, ``BarrenLands__``, ``BarrenLands``, ``1``).

    Returns None for a folder name that names no class.
    """
    name = os.path.basename(os.path.normpath(folder))
    m = re.match(r"^(\d{1,2})(?:_(.*))?$", name)
    if m:
        cid = int(m.group(1))
        return cid if cid in sp.CLASS_BY_ID else None
    for c in sp.CLASSES:
        if name in (c.short_name, c.short_name.rstrip("_"), c.gee_name):
            return c.id
    return None


def class_root(root: str) -> str:
    """The folder holding the class folders: ``root`` or its ``Sentinel2LULC_JPEG``/``_GeoTiff`` folder.

    Raises:
      LulcInputError: ``root`` is not a folder, or holds no class folders.
    """
    if not os.path.isdir(root):
        raise LulcInputError(f"{root}: no such folder")
    for sub in LAYOUT_FOLDERS:
        if os.path.isdir(os.path.join(root, sub)):
            return os.path.join(root, sub)
    return root


@dataclasses.dataclass(frozen=True)
class CsvRow:
    """One row of a per-class metadata CSV, with where it came from."""

    path: str
    line: int
    values: tuple[str, ...]


CSV_COLUMNS = ("class ID", "class name", "image ID", "purity", "gHM", "latitude", "longitude", "country code",
               "admin1", "admin2", "locality", "number of Sentinel-2 images")


def read_csvs(root: str) -> dict[tuple[int, int], CsvRow]:
    """Every per-class CSV (``*_CSV.csv``) under ``root``: (class ID, image ID) -> its row.

    The CSVs have the columns of ``CSV_COLUMNS`` (a header row, if any, is skipped).

    Raises:
      LulcInputError: a row with too few columns, a non-integer class or image ID, or two rows for one
        tile; the message names the file, the line and the field.
    """
    rows: dict[tuple[int, int], CsvRow] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for f in sorted(filenames):
            if not f.lower().endswith("_csv.csv"):
                continue
            path = os.path.join(dirpath, f)
            with open(path, encoding="utf-8", newline="") as fh:
                for line, values in enumerate(csv.reader(fh), 1):
                    if not values or (line == 1 and not values[0].strip().isdigit()):
                        continue
                    if len(values) < 11:
                        raise LulcInputError(f"{path}: line {line}: {len(values)} columns, expected "
                                             f"{len(CSV_COLUMNS)} ({', '.join(CSV_COLUMNS)})")
                    for col in (0, 2):
                        if not values[col].strip().isdigit():
                            raise LulcInputError(f"{path}: line {line}: field '{CSV_COLUMNS[col]}' = "
                                                 f"{values[col]!r} is not an integer")
                    key = (int(values[0]), int(values[2]))
                    if key in rows:
                        raise LulcInputError(f"{path}: line {line}: class {key[0]} image {key[1]} listed twice "
                                             f"(also {rows[key].path} line {rows[key].line})")
                    rows[key] = CsvRow(path, line, tuple(v.strip() for v in values))
    return rows


def check_csv_row(tile: TileName, row: CsvRow, filename: str) -> int:
    """Checks a CSV row against a tile's file name; returns the number of Sentinel-2 images (-1 if blank).

    Raises:
      LulcInputError: a field that differs (numbers compared to 1e-6; place names with spaces as '-'),
        naming the tile file, the CSV file and line, and the field.
    """
    expect = (tile.class_id, tile.class_name, tile.image_id, tile.purity, tile.ghm, tile.lat, tile.lon,
              tile.country_code, tile.admin1, tile.admin2, tile.locality)
    for col, (want, got) in enumerate(zip(expect, row.values)):
        if isinstance(want, str):
            ok = _dash(unicodedata.normalize("NFC", got)) == _dash(want)
        else:
            try:
                g = float(got.rstrip("%"))
                ok = abs(g - want) <= 1e-6 or (col == 3 and abs(g * 100 - want) <= 1e-6)  # purity as a fraction
            except ValueError:
                ok = False
        if not ok:
            raise LulcInputError(f"{filename}: field '{CSV_COLUMNS[col]}' = {want!r} in the file name, but "
                                 f"{row.path} line {row.line} says {got!r}")
    if len(row.values) > 11 and row.values[11].strip():
        try:
            return int(float(row.values[11]))
        except ValueError:
            raise LulcInputError(f"{row.path}: line {row.line}: field '{CSV_COLUMNS[11]}' = {row.values[11]!r} "
                                 "is not a number") from None
    return -1


# --- scanning --------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Tile:
    """One tile found in the class-folder layout, checked, with its metadata (picklable)."""

    path: str  # absolute
    key: str  # '<class folder>/<file name>', the record's patch_id
    name: TileName
    num_s2_images: int = -1

    def item(self) -> list:
        """The tile as a plan item: JSON values ``[path, key, num_s2_images]`` (Beam moves items as JSON)."""
        return [self.path, self.key, self.num_s2_images]

    @classmethod
    def from_item(cls, item: Sequence) -> Tile:
        """The tile of a plan item (``item()``), its name parsed again.

        Raises:
          LulcInputError: the file name does not parse.
        """
        path, key, n_s2 = item
        return cls(path, key, parse_name(path), int(n_s2))

    @property
    def kind(self) -> str:
        """``"jpeg"`` or ``"tiff"`` from the extension."""
        return "jpeg" if self.path.lower().endswith(JPEG_EXT) else "tiff"


@dataclasses.dataclass(frozen=True)
class Scan:
    """What ``scan`` found: good tiles in (class ID, image ID, key) order, and bad ones with reasons."""

    root: str
    tiles: tuple[Tile, ...]
    bad: tuple[tuple[str, str], ...]  # (key, reason)
    csv_rows: int


def scan(root: str, use_csv: bool = True) -> Scan:
    """Finds, parses and checks every tile of the class-folder layout under ``root``.

    Args:
      root: the dataset folder (holding ``Sentinel2LULC_JPEG/`` or the class folders themselves).
      use_csv: check each tile against its per-class CSV row when CSVs are present.

    Returns:
      The ``Scan``; bad tiles (name does not parse, folder disagrees with the ID, CSV row disagrees)
      are listed with a reason naming the file and the field, not raised.

    Raises:
      LulcInputError: ``root`` is missing, holds no class folder, or a CSV is malformed.
    """
    base = class_root(root)
    csv_rows = read_csvs(root) if use_csv else {}
    tiles, bad, folders = [], [], 0
    for folder in sorted(os.listdir(base)):
        fpath = os.path.join(base, folder)
        if not os.path.isdir(fpath):
            continue
        cid = folder_class(folder)
        if cid is None:
            continue
        folders += 1
        for f in sorted(os.listdir(fpath)):
            if not f.lower().endswith(JPEG_EXT + TIFF_EXT):
                continue
            key = f"{folder}/{f}"
            path = os.path.join(fpath, f)
            try:
                name = parse_name(path)
                if name.class_id != cid:
                    raise LulcInputError(f"{path}: field 'class ID' = {name.class_id} in the file name, but the "
                                         f"class folder {folder!r} is class {cid}")
                n_s2 = -1
                row = csv_rows.get((name.class_id, name.image_id))
                if row is not None:
                    n_s2 = check_csv_row(name, row, path)
            except LulcInputError as e:
                bad.append((key, str(e)))
                continue
            tiles.append(Tile(path, key, name, n_s2))
    if not folders:
        raise LulcInputError(f"{base}: no class folders (expected '<ID>_<ShortName>' folders such as "
                             "'1_BarrenLands__', or a Sentinel2LULC_JPEG folder holding them)")
    tiles.sort(key=lambda t: (t.name.class_id, t.name.image_id, t.key))
    return Scan(os.path.abspath(root), tuple(tiles), tuple(bad), len(csv_rows))


# --- pixels and records ----------------------------------------------------------------------------

def decode(tile: Tile, data: bytes | None = None) -> np.ndarray:
    """The tile's pixels: uint8 [H, W, 3] RGB, from the JPEG bytes or the TIFF.

    Raises:
      LulcInputError: not a readable image, not 3 channels, or not 8-bit (naming the file).
    """
    from PIL import Image

    try:
        if tile.kind == "jpeg":
            with Image.open(io.BytesIO(data if data is not None else _read(tile.path))) as im:
                if im.format != "JPEG":
                    raise LulcInputError(f"{tile.path}: field 'image': a {im.format} file, not a JPEG")
                x = np.asarray(im.convert("RGB"))
        else:
            x = read_tiff_rgb(tile.path)
    except LulcInputError:
        raise
    except Exception as e:  # PIL raises many kinds
        raise LulcInputError(f"{tile.path}: field 'image': not a readable image: {e}") from None
    return x


def read_tiff_rgb(path: str) -> np.ndarray:
    """An 8-bit RGB GeoTIFF tile -> uint8 [H, W, 3] (bands 1, 2, 3 = R, G, B).

    Raises:
      LulcInputError: fewer than 3 bands or not 8-bit (a raw composite: convert it with ``tojpeg`` first).
    """
    import rasterio

    with rasterio.open(path) as src:
        if src.count < 3:
            raise LulcInputError(f"{path}: field 'bands': {src.count} band(s), expected 3 (R, G, B)")
        x = src.read([1, 2, 3])
    if x.dtype != np.uint8:
        raise LulcInputError(f"{path}: field 'dtype': {x.dtype}, expected uint8 (an 8-bit visualised tile); "
                             "convert raw composites with `python -m prep lulc tojpeg`")
    return np.ascontiguousarray(x.transpose(1, 2, 0))


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _latlon(lat: float, lon: float) -> bytes:
    return np.array([lat, lon], "<f8").tobytes()


def record_values(tile: Tile, image: bytes | np.ndarray, schema: str) -> dict:
    """The feature values of one record.

    Args:
      tile: the scanned tile.
      image: the JPEG bytes (schema "jpeg") or uint8 [H, W, 3] RGB pixels (schema "raw").
      schema: "jpeg" or "raw".

    Returns:
      ``{feature key: list of values}`` for every field of the schema.
    """
    n = tile.name
    v = {
        "label/index": [n.index], "patch_id": [tile.key.encode()], "meta/class_id": [n.class_id],
        "meta/class_name": [n.class_name.encode()], "meta/image_id": [n.image_id], "meta/purity": [n.purity],
        "meta/ghm": [n.ghm], "meta/num_s2_images": [tile.num_s2_images], "geo/lat": [n.lat], "geo/lon": [n.lon],
        "geo/latlon": [_latlon(n.lat, n.lon)], "geo/country_code": [n.country_code.encode()],
        "geo/admin1": [n.admin1.encode()], "geo/admin2": [n.admin2.encode()], "geo/locality": [n.locality.encode()],
    }
    if schema == "jpeg":
        v[sp.JPEG_KEY] = [bytes(image)]
    else:
        for c, b in enumerate(sp.BAND_NAMES):
            v[sp.RAW_KEYS[b]] = [np.ascontiguousarray(image[..., c]).tobytes()]
    return v


def produce(items: Sequence[Sequence | Tile], schema: str = "jpeg", tile_px: int = sp.TILE_PX
            ) -> Iterator[shards.Record | shards.Skip]:
    """One shard's tiles (``Tile.item()`` lists or Tiles) -> one Record (or Skip) each, in order.

    JPEG bytes are stored as read (no re-encoding); they are decoded only for the band statistics
    and the size check. TIFF tiles are stored as uint8 pixels per band. An unreadable or wrong-sized
    tile gives a Skip naming the file and the field.
    """
    for tile in items:
        if not isinstance(tile, Tile):
            try:
                tile = Tile.from_item(tile)
            except LulcInputError as e:
                yield shards.Skip(str(tile[1]), str(e))
                continue
        try:
            data = _read(tile.path) if schema == "jpeg" else None
            if schema == "jpeg" and tile.kind != "jpeg":
                raise LulcInputError(f"{tile.path}: field 'format': a TIFF among JPEG tiles (one format per run)")
            x = decode(tile, data)
            if x.shape != (tile_px, tile_px, 3):
                raise LulcInputError(f"{tile.path}: field 'size': {x.shape[1]}x{x.shape[0]} pixels, expected "
                                     f"{tile_px}x{tile_px}")
        except (LulcInputError, OSError) as e:
            yield shards.Skip(tile.key, str(e))
            continue
        bands = {b: x[..., c] for c, b in enumerate(sp.BAND_NAMES)}
        yield shards.Record(tile.key, record_values(tile, data if schema == "jpeg" else x, schema), bands,
                            [tile.name.index])
