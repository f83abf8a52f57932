"""Sentinel2GlobalLULC v2.1: one package holds the whole dataset.

Modules:

==================  ===========================================================================
``spec``            the 29 classes (IDs 1..29, short names as published), RGB bands, schemas
``raw``             file-name parser, class-folder/CSV reader, tiles -> records
``command``         ``python -m prep lulc`` (subcommands folds, geocode, tojpeg, gee_export, fold_report)
``folds``           the split file and the upstream ``partition<k>/`` links
``synthetic``       generated class-folder trees in the published layout
``tfds_builder``    the TFDS builder ``sentinel2_global_lulc``
==================  ===========================================================================

Folds follow ``splits.sentinel2_global_lulc``. No per-band statistics are published.
Source: Benhammou et al., Sentinel2GlobalLULC, Scientific Data 9, 681 (2022); Zenodo 6941662.
"""
from prep.datasets.contract import Dataset
from prep.datasets.sentinel2_global_lulc.spec import *  # noqa: F403
from prep.datasets.sentinel2_global_lulc.spec import NAME, SPEC

CITATION = """\
@article{benhammou2022sentinel2globallulc,
  title = {Sentinel2GlobalLULC: A Sentinel-2 RGB image tile dataset for global land use/cover mapping with deep
           learning},
  author = {Benhammou, Yassir and Alcaraz-Segura, Domingo and Guirado, Emilio and Khaldi, Rohaifa and
            Achchab, Boujemaa and Herrera, Francisco and Tabik, Siham},
  journal = {Scientific Data},
  volume = {9},
  pages = {681},
  year = {2022}
}
"""

DATASET = Dataset(
    name=NAME,
    cli_name="lulc",
    aliases=("sentinel2globallulc", "Sentinel2GlobalLULC"),
    spec=SPEC,
    title="Sentinel2GlobalLULC v2.1, 29 LULC classes, RGB JPEG tiles (single-label)",
    command="prep.datasets.sentinel2_global_lulc.command",
    synthetic="prep.datasets.sentinel2_global_lulc.synthetic",
    tfds_builder="prep.datasets.sentinel2_global_lulc.tfds_builder:Sentinel2GlobalLulc",
    upstream_stats=None,
    default_model="TL-InceptionV3",
    default_bands="rgb",
    homepage="https://zenodo.org/records/6941662",
    citation=CITATION,
)
