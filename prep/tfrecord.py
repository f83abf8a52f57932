"""tf.train.Example encoding and TFRecord framing in plain Python/NumPy (no TensorFlow import).

Preparation workers use this so that they start fast and stay small. Encoding is
deterministic by construction: features are written in sorted key order, so the same values
always give the same bytes. ``tf.io.parse_example`` and ``tf.data.TFRecordDataset`` read the
output (tested against both).
"""
from __future__ import annotations

import gzip
import hashlib
import io
import os
import struct
from typing import Iterator, Mapping, Sequence

import google_crc32c
import numpy as np

from prep.datasets.spec import Field
from prep.errors import InputError

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
    if a.min() >= 0 and a.max() < (1 << 21):  # fast path: pixels and labels take at most 3 groups
        u = a.reshape(-1).astype(np.uint32)
        nb = 1 + (u >= 1 << 7).astype(np.int8) + (u >= 1 << 14)
        g = np.empty((u.size, 3), np.uint8)
        g[:, 0] = (u & 0x7F) | ((nb > 1).astype(np.uint8) << 7)
        g[:, 1] = ((u >> 7) & 0x7F) | ((nb > 2).astype(np.uint8) << 7)
        g[:, 2] = u >> 14
        return g[np.arange(3, dtype=np.int8)[None, :] < nb[:, None]].tobytes()
    a = a.reshape(-1).astype(np.int64).view(np.uint64)
    nbytes = np.ones(a.shape, np.int64)
    v = a >> np.uint64(7)
    while v.any():
        nbytes += v > 0
        v >>= np.uint64(7)
    k = np.arange(int(nbytes.max()), dtype=np.uint64)
    groups = ((a[:, None] >> (np.uint64(7) * k)) & np.uint64(0x7F)).astype(np.uint8)  # (n, K) 7-bit groups
    keep = k[None, :].astype(np.int64) < nbytes[:, None]
    groups[:, :-1] |= (keep[:, 1:].astype(np.uint8) << 7)  # continuation bit where a next group follows
    return groups[keep].tobytes()  # row-major: the groups of each value in order


class _Parts:
    """Pieces of a message and their total length: nested fields are joined once, at the end."""

    __slots__ = ("items", "size")

    def __init__(self, items=None, size=0):
        self.items, self.size = items or [], size

    def add(self, data) -> None:
        self.items.append(data)
        self.size += len(data)

    def field(self, tag: int, inner: "_Parts") -> None:
        """Append a length-delimited field holding ``inner``."""
        self.add(bytes((tag,)) + _varint(inner.size))
        self.items.extend(inner.items)
        self.size += inner.size


def _feature(field: Field, value) -> _Parts:
    lst = _Parts()
    if field.kind == "bytes":
        items = [value] if isinstance(value, (bytes, bytearray)) else list(value)
        for it in items:
            if not isinstance(it, (bytes, bytearray)):
                raise TypeError(f"feature {field.key!r}: bytes expected, got {type(it).__name__}")
            lst.add(b"\x0a" + _varint(len(it)))
            lst.add(it)
        n, tag = len(items), 0x0A
    elif field.kind == "int64":
        a = np.asarray(value)
        n = a.size
        if n:
            lst.field(0x0A, _one(varints(a)))
        tag = 0x1A
    else:
        a = np.asarray(value, dtype="<f4").reshape(-1)
        n = a.size
        if n:
            lst.field(0x0A, _one(a.tobytes()))
        tag = 0x12
    if field.length is not None and n != field.length:
        raise ValueError(f"feature {field.key!r}: {n} values, expected {field.length}")
    feat = _Parts()
    feat.field(tag, lst)
    return feat


def _one(data) -> _Parts:
    return _Parts([data], len(data))


def encode_example(fields: Sequence[Field], values: Mapping[str, object]) -> bytes:
    """Serialize one tf.train.Example holding exactly ``fields`` (sorted by key)."""
    missing = [f.key for f in fields if f.key not in values]
    if missing:
        raise KeyError(f"record lacks features: {', '.join(missing)}")
    extra = set(values) - {f.key for f in fields}
    if extra:
        raise KeyError(f"record has features not in the schema: {', '.join(sorted(extra))}")
    features = _Parts()
    for f in sorted(fields, key=lambda f: f.key):
        entry = _one(b"\x0a" + _varint(len(f.key.encode())) + f.key.encode())
        entry.field(0x12, _feature(f, values[f.key]))
        features.field(0x0A, entry)
    example = _Parts()
    example.field(0x0A, features)
    return b"".join(example.items)


def frame(record: bytes) -> bytes:
    """One TFRecord: length, masked CRC of the length, data, masked CRC of the data."""
    header = struct.pack("<Q", len(record))
    return header + struct.pack("<I", masked_crc32c(header)) + record + struct.pack(
        "<I", masked_crc32c(record))


class _HashedFile:
    """A binary file that feeds every byte written to it into a SHA-256 (the file's digest, no re-read)."""

    BUFFER = 4 << 20  # large writes: ~40% less system time than one write call per 75 KB record

    def __init__(self, path: str):
        self._f = open(path, "wb", buffering=self.BUFFER)
        self.sha256 = hashlib.sha256()

    def write(self, data) -> int:
        self.sha256.update(data)
        return self._f.write(data)

    def flush(self) -> None:
        self._f.flush()

    def close(self) -> None:
        self._f.flush()
        os.fsync(self._f.fileno())
        if hasattr(os, "posix_fadvise"):
            # The synced file leaves the page cache: the next shard's writes reuse those pages instead
            # of touching fresh memory (measured: 15% faster So2Sat conversion, steadier system time),
            # and a 25 GB output does not push the rest of the cache out. Readers fetch it from disk.
            try:
                os.posix_fadvise(self._f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
            except OSError:  # advice only: file systems that refuse it keep the pages
                pass
        self._f.close()


class TFRecordWriter:
    """Write framed records to ``path`` (optionally GZIP, with a fixed header: no name, mtime 0).

    ``sha256`` is the digest of the bytes written to the file, complete once the writer is closed.
    """

    def __init__(self, path: str | os.PathLike, compression: str | None = None):
        self.path = str(path)
        self._raw = _HashedFile(self.path)
        self.sha256 = self._raw.sha256
        if compression in (None, "", "NONE"):
            self._out = self._raw
        elif compression == "GZIP":
            self._out = gzip.GzipFile(filename="", mode="wb", fileobj=self._raw, mtime=0, compresslevel=6)
        else:
            self._raw.close()
            raise ValueError(f"unknown compression {compression!r}; use NONE or GZIP")

    def write(self, record: bytes) -> None:
        self._out.write(frame(record))

    def close(self) -> None:
        if self._out is not self._raw:
            self._out.close()  # writes the gzip trailer into the hashed file
        self._raw.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class CorruptRecordError(InputError):
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
