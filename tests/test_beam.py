"""prep.beam: BigEarthNet's plan written as a Beam pipeline (DirectRunner) against the local path.

On a small synthetic archive in the real format: the ``planned`` writer must give the local
path's shards byte for byte and the same manifest; ``writetotfrecord`` the same records as a
multiset per split, with the same counts and statistics. Plus the command line, errors,
resume, and output/input on a non-local Beam filesystem.
"""
import glob
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from apache_beam.io.filesystem import FileMetadata
from apache_beam.io.localfilesystem import LocalFileSystem

from prep import beam as pbeam
from prep import shards, tfrecord
from prep.datasets.bigearthnet import command as cli
from prep.datasets.bigearthnet.synthetic import generate_bigearthnet

REPO = Path(__file__).resolve().parents[1]
SPLITS = ("train", "val", "test")


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """16 synthetic patches (one snow, one cloud, one without a 19-class target) + split CSVs."""
    root = tmp_path_factory.mktemp("ben_beam")
    generate_bigearthnet(root, 16, seed=3, num_no_target=1, num_snow=1, num_cloud=1)
    return root


def args(root):
    return dict(split_paths=[str(root / f"{s}.csv") for s in SPLITS], shard_size_mb=0.5,
                exclusion_lists=[str(root / "patches_with_seasonal_snow.csv"),
                                 str(root / "patches_with_cloud_and_shadow.csv")])


@pytest.fixture(scope="module")
def local(archive, tmp_path_factory):
    out = tmp_path_factory.mktemp("local")
    return out, cli.prepare(str(archive), str(out), **args(archive))


def shard_files(out):
    return sorted(p for p in os.listdir(out) if ".tfrecord" in p)


def split_records(out, split):
    return sorted(r for f in sorted(glob.glob(os.path.join(out, f"{split}-*"))) for r in tfrecord.read_records(f))


def beam_prepare(root, out, split_paths=None, runner="DirectRunner", **kw):
    """The BigEarthNet command's plan written by prep.beam (``prepare(..., runner=...)``)."""
    return cli.prepare(root, out, split_paths, runner=runner, **kw)


def beam_run_info(out) -> dict:
    """The runner and worker options the Beam path records beside the plan (not in the manifest)."""
    return json.loads((Path(out) / ".parts" / pbeam.RUN_INFO).read_text())


def test_planned_writer_gives_the_local_shards_byte_for_byte(archive, local, tmp_path):
    out_local, m_local = local
    assert m_local["totals"]["excluded"] == 3 and len(shard_files(out_local)) > 3  # several shards per split
    m = beam_prepare(str(archive), str(tmp_path), runner="DirectRunner", **args(archive))
    assert shard_files(tmp_path) == shard_files(out_local)
    for f in shard_files(out_local):
        assert (tmp_path / f).read_bytes() == (out_local / f).read_bytes(), f
    assert m == m_local  # counts, class counts, statistics, excluded reasons, flags, sha256: the whole manifest
    assert (tmp_path / "manifest.json").read_bytes() == (out_local / "manifest.json").read_bytes()
    info = beam_run_info(tmp_path)
    assert info["runner"] == "DirectRunner" and info["shard_writer"] == "planned"
    assert json.loads((tmp_path / "manifest.json").read_text()) == json.loads(json.dumps(m))


def test_writetotfrecord_same_records_as_a_multiset(archive, local, tmp_path):
    out_local, m_local = local
    m = beam_prepare(str(archive), str(tmp_path), runner="DirectRunner", compression="GZIP",
                      beam_options="--shard_writer=writetotfrecord", **args(archive))
    for split in SPLITS:
        got = split_records(tmp_path, split)
        assert got == split_records(out_local, split) and got
        s, ref = m["splits"][split], m_local["splits"][split]
        assert [f["file"] for f in s["shards"]] == [f["file"] + ".gz" for f in ref["shards"]]  # same names
        assert sum(f["records"] for f in s["shards"]) == s["written"] == ref["written"]
        for key in ("listed", "excluded", "skipped", "class_counts"):
            assert s[key] == ref[key]
    assert m["statistics"] == m_local["statistics"]
    assert m["excluded"] == m_local["excluded"] and m["skipped"] == m_local["skipped"]
    assert m["flags"] == {**m_local["flags"], "shard_writer": "writetotfrecord", "compression": "GZIP"}


def run_cli(*argv):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run([sys.executable, "-m", "prep.bigearthnet", *argv], capture_output=True, text=True,
                          cwd=REPO, env=env)


