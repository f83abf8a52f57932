"""The 43 -> 19 nomenclature and the official split/exclusion lists."""
import json

import pytest

from prep.datasets.bigearthnet import spec as ben
from splits import bigearthnet as splits
from tests.conftest import REFERENCE


def test_nomenclature_sizes_and_order():
    assert len(ben.LABELS_43) == 43 and len(ben.LABELS_19) == 19 and len(ben.CONVERSION_19) == 19
    assert ben.SPEC.class_names == ben.LABELS_19
    # index order, not alphabetical (a known bug source): the first class is Urban fabric
    assert ben.LABELS_19[0] == "Urban fabric" and ben.LABELS_19[18] == "Marine waters"
    assert list(ben.LABELS_19) != sorted(ben.LABELS_19)
    # every 43-class index appears at most once in the conversion table
    flat = [i for group in ben.CONVERSION_19 for i in group]
    assert len(flat) == len(set(flat)) == 32


def test_the_eleven_dropped_classes():
    assert set(ben.DROPPED_43) == {
        "Road and rail networks and associated land", "Port areas", "Airports", "Mineral extraction sites",
        "Dump sites", "Construction sites", "Green urban areas", "Sport and leisure facilities", "Bare rock",
        "Burnt areas", "Intertidal flats"}
    for name in ben.DROPPED_43:
        assert ben.indices_19(ben.indices_43([name])) == []


def test_permanent_crops_rule():
    pc = ben.LABELS_19.index("Permanent crops")
    for name in ("Vineyards", "Fruit trees and berry plantations", "Olive groves",
                 "Annual crops associated with permanent crops"):
        assert ben.indices_19(ben.indices_43([name])) == [pc]


def test_merges_and_multi_hot():
    idx = ben.indices_19(ben.indices_43(["Continuous urban fabric", "Discontinuous urban fabric", "Peatbogs",
                                         "Sea and ocean", "Airports"]))
    assert idx == [0, 15, 18]
    assert ben.multi_hot(idx, 19) == [1] + [0] * 14 + [1, 0, 0, 1]


def test_unknown_label_is_an_error():
    with pytest.raises(ben.UnknownLabelError, match="Mars crater"):
        ben.indices_43(["Pastures", "Mars crater"])


@pytest.mark.skipif(not (REFERENCE / "bigearthnet" / "label_indices.json").exists(), reason="no ../shared")
def test_tables_equal_the_official_label_indices():
    ref = json.loads((REFERENCE / "bigearthnet" / "label_indices.json").read_text())
    assert [n for n, _ in sorted(ref["original_labels"].items(), key=lambda kv: kv[1])] == list(ben.LABELS_43)
    assert [n for n, _ in sorted(ref["BigEarthNet-19_labels"].items(), key=lambda kv: kv[1])] == list(ben.LABELS_19)
    assert [tuple(g) for g in ref["label_conversion"]] == list(ben.CONVERSION_19)


def test_patch_names_with_five_digit_times():
    assert ben.parse_patch_name("S2B_MSIL2A_20170924T93020_69_24")["time"] == "93020"
    p = ben.parse_patch_name("S2A_MSIL2A_20170717T113321_28_89")
    assert (p["date"], p["time"], p["col"], p["row"]) == ("20170717", "113321", "28", "89")
    with pytest.raises(ValueError):
        ben.parse_patch_name("S1A_IW_GRDH_1SDV_20170613T165043_33UUP_87_48")


def test_official_splits_after_exclusions():
    excluded = set().union(*(splits.exclusion(k) for k in splits.EXCLUSIONS))
    assert len(splits.exclusion("seasonal_snow")) == 61707
    assert len(splits.exclusion("cloud_and_shadow")) == 9280
    assert len(splits.exclusion("no_19_class_target")) == 57
    assert len(excluded) == 71042
    kept = {s: [n for n in splits.official_split(s) if n not in excluded] for s in splits.SPLITS}
    assert [len(kept[s]) for s in splits.SPLITS] == [269695, 123723, 125866]
    sets = [set(kept[s]) for s in splits.SPLITS]
    assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])
    assert sum(map(len, sets)) == 590326 - 71042
    # no CR survives the CRLF line ends
    assert not any("\r" in n for n in kept["train"][:1000])


def test_band_table():
    assert ben.BAND_NAMES == ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")
    sizes = {b.name: b.shape for b in ben.BANDS}
    assert {n for n, s in sizes.items() if s == (120, 120)} == {"B02", "B03", "B04", "B08"}
    assert {n for n, s in sizes.items() if s == (20, 20)} == {"B01", "B09"}
    assert ben.PIXELS_PER_PATCH == 80_000  # 4 x 14,400 + 6 x 3,600 + 2 x 400
    assert ben.SPEC.resolve_bands("10m20m") == ("B04", "B03", "B02", "B08", "B05", "B06", "B07", "B8A", "B11", "B12")
