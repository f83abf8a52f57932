"""prep.fastencode gives prep.tfrecord.encode_example's bytes; So2Sat's encoded path gives the values path's output."""
from __future__ import annotations

import json
import os

import h5py
import numpy as np
import pytest

from prep import fastencode, stats, tfrecord
from prep.datasets.bigearthnet import spec as ben
from prep.datasets.so2sat import command as so2sat
from prep.datasets.so2sat import spec as s2s
from prep.datasets.so2sat import synthetic as synth
from prep.datasets.spec import Field
from prep.stats import BandStats

INT_EDGES = [0, 1, 127, 128, 16383, 16384, 2**21 - 1, 2**21, 2**28, 2**35, 2**63 - 1, -1, -2, -(2**63)]
LEN_EDGES = [0, 1, 127, 128, 16383, 16384, 2**21 - 1, 2**21]


def _ref_varint(n: int) -> bytes:
    return tfrecord._varint(n & 0xFFFFFFFFFFFFFFFF)


def test_varint_matches_the_wire_format():
    rng = np.random.default_rng(0)
    values = INT_EDGES + [int(v) for v in rng.integers(0, 2**40, 2000)] + list(range(0, 70000, 7))
    for v in values:
        assert fastencode.varint(v) == _ref_varint(v), v


def _random_value(rng: np.random.Generator, field: Field):
    """A value of the shapes encode_example accepts, edge cases included."""
    n = field.length if field.length is not None else int(rng.choice([0, 1, 2, 5, 40]))
    if field.kind == "bytes":
        sizes = [int(rng.choice([0, 1, 5, 127, 128, 300, 16383, 16384, 20000])) for _ in range(n)]
        items = [rng.integers(0, 256, s, dtype=np.uint8).tobytes() for s in sizes]
        form = rng.integers(0, 4)
        if form == 1 and n == 1:
            return items[0]  # a bare bytes object
        if form == 2:
            return tuple(items)
        if form == 3 and n:
            return [bytearray(items[0])] + items[1:]
        return items
    if field.kind == "int64":
        pool = INT_EDGES + [int(v) for v in rng.integers(0, 2**20, 10)]
        vals = [pool[int(i)] for i in rng.integers(0, len(pool), n)]
        form = rng.integers(0, 4)
        if form == 1:
            return np.array(vals, np.int64)
        if form == 2 and all(0 <= v < 65536 for v in vals):
            return np.array(vals, np.uint16)
        if form == 3 and n == 1:
            return vals[0]  # a bare int
        return vals
    vals = rng.standard_normal(n).astype(np.float32)
    return vals if rng.integers(0, 2) else [float(v) for v in vals]


def _random_fields(rng: np.random.Generator) -> tuple[Field, ...]:
    fields = []
    for i in range(int(rng.integers(1, 9))):
        kind = str(rng.choice(["bytes", "int64", "float"]))
        length = None if rng.integers(0, 2) else int(rng.choice([1, 1, 2, 3]))
        key = "".join(rng.choice(list("abz/_09"), int(rng.integers(1, 12)))) + f"{i}"
        fields.append(Field(key, kind, length))
    if rng.integers(0, 3) == 0:  # a key of more than 127 bytes: two-byte key length
        fields.append(Field("k" * 150, "int64", None))
    return tuple(fields)


def test_random_records_encode_exactly_like_encode_example():
    rng = np.random.default_rng(1)
    for _ in range(300):
        fields = _random_fields(rng)
        values = {f.key: _random_value(rng, f) for f in fields}
        cs = fastencode.CompiledSchema(fields)
        assert cs.encode(values) == tfrecord.encode_example(fields, values)
        for f in fields:  # single entries and the per-key encoders
            v = values[f.key]
            ref = cs.entry(f.key, v)
            if f.kind == "int64":
                assert cs.int64_entry(f.key)(v) == ref
            if f.kind == "bytes" and f.length in (None, 1) and isinstance(v, list) and len(v) == 1:
                assert cs.bytes_entry(f.key)(v[0]) == ref


