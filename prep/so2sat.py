"""``python -m prep.so2sat``: the So2Sat LCZ42 preparation command, kept under its first name.

The command lives in ``prep.datasets.so2sat.command`` (``python -m prep so2sat`` is the same
command, ``python -m prep so2sat geotiff`` its GeoTIFF export); see its ``--help``.
"""
from prep.datasets.so2sat.command import run

if __name__ == "__main__":
    run()
