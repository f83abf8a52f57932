"""Evaluation: the papers' metrics and the reports people read, with numpy and matplotlib only.

- ``evaluation.metrics``: streaming multi-label and single-label metric accumulators under the
  BigEarthNet evaluation's key names (its module docstring defines every metric and edge case).
- ``evaluation.report``: ``write_report`` writes eval_result.json, eval_details.json, the per-class
  CSV, report.md, the PNG plots and the console table for a filled accumulator.
- ``evaluation.folds``: k-fold summaries (every fold, mean and standard deviation) for
  ``evaluate.py --all_folds`` and ``python -m prep lulc fold_report``.

None imports Keras nor TensorFlow (tests/test_metrics.py and tests/test_evaluate.py check it in a
fresh interpreter), so ``evaluate.py --predictions`` and ``bench/metrics.py`` never load them.
"""
