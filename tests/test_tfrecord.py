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
