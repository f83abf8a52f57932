"""Synthetic BigEarthNet-MM archives: S2 patches and their S1 twins in the real layout.

``python -m prep.synthetic bigearthnet_mm -o DIR`` writes ``DIR/BigEarthNet-v1.0/`` (the S2
archive with its split and exclusion lists) and ``DIR/BigEarthNet-S1-v1.0/`` (the S1 twins and the
pairing table ``s1_s2_name_country_season.csv``): ``prep.datasets.bigearthnet_s1.synthetic`` with
``with_s2=True`` (see there for the pixels and names).
"""
from __future__ import annotations

import functools
from pathlib import Path

from prep import cli
from prep.datasets.bigearthnet_s1 import synthetic as s1synth
from prep.datasets.contract import ContractArchive
from prep.errors import UsageError

S1_FOLDER, S2_FOLDER = s1synth.S1_FOLDER, s1synth.S2_FOLDER


def generate(out_dir: str, num_patches: int, seed: int = 0, **kwargs) -> list[tuple[str, str]]:
    """Write ``num_patches`` synthetic S1/S2 pairs under ``out_dir``; returns (S1 name, S2 name) pairs.

    Args:
      out_dir: the folder to write ``BigEarthNet-v1.0/`` and ``BigEarthNet-S1-v1.0/`` into.
      num_patches: the number of pairs.
      seed: the random seed (same seed, same bytes).
      **kwargs: ``split_fractions``, ``num_no_target``, ``num_snow``, ``num_cloud``, ``workers``,
        ``progress`` of ``prep.datasets.bigearthnet_s1.synthetic.generate``.

    Raises:
      ValueError: as ``prep.datasets.bigearthnet.synthetic.plan_bigearthnet``.
    """
    return s1synth.generate(out_dir, num_patches, seed, with_s2=True, **kwargs)


def contract_archive(out_dir: str, seed: int = 0) -> ContractArchive:
    """A small MM archive (48 pairs, one each on the no-target, snow and cloud lists) for the contract test."""
    generate(out_dir, 48, seed=seed, num_no_target=1, num_snow=1, num_cloud=1)
    root = Path(out_dir)
    return ContractArchive(
        raw_dir=str(root),
        prepare_args=("--s1_root", str(root / S1_FOLDER), "--s2_root", str(root / S2_FOLDER)),
        tfds_config="mm",
        tfds_split_names={"train": "train", "val": "val", "test": "test"},
    )


@functools.cache
def define_flags() -> None:
    """Declare the command's flags (``python -m prep.synthetic bigearthnet_mm``)."""
    from absl import flags

    flags.DEFINE_string("out_dir", None, "Folder to write BigEarthNet-v1.0/ and BigEarthNet-S1-v1.0/ into "
                        "(required).", short_name="o")
    flags.DEFINE_integer("num_patches", 200, "Number of synthetic S1/S2 pairs.", lower_bound=1)
    flags.DEFINE_integer("seed", 0, "Random seed; the same seed writes the same bytes.", lower_bound=0)
    flags.DEFINE_list("split_fractions", ["0.6", "0.2", "0.2"], "Fractions of train,val,test.")
    flags.DEFINE_integer("num_no_target", None, "Pairs labelled only with classes without a 19-class target "
                         "(default: 1 per 100).", lower_bound=0)
    flags.DEFINE_integer("num_snow", None, "Pairs whose S2 patch has seasonal snow (default: 1 per 100).",
                         lower_bound=0)
    flags.DEFINE_integer("num_cloud", None, "Pairs whose S2 patch has cloud and shadow (default: 1 per 100).",
                         lower_bound=0)
    flags.DEFINE_integer("workers", 1, "Worker processes for the S2 patches (output identical for any count).",
                         lower_bound=1)
    flags.DEFINE_bool("overwrite", False, "Write into an --out_dir that already holds files: everything in it is "
                      "deleted first.")


def main(argv: list[str]) -> int:
    """Write the archive the flags describe and print where."""
    from absl import flags

    cli.no_arguments(argv)
    cli.required("out_dir")
    f = flags.FLAGS
    try:
        fractions = [float(x) for x in f.split_fractions]
    except ValueError:
        raise UsageError(f"--split_fractions: expected three numbers, got {','.join(f.split_fractions)}") from None
    cli.refuse_nonempty(f.out_dir, f.overwrite)
    try:
        pairs = generate(f.out_dir, f.num_patches, f.seed, split_fractions=fractions, num_no_target=f.num_no_target,
                         num_snow=f.num_snow, num_cloud=f.num_cloud, workers=f.workers, progress=True)
    except ValueError as e:  # special patches or fractions that do not fit (planned before any file is written)
        raise UsageError(str(e)) from None
    print(f"wrote {len(pairs)} synthetic S1+S2 pairs to {S2_FOLDER}/ and {S1_FOLDER}/ in {f.out_dir}")
    return 0
