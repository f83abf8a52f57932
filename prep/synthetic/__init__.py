"""Synthetic datasets in the real on-disk formats, for tests, the demo and the benchmarks.

``python -m prep.synthetic <dataset> --out_dir DIR ...`` (or ``eorecords-synthetic``) writes one with
the generator of the dataset's package (``prep/datasets/<name>/synthetic.py``).
"""


def run() -> None:
    """Console-script entry point (``eorecords-synthetic``)."""
    from prep.synthetic.__main__ import run as _run

    _run()


__all__ = ["run"]
