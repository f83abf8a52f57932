"""The published checkpoints this project can fetch and convert, read from ``registry.json``.

``registry.json`` (beside this module) is the project's own catalogue: one entry per BigEarthNet-S2
19-class TF1 checkpoint and one *family* for the GHS-S2Net per-UTM-zone Keras 2 models, which expands
to one entry per zone (``ghs-s2net-32T``). Names are matched case-insensitively, and each entry also
answers to its aliases (the upstream file name, e.g. ``VGG16`` or ``MODEL_CNN_32T``).
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
from typing import Any

from prep.errors import EORecordsError

REGISTRY_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "registry.json")

TF1_ZIP = "tf1-checkpoint-zip"
KERAS2_HDF5 = "keras2-hdf5"
FORMATS = (TF1_ZIP, KERAS2_HDF5)


@dataclasses.dataclass(frozen=True)
class Entry:
    """One published checkpoint: where it lives and what it expects."""

    name: str
    title: str
    url: str
    sha256: str | None
    format: str
    architecture: str
    dataset: str
    task: str
    num_classes: int
    inputs: dict[str, dict[str, Any]]  # input name -> {"bands": [...], "shape": [h, w, c]}
    normalization: str
    resample: str | None = None
    classes: tuple[str, ...] | None = None
    aliases: tuple[str, ...] = ()
    family: str | None = None
    output: str = ""
    notes: str = ""

    @property
    def filename(self) -> str:
        """File name of the download (the last part of the URL)."""
        return self.url.rstrip("/").rsplit("/", 1)[-1] or f"{self.name}.bin"

    def input_spec(self) -> dict[str, tuple[int, ...]]:
        """The ``input_spec`` argument of ``models.build`` for this checkpoint."""
        return {key: tuple(int(n) for n in value["shape"]) for key, value in self.inputs.items()}

    def class_names(self) -> tuple[str, ...] | None:
        """Class names in output order (from the registry or the dataset definition)."""
        if self.classes is not None:
            return self.classes
        if self.dataset == "bigearthnet19":
            from prep.datasets import bigearthnet

            return tuple(bigearthnet.LABELS_19)
        return None

    def to_json(self) -> dict:
        """Returns the entry as a JSON-ready dict, with ``filename`` and ``input_spec`` added."""
        out = dataclasses.asdict(self)
        out["filename"] = self.filename
        out["input_spec"] = {k: list(v) for k, v in self.input_spec().items()}
        return out


class UnknownModelError(EORecordsError, KeyError):
    """Raised for a name that is neither a registry entry nor one of its aliases."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


def _validate(name: str, fields: dict) -> None:
    where = f"{REGISTRY_FILE}: entry {name!r}"
    for key in ("url", "format", "architecture", "task", "num_classes", "inputs", "normalization"):
        if key not in fields:
            raise ValueError(f"{where} lacks {key!r}")
    if fields["format"] not in FORMATS:
        raise ValueError(f"{where}: unknown format {fields['format']!r} (known: {', '.join(FORMATS)})")
    sha = fields.get("sha256")
    if sha is not None and (len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha)):
        raise ValueError(f"{where}: sha256 must be 64 lower-case hex digits, got {sha!r}")
    for key, value in fields["inputs"].items():
        if len(value["bands"]) != value["shape"][-1]:
            raise ValueError(f"{where}: input {key!r} lists {len(value['bands'])} bands for shape {value['shape']}")


def _entry(name: str, fields: dict, family: str | None = None) -> Entry:
    _validate(name, fields)
    return Entry(
        name=name,
        title=fields.get("title", name),
        url=fields["url"],
        sha256=fields.get("sha256"),
        format=fields["format"],
        architecture=fields["architecture"],
        dataset=fields.get("dataset", ""),
        task=fields["task"],
        num_classes=int(fields["num_classes"]),
        inputs=fields["inputs"],
        normalization=fields["normalization"],
        resample=fields.get("resample"),
        classes=tuple(fields["classes"]) if fields.get("classes") else None,
        aliases=tuple(fields.get("aliases", ())),
        family=family,
        output=fields.get("output", ""),
        notes=fields.get("notes", ""),
    )


