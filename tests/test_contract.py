"""The dataset contract: every registered dataset passes these, which is what "a dataset" means.

Parametrised over the registry (``prep.datasets.PACKAGES``): registering a dataset enrols it.
For each one, end to end on a small archive its own synthetic generator writes in the real format:

1. the synthetic archive (``synthetic.contract_archive``);
2. preparation by its command (``python -m prep <dataset>``), locally and on Beam's DirectRunner:
   the shards and the manifest byte-identical;
3. ``prep.verify`` finds nothing wrong;
4. a reader batch with the shapes and dtypes the definition gives (the default model's inputs);
5. its TFDS builder's split sizes equal the prepared splits' written counts;
6. one short ``train.py`` run of its default model;
7. ``evaluate.py`` writing its report.

plus the static part: the package provides every module and field the contract names, and they
agree with each other (names, bands, models).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from prep import datasets
from prep.datasets.contract import Dataset

REPO = Path(__file__).resolve().parents[1]
NAMES = datasets.names()
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONHASHSEED": "0", "CUDA_VISIBLE_DEVICES": ""}


def run(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, *args], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{' '.join(args)}\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}"
    return r


def files_of(folder: Path) -> dict[str, bytes]:
    """Every shard and the manifest (not the .parts books), by name."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


# --- the static part ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_the_package_provides_the_contract(name):
    import models

    ds = datasets.dataset(name)
    assert isinstance(ds, Dataset) and ds.name == name == ds.spec.name
    assert datasets.dataset(ds.cli_name) is ds and all(datasets.dataset(a) is ds for a in ds.aliases)
    assert ds.citation.lstrip().startswith("@") and ds.homepage.startswith("https://") and ds.title
    command = ds.command_module()
    for fn in ("define_flags", "main", "run", "plan", "plan_from_flags"):
        assert callable(getattr(command, fn)), f"{ds.command} lacks {fn}"
    synthetic = ds.synthetic_module()
    for fn in ("define_flags", "main", "contract_archive"):
        assert callable(getattr(synthetic, fn)), f"{ds.synthetic} lacks {fn}"
    builder = ds.builder_class()
    assert builder.name == name
    assert ds.default_model in models.names()
    for model, choice in ds.model_inputs.items():
        assert model in models.names(), f"{name}: model_inputs names unknown model {model}"
        for part in choice.bands.split("+"):
            ds.spec.resolve_bands(part)
    ds.spec.resolve_bands(ds.default_bands)
    if ds.upstream_stats is not None:
        assert set(ds.upstream_stats) <= set(ds.spec.band_names)
        assert all(std > 0 for _, std in ds.upstream_stats.values())
    assert ds.spec.schema().name == ds.spec.default_schema


def test_unknown_dataset_names_the_known_ones():
    with pytest.raises(KeyError, match="known: bigearthnet19"):
        datasets.dataset("nosuchdataset")


# --- end to end ---------------------------------------------------------------------------------

@pytest.fixture(scope="module", params=NAMES)
def prepared(request, tmp_path_factory):
    """Steps 1-2: the dataset's synthetic archive, prepared locally and on Beam's DirectRunner."""
    ds = datasets.dataset(request.param)
    base = tmp_path_factory.mktemp(ds.cli_name)
    archive = ds.synthetic_module().contract_archive(str(base / "raw"), seed=0)
    local, on_beam = base / "records", base / "records_beam"
    common = ["-m", "prep", ds.cli_name, *archive.prepare_args, "--shard_size_mb", "0.25", "--noprogress"]
    run(*common, "--out_dir", str(local), "--workers", "2")
    run(*common, "--out_dir", str(on_beam), "--workers", "1", "--runner", "DirectRunner")
    return ds, archive, local, on_beam


def test_local_and_beam_preparations_are_byte_identical(prepared):
    ds, _, local, on_beam = prepared
    a, b = files_of(local), files_of(on_beam)
    assert "manifest.json" in a and sum(".tfrecord" in f for f in a) >= 3
    assert a.keys() == b.keys()
    for f in a:
        assert a[f] == b[f], f"{ds.name}: {f} differs between the local and the Beam preparation"
    m = json.loads(a["manifest.json"])
    assert m["dataset"] == ds.name and m["totals"]["written"] > 0
    for s in m["splits"].values():
        assert s["listed"] == s["written"] + s["excluded"] + s["skipped"]


def test_verify_finds_nothing_wrong(prepared):
    from prep.verify import verify

    ds, _, local, _ = prepared
    assert verify(str(local)) == []


def test_a_reader_batch_has_the_definition_s_shapes_and_dtypes(prepared):
    from models import training
    from prep import reader

    ds, _, local, _ = prepared
    bands, per_res = training.default_inputs(ds.default_model, ds.spec)
    manifest = reader.load_manifest(local)
    expected = reader.input_spec(manifest, bands, per_res)
    x, y = next(iter(reader.make_dataset(local, "train", bands=bands, per_resolution=per_res, batch_size=4)))
    assert set(x) == set(expected)
    for key, shape in expected.items():
        assert tuple(x[key].shape) == (4, *shape) and x[key].dtype.name == "float32", key
        assert np.isfinite(x[key].numpy()).all()
    if ds.spec.task == datasets.MULTI_LABEL:
        assert tuple(y.shape) == (4, ds.spec.num_classes) and set(np.unique(y.numpy())) <= {0.0, 1.0}
    else:
        assert tuple(y.shape) == (4,) and 0 <= y.numpy().min() and y.numpy().max() < ds.spec.num_classes


def test_the_tfds_builder_gives_the_prepared_split_sizes(prepared, tmp_path):
    import tensorflow_datasets as tfds

    ds, archive, local, _ = prepared
    manifest = json.loads((local / "manifest.json").read_text())
    builder = ds.builder_class()(config=archive.tfds_config, data_dir=str(tmp_path))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=archive.raw_dir))
    for tfds_split, split in archive.tfds_split_names.items():
        assert builder.info.splits[tfds_split].num_examples == manifest["splits"][split]["written"], tfds_split


def test_the_default_model_trains_and_evaluates(prepared, tmp_path):
    ds, _, local, _ = prepared
    out = tmp_path / "run"
    run("train.py", "--data_dir", str(local), "--run_dir", str(out), "--epochs", "1",  # no --model: the default
        "--batch_size", "8", "--noevaluate_test", "--noexport_saved_model", "--noprogress")
    assert (out / "best.keras").exists() or (out / "final.keras").exists()
    assert json.loads((out / "flags.json").read_text())["model"] == ds.default_model
    report = tmp_path / "eval"
    run("evaluate.py", "--model", str(out), "--data_dir", str(local), "--split", "test", "--out_dir", str(report))
    result = json.loads((report / "eval_result.json").read_text())
    assert (report / "report.md").read_text().strip() and result
