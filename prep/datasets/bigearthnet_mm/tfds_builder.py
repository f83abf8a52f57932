"""TFDS builder ``bigearthnet_mm_19``: BigEarthNet-MM v1.0 (S1 + S2 pairs), 19 classes, from the raw archives.

The manual folder holds ``BigEarthNet-v1.0/`` (S2 patch folders) and ``BigEarthNet-S1-v1.0/`` (S1
patch folders), as the official tarballs extract. Splits, exclusions and pairing are the
preparation command's rule (``prep.datasets.bigearthnet_mm.command.plan``, read from the two
folders). One config, ``mm``: each band a feature at native size (S2 uint16 B01 ... B12, S1
float32 VV, VH in dB), labels as the BigEarthNet-S2 builder gives them.
"""
from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from prep.datasets.bigearthnet import spec as ben
from prep.datasets.bigearthnet_mm import DATASET, raw
from prep.datasets.bigearthnet_mm import spec as mmspec
from prep.datasets.bigearthnet_s1 import synthetic as layout
from prep.datasets.bigearthnet_s1.tfds_builder import s1_band
from prep.shards import Exclude, Skip

MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Download BigEarthNet-S2 v1.0 and BigEarthNet-S1 v1.0 from https://bigearth.net and extract both
into one folder (it then holds BigEarthNet-v1.0/ and BigEarthNet-S1-v1.0/); pass it as the manual
folder: `tfds build bigearthnet_mm_19 --imports prep.tfds --manual_dir DIR`.
"""


def plan(manual_dir: epath.PathLike) -> tuple[str, str, dict[str, list[tuple[str, str]]]]:
    """(S1 root, S2 root, (S1, S2) pairs per split) of a manual folder, by the command's rule.

    Raises:
      FileNotFoundError: a missing folder, or listed pairs without a patch folder.
      ValueError: a patch listed twice or not in the pairing table.
    """
    from prep.datasets.bigearthnet_mm import command

    s1_root, s2_root = (str(epath.Path(manual_dir) / f) for f in (layout.S1_FOLDER, layout.S2_FOLDER))
    for root in (s1_root, s2_root):
        if not epath.Path(root).is_dir():
            raise FileNotFoundError(f"{root}: not found.\n{MANUAL_DOWNLOAD_INSTRUCTIONS}")
    p = command.plan(s1_root, s2_root, on_error="skip")
    if p.skipped or p.missing:
        first = (list(p.skipped) + list(p.missing))[0]
        raise ValueError(f"{manual_dir}: {len(p.skipped)} listed pair(s) cannot be built and {len(p.missing)} "
                         f"have no folder; first: {first['key']} {first.get('reason', '')}")
    return s1_root, s2_root, {s: list(v) for s, v in p.items.items() if v}


class BigearthnetMM19(tfds.core.GeneratorBasedBuilder):
    """BigEarthNet-MM v1.0: S2 bands and the S1 twin's VV, VH, 19-class labels, official splits and exclusions."""

    name = "bigearthnet_mm_19"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release: 12 S2 bands (uint16) + VV, VH (float32 dB) at native size."}
    BUILDER_CONFIGS = [tfds.core.BuilderConfig(name="mm", description="All 14 bands, one feature each.")]
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS

    def _info(self) -> tfds.core.DatasetInfo:
        feats = {b.name: tfds.features.Tensor(shape=b.shape, dtype=np.dtype(b.dtype),
                                              encoding=tfds.features.Encoding.BYTES,
                                              doc=f"{b.name} at {b.resolution_m:g} m")
                 for b in mmspec.BANDS}
        feats["labels"] = tfds.features.Sequence(tfds.features.ClassLabel(names=list(ben.LABELS_19)))
        feats["labels_multi_hot"] = tfds.features.Tensor(shape=(len(ben.LABELS_19),), dtype=np.uint8)
        feats["patch_name_s1"] = tfds.features.Text()
        feats["patch_name_s2"] = tfds.features.Text()
        return self.dataset_info_from_configs(
            description=mmspec.SPEC.description, features=tfds.features.FeaturesDict(feats),
            supervised_keys=({b: b for b in mmspec.BAND_NAMES}, "labels_multi_hot"),
            homepage=DATASET.homepage, citation=DATASET.citation)

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        s1_root, s2_root, items = plan(dl_manager.manual_dir)
        return {split: self._generate_examples(s1_root, s2_root, pairs) for split, pairs in items.items()}

    def _generate_examples(self, s1_root, s2_root, pairs):
        for result in raw.produce(pairs, s1_root, s2_root, "compact"):
            if isinstance(result, Skip):
                raise ValueError(f"{s2_root}: pair {result.key}: {result.reason}")
            if isinstance(result, Exclude):
                continue
            v = result.values
            ex = {b: result.bands[b] if b in result.bands else s1_band(v, b) for b in mmspec.BAND_NAMES}
            ex["labels"] = list(result.labels)
            ex["labels_multi_hot"] = np.asarray(v["labels19/multi_hot"], np.uint8)
            ex["patch_name_s1"] = v["patch_name_s1"][0].decode()
            ex["patch_name_s2"] = result.key
            yield result.key, ex