ZONE = "<zone>"  # stands for a UTM grid zone in the name patterns of a family


@functools.lru_cache(maxsize=None)
def _load(path: str = REGISTRY_FILE) -> tuple[dict[str, Entry], dict[str, str], dict[str, tuple[str, ...]]]:
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if data.get("format") != "eorecords-pretrained-registry":
        raise ValueError(f"{path}: not an eorecords pretrained registry")
    entries: dict[str, Entry] = {}
    patterns: dict[str, tuple[str, ...]] = {}  # family -> (name pattern, *alias patterns)
    for name, fields in data.get("models", {}).items():
        entries[name] = _entry(name, fields)
    for family, fields in data.get("families", {}).items():
        patterns[family] = tuple(t.format(zone=ZONE) for t in (fields["name_template"], *fields.get("aliases", ())))
        zones = fields["zones"]
        if len(set(zones)) != len(zones):
            raise ValueError(f"{path}: family {family!r} lists a zone twice")
        for zone in zones:
            concrete = {k: v for k, v in fields.items() if k not in ("zones", "name_template", "url_template")}
            concrete["url"] = fields["url_template"].format(zone=zone)
            concrete["title"] = fields.get("title", family).format(zone=zone)
            concrete["aliases"] = [a.format(zone=zone) for a in fields.get("aliases", ())]
            name = fields["name_template"].format(zone=zone)
            entries[name] = _entry(name, concrete, family=family)
    lookup: dict[str, str] = {}
    for name, entry in entries.items():
        for key in (name, *entry.aliases):
            key = key.lower()
            if key in lookup and lookup[key] != name:
                raise ValueError(f"{path}: name or alias {key!r} is used by {lookup[key]!r} and {name!r}")
            lookup[key] = name
    return entries, lookup, patterns


def names(include_families: bool = True) -> list[str]:
    """All registry names, in file order; ``include_families=False`` leaves out the per-zone models."""
    entries, _, _ = _load()
    return [n for n, e in entries.items() if include_families or e.family is None]


def families() -> dict[str, list[str]]:
    """Family name -> the names of its members."""
    entries, _, _ = _load()
    out: dict[str, list[str]] = {}
    for name, entry in entries.items():
        if entry.family:
            out.setdefault(entry.family, []).append(name)
    return out


def name_patterns() -> list[tuple[str, tuple[str, ...]]]:
    """Lists the accepted names: (name, aliases) per model outside a family, then one pattern per family.

    A family's pattern is (name pattern, alias patterns), with ``<zone>`` standing for the UTM grid
    zone, e.g. ``("ghs-s2net-<zone>", ("MODEL_CNN_<zone>",))``.
    """
    entries, _, patterns = _load()
    out = [(n, e.aliases) for n, e in entries.items() if e.family is None]
    return out + [(p[0], p[1:]) for p in patterns.values()]


def describe_names() -> str:
    """All accepted names in one line: ``name (alias, ...)`` for each model and family pattern."""
    return ", ".join(f"{n} ({', '.join(a)})" if a else n for n, a in name_patterns())


def get(name: str) -> Entry:
    """The entry called ``name`` (or with that alias), case-insensitive.

    Raises:
      UnknownModelError: no entry has that name or alias; the message lists every name with its
        aliases.
    """
    entries, lookup, _ = _load()
    key = lookup.get(str(name).strip().lower())
    if key is None:
        raise UnknownModelError(
            f"unknown pretrained model {name!r}; known names (aliases in brackets, any case): {describe_names()}; "
            f"{ZONE} is a UTM grid zone (see `python -m pretrained list --all`)"
        )
    return entries[key]


def exists(name: str) -> bool:
    """Whether ``name`` is a registry name or alias (case-insensitive)."""
    _, lookup, _ = _load()
    return str(name).strip().lower() in lookup
