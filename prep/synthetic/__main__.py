"""Write a synthetic dataset in its real on-disk format.

Usage: python -m prep.synthetic <command> --out DIR [flags]   (<command> --help lists its flags)

Commands:
  bigearthnet   BigEarthNet-S2 archive: patch folders of 12 GeoTIFFs + JSON, split CSVs.
  so2sat        So2Sat LCZ42 HDF5 release (sen1/sen2/label + geolocation files).

A command is a module with ``define_flags()`` (absl flag declarations) and ``main(argv)``;
adding one is one line in COMMANDS. Only the chosen module's flags are declared.
"""
from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "bigearthnet": "prep.synthetic.bigearthnet",
    "so2sat": "prep.synthetic.so2sat",
}


def _usage(stream) -> None:
    stream.write(__doc__.lstrip())
    stream.write(f"\nKnown commands: {', '.join(COMMANDS)}\n")


def run(argv: list[str] | None = None) -> None:
    from absl import app, flags

    argv = list(sys.argv if argv is None else argv)
    if len(argv) < 2 or argv[1] in ("-h", "--help", "help", "--helpfull"):
        _usage(sys.stdout)
        raise SystemExit(0 if len(argv) >= 2 else 2)
    command = argv[1]
    if command not in COMMANDS:
        sys.stderr.write(f"unknown command {command!r}\n")
        _usage(sys.stderr)
        raise SystemExit(2)
    module = importlib.import_module(COMMANDS[command])
    module.define_flags()
    # Show the command's flags under --help (absl lists the key flags of sys.argv[0]).
    for flag in flags.FLAGS.get_key_flags_for_module(module.__name__):
        flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)
    app.run(module.main, argv=[f"{argv[0]} {command}"] + argv[2:])


if __name__ == "__main__":
    run()
