"""Published checkpoints: find them (``registry.json``), fetch them, convert them to our Keras models.

- ``resolve(name)`` -> path of the converted ``.weights.h5`` in the cache, fetching and converting
  on first use (``models.build(..., weights=NAME)`` calls it).
- ``load_into(model, name_or_path)`` -> copies weights into an already built model, by layer name;
  ``name_or_path`` is a registry name, a ``.weights.h5`` / ``.keras`` file, a run folder (its
  ``best.keras``), a TF1 checkpoint (prefix, ``.index`` or folder) or a Keras 2 ``.h5`` full model.
  ``skip_mismatch=True`` leaves layers whose shapes differ (another head, another band count) as
  they are: that is what ``train.py --init_from`` uses for fine-tuning.
- ``convert(name)`` -> fetch + convert + save ``<cache>/converted/<name>.weights.h5`` and ``.keras``
  plus ``<name>.json`` (registry entry, source digest, conversion report).

The cache folder is ``cache`` / ``--cache_dir``, else ``$EORECORDS_CACHE``, else ``~/.cache/eorecords``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from absl import logging

from pretrained import fetch as _fetch  # the module; its function is pretrained.fetch.fetch
from pretrained import registry
from pretrained.convert_tf1 import ConversionError
from pretrained.fetch import ChecksumError, FetchError, Limits, UnsafeArchiveError, cache_dir
from pretrained.registry import Entry, UnknownModelError

if TYPE_CHECKING:
    import keras

get = registry.get
names = registry.names


def converted_paths(name: str | Entry, cache: str | os.PathLike | None = None) -> dict[str, Path]:
    """Returns where ``convert`` puts the weights, the full model and the metadata of ``name``.

    Returns:
        ``{"weights": <cache>/converted/<name>.weights.h5, "keras": ....keras, "meta": ....json}``.

    Raises:
        UnknownModelError: ``name`` is not in the registry.
    """
    entry = registry.get(name) if isinstance(name, str) else name
    base = cache_dir(cache) / "converted"
    return {"weights": base / f"{entry.name}.weights.h5", "keras": base / f"{entry.name}.keras",
            "meta": base / f"{entry.name}.json"}


def build_model(name: str | Entry, **kwargs: Any) -> keras.Model:
    """Builds our Keras model for registry entry ``name``, randomly initialised (no download).

    The architecture, input spec, class count and task come from the registry entry; ``kwargs``
    go to ``models.build``.

    Raises:
        UnknownModelError: ``name`` is not in the registry.
    """
    import models

    entry = registry.get(name) if isinstance(name, str) else name
    return models.build(entry.architecture, entry.input_spec(), entry.num_classes, entry.task, **kwargs)


def convert_source(source: str | os.PathLike, model: keras.Model, fmt: str | None = None,
                   architecture: str | None = None, strict: bool = True) -> dict:
    """Loads an upstream checkpoint (TF1 checkpoint or Keras 2 HDF5) at ``source`` into ``model``.

    Args:
        source: a TF1 checkpoint (prefix, ``.index`` file or folder) or a Keras 2 ``.h5`` full model.
        model: our built model of the same architecture.
        fmt: ``registry.TF1_ZIP`` or ``registry.KERAS2_HDF5``; None = by the file suffix.
        architecture: the ``models.build`` name for TF1 checkpoints (None = detected from the scopes).
        strict: fail on any weight that does not match (False: assign what matches, report the rest).

    Returns:
        The conversion report: ``assigned`` (weights), ``parameters``, ``skipped`` (problems) and more.

    Raises:
        ConversionError: the checkpoint does not match the model (or nothing matches when not strict).
    """
    from pretrained import convert_keras2, convert_tf1

    source = Path(source)
    if fmt is None:
        fmt = registry.KERAS2_HDF5 if source.is_file() and source.suffix in (".h5", ".hdf5") else registry.TF1_ZIP
    if fmt == registry.KERAS2_HDF5:
        return convert_keras2.convert(source, model, strict=strict)
    return convert_tf1.convert(source, model, architecture, strict=strict)


def _save_atomic(model, paths: dict[str, Path]) -> None:
    paths["weights"].parent.mkdir(parents=True, exist_ok=True)
    for key, saver in (("weights", model.save_weights), ("keras", model.save)):
        final = paths[key]
        tmp = final.with_name(f".tmp-{os.getpid()}-{final.name}")
        try:
            saver(str(tmp))
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)


def convert(name: str | Entry, *, cache: str | os.PathLike | None = None, url: str | None = None,
            sha256: str | None = None, source: str | os.PathLike | None = None, progress: bool = True,
            force: bool = False) -> dict:
    """Fetches and converts registry entry ``name`` into ``<cache>/converted/``.

    Nothing is fetched when ``source`` points at an unpacked checkpoint or a model file (an archive
    given as ``source`` is unpacked into the cache first).

    Args:
        name: a registry name or alias, or its entry.
        cache: the cache folder (default ``$EORECORDS_CACHE``, else ``~/.cache/eorecords``).
        url: fetch from this address instead of the registry's.
        sha256: expected SHA-256 of the download (overrides the registry's).
        source: a local checkpoint or model file to convert instead of fetching.
        progress: show progress bars.
        force: download, unpack and convert again even if cached.

    Returns:
        The conversion report plus the output paths under ``weights``, ``keras`` and ``meta``.

    Raises:
        UnknownModelError: unknown name.
        FetchError: the download failed (ChecksumError: wrong SHA-256; UnsafeArchiveError: an
            archive member would land outside the cache).
        ConversionError: the checkpoint does not match our model.
    """
    entry = registry.get(name) if isinstance(name, str) else name
    paths = converted_paths(entry, cache)
    if source is not None and Path(source).is_file() and _fetch.archive_kind(source):
        url, source = str(source), None  # an archive: unpack it into the cache first
    if source is None:
        source = _fetch.fetch(entry, cache=cache, url=url, sha256=sha256, progress=progress, force=force)
    model = build_model(entry)
    report = convert_source(source, model, entry.format, entry.architecture)
    _save_atomic(model, paths)
    digest_file = Path(str(source) + ".sha256")
    marker = Path(source) / ".eorecords-extracted.json"
    digest = (digest_file.read_text().split()[0] if digest_file.is_file()
              else json.loads(marker.read_text())["sha256"] if marker.is_file() else None)
    meta = {"name": entry.name, "source": str(source), "source_sha256": digest,
            "entry": entry.to_json(), "conversion": report,
            "files": {k: str(v) for k, v in paths.items()}}
    paths["meta"].write_text(json.dumps(meta, indent=1) + "\n")
    logging.info("%s: converted %d weights (%d parameters) -> %s", entry.name, report["assigned"],
                 report["parameters"], paths["weights"])
    for note in report.get("notes", ()):
        logging.info("%s", note)
    return {**report, **{k: str(v) for k, v in paths.items()}}


def resolve(name: str | os.PathLike, *, cache: str | os.PathLike | None = None, download: bool = True,
            progress: bool = True) -> Path:
    """Returns the local ``.weights.h5`` path for a registry name, fetching and converting it if needed.

    ``name`` itself is returned when it already is a weights file (a path object or a name ending
    in ``.weights.h5``).

    Raises:
        FileNotFoundError: a weights file that does not exist, or ``download=False`` and the model is
            not converted in the cache yet.
        UnknownModelError: unknown name.
        FetchError, ConversionError: as ``convert``.
    """
    if isinstance(name, os.PathLike) or (isinstance(name, str) and name.endswith(".weights.h5")):
        path = Path(name)
        if not path.is_file():
            raise FileNotFoundError(f"weights file {path} does not exist")
        return path
    entry = registry.get(name)
    paths = converted_paths(entry, cache)
    if paths["weights"].is_file():
        return paths["weights"]
    if not download:
        raise FileNotFoundError(f"{entry.name} is not in the cache ({paths['weights']}); "
                                f"run `python -m pretrained convert {entry.name}`")
    convert(entry, cache=cache, progress=progress)
    return paths["weights"]


def copy_weights(src: keras.Model, dst: keras.Model, skip_mismatch: bool = False,
                 source: str = "source model") -> dict:
    """Copies weights layer by layer (same layer names, same shapes) from model ``src`` to ``dst``.

    Args:
        src: the model holding the weights.
        dst: the model to fill.
        skip_mismatch: leave layers of ``dst`` that are missing in ``src`` or differ in shape as
            they are (logged as warnings) instead of failing.
        source: how to name ``src`` in messages.

    Returns:
        ``{"loaded": weight tensors copied, "layers": layer names, "skipped": problems}``.

    Raises:
        ConversionError: no layer matches, or a layer does not match and ``skip_mismatch`` is False.
    """
    by_name = {layer.name: layer for layer in src.layers}
    loaded, problems, count = [], [], 0
    for layer in dst.layers:
        if not layer.weights:
            continue
        other = by_name.get(layer.name)
        if other is None:
            problems.append(f"{layer.name}: not in {source}")
            continue
        theirs = [tuple(w.shape) for w in other.weights]
        ours = [tuple(w.shape) for w in layer.weights]
        if theirs != ours:
            problems.append(f"{layer.name}: shapes {ours} here, {theirs} in {source}")
            continue
        layer.set_weights(other.get_weights())
        loaded.append(layer.name)
        count += len(ours)
    if not loaded or (problems and not skip_mismatch):
        raise ConversionError(f"{source} does not fit model {dst.name!r} ({len(loaded)} layers match):\n  "
                              + "\n  ".join(problems[:40]))
    for problem in problems:
        logging.warning("not loaded from %s: %s", source, problem)
    return {"loaded": count, "layers": loaded, "skipped": problems}


def load_into(model: keras.Model, name_or_path: str | os.PathLike, *, skip_mismatch: bool = False,
              cache: str | os.PathLike | None = None, progress: bool = True) -> dict:
    """Loads pretrained weights into the built ``model``.

    Without ``skip_mismatch`` every weighted layer of ``model`` must be found with the same shapes.

    Args:
        model: the model to fill.
        name_or_path: a registry name, a ``.weights.h5`` / ``.keras`` file, a run folder (its
            ``best.keras`` or ``final.keras``), a TF1 checkpoint (prefix, ``.index`` or folder) or a
            Keras 2 ``.h5`` full model.
        skip_mismatch: leave layers that differ (another head, another band count) as they are.
        cache: the cache folder for registry names.
        progress: show progress bars when fetching.

    Returns:
        ``{"loaded": n, "skipped": [...]}``: ``n`` weight tensors assigned, ``skipped`` the layers
        left as they were, with the reason (conversions add their report's keys).

    Raises:
        UnknownModelError: neither an existing path nor a registered name.
        ValueError: a file of unknown format.
        ConversionError: the weights do not fit ``model``.
        FetchError: fetching a registered model failed.
    """
    path = Path(os.path.expanduser(str(name_or_path)))
    if not path.exists() and Path(str(path) + ".index").is_file():
        return _report(convert_source(path, model, registry.TF1_ZIP, strict=not skip_mismatch))
    if path.is_dir():
        for run_file in ("best.keras", "final.keras"):
            if (path / run_file).is_file():
                return load_into(model, path / run_file, skip_mismatch=skip_mismatch)
        return _report(convert_source(path, model, registry.TF1_ZIP, strict=not skip_mismatch))
    if path.is_file():
        text = str(path)
        if text.endswith(".keras"):
            import models

            return copy_weights(models.load_model(text), model, skip_mismatch, source=text)
        if text.endswith(".weights.h5"):
            model.load_weights(text, skip_mismatch=skip_mismatch)
            return {"loaded": len(model.weights), "skipped": []}
        if text.endswith((".h5", ".hdf5")):
            return _report(convert_source(path, model, registry.KERAS2_HDF5, strict=not skip_mismatch))
        if text.endswith(".index"):
            return _report(convert_source(path, model, registry.TF1_ZIP, strict=not skip_mismatch))
        raise ValueError(f"{path}: unknown weights format (expected .keras, .weights.h5, a Keras 2 .h5, "
                         f"a TF1 checkpoint or a run folder)")
    if not registry.exists(str(name_or_path)):
        raise UnknownModelError(f"{name_or_path!r} is neither an existing file or folder nor a registered "
                                f"pretrained model (see `python -m pretrained list`)")
    entry = registry.get(str(name_or_path))
    try:
        weights = resolve(entry.name, cache=cache, progress=progress)
    except FetchError as e:
        if e.hint and "--url" in e.hint:  # a flag of `python -m pretrained fetch`, not of the command that loads
            hint = (f"fetch it first with `python -m pretrained fetch {entry.name} --url MIRROR` (a reachable "
                    "mirror, a local file or a file:// URL; same cache folder), or give a local weights file "
                    "instead of the name")
            raise type(e)(e.problem, path=e.path, hint=hint) from None
        raise
    src = build_model(entry)
    src.load_weights(str(weights))
    return copy_weights(src, model, skip_mismatch, source=f"pretrained {entry.name}")


def _report(conversion: dict) -> dict:
    return {"loaded": conversion.get("assigned"), "skipped": conversion.get("skipped", []), **conversion}


__all__ = ["resolve", "load_into", "convert", "convert_source", "copy_weights", "build_model",
           "converted_paths", "cache_dir", "get", "names", "Entry",
           "Limits", "FetchError", "ChecksumError", "UnsafeArchiveError", "ConversionError",
           "UnknownModelError"]
