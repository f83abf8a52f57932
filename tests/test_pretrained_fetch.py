"""pretrained.fetch and pretrained.registry: download with progress, resume, checksum, safe unpacking.

Every download goes to a throw-away HTTP server on 127.0.0.1 or to local files; no network.
"""
from __future__ import annotations

import hashlib
import http.server
import io
import json
import os
import re
import socket
import tarfile
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from prep import files
from pretrained import fetch, registry

REFERENCE = Path(__file__).resolve().parents[1] / ".." / "shared" / "reference"


# ------------------------------------------------------------------------------------------ server

class _Server:
    """Serves ``files`` (path -> bytes). Paths under /cut/ send only half the body on the first
    plain GET and then drop the connection, paths under /alwayscut/ do so on every request; paths
    under /norange/ ignore Range headers; a path under /slow/ asked first keeps the client waiting
    ``SLOW_S`` seconds and hangs up without an answer.

    Each request is logged in arrival order (the client asks one at a time, so that is the order
    it asked in) with the bytes of body the handler wrote. The handler thread may still be
    finishing after the client has read the last byte, so ``requests`` and ``sent`` first wait
    (a few seconds at most) until every logged request has been handled.
    """

    SETTLE_S = 5.0
    SLOW_S = 0.6

    def __init__(self, files: dict[str, bytes]):
        self.files = files
        self.log: list[dict] = []
        self._changed = threading.Condition()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                record = server._begin(self.path, self.headers.get("Range"))
                try:
                    self._answer(record)
                finally:
                    server._end(record)

            def _answer(self, record: dict):
                rng = record["range"]
                body = server.files.get(self.path)
                if self.path.startswith("/slow/") and len(server.log) == 1:
                    time.sleep(server.SLOW_S)  # longer than the client's timeout; then hang up silently
                    self.close_connection = True
                    return
                if body is None:
                    self.send_error(404, "not here")
                    return
                start = 0
                match = re.fullmatch(r"bytes=(\d+)-", rng or "")
                if match and not self.path.startswith("/norange/"):
                    start = int(match.group(1))
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                payload = body[start:]
                if (self.path.startswith("/cut/") and not rng) or self.path.startswith("/alwayscut/"):
                    payload = payload[: len(payload) // 2]
                self.wfile.write(payload)
                self.wfile.flush()
                record["sent"] = len(payload)
                self.close_connection = True

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def _begin(self, path: str, rng: str | None) -> dict:
        with self._changed:
            record = {"path": path, "range": rng, "sent": 0, "done": False}
            self.log.append(record)
            return record

    def _end(self, record: dict) -> None:
        with self._changed:
            record["done"] = True
            self._changed.notify_all()

    def settled(self) -> list[dict]:
        """The request log once every logged request has been handled (AssertionError after SETTLE_S)."""
        with self._changed:
            if not self._changed.wait_for(lambda: all(r["done"] for r in self.log), self.SETTLE_S):
                raise AssertionError(f"the test server still handles a request after {self.SETTLE_S} s")
            return [dict(r) for r in self.log]

    @property
    def requests(self) -> list[tuple[str, str | None]]:
        """(path, Range header) of each request, in arrival order."""
        return [(r["path"], r["range"]) for r in self.settled()]

    @property
    def sent(self) -> list[int]:
        """Body bytes written for each request, in arrival order."""
        return [r["sent"] for r in self.settled()]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"


@pytest.fixture
def server():
    payload = np.random.default_rng(0).integers(0, 256, 300_000, dtype=np.uint8).tobytes()
    srv = _Server({f"/{kind}/model.zip": payload for kind in ("files", "cut", "alwayscut", "norange", "slow")})
    srv.payload = payload
    srv.thread.start()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------------------- download

def test_download_shows_progress_and_records_digest(server, tmp_path, capsys):
    dest = tmp_path / "dl" / "model.zip"
    got = fetch.download(server.url("/files/model.zip"), dest, sha256=_sha(server.payload), chunk_size=16_384)
    assert got == dest and dest.read_bytes() == server.payload
    err = capsys.readouterr().err
    assert "100%" in err and "293k/293k" in err  # 300,000 bytes in KiB
    assert Path(str(dest) + ".sha256").read_text().split()[0] == _sha(server.payload)
    assert not Path(str(dest) + ".part").exists()
    # a second call finds the verified file and does not ask the server again
    fetch.download(server.url("/files/model.zip"), dest, sha256=_sha(server.payload))
    assert len(server.requests) == 1


def test_download_resumes_after_a_cut_connection(server, tmp_path):
    dest = tmp_path / "model.zip"
    fetch.download(server.url("/cut/model.zip"), dest, sha256=_sha(server.payload), backoff=0, progress=False)
    assert dest.read_bytes() == server.payload
    half = len(server.payload) // 2
    assert server.requests == [("/cut/model.zip", None), ("/cut/model.zip", f"bytes={half}-")]
    assert server.sent == [half, len(server.payload) - half]  # the second request fetched only the rest


def test_download_resumes_a_partial_file_left_by_an_earlier_run(server, tmp_path):
    dest = tmp_path / "model.zip"
    Path(str(dest) + ".part").write_bytes(server.payload[:100_000])
    fetch.download(server.url("/files/model.zip"), dest, sha256=_sha(server.payload), progress=False)
    assert dest.read_bytes() == server.payload
    assert server.requests == [("/files/model.zip", "bytes=100000-")]


def test_download_restarts_when_the_server_ignores_range(server, tmp_path):
    dest = tmp_path / "model.zip"
    Path(str(dest) + ".part").write_bytes(b"junk" * 10)
    fetch.download(server.url("/norange/model.zip"), dest, sha256=_sha(server.payload), progress=False)
    assert dest.read_bytes() == server.payload


def test_checksum_mismatch_is_a_clear_error_and_leaves_no_file(server, tmp_path):
    dest = tmp_path / "model.zip"
    wrong = "0" * 64
    with pytest.raises(fetch.ChecksumError) as err:
        fetch.download(server.url("/files/model.zip"), dest, sha256=wrong, progress=False)
    message = str(err.value)
    assert "SHA-256 mismatch" in message and wrong in message and _sha(server.payload) in message
    assert "/files/model.zip" in message
    assert list(tmp_path.iterdir()) == []


def test_http_error_names_the_url_and_is_not_retried(server, tmp_path):
    with pytest.raises(fetch.FetchError, match=r"missing\.zip: HTTP 404"):
        fetch.download(server.url("/missing.zip"), tmp_path / "x.zip", progress=False, backoff=0)
    assert len(server.requests) == 1
    assert list(tmp_path.iterdir()) == []


def test_gives_up_after_retries_and_keeps_the_partial_file(server, tmp_path):
    # every answer is cut half-way: each try resumes, and the last failure keeps what arrived
    dest = tmp_path / "m.zip"
    with pytest.raises(fetch.FetchError, match="after 1 retries") as err:
        fetch.download(server.url("/alwayscut/model.zip"), dest, retries=1, backoff=0, progress=False)
    half = len(server.payload) // 2
    quarter = (len(server.payload) - half) // 2
    assert server.sent == [half, quarter]
    part = Path(str(dest) + ".part")
    assert part.read_bytes() == server.payload[: half + quarter] and f"{half + quarter} bytes kept" in str(err.value)
    assert not dest.exists()


def test_a_timeout_is_retried(server, tmp_path):
    dest = tmp_path / "model.zip"
    fetch.download(server.url("/slow/model.zip"), dest, sha256=_sha(server.payload), timeout=0.2, backoff=0,
                   progress=False)
    assert dest.read_bytes() == server.payload
    assert server.requests == [("/slow/model.zip", None)] * 2


@pytest.fixture
def refusing_port():
    """A port bound on 127.0.0.1 without listening: connections are refused, and no other process
    can take the port while the test runs (closing it first would leave that race open)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    yield sock.getsockname()[1]
    sock.close()


def test_a_refused_connection_fails_at_once(refusing_port, tmp_path):
    url = f"http://127.0.0.1:{refusing_port}/m.zip"
    start = time.monotonic()
    with pytest.raises(fetch.FetchError) as err:
        fetch.download(url, tmp_path / "m.zip", retries=5, backoff=1.0, progress=False, timeout=5)
    assert time.monotonic() - start < 1.0  # one retry alone would sleep 1 s
    message = str(err.value)
    assert message.startswith(url + ": ") and f"127.0.0.1:{refusing_port} refused" in message
    assert "--url" in message and "retries" not in message
    assert list(tmp_path.iterdir()) == []


def test_a_host_that_does_not_resolve_fails_at_once_naming_it(monkeypatch, tmp_path):
    lookups = []

    def no_dns(host, *args, **kwargs):
        lookups.append(host)
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    start = time.monotonic()
    with pytest.raises(fetch.FetchError) as err:
        fetch.fetch("K-BranchCNN", cache=tmp_path / "cache", progress=False)
    assert time.monotonic() - start < 1.0
    assert lookups == ["bigearth.net"]  # asked once: no retry
    message = str(err.value)
    assert "cannot resolve host 'bigearth.net'" in message and "Temporary failure in name resolution" in message
    assert "--url" in message and "K-BranchCNN.zip" in message


def test_local_paths_and_file_urls(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"abc" * 1000)
    a = fetch.download(str(src), tmp_path / "a" / "src.bin", sha256=_sha(src.read_bytes()), progress=False)
    b = fetch.download(src.as_uri(), tmp_path / "b" / "src.bin", progress=False)
    assert a.read_bytes() == b.read_bytes() == src.read_bytes()
    with pytest.raises(fetch.ChecksumError):
        fetch.download(str(src), tmp_path / "c" / "src.bin", sha256="1" * 64, progress=False)
    assert not (tmp_path / "c" / "src.bin").exists() and not (tmp_path / "c" / "src.bin.part").exists()


def test_cache_dir_flag_env_and_default(monkeypatch, tmp_path):
    monkeypatch.setenv(fetch.ENV_CACHE, str(tmp_path / "env"))
    assert fetch.cache_dir() == tmp_path / "env"
    assert fetch.cache_dir(tmp_path / "flag") == tmp_path / "flag"
    monkeypatch.delenv(fetch.ENV_CACHE)
    assert fetch.cache_dir() == Path(os.path.expanduser("~/.cache/eorecords"))


# ---------------------------------------------------------------------------------------- unpacking

def _zip(path: Path, entries: dict[str, bytes], symlink: str | None = None) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = (0o120777 << 16)
            zf.writestr(info, "/etc/passwd")
    return path


def _tar(path: Path, add, mode: str = "w") -> Path:
    with tarfile.open(path, mode) as tf:
        add(tf)
    return path


def _assert_nothing_written(tmp_path: Path, keep: set[str]):
    assert {p.name for p in tmp_path.iterdir()} == keep


# The one safe unpacking (prep.files.extract_archive) is tested here, with pretrained.fetch.extract,
# its thin wrapper, and the wheel's example archive (what prep.synthetic's extract_examples unpacks).

def test_extract_unpacks_nested_files_and_replaces_the_target(tmp_path):
    archive = _zip(tmp_path / "ok.zip", {"K-BranchCNN/model.index": b"i", "K-BranchCNN/sub/x.data": b"d" * 10})
    target = tmp_path / "out"
    target.mkdir()
    (target / "stale").write_text("old")
    assert files.extract_archive(archive, target) == target
    assert (target / "K-BranchCNN" / "model.index").read_bytes() == b"i"
    assert (target / "K-BranchCNN" / "sub" / "x.data").read_bytes() == b"d" * 10
    assert not (target / "stale").exists()
    _assert_nothing_written(tmp_path, {"ok.zip", "out"})


@pytest.mark.parametrize("name", ["../evil.txt", "a/../../evil.txt", "/abs/evil.txt", "..\\evil.txt",
                                  "C:/evil.txt"])
def test_extract_rejects_entries_escaping_the_folder(tmp_path, name):
    archive = _zip(tmp_path / "bad.zip", {"fine.txt": b"ok", name: b"evil"})
    with pytest.raises(files.UnsafeArchiveError, match="absolute path|escapes the target") as err:
        files.extract_archive(archive, tmp_path / "out")
    assert str(err.value).startswith(f"{archive}: entry ") and err.value.path == str(archive)
    _assert_nothing_written(tmp_path, {"bad.zip"})


def test_extract_rejects_tar_entries_escaping_the_folder(tmp_path):
    for name in ("../evil.txt", "/etc/evil.txt", "top/../../evil.txt"):
        def add(tf, name=name):
            info = tarfile.TarInfo(name)
            info.size = 4
            tf.addfile(info, io.BytesIO(b"evil"))

        archive = _tar(tmp_path / "bad.tar.gz", add, "w:gz")
        with pytest.raises(files.UnsafeArchiveError, match="absolute path|escapes the target"):
            files.extract_archive(archive, tmp_path / "out", strip_components=1)
        _assert_nothing_written(tmp_path, {"bad.tar.gz"})


def test_extract_rejects_zip_symlinks(tmp_path):
    archive = _zip(tmp_path / "link.zip", {"a.txt": b"a"}, symlink="passwd")
    with pytest.raises(files.UnsafeArchiveError, match="link"):
        files.extract_archive(archive, tmp_path / "out")
    _assert_nothing_written(tmp_path, {"link.zip"})


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.FIFOTYPE, tarfile.CHRTYPE])
def test_extract_rejects_tar_links_and_special_files(tmp_path, kind):
    def add(tf):
        data = b"hello"
        info = tarfile.TarInfo("ok.txt")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("sneaky")
        link.type = kind
        link.linkname = "../../etc/passwd" if kind != tarfile.LNKTYPE else "ok.txt"
        tf.addfile(link)

    archive = _tar(tmp_path / "bad.tar", add)
    with pytest.raises(files.UnsafeArchiveError, match="link|not a regular file"):
        files.extract_archive(archive, tmp_path / "out")
    _assert_nothing_written(tmp_path, {"bad.tar"})


def test_extract_rejects_absurd_ratios_and_sizes(tmp_path):
    archive = _zip(tmp_path / "bomb.zip", {"zeros.bin": bytes(4 << 20)})
    with pytest.raises(files.UnsafeArchiveError, match="compression ratio"):
        files.extract_archive(archive, tmp_path / "out", limits=files.ArchiveLimits(max_ratio=100))
    with pytest.raises(files.UnsafeArchiveError, match="over the limit"):
        files.extract_archive(archive, tmp_path / "out",
                              limits=files.ArchiveLimits(max_member_bytes=1 << 20, max_ratio=1e9))
    with pytest.raises(files.UnsafeArchiveError, match="more than the limit 1"):
        files.extract_archive(_zip(tmp_path / "two.zip", {"a": b"a", "b": b"b"}), tmp_path / "out",
                              limits=files.ArchiveLimits(max_members=1))
    # tar.gz: the ratio is judged on the whole archive
    def add(tf):
        info = tarfile.TarInfo("zeros.bin")
        info.size = 4 << 20
        tf.addfile(info, io.BytesIO(bytes(info.size)))
    _tar(tmp_path / "bomb.tar.gz", add, "w:gz")
    with pytest.raises(files.UnsafeArchiveError, match="ratio"):
        files.extract_archive(tmp_path / "bomb.tar.gz", tmp_path / "out", limits=files.ArchiveLimits(max_ratio=100))
    _assert_nothing_written(tmp_path, {"bomb.zip", "two.zip", "bomb.tar.gz"})
    # with room enough the same archive unpacks
    files.extract_archive(archive, tmp_path / "out", limits=files.ArchiveLimits(max_ratio=1e4))
    assert (tmp_path / "out" / "zeros.bin").stat().st_size == 4 << 20


def test_extract_refuses_non_archives_and_corrupt_ones(tmp_path):
    (tmp_path / "x.zip").write_bytes(b"not an archive")
    with pytest.raises(files.ArchiveError, match="neither a zip nor a tar"):
        files.extract_archive(tmp_path / "x.zip", tmp_path / "out")
    with pytest.raises(files.ArchiveError, match="no such file"):
        files.extract_archive(tmp_path / "absent.zip", tmp_path / "out")
    good = _zip(tmp_path / "good.zip", {"a.bin": bytes(range(256)) * 400})
    data = bytearray(good.read_bytes())
    data[100:140] = bytes(40)  # inside the compressed data of a.bin
    (tmp_path / "bad.zip").write_bytes(bytes(data))
    with pytest.raises(files.ArchiveError, match="cannot unpack") as err:
        files.extract_archive(tmp_path / "bad.zip", tmp_path / "out")
    assert str(err.value).startswith(f"{tmp_path / 'bad.zip'}: ")
    _assert_nothing_written(tmp_path, {"x.zip", "good.zip", "bad.zip"})


def test_extract_strips_leading_components_and_can_merge_into_a_folder(tmp_path):
    archive = _zip(tmp_path / "a.zip", {"Top/p1/x.tif": b"1", "Top/p2/y.tif": b"2", "Top/readme": b"r",
                                        "beside.txt": b"dropped"})
    out = files.extract_archive(archive, tmp_path / "out", strip_components=1)
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == ["p1", "p1/x.tif", "p2", "p2/y.tif", "readme"]
    shared = tmp_path / "shared"
    (shared / "mine").mkdir(parents=True)
    (shared / "p1").mkdir()
    (shared / "p1" / "old.tif").write_bytes(b"old")
    files.extract_archive(archive, shared, strip_components=1, merge=True)
    assert sorted(p.name for p in shared.iterdir()) == ["mine", "p1", "p2", "readme"]
    assert [p.name for p in (shared / "p1").iterdir()] == ["x.tif"]  # an unpacked item replaces its namesake
    _assert_nothing_written(tmp_path, {"a.zip", "out", "shared"})


def test_extract_with_strip_components_unpacks_the_wheels_example_patches(tmp_path):
    from tests import conftest

    archive = conftest.splits.example_archive("S2")  # the archive conftest's extract_examples unpacks
    out = files.extract_archive(archive, tmp_path / "ours", strip_components=1)
    reference = conftest.extract_examples(tmp_path / "reference")
    ours = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    assert ours == sorted(str(p.relative_to(reference)) for p in reference.rglob("*"))
    assert len([p for p in out.iterdir() if p.is_dir()]) == 6
    for f in reference.rglob("*.tif"):
        assert (out / f.relative_to(reference)).read_bytes() == f.read_bytes()


def test_fetch_extract_wraps_the_errors_as_fetch_errors(tmp_path):
    archive = _zip(tmp_path / "link.zip", {"a.txt": b"a"}, symlink="passwd")
    with pytest.raises(fetch.UnsafeArchiveError, match="link") as err:
        fetch.extract(archive, tmp_path / "out")
    assert isinstance(err.value, fetch.FetchError) and isinstance(err.value, files.UnsafeArchiveError)
    (tmp_path / "x.zip").write_bytes(b"not an archive")
    with pytest.raises(fetch.FetchError, match="neither a zip nor a tar"):
        fetch.extract(tmp_path / "x.zip", tmp_path / "out")
    with pytest.raises(fetch.UnsafeArchiveError, match="compression ratio"):
        fetch.extract(_zip(tmp_path / "bomb.zip", {"z": bytes(4 << 20)}), tmp_path / "out", fetch.Limits(max_ratio=100))
    assert fetch.extract(_zip(tmp_path / "ok.zip", {"d/f": b"f"}), tmp_path / "out") == tmp_path / "out"
    assert (tmp_path / "out" / "d" / "f").read_bytes() == b"f"


# ------------------------------------------------------------------------------------ registry/fetch

def test_registry_has_the_published_checkpoints():
    names = registry.names(include_families=False)
    assert names == [f"bigearthnet19-{a}" for a in
                     ("kbranchcnn", "vgg16", "vgg19", "resnet50", "resnet101", "resnet152")]
    k = registry.get("K-BranchCNN")
    assert k.name == "bigearthnet19-kbranchcnn" and k.url.endswith("BigEarthNet-S2_19-Classes/K-BranchCNN.zip")
    assert k.input_spec() == {"10m": (120, 120, 4), "20m": (60, 60, 6), "60m": (20, 20, 2)}
    assert k.inputs["10m"]["bands"] == ["B04", "B03", "B02", "B08"]
    v = registry.get("resnet152")
    assert v.input_spec() == {"image": (120, 120, 10)} and v.resample == "bicubic"
    assert v.inputs["image"]["bands"][:4] == ["B04", "B03", "B02", "B08"]
    assert len(v.class_names()) == 19 and v.class_names()[0] == "Urban fabric"
    ghs = registry.families()["ghs-s2net"]
    assert len(ghs) == 497
    z = registry.get("MODEL_CNN_32T")
    assert z.name == "ghs-s2net-32T" and z.url.endswith("/Pretrained_models/MODEL_CNN_32T.h5")
    assert z.input_spec() == {"image": (5, 5, 4)} and z.num_classes == 2
    with pytest.raises(registry.UnknownModelError, match="unknown pretrained model 'nope'"):
        registry.get("nope")


def test_registry_zones_match_the_reference_list():
    listing = REFERENCE / "ghs" / "pretrained_model_utm_zones.txt"
    if not listing.exists():
        pytest.skip("reference folder absent")
    zones = [z.strip() for z in listing.read_text().split() if z.strip()]
    assert registry.families()["ghs-s2net"] == [f"ghs-s2net-{z}" for z in zones]


def test_fetch_with_url_override_unpacks_once(tmp_path, server):
    archive = _zip(tmp_path / "K-BranchCNN.zip", {"K-BranchCNN/model.ckpt.index": b"index"})
    server.files["/mirror/K-BranchCNN.zip"] = archive.read_bytes()
    cache = tmp_path / "cache"
    out = fetch.fetch("K-BranchCNN", cache=cache, url=server.url("/mirror/K-BranchCNN.zip"), progress=False)
    assert out == cache / "extracted" / "bigearthnet19-kbranchcnn"
    assert (out / "K-BranchCNN" / "model.ckpt.index").read_bytes() == b"index"
    stamp = (out / "K-BranchCNN" / "model.ckpt.index").stat().st_mtime_ns
    again = fetch.fetch("K-BranchCNN", cache=cache, url=server.url("/mirror/K-BranchCNN.zip"), progress=False)
    assert again == out and (out / "K-BranchCNN" / "model.ckpt.index").stat().st_mtime_ns == stamp
    assert len(server.requests) == 1
    # a local file works the same, and the marker records where it came from
    out2 = fetch.fetch("vgg16", cache=cache, url=str(archive), progress=False)
    assert json.loads((out2 / ".eorecords-extracted.json").read_text())["url"] == str(archive)


def test_fetch_rejects_an_lfs_pointer_instead_of_hdf5(tmp_path):
    pointer = tmp_path / "MODEL_CNN_32T.h5"
    pointer.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 1\n")
    with pytest.raises(fetch.FetchError, match="Git LFS pointer"):
        fetch.fetch("ghs-s2net-32T", cache=tmp_path / "cache", url=str(pointer), progress=False)


def test_loading_a_name_without_network_hints_at_the_fetch_command(refusing_port, tmp_path, monkeypatch):
    """predict.py / train.py --init_from have no --url: the hint names the command that has it."""
    import dataclasses

    import pretrained
    from models import ghs

    entry = registry.get("MODEL_CNN_32T")
    url = f"http://127.0.0.1:{refusing_port}/MODEL_CNN_32T.h5"
    monkeypatch.setattr(registry, "get", lambda name: dataclasses.replace(entry, url=url))
    with pytest.raises(fetch.FetchError) as e:
        pretrained.load_into(ghs.build_ghs_s2net(ghs.DEFAULT_INPUT_SPEC), "MODEL_CNN_32T", cache=tmp_path,
                             progress=False)
    message = str(e.value)
    assert message.startswith(url + ": ") and "refused" in message
    assert f"python -m pretrained fetch {entry.name} --url MIRROR" in message and "local weights file" in message
