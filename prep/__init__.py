"""Preparation: raw benchmark archives -> sharded TFRecords, and the per-dataset definitions they share."""
