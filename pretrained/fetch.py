"""Downloading, verifying and safely unpacking published checkpoints into the local cache.

- ``cache_dir()``: ``--cache_dir`` flag value, else ``$EORECORDS_CACHE``, else ``~/.cache/eorecords``.
- ``download(url, dest)``: HTTP(S) with a tqdm progress bar, resumed with HTTP Range requests after a
  cut connection (and across runs: the partial file ``dest.part`` is kept until complete), or a copy
  of a local file / ``file://`` URL. The SHA-256 is checked when known; on a mismatch the download is
  deleted and ``ChecksumError`` raised. The digest is kept beside the file (``dest.sha256``). A host
  name that does not resolve or a refused connection fails at once (retrying cannot help; ``--url``
  names a mirror or a local file); timeouts and cut connections are retried.
- ``extract(archive, target)``: ``prep.files.extract_archive`` (zip or tar, all entries checked
  before anything is written: no entry may leave the target folder, no links or special files, no
  absurd sizes or compression ratios, ``Limits``; a rejected archive leaves nothing behind) with
  this module's errors.
- ``fetch(name)``: the above for one registry entry; returns the unpacked folder (TF1 zips) or the
  file (Keras HDF5).
"""
from __future__ import annotations

import http.client
import json
import os
import re
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from absl import logging
from tqdm import tqdm

from prep import files
from prep.errors import EORecordsError
from prep.files import sha256_file
from pretrained import registry

ENV_CACHE = "EORECORDS_CACHE"
DEFAULT_CACHE = os.path.join("~", ".cache", "eorecords")
USER_AGENT = "eorecords-pretrained/1"
_RETRYABLE_HTTP = (408, 429, 500, 502, 503, 504)
_EXTRACTED_MARKER = ".eorecords-extracted.json"


class FetchError(EORecordsError, RuntimeError):
    """A download or unpacking step failed; the message names the URL or file."""


class ChecksumError(FetchError):
    """The downloaded bytes do not have the expected SHA-256."""


class UnsafeArchiveError(FetchError, files.UnsafeArchiveError):
    """An archive entry would escape the target folder, is a link, or is absurdly large."""


Limits = files.ArchiveLimits  # bounds on what an archive may unpack to


def cache_dir(path: str | os.PathLike | None = None) -> Path:
    """The cache root: ``path`` if given, else ``$EORECORDS_CACHE``, else ``~/.cache/eorecords``."""
    chosen = path or os.environ.get(ENV_CACHE) or DEFAULT_CACHE
    return Path(os.path.expanduser(str(chosen))).absolute()


def is_local(url: str) -> bool:
    """True for ``file://`` URLs and plain paths (anything without an http/https/ftp scheme)."""
    scheme = urllib.parse.urlsplit(str(url)).scheme.lower()
    return scheme not in ("http", "https", "ftp") and (scheme in ("", "file") or len(scheme) == 1)


def local_path(url: str) -> Path:
    """Returns the file a local ``url`` names: the path of a ``file://`` URL, or the plain path with ``~`` expanded."""
    parts = urllib.parse.urlsplit(str(url))
    if parts.scheme.lower() == "file":
        return Path(urllib.request.url2pathname(parts.path))
    return Path(os.path.expanduser(str(url)))


def _progress(total: int | None, initial: int, desc: str, enabled: bool) -> tqdm:
    return tqdm(
        total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024,
        desc=desc, disable=not enabled, file=sys.stderr, dynamic_ncols=True,
    )


def _finish(part: Path, dest: Path, url: str, sha256: str | None) -> Path:
    """Check the digest of a complete ``part`` file and move it to ``dest``."""
    got = sha256_file(part)
    if sha256 and got != sha256.lower():
        part.unlink(missing_ok=True)
        raise ChecksumError(
            f"{url}: SHA-256 mismatch for {dest.name}: expected {sha256.lower()}, got {got}; "
            f"the download was deleted (use --url for a mirror, or --sha256 if the file was re-published)"
        )
    os.replace(part, dest)
    Path(str(dest) + ".sha256").write_text(f"{got}  {dest.name}\n")
    if not sha256:
        logging.info("%s: no SHA-256 known; downloaded file has %s", url, got)
    return dest


def _copy_local(src: Path, part: Path, progress: bool, chunk_size: int) -> None:
    if not src.is_file():
        raise FetchError(f"{src}: no such file")
    with open(src, "rb") as fin, open(part, "wb") as fout, _progress(
        src.stat().st_size, 0, src.name, progress
    ) as bar:
        while block := fin.read(chunk_size):
            fout.write(block)
            bar.update(len(block))


_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


_MIRROR_HINT = "pass --url with a reachable mirror, a local file or a file:// URL"


