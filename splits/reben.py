"""BigEarthNet v2 (reBEN) splits: the ``split`` column of ``metadata.parquet`` names each patch's split.

The archive's values are ``train``, ``validation`` and ``test`` (237,871 / 122,342 / 119,825 patches
in ``metadata.parquet``); the records name them ``train``, ``val`` and ``test``, the split names
every other dataset of this project (and ``train.py``'s defaults) use. The patches of
``metadata_for_patches_with_snow_cloud_or_shadow.parquet`` (69,450) carry a split value the same way.
No list is stored here: the parquet files are the source.
"""
from __future__ import annotations

# metadata.parquet ``split`` value -> the records' split name ("val" too: some re-distributions write it)
SPLIT_NAMES = {"train": "train", "validation": "val", "val": "val", "test": "test"}
SPLITS = ("train", "val", "test")  # the records' splits, in manifest order


def split_name(value: object) -> str:
    """The records' split name of one ``split`` value of ``metadata.parquet``.

    Args:
      value: the column's value (``"train"``, ``"validation"`` (or ``"val"``) or ``"test"``).

    Returns:
      ``"train"``, ``"val"`` or ``"test"``.

    Raises:
      ValueError: any other value (the message lists the known ones).
    """
    try:
        return SPLIT_NAMES[value]  # type: ignore[index]
    except (KeyError, TypeError):
        raise ValueError(f"split value {value!r} is not one of {', '.join(SPLIT_NAMES)}") from None
