"""TFDS builder ``so2sat_lcz42``: So2Sat LCZ42 versions 2 and 3 from the published HDF5 files.

Registered when ``prep.tfds`` is imported. Rows are read with the converter's reader
(``prep.datasets.so2sat.raw``: streaming in chunks, one-hot and layout checks, geolocation) and described by
the one dataset definition (``prep.datasets.so2sat``); pixels are float32 as in the project's
records (the float64 files cast once; see prep.so2sat for what the cast keeps).

Configs ``<release>_<preset>``: release ``v2`` (training/validation/testing.h5, the culture-10
split) or a version-3 scenario ``v3_random``, ``v3_block``, ``v3_culture_10`` (a
training/testing.h5 pair each); preset ``all`` (8 Sentinel-1 channels then 10 Sentinel-2
bands), ``sen1``, ``sen2`` or ``rgb`` (B04, B03, B02), delivered as one (32, 32, C) ``image``.

Manual folder: version 2 files at its top level (``training.h5``, ``validation.h5``,
``testing.h5``), version 3 in one sub-folder per scenario (``random/training.h5``,
``random/testing.h5``, ``block/...``, ``culture_10/...``), each with its optional
``<stem>_geo.h5`` beside it. Splits: ``train``, ``val`` (v2 only), ``test``. The 50 GB
training file is read in chunks, never whole.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Sequence

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from prep.datasets.so2sat import DATASET, raw
from prep.datasets.so2sat import spec as s2s
from prep.shards import Skip

MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Download So2Sat LCZ42 from its mediaTUM record (https://mediatum.ub.tum.de/1613658 for version 3,
https://mediatum.ub.tum.de/1454690 for version 2). Put the version-2 files training.h5,
validation.h5 and testing.h5 at the top of the manual folder, and each version-3 scenario's
training.h5 / testing.h5 in a sub-folder named after it (random/, block/, culture_10/).
*_geo.h5 files beside them are read when present.
"""

# release -> (sub-folder of the manual folder, file stem -> split)
RELEASES = {
    "v2": ("", {"training": "train", "validation": "val", "testing": "test"}),
    **{f"v3_{s}": (s, {"training": "train", "testing": "test"}) for s in s2s.SCENARIOS_V3},
}
READ_ROWS = raw.DEFAULT_READ_ROWS


@dataclasses.dataclass
class So2SatConfig(tfds.core.BuilderConfig):
    """One release (v2 or a v3 scenario) and one band preset."""

    release: str = "v2"
    bands: tuple[str, ...] = ()


def _config(release: str, preset: str) -> So2SatConfig:
    bands = s2s.SPEC.resolve_bands(preset)
    folder, files = RELEASES[release]
    where = f"{folder}/" if folder else ""
    return So2SatConfig(
        name=f"{release}_{preset}",
        description=(f"{'Version 2' if release == 'v2' else 'Version 3, ' + folder + ' split'} "
                     f"({', '.join(where + f + '.h5' for f in files)}); channels {', '.join(bands)}."),
        release=release,
        bands=bands,
    )


def release_files(manual_dir: str | os.PathLike, release: str) -> dict[str, str]:
    """Maps each split of a release to its HDF5 file in the TFDS manual folder.

    Args:
        manual_dir: the manual download folder (``tfds`` ``--manual_dir``).
        release: "v2" (training/validation/testing.h5) or a v3 scenario release (its folder's
            training/testing.h5); the keys of ``RELEASES``.

    Returns:
        ``{split: path}``.

    Raises:
        FileNotFoundError: files of the release are missing; the message names them and says how to
            download them.
        KeyError: unknown release.
    """
    manual_dir = epath.Path(manual_dir)
    folder, files = RELEASES[release]
    base = manual_dir / folder if folder else manual_dir
    out, missing = {}, []
    for stem, split in files.items():
        p = base / f"{stem}.h5"
        if p.exists():
            out[split] = str(p)
        else:
            missing.append(str(p))
    if missing:
        raise FileNotFoundError(f"so2sat_lcz42/{release}: missing {', '.join(missing)}.\n"
                                f"{MANUAL_DOWNLOAD_INSTRUCTIONS}")
    return out