def test_large_values_and_real_schemas():
    big = bytes(range(256)) * 8300  # 2.1 MB: a four-byte length varint
    fields = (Field("b", "bytes", 1), Field("i", "int64", None))
    values = {"b": [big], "i": list(range(-3, 300))}
    assert fastencode.CompiledSchema(fields).encode(values) == tfrecord.encode_example(fields, values)
    rng = np.random.default_rng(2)
    geo = s2s.Geo(32632, (10.0, 0.0, 5e5, 0.0, -10.0, 5.3e6), (5e5, 10, 0, 5.3e6, 0, 10), (5e5 + 160, 5.3e6 - 160),
                  (1, 2, 3, 4), "munich")
    raw = {n: rng.standard_normal(1024).astype("<f4").tobytes() for n in s2s.BAND_NAMES}
    for g in (geo, None):
        values = s2s.record_values(raw, 16, "random/training.h5", 123456, g)
        assert fastencode.CompiledSchema(s2s.COMPACT.fields).encode(values) == \
            tfrecord.encode_example(s2s.COMPACT.fields, values)
    patch = {"bands": {b.name: rng.integers(0, 20000, b.shape, dtype=np.uint16) for b in ben.BANDS},
             "labels43": ["Pastures", "Sea and ocean"], "name": "S2A_x_y", "acquisition_date": "2017-06-13",
             "tile_source": "S2A_MSIL1C", "coordinates": (399960, 5100000, 401160, 5098800), "epsg": 32633}
    for schema in ben.SPEC.schemas.values():
        values = ben.record_values(patch, schema)
        assert fastencode.CompiledSchema(schema.fields).encode(values) == tfrecord.encode_example(schema.fields, values)
    # BigEarthNet's compact schema as a block: 12 fixed-size uint16 bands, then the label and meta features
    schema = ben.SPEC.schema("compact")
    layout = fastencode.BlockLayout(fastencode.CompiledSchema(schema.fields),
                                    {schema.band_keys[b.name]: b.size * 2 for b in ben.BANDS})
    assert layout.tail_only
    block = layout.new_block(2)
    values = ben.record_values(patch, schema)
    for b in ben.BANDS:
        block.column(schema.band_keys[b.name])[1] = np.frombuffer(values[schema.band_keys[b.name]][0], np.uint8)
    tail = {k: values[k] for k in layout.variable}
    assert block.record(1, tail) == tfrecord.encode_example(schema.fields, values)


def test_schema_violations_are_the_same_errors():
    fields = (Field("img", "bytes", 1), Field("fixed", "int64", 3), Field("names", "bytes", None))
    cs = fastencode.CompiledSchema(fields)
    good = {"img": [b"x"], "fixed": [1, 2, 3], "names": []}
    cases = [({**good, "fixed": [1, 2]}, ValueError), ({**good, "img": [b"a", b"b"]}, ValueError),
             ({k: v for k, v in good.items() if k != "names"}, KeyError), ({**good, "extra": [1]}, KeyError),
             ({**good, "names": ["str"]}, TypeError), ({**good, "fixed": [1.5, 2, 3]}, TypeError)]
    for values, error in cases:
        with pytest.raises(error) as ref:
            tfrecord.encode_example(fields, values)
        with pytest.raises(error) as got:
            cs.encode(values)
        assert str(got.value) == str(ref.value)
    with pytest.raises(ValueError, match="expected 3"):
        cs.int64_entry("fixed")([1, 2])


def _block_case(rng, fields, fixed):
    cs = fastencode.CompiledSchema(fields)
    layout = fastencode.BlockLayout(cs, fixed)
    n = 7
    block = layout.new_block(n)
    data = {k: rng.integers(0, 256, (n, size), dtype=np.uint8) for k, size in fixed.items()}
    for k, d in data.items():
        block.column(k)[:] = d
    for i in range(n):
        var = {f.key: _random_value(rng, f) for f in fields if f.key not in fixed}
        values = {**var, **{k: [d[i].tobytes()] for k, d in data.items()}}
        ref = tfrecord.encode_example(fields, values)
        assert block.record(i, var) == ref
        assert block.record(i, [cs.entry(k, var[k]) for k in layout.variable]) == ref
        if layout.tail_only:
            assert block.record_tail(i, [b"".join(cs.entry(k, var[k]) for k in layout.variable)]) == ref
    return layout


def test_block_layout_gives_the_same_records():
    rng = np.random.default_rng(3)
    # fixed features first (So2Sat, BigEarthNet compact), interleaved, all fixed, sizes across varint widths
    layout = _block_case(rng, (Field("bands/a", "bytes", 1), Field("bands/b", "bytes", 1), Field("m", "int64", None),
                               Field("z", "bytes", None)), {"bands/a": 4096, "bands/b": 130})
    assert layout.tail_only
    layout = _block_case(rng, (Field("a", "bytes", 1), Field("b", "int64", 1), Field("c", "bytes", 1),
                               Field("d", "bytes", 1), Field("e", "float", 2)), {"a": 3, "c": 20000, "d": 0})
    assert not layout.tail_only and len(layout.runs) == 2
    _block_case(rng, (Field("x", "bytes", 1), Field("y", "bytes", 1)), {"x": 127, "y": 128})
    with pytest.raises(ValueError):
        fastencode.BlockLayout(fastencode.CompiledSchema((Field("n", "int64", 1),)), {"n": 8})


