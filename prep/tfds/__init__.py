"""TensorFlow Datasets builders of the project's datasets; importing this package registers them.

    import prep.tfds  # registers bigearthnet19 and so2sat_lcz42
    ds = tfds.load("bigearthnet19/s2_rgb", split="test", data_dir=D,
                   download_and_prepare_kwargs={"download_config": tfds.download.DownloadConfig(manual_dir=M)})

or ``tfds build bigearthnet19 --imports prep.tfds --manual_dir M --data_dir D``. Each builder
reads the raw data from the manual folder with the same readers and dataset definitions as
``prep/`` (see each module's docstring for configs, features, splits and release notes).
"""
from prep.tfds.bigearthnet19 import Bigearthnet19
from prep.tfds.so2sat_lcz42 import So2satLcz42

__all__ = ["Bigearthnet19", "So2satLcz42"]