class So2satLcz42(tfds.core.GeneratorBasedBuilder):
    """So2Sat LCZ42 (17 Local Climate Zones, single label), versions 2 and 3."""

    name = "so2sat_lcz42"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {
        "1.0.0": "Initial release: v2 and the three v3 scenarios, presets all/sen1/sen2/rgb as one float32 "
                 "(32, 32, C) image, LCZ class label, patch id and geolocation.",
    }
    BUILDER_CONFIGS = [_config(r, p) for r in RELEASES for p in s2s.BAND_PRESETS]
    DEFAULT_CONFIG_NAME = "v2_all"
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS

    def _info(self) -> tfds.core.DatasetInfo:
        cfg = self.builder_config
        b0 = s2s.SPEC.band(cfg.bands[0])
        feats = {
            "image": tfds.features.Tensor(
                shape=(*b0.shape, len(cfg.bands)), dtype=np.dtype(b0.dtype), encoding=tfds.features.Encoding.BYTES,
                doc=f"Channels {', '.join(cfg.bands)} at {b0.resolution_m:g} m (Sentinel-2: reflectance, DN/10000)."),
            "label": tfds.features.ClassLabel(names=list(s2s.CLASS_NAMES), doc="Local Climate Zone 1..10, A..G."),
            "patch_id": tfds.features.Text(doc="Source file and row, e.g. 'training.h5:123'."),
            "city": tfds.features.Text(doc="City name when the geolocation file gives it, else empty."),
            "epsg": tfds.features.Scalar(dtype=np.int64, doc="UTM zone EPSG code; 0 without geolocation."),
            "transform": tfds.features.Tensor(
                shape=(6,), dtype=np.float64, encoding=tfds.features.Encoding.BYTES,  # no float32 rounding
                doc="Affine a, b, c, d, e, f of the patch ((c, f) = upper-left corner); zeros without geolocation."),
        }
        return self.dataset_info_from_configs(
            description=s2s.SPEC.description,
            features=tfds.features.FeaturesDict(feats),
            supervised_keys=("image", "label"),
            homepage=DATASET.homepage,
            citation=DATASET.citation,
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        files = release_files(dl_manager.manual_dir, self.builder_config.release)
        return {split: self._generate_examples(path) for split, path in files.items()}

    def _generate_examples(self, path):
        (source,) = raw.plan_sources([path], split_names=["rows"])
        items = [(0, r) for r in range(source.rows)]
        for result in raw.produce(items, (source,), dtype=s2s.SPEC.bands[0].dtype, read_rows=READ_ROWS):
            if isinstance(result, Skip):
                raise ValueError(f"{path}: {result.key}: {result.reason}")
            yield result.key, example(result.values, self.builder_config.bands)


def example(values: dict, bands: Sequence[str]) -> dict:
    """Converts the feature values of a compact-schema record to the builder's feature dict.

    Args:
        values: ``{feature key: list of values}`` as ``raw.produce(..., encode=False)`` yields them.
        bands: the config's channels, in order (e.g. the sen2 preset B02 B03 B04 B05 B06 B07 B08 B8A B11 B12).

    Returns:
        ``image`` ``[32, 32, len(bands)]`` in the spec's band dtype (float32; Sentinel-2 channels are
        reflectance = DN / 10000), ``label`` (LCZ index 0..16), ``patch_id``,
        ``city``, ``epsg`` (0 without geolocation) and ``transform`` (6 float64, zeros without).
    """
    dtype = np.dtype(s2s.SPEC.band(bands[0]).dtype).newbyteorder("<")
    image = np.stack([np.frombuffer(values[s2s.BAND_KEYS[b]][0], dtype).reshape(s2s.PATCH) for b in bands], axis=-1)
    transform = bytes(values["geo/transform"][0])
    return {
        "image": image.astype(dtype.newbyteorder("=")),
        "label": int(values["label/index"][0]),
        "patch_id": values["patch_id"][0].decode(),
        "city": bytes(values["geo/city"][0]).decode(),
        "epsg": int(values["geo/epsg"][0]),
        "transform": np.frombuffer(transform, "<f8").astype(np.float64) if transform else np.zeros(6),
    }
