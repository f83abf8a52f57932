"""What a dataset package provides, as types: the contract every command finds datasets through.

A dataset is one package under ``prep/datasets/<name>/`` whose ``__init__`` defines ``DATASET``, a
``Dataset``. The registry (``prep.datasets``) lists one line per package; the commands (prepare,
local and Beam; verify; synthetic; TFDS registration; the reader; train/evaluate defaults; the demo)
and the contract test (tests/test_contract.py) reach the dataset only through it.

The package's modules, named in the ``Dataset`` by dotted path and imported only when used:

``command`` (``Dataset.command``)
    The preparation command: ``define_flags()`` (absl flags), ``main(argv)``, and
    ``plan_from_flags() -> PreparePlan``. The plan says everything the shared writers need: the
    items of each split in order, a picklable ``produce`` that turns one shard's items into
    ``prep.shards.Record`` / ``Skip`` / ``Exclude`` results, what was left out while planning,
    the records per shard and the output-affecting flags. ``prep.shards.write_plan`` writes it
    with local worker processes, ``prep.beam.write_plan`` as an Apache Beam pipeline: the same
    bytes.
``synthetic`` (``Dataset.synthetic``)
    A generator of the raw data in its real on-disk format: ``define_flags()`` and ``main(argv)``
    for ``python -m prep.synthetic <cli_name>``, and ``contract_archive(out_dir, seed) ->
    ContractArchive``: a small archive and the command-line flags that prepare it, used by the
    contract test.
``tfds_builder`` (``Dataset.tfds_builder``)
    ``module:Class`` of its ``tfds.core.GeneratorBasedBuilder``, reading the manual folder with
    the same raw reader.
"""
from __future__ import annotations

import dataclasses
import importlib
import types
from typing import Any, Callable, Mapping, Sequence

from prep.datasets.spec import DatasetSpec


@dataclasses.dataclass(frozen=True)
class ModelInput:
    """How a model is fed from one dataset: band preset(s) and whether per resolution group.

    ``bands`` is a preset name, a comma list of band names, or presets joined with ``+`` (one
    input per preset: ``"10m+20m+60m"`` for K-BranchCNN with ``per_resolution``).
    """

    bands: str
    per_resolution: bool = False


@dataclasses.dataclass(frozen=True)
class PreparePlan:
    """Everything the shared shard writers need to prepare one dataset (local or Beam).

    Attributes:
      spec: the dataset definition of the records (bands, classes, schemas).
      schema: the schema name written.
      items: split name -> the split's items in record order (picklable values).
      produce: ``produce(items) -> Iterator[Record | Skip | Exclude]`` for one shard's items, one
        result per item in order; picklable (a module-level function or functools.partial of one).
      records_per_shard: the shard size in records.
      flags: the output-affecting flags, recorded in the manifest; a rerun with other values is
        refused unless --overwrite (or unless its earlier run finished no shard), except for
        ``prep.shards.NOT_COMPARED_FLAGS`` (on_error, shard_size_mb), which change no finished shard.
      excluded: items left out while planning, ``{"split", "key", "reason"}`` each.
      skipped: bad items found while planning, same form (an error under ``on_error="fail"``).
      missing: listed items absent from the input (e.g. a patch folder not downloaded),
        ``{"split", "key"}`` each: not planned, counted per split as ``missing`` and listed in
        ``OUT/missing.csv`` rather than in the manifest. The dataset's plan decides whether they
        are an error (under ``on_error="fail"`` it should raise, saying what to do).
      extra: dataset-specific manifest blocks (e.g. ``{"so2sat": {...}}``).
      compression: "NONE" or "GZIP".
      on_error: "fail" (stop at the first bad item) or "skip" (list it and go on).
      input_bytes: bytes of raw input read when all items are written (for MB/s), if known.
      remote_input: the raw archive is on a Beam filesystem (gs://, s3://): only a Beam runner can
        prepare it.
    """

    spec: DatasetSpec
    schema: str
    items: Mapping[str, Sequence[Any]]
    produce: Callable
    records_per_shard: int
    flags: Mapping[str, Any]
    excluded: Sequence[Mapping] = ()
    skipped: Sequence[Mapping] = ()
    missing: Sequence[Mapping] = ()
    extra: Mapping[str, Any] | None = None
    compression: str = "NONE"
    on_error: str = "fail"
    input_bytes: int | None = None
    remote_input: bool = False


