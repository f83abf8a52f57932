"""SEN12MS: one package holds the whole dataset.

Modules:

==================  ===========================================================================
``spec``            S2 (13 bands), S1 (VV, VH), lc (4 layers), the IGBP / simplified tables,
                    scene labels, the four target schemas
``raw``             the raw reader: the season tree -> records (twin/band/shape/dtype checks, S1 NaNs)
``tarball``         the per-season tarballs read without extracting
``command``         ``python -m prep sen12ms``
``synthetic``       generated season trees (and tarballs) in the real layout
``tfds_builder``    the TFDS builder ``sen12ms``
==================  ===========================================================================

Split rules: ``splits.sen12ms``. ``normalize="upstream"`` uses the z-score constants of the
upstream classification code (``UPSTREAM_STATS``: S2 land bands in DN, S1 in dB; upstream computed
the S1 ones after NaN -> 0 and a clip to [-25, 0], which the reader does not apply: see the README).
Source: Schmitt et al., SEN12MS (ISPRS Annals 2019); https://github.com/schmitt-muc/SEN12MS.
"""
from prep.datasets.contract import Dataset, ModelInput
from prep.datasets.sen12ms.spec import *  # noqa: F403  (the definition, as prep.datasets.sen12ms.X)
from prep.datasets.sen12ms.spec import NAME, SPEC

CITATION = """\
@article{schmitt2019sen12ms,
  title = {SEN12MS -- A Curated Dataset of Georeferenced Multi-Spectral Sentinel-1/2 Imagery for Deep Learning
           and Data Fusion},
  author = {Schmitt, Michael and Hughes, Lloyd Haydn and Qiu, Chunping and Zhu, Xiao Xiang},
  journal = {ISPRS Annals of the Photogrammetry, Remote Sensing and Spatial Information Sciences},
  volume = {IV-2/W7},
  pages = {153--160},
  year = {2019}
}
"""

# band -> (mean, std) of the upstream classification models' z-score (S2 DN, S1 dB).
UPSTREAM_STATS = {
    "B02": (1226.4215, 741.6254), "B03": (1137.3799, 740.883), "B04": (1139.6792, 960.1045),
    "B05": (1350.9973, 946.76056), "B06": (1932.9058, 985.52747), "B07": (2211.1584, 1082.4341),
    "B08": (2154.9846, 1057.7628), "B8A": (2409.1128, 1136.1942), "B11": (2001.8622, 1132.7898),
    "B12": (1356.0801, 991.48016), "VV": (-11.76858, 4.525339), "VH": (-18.294598, 4.3586307),
}

DATASET = Dataset(
    name=NAME,
    cli_name="sen12ms",
    aliases=("SEN12MS",),
    spec=SPEC,
    title="SEN12MS, Sentinel-1/2 + MODIS land cover triplets, 17 IGBP / 10 simplified classes",
    command="prep.datasets.sen12ms.command",
    synthetic="prep.datasets.sen12ms.synthetic",
    tfds_builder="prep.datasets.sen12ms.tfds_builder:Sen12ms",
    upstream_stats=UPSTREAM_STATS,
    model_inputs={m: ModelInput("s1s2") for m in ("ResNet50", "ResNet101", "ResNet152", "DenseNet121",
                                                  "DenseNet161", "DenseNet169", "DenseNet201")},
    default_model="ResNet50",
    default_bands="s1s2",
    homepage="https://mediatum.ub.tum.de/1474000",
    citation=CITATION,
)
