"""The input pipeline: the shards of a prepared output directory -> batches of (features, targets).

One module serves train.py, evaluate.py, the benchmarks and the TFDS builders. Everything it
needs to know about the records comes from the directory's ``manifest.json`` (dataset, schema,
bands, classes, shard files, train-split statistics) and from the dataset definition it names
(``prep.datasets.get``): feature keys, band encodings and the label layout are never written here.

Per batch (records are batched first, then parsed together with ``tf.io.parse_example``):

1. parse the selected bands (raw little-endian bytes, Int64List or FloatList) and the labels (for a
   mask schema, ``Schema.mask_sources``: per-pixel class ids, ``mask_targets``);
2. stack the bands of one native grid, apply the same random dihedral transform (flips and 90
   degree rotations) to every grid of a sample when augmenting;
3. clip the bands whose definition gives a value range (``Band.clip``, e.g. SEN12MS S1 to [-25, 0] dB),
   then normalize each band with its own (mean, std), looked up by band name;
4. resample lower-resolution grids to the finest selected grid (bicubic as upstream, bilinear,
   nearest, ...) and concatenate in the selected band order, or deliver one tensor per
   resolution group (``per_resolution=True``, e.g. for K-BranchCNN).

Steps 2-4 run as one XLA-compiled function per batch: resampling is done with the exact
per-axis weights of ``tf.image.resize`` (taken by resizing an identity matrix), applied as a few
gathers that XLA fuses with the casts, flips and normalization. ``jit_compile=False`` runs the
same steps as plain TensorFlow ops (``tf.image.resize``); both give the same numbers.

Raw-bytes bands are not parsed one by one: each batch's records are decoded once as uint8 up to
the end of the last selected band, and the bands are sliced out inside the XLA clusters at the
offsets of the split's first record (checked on every record; a batch that differs is parsed).

Raw delivery (``raw=True``) stops after step 1: one band-sequential tensor per grid group in the
stored dtype, plus the augmentation draws, for ``models.preprocess.Preprocess`` to finish on the
accelerator with the same numbers.

Band selections are a preset name ("10m20m", "all", ...), a comma list of band names, or
presets joined by "+" ("10m+20m+60m" = the K-BranchCNN order B04 B03 B02 B08, B05 ... B12,
B01 B09).
"""
from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import sys
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np

from prep import datasets, features
from prep import manifest as manifest_module
from prep.datasets.spec import IGNORE_INDEX, MULTI_LABEL, SINGLE_LABEL, DatasetSpec, MaskSource, Schema
from prep.errors import InputError
from prep.quiet import import_tensorflow

if TYPE_CHECKING:
    from typing import Callable

tf = import_tensorflow()

MANIFEST = manifest_module.MANIFEST
AUTOTUNE = tf.data.AUTOTUNE
RESAMPLE_METHODS = ("bicubic", "bilinear", "nearest", "area", "lanczos3", "lanczos5", "mitchellcubic",
                    "gaussian")
AUGMENTATIONS = ("dihedral", "flips")
NORMALIZATIONS = ("manifest", "upstream")
OUTPUT_DTYPES = ("float32", "bfloat16", "float16")
AUGMENT_KEY = "dihedral_bits"
"""Raw delivery's feature of the augmentation draws: bool [B, 3] (``dihedral``'s ``bits``)."""
_READ_BUFFER = 4 << 20

log = logging.getLogger(__name__)


class ReaderError(InputError):
    """A prepared directory or a pipeline option that cannot be read as asked."""


# --- manifest and band layout --------------------------------------------------------------------


load_manifest = manifest_module.load
"""``load_manifest(data_dir) -> Manifest``: ``prep.manifest.load`` (InputError saying what is wrong)."""


def dataset_spec(manifest: Mapping) -> DatasetSpec:
    """The definition (bands, classes, schemas) of the dataset the manifest names (``prep.datasets.get``).

    Raises:
      KeyError: the manifest names no registered dataset (the message lists them).
    """
    return datasets.get(manifest["dataset"])


def record_schema(manifest: Mapping) -> Schema:
    """The ``Schema`` the manifest's records were written with (feature keys, kinds, band encoding).

    Raises:
      KeyError: an unknown dataset, or a schema the dataset does not define.
    """
    return dataset_spec(manifest).schema(manifest["schema"])


def task(manifest: Mapping) -> str:
    """The learning task, "multi_label", "single_label" or "segmentation": the manifest's ``task``, else the dataset's."""
    return manifest.get("task") or dataset_spec(manifest).task


def resolve_bands(spec: DatasetSpec, bands: str | Sequence[str]) -> tuple[str, ...]:
    """Preset, comma list, presets joined by '+', or a list of names -> band names (validated)."""
    if isinstance(bands, str) and "+" in bands:
        names: list[str] = []
        for part in bands.split("+"):
            names.extend(spec.resolve_bands(part.strip()))
        return spec.resolve_bands(names)
    return spec.resolve_bands(bands if isinstance(bands, str) else list(bands))


