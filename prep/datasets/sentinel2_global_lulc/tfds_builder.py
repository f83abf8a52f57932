"""TFDS builder ``sentinel2_global_lulc``: Sentinel2GlobalLULC v2.1 from the class-folder layout.

Manual folder: the dataset folder holding ``Sentinel2LULC_JPEG/<ID>_<ShortName>/`` (or
``Sentinel2LULC_GeoTiff/``) and, optionally, the per-class CSVs; read with the command's raw reader
(prep.datasets.sentinel2_global_lulc.raw), so the same tiles are good or bad. Configs ``fold0`` ..
``fold4``: the stratified 5-fold split with seed 0 (splits/sentinel2_global_lulc.py), fold ``k`` as
``test`` and the other four as ``train`` — the splits ``python -m prep lulc --test_fold k`` writes.
In ``fold<k>`` JPEG tiles are stored as published (no re-encoding); for GeoTIFF tiles use
``tiff_fold<k>``, which stores every image as PNG (lossless; TFDS would otherwise JPEG-encode them).
"""
from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from prep.datasets.sentinel2_global_lulc import DATASET, command, raw
from prep.datasets.sentinel2_global_lulc import spec as sp
from splits import sentinel2_global_lulc as folds_mod

MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Download Sentinel2GlobalLULC v2.1 from Zenodo (record 6941662) and unpack it into the manual folder
so that it holds Sentinel2LULC_JPEG/<ID>_<ShortName>/*.jpg (the CSVs anywhere below are checked).
"""


@dataclasses.dataclass
class LulcConfig(tfds.core.BuilderConfig):
    """One fold of the stratified 5-fold split (seed 0) as test."""

    test_fold: int = 0
    image_format: str = "jpeg"  # TFDS image encoding: "jpeg" (JPEG tiles as they are) or "png" (lossless)


class Sentinel2GlobalLulc(tfds.core.GeneratorBasedBuilder):
    """Sentinel2GlobalLULC v2.1: 29 LULC classes, RGB tiles, stratified 5-fold configs."""

    name = "sentinel2_global_lulc"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release: JPEG tiles as published, class label in ID order, metadata, "
                              "stratified 5-fold configs."}
    BUILDER_CONFIGS = [LulcConfig(name=f"{prefix}fold{k}", description=f"Stratified 5-fold split (seed 0), fold {k} "
                                  f"as test, the others as train; images stored as {fmt.upper()}.", test_fold=k,
                                  image_format=fmt)
                       for prefix, fmt in (("", "jpeg"), ("tiff_", "png")) for k in range(folds_mod.DEFAULT_FOLDS)]
    DEFAULT_CONFIG_NAME = "fold0"
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS

    def _info(self) -> tfds.core.DatasetInfo:
        feats = {
            "image": tfds.features.Image(shape=(None, None, 3), encoding_format=self.builder_config.image_format,
                                         doc=f"RGB (B04, B03, B02) 8-bit, {sp.TILE_PX}x{sp.TILE_PX} at 10 m."),
            "label": tfds.features.ClassLabel(names=list(sp.CLASS_NAMES), doc="Class index = class ID - 1."),
            "patch_id": tfds.features.Text(doc="'<class folder>/<file name>'."),
            "purity": tfds.features.Scalar(dtype=np.float32, doc="Pixel purity, percent."),
            "ghm": tfds.features.Scalar(dtype=np.float32, doc="Global Human Modification index."),
            "latitude": tfds.features.Tensor(shape=(), dtype=np.float64, encoding=tfds.features.Encoding.BYTES,
                                             doc="Tile centre, degrees (float64 kept: no float32 rounding)."),
            "longitude": tfds.features.Tensor(shape=(), dtype=np.float64, encoding=tfds.features.Encoding.BYTES,
                                              doc="Tile centre, degrees."),
            "country_code": tfds.features.Text(doc="ISO alpha-2; empty when missing."),
            "admin1": tfds.features.Text(doc="Admin level 1; empty when missing."),
            "admin2": tfds.features.Text(doc="Admin level 2; empty when missing."),
            "locality": tfds.features.Text(doc="Locality; empty when missing."),
        }
        return self.dataset_info_from_configs(
            description=sp.SPEC.description, features=tfds.features.FeaturesDict(feats),
            supervised_keys=("image", "label"), homepage=DATASET.homepage, citation=DATASET.citation)

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        s = raw.scan(str(dl_manager.manual_dir))
        if s.bad:
            raise raw.LulcInputError(s.bad[0][1])
        folds, _ = command.assign_folds(s.tiles)
        names = folds_mod.fold_splits(folds, self.builder_config.test_fold)
        return {split: self._generate_examples([t for t, n in zip(s.tiles, names) if n == split])
                for split in ("train", "test")}

    def _generate_examples(self, tiles):
        for t in tiles:
            yield t.key, example(t, self.builder_config.image_format)


def example(tile: raw.Tile, image_format: str = "jpeg") -> dict:
    """One tile -> the builder's feature dict.

    The image is the JPEG file's path (stored as is) for a JPEG tile and ``image_format="jpeg"``,
    else the tile's uint8 [H, W, 3] RGB pixels (TFDS encodes them in ``image_format``).
    """
    n = tile.name
    image = tile.path if tile.kind == "jpeg" and image_format == "jpeg" else raw.decode(tile)
    return {"image": image, "label": n.index,
            "patch_id": tile.key, "purity": n.purity, "ghm": n.ghm, "latitude": n.lat, "longitude": n.lon,
            "country_code": n.country_code, "admin1": n.admin1, "admin2": n.admin2, "locality": n.locality}
