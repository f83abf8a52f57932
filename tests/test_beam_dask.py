"""prep.beam on a real distributed engine: Beam's DaskRunner on a ``dask.distributed`` cluster.

A ``LocalCluster`` of two worker processes (the scheduler and the workers talk over TCP on
127.0.0.1, ports chosen by the operating system) stands in for a Dask cluster of several machines:
the preparation connects to it by address (``--dask_client_address``), as it would to a remote
one. On a small synthetic BigEarthNet archive in the real format the shards and the manifest must
be the local path's byte for byte, both workers must have written shards, a rerun must keep the
finished shards, and bad input must come back as the preparation's one-line error. The command
line starts its own local cluster with ``--runner DaskRunner --workers 2``.
"""
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import distributed  # the dask extra, in dev
import pytest

from prep import beam as pbeam
from prep import shards
from prep.datasets.bigearthnet import command as cli
from prep.datasets.bigearthnet.synthetic import generate_bigearthnet

REPO = Path(__file__).resolve().parents[1]
SPLITS = ("train", "val", "test")
SHARD_MB = 0.2  # a patch or two per shard: a dozen shards to deal out to the two workers


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """16 synthetic patches (one snow, one cloud, one without a 19-class target) + split CSVs."""
    root = tmp_path_factory.mktemp("ben_dask")
    generate_bigearthnet(root, 16, seed=5, num_no_target=1, num_snow=1, num_cloud=1)
    return root


def args(root):
    return dict(split_paths=[str(root / f"{s}.csv") for s in SPLITS], shard_size_mb=SHARD_MB,
                exclusion_lists=[str(root / "patches_with_seasonal_snow.csv"),
                                 str(root / "patches_with_cloud_and_shadow.csv")])


@pytest.fixture(scope="module")
def local(archive, tmp_path_factory):
    out = tmp_path_factory.mktemp("local")
    return out, cli.prepare(str(archive), str(out), **args(archive))


