"""``python -m prep.bigearthnet``: the BigEarthNet-S2 preparation command, kept under its first name.

The command lives in ``prep.datasets.bigearthnet.command`` (``python -m prep bigearthnet`` is the
same command); see its ``--help``.
"""
from prep.datasets.bigearthnet.command import run

if __name__ == "__main__":
    run()
