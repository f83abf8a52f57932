"""File helpers every part of the project shares: atomic writes, SHA-256, compressed text.

One implementation each (the shard writer, the manifests, train.py's run files, the pretrained
cache and the patch JSON updates all use these):

- ``atomic_path`` / ``atomic_write`` / ``write_json_atomic``: a file is written under a temporary
  name in its own folder and renamed over the target when complete, so a reader sees the old file
  or the whole new one, never a partial one, and a killed run leaves no half-written target;
- ``sha256_file``: the hex SHA-256 of a file, read 4 MB at a time;
- ``open_text``: a plain, ``.bz2`` or ``.gz`` text file opened for reading.
"""
from __future__ import annotations

import bz2
import contextlib
import gzip
import hashlib
import json
import os
from typing import IO, Any, Iterator

_BLOCK = 1 << 22


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, fsync: bool = False) -> Iterator[str]:
    """Yield a temporary path beside ``path``; rename it over ``path`` when the block succeeds.

    For writers that take a path (``model.save``, ``np.savez``). On an exception the temporary
    file is removed and ``path`` is left as it was. ``fsync`` syncs the file before the rename.
    """
    path = os.fspath(path)
    head, tail = os.path.split(path)
    tmp = os.path.join(head, f".{tail}.tmp-{os.getpid()}")
    try:
        yield tmp
        if fsync:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8",
                 newline: str | None = None, fsync: bool = False) -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path`` for writing (``mode`` "w" or "wb"); it replaces
    ``path`` when the block ends without an exception (see ``atomic_path``)."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write: mode must be 'w' or 'wb', not {mode!r}")
    with atomic_path(path) as tmp:
        kwargs = {} if "b" in mode else {"encoding": encoding, "newline": newline}
        with open(tmp, mode, **kwargs) as f:
            yield f
            if fsync:
                f.flush()
                os.fsync(f.fileno())


def write_json_atomic(path: str | os.PathLike, obj: Any, indent: int = 1, default=None,
                      fsync: bool = True) -> None:
    """Write ``obj`` as JSON (``indent``, keys in insertion order, a final newline) to ``path``
    atomically; ``default`` converts values JSON does not know (e.g. ``str``)."""
    with atomic_write(path, fsync=fsync) as f:
        json.dump(obj, f, indent=indent, default=default)
        f.write("\n")


def sha256_file(path: str | os.PathLike) -> str:
    """The SHA-256 of a file, as 64 hex digits."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_BLOCK), b""):
            h.update(block)
    return h.hexdigest()


def open_text(path: str | os.PathLike) -> IO[str]:
    """Open a plain, ``.bz2`` or ``.gz`` text file for reading (UTF-8, newlines as written)."""
    path = os.fspath(path)
    if path.endswith(".bz2"):
        return bz2.open(path, "rt", encoding="utf-8", newline="")
    if path.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


__all__ = ["atomic_path", "atomic_write", "write_json_atomic", "sha256_file", "open_text"]
