"""tf.io feature descriptions built from a Schema (the reader and prep.verify share this)."""
from __future__ import annotations

import tensorflow as tf

from prep.datasets.spec import Schema

_DTYPES = {"bytes": tf.string, "int64": tf.int64, "float": tf.float32}


def feature_description(schema: Schema) -> dict:
    """FixedLenFeature for fixed-length fields, VarLenFeature (sparse) for variable ones."""
    out = {}
    for f in schema.fields:
        dt = _DTYPES[f.kind]
        out[f.key] = tf.io.FixedLenFeature([f.length], dt) if f.length is not None else tf.io.VarLenFeature(dt)
    return out
