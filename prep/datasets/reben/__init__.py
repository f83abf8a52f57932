"""BigEarthNet v2 (reBEN): one package holds the whole dataset.

Modules:

==================  ===========================================================================
``spec``            bands (BigEarthNet-S2's 12 + S1 VV, VH), the 19 classes in nomenclature or
                    alphabetical order, the CLC code -> 19-class table, record schemas
``raw``             the raw reader: metadata parquet files, band GeoTIFFs, reference maps -> records
``command``         ``python -m prep reben``
``synthetic``       synthetic archives in the published layout
``tfds_builder``    the TFDS builder ``reben``
==================  ===========================================================================

Splits: the parquet's ``split`` column (``splits.reben``). The S2 band table and the 19-class
nomenclature are imported from ``prep.datasets.bigearthnet``. Published figures (test split):
ResNet50 S1+S2 AP macro/micro 0.703/0.861, F1 macro/micro 0.644/0.767.
Source: Clasen et al., reBEN (2024); https://bigearth.net.
"""
from prep.datasets.contract import Dataset
from prep.datasets.reben.spec import *  # noqa: F403  (the definition, as prep.datasets.reben.X)
from prep.datasets.reben.spec import NAME, SPEC

CITATION = """\
@article{clasen2024reben,
  title = {reBEN: Refined BigEarthNet Dataset for Remote Sensing Image Analysis},
  author = {Clasen, Kai Norman and Hackel, Leonard and Burgert, Tom and Sumbul, Gencer and Demir, Beg{\\"u}m
            and Markl, Volker},
  journal = {arXiv preprint arXiv:2407.03653},
  year = {2024}
}
"""

DATASET = Dataset(
    name=NAME,
    cli_name="reben",
    aliases=("bigearthnet-v2", "BigEarthNet-v2", "bigearthnet2"),
    spec=SPEC,
    title="BigEarthNet v2 (reBEN), Sentinel-1/2, 19 classes (multi-label) + CLC reference maps",
    command="prep.datasets.reben.command",
    synthetic="prep.datasets.reben.synthetic",
    tfds_builder="prep.datasets.reben.tfds_builder:Reben",
    upstream_stats=None,  # reBEN's reference code computes its own; none are stored here: use the train split's
    default_model="K-BranchCNN",
    default_bands="10m20m",
    homepage="https://bigearth.net",
    citation=CITATION,
)
