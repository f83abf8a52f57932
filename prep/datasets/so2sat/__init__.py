"""So2Sat LCZ42 (versions 2 and 3): one package holds the whole dataset.

Modules:

==================  ===========================================================================
``spec``            the 8 Sentinel-1 channels, 10 Sentinel-2 bands, 17 LCZ classes, schema
``raw``             the raw reader: HDF5 files (streamed in chunks) and geolocation -> records
``geotiff``         georeferenced GeoTIFF export of single patches
``command``         ``python -m prep so2sat`` (= ``python -m prep.so2sat``)
``synthetic``       generated HDF5 files in the real layout
``tfds_builder``    the TFDS builder ``so2sat_lcz42``
==================  ===========================================================================

Split names (version-3 scenarios included) follow ``splits.so2sat``. No per-band statistics are
published with the reference models, so ``normalize="upstream"`` is refused: use ``manifest``.
Source: Zhu et al., So2Sat LCZ42 (GRSM 2020); https://github.com/zhu-xlab/So2Sat-LCZ42.
"""
from prep.datasets.contract import Dataset, ModelInput
from prep.datasets.so2sat.spec import *  # noqa: F403  (the definition, as prep.datasets.so2sat.X)
from prep.datasets.so2sat.spec import NAME, SPEC

CITATION = """\
@article{zhu2020so2sat,
  title = {So2Sat LCZ42: A Benchmark Data Set for the Classification of Global Local Climate Zones},
  author = {Zhu, Xiao Xiang and Hu, Jingliang and Qiu, Chunping and Shi, Yilei and Kang, Jian and Mou, Lichao
            and Bagheri, Hossein and Haberle, Matthias and Hua, Yuansheng and Huang, Rong and others},
  journal = {IEEE Geoscience and Remote Sensing Magazine},
  volume = {8},
  number = {3},
  pages = {76--89},
  year = {2020}
}
"""

_SEN2 = ModelInput("sen2")  # the 10 Sentinel-2 bands, as the published So2Sat networks take them

DATASET = Dataset(
    name=NAME,
    cli_name="so2sat",
    aliases=("so2sat-lcz42", "So2Sat LCZ42"),
    spec=SPEC,
    title="So2Sat LCZ42 v2/v3, 17 Local Climate Zones (single-label)",
    command="prep.datasets.so2sat.command",
    synthetic="prep.datasets.so2sat.synthetic",
    tfds_builder="prep.datasets.so2sat.tfds_builder:So2satLcz42",
    upstream_stats=None,
    model_inputs={"Sen2LCZ-Net": _SEN2, "So2Sat-ResNet11": _SEN2, "So2Sat-ResNet20": _SEN2,
                  "So2Sat-ResNet29": _SEN2},
    default_model="Sen2LCZ-Net",
    default_bands="sen2",
    homepage="https://github.com/zhu-xlab/So2Sat-LCZ42",
    citation=CITATION,
)