def _unreachable(url: str, error: Exception, part: Path) -> FetchError | None:
    """The FetchError for an error that retrying cannot cure, or None for one worth retrying.

    A host name that does not resolve (``socket.gaierror``, e.g. no network or no DNS) and a refused
    connection (nothing listens on the port) fail at once; timeouts, cut connections and resets
    are retried by the caller.
    """
    reason = error.reason if isinstance(error, urllib.error.URLError) else error
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or url
    if isinstance(reason, socket.gaierror):
        why = reason.strerror or str(reason)
        problem = f"cannot resolve host {host!r} ({why}): no network, or no DNS for this name"
    elif isinstance(reason, ConnectionRefusedError):
        port = parts.port or {"https": 443, "ftp": 21}.get(parts.scheme.lower(), 80)
        problem = f"connection to {host}:{port} refused: nothing is listening there"
    else:
        return None
    have = part.stat().st_size if part.exists() else 0
    if have:
        problem += f"; {have} bytes kept in {part} for a later resume"
    return FetchError(problem, path=url, hint=_MIRROR_HINT)


def _http_download(url: str, part: Path, *, progress: bool, retries: int, timeout: float,
                   chunk_size: int, backoff: float) -> None:
    failures = 0
    bar = None
    try:
        while True:
            have = part.stat().st_size if part.exists() else 0
            headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
            if have:
                headers["Range"] = f"bytes={have}-"
            request = urllib.request.Request(url, headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=timeout) as response:
                    status = response.status
                    total = None
                    if have and status == 206:
                        match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
                        if not match or int(match.group(1)) != have:
                            raise FetchError(f"{url}: server answered a resume request with an unexpected "
                                             f"Content-Range {response.headers.get('Content-Range')!r}")
                        total = None if match.group(3) == "*" else int(match.group(3))
                        mode = "ab"
                    else:
                        if have:
                            logging.warning("%s: server ignored the resume request; starting over", url)
                        have, mode = 0, "wb"
                        length = response.headers.get("Content-Length")
                        total = int(length) if length and length.isdigit() else None
                    if bar is None:
                        bar = _progress(total, have, part.name[: -len(".part")], progress)
                    else:
                        bar.total = total
                        bar.n = have
                        bar.refresh()
                    with open(part, mode) as f:
                        while block := response.read(chunk_size):
                            f.write(block)
                            bar.update(len(block))
                    size = part.stat().st_size
                    if total is not None and size < total:
                        raise http.client.IncompleteRead(b"", total - size)
                    if total is not None and size > total:
                        part.unlink()
                        raise FetchError(f"{url}: received {size} bytes, more than the announced {total}")
                    return
            except urllib.error.HTTPError as e:
                if e.code == 416 and have:
                    whole = re.search(r"/(\d+)$", e.headers.get("Content-Range", ""))
                    if whole and int(whole.group(1)) == have:
                        return  # already complete
                    part.unlink()
                    continue
                if e.code not in _RETRYABLE_HTTP:
                    raise FetchError(f"{url}: HTTP {e.code} {e.reason}") from None
                error: Exception = e
            except (urllib.error.URLError, http.client.HTTPException, ConnectionError, socket.timeout,
                    TimeoutError) as e:
                unreachable = _unreachable(url, e, part)
                if unreachable is not None:
                    raise unreachable from None
                error = e
            failures += 1
            have = part.stat().st_size if part.exists() else 0
            if failures > retries:
                raise FetchError(
                    f"{url}: download failed after {retries} retries ({type(error).__name__}: {error}); "
                    f"{have} bytes kept in {part}, run again to resume"
                ) from None
            logging.warning("%s: %s after %d bytes; resuming (retry %d of %d)", url,
                            type(error).__name__, have, failures, retries)
            time.sleep(min(backoff * 2 ** (failures - 1), 30.0))
    finally:
        if bar is not None:
            bar.close()


