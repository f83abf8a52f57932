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

from prep import datasets


def _usage(stream) -> None:
    stream.write(__doc__.lstrip())
    stream.write("\nDatasets:\n")
    for ds in datasets.all_datasets():
        stream.write(f"  {ds.cli_name:<14}{ds.title}\n")


def run(argv: list[str] | None = None) -> None:
    """Dispatch to the named dataset's preparation command (``cli.run_command``)."""
    argv = list(sys.argv if argv is None else argv)
    if len(argv) < 2 or argv[1] in ("-h", "--help", "help", "--helpfull"):
        _usage(sys.stdout if len(argv) >= 2 else sys.stderr)
        raise SystemExit(0 if len(argv) >= 2 else 2)
    try:
        ds = datasets.dataset(argv[1])
    except KeyError as e:
        print(f"error: {e.args[0]} (python -m prep --help)", file=sys.stderr)
        raise SystemExit(2) from None
    module = ds.command_module()
    module.run([f"{argv[0]} {argv[1]}"] + argv[2:])


if __name__ == "__main__":
    run()
