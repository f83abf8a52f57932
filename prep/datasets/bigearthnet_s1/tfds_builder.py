"""TFDS builder ``bigearthnet_s1_19``: BigEarthNet-S1 v1.0, 19-class nomenclature, from the raw archive.

The manual folder holds the extracted S1 patch folders (``<patch>/<patch>_VV.tif``, ``_VH.tif``,
``<patch>_labels_metadata.json``), read with the preparation command's reader
(``prep.datasets.bigearthnet_s1.raw``). Splits and exclusions are the command's rule: the split
files in the manual folder (train.csv, val.csv, test.csv, naming S2 or S1 patches) else the
official BigEarthNet-S2 splits, each patch paired through the pairing table in the manual folder
(``s1_s2_name_country_season.csv``) else the bigearthnet-common wheel's, and left out when its
S2 twin is on an exclusion list. One config, ``s1``: ``image`` (120, 120, 2) float32 VV, VH in dB.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from prep.datasets.bigearthnet import raw as s2raw
from prep.datasets.bigearthnet import spec as ben
from prep.datasets.bigearthnet_s1 import DATASET, raw
from prep.datasets.bigearthnet_s1 import spec as s1spec
from prep.shards import Exclude, Skip

MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Download BigEarthNet-S1 v1.0 (BigEarthNet-S1-v1.0.tar.gz) from https://bigearth.net and extract it;
pass the folder holding the S1 patch folders as the manual folder:
`tfds build bigearthnet_s1_19 --imports prep.tfds --manual_dir DIR`. Optional: train.csv, val.csv,
test.csv in DIR replace the official splits; s1_s2_name_country_season.csv in DIR replaces the
bigearthnet-common pairing table.
"""


@dataclasses.dataclass
class BigEarthNetS1Config(tfds.core.BuilderConfig):
    """A band selection delivered as one (120, 120, C) ``image``."""

    bands: tuple[str, ...] = ()


def plan(manual_dir: epath.PathLike) -> tuple[str, dict[str, list[tuple[str, str]]]]:
    """(S1 root, (S1, S2) pairs per split) of a manual folder; raises on missing or doubly listed patches.

    Raises:
      FileNotFoundError: no manual folder, or listed patches without a folder.
      ValueError: a patch listed twice or not in the pairing table.
    """
    root = str(manual_dir)
    if not epath.Path(root).is_dir():
        raise FileNotFoundError(f"manual folder {root}: not found.\n{MANUAL_DOWNLOAD_INSTRUCTIONS}")
    lists = s2raw.choose_lists(root)
    pp = raw.plan_pairs(lists.splits, lists.exclusions, raw.choose_pairing(root, None), key="s1",
                        present_s1=s2raw.patch_folders(root))
    if pp.skipped:
        raise ValueError(f"{root}: {len(pp.skipped)} listed patch(es) cannot be built; first: "
                         f"{pp.skipped[0]['key']}: {pp.skipped[0]['reason']}")
    if pp.missing:
        raise FileNotFoundError(f"{root}: {raw.missing_problem(pp, lists.describe())}")
    return root, {s: v for s, v in pp.items.items() if v}


def s1_band(values: dict, band: str) -> np.ndarray:
    """One S1 band (``VV`` or ``VH``) of a compact record's feature values as a (120, 120) float32 array (dB).

    The records carry VV and VH as ``band_states`` for the statistics, not as ``Record.bands``.
    """
    return np.frombuffer(values[f"bands/{band}"][0], "<f4").reshape(120, 120)


class BigearthnetS1_19(tfds.core.GeneratorBasedBuilder):
    """BigEarthNet-S1 v1.0 with the 19-class nomenclature, official splits and exclusions (via the S2 twins)."""

    name = "bigearthnet_s1_19"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release: VV, VH float32 dB; 19-class multi-hot and 43-class labels."}
    BUILDER_CONFIGS = [BigEarthNetS1Config(name="s1", description="VV, VH (dB) as one (120, 120, 2) image.",
                                           bands=s1spec.BAND_NAMES)]
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS

    def _info(self) -> tfds.core.DatasetInfo:
        feats = {
            "image": tfds.features.Tensor(shape=(120, 120, len(self.builder_config.bands)), dtype=np.float32,
                                          encoding=tfds.features.Encoding.BYTES,
                                          doc=f"Channels {', '.join(self.builder_config.bands)}: backscatter in dB."),
            "labels": tfds.features.Sequence(tfds.features.ClassLabel(names=list(ben.LABELS_19)),
                                             doc="19-class indices (BigEarthNet-19 nomenclature, index order)."),
            "labels_multi_hot": tfds.features.Tensor(shape=(len(ben.LABELS_19),), dtype=np.uint8,
                                                     doc="19-class multi-hot, same order as 'labels'."),
            "labels_43": tfds.features.Sequence(tfds.features.ClassLabel(names=list(ben.LABELS_43)),
                                                doc="43-class (CLC Level-3) indices as in the JSON."),
            "patch_name": tfds.features.Text(doc="S1 patch name."),
            "patch_name_s2": tfds.features.Text(doc="The S2 twin's patch name."),
            "acquisition_date": tfds.features.Text(doc="'YYYY-MM-DD HH:MM:SS' (the JSON's acquisition_time)."),
            "coordinates": tfds.features.Tensor(shape=(4,), dtype=np.int64, doc="ulx, uly, lrx, lry (metres)."),
        }
        return self.dataset_info_from_configs(
            description=s1spec.SPEC.description, features=tfds.features.FeaturesDict(feats),
            supervised_keys=("image", "labels_multi_hot"), homepage=DATASET.homepage, citation=DATASET.citation)

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        root, items = plan(dl_manager.manual_dir)
        return {split: self._generate_examples(root, pairs) for split, pairs in items.items()}

    def _generate_examples(self, root, pairs):
        for result in raw.produce(pairs, root, "compact"):
            if isinstance(result, Skip):
                raise ValueError(f"{root}: patch {result.key}: {result.reason}")
            if isinstance(result, Exclude):
                continue
            v = result.values
            yield result.key, {
                "image": np.stack([s1_band(v, b) for b in self.builder_config.bands], axis=-1),
                "labels": list(result.labels),
                "labels_multi_hot": np.asarray(v["labels19/multi_hot"], np.uint8),
                "labels_43": list(v["labels43/index"]),
                "patch_name": result.key,
                "patch_name_s2": v["patch_name_s2"][0].decode(),
                "acquisition_date": v["meta/acquisition_date"][0].decode(),
                "coordinates": np.asarray(v["meta/coordinates"], np.int64),
            }