@dataclasses.dataclass(frozen=True)
class Group:
    """Bands that share a native grid, stacked into one tensor."""

    name: str
    bands: tuple[str, ...]
    shape: tuple[int, int]


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where each selected band goes: its grid group, the target grid, the output order."""

    bands: tuple[str, ...]
    groups: tuple[Group, ...]
    per_resolution: bool
    target: tuple[int, int]
    dtypes: Mapping[str, str]
    clips: tuple[tuple[str, float, float], ...] = ()  # (band, lo, hi): clipped before normalisation

    def input_spec(self) -> dict[str, tuple[int, int, int]]:
        """{input name: (H, W, C)} of the features: {"image": target grid} or one entry per group.

        H, W in pixels (rows, cols), C the number of bands; with ``per_resolution`` each group
        keeps its native grid and is named by its resolution group (e.g. "10m", "20m", "60m";
        "HxW" for bands without one).
        """
        if self.per_resolution:
            return {g.name: (*g.shape, len(g.bands)) for g in self.groups}
        return {"image": (*self.target, len(self.bands))}

    def raw_input_spec(self) -> dict[str, tuple[tuple[int, int, int], str]]:
        """{input name: ((C, H, W), stored dtype)} of raw delivery (``make_dataset(raw=True)``).

        One entry per grid group (``raw_input_name``), band-sequential (C bands of H x W pixels)
        at the group's native grid, in the stored dtype (e.g. uint16 BOA reflectance, float32 S1
        backscatter).
        """
        return {raw_input_name(g): ((len(g.bands), *g.shape), self.dtypes[g.bands[0]]) for g in self.groups}

    @property
    def order(self) -> list[int]:
        """Channel permutation from the grouped concatenation to the selected band order."""
        grouped = [b for g in self.groups for b in g.bands]
        return [grouped.index(b) for b in self.bands]


def raw_input_name(group: Group | str) -> str:
    """The feature name of a grid group in raw delivery: "raw_" + its name, non-alphanumerics as "_".

    E.g. "raw_120x120" and "raw_60x60" for BigEarthNet's 10m20m selection, "raw_10m" per
    resolution group; valid as a Keras input and a SavedModel signature argument name.
    """
    name = group if isinstance(group, str) else group.name
    return "raw_" + "".join(c if c.isalnum() else "_" for c in name)


def layout(manifest: Mapping, bands: str | Sequence[str] = "10m20m", per_resolution: bool = False) -> Layout:
    """Group the selected bands by native grid and choose the output grid (the finest selected).

    Args:
      manifest: a prepared folder's manifest (``load_manifest``); its band table gives each stored
        band's shape [rows, cols], dtype and group.
      bands: a preset ("10m20m", "all", ...), a comma list of band names, presets joined by "+",
        or a sequence of names (``resolve_bands``).
      per_resolution: group by resolution group (the band table's ``group``, else the dataset's,
        else the grid) and deliver one tensor per group, instead of one "image" on the target grid.

    Returns:
      The ``Layout``: bands in the selected order, their groups, the target grid (H, W) with the
      most pixels, and each band's stored dtype.

    Raises:
      ReaderError: a selected band is not stored in the records, or (``per_resolution``) two bands
        of one group have different grids.
      KeyError: an unknown band name (``resolve_bands``).
      ValueError: an empty selection, or one that repeats a band.
    """
    spec = dataset_spec(manifest)
    names = resolve_bands(spec, bands)
    stored = {b["name"]: b for b in manifest["bands"]}
    missing = [n for n in names if n not in stored]
    if missing:
        raise ReaderError(f"bands {', '.join(missing)} are not in the records of this {manifest['dataset']} "
                          f"output (stored: {', '.join(stored)})")
    groups: dict[str, list[str]] = {}
    shapes: dict[str, tuple[int, int]] = {}
    for n in names:
        shape = tuple(int(s) for s in stored[n]["shape"])
        if per_resolution:
            key = stored[n].get("group") or spec.band(n).group or f"{shape[0]}x{shape[1]}"
            if key in shapes and shapes[key] != shape:
                raise ReaderError(f"band {n} ({shape}) does not share the grid of group {key!r} ({shapes[key]})")
        else:  # one stack per grid and stored dtype (SEN12MS mixes float32 S1 with uint16 S2 on one grid)
            key = f"{shape[0]}x{shape[1]}"
            dtype = stored[n].get("dtype") or spec.band(n).dtype
            if dtype != (stored[names[0]].get("dtype") or spec.band(names[0]).dtype):
                key += f"/{dtype}"
        groups.setdefault(key, []).append(n)
        shapes[key] = shape
    target = max(shapes.values(), key=lambda s: (s[0] * s[1], s))
    return Layout(
        bands=names,
        groups=tuple(Group(k, tuple(v), shapes[k]) for k, v in groups.items()),
        per_resolution=per_resolution,
        target=target,
        dtypes={n: stored[n].get("dtype") or spec.band(n).dtype for n in names},
        clips=tuple((n, *spec.band(n).clip) for n in names if spec.band(n).clip),
    )


def input_spec(manifest: Mapping, bands: str | Sequence[str] = "10m20m",
               per_resolution: bool = False) -> dict[str, tuple[int, int, int]]:
    """{input name: (H, W, C)} of the features ``make_dataset`` yields for these options."""
    return layout(manifest, bands, per_resolution).input_spec()


def num_examples(manifest: Mapping, split: str) -> int:
    """The number of records of ``split``: its ``written`` count, else the sum over its shards.

    Raises:
      ReaderError: the manifest has no split ``split`` (the message lists its splits).
    """
    s = _split(manifest, split)
    if "written" in s:
        return int(s["written"])
    return sum(int(sh["records"]) for sh in s["shards"])


def steps_per_epoch(manifest: Mapping, split: str, batch_size: int, drop_remainder: bool = False) -> int:
    """Batches in one pass over ``split``: ceil(n / batch_size), or floor with ``drop_remainder``.

    Raises:
      ReaderError: the manifest has no split ``split``.
    """
    n = num_examples(manifest, split)
    return n // batch_size if drop_remainder else -(-n // batch_size)


def _split(manifest: Mapping, split: str) -> Mapping:
    try:
        return manifest["splits"][split]
    except KeyError:
        raise ReaderError(f"the {manifest['dataset']} output has no split {split!r} "
                          f"(splits: {', '.join(manifest['splits'])})") from None


def shard_files(data_dir: str | os.PathLike, manifest: Mapping, split: str) -> list[str]:
    """Paths of the shards of ``split``, in the manifest's order (``data_dir/<file>``).

    Raises:
      ReaderError: the manifest has no split ``split``.
      FileNotFoundError: a shard listed in the manifest is missing from ``data_dir``.
    """
    files = [os.path.join(os.fspath(data_dir), sh["file"]) for sh in _split(manifest, split)["shards"]]
    for f in files:
        if not os.path.exists(f):
            raise FileNotFoundError(f"{f}: shard listed in the manifest is missing")
    return files


# --- normalization -------------------------------------------------------------------------------


def band_statistics(manifest: Mapping, normalize: str | Mapping[str, Mapping[str, float] | Sequence[float]] | bool | None,
                    bands: Sequence[str]) -> dict[str, tuple[float, float]] | None:
    """The per-band (mean, std) that normalization subtracts and divides by, for ``bands``.

    Statistics are in the units of the stored band values (e.g. BigEarthNet-S2's uint16 L2A
    values); a std that is not positive is replaced by 1 with a warning.

    Args:
      manifest: a prepared folder's manifest (``load_manifest``).
      normalize: "manifest" (the train split's statistics in the manifest), "upstream" (the table
        published with the dataset's reference models: ``Dataset.upstream_stats``), a
        {band: {"mean", "std"}} or {band: (mean, std)} mapping, the path of a ``.json`` file of
        one, or None / False / "" / "none" / "None" (no normalization).
      bands: the band names to look up.

    Returns:
      Band name -> (mean, std) as floats, or None for no normalization.

    Raises:
      ReaderError: no train-split statistics in the manifest ("manifest"), no published table
        ("upstream"), a band missing from the table, or any other ``normalize``.
      OSError: the ``.json`` file cannot be read.
      ValueError: the ``.json`` file is not JSON.
    """
    if normalize in (None, False, "", "none", "None"):
        return None
    if normalize == "manifest":
        stats = (manifest.get("statistics") or {}).get("train")
        if not stats:
            raise ReaderError(f"the {manifest['dataset']} manifest has no train-split statistics (splits: "
                              f"{', '.join(manifest.get('splits') or {}) or 'none'}); use normalize='upstream', "
                              "pass a {band: (mean, std)} table, or prepare a split named 'train'")
        table = {b: (stats[b]["mean"], stats[b]["std"]) for b in stats if stats[b]}
        source = "the manifest's train statistics"
    elif normalize == "upstream":
        published = datasets.dataset(manifest["dataset"]).upstream_stats
        if published is None:
            raise ReaderError(f"no per-band statistics are published for {manifest['dataset']}; "
                              "use normalize='manifest' (the train split's statistics)")
        table = dict(published)
        source = "the upstream table"
    elif isinstance(normalize, Mapping):
        table, source = normalize, "the given table"
    elif isinstance(normalize, str) and normalize.endswith(".json"):
        with open(normalize, encoding="utf-8") as f:
            table, source = json.load(f), normalize
    else:
        raise ReaderError(f"normalize must be one of {NORMALIZATIONS}, None, a mapping or a .json file; "
                          f"got {normalize!r}")
    out = {}
    for b in bands:
        if b not in table:
            raise ReaderError(f"no statistics for band {b} in {source}")
        v = table[b]
        mean, std = (v["mean"], v["std"]) if isinstance(v, Mapping) else v
        std = float(std)
        if not std > 0:
            log.warning("band %s has std %s in %s; dividing by 1 instead", b, std, source)
            std = 1.0
        out[b] = (float(mean), std)
    return out


# --- resampling ----------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def resize_weights(n_in: int, n_out: int, method: str = "bicubic") -> np.ndarray:
    """[n_out, n_in] matrix M with resize(x) == M @ x along one axis, exactly as tf.image.resize."""
    with tf.init_scope():  # eager even when first asked for while tracing
        eye = tf.eye(n_in, dtype=tf.float32)[:, :, None, None]  # n_in one-hot "images" of n_in x 1
        r = tf.image.resize(eye, [n_out, 1], method=method, antialias=False)
    return np.ascontiguousarray(r.numpy()[:, :, 0, 0].T)


@functools.lru_cache(maxsize=None)
def resize_taps(n_in: int, n_out: int, method: str = "bicubic") -> tuple[np.ndarray, np.ndarray]:
    """The nonzero weights of ``resize_weights`` as (indices [n_out, K], weights [n_out, K])."""
    m = resize_weights(n_in, n_out, method)
    k = max(1, int((m != 0).sum(1).max()))
    idx = np.zeros((n_out, k), np.int32)
    w = np.zeros((n_out, k), np.float32)
    for o in range(n_out):
        nz = np.flatnonzero(m[o])
        idx[o, :len(nz)] = nz
        w[o, :len(nz)] = m[o, nz]
    return idx, w


def _resize_axis(x: tf.Tensor, n_out: int, axis: int, method: str) -> tf.Tensor:
    idx, w = resize_taps(int(x.shape[axis]), n_out, method)
    shape = [1] * len(x.shape)
    shape[axis] = n_out
    out = None
    for k in range(idx.shape[1]):
        term = tf.gather(x, idx[:, k], axis=axis) * tf.constant(w[:, k].reshape(shape))
        out = term if out is None else out + term
    return out


def resize(x: tf.Tensor, size: tuple[int, int], method: str = "bicubic", taps: bool = True) -> tf.Tensor:
    """Resize a [B, H, W, C] float tensor like tf.image.resize (``taps``: as per-axis gathers, for XLA)."""
    if tuple(x.shape[1:3]) == tuple(size):
        return x
    if not taps:
        return tf.image.resize(x, size, method=method, antialias=False)
    if x.shape[1] != size[0]:
        x = _resize_axis(x, size[0], 1, method)
    if x.shape[2] != size[1]:
        x = _resize_axis(x, size[1], 2, method)
    return x


# --- augmentation --------------------------------------------------------------------------------


def dihedral(x: tf.Tensor, bits: tf.Tensor, rotations: bool = True) -> tf.Tensor:
    """Per-sample flips and, on square grids, a transpose: together the 8 flips/90-degree rotations.

    Args:
      x: [B, H, W, C] images of any dtype and any number of bands.
      bits: [B, 3] bool: bits[:, 0] flips left-right, bits[:, 1] up-down, bits[:, 2] transposes.
      rotations: apply bits[:, 2] (only when H == W; else flips only).

    Returns:
      ``x`` transformed per sample: same shape and dtype.
    """
    def sel(k):
        return tf.reshape(bits[:, k], [-1, 1, 1, 1])
    x = tf.where(sel(0), tf.reverse(x, [2]), x)
    x = tf.where(sel(1), tf.reverse(x, [1]), x)
    if rotations and x.shape[1] == x.shape[2]:
        x = tf.where(sel(2), tf.transpose(x, [0, 2, 1, 3]), x)
    return x


def dihedral_packed(x: tf.Tensor, bits: tf.Tensor, rotations: bool = True) -> tf.Tensor:
    """``dihedral`` on a [B, H, W, C] tensor, with the channels of a pixel packed into 32/64-bit words.

    For a dtype narrower than 64 bits, 8, 4 or 2 channels (as many as divide C) are bitcast into
    one 64- or 32-bit word (bit-exact: pixels move whole), so the per-pixel selection runs on fewer
    elements; other tensors go to ``dihedral`` as they are. Same arguments, shape and dtype as
    ``dihedral``.
    """
    size = x.dtype.size
    k = next((k for k in (8 // size, 4 // size) if k > 1 and x.shape[-1] % k == 0), 1) if size < 8 else 1
    if k == 1:
        return dihedral(x, bits, rotations)
    packed_dtype = tf.uint64 if k * size == 8 else tf.uint32
    shape = [-1, *x.shape[1:3]]
    c = x.shape[-1]
    p = tf.bitcast(tf.reshape(x, shape + [c // k, k]), packed_dtype)
    p = dihedral(p, bits, rotations)
    return tf.reshape(tf.bitcast(p, x.dtype), shape + [c])


# --- the dataset ---------------------------------------------------------------------------------


# --- raw-bytes bands at fixed offsets ------------------------------------------------------------


def band_layout(record: bytes, sizes: Mapping[str, int]) -> dict[str, tuple[int, bytes, int]] | None:
    """Where each bytes feature of ``sizes`` sits in a serialized Example, to slice it without parsing.

    Args:
      record: one serialized tf.train.Example (e.g. a split's first record).
      sizes: feature key -> expected payload length in bytes (a raw band: ``prod(shape) * itemsize``).

    Returns:
      Key -> (entry offset, the entry's bytes up to the payload, payload offset), offsets in bytes
      from the start of ``record``; None when a key is missing or is not exactly one bytes value of
      the expected size, or when ``record`` is not a well-formed Example (nothing is raised).
    """
    from prep.tfrecord import message_fields

    try:
        found = {}
        for f, w, a, b, _ in message_fields(record, 0, len(record)):  # Example.features
            if (f, w) != (1, 2):
                continue
            for g, w, ea, eb, at in message_fields(record, a, b):  # Features.feature map entries
                if (g, w) != (1, 2):
                    continue
                key, payload = None, None
                for h, w, va, vb, _ in message_fields(record, ea, eb):
                    if w != 2:
                        continue
                    if h == 1:
                        key = record[va:vb].decode("utf-8", "replace")
                    elif h == 2:  # Feature
                        lists = [(k, la, lb) for k, w, la, lb, _ in message_fields(record, va, vb) if w == 2]
                        if len(lists) == 1 and lists[0][0] == 1:  # bytes_list
                            values = [(x, y) for k, w, x, y, _ in message_fields(record, lists[0][1], lists[0][2])
                                      if (k, w) == (1, 2)]
                            payload = values[0] if len(values) == 1 else None
                if key in sizes and payload is not None and payload[1] - payload[0] == sizes[key]:
                    found[key] = (at, bytes(record[at:payload[0]]), payload[0])
        return found if set(found) == set(sizes) else None
    except (ValueError, IndexError):
        return None


def _band_nbytes(manifest: Mapping, band: str, dtype: str) -> int:
    shape = next(b["shape"] for b in manifest["bands"] if b["name"] == band)
    return int(np.prod([int(v) for v in shape])) * np.dtype(dtype).itemsize


def _first_record(files: Sequence[str]) -> bytes | None:
    from prep import tfrecord

    for f in files:
        for rec in tfrecord.read_records(f):
            return rec
    return None


def _feature_spec(schema: Schema, lay: Layout, manifest: Mapping) -> dict:
    """The tf.io specs of the selected bands and the label (``prep.features``).

    A raw-bytes band is parsed as one scalar string, a list band with the value count of its
    manifest shape.
    """
    desc = {}
    for n in lay.bands:
        field = schema.field(schema.band_keys[n])
        if schema.band_encoding in ("raw_bytes", "jpeg"):
            desc[field.key] = features.feature(field, shape=[])
        else:
            size = int(np.prod([int(s) for s in next(b["shape"] for b in manifest["bands"] if b["name"] == n)]))
            desc[field.key] = features.feature(field, shape=[size])
    if schema.label_encoding == "mask":
        for src in schema.mask_sources:  # absent from a record = empty = the next source
            desc[src.key] = tf.io.FixedLenFeature([], tf.string, default_value="")
        return desc
    field = schema.field(schema.label_key)
    if field.kind not in ("int64", "float"):
        raise ReaderError(f"label feature {field.key!r} has kind {field.kind!r}; int64 or float expected")
    desc[field.key] = features.feature(field)
    return desc


def jpeg_bands(parsed: Mapping[str, tf.Tensor], schema: Schema, stored: Sequence[str],
               bands: Sequence[str]) -> dict[str, tf.Tensor]:
    """Decodes ``jpeg``-encoded bands: {band: uint8 [B, H*W]} for the selected ``bands``.

    In the ``jpeg`` band encoding one bytes feature holds an image of several bands (e.g. RGB): the
    bands sharing a feature key are its channels, in the manifest's band order (``stored``). Each
    image is decoded once (``tf.io.decode_jpeg``), whatever the number of its bands selected.

    Args:
      parsed: feature key -> string [B] of encoded images (``tf.io.parse_example`` output).
      schema: the record schema (its ``band_keys``).
      stored: the band names of the records, in the manifest's order.
      bands: the selected band names.

    Returns:
      band name -> uint8 [B, H*W] (H, W of the stored images).
    """
    channels: dict[str, list[str]] = {}
    for n in stored:
        channels.setdefault(schema.band_keys[n], []).append(n)
    out, decoded = {}, {}
    for n in bands:
        key = schema.band_keys[n]
        if key not in decoded:
            c = len(channels[key])
            decoded[key] = tf.map_fn(lambda s, c=c: tf.io.decode_jpeg(s, channels=c), parsed[key],
                                     fn_output_signature=tf.TensorSpec([None, None, c], tf.uint8))
        img = decoded[key]
        ch = channels[key].index(n)
        out[n] = tf.reshape(img[..., ch], [tf.shape(img)[0], -1])
    return out


def mask_targets(parsed: Mapping[str, tf.Tensor], sources: Sequence[MaskSource]) -> tf.Tensor:
    """Per-pixel class ids of a batch from its mask layers (``Schema.mask_sources``).

    Each record takes the first source whose bytes it holds in full (``prod(shape) * itemsize``
    bytes); its stored codes go through the source's lookup table (codes beyond it, and records
    holding none of the sources, give ``IGNORE_INDEX``).

    Args:
      parsed: feature key -> string [B] (``tf.io.parse_example`` output; "" where a record lacks it).
      sources: the schema's mask sources, in order of preference; all of one shape (H, W).

    Returns:
      int32 [B, H, W]: class ids 0..C-1, ``IGNORE_INDEX`` (-1) for pixels without a class.
    """
    h, w = sources[0].shape
    out = None
    for src in reversed(sources):  # the first source present wins
        dtype = np.dtype(src.dtype)
        nbytes = h * w * dtype.itemsize
        value = parsed[src.key]
        present = tf.equal(tf.strings.length(value), nbytes)
        value = tf.where(present, value, tf.constant(b"\0" * nbytes))  # decode_raw needs equal lengths
        codes = tf.cast(tf.reshape(tf.io.decode_raw(value, tf.as_dtype(dtype.name), little_endian=True),
                                   [-1, h, w]), tf.int32)
        table = tf.constant(np.asarray(src.lookup, np.int32))
        ids = tf.where(codes < len(src.lookup), tf.gather(table, tf.minimum(codes, len(src.lookup) - 1)),
                       IGNORE_INDEX)
        fallback = tf.fill(tf.shape(ids), IGNORE_INDEX) if out is None else out
        out = tf.where(tf.reshape(present, [-1, 1, 1]), ids, fallback)
    return out


def _targets(value, manifest: Mapping, schema: Schema) -> tf.Tensor:
    num_classes = len(manifest["classes"])
    if isinstance(value, tf.SparseTensor):
        value = tf.sparse.to_dense(value, default_value=-1)
    kind = task(manifest)
    if kind == MULTI_LABEL:
        if schema.label_encoding == "multi_hot":
            return tf.cast(value, tf.float32)
        hot = tf.one_hot(tf.cast(value, tf.int32), num_classes, dtype=tf.float32)  # -1 -> zeros
        return tf.minimum(tf.reduce_sum(hot, axis=1), 1.0)
    if kind == SINGLE_LABEL:
        if schema.label_encoding == "multi_hot":
            return tf.cast(tf.argmax(value, axis=-1), tf.int32)
        return tf.cast(value[:, 0], tf.int32)
    raise ReaderError(f"unknown task {kind!r}")


_TRANSFORMS: dict = {}


def make_transform(lay: Layout, stats: Mapping[str, tuple[float, float]] | None, resample: str,
                   jit_compile: bool = True, dtype: str = "float32", packed: PackedBands | None = None,
                   ) -> Callable[[Mapping[str, tf.Tensor] | tf.Tensor, tf.Tensor | None], dict[str, tf.Tensor]]:
    """The per-batch function ({band: [B, h*w]}, bits [B, 3] or None) -> features dict.

    Each grid group (stack, dihedral transform, normalization, resampling) is one XLA cluster;
    the concatenation of the groups runs outside XLA, where it is faster on CPU. Functions are
    kept per configuration, so a new dataset with the same options (e.g. one per epoch) reuses
    the compiled clusters.

    Args:
      lay: the band layout (``layout``).
      stats: band name -> (mean, std) (``band_statistics``), or None for no normalization.
      resample: a ``tf.image.resize`` method (``RESAMPLE_METHODS``) for the lower-resolution grids.
      jit_compile: run the groups as XLA-compiled ``tf.function``s with gather-based resampling;
        False runs plain TensorFlow ops (``tf.image.resize``), with the same numbers.
      dtype: the output dtype (``OUTPUT_DTYPES``): computed in float32, cast at the end of each
        cluster (bfloat16 / float16 halve the bytes written per sample, for mixed precision).
      packed: where the bands sit in the records (``PackedBands``); ``transform`` then also takes
        the records' bytes as uint8 [B, packed.end] and slices the bands out inside its clusters.

    Returns:
      ``transform(flat, bits)``: ``flat`` maps each band name to its pixels, [B, h*w] row-major on
      its native grid (raw-bytes bands in their stored dtype, list bands as int64 / float32), or
      (with ``packed``) is the uint8 [B, end] record bytes;
      ``bits`` is [B, 3] bool (see ``dihedral``) or None (no augmentation). It returns
      {"image": [B, H, W, C]} on the target grid in the selected band order, or with
      ``per_resolution`` {group name: [B, h, w, c]}, in ``dtype``.
    """
    key = (lay.bands, lay.groups, lay.per_resolution, lay.target, tuple(sorted(lay.dtypes.items())), lay.clips,
           None if stats is None else tuple(sorted(stats.items())), resample, bool(jit_compile), dtype, packed)
    if key not in _TRANSFORMS:
        _TRANSFORMS[key] = _make_transform(lay, stats, resample, jit_compile, tf.as_dtype(dtype), packed)
    return _TRANSFORMS[key]


@dataclasses.dataclass(frozen=True)
class PackedBands:
    """Where raw-bytes bands sit in records that share one layout (``band_layout``).

    ``end`` is the byte offset where the last selected band ends; ``bands`` holds per band
    (name, payload offset in bytes, pixel count, stored dtype). The bands are read from the
    records' bytes decoded once as uint8 [B, end] (``tf.io.decode_raw(..., fixed_length=end)``):
    one copy of each record instead of a copy per band and another per decode.
    """

    end: int
    bands: tuple[tuple[str, int, int, str], ...]

    def unpack(self, u8: tf.Tensor, band: str) -> tf.Tensor:
        """The pixels [B, n] of ``band`` in its stored dtype, from uint8 [B, >= end] record bytes (little-endian host)."""
        _, start, n, dtype = next(b for b in self.bands if b[0] == band)
        dt = tf.as_dtype(dtype)
        x = u8[:, start:start + n * dt.size]
        if dt.size == 1:
            return x if dt == tf.uint8 else tf.bitcast(x, dt)
        return tf.bitcast(tf.reshape(x, [-1, n, dt.size]), dt)


def make_raw_transform(lay: Layout, jit_compile: bool = True, packed: PackedBands | None = None,
                       ) -> Callable[[Mapping[str, tf.Tensor] | tf.Tensor, tf.Tensor | None], dict[str, tf.Tensor]]:
    """The per-batch function of raw delivery: ({band: [B, h*w]}, bits [B, 3] or None) -> features.

    Args:
      lay: the band layout (``layout``).
      jit_compile: stack each group in an XLA-compiled ``tf.function`` (same values either way).
      packed: as ``make_transform``: ``flat`` may then be the uint8 [B, end] record bytes.

    Returns:
      ``transform(flat, bits)`` -> {``raw_input_name(group)``: [B, c, h, w] in the stored dtype,
      band-sequential (each band's pixels contiguous, as stored; channels last would cost one more
      interleaving pass over every byte on the host), the group's bands in the selected order, on
      its native grid}, plus {``AUGMENT_KEY``: bits} when ``bits`` is given (the draws
      ``models.preprocess.Preprocess`` applies, so host and device augmentation are the same).
    """
    key = ("raw", lay.groups, bool(jit_compile), packed)
    if key not in _TRANSFORMS:
        def stack(values, g):
            if not isinstance(values, (list, tuple)):
                values = [packed.unpack(values, b) for b in g.bands]
            h, w = g.shape
            return tf.stack([tf.reshape(v, [-1, h, w]) for v in values], axis=1)

        fns = {g.name: (tf.function(functools.partial(stack, g=g), jit_compile=True) if jit_compile
                        else functools.partial(stack, g=g)) for g in lay.groups}

        def transform(flat, bits):
            out = {raw_input_name(g): fns[g.name](flat if isinstance(flat, tf.Tensor) else [flat[b] for b in g.bands])
                   for g in lay.groups}
            if bits is not None:
                out[AUGMENT_KEY] = bits
            return out

        _TRANSFORMS[key] = transform
    return _TRANSFORMS[key]


def _make_transform(lay, stats, resample, jit_compile, dtype=tf.float32, packed=None):
    rotations = all(g.shape[0] == g.shape[1] for g in lay.groups)
    clips = {b: (lo, hi) for b, lo, hi in lay.clips}
    order = lay.order
    resized = [g for g in lay.groups if not lay.per_resolution and g.shape != lay.target]
    native = [g for g in lay.groups if g not in resized]
    for g in resized:
        for n_in, n_out in zip(g.shape, lay.target):
            resize_taps(n_in, n_out, resample)  # computed eagerly, before tracing

    def group(g: Group, values, bits, pack: bool):
        """Stack (stored dtype), transform, cast and normalize one grid group."""
        if not isinstance(values, (list, tuple)):  # the records' bytes (packed)
            values = [packed.unpack(values, b) for b in g.bands]
        h, w = g.shape
        x = tf.stack([tf.reshape(v, [-1, h, w]) for v in values], axis=-1)
        if bits is not None:
            x = dihedral_packed(x, bits, rotations) if pack else dihedral(x, bits, rotations)
        x = tf.cast(x, tf.float32)
        if any(b in clips for b in g.bands):  # the dataset's value range (SEN12MS S1: [-25, 0] dB)
            x = tf.clip_by_value(x, np.array([clips.get(b, (-np.inf, np.inf))[0] for b in g.bands], np.float32),
                                 np.array([clips.get(b, (-np.inf, np.inf))[1] for b in g.bands], np.float32))
        if stats is not None:
            x = (x - np.array([stats[b][0] for b in g.bands], np.float32)) / np.array(
                [stats[b][1] for b in g.bands], np.float32)
        return x

    def compiled(fn):
        return tf.function(fn, jit_compile=True) if jit_compile else fn

    if lay.per_resolution:
        fns = {g.name: compiled(functools.partial(
            lambda g, values, bits: tf.cast(group(g, values, bits, True), dtype), g)) for g in lay.groups}

        def transform(flat, bits):
            return {g.name: fns[g.name](flat if isinstance(flat, tf.Tensor) else [flat[b] for b in g.bands], bits)
                    for g in lay.groups}

        return transform

    # Resampled groups are materialized by their own cluster (the resampling gathers would otherwise
    # recompute their producers); the native-grid groups are computed inside the concatenation.
    rfns = {g.name: compiled(functools.partial(
        lambda g, values, bits: tf.cast(resize(group(g, values, bits, False), lay.target, resample, taps=jit_compile),
                                        dtype), g))
        for g in resized}

    def assemble(native_values, resized_parts, bits):
        # concatenated in float32, cast once at the end
        parts = {g.name: group(g, native_values[g.name], bits, True) for g in native}
        parts.update({k: tf.cast(v, tf.float32) for k, v in resized_parts.items()})
        x = tf.concat([parts[g.name] for g in lay.groups], axis=-1) if len(parts) > 1 else parts[lay.groups[0].name]
        if order != list(range(len(order))):
            x = tf.gather(x, order, axis=-1)
        return tf.cast(x, dtype)

    final = compiled(assemble)

    def transform(flat, bits):
        def src(g):
            return flat if isinstance(flat, tf.Tensor) else [flat[b] for b in g.bands]

        resized_parts = {g.name: rfns[g.name](src(g), bits) for g in resized}
        native_values = {g.name: src(g) for g in native}
        return {"image": final(native_values, resized_parts, bits)}

    return transform


def _jit_default() -> bool:
    return os.environ.get("EORECORDS_READER_JIT", "1") not in ("0", "false", "no")


def make_dataset(data_dir: str | os.PathLike, split: str, *, bands: str | Sequence[str] = "10m20m",
                 per_resolution: bool = False, resample: str = "bicubic",
                 normalize: str | Mapping[str, Mapping[str, float] | Sequence[float]] | bool | None = "manifest",
                 batch_size: int = 32, training: bool = False, shuffle_buffer: int = 10_000,
                 seed: int | None = None, deterministic: bool = False, cache: bool | str = False,
                 drop_remainder: bool = False, augment: str | bool | None = None, skip_batches: int = 0,
                 cycle_length: int = 8, jit_compile: bool | None = None, fixed_offsets: bool = True,
                 raw: bool = False, output_dtype: str = "float32",
                 manifest: Mapping | None = None) -> tf.data.Dataset:
    """Batches of (features, targets) from ``split`` of the prepared directory ``data_dir``.

    features: {"image": float32 [B, H, W, C]} with the bands in the selected order, or with
    ``per_resolution`` one float32 tensor per resolution group ({"10m": .., "20m": .., "60m": ..});
    ``output_dtype`` "bfloat16" / "float16" delivers them in that dtype (computed in float32).
    targets: float32 multi-hot [B, num_classes] (multi-label), int32 class index [B] (single-label), or
    for a mask schema (segmentation) int32 class ids [B, H, W] per pixel, ``IGNORE_INDEX`` (-1) where a
    pixel has no class (``mask_targets``), flipped and rotated with the image when augmenting.

    ``raw`` (raw delivery, for preprocessing inside the model: ``models.preprocess``): the stored
    band values of each grid group, {``raw_input_name(group)``: [B, c, h, w] in the stored dtype}
    (``Layout.raw_input_spec``), not resampled, normalized nor augmented; when augmenting, the
    per-sample draws are delivered as {``AUGMENT_KEY``: bool [B, 3]} instead of applied, the
    same draws (same seed, same records) as the host pipeline applies.

    Without ``training`` the batches keep the record order of the manifest's shards.
    ``training`` shuffles the shard order and the records (``shuffle_buffer``), interleaves the
    shards and augments (``augment``: "dihedral" by default when training, "flips", or False).
    ``deterministic`` with a ``seed`` gives identical batches run to run (a new order each pass
    over the dataset, the same sequence of orders every run; default seed 0). ``skip_batches``
    skips that many batches before parsing (resuming mid-epoch). ``cache``: True keeps the
    serialized records in memory after the first pass, a path caches them to that file; the shards
    are then read in order (the cache holds the same sequence whatever the seed), then shuffled.
    ``fixed_offsets``: raw-bytes bands are sliced out of the records at the offsets found in the
    split's first record (our writer's records share one layout), checked per record, with a fall
    back to ``tf.io.parse_example`` for any batch that differs.

    Feature values are the stored band values cast to float32, then, unless ``normalize`` turns
    normalization off (None, False, "none"), ``(value - mean) / std`` per band
    (``band_statistics``), then resampled with ``resample``.
    ``manifest`` (the directory's, already loaded) saves reading it again.

    Raises:
      InputError: ``data_dir`` holds no readable manifest (``load_manifest``).
      ReaderError: an unknown ``resample``, ``augment`` or ``output_dtype``, a ``batch_size`` below 1, a split the
        manifest lacks, bands the records do not hold, statistics ``normalize`` cannot provide
        (see ``layout`` and ``band_statistics``), or a label feature neither int64 nor float.
      FileNotFoundError: a shard listed in the manifest is missing.
      CorruptRecordError: the split's first record, read for ``fixed_offsets``, is corrupt.
      KeyError: an unknown band name.
      ValueError: an empty band selection, or one that repeats a band.
    """
    data_dir = os.fspath(data_dir)
    manifest = manifest or load_manifest(data_dir)
    schema = record_schema(manifest)
    if resample not in RESAMPLE_METHODS:
        raise ReaderError(f"resample must be one of {', '.join(RESAMPLE_METHODS)}; got {resample!r}")
    if augment is None:
        augment = "dihedral" if training else False
    if augment is True:
        augment = "dihedral"
    if augment and augment not in AUGMENTATIONS:
        raise ReaderError(f"augment must be one of {', '.join(AUGMENTATIONS)} or False; got {augment!r}")
    if batch_size < 1:
        raise ReaderError(f"batch_size must be positive, got {batch_size}")
    if output_dtype not in OUTPUT_DTYPES:
        raise ReaderError(f"output_dtype must be one of {', '.join(OUTPUT_DTYPES)}; got {output_dtype!r}")
    if jit_compile is None:
        jit_compile = _jit_default()
    if deterministic and seed is None:
        seed = 0
    lay = layout(manifest, bands, per_resolution)
    stats = None if raw else band_statistics(manifest, normalize, lay.bands)
    files = shard_files(data_dir, manifest, split)
    compression = "GZIP" if manifest.get("compression") == "GZIP" else ""
    seeds = (None, None, None) if seed is None else (int(seed), int(seed) + 1, int(seed) + 2)

    if training and len(files) > 1 and not cache:
        ds = tf.data.Dataset.from_tensor_slices(files)
        ds = ds.shuffle(len(files), seed=seeds[0], reshuffle_each_iteration=True)
        ds = ds.interleave(
            lambda f: tf.data.TFRecordDataset(f, compression, _READ_BUFFER),
            cycle_length=min(len(files), cycle_length), block_length=1, num_parallel_calls=AUTOTUNE,
            deterministic=deterministic)
    else:
        ds = tf.data.TFRecordDataset(files, compression, _READ_BUFFER)
    if cache:
        ds = ds.cache(cache if isinstance(cache, str) else "")
    if training and shuffle_buffer and shuffle_buffer > 1:
        ds = ds.shuffle(int(shuffle_buffer), seed=seeds[1], reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    if augment:
        ds = tf.data.Dataset.zip((ds, tf.data.Dataset.random(seed=seeds[2], rerandomize_each_iteration=True)))
    if skip_batches:
        ds = ds.skip(int(skip_batches))

    desc = _feature_spec(schema, lay, manifest)
    raw_bytes = schema.band_encoding == "raw_bytes"
    label_key = schema.label_key
    mask = schema.label_encoding == "mask"
    label_keys = [src.key for src in schema.mask_sources] if mask else [label_key]
    label_desc = {k: desc[k] for k in label_keys}
    band_keys = {schema.band_keys[n] for n in lay.bands}
    band_desc = {k: v for k, v in desc.items() if k in band_keys}
    dtypes = {n: tf.as_dtype(lay.dtypes[n]) for n in lay.bands}
    spec_bands = [b["name"] for b in manifest["bands"]]
    offsets = None
    if raw_bytes and fixed_offsets:
        sizes = {schema.band_keys[n]: _band_nbytes(manifest, n, lay.dtypes[n]) for n in lay.bands}
        first = _first_record(files)
        offsets = band_layout(first, sizes) if first is not None else None
    packed = None
    if offsets is not None and sys.byteorder == "little":
        packed = PackedBands(max(start + sizes[k] for k, (_, _, start) in offsets.items()),
                             tuple((n, offsets[schema.band_keys[n]][2], sizes[schema.band_keys[n]]
                                    // np.dtype(lay.dtypes[n]).itemsize, lay.dtypes[n]) for n in lay.bands))
    if raw:
        transform = make_raw_transform(lay, jit_compile, packed)
    else:
        transform = make_transform(lay, stats, resample, jit_compile, output_dtype, packed)

    def parse_bands(serialized):
        p = tf.io.parse_example(serialized, band_desc)
        if schema.band_encoding == "jpeg":
            return jpeg_bands(p, schema, spec_bands, lay.bands)
        return {n: tf.io.decode_raw(p[schema.band_keys[n]], dtypes[n], little_endian=True) if raw_bytes
                else tf.cast(p[schema.band_keys[n]], dtypes[n]) if raw else p[schema.band_keys[n]]
                for n in lay.bands}

    def sliced_bands(serialized):
        out = {}
        for n in lay.bands:
            _, prefix, start = offsets[schema.band_keys[n]]
            size = sizes[schema.band_keys[n]]
            out[n] = tf.io.decode_raw(tf.strings.substr(serialized, start, size), dtypes[n], little_endian=True)
        return out

    def bands_of(serialized):
        """Raw-bytes bands sliced at the offsets of the first record, else parsed.

        Sliced when every record of the batch has the same layout there (checked on each
        record's feature headers).
        """
        if offsets is None:
            return parse_bands(serialized)
        end = max(start + sizes[k] for k, (_, _, start) in offsets.items())

        def same_layout():
            ok = [tf.reduce_all(tf.equal(tf.strings.substr(serialized, at, len(prefix)), prefix))
                  for at, prefix, _ in offsets.values()]
            return tf.reduce_all(tf.stack(ok))

        long_enough = tf.reduce_all(tf.strings.length(serialized) >= end)
        ok = tf.cond(long_enough, same_layout, lambda: tf.constant(False))
        return tf.cond(ok, lambda: sliced_bands(serialized), lambda: parse_bands(serialized))

    def packed_features(serialized, bits):
        """Bands sliced out of the records' bytes, decoded once, when every record has the layout of the first."""
        u8 = tf.io.decode_raw(serialized, tf.uint8, fixed_length=packed.end)
        ok = [tf.reduce_all(tf.equal(u8[:, at:at + len(prefix)], np.frombuffer(prefix, np.uint8)))
              for at, prefix, _ in offsets.values()]
        ok = tf.logical_and(tf.reduce_all(tf.strings.length(serialized) >= packed.end), tf.reduce_all(tf.stack(ok)))
        return tf.cond(ok, lambda: transform(u8, bits), lambda: transform(parse_bands(serialized), bits))

    def parse(serialized, rnd=None):
        p = tf.io.parse_example(serialized, label_desc)
        bits = None
        if rnd is not None:
            u = tf.random.stateless_uniform([tf.shape(serialized)[0], 3], tf.stack([rnd, tf.constant(7, tf.int64)]))
            bits = u < 0.5
            if augment == "flips":
                bits = tf.concat([bits[:, :2], tf.zeros_like(bits[:, 2:])], axis=1)
        x = packed_features(serialized, bits) if packed is not None else transform(bands_of(serialized), bits)
        if mask:
            y = mask_targets(p, schema.mask_sources)
            if bits is not None:  # the same flips / rotation as the image (raw delivery: as the model will)
                y = dihedral(y[..., None], bits, all(g.shape[0] == g.shape[1] for g in lay.groups))[..., 0]
            return x, y
        return x, _targets(p[label_key], manifest, schema)

    ordered = bool(deterministic or not training)  # evaluation keeps the record order
    ds = ds.map(parse, num_parallel_calls=AUTOTUNE, deterministic=ordered)
    ds = ds.prefetch(AUTOTUNE)
    options = tf.data.Options()
    options.deterministic = ordered
    return ds.with_options(options)


def input_config(data_dir: str | os.PathLike, manifest: Mapping, bands: str | Sequence[str], per_resolution: bool,
                 resample: str, normalize: str | Mapping[str, Mapping[str, float] | Sequence[float]] | bool | None) -> dict:
    """What a trained model expects of its input (RUN/input_config.json), with the statistics used.

    Args:
      data_dir: the prepared folder (recorded as an absolute path).
      manifest: its manifest (``load_manifest``).
      bands: the band selection, as for ``make_dataset``.
      per_resolution: one input per resolution group instead of one "image".
      resample: the resampling method.
      normalize: as for ``make_dataset``; recorded as given when a string or None, else as
        "table" (the statistics used are recorded either way).

    Returns:
      JSON-ready dict: data_dir, dataset, schema, task, bands (resolved), per_resolution,
      resample, normalize, classes (index order), input_spec ({name: [H, W, C]}) and statistics
      ({band: {"mean", "std"}} or None).

    Raises:
      ReaderError: as ``layout`` and ``band_statistics``.
      KeyError: an unknown band name.
      ValueError: an empty or repeating band selection, or a ``.json`` table that is not JSON.
      OSError: a ``.json`` table that cannot be read.
    """
    lay = layout(manifest, bands, per_resolution)
    stats = band_statistics(manifest, normalize, lay.bands)
    return {
        "data_dir": os.path.abspath(os.fspath(data_dir)),
        "dataset": manifest["dataset"],
        "schema": manifest["schema"],
        "task": task(manifest),
        "bands": list(lay.bands),
        "per_resolution": bool(per_resolution),
        "resample": resample,
        "normalize": normalize if isinstance(normalize, (str, type(None))) else "table",
        "classes": list(manifest["classes"]),
        "input_spec": {k: list(v) for k, v in lay.input_spec().items()},
        "statistics": None if stats is None else {b: {"mean": m, "std": s} for b, (m, s) in stats.items()},
    }
