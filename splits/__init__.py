"""Each dataset's split rules and official lists, one module per dataset.

- ``splits.bigearthnet``: the official BigEarthNet-S2 train/val/test lists, the exclusion lists
  (seasonal snow, cloud and shadow, no 19-class target) and the S1-S2 name table, read from the
  ``bigearthnet-common`` wheel (see splits/README.md);
- ``splits.so2sat``: the So2Sat LCZ42 split names of the version-2 files and version-3 scenarios.

Importing this package imports neither module.
"""
