"""Synthetic datasets in the real on-disk formats, for tests, the demo and the benchmarks.

``python -m prep.synthetic <dataset> --out DIR ...`` (or ``eorecords-synthetic``) writes one;
see ``prep/synthetic/__main__.py`` for the commands. Python API: ``generate_bigearthnet`` and
``extract_examples`` (the six real BigEarthNet-S2 patches from the bigearthnet-common wheel).
"""
from prep.synthetic.bigearthnet import extract_examples, generate_bigearthnet


def run() -> None:
    """Console-script entry point (``eorecords-synthetic``)."""
    from prep.synthetic.__main__ import run as _run

    _run()


__all__ = ["generate_bigearthnet", "extract_examples", "run"]
