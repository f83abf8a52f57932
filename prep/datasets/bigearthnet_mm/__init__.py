"""BigEarthNet-MM v1.0: Sentinel-1 + Sentinel-2 pairs with the 19-class nomenclature.

Modules:

==================  ===========================================================================
``spec``            bands (12 S2 + VV, VH), the MM input preset, record schemas (upstream MM keys)
``raw``             reading a pair: the S2 and S1 readers, the labels checked against each other
``command``         ``python -m prep bigearthnet_mm --s1_root ... --s2_root ...``
``synthetic``       synthetic S1 + S2 archives in the real layout
``tfds_builder``    the TFDS builder ``bigearthnet_mm_19``
==================  ===========================================================================

Reuses BigEarthNet-S2 (labels, splits, exclusions, S2 reader) and BigEarthNet-S1 (S1 reader,
pairing). The ResNet50/101/152 and VGG16/19 MM configurations take ``mm``: B04 B03 B02 B08, the 20 m
bands resampled to 120 x 120, then VV, VH (configs/*_BigEarthNetMM-19.flags).
Source: Sumbul et al., BigEarthNet-MM (GRSM 2021); https://bigearth.net.
"""
from prep.datasets.bigearthnet import CITATION, band_stats
from prep.datasets.bigearthnet_mm.spec import BAND_PRESETS, NAME, SPEC
from prep.datasets.contract import Dataset, ModelInput

MM_MODELS = ("ResNet50", "ResNet101", "ResNet152", "VGG16", "VGG19")

DATASET = Dataset(
    name=NAME,
    cli_name="bigearthnet_mm",
    aliases=("bigearthnet-mm", "BigEarthNet-MM"),
    spec=SPEC,
    title="BigEarthNet-MM v1.0 (Sentinel-1 + Sentinel-2 pairs), 19 classes (multi-label)",
    command="prep.datasets.bigearthnet_mm.command",
    synthetic="prep.datasets.bigearthnet_mm.synthetic",
    tfds_builder="prep.datasets.bigearthnet_mm.tfds_builder:BigearthnetMM19",
    upstream_stats={**band_stats.S2, **band_stats.S1},
    model_inputs={m: ModelInput("mm") for m in MM_MODELS},
    default_model="ResNet50",
    default_bands="mm",
    homepage="https://bigearth.net",
    citation=CITATION,
)
assert set(DATASET.default_bands.split("+")) <= set(BAND_PRESETS)
