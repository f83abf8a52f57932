"""TensorFlow Datasets builders of the registered datasets; importing this package registers them all.

    import prep.tfds  # registers bigearthnet19, so2sat_lcz42, ...
    ds = tfds.load("bigearthnet19/s2_rgb", split="test", data_dir=D,
                   download_and_prepare_kwargs={"download_config": tfds.download.DownloadConfig(manual_dir=M)})

or ``tfds build bigearthnet19 --imports prep.tfds --manual_dir M --data_dir D --config s2_rgb``. Each
builder lives in its dataset's package (``prep/datasets/<name>/tfds_builder.py``) and reads the raw
data from the manual folder with the same reader and dataset definition as the preparation command.
"""
from prep import datasets as _datasets

BUILDERS = {ds.name: ds.builder_class() for ds in _datasets.all_datasets()}

__all__ = ["BUILDERS"]
