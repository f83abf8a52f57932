"""Scene inputs for GHS-S2Net: a 4-band GHS composite or a Sentinel-2 L1C/L2A product folder.

Both give the model's input, band order B4, B3, B2, B8 (FACTS.md §5), read window by window:

- (a) a GeoTIFF of 4 bands in that order, uint16 digital numbers (the GHS composite);
- (b) a product folder (``.SAFE`` or an unpacked product; JP2 or GeoTIFF band files): the 10 m band
  files B02, B03, B04, B08 (``*_B02.jp2`` of L1C, ``*_B02_10m.jp2`` of L2A, or ``*B02*.tif``), stacked
  as B04, B03, B02, B08. The processing baseline and the DN offsets come from the product
  metadata (``MTD_MSIL1C.xml`` / ``MTD_MSIL2A.xml``): products of baseline 04.00 and later store
  reflectance x 10000 + 1000 (``RADIO_ADD_OFFSET`` / ``BOA_ADD_OFFSET`` = -1000), which is removed.
  Without metadata the offset must be given (``offset``, ``--offset``).

Reflectance = clip(DN + offset, 0, 10000) / 10000 (upstream: clip at 10000, divide by 10000; the
lower clip only matters for offset products, whose DN 1..999 would otherwise go negative). A pixel is
valid when every band's DN is > 0 (0 is Sentinel-2's and the composite's no-data).
"""
from __future__ import annotations

import dataclasses
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from prep.errors import InputError

MODEL_BANDS = ("B04", "B03", "B02", "B08")  # GHS-S2Net's input order (B4, B3, B2, B8)
BAND_IDS = {"B02": 1, "B03": 2, "B04": 3, "B08": 7}  # band_id of the offsets in the product metadata
SCALE = 10000.0
BASELINE_WITH_OFFSET = (4, 0)
DEFAULT_OFFSET = -1000.0  # baseline >= 04.00 without explicit offset elements
_BAND_FILE = re.compile(r"(?:^|_)(B0[2348])(?:_10m)?\.(?:jp2|tif|tiff)$", re.IGNORECASE)
_SKIP_PARTS = {"QI_DATA", "AUX_DATA", "DATASTRIP", "HTML", "rep_info"}


