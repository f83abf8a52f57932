"""Prepare any registered dataset: ``python -m prep <dataset> [flags]``.

    python -m prep bigearthnet -r BigEarthNet-v1.0 -o records
    python -m prep so2sat --h5 training.h5 testing.h5 -o so2sat
    python -m prep <dataset> --help          # the dataset's flags

``<dataset>`` is a registered dataset's command name, registry name or alias (``prep.datasets``).
Every preparation command shares ``--out_dir``, ``--shard_size_mb``, ``--compression``,
``--workers``, ``--on_error``, ``--overwrite``, ``--progress``, ``--runner`` and ``--beam_options``.
"""
from __future__ import annotations

import sys

from prep import cli


def run(argv: list[str] | None = None) -> None:
    """Dispatch to the named dataset's preparation command (``cli.run_command``)."""
    argv = list(sys.argv if argv is None else argv)
    ds = cli.dataset_from_argv(argv, __doc__)
    ds.command_module().run([f"{argv[0]} {argv[1]}"] + argv[2:])


if __name__ == "__main__":
    run()
