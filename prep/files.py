"""File helpers every part of the project shares: atomic writes, SHA-256, compressed text.

One implementation each (the shard writer, the manifests, train.py's run files, the pretrained
cache and the patch JSON updates all use these):

- ``atomic_path`` / ``atomic_write`` / ``write_json_atomic``: a file is written under a temporary
  name in its own folder and renamed over the target when complete, so a reader sees the old file
  or the whole new one, never a partial one, and a killed run leaves no half-written target;
- ``sha256_file``: the hex SHA-256 of a file, read 4 MB at a time;
- ``open_text``: a plain, ``.bz2``, ``.gz`` or ``.xz`` text file opened for reading;
- ``extract_archive``: a zip or tar archive unpacked safely (every entry checked before anything
  is written: nothing outside the target folder, no links or devices, sizes and compression ratios
  within ``ArchiveLimits``), into a temporary folder renamed over the target at the end.
"""
from __future__ import annotations

import bz2
import contextlib
import dataclasses
import gzip
import hashlib
import json
import lzma
import os
import re
import shutil
import stat
import tarfile
import zipfile
import zlib
from pathlib import Path
from typing import IO, Any, Callable, Iterator

from prep.errors import InputError

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
    """Opens a temporary file beside ``path`` for writing; it replaces ``path`` when the block succeeds.

    Nothing changes at ``path`` when the block raises (see ``atomic_path``).

    Args:
        path: the file to write.
        mode: "w" (text) or "wb" (binary).
        encoding: text encoding (text mode only).
        newline: ``open``'s newline argument (text mode only).
        fsync: flush the file to disk before it replaces ``path``.

    Raises:
        ValueError: any other mode.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write: mode must be 'w' or 'wb', not {mode!r}")
    with atomic_path(path) as tmp:
        kwargs = {} if "b" in mode else {"encoding": encoding, "newline": newline}
        with open(tmp, mode, **kwargs) as f:
            yield f
            if fsync:
                f.flush()
                os.fsync(f.fileno())


def write_json_atomic(path: str | os.PathLike, obj: Any, indent: int = 1,
                      default: Callable[[Any], Any] | None = None, fsync: bool = True) -> None:
    """Writes ``obj`` as JSON to ``path`` atomically (``indent``, keys in insertion order, a final newline).

    Args:
        path: the file to write.
        obj: the value to write.
        indent: JSON indentation.
        default: converts values JSON does not know (e.g. ``str``); None = they raise TypeError.
        fsync: flush to disk before replacing ``path``.

    Raises:
        TypeError: a value JSON cannot represent and no ``default``.
    """
    with atomic_write(path, fsync=fsync) as f:
        json.dump(obj, f, indent=indent, default=default)
        f.write("\n")


def sha256_stream(f: IO[bytes]) -> tuple[str, int]:
    """(SHA-256 as 64 hex digits, bytes read) of a binary file object read to its end, 4 MB at a time.

    For files that are not local paths (Beam filesystems); ``sha256_file`` for a path.
    """
    h, size = hashlib.sha256(), 0
    for block in iter(lambda: f.read(_BLOCK), b""):
        h.update(block)
        size += len(block)
    return h.hexdigest(), size


def sha256_file(path: str | os.PathLike) -> str:
    """The SHA-256 of a file, as 64 hex digits."""
    with open(path, "rb") as f:
        return sha256_stream(f)[0]


def open_text(path: str | os.PathLike) -> IO[str]:
    """Open a plain, ``.bz2``, ``.gz`` or ``.xz`` text file for reading (UTF-8, newlines as written)."""
    path = os.fspath(path)
    if path.endswith(".bz2"):
        return bz2.open(path, "rt", encoding="utf-8", newline="")
    if path.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8", newline="")
    if path.endswith(".xz"):
        return lzma.open(path, "rt", encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


# ------------------------------------------------------------------------------------ archives

class ArchiveError(InputError):
    """An archive cannot be unpacked: not a zip or tar file, truncated or corrupt (names the archive)."""


class UnsafeArchiveError(ArchiveError):
    """An archive entry would leave the target folder, is a link or device, or is absurdly large."""


@dataclasses.dataclass(frozen=True)
class ArchiveLimits:
    """Bounds on what an archive may unpack to (bytes are uncompressed sizes)."""

    max_members: int = 100_000
    max_member_bytes: int = 8 << 30  # 8 GiB for one file
    max_total_bytes: int = 32 << 30  # 32 GiB in all
    max_ratio: float = 200.0  # uncompressed / compressed, for entries (zip) or archives above ratio_min_bytes
    ratio_min_bytes: int = 1 << 20


@dataclasses.dataclass(frozen=True)
class _Member:
    name: str
    kind: str  # "file" | "dir" | "link" | "special"
    size: int
    compressed: int | None  # zip only: the entry's compressed size
    handle: object  # ZipInfo or TarInfo


def archive_kind(path: str | os.PathLike) -> str | None:
    """``"zip"`` or ``"tar"`` (plain, gzip, bzip2 or xz) by content, or None for anything else."""
    try:
        if zipfile.is_zipfile(path):
            return "zip"
        if tarfile.is_tarfile(path):
            return "tar"
    except OSError:
        pass
    return None


def _clean_name(archive: Path, name: str) -> list[str]:
    r"""The entry's path components (``\`` counts as a separator), or UnsafeArchiveError."""
    if "\x00" in name:
        raise UnsafeArchiveError(f"entry {name!r} has a NUL byte in its name", path=archive)
    clean = name.replace("\\", "/")
    if clean.startswith("/") or re.match(r"^[A-Za-z]:", clean):
        raise UnsafeArchiveError(f"entry {name!r} has an absolute path", path=archive)
    parts = [p for p in clean.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchiveError(f"entry {name!r} escapes the target folder ('..')", path=archive)
    return parts


def _zip_members(zf: zipfile.ZipFile) -> list[_Member]:
    out = []
    for info in zf.infolist():
        mode = (info.external_attr >> 16) & 0o170000
        if info.is_dir():
            kind = "dir"
        elif mode == stat.S_IFLNK:
            kind = "link"
        elif mode in (0, stat.S_IFREG):
            kind = "file"
        else:
            kind = "special"
        out.append(_Member(info.filename, kind, info.file_size, info.compress_size, info))
    return out


def _tar_members(tf: tarfile.TarFile) -> list[_Member]:
    out = []
    for info in tf.getmembers():
        if info.isdir():
            kind = "dir"
        elif info.issym() or info.islnk():
            kind = "link"
        elif info.isreg():
            kind = "file"
        else:
            kind = "special"
        out.append(_Member(info.name, kind, info.size, None, info))
    return out


def _checked_members(archive: Path, members: list[_Member], limits: ArchiveLimits,
                     strip_components: int) -> list[tuple[str, _Member]]:
    """(relative output path, member) for every entry to write, after checking all of them."""
    if len(members) > limits.max_members:
        raise UnsafeArchiveError(f"{len(members)} entries, more than the limit {limits.max_members}", path=archive)
    total = 0
    checked = []
    for m in members:
        parts = _clean_name(archive, m.name)
        if m.kind == "link":
            raise UnsafeArchiveError(f"entry {m.name!r} is a symbolic or hard link; links are refused", path=archive)
        if m.kind == "special":
            raise UnsafeArchiveError(f"entry {m.name!r} is not a regular file or folder", path=archive)
        if m.kind == "file":
            if m.size > limits.max_member_bytes:
                raise UnsafeArchiveError(f"entry {m.name!r} unpacks to {m.size} bytes, over the limit "
                                         f"{limits.max_member_bytes}", path=archive)
            if (m.compressed is not None and m.size >= limits.ratio_min_bytes
                    and m.size > limits.max_ratio * max(m.compressed, 1)):
                raise UnsafeArchiveError(
                    f"entry {m.name!r} has a compression ratio of {m.size / max(m.compressed, 1):.0f}, "
                    f"over the limit {limits.max_ratio:g} (zip bomb?)", path=archive)
            total += m.size
            if total > limits.max_total_bytes:
                raise UnsafeArchiveError(f"unpacks to more than {limits.max_total_bytes} bytes", path=archive)
        rel = parts[strip_components:]
        if rel:
            checked.append(("/".join(rel), m))
    archive_size = archive.stat().st_size
    if total >= limits.ratio_min_bytes and total > limits.max_ratio * max(archive_size, 1):
        raise UnsafeArchiveError(f"{archive_size} bytes unpack to {total} bytes, a ratio over "
                                 f"{limits.max_ratio:g} (archive bomb?)", path=archive)
    return checked


def _copy_capped(fin: IO[bytes], path: Path, declared: int, archive: Path, name: str) -> None:
    written = 0
    with open(path, "wb") as fout:
        while block := fin.read(_BLOCK):
            written += len(block)
            if written > declared:
                raise UnsafeArchiveError(f"entry {name!r} holds more bytes than its header declares", path=archive)
            fout.write(block)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def extract_archive(archive: str | os.PathLike, target: str | os.PathLike, *, strip_components: int = 0,
                    limits: ArchiveLimits = ArchiveLimits(), merge: bool = False) -> Path:
    """Unpack the zip or tar ``archive`` (tar plain, .gz, .bz2 or .xz) into the folder ``target``.

    Every entry is checked before anything is written: absolute paths, ``..`` components, NUL bytes,
    symbolic and hard links, devices and FIFOs are refused, and so are more than
    ``limits.max_members`` entries, files over ``limits.max_member_bytes``, a total over
    ``limits.max_total_bytes`` and compression ratios over ``limits.max_ratio`` (per entry for zip,
    for the whole archive for tar); a file holding more bytes than its header declares is refused
    while it is copied. File modes, owners and times are not restored.

    The entries are unpacked into a temporary folder beside ``target``, which then replaces
    ``target`` (any previous content is removed); a refused or failed archive leaves ``target`` as it
    was and no temporary files behind.

    Args:
      archive: the archive file; its kind is found from its content, not its name.
      target: the folder to create or replace.
      strip_components: leading path components dropped from every entry name, like tar's
        ``--strip-components`` (1 drops an archive's top folder); entries with no more components
        than that (the top folder itself, files beside it) are not written.
      limits: the size bounds.
      merge: keep what ``target`` already holds; each top-level item unpacked replaces only the
        item of the same name there (for unpacking into a folder shared with other files).

    Returns:
      ``target`` as a Path.

    Raises:
      UnsafeArchiveError: an entry is refused (the message names the archive and the entry).
      ArchiveError: ``archive`` is not a zip or tar file, or is truncated or corrupt.
    """
    archive, target = Path(archive), Path(target)
    if strip_components < 0:
        raise ValueError(f"strip_components must be >= 0, not {strip_components}")
    kind = archive_kind(archive)
    if kind is None:
        raise ArchiveError("neither a zip nor a tar archive" if archive.is_file() else "no such file", path=archive)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.unpacking-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with (zipfile.ZipFile(archive) if kind == "zip" else tarfile.open(archive)) as handle:
            members = _zip_members(handle) if kind == "zip" else _tar_members(handle)
            checked = _checked_members(archive, members, limits, strip_components)
            tmp.mkdir()
            root = tmp.resolve()
            for rel, m in checked:
                out = tmp / rel
                if root not in out.resolve().parents:
                    raise UnsafeArchiveError(f"entry {m.name!r} escapes the target folder", path=archive)
                if m.kind == "dir":
                    out.mkdir(parents=True, exist_ok=True)
                    continue
                out.parent.mkdir(parents=True, exist_ok=True)
                with (handle.open(m.handle) if kind == "zip" else handle.extractfile(m.handle)) as fin:
                    _copy_capped(fin, out, m.size, archive, m.name)
        if merge and target.is_dir():
            for item in sorted(tmp.iterdir()):
                _remove(target / item.name)
                os.replace(item, target / item.name)
            tmp.rmdir()
        else:
            if target.exists():
                _remove(target)
            os.replace(tmp, target)
    except (zipfile.BadZipFile, tarfile.TarError, zlib.error, lzma.LZMAError, EOFError, OSError, RuntimeError,
            ValueError) as e:  # RuntimeError: an encrypted zip entry
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, ArchiveError):
            raise
        raise ArchiveError(f"cannot unpack ({type(e).__name__}: {e})", path=archive) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


__all__ = ["atomic_path", "atomic_write", "write_json_atomic", "sha256_file", "sha256_stream", "open_text",
           "extract_archive", "archive_kind", "ArchiveLimits", "ArchiveError", "UnsafeArchiveError"]
