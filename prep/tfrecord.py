"""tf.train.Example encoding and TFRecord framing in plain Python/NumPy (no TensorFlow import).

Preparation workers use this so that they start fast and stay small. Encoding is
deterministic by construction: features are written in sorted key order, so the same values
always give the same bytes. ``tf.io.parse_example`` and ``tf.data.TFRecordDataset`` read the
output (tested against both).
"""
from __future__ import annotations

import gzip
import io
import os
import struct
from typing import BinaryIO, Iterator, Mapping, Sequence

import google_crc32c
import numpy as np

from prep.datasets.spec import Field

_MASK_DELTA = 0xA282EAD8


def masked_crc32c(data: bytes) -> int:
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def varints(values) -> bytes:
    """Packed protobuf varints of an int64 array (vectorised; negatives take 10 bytes)."""
    a = np.asarray(values)
    if a.size == 0:
        return b""
    if a.dtype.kind not in "iub":
        raise TypeError(f"int64 feature needs integers, got dtype {a.dtype}")
    a = a.reshape(-1).astype(np.int64).view(np.uint64)
    nbytes = np.ones(a.shape, np.int64)
    v = a >> np.uint64(7)
    while v.any():
        nbytes += v > 0
        v >>= np.uint64(7)
    ends = np.cumsum(nbytes)
    starts = ends - nbytes
    out = np.empty(int(ends[-1]), np.uint8)
    for k in range(int(nbytes.max())):
        sel = nbytes > k
        byte = ((a[sel] >> np.uint64(7 * k)) & np.uint64(0x7F)).astype(np.uint8)
        byte |= (nbytes[sel] > k + 1).astype(np.uint8) << 7
        out[starts[sel] + k] = byte
    return out.tobytes()


def _ld(tag: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return bytes((tag,)) + _varint(len(payload)) + payload


def _feature(field: Field, value) -> bytes:
    if field.kind == "bytes":
        items = [value] if isinstance(value, (bytes, bytearray)) else list(value)
        for it in items:
            if not isinstance(it, (bytes, bytearray)):
                raise TypeError(f"feature {field.key!r}: bytes expected, got {type(it).__name__}")
        body = b"".join(_ld(0x0A, bytes(it)) for it in items)
        n, tag = len(items), 0x0A
    elif field.kind == "int64":
        a = np.asarray(value)
        n = a.size
        packed = varints(a)
        body = _ld(0x0A, packed) if n else b""
        tag = 0x1A
    else:
        a = np.asarray(value, dtype="<f4").reshape(-1)
        n = a.size
        body = _ld(0x0A, a.tobytes()) if n else b""
        tag = 0x12
    if field.length is not None and n != field.length:
        raise ValueError(f"feature {field.key!r}: {n} values, expected {field.length}")
    return _ld(tag, body)


def encode_example(fields: Sequence[Field], values: Mapping[str, object]) -> bytes:
    """Serialize one tf.train.Example holding exactly ``fields`` (sorted by key)."""
    missing = [f.key for f in fields if f.key not in values]
    if missing:
        raise KeyError(f"record lacks features: {', '.join(missing)}")
    extra = set(values) - {f.key for f in fields}
    if extra:
        raise KeyError(f"record has features not in the schema: {', '.join(sorted(extra))}")
    entries = []
    for f in sorted(fields, key=lambda f: f.key):
        entry = _ld(0x0A, f.key.encode()) + _ld(0x12, _feature(f, values[f.key]))
        entries.append(_ld(0x0A, entry))
    return _ld(0x0A, b"".join(entries))


def frame(record: bytes) -> bytes:
    """One TFRecord: length, masked CRC of the length, data, masked CRC of the data."""
    header = struct.pack("<Q", len(record))
    return header + struct.pack("<I", masked_crc32c(header)) + record + struct.pack(
        "<I", masked_crc32c(record))


class TFRecordWriter:
    """Write framed records to ``path`` (optionally GZIP, with a fixed header: no name, mtime 0)."""

    def __init__(self, path: str | os.PathLike, compression: str | None = None):
        self.path = str(path)
        self._raw = open(self.path, "wb")
        if compression in (None, "", "NONE"):
            self._out: BinaryIO = self._raw
        elif compression == "GZIP":
            self._out = gzip.GzipFile(filename="", mode="wb", fileobj=self._raw, mtime=0, compresslevel=6)
        else:
            raise ValueError(f"unknown compression {compression!r}; use NONE or GZIP")

    def write(self, record: bytes) -> None:
        self._out.write(frame(record))

    def close(self) -> None:
        if self._out is not self._raw:
            self._out.close()
        self._raw.flush()
        os.fsync(self._raw.fileno())
        self._raw.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class CorruptRecordError(ValueError):
    pass


def read_records(path: str | os.PathLike, compression: str | None = None) -> Iterator[bytes]:
    """Yield the records of a TFRecord file, checking both CRCs; corruption names file and offset."""
    path = str(path)
    if compression is None:
        compression = "GZIP" if path.endswith(".gz") else "NONE"
    raw = open(path, "rb")
    f: io.BufferedIOBase = gzip.GzipFile(fileobj=raw, mode="rb") if compression == "GZIP" else raw
    offset = 0
    try:
        while True:
            header = f.read(12)
            if not header:
                return
            if len(header) < 12:
                raise CorruptRecordError(f"{path}: truncated record header at byte {offset}")
            (length,) = struct.unpack("<Q", header[:8])
            (crc,) = struct.unpack("<I", header[8:])
            if masked_crc32c(header[:8]) != crc:
                raise CorruptRecordError(f"{path}: bad length CRC at byte {offset}")
            data = f.read(length)
            tail = f.read(4)
            if len(data) < length or len(tail) < 4:
                raise CorruptRecordError(f"{path}: truncated record at byte {offset}")
            if masked_crc32c(data) != struct.unpack("<I", tail)[0]:
                raise CorruptRecordError(f"{path}: bad data CRC in record at byte {offset}")
            offset += 16 + length
            yield data
    except (OSError, EOFError) as e:  # gzip errors on a truncated/corrupt stream
        raise CorruptRecordError(f"{path}: {e}") from e
    finally:
        f.close()
        raw.close()