@dataclasses.dataclass
class Scene:
    """An open scene: the datasets to read, the band order and the DN offset per model band.

    Use as a context manager (``with open_scene(path) as scene``) so the files are closed.

    Attributes:
        source: the path given by the user (file or folder).
        files: per model band (B04, B03, B02, B08), ``(path, band index from 1)``.
        offsets: per model band, the DN offset added before scaling (0 or -1000).
        height: rows.
        width: columns.
        crs: the CRS (``rasterio.crs.CRS``), None if the file has none.
        transform: the affine transform of the 10 m grid.
        names: file and folder names that may hold a tile id (for ``scene.zones.pick_model``).
        baseline: the product's processing baseline (``"04.00"``), None for a composite or no metadata.
    """

    source: Path
    files: list[tuple[Path, int]]
    offsets: list[float]
    height: int
    width: int
    crs: object
    transform: object
    names: list[str]
    baseline: str | None = None
    _open: dict = dataclasses.field(default_factory=dict, repr=False)

    def __enter__(self) -> Scene:
        """Opens the band files."""
        import rasterio

        for path, _ in self.files:
            if path not in self._open:
                self._open[path] = rasterio.open(path)
        return self

    def __exit__(self, *exc) -> None:
        """Closes the band files."""
        for ds in self._open.values():
            ds.close()
        self._open.clear()

    def read_dn(self, row0: int, col0: int, rows: int, cols: int) -> np.ndarray:
        """Reads raw digital numbers of a window inside the scene.

        Args:
            row0: first row.
            col0: first column.
            rows: window height.
            cols: window width.

        Returns:
            ``[rows, cols, 4]`` uint16, bands B04, B03, B02, B08.

        Raises:
            InputError: a band file cannot be read.
        """
        from rasterio.errors import RasterioError
        from rasterio.windows import Window

        out = np.empty((rows, cols, len(self.files)), np.uint16)
        window = Window(col0, row0, cols, rows)
        for i, (path, band) in enumerate(self.files):
            try:
                out[..., i] = self._open[path].read(band, window=window)
            except (RasterioError, KeyError) as e:
                cause: BaseException = e  # GDAL's own words are at the end of the chain ("Read failed" first)
                while (cause.__cause__ or cause.__context__) is not None:
                    cause = cause.__cause__ or cause.__context__
                why = (str(cause).splitlines() or [type(cause).__name__])[0]
                raise InputError(f"cannot read band {band} (corrupt or truncated file?): {why}", path) from None
        return out

    def read(self, row0: int, col0: int, rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
        """Reads a window as model input.

        Args:
            row0: first row.
            col0: first column.
            rows: window height.
            cols: window width.

        Returns:
            ``(x, valid)``: ``x`` ``[rows, cols, 4]`` float32 reflectance (``to_reflectance``),
            ``valid`` ``[rows, cols]`` bool (every band's DN > 0).
        """
        dn = self.read_dn(row0, col0, rows, cols)
        return to_reflectance(dn, self.offsets), np.all(dn > 0, axis=-1)

    def fingerprint(self) -> dict:
        """What identifies the input for resuming: files with size and modification time, offsets, shape."""
        files = []
        for path, band in self.files:
            st = os.stat(path)
            files.append([str(Path(path).resolve()), band, st.st_size, st.st_mtime_ns])
        return {"files": files, "offsets": self.offsets, "shape": [self.height, self.width]}


def to_reflectance(dn: np.ndarray, offsets: float | Sequence[float]) -> np.ndarray:
    """Digital numbers -> reflectance, as GHS-S2Net expects it.

    Args:
        dn: ``[..., bands]`` digital numbers.
        offsets: per band, the offset added first (e.g. -1000 for baseline 04.00), or one number.

    Returns:
        float32 ``clip(dn + offset, 0, 10000) / 10000``, same shape.
    """
    x = dn.astype(np.float32) + np.asarray(offsets, np.float32)
    return np.clip(x, 0.0, SCALE) / np.float32(SCALE)


def parse_baseline(text: str) -> tuple[int, int]:
    """``"04.00"`` -> ``(4, 0)``.

    Raises:
        ValueError: not ``NN.NN``.
    """
    m = re.fullmatch(r"\s*(\d+)\.(\d+)\s*", text or "")
    if not m:
        raise ValueError(f"not a processing baseline: {text!r}")
    return int(m.group(1)), int(m.group(2))


def read_metadata(path: str | os.PathLike) -> tuple[str, dict[int, float]]:
    """Reads a product metadata file's processing baseline and per-band DN offsets.

    Args:
        path: ``MTD_MSIL1C.xml`` or ``MTD_MSIL2A.xml`` (any namespace).

    Returns:
        ``(baseline, offsets)``: e.g. ``("04.00", {0: -1000.0, ...})``, offsets by ``band_id`` from
        ``RADIO_ADD_OFFSET`` (L1C) or ``BOA_ADD_OFFSET`` (L2A); empty when the file lists none.

    Raises:
        InputError: not XML, or no ``PROCESSING_BASELINE`` element.
    """
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as e:
        raise InputError(f"cannot read the product metadata ({e})", path) from None
    baseline, offsets = None, {}
    for el in root.iter():
        tag = el.tag.rsplit("}", 1)[-1]
        if tag == "PROCESSING_BASELINE" and baseline is None:
            baseline = (el.text or "").strip()
        elif tag in ("RADIO_ADD_OFFSET", "BOA_ADD_OFFSET"):
            try:
                offsets[int(el.get("band_id"))] = float(el.text)
            except (TypeError, ValueError):
                raise InputError(f"bad {tag} element: band_id={el.get('band_id')!r}, value {el.text!r}",
                                 path) from None
    if baseline is None:
        raise InputError("no PROCESSING_BASELINE in the product metadata", path)
    try:
        parse_baseline(baseline)
    except ValueError as e:
        raise InputError(str(e), path) from None
    return baseline, offsets


def _band_files(folder: Path) -> dict[str, list[Path]]:
    found: dict[str, list[Path]] = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_PARTS)
        for name in sorted(filenames):
            m = _BAND_FILE.search(name)
            if m and not name.upper().startswith(("MSK_", "T_MSK")):
                found.setdefault(m.group(1).upper(), []).append(Path(dirpath) / name)
    return found


def _metadata_file(folder: Path) -> Path | None:
    for pattern in ("MTD_MSIL*.xml", "MTD_*.xml", "*MTD_SAF*.xml"):
        hits = sorted(folder.glob(pattern))
        if hits:
            return hits[0]
    return None


def _grid(path: Path) -> tuple:
    import rasterio
    from rasterio.errors import RasterioError

    try:
        with rasterio.open(path) as ds:
            return ds.count, ds.dtypes, ds.height, ds.width, ds.crs, ds.transform
    except RasterioError as e:
        raise InputError(f"not a readable raster ({e})", path) from None


