"""``python -m pretrained`` / ``eorecords-pretrained``: the command convention and the model names.

The commands run in subprocesses (as a user runs them) and touch nothing but a temporary cache;
no download leaves 127.0.0.1.
"""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from pretrained import registry


def _run(*args: str, cache: Path, program: list[str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "EORECORDS_CACHE": str(cache)}
    cmd = (program or [sys.executable, "-m", "pretrained"]) + ["--noprogress", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def test_a_missing_name_is_a_one_line_usage_error(tmp_path):
    done = _run("fetch", cache=tmp_path)
    assert done.returncode == 2
    (line,) = _lines(done.stderr)
    assert line.startswith("error: fetch takes one model NAME") and line.endswith("(python -m pretrained --help)")
    assert done.stdout == ""


@pytest.mark.parametrize("args", [("convert", "a", "b"), ("list", "extra"), ("frobnicate",), ()])
def test_wrong_arguments_are_one_line_usage_errors(tmp_path, args):
    done = _run(*args, cache=tmp_path)
    assert done.returncode == 2, done.stderr
    (line,) = _lines(done.stderr)
    assert line.startswith("error: ") and "(python -m pretrained --help)" in line


def test_source_with_fetch_is_a_usage_error(tmp_path):
    done = _run("--source", str(tmp_path), "fetch", "K-BranchCNN", cache=tmp_path)
    assert done.returncode == 2 and "--source applies to convert only" in done.stderr


def test_an_unknown_model_is_one_error_line_listing_names_and_aliases(tmp_path):
    done = _run("fetch", "nosuchmodel", cache=tmp_path)
    assert done.returncode == 1
    (line,) = _lines(done.stderr)
    assert line.startswith("error: unknown pretrained model 'nosuchmodel'")
    for name in registry.names(include_families=False):
        aliases = registry.get(name).aliases
        assert aliases and f"{name} ({', '.join(aliases)})" in line
    assert "ghs-s2net-<zone> (MODEL_CNN_<zone>)" in line
    assert list(tmp_path.iterdir()) == []


def test_an_unreachable_host_is_one_error_line_at_once(tmp_path):
    sock = socket.socket()  # bound, not listening: connections are refused
    sock.bind(("127.0.0.1", 0))
    try:
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/K-BranchCNN.zip"
        start = time.monotonic()
        done = _run(f"--url={url}", "fetch", "K-BranchCNN", cache=tmp_path)
        seconds = time.monotonic() - start
    finally:
        sock.close()
    assert done.returncode == 1
    (line,) = _lines(done.stderr)
    assert line.startswith(f"error: {url}: connection to 127.0.0.1:") and "refused" in line and "--url" in line
    assert "retry" not in done.stderr and seconds < 30  # no retries (5 would sleep 31 s); the rest is start-up


def test_help_from_the_console_script_shows_the_description_and_flags(tmp_path):
    script = Path(sys.executable).parent / "eorecords-pretrained"
    if not script.exists():
        pytest.skip("eorecords-pretrained is not installed beside this Python")
    done = _run("--help", cache=tmp_path, program=[str(script)])
    out = done.stdout + done.stderr
    assert "Command line: ``python -m pretrained list | fetch NAME | convert NAME``" in out
    for flag in ("--cache_dir", "--url", "--sha256", "--source", "--retries"):
        assert flag in out
    usage = _run("fetch", cache=tmp_path, program=[str(script)])
    assert usage.returncode == 2 and usage.stderr.strip().endswith("(eorecords-pretrained --help)")


def test_list_shows_the_aliases(tmp_path):
    done = _run("list", cache=tmp_path)
    assert done.returncode == 0, done.stderr
    rows = {line.split()[0]: line.split()[1] for line in done.stdout.splitlines()[1:]
            if line.startswith("bigearthnet19-")}
    assert sorted(rows) == sorted(registry.names(include_families=False))
    for name, aliases in rows.items():
        assert aliases == ",".join(registry.get(name).aliases)
    assert re.search(r"^ghs-s2net-<zone> \(497 zones\)\s+MODEL_CNN_<zone>\s", done.stdout, re.M)
    every = _run("list", "--all", cache=tmp_path)
    assert re.search(r"^ghs-s2net-32T\s+MODEL_CNN_32T\s+GHS-S2Net\s", every.stdout, re.M)


@pytest.mark.parametrize("alias", ["K-BranchCNN", "k-branchcnn", "VGG16", "resnet152", "MODEL_CNN_32T"])
def test_aliases_are_accepted_in_any_case(alias):
    entry = registry.get(alias)
    assert registry.exists(alias) and alias.lower() in [a.lower() for a in entry.aliases]
    assert registry.get(alias.upper()) == entry == registry.get(entry.name)


def test_fetch_by_alias_with_a_local_url(tmp_path):
    archive = tmp_path / "K-BranchCNN.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("K-BranchCNN/model.ckpt.index", b"index")
    cache = tmp_path / "cache"
    done = _run(f"--url={archive}", "fetch", "K-BranchCNN", cache=cache)
    assert done.returncode == 0, done.stderr
    out = cache / "extracted" / "bigearthnet19-kbranchcnn"
    assert done.stdout.strip() == str(out) and (out / "K-BranchCNN" / "model.ckpt.index").read_bytes() == b"index"
