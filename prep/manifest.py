"""The manifest of a prepared output folder: ``load(data_dir) -> Manifest``, the one way to read it.

``OUT/manifest.json`` (written by ``prep.shards.assemble_manifest``) describes the records of a
finished preparation: dataset and schema (with versions), task, the band table (name, shape,
dtype, resolution, group, feature key), class names in index order, per split the counts
(listed / written / excluded / skipped), class counts and shards (file, records, bytes,
SHA-256), the totals, per-band statistics per split, every excluded and skipped item and the
output-affecting flags.

``Manifest`` is that JSON object (a ``dict``: ``m["splits"]`` works as before) with typed,
read-only properties for what the commands use. ``load`` checks the folder and the file and
raises ``InputError`` with a message that says what is wrong; no TensorFlow is imported.

    from prep import manifest
    m = manifest.load("records")
    m.dataset, m.schema, m.task, m.band_names, m.classes, m.splits["train"]["written"]
"""
from __future__ import annotations

import json
import os
from typing import Any, Mapping

from prep.datasets.spec import DatasetSpec, Schema, Task
from prep.errors import InputError

MANIFEST = "manifest.json"
FORMAT = "eorecords-manifest"
PARTS = ".parts"  # prep.shards.PARTS: where an unfinished preparation keeps its work
REQUIRED = ("dataset", "schema", "bands", "classes", "splits")
_HINT = "prepare one with python -m prep <dataset> ... --out_dir FOLDER (e.g. python -m prep.bigearthnet)"


class ManifestMissing(InputError, FileNotFoundError):
    """The folder does not exist or holds no manifest.json (also a FileNotFoundError, as before)."""


class Manifest(dict):
    """The parsed manifest.json of a prepared output folder, with typed read-only properties.

    A plain ``dict`` underneath (JSON keys as written), so ``m["splits"]`` and ``json.dumps(m)``
    work; ``path`` is the file it was read from (None when built from a mapping).
    """

    def __init__(self, data: Mapping[str, Any] = (), path: str | None = None):
        super().__init__(data)
        self.path = path

    @property
    def data_dir(self) -> str | None:
        """The prepared output folder (the manifest's folder), when read from a file."""
        return os.path.dirname(self.path) if self.path else None

    @property
    def dataset(self) -> str:
        """The registered dataset name, e.g. ``"bigearthnet19"``."""
        return self["dataset"]

    @property
    def schema(self) -> str:
        """The record schema's name, e.g. ``"compact"`` (``record_schema`` is the Schema itself)."""
        return self["schema"]

    @property
    def spec(self) -> DatasetSpec:
        """The dataset definition (``prep.datasets.get(dataset)``): bands, classes, schemas."""
        from prep import datasets

        return datasets.get(self["dataset"])

    @property
    def record_schema(self) -> Schema:
        """The ``Schema`` the records were written with (feature keys, kinds, lengths)."""
        return self.spec.schema(self["schema"])

    @property
    def task(self) -> Task:
        """The learning task: the manifest's ``task``, else the dataset's."""
        return Task(self.get("task") or self.spec.task)

    @property
    def splits(self) -> dict[str, dict]:
        """Split name -> {listed, written, excluded, skipped, class_counts, shards: [{file, records, bytes, sha256}]}."""
        return self["splits"]

    @property
    def classes(self) -> list[str]:
        """Class names in index order (index i of a multi-hot vector or class index is classes[i])."""
        return self["classes"]

    @property
    def bands(self) -> list[dict]:
        """The band table: [{name, shape [rows, cols], dtype, resolution_m, group, feature}]."""
        return self["bands"]

    @property
    def band_names(self) -> tuple[str, ...]:
        """The stored bands' names, in the manifest's order."""
        return tuple(b["name"] for b in self["bands"])

    @property
    def totals(self) -> dict[str, int]:
        """{listed, written, excluded, skipped[, missing]} over all splits (summed from the splits if absent)."""
        if "totals" in self:
            return self["totals"]
        keys = ["listed", "written", "excluded", "skipped"]
        if any("missing" in s for s in self["splits"].values()):
            keys.append("missing")
        return {k: sum(int(s.get(k, 0)) for s in self["splits"].values()) for k in keys}

    @property
    def compression(self) -> str:
        """The shards' TFRecord compression: ``"NONE"`` or ``"GZIP"``."""
        return self.get("compression") or "NONE"


def path_of(data_dir: str | os.PathLike) -> str:
    """The manifest file of a prepared output folder."""
    return os.path.join(os.fspath(data_dir), MANIFEST)


def load(data_dir: str | os.PathLike) -> Manifest:
    """Read and check ``data_dir/manifest.json``.

    Args:
      data_dir: a prepared output folder (``python -m prep <dataset> --out_dir data_dir``).

    Returns:
      The manifest, checked to be an eorecords manifest with the keys every reader needs
      (dataset, schema, bands, classes, splits) naming a registered dataset and one of its schemas.

    Raises:
      InputError: with the folder or file and the problem: the folder does not exist or is not a
        folder, it holds no manifest.json (an unfinished preparation, or not a prepared folder;
        ``ManifestMissing``, also a FileNotFoundError, for these), the file is unreadable or
        malformed JSON, not an eorecords manifest, lacks keys, or names an unknown dataset or schema.
    """
    folder = os.fspath(data_dir)
    path = path_of(folder)
    if not os.path.isdir(folder):
        if os.path.exists(folder):
            raise ManifestMissing("not a folder (a prepared output folder holds manifest.json and the shards)",
                                  path=folder, hint=_HINT)
        raise ManifestMissing("no such folder", path=folder, hint=_HINT)
    if not os.path.exists(path):
        if os.path.isdir(os.path.join(folder, PARTS)):
            raise ManifestMissing(f"no {MANIFEST}: the preparation did not finish (its work so far is in {PARTS}/)",
                                  path=folder, hint="run the same preparation command again to resume it")
        raise ManifestMissing(f"no {MANIFEST} in this folder: not a prepared output folder", path=folder, hint=_HINT)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise InputError(f"malformed JSON ({e})", path=path) from None
    except UnicodeDecodeError as e:
        raise InputError(f"malformed JSON (not UTF-8 text: {e.reason} at byte {e.start})", path=path) from None
    except OSError as e:
        raise InputError(f"cannot read: {e.strerror or e}", path=path) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        what = f"format={data.get('format')!r}" if isinstance(data, dict) else f"a JSON {type(data).__name__}"
        raise InputError(f"not an eorecords manifest ({what}, expected format={FORMAT!r})", path=path)
    missing = [k for k in REQUIRED if k not in data]
    if missing:
        raise InputError(f"manifest lacks {', '.join(repr(k) for k in missing)}", path=path,
                         hint="the preparation wrote an incomplete manifest or it was edited; prepare again")
    for key in ("dataset", "schema"):
        if not isinstance(data[key], str):
            raise InputError(f"manifest {key!r} must be a string, not {data[key]!r}", path=path)
    from prep import datasets

    try:
        spec = datasets.get(data["dataset"])
        spec.schema(data["schema"])
    except KeyError as e:  # the registry's message names the known datasets / schemas
        raise InputError(str(e.args[0]) if e.args else str(e), path=path) from None
    if not isinstance(data["splits"], dict) or not isinstance(data["bands"], list):
        raise InputError("manifest 'splits' must be an object and 'bands' a list", path=path)
    return Manifest(data, path=path)


__all__ = ["Manifest", "ManifestMissing", "load", "path_of", "MANIFEST", "FORMAT"]