def test_command_line_runner_with_two_worker_processes(archive, local, tmp_path):
    out_local, m_local = local
    a = args(archive)
    r = run_cli("-r", str(archive), "-o", str(tmp_path), "-n", *a["split_paths"], "--shard_size_mb", "0.5",
                *[x for p in a["exclusion_lists"] for x in ("--exclusion_lists", p)], "--workers", "2",
                "--noprogress", "--runner", "DirectRunner",
                "--beam_options=--direct_running_mode=multi_processing --shard_writer=planned")
    assert r.returncode == 0, r.stderr[-3000:]
    # Beam's own chatter stays out (no Prism download, our options accepted, no worker start-up lines)
    for noise in ("prism", "Discarding unparseable", "apitools", "semi_persistent_directory", "sdk harness"):
        assert noise.lower() not in r.stderr.lower(), r.stderr
    assert len(r.stderr.splitlines()) < 10, r.stderr
    assert "listed in patches_with_seasonal_snow.csv" in r.stdout
    m = json.loads((tmp_path / "manifest.json").read_text())
    info = beam_run_info(tmp_path)
    assert info["direct_num_workers"] == 2 and info["direct_running_mode"] == "multi_processing"
    assert "beam" not in m
    for f in shard_files(out_local):
        assert (tmp_path / f).read_bytes() == (out_local / f).read_bytes(), f


