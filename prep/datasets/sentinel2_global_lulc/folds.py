"""Write the fold table (the split file): ``python -m prep lulc folds --root_folder R --out folds.csv``.

One row per good tile: ``key,class_id,group,fold`` (see splits/sentinel2_global_lulc.py), and with
``--partition_dir`` the upstream layout ``partition<k>/{train,test}/<class folder>/<file>`` as
symbolic links to the tiles (k = 1..folds, test = fold k-1), for upstream scripts.
"""
from __future__ import annotations

import functools
import os
from typing import Sequence

from absl import flags

from prep import cli
from prep.datasets.sentinel2_global_lulc import command, raw

FLAGS = flags.FLAGS


@functools.cache
def define_flags() -> None:
    """Declare the flags of ``folds``."""
    command.define_fold_flags()
    flags.DEFINE_string("out", None, "The split file to write (CSV).")
    flags.DEFINE_string("partition_dir", None, "Also lay out partition<k>/{train,test}/<class>/ links here.")


def partition_links(tiles: list[raw.Tile], folds: Sequence[int], out_dir: str) -> int:
    """Creates ``out_dir/partition<k>/{train,test}/<class folder>/<file>`` symlinks; returns the links made.

    Raises:
      FileExistsError: a link path exists already.
    """
    n = 0
    k = int(max(folds)) + 1
    for p in range(k):
        for t, f in zip(tiles, folds):
            split = "test" if int(f) == p else "train"
            dst = os.path.join(out_dir, f"partition{p + 1}", split, t.key)
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            os.symlink(t.path, dst)
            n += 1
    return n


def main(argv: list[str]) -> int:
    """Scan the tree, assign the folds, write the split file (and the partition links)."""
    cli.no_arguments(argv)
    cli.required("root_folder", "out")
    f = FLAGS
    s = raw.scan(f.root_folder, f.csv)
    folds, groups = command.assign_folds(s.tiles, f.folds, f.fold_scheme, f.seed, f.grid_deg)
    command.write_fold_table(f.out, s.tiles, folds, groups)
    print(f"{f.out}: {len(s.tiles)} tiles in {f.folds} folds ({f.fold_scheme}); {len(s.bad)} bad tiles left out")
    if f.partition_dir:
        print(f"{f.partition_dir}: {partition_links(list(s.tiles), folds, f.partition_dir)} links")
    return 0