def open_product(folder: str | os.PathLike, offset: float | None = None) -> Scene:
    """Finds the 10 m bands B02, B03, B04, B08 of a Sentinel-2 product folder and their DN offsets.

    Args:
        folder: a ``.SAFE`` folder, an unpacked product, or a folder of GeoTIFF/JP2 band files.
        offset: the DN offset to add (e.g. -1000), overriding the metadata; required when the
            folder has no ``MTD_*.xml``.

    Returns:
        The ``Scene`` (not yet opened).

    Raises:
        InputError: a band missing or found twice, bands on different grids, or no metadata and no
            ``offset``.
    """
    folder = Path(folder)
    found = _band_files(folder)
    missing = [b for b in MODEL_BANDS if b not in found]
    if missing:
        raise InputError(f"no 10 m band file for {', '.join(missing)} (looked for *_B02.jp2, *_B02_10m.jp2, "
                         f"*B02*.tif and the same for B03, B04, B08)", folder)
    twice = {b: [str(p.relative_to(folder)) for p in found[b]] for b in MODEL_BANDS if len(found[b]) > 1}
    if twice:
        raise InputError(f"more than one file for a band: {twice}", folder)
    files = [found[b][0] for b in MODEL_BANDS]
    grids = [_grid(p) for p in files]
    for path, grid in zip(files, grids):
        if grid[2:] != grids[0][2:]:
            raise InputError(f"not on the grid of {files[0].name} ({grids[0][2]}x{grids[0][3]}, {grids[0][4]}): "
                             f"{grid[2]}x{grid[3]}, {grid[4]}", path)
        if grid[1][0] != "uint16":
            raise InputError(f"band data type {grid[1][0]}, expected uint16 digital numbers", path)
    baseline = None
    metadata = _metadata_file(folder)
    if offset is not None:
        offsets = [float(offset)] * 4
    elif metadata is None:
        raise InputError("no product metadata (MTD_MSIL1C.xml / MTD_MSIL2A.xml), so the processing baseline and "
                         "its DN offset are unknown", folder,
                         hint="give --offset (-1000 for processing baseline 04.00 and later, 0 before)")
    else:
        baseline, by_id = read_metadata(metadata)
        if by_id:
            missing_ids = [b for b in MODEL_BANDS if BAND_IDS[b] not in by_id]
            if missing_ids:
                raise InputError(f"ADD_OFFSET given for some bands but not {', '.join(missing_ids)}", metadata)
            offsets = [by_id[BAND_IDS[b]] for b in MODEL_BANDS]
        else:
            offsets = [DEFAULT_OFFSET if parse_baseline(baseline) >= BASELINE_WITH_OFFSET else 0.0] * 4
    _, _, height, width, crs, transform = grids[0]
    names = [folder.resolve().name, *[p.name for p in files]]
    return Scene(source=folder, files=[(p, 1) for p in files], offsets=offsets, height=height, width=width,
                 crs=crs, transform=transform, names=names, baseline=baseline)


def open_composite(path: str | os.PathLike, offset: float | None = None) -> Scene:
    """Opens a 4-band GHS composite GeoTIFF (B4, B3, B2, B8, uint16).

    Args:
        path: the GeoTIFF.
        offset: DN offset to add before scaling (default 0).

    Returns:
        The ``Scene`` (not yet opened).

    Raises:
        InputError: not a raster, not 4 bands, or not uint16.
    """
    path = Path(path)
    count, dtypes, height, width, crs, transform = _grid(path)
    if count != 4:
        raise InputError(f"{count} bands; a GHS composite has 4 (B4, B3, B2, B8)", path)
    if dtypes[0] != "uint16":
        raise InputError(f"data type {dtypes[0]}; a GHS composite is uint16 digital numbers", path)
    return Scene(source=path, files=[(path, i) for i in range(1, 5)], offsets=[float(offset or 0.0)] * 4,
                 height=height, width=width, crs=crs, transform=transform, names=[path.name])


def open_scene(src: str | os.PathLike, offset: float | None = None) -> Scene:
    """Opens a scene for GHS-S2Net: a folder is a Sentinel-2 product, a file a 4-band composite.

    Args:
        src: the product folder or the composite GeoTIFF.
        offset: DN offset to add before scaling (see ``open_product``, ``open_composite``).

    Returns:
        The ``Scene`` (use it in a ``with`` block).

    Raises:
        InputError: ``src`` does not exist or is not a usable scene.
    """
    src = Path(src)
    if src.is_dir():
        return open_product(src, offset)
    if not src.is_file():
        raise InputError("no such file or folder", src)
    return open_composite(src, offset)
