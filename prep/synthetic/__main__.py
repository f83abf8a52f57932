"""Write a synthetic dataset in its real on-disk format: ``python -m prep.synthetic <dataset> --out_dir DIR``.

``<dataset>`` is a registered dataset's command name (``bigearthnet``, ``so2sat``, ...) or registry
name; ``python -m prep.synthetic <dataset> --help`` lists its flags. Each dataset's generator lives
in its package (``prep/datasets/<name>/synthetic.py``); only the chosen one's flags are declared.
"""
from __future__ import annotations

import sys

from prep import cli, datasets


def _usage(stream) -> None:
    stream.write(__doc__.lstrip())
    stream.write("\nDatasets:\n")
    for ds in datasets.all_datasets():
        stream.write(f"  {ds.cli_name:<14}{ds.title}\n")


def run(argv: list[str] | None = None) -> None:
    """Dispatch to the named dataset's synthetic generator (``cli.run_command``)."""
    argv = list(sys.argv if argv is None else argv)
    if len(argv) < 2 or argv[1] in ("-h", "--help", "help", "--helpfull"):
        _usage(sys.stdout if len(argv) >= 2 else sys.stderr)
        raise SystemExit(0 if len(argv) >= 2 else 2)
    try:
        ds = datasets.dataset(argv[1])
    except KeyError as e:
        print(f"error: {e.args[0]} ({cli.program(argv[0])} --help)", file=sys.stderr)
        raise SystemExit(2) from None
    cli.run_command(ds.synthetic_module(), [f"{argv[0]} {argv[1]}"] + argv[2:],
                    prog=f"{cli.program(argv[0])} {argv[1]}")


if __name__ == "__main__":
    run()