@pytest.fixture(scope="module")
def cluster():
    """A Dask cluster of 2 worker processes, 1 thread each, and a client to watch it."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  scheduler_kwargs={"dashboard_address": "127.0.0.1:0"}, host="127.0.0.1",
                                  preload=["prep.beam_worker"]) as c, distributed.Client(c) as client:
        client.wait_for_workers(2, timeout=120)
        yield c, client


def shard_files(out):
    return sorted(p for p in os.listdir(out) if ".tfrecord" in p)


def dask_prepare(root, out, address, **kw):
    return cli.prepare(str(root), str(out), runner="DaskRunner", beam_options=f"--dask_client_address={address}",
                       **kw)


def test_two_dask_workers_write_the_local_shards_byte_for_byte(archive, local, cluster, tmp_path):
    out_local, m_local = local
    c, client = cluster
    assert len(shard_files(out_local)) >= 8
    with distributed.get_task_stream(client=client) as stream:
        m = dask_prepare(archive, tmp_path, c.scheduler_address, **args(archive))
    assert shard_files(tmp_path) == shard_files(out_local)
    for f in shard_files(out_local):
        assert (tmp_path / f).read_bytes() == (out_local / f).read_bytes(), f
    assert m == m_local  # counts, class counts, statistics, excluded reasons, sha256: the whole manifest
    assert (tmp_path / "manifest.json").read_bytes() == (out_local / "manifest.json").read_bytes()
    info = json.loads((tmp_path / ".parts" / pbeam.RUN_INFO).read_text())
    assert info == {"runner": "DaskRunner", "shard_writer": "planned", "dask_cluster": "given"}
    # the shards were written in both worker processes, not in this one
    shard_tasks = [t for t in stream.data if "apply_dofn_to_bundle" in str(t["key"])]  # (ParDo, partition)
    partitions = sorted({t["key"][1] for t in shard_tasks})
    assert partitions == list(range(len(shard_files(out_local))))  # one planned shard per Dask partition
    assert {t["worker"] for t in shard_tasks} == set(client.scheduler_info()["workers"])


def test_rerun_on_dask_keeps_finished_shards(archive, cluster, tmp_path):
    c, _ = cluster
    m1 = dask_prepare(archive, tmp_path, c.scheduler_address, **args(archive))
    files = shard_files(tmp_path)
    before = {f: (tmp_path / f).stat().st_mtime_ns for f in files}
    data = {f: (tmp_path / f).read_bytes() for f in files}
    gone = files[2]
    (tmp_path / gone).unlink()
    m2 = dask_prepare(archive, tmp_path, c.scheduler_address, **args(archive))
    assert m2 == m1
    assert m2.run["shards_written"] == 1 and m2.run["shards_kept"] == len(files) - 1
    for f in files:
        assert (tmp_path / f).read_bytes() == data[f]
        if f != gone:
            assert (tmp_path / f).stat().st_mtime_ns == before[f]


def test_bad_patch_on_a_dask_worker_fails_with_its_message_or_is_skipped(archive, cluster, tmp_path):
    c, _ = cluster
    root = tmp_path / "root"
    shutil.copytree(archive, root)
    name = (root / "train.csv").read_text().split()[0]
    band = root / name / f"{name}_B03.tif"
    band.write_bytes(band.read_bytes()[:100])
    train = [str(root / "train.csv")]
    with pytest.raises(shards.PrepError) as e:
        dask_prepare(root, tmp_path / "o1", c.scheduler_address, split_paths=train)
    assert str(e.value).startswith(f"{name}: {band}: ")
    assert not [f for f in os.listdir(tmp_path / "o1") if ".tfrecord" in f]  # no half-written shard left
    m = dask_prepare(root, tmp_path / "o2", c.scheduler_address, split_paths=train, on_error="skip")
    ref = cli.prepare(str(root), str(tmp_path / "o3"), train, on_error="skip")
    assert m["skipped"] == ref["skipped"] and [s["key"] for s in m["skipped"]] == [name]
    for f in shard_files(tmp_path / "o3"):
        assert (tmp_path / "o2" / f).read_bytes() == (tmp_path / "o3" / f).read_bytes(), f


def run_cli(*argv):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run([sys.executable, "-m", "prep.bigearthnet", *argv], capture_output=True, text=True,
                          cwd=REPO, env=env, timeout=300)


def test_command_line_starts_a_local_dask_cluster(archive, local, tmp_path):
    out_local, _ = local
    a = args(archive)
    flags = ["-r", str(archive), "-n", *a["split_paths"], "--shard_size_mb", str(SHARD_MB),
             *[x for p in a["exclusion_lists"] for x in ("--exclusion_lists", p)], "--noprogress",
             "--runner", "DaskRunner"]
    r = run_cli(*flags, "-o", str(tmp_path / "out"), "--workers", "2")
    assert r.returncode == 0, r.stderr[-3000:]
    for noise in ("distributed.", "apitools", "Traceback", "partition size"):  # Dask's and Beam's INFO lines stay out
        assert noise not in r.stderr, r.stderr
    assert "listed in patches_with_seasonal_snow.csv" in r.stdout
    info = json.loads((tmp_path / "out" / ".parts" / pbeam.RUN_INFO).read_text())
    assert info["dask_cluster"] == "local, 2 worker processes"
    for f in shard_files(out_local) + ["manifest.json"]:
        assert (tmp_path / "out" / f).read_bytes() == (out_local / f).read_bytes(), f


def test_writetotfrecord_is_refused_before_anything_is_written(archive, tmp_path):
    """Beam's DaskRunner translates no file sink (WriteToTFRecord): refused before a cluster starts."""
    with pytest.raises(shards.PrepError, match="--shard_writer=planned only"):
        cli.prepare(str(archive), str(tmp_path / "sink"), runner="DaskRunner",
                    beam_options="--shard_writer=writetotfrecord", **args(archive))
    assert not (tmp_path / "sink").exists()


def test_an_unreachable_scheduler_is_one_error_line(archive, tmp_path):
    """--dask_client_address naming no scheduler: one line naming the option (was an OSError traceback)."""
    with socket.socket() as sock:  # bound, not listening: connections are refused
        sock.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{sock.getsockname()[1]}"
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "2s"}
        proc = subprocess.run([sys.executable, "-m", "prep.bigearthnet", "-r", str(archive),
                               "-o", str(tmp_path / "out"), "--runner", "DaskRunner", "--noprogress",
                               f"--beam_options=--dask_client_address={address}"],
                              capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    assert proc.returncode == 1, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    assert "Traceback" not in proc.stderr and len(errors) == 1, proc.stderr
    assert errors[0].startswith(f"error: --dask_client_address={address}: cannot reach the Dask scheduler")