def download(url: str, dest: str | os.PathLike, *, sha256: str | None = None, progress: bool = True,
             retries: int = 5, timeout: float = 60.0, chunk_size: int = 1 << 20, backoff: float = 1.0,
             force: bool = False) -> Path:
    """Download ``url`` (http/https, ``file://`` or a local path) to ``dest``; returns ``dest``.

    An existing ``dest`` is kept when its digest matches ``sha256`` (or when no digest is known).
    A cut connection, a timeout (``timeout`` seconds per read) or an HTTP 408/429/5xx answer is
    retried up to ``retries`` times, resuming with a Range request, with ``backoff`` * 2**n seconds
    between tries (at most 30 s).

    Raises:
      FetchError: at once for a host name that does not resolve, a refused connection or another
        HTTP error, naming the URL; after the retries for the transient failures (the partial
        ``dest.part`` is kept for the next run).
      ChecksumError: the complete download does not have the SHA-256 ``sha256`` (it is deleted).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = Path(str(dest) + ".part")
    if dest.exists() and not force:
        if not sha256 or sha256_file(dest) == sha256.lower():
            return dest
        logging.warning("%s: cached file has the wrong SHA-256; downloading again", dest)
    if force:
        part.unlink(missing_ok=True)
    if is_local(url):
        src = local_path(url)
        try:
            _copy_local(src, part, progress, chunk_size)
        except BaseException:
            part.unlink(missing_ok=True)
            raise
    else:
        _http_download(url, part, progress=progress, retries=retries, timeout=timeout,
                       chunk_size=chunk_size, backoff=backoff)
    return _finish(part, dest, url, sha256)


# ----------------------------------------------------------------------------------------- unpacking

archive_kind = files.archive_kind


def extract(archive: str | os.PathLike, target: str | os.PathLike, limits: Limits | None = None) -> Path:
    """Unpack a zip or tar ``archive`` into the folder ``target`` (replaced if present); returns it.

    ``prep.files.extract_archive`` does the work (every entry checked first, see there); its errors
    come back as this module's: UnsafeArchiveError for a refused entry, FetchError for an archive
    that cannot be read. ``limits`` defaults to ``Limits()``.
    """
    try:
        return files.extract_archive(archive, target, limits=limits or Limits())
    except files.UnsafeArchiveError as e:
        raise UnsafeArchiveError(e.problem, path=e.path, hint=e.hint) from None
    except files.ArchiveError as e:
        raise FetchError(e.problem, path=e.path, hint=e.hint) from None


# ------------------------------------------------------------------------------------------ registry

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def check_hdf5(path: Path, url: str) -> None:
    """Checks that ``path`` (downloaded from ``url``) starts with the HDF5 signature.

    Raises:
        FetchError: the file is a Git LFS pointer (the message says how to get the real file) or
            not HDF5 at all.
        OSError: ``path`` cannot be read.
    """
    with open(path, "rb") as f:
        head = f.read(512)
    if head.startswith(HDF5_SIGNATURE):
        return
    if head.startswith(b"version https://git-lfs"):
        raise FetchError(f"{url}: got a Git LFS pointer ({path}), not the HDF5 model; pass --url with the LFS "
                         f"media address or a local copy")
    raise FetchError(f"{path}: not an HDF5 file (downloaded from {url})")


def download_path(entry: registry.Entry, cache: Path, url: str | None = None) -> Path:
    """Returns where ``fetch`` keeps the download: ``<cache>/downloads/<entry name>/<file name>``.

    The file name is the last part of ``url`` (local or remote) when given, else the entry's.
    """
    name = Path(urllib.parse.urlsplit(url).path).name if url and not is_local(url) else (
        local_path(url).name if url else entry.filename)
    return cache / "downloads" / entry.name / (name or entry.filename)


def fetch(name: str | registry.Entry, *, cache: str | os.PathLike | None = None, url: str | None = None,
          sha256: str | None = None, progress: bool = True, force: bool = False,
          limits: Limits | None = None, **download_kwargs) -> Path:
    """Download (and unpack) one registry entry; returns the unpacked folder or the model file.

    ``url`` overrides the registry address (a mirror, a local file or ``file://`` URL) and ``sha256``
    the registry digest; ``limits`` bounds the unpacking (default ``Limits()``); ``download_kwargs``
    go to ``download`` (``retries``, ``timeout``, ``backoff``, ``chunk_size``).

    Raises:
      UnknownModelError: ``name`` is no registry name or alias.
      FetchError: the download failed (see ``download``), the file is not the expected HDF5 model,
        or the archive cannot be unpacked (UnsafeArchiveError for a refused entry).
      ChecksumError: the download does not have the expected SHA-256.
    """
    entry = registry.get(name) if isinstance(name, str) else name
    root = cache_dir(cache)
    source = url or entry.url
    expected = sha256 or entry.sha256
    dest = download_path(entry, root, url)
    path = download(source, dest, sha256=expected, progress=progress, force=force, **download_kwargs)
    if entry.format == registry.KERAS2_HDF5:
        check_hdf5(path, source)
        return path
    target = root / "extracted" / entry.name
    digest = Path(str(path) + ".sha256").read_text().split()[0]
    marker = target / _EXTRACTED_MARKER
    if not force and marker.exists():
        try:
            if json.loads(marker.read_text()).get("sha256") == digest:
                return target
        except ValueError:
            pass
    extract(path, target, limits)
    marker.write_text(json.dumps({"archive": str(path), "sha256": digest, "url": source}) + "\n")
    return target