def test_bad_patch_fails_with_its_message_or_is_skipped(archive, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(archive, root)
    name = (root / "train.csv").read_text().split()[0]
    band = root / name / f"{name}_B03.tif"
    band.write_bytes(band.read_bytes()[:100])
    for workers in ("1", "2"):  # in-process worker, worker processes: one error line, no traceback
        r = run_cli("-r", str(root), "-o", str(tmp_path / f"o1_{workers}"), "-n", str(root / "train.csv"),
                    "--noprogress", "--runner", "DirectRunner", "--workers", workers)
        assert r.returncode == 1
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1, r.stderr
        assert lines[0].startswith(f"error: {name}: {band}: ") and "while running" not in lines[0]
    m = beam_prepare(str(root), str(tmp_path / "o2"), [str(root / "train.csv")], on_error="skip")
    ref = cli.prepare(str(root), str(tmp_path / "o3"), [str(root / "train.csv")], on_error="skip")
    assert m["skipped"] == ref["skipped"] and [s["key"] for s in m["skipped"]] == [name]


def test_rerun_keeps_finished_shards_and_redoes_the_rest(archive, tmp_path):
    m1 = beam_prepare(str(archive), str(tmp_path), **args(archive))
    files = shard_files(tmp_path)
    before = {f: (tmp_path / f).stat().st_mtime_ns for f in files}
    data = {f: (tmp_path / f).read_bytes() for f in files}
    gone = files[1]
    (tmp_path / gone).unlink()
    m2 = beam_prepare(str(archive), str(tmp_path), **args(archive))
    assert m2 == m1
    for f in files:
        assert (tmp_path / f).read_bytes() == data[f]
        if f != gone:
            assert (tmp_path / f).stat().st_mtime_ns == before[f]
    with pytest.raises(shards.PrepError, match="different preparation"):
        beam_prepare(str(archive), str(tmp_path), **{**args(archive), "shard_size_mb": 1.0})


def test_partial_archive_with_root_folder_lists_gives_the_local_output(archive, tmp_path):
    """Split and exclusion lists from the root folder (no -n), three patch folders missing, --on_error=skip:
    the same shards, manifest and missing.csv as the local path, and the same run information."""
    root = tmp_path / "partial"
    shutil.copytree(archive, root)
    gone = [(root / "train.csv").read_text().split()[i] for i in (0, 3, 5)]
    for name in gone:
        shutil.rmtree(root / name)
    local = cli.prepare(str(root), str(tmp_path / "local"), shard_size_mb=0.5, on_error="skip")
    m = beam_prepare(str(root), str(tmp_path / "beam"), shard_size_mb=0.5, on_error="skip")
    assert m == local and m.run == local.run and local["totals"]["missing"] == 3
    for f in shard_files(tmp_path / "local") + ["manifest.json", "missing.csv"]:
        assert (tmp_path / "beam" / f).read_bytes() == (tmp_path / "local" / f).read_bytes(), f
    assert (tmp_path / "beam" / "missing.csv").read_text() == "split,key\n" + "".join(f"train,{n}\n" for n in gone)
    with pytest.raises(shards.PrepError, match="3 of the 13 patches to prepare from train.csv, val.csv, test.csv "
                                               "in the root folder have no patch folder"):
        beam_prepare(str(root), str(tmp_path / "beam"), shard_size_mb=0.5)  # missing folders: an error under fail
    again = beam_prepare(str(root), str(tmp_path / "beam"), shard_size_mb=0.5, on_error="skip")
    assert again.run["shards_written"] == 0 and again.run["shards_kept"] == len(shard_files(tmp_path / "local"))


class FakeRemoteFS(LocalFileSystem):
    """A Beam filesystem with its own scheme, stored in a local folder: stands in for gs:// or s3://."""

    BASE = ""
    PREFIX = "fakeremote://"

    @classmethod
    def scheme(cls):
        return "fakeremote"

    def _l(self, p):
        return os.path.join(self.BASE, p[len(self.PREFIX):]) if p.startswith(self.PREFIX) else p

    def _r(self, p):
        return self.PREFIX + os.path.relpath(p, self.BASE)

    def join(self, base, *paths):
        return "/".join([base.rstrip("/")] + [p.strip("/") for p in paths])

    def split(self, path):
        return tuple(path.rstrip("/").rsplit("/", 1))

    def _url_dirname(self, url):
        return url.rsplit("/", 1)[0]

    def _list(self, prefix):
        for m in super()._list(self._l(prefix)):
            yield FileMetadata(self._r(m.path), m.size_in_bytes, m.last_updated_in_seconds)

    def mkdirs(self, path):
        return super().mkdirs(self._l(path))

    def create(self, path, *a, **k):
        os.makedirs(os.path.dirname(self._l(path)), exist_ok=True)
        return super().create(self._l(path), *a, **k)

    def open(self, path, *a, **k):
        return super().open(self._l(path), *a, **k)

    def rename(self, src, dst):
        return super().rename([self._l(p) for p in src], [self._l(p) for p in dst])

    def copy(self, src, dst):
        return super().copy([self._l(p) for p in src], [self._l(p) for p in dst])

    def exists(self, path):
        return super().exists(self._l(path))

    def size(self, path):
        return super().size(self._l(path))

    def last_updated(self, path):
        return super().last_updated(self._l(path))

    def checksum(self, path):
        return super().checksum(self._l(path))

    def metadata(self, path):
        m = super().metadata(self._l(path))
        return FileMetadata(path, m.size_in_bytes, m.last_updated_in_seconds)

    def delete(self, paths):
        return super().delete([self._l(p) for p in paths])


def test_remote_archive_and_output_on_a_beam_filesystem(archive, local, tmp_path):
    """Patch folders and output behind a non-local scheme (in-process runner: the scheme is registered here)."""
    out_local, m_local = local
    FakeRemoteFS.BASE = str(tmp_path)
    shutil.copytree(archive, tmp_path / "bucket" / "archive")
    m = beam_prepare("fakeremote://bucket/archive", "fakeremote://bucket/out", runner="DirectRunner",
                      workers=1, **args(archive))
    out = tmp_path / "bucket" / "out"
    assert shard_files(out) == shard_files(out_local)
    for f in shard_files(out_local):
        assert (out / f).read_bytes() == (out_local / f).read_bytes(), f
    assert m == m_local
    assert json.loads((out / "manifest.json").read_text())["totals"] == m_local["totals"]
    assert not list(out.glob("*.incomplete")) and not list((out / ".parts").glob("*.incomplete"))
    # a second run finds every shard finished (sidecars read back through the filesystem)
    stamp = {f: (out / f).stat().st_mtime_ns for f in shard_files(out)}
    assert beam_prepare("fakeremote://bucket/archive", "fakeremote://bucket/out", **args(archive)) == m_local
    assert {f: (out / f).stat().st_mtime_ns for f in shard_files(out)} == stamp


def test_options_string_and_runner_checks(archive):
    o = pbeam.pipeline_options("DirectRunner", "--direct_num_workers=3 --shard_writer=writetotfrecord", workers=2)
    all_ = o.get_all_options()
    assert all_["direct_num_workers"] == 3 and all_["direct_running_mode"] == "multi_processing"
    assert o.view_as(pbeam.PrepOptions).shard_writer == "writetotfrecord"
    with pytest.raises(shards.PrepError, match="--runner"):
        pbeam.pipeline_options("DirectRunner", "--runner=DataflowRunner")
    with pytest.raises(shards.PrepError, match="unknown runner"):
        pbeam.write_plan("/tmp/x", cli.plan(str(archive), **args(archive)), runner="NoSuchRunner")


def test_only_bad_input_reports_are_left_out_of_the_runners_logs():
    import io
    import logging

    from prep.beam_worker import WithoutPrepErrorTracebacks

    def record(exc):
        try:
            raise exc
        except Exception:
            return logging.LogRecord("apache_beam.runners.common", logging.ERROR, "f.py", 1, str(exc), None,
                                     sys.exc_info())

    drop = pbeam._DropPrepErrorReports()
    assert not drop.filter(record(shards.PrepError("patch: bad band")))
    assert drop.filter(record(RuntimeError("a bug")))
    relayed = logging.LogRecord("x", logging.ERROR, "f.py", 1, 'Worker: message: "...prep.errors.PrepError: p: bad"',
                                None, None)
    assert not drop.filter(relayed)
    out = io.StringIO()
    stream = WithoutPrepErrorTracebacks(out)
    print("Traceback (most recent call last):\n  ...\nprep.errors.PrepError: p: bad band", file=stream)
    print("Traceback (most recent call last):\n  ...\nZeroDivisionError: a bug", file=stream)
    print("any other line", file=stream)
    assert out.getvalue() == "Traceback (most recent call last):\n  ...\nZeroDivisionError: a bug\nany other line\n"
