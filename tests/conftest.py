"""Shared fixtures: the six real BigEarthNet-S2 example patches from the bigearthnet-common wheel."""
from __future__ import annotations

import contextlib
import os
import shutil
import tarfile
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags  # noqa: E402

from splits import bigearthnet as splits  # noqa: E402

REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "reference"


def extract_examples(dest: Path, modality: str = "S2") -> Path:
    """Extract the wheel's example archive safely; return the folder holding the patch folders."""
    with tarfile.open(splits.example_archive(modality), "r:bz2") as tar:
        tar.extractall(dest, filter="data")
    (top,) = [p for p in dest.iterdir() if p.is_dir()]
    return top


@pytest.fixture(scope="session")
def s2_examples(tmp_path_factory) -> Path:
    """Read-only folder with the six real S2 patches (copy before modifying)."""
    return extract_examples(tmp_path_factory.mktemp("s2_examples"))


def clone_patch(src_root: Path, src: str, dst_root: Path, dst: str) -> None:
    """Copy a patch folder under a new patch name (file names and nothing else change)."""
    (dst_root / dst).mkdir(parents=True)
    for f in (src_root / src).iterdir():
        shutil.copyfile(f, dst_root / dst / f.name.replace(src, dst))


@pytest.fixture
def archive(tmp_path, s2_examples):
    """A writable archive: the six real patches plus ``n`` renamed copies; returns (root, names)."""

    def make(n_copies: int = 0):
        root = tmp_path / "archive"
        shutil.copytree(s2_examples, root)
        names = sorted(p.name for p in root.iterdir())
        real = list(names)
        for i in range(n_copies):
            src = real[i % len(real)]
            dst = f"S2A_MSIL2A_20180101T101010_{100 + i}_{i % 7}"
            clone_patch(root, src, root, dst)
            names.append(dst)
        return root, names

    return make


def write_split(path: Path, names) -> str:
    path.write_text("".join(f"{n}\r\n" for n in names))
    return str(path)


@contextlib.contextmanager
def command_flags(module):
    """Declare a command module's flags in this process for one test, then remove them again.

    The commands declare their flags only when run (``define_flags``), and several share names
    (--data_dir, --batch_size, --progress), so a test that runs one in-process must not leave its
    flags behind for the next test on the same pytest worker.
    """
    before = set(flags.FLAGS)
    module.define_flags.cache_clear()
    try:
        module.define_flags()  # inside the try: flags declared before a failure are removed too
        yield flags.FLAGS
    finally:
        flags.FLAGS.unparse_flags()
        for name in set(flags.FLAGS) - before:
            if name in flags.FLAGS:
                delattr(flags.FLAGS, name)
        module.define_flags.cache_clear()


_COMMAND_SCRIPTS = ("train", "evaluate", "predict")
_COMMAND_PACKAGES = ("prep.", "scene.", "pretrained.", "models.")


def _command_flags() -> set[str]:
    """The flags in this process declared by the project's commands (not by absl, TensorFlow, ...)."""
    out = set()
    for name in flags.FLAGS:
        module = flags.FLAGS.find_module_defining_flag(name) or ""
        if module in _COMMAND_SCRIPTS or module.startswith(_COMMAND_PACKAGES):
            out.add(name)
    return out


@pytest.fixture(autouse=True)
def _no_command_flags_left_behind(request):
    """Fails a test that leaves a command's flags declared: the next test on the worker could not declare them.

    Which tests share a pytest-xdist worker changes from run to run, so a leak fails another test
    only sometimes; checked here it fails the leaking test every time. Use ``command_flags``.
    """
    before = _command_flags()
    yield
    left = _command_flags() - before
    if left:
        for name in left:  # clean up, so that only this test fails
            delattr(flags.FLAGS, name)
        pytest.fail(f"{request.node.nodeid} left command flags declared: {', '.join(sorted(left))} "
                    "(use tests.conftest.command_flags)")
