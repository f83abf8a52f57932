"""BigEarthNet's published per-band normalisation statistics, by band name.

The reader's ``normalize="upstream"`` uses ``DATASET.upstream_stats`` (this package's ``S2``):
``(x - mean) / std`` on the values as stored in the records. BigEarthNet-S2: the mean and
standard deviation of each Sentinel-2 band over the archive as the upstream models use them, on
raw L2A digital numbers (BOA reflectance x 10000). Values are kept to the precision the upstream
project publishes (source: the upstream BigEarthNet-19 model scripts' band statistics).
"""
from __future__ import annotations

from typing import Mapping

# band -> (mean, std)
S2: Mapping[str, tuple[float, float]] = {
    "B01": (340.76769064, 554.81258967),
    "B02": (429.9430203, 572.41639287),
    "B03": (614.21682446, 582.87945694),
    "B04": (590.23569706, 675.88746967),
    "B05": (950.68368468, 729.89827633),
    "B06": (1792.46290469, 1096.01480586),
    "B07": (2075.46795189, 1273.45393088),
    "B08": (2218.94553375, 1365.45589904),
    "B8A": (2266.46036911, 1356.13789355),
    "B09": (2246.0605464, 1302.3292881),
    "B11": (1594.42694882, 1079.19066363),
    "B12": (1009.32729131, 818.86747235),
}

# BigEarthNet-S1 backscatter in dB (for the multi-modal archive).
S1: Mapping[str, tuple[float, float]] = {
    "VV": (-12.619993741972035, 5.115911777546365),
    "VH": (-19.29044597721542, 5.464428464912864),
}
