"""EuroSAT (multispectral): one package holds the whole dataset.

Modules:

==================  ===========================================================================
``spec``            the 13 bands in stored order (B8A last), the 10 classes and their published
                    counts, the record schema
``raw``             the raw reader: class folders of 13-band GeoTIFFs -> records (band count,
                    shape, dtype checks; CRS and transform)
``command``         ``python -m prep eurosat``
``synthetic``       generated class-folder archives (and split files) in the real layout
``tfds_builder``    the TFDS builder ``eurosat_ms``
==================  ===========================================================================

Split rules: ``splits.eurosat`` (the common split files, or a seeded stratified split). No per-band
statistics are published with the dataset, so ``normalize="upstream"`` is refused: use ``manifest``
(the train split's statistics). Source: Helber et al., EuroSAT (IEEE JSTARS 2019);
https://github.com/phelber/EuroSAT.
"""
from prep.datasets.contract import Dataset, ModelInput
from prep.datasets.eurosat.spec import *  # noqa: F403  (the definition, as prep.datasets.eurosat.X)
from prep.datasets.eurosat.spec import NAME, SPEC

CITATION = """\
@article{helber2019eurosat,
  title = {EuroSAT: A Novel Dataset and Deep Learning Benchmark for Land Use and Land Cover Classification},
  author = {Helber, Patrick and Bischke, Benjamin and Dengel, Andreas and Borth, Damian},
  journal = {IEEE Journal of Selected Topics in Applied Earth Observations and Remote Sensing},
  volume = {12},
  number = {7},
  pages = {2217--2226},
  year = {2019}
}
"""

_ALL = ModelInput("all")  # the 13 bands in stored order

DATASET = Dataset(
    name=NAME,
    cli_name="eurosat",
    aliases=("EuroSAT", "eurosat-ms", "EuroSAT_MS"),
    spec=SPEC,
    title="EuroSAT (multispectral), 13 Sentinel-2 bands, 10 land-use/land-cover classes (single-label)",
    command="prep.datasets.eurosat.command",
    synthetic="prep.datasets.eurosat.synthetic",
    tfds_builder="prep.datasets.eurosat.tfds_builder:EurosatMs",
    upstream_stats=None,
    model_inputs={m: _ALL for m in ("Sen2LCZ-Net", "So2Sat-ResNet11", "So2Sat-ResNet20", "So2Sat-ResNet29")},
    default_model="Sen2LCZ-Net",
    default_bands="all",
    homepage="https://github.com/phelber/EuroSAT",
    citation=CITATION,
)
