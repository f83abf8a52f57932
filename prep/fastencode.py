"""Schema-compiled tf.train.Example encoding: the bytes of prep.tfrecord.encode_example, faster.

``CompiledSchema(fields)`` works out once, per feature, the bytes that never change (the map
entry's key, the tags) and then encodes records or single feature entries with little Python
work per value:

    cs = CompiledSchema(schema.fields)
    cs.encode(values) == tfrecord.encode_example(schema.fields, values)   # always, byte for byte

Values take the same forms as ``encode_example`` accepts; the common ones (one bytes object, a
list of Python ints) take short paths and everything else goes through prep.tfrecord itself.

``BlockLayout`` encodes many records at once when some features are single bytes values of a
fixed size (raw pixel bands). Records then share one byte layout: each run of such features
(consecutive in sorted key order) is a row of an ``(n, run_bytes)`` uint8 buffer whose entry
headers are written once, and a producer fills the pixel bytes of all rows of a chunk with numpy
slice assignments (``block.column(key)``). ``block.record(i, entries)`` then joins row ``i`` of
each run with the encoded entries of the other features (``cs.entry``) into the serialized
Example. So2Sat (prep.datasets.so2sat.raw) uses it for its 18 bands; BigEarthNet's compact schema has the same
shape (12 fixed-size bands first, then small variable label and metadata features).

Wire format reminder: Example = field 1 (Features); Features = repeated field 1 (map entry);
entry = field 1 (key string) + field 2 (Feature); Feature = field 1 BytesList | 2 FloatList |
3 Int64List; the lists hold repeated bytes (field 1), or packed floats / varints (field 1).
Entries are written in sorted key order, as encode_example writes them.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np

from prep import tfrecord
from prep.datasets.spec import Field

_VARINT_CACHE = 1 << 14
_SMALL = [bytes((n,)) for n in range(128)] + [bytes(((n & 0x7F) | 0x80, n >> 7)) for n in range(128, _VARINT_CACHE)]


def varint(n: int) -> bytes:
    """Protobuf varint of an int (negative ints take the 64-bit two's complement: 10 bytes)."""
    if 0 <= n < _VARINT_CACHE:
        return _SMALL[n]
    if 0 <= n < 1 << 21:
        return bytes(((n & 0x7F) | 0x80, ((n >> 7) & 0x7F) | 0x80, n >> 14))
    return tfrecord._varint(n & 0xFFFFFFFFFFFFFFFF)


def _ld(tag: int, payload_len: int) -> bytes:
    """Tag and length of a length-delimited field."""
    return bytes((tag,)) + varint(payload_len)


class CompiledSchema:
    """Per-feature constant bytes of a schema; ``encode`` / ``entry`` give encode_example's bytes."""

    def __init__(self, fields: Sequence[Field]):
        self._given = tuple(f.key for f in fields)  # for error messages in encode_example's order
        self.fields = tuple(sorted(fields, key=lambda f: f.key))
        self.keys = tuple(f.key for f in self.fields)
        if len(set(self.keys)) != len(self.keys):
            raise ValueError(f"schema repeats a feature key: {self.keys}")
        self._by_key = {f.key: f for f in self.fields}
        self._keyset = frozenset(self.keys)
        # b"\x0a" varint(len(key)) key: field 1 of the map entry.
        self._key_part = {f.key: _ld(0x0A, len(f.key.encode())) + f.key.encode() for f in self.fields}

    def field(self, key: str) -> Field:
        """Returns the schema's field ``key`` (KeyError if there is none)."""
        return self._by_key[key]

    # --- single entries ---
    def feature(self, key: str, value: Any) -> bytes:
        """Serializes the Feature message of one value, as encode_example writes it.

        Args:
            key: a feature key of the schema.
            value: any form ``tfrecord.encode_example`` accepts for that feature (bytes, a list of
                bytes or ints, a numpy array...).

        Raises:
            KeyError: ``key`` is not in the schema.
            ValueError: the value count differs from the field's fixed length.
            TypeError: a value of the wrong type for the field's kind.
        """
        f = self._by_key[key]
        kind = f.kind
        if kind == "bytes":
            if type(value) is bytes:
                items = (value,)
            elif type(value) in (list, tuple) and all(type(v) is bytes for v in value):
                items = value
            else:
                return b"".join(tfrecord._feature(f, value).items)
            if f.length is not None and len(items) != f.length:
                raise ValueError(f"feature {key!r}: {len(items)} values, expected {f.length}")
            if len(items) == 1:
                it = items[0]
                n = len(it)
                lst = _ld(0x0A, n)
                return b"".join((_ld(0x0A, len(lst) + n), lst, it))
            lst = b"".join([_ld(0x0A, len(it)) + it for it in items])
            return _ld(0x0A, len(lst)) + lst
        if kind == "int64" and type(value) in (list, tuple) and all(type(v) is int for v in value):
            if f.length is not None and len(value) != f.length:
                raise ValueError(f"feature {key!r}: {len(value)} values, expected {f.length}")
            if not value:
                return b"\x1a\x00"
            if min(value) < 0 or max(value) >= 1 << 63:
                return b"".join(tfrecord._feature(f, value).items)
            packed = b"".join([varint(v) for v in value])
            inner = _ld(0x0A, len(packed)) + packed
            return _ld(0x1A, len(inner)) + inner
        return b"".join(tfrecord._feature(f, value).items)

    def entry(self, key: str, value: Any) -> bytes:
        """Serializes one map entry of Features (field 1 framing included): what encode_example writes for ``key``.

        Raises:
            KeyError, ValueError, TypeError: as ``feature``.
        """
        feat = self.feature(key, value)
        body_len = len(self._key_part[key]) + 1 + len(varint(len(feat))) + len(feat)
        return b"".join((_ld(0x0A, body_len), self._key_part[key], _ld(0x12, len(feat)), feat))

    def int64_entry(self, key: str) -> Callable[[Sequence[int]], bytes]:
        """A function: list of ints -> ``entry(key, list)``, with the constant bytes precomputed."""
        f = self._by_key[key]
        if f.kind != "int64":
            raise ValueError(f"feature {key!r} is not an int64 feature")
        body_key = self._key_part[key]
        prefixes: dict[int, bytes] = {}

        def prefix(n: int) -> bytes:  # the entry's bytes in front of n bytes of packed varints
            inner = _ld(0x0A, n)  # Int64List.value, packed
            feat = _ld(0x1A, len(inner) + n)  # Feature.int64_list
            body = body_key + _ld(0x12, len(feat) + len(inner) + n) + feat + inner
            return _ld(0x0A, len(body) + n) + body

        def encode(values: Sequence[int]) -> bytes:
            if type(values) not in (list, tuple) or not values or (f.length is not None and len(values) != f.length) \
                    or not all(type(v) is int for v in values) or min(values) < 0 or max(values) >= 1 << 63:
                return self.entry(key, values)  # the general path (and its errors)
            packed = b"".join([varint(v) for v in values])
            pre = prefixes.get(len(packed))
            if pre is None:
                pre = prefixes[len(packed)] = prefix(len(packed))
            return pre + packed
        return encode

    def bytes_entry(self, key: str) -> Callable[[bytes], bytes]:
        """A function: one bytes object -> ``entry(key, [it])``, with the constant bytes precomputed."""
        f = self._by_key[key]
        if f.kind != "bytes" or f.length not in (None, 1):
            raise ValueError(f"feature {key!r} is not a one-value bytes feature")
        headers: dict[int, bytes] = {}

        def encode(value: bytes) -> bytes:
            if type(value) is not bytes:
                return self.entry(key, [value])
            n = len(value)
            head = headers.get(n)
            if head is None:
                head = self.fixed_bytes_header(key, n)
                if n < 4096:
                    headers[n] = head
            return head + value
        return encode

    def fixed_bytes_header(self, key: str, nbytes: int) -> bytes:
        """The entry bytes in front of the data of a one-value bytes feature holding ``nbytes`` bytes."""
        f = self._by_key[key]
        if f.kind != "bytes" or f.length not in (None, 1):
            raise ValueError(f"feature {key!r} is not a one-value bytes feature")
        lst = _ld(0x0A, nbytes)  # BytesList.value
        feat = _ld(0x0A, len(lst) + nbytes)  # Feature.bytes_list
        tail = self._key_part[key] + _ld(0x12, len(feat) + len(lst) + nbytes) + feat + lst
        return _ld(0x0A, len(tail) + nbytes) + tail

    # --- whole records ---
    def check_keys(self, values: Mapping[str, object]) -> None:
        """Checks that ``values`` has exactly the schema's feature keys.

        Raises:
            KeyError: features missing (listed in schema order) or not in the schema.
        """
        if values.keys() != self._keyset:
            missing = [k for k in self._given if k not in values]
            if missing:
                raise KeyError(f"record lacks features: {', '.join(missing)}")
            extra = set(values) - self._keyset
            raise KeyError(f"record has features not in the schema: {', '.join(sorted(extra))}")

    def encode(self, values: Mapping[str, object]) -> bytes:
        """Serialize one tf.train.Example: the same bytes as ``tfrecord.encode_example``."""
        self.check_keys(values)
        entries = [self.entry(k, values[k]) for k in self.keys]
        return example(entries, sum(map(len, entries)))


def example(pieces: Sequence, size: int) -> bytes:
    """An Example from its Features content given as pieces (entries, buffer rows) totalling ``size``."""
    return b"".join([_ld(0x0A, size), *pieces])


class BlockLayout:
    """Byte layout of records whose ``fixed`` features (key -> data bytes) are one bytes value of fixed size.

    The schema's features in sorted key order fall into runs of fixed features and the other
    ("variable") features between them; ``new_block(n)`` gives buffers for n records.
    """

    def __init__(self, schema: CompiledSchema, fixed: Mapping[str, int]):
        self.schema = schema
        unknown = set(fixed) - set(schema.keys)
        if unknown:
            raise KeyError(f"fixed features not in the schema: {', '.join(sorted(unknown))}")
        self.variable = tuple(k for k in schema.keys if k not in fixed)
        # segments: ("run", run index) or ("var", key), in sorted key order
        self.segments: list[tuple[str, object]] = []
        self.runs: list[list[tuple[str, bytes, int]]] = []  # per run: (key, header, nbytes)
        for k in schema.keys:
            if k in fixed:
                if not self.segments or self.segments[-1][0] != "run":
                    self.segments.append(("run", len(self.runs)))
                    self.runs.append([])
                self.runs[-1].append((k, schema.fixed_bytes_header(k, int(fixed[k])), int(fixed[k])))
            else:
                self.segments.append(("var", k))
        self.run_bytes = [sum(len(h) + n for _, h, n in run) for run in self.runs]
        self.fixed_size = sum(self.run_bytes)
        # where each fixed feature's data sits: key -> (run, offset in the run row, nbytes)
        self.slots: dict[str, tuple[int, int, int]] = {}
        for r, run in enumerate(self.runs):
            off = 0
            for k, h, n in run:
                self.slots[k] = (r, off + len(h), n)
                off += len(h) + n
        self.tail_only = len(self.runs) == 1 and self.segments[0] == ("run", 0)

    def new_block(self, n: int) -> Block:
        """Allocates a ``Block`` of buffers for ``n`` records, entry headers already written."""
        return Block(self, n)


class Block:
    """Buffers for ``n`` records of a BlockLayout: fill the columns, then take ``record(i, ...)``."""

    def __init__(self, layout: BlockLayout, n: int):
        self.layout = layout
        self.n = n
        self.buffers = []
        for run, size in zip(layout.runs, layout.run_bytes):
            buf = np.empty((n, size), np.uint8)
            off = 0
            for _, header, nbytes in run:
                buf[:, off:off + len(header)] = np.frombuffer(header, np.uint8)
                off += len(header) + nbytes
            self.buffers.append(buf)
        self._views = [memoryview(b).cast("B") for b in self.buffers]  # flat: row i = [i*size, (i+1)*size)

    def column(self, key: str) -> np.ndarray:
        """The (n, nbytes) uint8 view where feature ``key``'s data goes (row i = record i)."""
        r, off, nbytes = self.layout.slots[key]
        return self.buffers[r][:, off:off + nbytes]

    def record_tail(self, i: int, tail: Sequence[bytes]) -> bytes:
        """Serializes record ``i`` of a layout whose fixed features come first (``tail_only``).

        The record is the run's row, then ``tail``: the encoded entries of the variable features in
        sorted key order (pieces may each hold several consecutive entries).
        """
        size = self.layout.run_bytes[0]
        return b"".join([_ld(0x0A, size + sum(map(len, tail))), self._views[0][i * size:(i + 1) * size], *tail])

    def record(self, i: int, entries: Sequence[bytes] | Mapping[str, object]) -> bytes:
        """Record ``i``: the fixed features from the buffers, the variable ones from ``entries``.

        ``entries``: the encoded entries of the variable features in sorted key order
        (``CompiledSchema.entry``), or a mapping key -> value of those features.
        """
        lay = self.layout
        if isinstance(entries, Mapping):
            if entries.keys() != set(lay.variable):
                raise KeyError(f"block record needs exactly the features {', '.join(lay.variable)}")
            entries = [lay.schema.entry(k, entries[k]) for k in lay.variable]
        if lay.tail_only:  # one run first, then the variable entries (So2Sat, BigEarthNet compact)
            size = lay.run_bytes[0]
            row = self._views[0][i * size:(i + 1) * size]
            return b"".join([_ld(0x0A, size + sum(map(len, entries))), row, *entries])
        pieces, it, total = [], iter(entries), 0
        for kind, what in lay.segments:
            if kind == "run":
                size = lay.run_bytes[what]
                pieces.append(self._views[what][i * size:(i + 1) * size])
                total += size
            else:
                e = next(it)
                pieces.append(e)
                total += len(e)
        return example(pieces, total)
