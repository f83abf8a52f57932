"""BigEarthNet-S1 v1.0 with the 19-class nomenclature: Sentinel-1 twins of BigEarthNet-S2.

Modules:

==================  ===========================================================================
``spec``            bands (VV, VH float32 dB), S1 patch names, record schemas
``raw``             the raw reader: S1 patch folders + JSON (both spellings), S1 <-> S2 pairing
``command``         ``python -m prep bigearthnet_s1``
``synthetic``       synthetic S1 archives (and S1 + S2 pairs) in the real format
``tfds_builder``    the TFDS builder ``bigearthnet_s1_19``
==================  ===========================================================================

Labels and splits are BigEarthNet-S2's (``prep.datasets.bigearthnet``, ``splits.bigearthnet``);
the pairing table is read by ``splits.bigearthnet_s1``. ``normalize="upstream"`` uses the published
BigEarthNet-S1 mean / std of VV and VH (``prep.datasets.bigearthnet.band_stats.S1``).
Source: Sumbul et al., BigEarthNet-MM (GRSM 2021); https://bigearth.net.
"""
from prep.datasets.bigearthnet import CITATION, band_stats
from prep.datasets.bigearthnet_s1.spec import BAND_PRESETS, NAME, SPEC
from prep.datasets.contract import Dataset, ModelInput

DATASET = Dataset(
    name=NAME,
    cli_name="bigearthnet_s1",
    aliases=("bigearthnet-s1", "BigEarthNet-S1"),
    spec=SPEC,
    title="BigEarthNet-S1 v1.0, 19 classes (multi-label)",
    command="prep.datasets.bigearthnet_s1.command",
    synthetic="prep.datasets.bigearthnet_s1.synthetic",
    tfds_builder="prep.datasets.bigearthnet_s1.tfds_builder:BigearthnetS1_19",
    upstream_stats=band_stats.S1,
    model_inputs={m: ModelInput("s1") for m in ("ResNet50", "ResNet101", "ResNet152", "VGG16", "VGG19")},
    default_model="ResNet50",
    default_bands="s1",
    homepage="https://bigearth.net",
    citation=CITATION,
)
assert set(DATASET.default_bands.split("+")) <= set(BAND_PRESETS)
