"""TFDS builder ``eurosat_ms``: EuroSAT (multispectral) from the class folders of 13-band GeoTIFFs.

Registered when ``prep.tfds`` is imported; named ``eurosat_ms`` beside the TFDS catalog's own
``eurosat`` (whose ``all`` config stores float32 pixels). Images are read with the preparation's
reader (``prep.datasets.eurosat.raw``: band count, shape and dtype checks; bands named by their
stored order B01 ... B12, B8A) and split by the same rules (``splits.eurosat``): the common split
files ``eurosat-train.txt``, ``eurosat-val.txt``, ``eurosat-test.txt`` when the manual folder holds
them (a listed image that is not there is an error), else the seeded stratified 60/20/20 split.

Configs: ``all`` (13 bands), ``land`` (the 10 bands at native 10 m / 20 m), ``rgb`` (B04, B03,
B02): one ``image`` of (64, 64, C) uint16 as stored. Every config also has ``label`` (10 classes),
``filename``, ``epsg`` and ``transform``.
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np
import tensorflow_datasets as tfds

from prep.datasets.eurosat import DATASET, raw
from prep.datasets.eurosat import spec as sp
from prep.datasets.eurosat.spec import EurosatInputError
from prep.shards import Skip
from splits import eurosat as rules

MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Download EuroSAT_MS.zip (the multispectral version) from https://github.com/phelber/EuroSAT and
extract it into the manual folder, which then holds EuroSAT_MS/ with the 10 class folders
(AnnualCrop/AnnualCrop_1.tif ...). To use the common splits, put eurosat-train.txt,
eurosat-val.txt and eurosat-test.txt beside EuroSAT_MS/.
"""
PRESETS = ("all", "land", "rgb")
SPLIT_NAMES = {"train": "train", "val": "validation", "test": "test"}


@dataclasses.dataclass
class EurosatMsConfig(tfds.core.BuilderConfig):
    """One band preset."""

    preset: str = "all"


def _config(preset: str) -> EurosatMsConfig:
    return EurosatMsConfig(name=preset, preset=preset,
                           description=f"channels {', '.join(sp.SPEC.resolve_bands(preset))} (uint16 as stored).")


class EurosatMs(tfds.core.GeneratorBasedBuilder):
    """EuroSAT multispectral: 64x64 Sentinel-2 images of 10 land-use/land-cover classes."""

    name = "eurosat_ms"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release: bands in stored order (B8A last), common split files or a "
                              "stratified split, georeference."}
    BUILDER_CONFIGS = [_config(p) for p in PRESETS]
    DEFAULT_CONFIG_NAME = "all"
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS

    def _info(self) -> tfds.core.DatasetInfo:
        bands = sp.SPEC.resolve_bands(self.builder_config.preset)
        feats = {
            "image": tfds.features.Tensor(shape=(*sp.PATCH, len(bands)), dtype=np.uint16,
                                          encoding=tfds.features.Encoding.BYTES,
                                          doc=f"Channels {', '.join(bands)} (L1C DN as stored)."),
            "label": tfds.features.ClassLabel(names=list(sp.CLASS_NAMES)),
            "filename": tfds.features.Text(),
            "epsg": tfds.features.Scalar(dtype=np.int64),
            "transform": tfds.features.Tensor(shape=(6,), dtype=np.float64, encoding=tfds.features.Encoding.BYTES),
        }
        return self.dataset_info_from_configs(
            description=sp.SPEC.description, features=tfds.features.FeaturesDict(feats),
            supervised_keys=("image", "label"), homepage=DATASET.homepage, citation=DATASET.citation)

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        root = str(dl_manager.manual_dir)
        return {SPLIT_NAMES.get(s, s): self._generate_examples(base, rels) for s, (base, rels) in
                split_items(root).items()}

    def _generate_examples(self, base, rels):
        bands = sp.SPEC.resolve_bands(self.builder_config.preset)
        for result in raw.produce(rels, base):
            if isinstance(result, Skip):
                raise EurosatInputError(result.reason)
            yield result.key, example(result.values, bands)


def split_items(root: str) -> dict[str, tuple[str, list[str]]]:
    """The builder's splits: split -> (class-folder root, relative paths), by the preparation's rules.

    The split files ``eurosat-{train,val,test}.txt`` in ``root`` (or its layout folder) when present,
    else the stratified split of ``splits.eurosat``.

    Raises:
      EurosatInputError: no class folder, a bad split-file line, or a listed image not in the archive.
    """
    from prep.datasets.eurosat import command

    base = raw.class_root(root)
    files = {}
    for s in rules.SPLITS:
        found = [p for p in (os.path.join(d, f"eurosat-{s}.txt") for d in (root, base)) if os.path.isfile(p)]
        if found:
            files[s] = found[0]
    plan = command.plan(root, files or None)
    return {s: (base, list(rels)) for s, rels in plan.items.items()}


def example(values: dict, bands: tuple[str, ...]) -> dict:
    """One record's feature values -> the builder's feature dict.

    Args:
      values: ``spec.record_values``'s dict (bands as raw little-endian uint16 bytes).
      bands: the config's channels, in order.

    Returns:
      ``image`` uint16 [64, 64, C], ``label`` (class index), ``filename``, ``epsg``, ``transform`` float64 [6].
    """
    return {
        "image": np.stack([np.frombuffer(values[sp.BAND_KEYS[b]][0], "<u2").reshape(sp.PATCH) for b in bands],
                          axis=-1).astype(np.uint16),
        "label": int(values["label/index"][0]),
        "filename": values["meta/file"][0].decode(),
        "epsg": int(values["geo/epsg"][0]),
        "transform": np.frombuffer(values["geo/transform"][0], "<f8").astype(np.float64),
    }
