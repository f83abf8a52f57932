"""TFDS builder ``sen12ms``: SEN12MS triplets from the extracted season folders.

Registered when ``prep.tfds`` is imported. Triplets are read with the preparation's reader
(``prep.datasets.sen12ms.raw``: twin, band count, shape and dtype checks; S1 NaNs stored as 0 dB)
and split by the same rules (``splits.sen12ms``: test = the 26 hold-out scenes, validation = the
seeded scene-grouped draw, train = the rest).

Configs ``<preset>_<target>``: preset ``s1``, ``rgb``, ``bgr_upstream``, ``s2_10``, ``s2_all`` or
``s1s2`` (one ``image`` of (256, 256, C): uint16 for S2-only presets, float32 for those with S1),
target ``dfc10_multi``, ``dfc10_single``, ``igbp17_multi`` or ``igbp17_single`` (``label``: a
multi-hot vector at the 0.1 share, or a class label). Every config also has ``fractions`` of its
nomenclature, ``patch_id``, ``season``, ``scene``, ``patch``, ``epsg`` and ``transform``.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from prep.datasets.sen12ms import DATASET, raw
from prep.datasets.sen12ms import spec as sp
from prep.shards import Skip
from splits import sen12ms as rules

MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Download SEN12MS from https://mediatum.ub.tum.de/1474000 and extract the per-season tarballs into
the manual folder, which then holds ROIs1158_spring/, ROIs1868_summer/, ROIs1970_fall/ and
ROIs2017_winter/ (each with s1_<scene>/, s2_<scene>/, lc_<scene>/ folders).
"""
PRESETS = ("s1", "rgb", "bgr_upstream", "s2_10", "s2_all", "s1s2")


@dataclasses.dataclass
class Sen12msConfig(tfds.core.BuilderConfig):
    """One band preset and one target."""

    preset: str = "s1s2"
    target: str = sp.DEFAULT_TARGET


def _config(preset: str, target: str) -> Sen12msConfig:
    bands = sp.SPEC.resolve_bands(preset)
    return Sen12msConfig(name=f"{preset}_{target}", preset=preset, target=target,
                         description=f"channels {', '.join(bands)}; label {target}.")


def image_dtype(bands: tuple[str, ...]) -> np.dtype:
    """uint16 when every band is a uint16 band (S2), else float32."""
    kinds = {sp.SPEC.band(b).dtype for b in bands}
    return np.dtype(kinds.pop() if len(kinds) == 1 else "float32")


class Sen12ms(tfds.core.GeneratorBasedBuilder):
    """SEN12MS: Sentinel-1/2 and MODIS land-cover triplets with scene labels."""

    name = "sen12ms"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release: presets x targets, hold-out test scenes, scene-grouped validation."}
    BUILDER_CONFIGS = [_config(p, t) for p in PRESETS for t in sp.SCENE_TARGETS]
    DEFAULT_CONFIG_NAME = "s1s2_dfc10_multi"
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS

    def _info(self) -> tfds.core.DatasetInfo:
        cfg = self.builder_config
        bands = sp.SPEC.resolve_bands(cfg.preset)
        nom, kind = cfg.target.split("_")
        names = list(sp.NOMENCLATURES[nom])
        label = (tfds.features.Tensor(shape=(len(names),), dtype=np.int64, doc="multi-hot at a 0.1 share")
                 if kind == "multi" else tfds.features.ClassLabel(names=names))
        feats = {
            "image": tfds.features.Tensor(shape=(*sp.PATCH, len(bands)), dtype=image_dtype(bands),
                                          encoding=tfds.features.Encoding.BYTES,
                                          doc=f"Channels {', '.join(bands)} (S2 DN, S1 dB with NaN -> 0)."),
            "label": label,
            "fractions": tfds.features.Tensor(shape=(len(names),), dtype=np.float32),
            "patch_id": tfds.features.Text(),
            "season": tfds.features.Text(),
            "scene": tfds.features.Scalar(dtype=np.int64),
            "patch": tfds.features.Scalar(dtype=np.int64),
            "epsg": tfds.features.Scalar(dtype=np.int64),
            "transform": tfds.features.Tensor(shape=(6,), dtype=np.float64, encoding=tfds.features.Encoding.BYTES),
        }
        return self.dataset_info_from_configs(
            description=sp.SPEC.description, features=tfds.features.FeaturesDict(feats),
            supervised_keys=("image", "label"), homepage=DATASET.homepage, citation=DATASET.citation)

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        root = str(dl_manager.manual_dir)
        splits = rules.assign(raw.find_triplets(root))
        names = {"train": "train", "val": "validation", "test": "test"}
        return {names[s]: self._generate_examples(root, keys) for s, keys in splits.items()}

    def _generate_examples(self, root, keys):
        cfg = self.builder_config
        bands = sp.SPEC.resolve_bands(cfg.preset)
        for result in raw.produce(keys, root, target=cfg.target):
            if isinstance(result, Skip):
                raise ValueError(f"{result.key}: {result.reason}")
            yield result.key, example(result.values, bands, cfg.target)


def example(values: dict, bands: tuple[str, ...], target: str) -> dict:
    """One record's feature values -> the builder's feature dict.

    Args:
      values: ``spec.record_values``'s dict (bands as raw little-endian bytes; S1 without NaN).
      bands: the config's channels, in order.
      target: the config's target (``spec.SCENE_TARGETS``).

    Returns:
      ``image`` [256, 256, C] (``image_dtype``), ``label`` (multi-hot int64 [C] or class index),
      ``fractions`` float32 [C], ``patch_id``, ``season``, ``scene``, ``patch``, ``epsg``, ``transform``.
    """
    nom, kind = target.split("_")
    return {
        "image": np.stack([np.frombuffer(values[sp.BAND_KEYS[b]][0], np.dtype(sp.SPEC.band(b).dtype).newbyteorder("<"))
                           .reshape(sp.PATCH) for b in bands], axis=-1).astype(image_dtype(bands)),
        "label": (np.asarray(values[f"{nom}/multi_hot"], np.int64) if kind == "multi"
                  else int(values[f"{nom}/index"][0])),
        "fractions": np.asarray(values[f"{nom}/fractions"], np.float32),
        "patch_id": values["patch_id"][0].decode(),
        "season": values["meta/season"][0].decode(),
        "scene": int(values["meta/scene"][0]),
        "patch": int(values["meta/patch"][0]),
        "epsg": int(values["geo/epsg"][0]),
        "transform": np.frombuffer(values["geo/transform"][0], "<f8").astype(np.float64),
    }
