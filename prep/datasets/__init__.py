"""The dataset registry: one line per dataset package, the only place datasets are listed.

Every command finds datasets here: ``get(name)`` gives the dataset definition (``DatasetSpec``:
bands, classes, schemas) and ``dataset(name)`` the whole package contract (``Dataset``: the
preparation command, synthetic generator, TFDS builder, published band statistics, the models'
default inputs, citation). A name is the ``dataset`` of a manifest ("bigearthnet19"), the command
name ("bigearthnet") or an alias. Registering a dataset enrols it in the contract test
(tests/test_contract.py); see the README's "Adding a dataset".
"""
from __future__ import annotations

import functools
import importlib

from prep.datasets.contract import ContractArchive, Dataset, ModelInput, PreparePlan
from prep.datasets.spec import MULTI_LABEL, SINGLE_LABEL, Band, DatasetSpec, Field, Schema, Task

# dataset name -> its package (which defines DATASET). One line per dataset.
PACKAGES = {
    "bigearthnet19": "prep.datasets.bigearthnet",
    "so2sat_lcz42": "prep.datasets.so2sat",
    "sentinel2_global_lulc": "prep.datasets.sentinel2_global_lulc",
    "sen12ms": "prep.datasets.sen12ms",
    "eurosat_ms": "prep.datasets.eurosat",
    "reben": "prep.datasets.reben",
    "bigearthnet_s1_19": "prep.datasets.bigearthnet_s1",
    "bigearthnet_mm_19": "prep.datasets.bigearthnet_mm",
}


def names() -> tuple[str, ...]:
    """The registered dataset names, in registry order."""
    return tuple(PACKAGES)


@functools.cache
def _load(name: str) -> Dataset:
    ds = importlib.import_module(PACKAGES[name]).DATASET
    if ds.name != name:
        raise RuntimeError(f"{PACKAGES[name]}: DATASET.name is {ds.name!r}, registered as {name!r}")
    return ds


def _resolve(name: str) -> str:
    if name in PACKAGES:
        return name
    for key in PACKAGES:
        ds = _load(key)
        if name == ds.cli_name or name in ds.aliases:
            return key
    known = ", ".join(f"{k} ({_load(k).cli_name})" for k in PACKAGES)
    raise KeyError(f"unknown dataset {name!r}; known: {known}")


def dataset(name: str) -> Dataset:
    """The registered dataset ``name`` (registry name, command name or alias).

    Raises:
      KeyError: naming the known datasets, for an unknown name.
    """
    return _load(_resolve(name))


def all_datasets() -> tuple[Dataset, ...]:
    """Every registered dataset, in registry order."""
    return tuple(_load(n) for n in PACKAGES)


def get(name: str) -> DatasetSpec:
    """The default definition (bands, classes, schemas) of dataset ``name``; KeyError names the known ones."""
    return dataset(name).spec


__all__ = ["get", "dataset", "all_datasets", "names", "PACKAGES", "Band", "DatasetSpec", "Field", "Schema",
           "Task", "MULTI_LABEL", "SINGLE_LABEL", "Dataset", "ModelInput", "PreparePlan", "ContractArchive"]
