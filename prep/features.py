"""tf.io feature descriptions built from a Schema: the one place that maps Field kinds to TensorFlow dtypes.

The reader (``prep.reader``, which adapts the band features to what it slices and decodes) and
the tests build on ``feature_description``; ``prep.verify`` checks records without TensorFlow
(``prep.tfrecord.example_info``).
"""
from __future__ import annotations

from prep.datasets.spec import Field, Schema
from prep.quiet import import_tensorflow

tf = import_tensorflow()

_DTYPES = {"bytes": tf.string, "int64": tf.int64, "float": tf.float32}


def dtype(kind: str) -> tf.DType:
    """The TensorFlow dtype of a Field kind: bytes -> tf.string, int64 -> tf.int64, float -> tf.float32.

    Raises:
      KeyError: ``kind`` is not one of "bytes", "int64", "float".
    """
    return _DTYPES[kind]


def feature(field: Field, shape: list[int] | None = None) -> tf.io.FixedLenFeature | tf.io.VarLenFeature:
    """The tf.io parsing spec of one field.

    Args:
      field: the schema field.
      shape: the FixedLenFeature shape to parse into; default ``[field.length]`` (a VarLenFeature
        when the field's length is variable). ``[]`` parses one value per record as a scalar
        (e.g. a raw-bytes band as one string).

    Returns:
      ``tf.io.FixedLenFeature`` (fixed-length fields, or any field given a ``shape``) or
      ``tf.io.VarLenFeature`` (variable-length fields: a SparseTensor when parsed), of the field
      kind's dtype (``dtype``; ``Field`` accepts no other kind).
    """
    if shape is not None:
        return tf.io.FixedLenFeature(shape, dtype(field.kind))
    if field.length is None:
        return tf.io.VarLenFeature(dtype(field.kind))
    return tf.io.FixedLenFeature([field.length], dtype(field.kind))


def feature_description(schema: Schema) -> dict[str, tf.io.FixedLenFeature | tf.io.VarLenFeature]:
    """The ``tf.io.parse_example`` features argument of a schema: feature key -> ``feature(field)``.

    FixedLenFeature ``[length]`` for fixed-length fields, VarLenFeature (sparse) for variable ones,
    for every field of ``schema`` (bands, labels, identifiers, metadata).
    """
    return {f.key: feature(f) for f in schema.fields}
