"""TFDS builder ``bigearthnet19``: BigEarthNet-S2 v1.0, 19-class nomenclature, from the raw archive.

Registered when ``prep.tfds`` is imported. It builds from a manual folder holding the extracted
patch folders (``<patch>/<patch>_B01.tif`` ... ``<patch>_labels_metadata.json``), read with the
same reader as the preparation command (``prep.datasets.bigearthnet.raw``) and labelled with the one dataset
definition (``prep.datasets.bigearthnet``): nothing about bands, classes or labels is written
down twice.

Configs: one per band preset of the dataset definition, named ``s2_<preset>``. Presets whose
bands share one size (``rgb``, ``10m``, ``20m``, ``60m``) give a single ``image`` tensor
(H, W, C) in preset order; the others (``all``, ``10m20m``) give one feature per band, named
after the band, at its native size (120, 60 or 20 px). Pixels are the archive's uint16 values,
stored as raw bytes (no int64 widening, no rescaling).

Labels, chosen for both uses: ``labels`` is a ``Sequence(ClassLabel)`` of the 19-class indices
(class names in the metadata, index order of the nomenclature), ``labels_multi_hot`` the same
as a (19,) uint8 multi-hot (the ``as_supervised`` target, ready for a sigmoid loss), and
``labels_43`` the archive's 43-class (CLC Level-3) indices.

Splits: the official train/val/test lists (bigearthnet-common) with the official exclusions
(seasonal snow, cloud/shadow, no 19-class target) left out. ``train.csv``, ``val.csv`` and
``test.csv`` (plain, ``.bz2`` or ``.gz``) in the manual folder replace the official splits (only
the splits with a file are built; one patch name per line, no header; a split left empty is
left out). ``patches_with_seasonal_snow.csv``,
``patches_with_cloud_and_shadow.csv`` and ``patches_with_no_19_class_targets.csv`` in the manual
folder add to the official exclusion lists. The rule is ``raw.choose_lists``, the one the
preparation command applies to its root folder (same folder, same splits). A listed patch whose
folder is missing, or that cannot be read, stops the build with an error naming it (use the CSV
files to build a subset).
"""
from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from prep.datasets.bigearthnet import DATASET, raw
from prep.datasets.bigearthnet import spec as ben
from prep.shards import Exclude, Skip
from splits import bigearthnet as official

if TYPE_CHECKING:
    from prep.shards import Record

MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Download BigEarthNet-S2 v1.0 (BigEarthNet-S2-v1.0.tar.gz, about 66 GB) from https://bigearth.net
and extract it. Pass the folder holding the patch folders (or the folder holding the extracted
BigEarthNet-v1.0/ folder) as the manual folder:
`tfds build bigearthnet19 --imports prep.tfds --manual_dir DIR`, or
`download_config=tfds.download.DownloadConfig(manual_dir=DIR)` in Python.
Optional: train.csv, val.csv, test.csv (one patch name per line) in DIR replace the official
splits, e.g. to build a subset.
"""

CUSTOM_SPLIT_FILES = official.FOLDER_SPLIT_FILES  # also .bz2 / .gz (raw.choose_lists)
# Extra exclusion lists a manual folder may hold, by the official lists' names without ".bz2".
EXTRA_EXCLUSION_FILES = official.FOLDER_EXCLUSION_FILES
ARCHIVE_FOLDER = "BigEarthNet-v1.0"  # the folder the official tarball extracts to


@dataclasses.dataclass
class BigEarthNet19Config(tfds.core.BuilderConfig):
    """A band selection: ``bands`` in delivery order; ``stacked`` gives one (H, W, C) ``image``."""

    bands: tuple[str, ...] = ()
    stacked: bool = False


def _config(preset: str) -> BigEarthNet19Config:
    bands = ben.SPEC.resolve_bands(preset)
    shapes = {ben.SPEC.band(b).shape for b in bands}
    stacked = len(shapes) == 1
    how = (f"one (H, W, {len(bands)}) 'image' tensor" if stacked
           else "one feature per band at native resolution")
    return BigEarthNet19Config(
        name=f"s2_{preset}",
        description=f"Bands {', '.join(bands)} as {how}.",
        bands=bands,
        stacked=stacked,
    )


def _find_root(manual_dir: epath.Path) -> epath.Path:
    """The folder holding the patch folders: the manual folder or its BigEarthNet-v1.0/."""
    if not manual_dir.exists():
        raise FileNotFoundError(f"manual folder {manual_dir}: not found.\n{MANUAL_DOWNLOAD_INSTRUCTIONS}")
    nested = manual_dir / ARCHIVE_FOLDER
    if nested.is_dir() and not any(ben.PATCH_NAME.match(p.name) for p in _first(manual_dir.iterdir(), 1000)):
        return nested
    return manual_dir


def _first(it, n):
    for i, x in enumerate(it):
        if i >= n:
            return
        yield x


def split_lists(manual_dir: epath.Path) -> tuple[dict[str, list[str]], bool]:
    """The patch names per split (``raw.choose_lists``), and whether the manual folder's files were used.

    The manual folder's split files (``train.csv``, ``val.csv``, ``test.csv``, plain, ``.bz2`` or
    ``.gz``), else the official lists; no exclusion applied.

    Raises:
      FileNotFoundError: the official lists are needed and bigearthnet-common is not installed.
    """
    lists = raw.choose_lists(manual_dir, keep_excluded=True)
    return lists.splits, lists.source != "official"


def exclusion_lists(manual_dir: epath.Path) -> dict[str, frozenset[str]]:
    """Reason -> patch names: the official lists, then same-named lists found in the manual folder.

    The rule of ``raw.choose_lists``: ``patches_with_seasonal_snow.csv``,
    ``patches_with_cloud_and_shadow.csv`` and ``patches_with_no_19_class_targets.csv`` (plain,
    ``.bz2`` or ``.gz``) in the manual folder add to the official lists, as ``listed in <file name>``.

    Raises:
      FileNotFoundError: bigearthnet-common (the official lists) is not installed.
    """
    return raw.choose_lists(manual_dir).exclusions


def plan(manual_dir: epath.PathLike) -> tuple[epath.Path, dict[str, list[str]], list[dict]]:
    """(root of the patch folders, patch names per split, excluded entries); raises on problems.

    The lists are ``raw.choose_lists`` of the manual folder, the rule the preparation command
    applies to its root folder, so both give the same splits from one folder. The root is the
    manual folder, or its ``BigEarthNet-v1.0/`` when the manual folder holds that and no patch
    folder. Excluded entries are ``{"split", "key", "reason"}`` dicts.

    Raises:
      FileNotFoundError: no manual folder, listed patches whose folder is missing (how many, one
        example), or official lists needed and bigearthnet-common not installed.
      ValueError: a patch listed more than once.
    """
    manual_dir = epath.Path(manual_dir)
    root = _find_root(manual_dir)
    lists = raw.choose_lists(manual_dir)
    present = {p.name for p in root.iterdir()}
    items, excluded, skipped, missing = raw.plan_splits(lists.splits, lists.exclusions, present)
    if skipped:
        first = skipped[0]
        raise ValueError(f"{manual_dir}: {len(skipped)} patch(es) listed more than once; first: "
                         f"{first['key']}: {first['reason']}")
    if missing:
        problem = raw.missing_problem(raw.SplitPlan(items, excluded, skipped, missing), lists, present)
        raise FileNotFoundError(
            f"{root}: {problem}. Extract the whole archive, or put train.csv / val.csv / test.csv listing "
            "the patches to build into the manual folder.")
    return root, items, excluded


class Bigearthnet19(tfds.core.GeneratorBasedBuilder):
    """BigEarthNet-S2 v1.0 with the 19-class nomenclature, official splits and exclusions."""

    name = "bigearthnet19"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {
        "1.0.0": "Initial release: 19-class multi-label + 43-class labels, official splits without "
                 "snow/cloud/no-target patches, configs per band preset, uint16 bands as raw bytes.",
    }
    BUILDER_CONFIGS = [_config(p) for p in ben.BAND_PRESETS]
    DEFAULT_CONFIG_NAME = "s2_all"
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS

    def _info(self) -> tfds.core.DatasetInfo:
        cfg = self.builder_config
        feats = {}
        if cfg.stacked:
            b0 = ben.SPEC.band(cfg.bands[0])
            feats["image"] = tfds.features.Tensor(
                shape=(*b0.shape, len(cfg.bands)), dtype=np.dtype(b0.dtype), encoding=tfds.features.Encoding.BYTES,
                doc=f"Channels {', '.join(cfg.bands)} (L2A reflectance x 10000) at {b0.resolution_m:g} m.")
            inputs = "image"
        else:
            for name in cfg.bands:
                b = ben.SPEC.band(name)
                feats[name] = tfds.features.Tensor(
                    shape=b.shape, dtype=np.dtype(b.dtype), encoding=tfds.features.Encoding.BYTES,
                    doc=f"{name} (L2A reflectance x 10000) at {b.resolution_m:g} m.")
            inputs = {name: name for name in cfg.bands}
        feats["labels"] = tfds.features.Sequence(
            tfds.features.ClassLabel(names=list(ben.LABELS_19)),
            doc="19-class indices (BigEarthNet-19 nomenclature, index order).")
        feats["labels_multi_hot"] = tfds.features.Tensor(
            shape=(ben.SPEC.num_classes,), dtype=np.uint8, doc="19-class multi-hot, same order as 'labels'.")
        feats["labels_43"] = tfds.features.Sequence(
            tfds.features.ClassLabel(names=list(ben.LABELS_43)),
            doc="43-class (CLC Level-3) indices as in the archive's JSON.")
        feats["patch_name"] = tfds.features.Text(doc="Patch name, e.g. S2A_MSIL2A_20170717T113321_28_89.")
        feats["acquisition_date"] = tfds.features.Text(doc="Acquisition time, 'YYYY-MM-DD HH:MM:SS'.")
        feats["tile_source"] = tfds.features.Text(doc="Sentinel-2 product the patch was cut from.")
        feats["coordinates"] = tfds.features.Tensor(
            shape=(4,), dtype=np.int64, doc="ulx, uly, lrx, lry in the patch CRS (metres).")
        feats["epsg"] = tfds.features.Scalar(dtype=np.int64, doc="EPSG code of the patch CRS (0 if unknown).")
        return self.dataset_info_from_configs(
            description=ben.SPEC.description + " Official splits without seasonal-snow, cloud/shadow "
                        "and no-19-class-target patches; 43-class labels kept as a second feature.",
            features=tfds.features.FeaturesDict(feats),
            supervised_keys=(inputs, "labels_multi_hot"),
            homepage=DATASET.homepage,
            citation=DATASET.citation,
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        root, items, _ = plan(dl_manager.manual_dir)
        for split in [s for s, names in items.items() if not names]:
            logging.warning("bigearthnet19: split %r lists no patch to build; it is left out", split)
            del items[split]
        return {split: self._generate_examples(root, names) for split, names in items.items()}

    def _generate_examples(self, root, names):
        cfg = self.builder_config
        for result in raw.produce(names, str(root), "compact"):
            if isinstance(result, Skip):
                raise ValueError(f"{root}: patch {result.key}: {result.reason}")
            if isinstance(result, Exclude):
                continue
            yield result.key, example(result, cfg)


def example(record: Record, cfg: BigEarthNet19Config) -> dict:
    """A ``prep.shards.Record`` (compact schema) -> the builder's feature dict.

    Bands as uint16 arrays at native size (raw L2A digital numbers, BOA reflectance x 10000): one
    (H, W, C) ``image`` in preset order when ``cfg.stacked``, else one (H, W) feature per band.
    Labels: ``labels`` (19-class indices), ``labels_multi_hot`` ((19,) uint8), ``labels_43``
    (43-class CLC Level-3 indices); metadata: ``patch_name``, ``acquisition_date``, ``tile_source``,
    ``coordinates`` ((4,) int64: ulx, uly, lrx, lry in metres) and ``epsg``.
    """
    v = record.values
    ex = {}
    if cfg.stacked:
        ex["image"] = np.stack([record.bands[b] for b in cfg.bands], axis=-1)
    else:
        ex.update({b: record.bands[b] for b in cfg.bands})
    ex["labels"] = list(record.labels)
    ex["labels_multi_hot"] = np.asarray(v["labels19/multi_hot"], np.uint8)
    ex["labels_43"] = list(v["labels43/index"])
    ex["patch_name"] = record.key
    ex["acquisition_date"] = v["meta/acquisition_date"][0].decode()
    ex["tile_source"] = v["meta/tile_source"][0].decode()
    ex["coordinates"] = np.asarray(v["meta/coordinates"], np.int64)
    ex["epsg"] = int(v["meta/epsg"][0])
    return ex
