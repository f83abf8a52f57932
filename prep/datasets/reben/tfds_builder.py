"""TFDS builder ``reben``: BigEarthNet v2 (reBEN) from the published folder layout.

Registered when ``prep.tfds`` is imported. It builds from a manual folder holding
``metadata.parquet`` (and ``metadata_for_patches_with_snow_cloud_or_shadow.parquet``),
``BigEarthNet-S2/`` and, as the config asks, ``BigEarthNet-S1/`` and ``Reference_Maps/``, read with
the preparation's reader (``prep.datasets.reben.raw``) and planned by the same rule: splits from the
parquet's ``split`` column (train, validation, test), the snow/cloud/shadow patches left out.

Configs, named like the record schemas: ``s2`` (the 12 S2 bands, one feature per band at native
size, uint16), ``s1s2`` (+ ``VV``, ``VH`` float32 dB), ``s2_refmap`` and ``s1s2_refmap`` (+
``reference_map``: (120, 120) uint8 19-class indices, 255 = ignore). Labels in the nomenclature's
order: ``labels`` (a ``Sequence(ClassLabel)``) and ``labels_multi_hot`` ((19,) uint8, the
supervised target). Metadata: ``patch_id``, ``s1_name``, ``country``.
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np
import tensorflow_datasets as tfds

from prep.datasets.reben import DATASET, raw
from prep.datasets.reben import spec as sp
from prep.shards import Record, Skip

MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Download BigEarthNet v2 from https://bigearth.net (BigEarthNet-S2.tar.zst, and as needed
BigEarthNet-S1.tar.zst and Reference_Maps.tar.zst, plus metadata.parquet and
metadata_for_patches_with_snow_cloud_or_shadow.parquet) and extract them into the manual folder,
which then holds metadata.parquet, BigEarthNet-S2/ (BigEarthNet-S1/, Reference_Maps/).
"""
SPLIT_NAMES = {"train": "train", "val": "validation", "test": "test"}


@dataclasses.dataclass
class RebenConfig(tfds.core.BuilderConfig):
    """Whether the examples hold S1 and the reference map."""

    with_s1: bool = False
    reference_maps: bool = False


def _config(with_s1: bool, reference_maps: bool) -> RebenConfig:
    name = sp.schema_name(with_s1, reference_maps)
    what = "S2 12 bands" + (" + S1 VV, VH" if with_s1 else "") + (" + reference map" if reference_maps else "")
    return RebenConfig(name=name, with_s1=with_s1, reference_maps=reference_maps, description=what)


class Reben(tfds.core.GeneratorBasedBuilder):
    """BigEarthNet v2 (reBEN): Sentinel-2 (and -1) patches, 19-class multi-label, CLC reference maps."""

    name = sp.NAME
    VERSION = tfds.core.Version(sp.VERSION)
    RELEASE_NOTES = {"2.0.0": "Initial release: the v2 layout and metadata parquet, splits from its split column."}
    BUILDER_CONFIGS = [_config(s1, ref) for s1 in (False, True) for ref in (False, True)]
    DEFAULT_CONFIG_NAME = "s2"
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS

    def _info(self) -> tfds.core.DatasetInfo:
        cfg = self.builder_config
        bands = sp.BANDS if cfg.with_s1 else sp.S2_BANDS
        feats = {b.name: tfds.features.Tensor(shape=b.shape, dtype=np.dtype(b.dtype),
                                              encoding=tfds.features.Encoding.BYTES,
                                              doc=f"{b.name} at {b.resolution_m:g} m")
                 for b in bands}
        feats["labels"] = tfds.features.Sequence(tfds.features.ClassLabel(names=list(sp.LABELS_19)),
                                                 doc="19-class indices, nomenclature order.")
        feats["labels_multi_hot"] = tfds.features.Tensor(shape=(len(sp.LABELS_19),), dtype=np.uint8,
                                                         doc="19-class multi-hot, same order as 'labels'.")
        if cfg.reference_maps:
            feats["reference_map"] = tfds.features.Tensor(shape=sp.PATCH, dtype=np.uint8,
                                                          encoding=tfds.features.Encoding.BYTES,
                                                          doc=f"19-class index per pixel, {sp.IGNORE} = ignore.")
        feats["patch_id"] = tfds.features.Text()
        feats["s1_name"] = tfds.features.Text()
        feats["country"] = tfds.features.Text()
        return self.dataset_info_from_configs(
            description=sp.SPEC.description, features=tfds.features.FeaturesDict(feats),
            supervised_keys=({b.name: b.name for b in bands}, "labels_multi_hot"),
            homepage=DATASET.homepage, citation=DATASET.citation)

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        root = os.fspath(dl_manager.manual_dir)
        snow_cloud = os.path.join(root, raw.SNOW_CLOUD_METADATA)
        paths = [os.path.join(root, raw.METADATA)] + ([snow_cloud] if os.path.isfile(snow_cloud) else [])
        sources = [(os.path.basename(p), raw.read_metadata(p), i > 0) for i, p in enumerate(paths)]
        plan = raw.plan_patches(sources)
        if plan.skipped:
            e = plan.skipped[0]
            raise ValueError(f"{root}: {e['key']}: {e['reason']}")
        return {SPLIT_NAMES[s]: self._generate_examples(root, items) for s, items in plan.items.items() if items}

    def _generate_examples(self, root, items):
        cfg = self.builder_config
        schema = sp.schema_name(cfg.with_s1, cfg.reference_maps)
        for result in raw.produce(items, root, schema, with_s1=cfg.with_s1, reference_maps=cfg.reference_maps):
            if isinstance(result, Skip):
                raise ValueError(f"{root}: patch {result.key}: {result.reason}")
            yield result.key, example(result, cfg.reference_maps)


def example(record: Record, reference_maps: bool) -> dict:
    """A ``prep.shards.Record`` (nomenclature order) -> the builder's feature dict.

    Bands at native size in their dtypes (S2 uint16 DN, S1 float32 dB), ``labels`` (indices),
    ``labels_multi_hot`` ((19,) uint8), ``reference_map`` ((120, 120) uint8) when asked,
    ``patch_id``, ``s1_name``, ``country``.
    """
    v = record.values
    ex = {b: np.frombuffer(v[key][0], np.dtype(sp.SPEC.band(b).dtype).newbyteorder("<")).reshape(sp.SPEC.band(b).shape)
          for b, key in sp.BAND_KEYS.items() if key in v}
    ex["labels"] = list(record.labels)
    ex["labels_multi_hot"] = np.asarray(v["labels19/multi_hot"], np.uint8)
    if reference_maps:
        ex["reference_map"] = np.frombuffer(v[sp.REFERENCE_MAP_KEY][0], np.uint8).reshape(sp.PATCH)
    ex["patch_id"] = record.key
    ex["s1_name"] = v["meta/s1_name"][0].decode()
    ex["country"] = v["meta/country"][0].decode()
    return ex