@dataclasses.dataclass(frozen=True)
class ContractArchive:
    """A small raw archive written by a dataset's synthetic generator, and how to prepare it.

    Attributes:
      raw_dir: the archive's folder (also the TFDS builder's manual folder).
      prepare_args: command-line flags of the dataset's command that prepare it, without the
        output folder (e.g. ``["--root_folder", raw_dir]``).
      tfds_config: the TFDS builder config to build in the contract test.
      tfds_split_names: TFDS split name -> the prepared split it must match in size.
    """

    raw_dir: str
    prepare_args: tuple[str, ...]
    tfds_config: str
    tfds_split_names: Mapping[str, str]


@dataclasses.dataclass(frozen=True)
class Dataset:
    """One registered dataset (see the module doc for the modules each path names).

    Attributes:
      name: registry name, the ``dataset`` of its manifests (e.g. "bigearthnet19").
      cli_name: the short name of its commands (``python -m prep <cli_name>``,
        ``python -m prep.synthetic <cli_name>``).
      spec: the default dataset definition (bands, classes, schemas, band presets).
      title: one line naming the dataset and version.
      command: dotted module of its preparation command.
      synthetic: dotted module of its synthetic generator.
      tfds_builder: ``"module:Class"`` of its TFDS builder.
      upstream_stats: band name -> (mean, std) published with the dataset's reference models, on
        the values as stored in the records; None when none are published (``normalize="upstream"``
        then refuses with a clear error).
      model_inputs: model name -> how that model is fed from this dataset (``ModelInput``); models not
        listed get the preset named like their input (per-resolution models) or ``default_bands``.
      default_model: the model train.py trains without --model (and the demo and the contract test).
      default_bands: the preset a single-image model gets when ``model_inputs`` names none.
      homepage: where the raw data is published.
      citation: BibTeX of the dataset's paper.
      aliases: other names accepted by ``get_dataset`` (e.g. "bigearthnet").
    """

    name: str
    cli_name: str
    spec: DatasetSpec
    title: str
    command: str
    synthetic: str
    tfds_builder: str
    default_model: str
    default_bands: str
    upstream_stats: Mapping[str, tuple[float, float]] | None = None
    model_inputs: Mapping[str, ModelInput] = dataclasses.field(default_factory=dict)
    homepage: str = ""
    citation: str = ""
    aliases: tuple[str, ...] = ()

    def command_module(self) -> types.ModuleType:
        """The preparation command's module (imports absl, not TensorFlow)."""
        return importlib.import_module(self.command)

    def synthetic_module(self) -> types.ModuleType:
        """The synthetic generator's module."""
        return importlib.import_module(self.synthetic)

    def builder_class(self) -> type:
        """The TFDS builder class (importing it registers the builder with TFDS)."""
        module, _, cls = self.tfds_builder.partition(":")
        return getattr(importlib.import_module(module), cls)

    def model_input(self, model: str, model_input_names: Sequence[str] = ("image",)) -> ModelInput:
        """How ``model`` is fed from this dataset.

        Args:
          model: a registered model name.
          model_input_names: the names of the model's published inputs (``models.default_input_spec``):
            a model whose inputs are all band presets of this dataset (K-BranchCNN: 10m, 20m, 60m)
            gets them per resolution.

        Returns:
          ``model_inputs[model]`` when listed, else the per-resolution presets, else ``default_bands``.
        """
        if model in self.model_inputs:
            return self.model_inputs[model]
        keys = list(model_input_names)
        if keys and keys != ["image"] and all(k in self.spec.band_presets for k in keys):
            return ModelInput("+".join(keys), True)
        return ModelInput(self.default_bands, False)


__all__ = ["Dataset", "ModelInput", "PreparePlan", "ContractArchive"]
