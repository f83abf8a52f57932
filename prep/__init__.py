"""Preparation: raw benchmark archives -> sharded TFRecords, and the per-dataset definitions they share."""

import os as _os

# TensorFlow's C++ start-up chatter hides our progress bars and summaries; users can override.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
