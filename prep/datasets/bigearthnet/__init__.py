"""BigEarthNet-S2 v1.0 with the 19-class nomenclature: one package holds the whole dataset.

Modules:

==================  ===========================================================================
``spec``            bands, the 43 CLC classes and the official 43 -> 19 table, record schemas
``band_stats``      the published per-band mean / std (``normalize="upstream"``)
``raw``             the raw reader: patch folders of 12 GeoTIFFs + JSON -> records
``remote``          the reader for patch folders on a Beam filesystem (gs://, s3://)
``command``         ``python -m prep bigearthnet`` (= ``python -m prep.bigearthnet``)
``synthetic``       synthetic archives in the real format; the six real example patches
``tfds_builder``    the TFDS builder ``bigearthnet19``
==================  ===========================================================================

The official split and exclusion lists are read by ``splits.bigearthnet``.
Source: Sumbul et al., BigEarthNet (IGARSS 2019) and BigEarthNet-MM (GRSM 2021); https://bigearth.net.
"""
from prep.datasets.bigearthnet import band_stats
from prep.datasets.bigearthnet.spec import *  # noqa: F403  (the definition, as prep.datasets.bigearthnet.X)
from prep.datasets.bigearthnet.spec import BAND_PRESETS, NAME, SPEC
from prep.datasets.contract import Dataset

CITATION = """\
@inproceedings{sumbul2019bigearthnet,
  title = {BigEarthNet: A Large-Scale Benchmark Archive for Remote Sensing Image Understanding},
  author = {Sumbul, Gencer and Charfuelan, Marcela and Demir, Beg{\\"u}m and Markl, Volker},
  booktitle = {IEEE International Geoscience and Remote Sensing Symposium (IGARSS)},
  pages = {5901--5904},
  year = {2019}
}
@article{sumbul2021bigearthnet19,
  title = {BigEarthNet-MM: A Large-Scale, Multimodal, Multilabel Benchmark Archive for Remote Sensing
           Image Classification and Retrieval},
  author = {Sumbul, Gencer and de Wall, Arne and Kreuziger, Tristan and Marcelino, Filipe and Costa, Hugo
            and Benevides, Pedro and Caetano, M{\\'a}rio and Demir, Beg{\\"u}m and Markl, Volker},
  journal = {IEEE Geoscience and Remote Sensing Magazine},
  volume = {9},
  number = {3},
  pages = {174--180},
  year = {2021}
}
"""

DATASET = Dataset(
    name=NAME,
    cli_name="bigearthnet",
    aliases=("bigearthnet-s2", "BigEarthNet-S2"),
    spec=SPEC,
    title="BigEarthNet-S2 v1.0, 19 classes (multi-label)",
    command="prep.datasets.bigearthnet.command",
    synthetic="prep.datasets.bigearthnet.synthetic",
    tfds_builder="prep.datasets.bigearthnet.tfds_builder:Bigearthnet19",
    upstream_stats=band_stats.S2,
    default_model="K-BranchCNN",
    default_bands="10m20m",  # VGG/ResNet/DenseNet: B04 B03 B02 B08 + upsampled 20 m bands, as upstream
    homepage="https://bigearth.net",
    citation=CITATION,
)
assert set(DATASET.default_bands.split("+")) <= set(BAND_PRESETS)
