"""The dependency-free Example encoder and TFRecord framing against TensorFlow's own reader."""
import hashlib

import numpy as np
import pytest
import tensorflow as tf

from prep import tfrecord
from prep.datasets.spec import Field


def _ref_varint(n: int) -> bytes:
    n &= 0xFFFFFFFFFFFFFFFF
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n >> 7 else 0))
        n >>= 7
        if not n:
            return bytes(out)


@pytest.mark.parametrize("values", [[0, 1, 127, 128, 16383, 16384, 2**21 - 1], [2**21, 2**40, -1, -5, 3],
                                    list(np.random.default_rng(0).integers(0, 65536, 5000)), []])
def test_varints_match_the_wire_format(values):
    assert tfrecord.varints(np.array(values, np.int64)) == b"".join(_ref_varint(int(v)) for v in values)


FIELDS = (Field("img", "bytes", 1), Field("ints", "int64", None), Field("fixed", "int64", 3),
          Field("f", "float", 2), Field("names", "bytes", None), Field("empty", "int64", None))


def test_example_equals_protobuf_message_and_parses():
    vals = {"img": [b"\x00\x01" * 500], "ints": np.array([5, -7, 2**40]), "fixed": [1, 0, 1],
            "f": [0.5, -2.25], "names": [b"a", b"bc"], "empty": []}
    rec = tfrecord.encode_example(FIELDS, vals)
    ex = tf.train.Example()
    ex.features.feature["img"].bytes_list.value.append(b"\x00\x01" * 500)
    ex.features.feature["ints"].int64_list.value.extend([5, -7, 2**40])
    ex.features.feature["fixed"].int64_list.value.extend([1, 0, 1])
    ex.features.feature["f"].float_list.value.extend([0.5, -2.25])
    ex.features.feature["names"].bytes_list.value.extend([b"a", b"bc"])
    ex.features.feature["empty"].int64_list.SetInParent()
    assert tf.train.Example.FromString(rec) == ex
    assert tfrecord.encode_example(FIELDS, vals) == rec  # deterministic
    p = tf.io.parse_single_example(rec, {"fixed": tf.io.FixedLenFeature([3], tf.int64),
                                         "f": tf.io.FixedLenFeature([2], tf.float32)})
    assert p["fixed"].numpy().tolist() == [1, 0, 1] and p["f"].numpy().tolist() == [0.5, -2.25]


def test_schema_violations_are_errors():
    vals = {"img": [b"x"], "ints": [1], "fixed": [1, 2], "f": [0.0, 1.0], "names": [], "empty": []}
    with pytest.raises(ValueError, match="'fixed': 2 values, expected 3"):
        tfrecord.encode_example(FIELDS, vals)
    with pytest.raises(KeyError, match="lacks features: f"):
        tfrecord.encode_example(FIELDS, {k: v for k, v in vals.items() if k != "f"})
    with pytest.raises(TypeError, match="bytes expected"):
        tfrecord.encode_example(FIELDS, {**vals, "fixed": [1, 2, 3], "names": ["str"]})


@pytest.mark.parametrize("compression", [None, "GZIP"])
def test_framing_reads_in_tensorflow_and_corruption_is_caught(tmp_path, compression):
    recs = [bytes([i]) * (i * 100 + 1) for i in range(5)]
    path = tmp_path / "x.tfrecord"
    with tfrecord.TFRecordWriter(path, compression) as w:
        for r in recs:
            w.write(r)
    assert w.sha256.hexdigest() == hashlib.sha256(path.read_bytes()).hexdigest()  # hashed as written
    ds = tf.data.TFRecordDataset(str(path), compression_type=compression or "")
    assert [r.numpy() for r in ds] == recs
    assert list(tfrecord.read_records(path, compression or "NONE")) == recs
    if compression is None:
        original = path.read_bytes()
        data = bytearray(original)
        data[30] ^= 1
        path.write_bytes(bytes(data))
        with pytest.raises(tfrecord.CorruptRecordError, match="bad data CRC"):
            list(tfrecord.read_records(path))
        path.write_bytes(original[:-3])
        with pytest.raises(tfrecord.CorruptRecordError, match="truncated"):
            list(tfrecord.read_records(path))


# --- decoding: prep.tfrecord.parse_example / example_info against TensorFlow's protobuf and parser ---

_PROTO_KINDS = {"bytes_list": "bytes", "float_list": "float", "int64_list": "int64"}


