"""Write a synthetic dataset in its real on-disk format: ``python -m prep.synthetic <dataset> --out_dir DIR``.

``<dataset>`` is a registered dataset's command name (``bigearthnet``, ``so2sat``, ...) or registry
name; ``python -m prep.synthetic <dataset> --help`` lists its flags. Each dataset's generator lives
in its package (``prep/datasets/<name>/synthetic.py``); only the chosen one's flags are declared.
"""
from __future__ import annotations

import sys

from prep import cli


def run(argv: list[str] | None = None) -> None:
    """Dispatch to the named dataset's synthetic generator (``cli.run_command``)."""
    argv = list(sys.argv if argv is None else argv)
    ds = cli.dataset_from_argv(argv, __doc__)
    cli.run_command(ds.synthetic_module(), [f"{argv[0]} {argv[1]}"] + argv[2:],
                    prog=f"{cli.program(argv[0])} {argv[1]}")


if __name__ == "__main__":
    run()