# --- So2Sat: the encoded path against the values path (the writer's encode_example) ---------------

def test_band_states_merge_like_update():
    rng = np.random.default_rng(4)
    for dtype in ("float32", "float64"):
        m = 45
        x = (rng.standard_normal((m, 3, 64)) * 10.0 ** rng.integers(-3, 3, (m, 3, 1))).astype(dtype)
        x[3, 1, :] = 0.0
        x[3, 1, ::2] = -0.0  # signed zeros: min/max must return the zero update() returns
        x[4, 0, :] = -0.0
        good = np.ones(m, bool)
        good[[9, 17, 30, 31, 32, 33, 34, 35, 36, 37, 44]] = False
        lo, hi = x.min(axis=2), x.max(axis=2)
        names = ("a", "b", "c")
        fast = {n: BandStats(dtype) for n in names}
        for name, st in stats.band_states(x, good, lo, hi, names, group=8, batch=4):
            fast[name].merge_state(st)
        ref = {n: BandStats(dtype) for n in names}
        for j in range(0, m, 8):
            idx = np.flatnonzero(good[j:j + 8]) + j
            for b, name in enumerate(names):
                if len(idx):
                    ref[name].update(x[idx, b])
        for name in names:
            a, r = fast[name].state(), ref[name].state()
            assert a.keys() == r.keys()
            for k in r:
                assert np.asarray(a[k]).tobytes() == np.asarray(r[k]).tobytes(), (dtype, name, k)


@pytest.fixture(scope="module")
def so2sat_inputs(tmp_path_factory) -> dict[str, str]:
    root = str(tmp_path_factory.mktemp("fastencode_so2sat"))
    files = {
        "coord": synth.write_file(os.path.join(root, "coord", "training.h5"), 70, seed=3)["h5"],
        "city": synth.write_file(os.path.join(root, "city", "validation.h5"), 30, seed=5, geo_layout="city",
                                 cities=s2s.VALIDATION_TESTING_CITY_EPSG)["h5"],
        "bad": synth.write_file(os.path.join(root, "bad", "testing.h5"), 40, seed=8, geo=False)["h5"],
    }
    with h5py.File(files["bad"], "r+") as f:
        s1, s2 = f["sen1"][:], f["sen2"][:]
        for r in (0, 9, 10, 11, 12, 13, 14, 15):  # a group's first row, and a group with one good row
            s1[r, 3, 4, 2] = np.nan
        s2[20, 0, 0, 0] = np.inf
        s1[27, 1, 1, 1] = 1e300  # beyond float32: bad unless --keep_float64
        s1[:, :, :, 0] = 0.0
        s1[::3, ::2, :, 0] = -0.0
        s1[5, :, :, 1] = 1e-40  # a float32 subnormal
        f["sen1"][...], f["sen2"][...] = s1, s2
    return files


@pytest.mark.filterwarnings("ignore:overflow encountered")  # 1e300 squared, as in the values path
@pytest.mark.parametrize("case", [
    dict(h5=["coord", "city"], read_rows=7, shard_size_mb=1.0),
    dict(h5=["coord"], read_rows=256, keep_float64=True, compression="GZIP"),
    dict(h5=["coord"], read_rows=40, geolocation=False, max_rows=61),
    dict(h5=["bad"], read_rows=12, on_error="skip"),
    dict(h5=["bad"], read_rows=16, on_error="skip", keep_float64=True),
], ids=["geo-coord-city", "float64-gzip", "nogeo-maxrows", "bad-skip", "bad-skip-float64"])
def test_so2sat_encoded_path_writes_the_values_path_bytes(so2sat_inputs, tmp_path, case):
    kw = dict(case)
    paths = [so2sat_inputs[k] for k in kw.pop("h5")]
    outs = {}
    for encode in (True, False):
        out = str(tmp_path / f"encode{encode}")
        so2sat.prepare(paths, out, encode=encode, **kw)
        outs[encode] = {p: open(os.path.join(out, p), "rb").read() for p in sorted(os.listdir(out)) if p[0] != "."}
    assert outs[True].keys() == outs[False].keys() and "manifest.json" in outs[True]
    for name in outs[False]:
        assert outs[True][name] == outs[False][name], name
    manifest = json.loads(outs[True]["manifest.json"])
    if kw.get("on_error") == "skip":
        assert len(manifest["skipped"]) == (9 if kw.get("keep_float64") else 10)
