"""Registry of dataset definitions: ``get(name)`` returns the one DatasetSpec for that dataset."""
from __future__ import annotations

import importlib

from prep.datasets.spec import MULTI_LABEL, SINGLE_LABEL, Band, DatasetSpec, Field, Schema

# dataset name -> module defining SPEC. Adding a dataset = adding one module and one line here.
_MODULES = {
    "bigearthnet19": "prep.datasets.bigearthnet",
    "so2sat_lcz42": "prep.datasets.so2sat",
}


def names() -> tuple[str, ...]:
    return tuple(_MODULES)


def get(name: str) -> DatasetSpec:
    try:
        module = _MODULES[name]
    except KeyError:
        raise KeyError(f"unknown dataset {name!r}; known: {', '.join(_MODULES)}") from None
    return importlib.import_module(module).SPEC


__all__ = ["get", "names", "Band", "DatasetSpec", "Field", "Schema", "MULTI_LABEL", "SINGLE_LABEL"]