def _proto_values(ex: tf.train.Example) -> dict:
    """key -> (kind, values) as TensorFlow's protobuf message holds them."""
    out = {}
    for key, feat in ex.features.feature.items():
        which = feat.WhichOneof("kind")
        if which is None:
            out[key] = (None, [])
        else:
            out[key] = (_PROTO_KINDS[which], list(getattr(feat, which).value))
    return out


def _ours(record: bytes) -> dict:
    return {k: (f.kind, list(f.values)) for k, f in tfrecord.parse_example(record).items()}


def _same(a: dict, b: dict) -> bool:
    if a.keys() != b.keys():
        return False
    for k in a:
        (ka, va), (kb, vb) = a[k], b[k]
        if ka != kb or len(va) != len(vb):
            return False
        if ka == "float":
            if not np.array_equal(np.array(va, np.float32), np.array(vb, np.float32), equal_nan=True):
                return False
        elif [v for v in va] != [v for v in vb]:
            return False
    return True


def _random_example(rng) -> tf.train.Example:
    ex = tf.train.Example()
    specials_i = [0, 1, -1, 127, 128, 2**31 - 1, -(2**31), 2**63 - 1, -(2**63), 300, 16384]
    specials_f = [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, 3.4e38, -1.5]
    for j in range(int(rng.integers(0, 12))):
        key = rng.choice(["a", "bands/B01", "ключ", "", "x" * 300, f"k{j}", "labels19/index"])
        feat = ex.features.feature[str(key)]  # a key drawn twice keeps its last value
        kind = rng.integers(0, 4)
        n = int(rng.choice([0, 1, 2, 5, 200]))
        if kind == 0:
            feat.bytes_list.value.extend([rng.bytes(int(rng.choice([0, 1, 7, 128, 20000]))) for _ in range(n)])
            feat.bytes_list.SetInParent()
        elif kind == 1:
            vals = rng.standard_normal(n).astype(np.float32).tolist()
            feat.float_list.value.extend([rng.choice(specials_f) if rng.random() < 0.3 else v for v in vals])
            feat.float_list.SetInParent()
        elif kind == 2:
            vals = rng.integers(-(2**63), 2**63 - 1, n, dtype=np.int64, endpoint=True).tolist()
            small = rng.integers(0, 70000, n).tolist()
            feat.int64_list.value.extend([int(rng.choice(specials_i)) if rng.random() < 0.2 else (v if rng.random() < 0.3 else s)
                                          for v, s in zip(vals, small)])
            feat.int64_list.SetInParent()
        # kind 3: a Feature with no list set
    return ex


def test_parse_example_gives_tensorflows_values_on_random_examples():
    rng = np.random.default_rng(7)
    for _ in range(300):
        ex = _random_example(rng)
        record = ex.SerializeToString()
        expected = _proto_values(ex)
        got = _ours(record)
        assert _same(got, expected), (got, expected)
        info = tfrecord.example_info(record)
        assert {k: (v.kind, v.count) for k, v in info.items()} == {k: (kd, len(v)) for k, (kd, v) in expected.items()}
        for k, v in info.items():
            assert v.sizes == (tuple(len(b) for b in expected[k][1]) if v.kind == "bytes" else ())
        # TensorFlow's own parser (tf.io.parse_single_example) reads the same values
        desc = {k: tf.io.VarLenFeature({"bytes": tf.string, "float": tf.float32, "int64": tf.int64}[kind])
                for k, (kind, _) in expected.items() if kind is not None and k}
        if desc:
            parsed = tf.io.parse_single_example(record, desc)
            ours = tfrecord.parse_example(record)
            for k in desc:
                if ours[k].kind == "bytes":
                    assert list(parsed[k].values.numpy()) == ours[k].values
                else:
                    np.testing.assert_array_equal(parsed[k].values.numpy(), ours[k].values)


def test_encode_then_parse_round_trips():
    vals = {"img": [b"\x00\x01" * 500], "ints": np.array([5, -7, 2**40]), "fixed": [1, 0, 1],
            "f": [0.5, -2.25], "names": [b"a", b"bc"], "empty": []}
    got = tfrecord.parse_example(tfrecord.encode_example(FIELDS, vals))
    assert got["img"] == tfrecord.Feature("bytes", [b"\x00\x01" * 500])
    assert got["ints"].values.tolist() == [5, -7, 2**40] and got["ints"].values.dtype == np.int64
    assert got["f"].values.tolist() == [0.5, -2.25] and got["f"].values.dtype == np.float32
    assert got["names"].values == [b"a", b"bc"] and got["empty"].kind == "int64" and got["empty"].values.size == 0


def _ld(number: int, payload: bytes) -> bytes:
    return _ref_varint(number << 3 | 2) + _ref_varint(len(payload)) + payload


