"""tf.train.Example encoding and decoding and TFRecord framing in plain Python/NumPy (no TensorFlow import).

Preparation workers use this so that they start fast and stay small. Encoding is
deterministic by construction: features are written in sorted key order, so the same values
always give the same bytes. ``tf.io.parse_example`` and ``tf.data.TFRecordDataset`` read the
output (tested against both). ``parse_example`` / ``example_info`` read any serialized Example
back (``prep.verify`` checks every record with them), ``read_records`` reads the framing and
checks both CRCs.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import os
import struct
from typing import TYPE_CHECKING, Iterator, Mapping, NamedTuple, Sequence

import google_crc32c
import numpy as np

from prep.datasets.spec import Field
from prep.errors import InputError

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

_MASK_DELTA = 0xA282EAD8


def masked_crc32c(data: bytes) -> int:
    """The masked CRC-32C of ``data`` that TFRecord framing stores: an unsigned 32-bit int.

    The CRC-32C (Castagnoli) rotated right by 15 bits plus 0xA282EAD8, modulo 2**32, as
    TensorFlow's ``crc32c::Mask`` (tensorflow/core/lib/hash/crc32c.h; TFRecord format:
    https://www.tensorflow.org/tutorials/load_data/tfrecord#tfrecords_format_details).
    """
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


def varints(values: ArrayLike) -> bytes:
    """Packed protobuf varints of an int64 array (vectorised; negatives take 10 bytes).

    The payload of a packed Int64List: each value as a base-128 varint, 7 bits per byte, low
    groups first, 64-bit two's complement for negatives (protobuf encoding:
    https://protobuf.dev/programming-guides/encoding/#varints).

    Args:
      values: integers of any shape (int, uint or bool dtype), read in row-major order.

    Returns:
      The varints back to back, without tag or length; ``b""`` for no values.

    Raises:
      TypeError: ``values`` are not integers (e.g. floats).
    """
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
    """Serialize one tf.train.Example holding exactly ``fields`` (sorted by key).

    Args:
      fields: the schema's fields (key, kind, fixed length or None).
      values: feature key -> value: for "bytes" one bytes object or a sequence of them, for
        "int64" integers and for "float" numbers of any shape (flattened row-major; floats are
        stored as little-endian float32).

    Returns:
      The serialized Example; the same values always give the same bytes.

    Raises:
      KeyError: ``values`` lacks a field's key or holds a key that is not a field.
      TypeError: a "bytes" value that is not bytes, or an "int64" value that is not integers.
      ValueError: a fixed-length field given another number of values.
    """
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


# --- decoding: the wire format read back, without TensorFlow or protobuf ---------------------------
#
# Example = field 1 (Features); Features = repeated field 1 (map entry: field 1 key string, field 2
# Feature); Feature = one of field 1 BytesList, 2 FloatList, 3 Int64List; each list holds field 1
# repeated: bytes (wire type 2), floats (packed: wire type 2, 4 bytes each little-endian; or one per
# field, wire type 5), int64 (packed varints, wire type 2; or one varint per field, wire type 0).
# Protobuf's parsing rules are kept: unknown fields (and known field numbers with another wire type)
# are skipped, except that a map entry holding one is left out of the map (as protobuf's upb parser
# does); a message field seen twice is merged, the last entry of a repeated map key wins, and a
# Feature whose kind changes keeps only the values of its last kind.

KINDS = ("bytes", "float", "int64")  # Feature field numbers 1, 2, 3 (the Field.kind names)


class ExampleError(InputError):
    """A record that is not a well-formed serialized tf.train.Example."""


class Feature(NamedTuple):
    """One decoded feature (``parse_example``): its kind and its values.

    ``kind`` is "bytes" | "float" | "int64", or None for a Feature with no list set; ``values`` is a
    list of bytes, a float32 [n] or an int64 [n] array (an empty list when ``kind`` is None).
    """

    kind: str | None
    values: list | np.ndarray


class FeatureInfo(NamedTuple):
    """What a feature holds, without decoding its values (``example_info``).

    ``kind`` (as ``Feature``), ``count`` (number of values) and ``sizes`` (the length in bytes of
    each value of a bytes feature; () otherwise).
    """

    kind: str | None
    count: int
    sizes: tuple[int, ...]


def _read_varint(buf, pos: int, end: int) -> tuple[int, int]:
    """(value, next position) of the varint at ``buf[pos]``, which must end before ``end``."""
    if pos >= end:
        raise ExampleError(f"truncated varint at byte {pos}")
    b = buf[pos]
    if b < 0x80:
        return b, pos + 1
    value, shift, at = b & 0x7F, 7, pos
    pos += 1
    while True:
        if pos >= end:
            raise ExampleError(f"truncated varint at byte {at}")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value & 0xFFFFFFFFFFFFFFFF, pos
        shift += 7
        if shift >= 70:
            raise ExampleError(f"varint longer than 10 bytes at byte {at}")


def _skip_group(buf, pos: int, end: int, number: int) -> int:
    """Position after the end-group tag closing the group ``number`` whose fields start at ``pos``."""
    while True:
        at = pos
        tag, pos = _read_varint(buf, pos, end)
        wire = tag & 7
        if wire == 4:
            if tag >> 3 != number:
                raise ExampleError(f"end of group {tag >> 3} at byte {at} closes group {number}")
            return pos
        pos = _skip_value(buf, pos, end, tag >> 3, wire, at)


def _skip_value(buf, pos: int, end: int, number: int, wire: int, at: int) -> int:
    if wire == 0:
        return _read_varint(buf, pos, end)[1]
    if wire == 2:
        n, pos = _read_varint(buf, pos, end)
        if n > end - pos:
            raise ExampleError(f"field {number} at byte {at} runs past the end of its message")
        return pos + n
    if wire in (1, 5):
        size = 8 if wire == 1 else 4
        if pos + size > end:
            raise ExampleError(f"field {number} at byte {at} runs past the end of its message")
        return pos + size
    if wire == 3:
        return _skip_group(buf, pos, end, number)
    raise ExampleError(f"wire type {wire} of field {number} at byte {at}")


def message_fields(buf: bytes, start: int, end: int) -> Iterator[tuple[int, int, int, int, int]]:
    """Walk the fields of the protobuf message ``buf[start:end]``, in order, without decoding them.

    Groups (wire types 3/4) are skipped. For a length-delimited field (wire type 2) the value span
    is its payload, after the length; for a varint or a fixed 32/64-bit value, the value's bytes.

    Args:
      buf: the serialized bytes holding the message (e.g. a whole record).
      start: byte offset of the message's first field in ``buf``.
      end: byte offset just past the message's last field.

    Yields:
      (field number, wire type, value start, value end, field start): byte offsets into ``buf``.

    Raises:
      ExampleError: a truncated or overlong field, an invalid tag or wire type.
    """
    pos = start
    while pos < end:
        at = pos
        tag, pos = _read_varint(buf, pos, end)
        number, wire = tag >> 3, tag & 7
        if number == 0 or tag > 0xFFFFFFFF:
            raise ExampleError(f"invalid field tag {tag} at byte {at}")
        if wire == 2:
            n, pos = _read_varint(buf, pos, end)
            if n > end - pos:
                raise ExampleError(f"field {number} at byte {at} runs past the end of its message")
            yield number, 2, pos, pos + n, at
            pos += n
        elif wire == 3:
            pos = _skip_group(buf, pos, end, number)
        else:
            value = pos
            pos = _skip_value(buf, pos, end, number, wire, at)
            yield number, wire, value, pos, at


def _packed_varints(buf, start: int, end: int) -> np.ndarray:
    """The bytes of a packed varint payload as uint8, checked to be whole varints of at most 10 bytes."""
    a = np.frombuffer(buf, np.uint8, end - start, start)
    if a.size:
        ends = np.flatnonzero(a < 0x80)
        if ends.size == 0 or ends[-1] != a.size - 1:
            raise ExampleError(f"truncated packed varints at byte {start}")
        if ends[0] >= 10 or (ends.size > 1 and np.diff(ends).max() > 10):
            raise ExampleError(f"varint longer than 10 bytes in the packed field at byte {start}")
    return a


def _scan(buf) -> dict[str, tuple[str | None, list[tuple[int, int, int]]]]:
    """Map each feature key of a serialized Example to (kind, [(wire type, start, end) of each value or packed run])."""
    features: dict[str, tuple[str | None, list]] = {}
    for number, wire, a, b, _ in message_fields(buf, 0, len(buf)):
        if number != 1 or wire != 2:
            continue  # not Example.features
        for number2, wire2, ea, eb, _ in message_fields(buf, a, b):
            if number2 != 1 or wire2 != 2:
                continue  # not a Features.feature map entry
            key, kind, spans, known = b"", None, [], True
            for number3, wire3, va, vb, _ in message_fields(buf, ea, eb):
                if number3 == 1 and wire3 == 2:
                    key = buf[va:vb]
                elif number3 == 2 and wire3 == 2:  # the Feature (a repeated one merges into the first)
                    kind, spans = _scan_feature(buf, va, vb, kind, spans)
                else:
                    known = False
            if not known:  # protobuf keeps a map entry with unknown fields out of the map
                continue
            try:
                name = bytes(key).decode("utf-8")
            except UnicodeDecodeError:
                raise ExampleError(f"a feature key is not UTF-8 text: {bytes(key)[:40]!r}") from None
            features[name] = (kind, spans)
    return features


def _scan_feature(buf, start: int, end: int, kind: str | None, spans: list) -> tuple[str | None, list]:
    for number, wire, la, lb, _ in message_fields(buf, start, end):
        if number not in (1, 2, 3) or wire != 2:
            continue
        k = KINDS[number - 1]
        if k != kind:  # a oneof: setting another member clears the previous one
            kind, spans = k, []
        for number2, wire2, a, b, _ in message_fields(buf, la, lb):
            if number2 != 1:
                continue
            if k == "bytes":
                if wire2 == 2:
                    spans.append((2, a, b))
            elif k == "float":
                if wire2 == 2 and (b - a) % 4:
                    raise ExampleError(f"packed floats at byte {a} are {b - a} bytes, not a multiple of 4")
                if wire2 in (2, 5):
                    spans.append((wire2, a, b))
            elif wire2 == 2:
                _packed_varints(buf, a, b)
                spans.append((2, a, b))
            elif wire2 == 0:
                spans.append((0, a, b))
    return kind, spans


def _count(buf, kind: str | None, spans: list[tuple[int, int, int]]) -> int:
    if kind == "bytes":
        return len(spans)
    if kind == "float":
        return sum((b - a) // 4 for _, a, b in spans)
    if kind == "int64":
        return sum(int(np.count_nonzero(np.frombuffer(buf, np.uint8, b - a, a) < 0x80)) if w == 2 else 1
                   for w, a, b in spans)
    return 0


def _decode_varints(a: np.ndarray) -> np.ndarray:
    """int64 values of whole varints given as uint8 bytes (vectorised; 64-bit two's complement)."""
    if a.size == 0:
        return np.zeros(0, np.int64)
    ends = np.flatnonzero(a < 0x80)
    starts = np.concatenate(([0], ends[:-1] + 1))
    place = np.arange(a.size) - np.repeat(starts, ends - starts + 1)  # index of each byte in its varint
    groups = (a & 0x7F).astype(np.uint64) << (np.uint64(7) * place.astype(np.uint64))
    return np.add.reduceat(groups, starts).view(np.int64)  # the 7-bit groups never overlap: sum == or


def example_info(record: bytes) -> dict[str, FeatureInfo]:
    """Kind, value count and byte sizes of every feature of a serialized tf.train.Example.

    Values are not decoded (a raw band is one length, a packed int64 list one byte count), so this
    is what checking records against a schema needs, at little cost per record.

    Raises:
      ExampleError: the bytes are not a well-formed Example (truncated or overlong fields, bad
        packed lengths, invalid tags, a key that is not UTF-8).
    """
    out = {}
    for key, (kind, spans) in _scan(record).items():
        sizes = tuple(b - a for _, a, b in spans) if kind == "bytes" else ()
        out[key] = FeatureInfo(kind, _count(record, kind, spans), sizes)
    return out


def parse_example(record: bytes) -> dict[str, Feature]:
    """Decode a serialized tf.train.Example: key -> ``Feature(kind, values)``.

    ``values`` is a list of bytes (BytesList), a float32 array (FloatList) or an int64 array
    (Int64List), in stored order; packed and unpacked repeated fields both read. This is the
    pure-Python counterpart of ``encode_example`` (and of ``tf.train.Example.FromString``).

    Raises:
      ExampleError: the bytes are not a well-formed Example (see ``example_info``).
    """
    out = {}
    for key, (kind, spans) in _scan(record).items():
        if kind == "bytes":
            values: list | np.ndarray = [bytes(record[a:b]) for _, a, b in spans]
        elif kind == "float":
            parts = [np.frombuffer(record, "<f4", (b - a) // 4, a) for _, a, b in spans]
            values = np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)
        elif kind == "int64":
            parts = [_decode_varints(np.frombuffer(record, np.uint8, b - a, a)) for _, a, b in spans]
            values = np.concatenate(parts) if parts else np.zeros(0, np.int64)
        else:
            values = []
        out[key] = Feature(kind, values)
    return out


def frame(record: bytes) -> bytes:
    """One TFRecord: length, masked CRC of the length, data, masked CRC of the data.

    The length is a little-endian uint64 (bytes of ``record``), each CRC a little-endian uint32
    (``masked_crc32c``): 16 bytes more than ``record``. Format: TensorFlow's record writer
    (https://www.tensorflow.org/tutorials/load_data/tfrecord#tfrecords_format_details).
    """
    head, tail = frame_parts(record)
    return b"".join((head, record, tail))


def frame_parts(record: bytes) -> tuple[bytes, bytes]:
    """The 12 bytes ``frame`` puts before ``record`` and the 4 it puts after, without copying ``record``.

    Writing ``head``, ``record`` and ``tail`` one after another gives the bytes of ``frame(record)``;
    for records of megabytes this saves building a second copy (whose fresh pages cost more than
    the CRC on a VM).
    """
    header = struct.pack("<Q", len(record))
    return header + struct.pack("<I", masked_crc32c(header)), struct.pack("<I", masked_crc32c(record))


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
    A context manager: leaving the ``with`` block closes it.

    Args:
      path: the file to create (truncated if it exists).
      compression: None, "" or "NONE" (plain TFRecord) or "GZIP" (level 6).

    Raises:
      ValueError: another ``compression`` (the file, already created, is closed and stays empty).
      OSError: ``path`` cannot be created.
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
        """Append one record (``frame(record)``, compressed when the writer is GZIP)."""
        head, tail = frame_parts(record)
        self._out.write(head)
        self._out.write(record)
        self._out.write(tail)

    def close(self) -> None:
        """Finish the file: the GZIP trailer if any, flush and fsync; ``sha256`` is then complete."""
        if self._out is not self._raw:
            self._out.close()  # writes the gzip trailer into the hashed file
        self._raw.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class CorruptRecordError(InputError):
    """A TFRecord file that cannot be read back: truncated, a bad length or data CRC, or a corrupt GZIP stream."""


def read_records(path: str | os.PathLike, compression: str | None = None) -> Iterator[bytes]:
    """Yield the records of a TFRecord file, checking both CRCs; corruption names file and offset.

    Args:
      path: a TFRecord file.
      compression: "GZIP" or "NONE"; None guesses from the name (GZIP for ``.gz``).

    Yields:
      Each record's data (without its framing), in file order.

    Raises:
      CorruptRecordError: a truncated header or record, a bad length or data CRC, or a corrupt
        GZIP stream; the message names the file and, for a framing error, the record's byte
        offset in the (uncompressed) record stream.
      OSError: ``path`` cannot be opened (raised by the first ``next``, as for any generator).
    """
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
