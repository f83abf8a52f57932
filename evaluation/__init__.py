"""Evaluation: the papers' metrics and the reports people read, with numpy and matplotlib only.

- ``evaluation.metrics``: streaming multi-label and single-label metric accumulators under the
  BigEarthNet evaluation's key names (its module docstring defines every metric and edge case).
- ``evaluation.report``: ``write_report`` writes eval_result.json, eval_details.json, the per-class
  CSV, report.md, the PNG plots and the console table for a filled accumulator.

Neither imports Keras nor TensorFlow, so ``evaluate.py --predictions`` and the metric benchmark
start in a fraction of a second.
"""