def _entry(key: str, feature: bytes) -> bytes:
    return _ld(1, _ld(1, key.encode()) + _ld(2, feature))


def test_unpacked_fields_unknown_fields_and_merging_read_as_protobuf_reads_them():
    unpacked_ints = b"".join(b"\x08" + _ref_varint(v) for v in (3, 2**63 + 5, 0))  # Int64List field 1, wire 0
    unpacked_floats = b"".join(b"\x0d" + np.float32(v).tobytes() for v in (1.5, -0.25))  # FloatList, wire 5
    unknown = b"\x10\x05" + b"\x19" + bytes(8) + b"\x25" + bytes(4) + _ld(9, b"zz") + b"\x2b\x08\x01\x2c"  # + a group
    records = [
        _ld(1, _entry("i", _ld(3, unpacked_ints)) + _entry("f", _ld(2, unpacked_floats))),
        _ld(1, _entry("mixed", _ld(3, _ld(1, _ref_varint(7)) + b"\x08\x09")) + unknown) + unknown,
        _ld(1, _entry("k", _ld(3, _ld(1, b"\x01")))) + _ld(1, _entry("k", _ld(1, _ld(1, b"new")))),  # last key wins
        _ld(1, _entry("one", _ld(3, _ld(1, b"\x01")) + _ld(2, _ld(1, bytes(4))))),  # oneof: the last kind
        _ld(1, _entry("m", _ld(3, _ld(1, b"\x01")) + _ld(3, _ld(1, b"\x02")))),  # same kind twice: merged
        _ld(1, _ld(1, _ld(2, _ld(3, _ld(1, b"\x05"))) + _ld(1, b"late"))),  # key after the value
        _ld(1, _ld(1, unknown + _ld(2, _ld(3, _ld(1, b"\x05"))) + _ld(1, b"x")) + _entry("y", b"")),  # entry dropped
        _ld(1, _ld(1, _ld(2, b""))),  # no key: the empty key, a Feature with no list
        b"",  # the empty Example
    ]
    for record in records:
        expected = _proto_values(tf.train.Example.FromString(record))
        assert _same(_ours(record), expected), (record, _ours(record), expected)
    assert _ours(records[0]) == {"i": ("int64", [3, -(2**63) + 5, 0]), "f": ("float", [1.5, -0.25])}
    assert _ours(records[5]) == {"late": ("int64", [5])} and _ours(records[6]) == {"y": (None, [])}


def _proto_ok(record):
    try:
        return _proto_values(tf.train.Example.FromString(record))
    except Exception:  # google.protobuf.message.DecodeError
        return None


def _ours_ok(record):
    try:
        return _ours(record)
    except tfrecord.ExampleError:
        return None


def test_malformed_records_are_errors_where_protobuf_rejects_them():
    rng = np.random.default_rng(3)
    base = [_random_example(rng).SerializeToString() for _ in range(20)]
    base.append(tfrecord.encode_example(FIELDS, {"img": [b"\x00\x01" * 50], "ints": [1, -1], "fixed": [1, 0, 1],
                                                 "f": [0.5, 2.0], "names": [b"a"], "empty": []}))
    cases = []
    for rec in base:
        cases += [rec[:cut] for cut in range(0, len(rec), max(1, len(rec) // 40))]  # truncations
        for _ in range(30):  # flipped bytes
            if rec:
                b = bytearray(rec)
                b[int(rng.integers(len(b)))] ^= int(rng.integers(1, 256))
                cases.append(bytes(b))
    cases += [b"\x0a\x80", b"\x0a\x05\x0a\x03\x0a\x01", b"\x00", b"\x0f", b"\x0c", b"\x0a\x02\x0a\x00\xff",
              _ld(1, _entry("x", _ld(2, _ld(1, bytes(5))))),  # packed floats not a multiple of 4
              _ld(1, _entry("x", _ld(3, _ld(1, b"\x81")))),  # packed varint cut short
              _ld(1, _entry("x", _ld(3, _ld(1, b"\xff" * 10 + b"\x01")))),  # an 11-byte varint
              _ld(1, _ld(1, _ld(1, b"\xff\xfe")))]  # a key that is not UTF-8
    rejected = 0
    for rec in cases:
        ours, proto = _ours_ok(rec), _proto_ok(rec)
        assert (ours is None) == (proto is None), (rec, ours, proto)
        if ours is not None:
            assert _same(ours, proto), rec
        else:
            rejected += 1
            with pytest.raises(tfrecord.ExampleError):
                tfrecord.example_info(rec)
    assert rejected > 100
