"""Import TensorFlow without its start-up banner: ``tf = prep.quiet.import_tensorflow()``.

``import tensorflow`` (2.21, CPU machine) writes these lines straight to file descriptor 2,
before absl's logging is initialised, so ``TF_CPP_MIN_LOG_LEVEL`` cannot silence them:

- ``WARNING: All log messages before absl::InitializeLog() is called are written to STDERR``
- ``I... port.cc:...] oneDNN custom operations are on. ...``
- ``I... cudart_stub.cc:...] Could not find cuda drivers on your machine, GPU will not be used.``
- ``I... cpu_feature_guard.cc:...] This TensorFlow binary is optimized ...`` (and its second line)

and the first three twice: ``tensorflow/python/profiler/internal/_pywrap_profiler_plugin.so``
carries its own copy of TensorFlow's platform code (static initialisers and absl logging
state), which runs again when ``import tensorflow`` loads it. The first use of a device then
adds ``E... cuda_platform.cc:...] failed call to cuInit: ... (303)`` on a machine without a GPU.

``import_tensorflow`` sets ``TF_CPP_MIN_LOG_LEVEL`` to 2 unless the user set it, points fd 2 at
a temporary file while TensorFlow is imported and its devices listed (which is when the cuInit
line comes), and then writes back to stderr every captured line except those known banner
lines: anything else (warnings, errors, a traceback) is kept, in order. Later messages are
TensorFlow's ordinary logging, which ``TF_CPP_MIN_LOG_LEVEL`` governs.
"""
from __future__ import annotations

import os
import re
import sys
import tempfile
import types

_PREFIX = re.compile(r"^[IWEF]\d{4} \S+\s+\d+ (?P<file>[\w.]+):\d+\] (?P<msg>.*)$")
_ABSL_PRE_INIT = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
# (source file, pattern of the message) of the known start-up lines.
_BANNER = (
    ("port.cc", re.compile(r"oneDNN custom operations are on\. ")),
    ("cudart_stub.cc", re.compile(r"Could not find cuda drivers on your machine, GPU will not be used\.$")),
    ("cuda_platform.cc", re.compile(r"failed call to cuInit: .*\(303\)$")),
    ("cpu_feature_guard.cc", re.compile(r"This TensorFlow binary is optimized to use available CPU instructions")),
)
_CPU_GUARD_TAIL = re.compile(r"^To enable the following instructions: .*rebuild TensorFlow with the appropriate "
                             r"compiler flags\.$")


def is_banner_line(line: str) -> bool:
    """Whether ``line`` (no newline) is one of TensorFlow's known start-up lines (see the module doc)."""
    if line == _ABSL_PRE_INIT:
        return True
    m = _PREFIX.match(line)
    return bool(m) and any(m["file"] == f and p.match(m["msg"]) for f, p in _BANNER)


def without_banner(text: str) -> str:
    """``text`` (captured stderr) less TensorFlow's known start-up lines; every other line is kept as it was.

    The second line of the cpu_feature_guard message ("To enable the following instructions: ...")
    goes with it only when it directly follows it.
    """
    kept, after_guard = [], False
    for line in text.splitlines(keepends=True):
        bare = line.rstrip("\r\n")
        if after_guard and _CPU_GUARD_TAIL.match(bare):
            after_guard = False
            continue
        after_guard = False
        if is_banner_line(bare):
            after_guard = "cpu_feature_guard.cc" in bare
            continue
        kept.append(line)
    return "".join(kept)


def import_tensorflow() -> types.ModuleType:
    """``import tensorflow`` with its start-up banner left out of stderr; returns the module.

    A no-op returning the module when TensorFlow is already imported. ``TF_CPP_MIN_LOG_LEVEL``
    defaults to 2 (TensorFlow's own INFO and WARNING messages are not shown; the user's value is
    respected). Lists the physical devices once (no runtime is created: device options can
    still be set afterwards).

    Raises:
      ImportError: as ``import tensorflow`` does; whatever it wrote to stderr is shown first.
    """
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        saved = os.dup(2)
    except OSError:  # no fd 2 to redirect
        import tensorflow as tf

        return tf
    with tempfile.TemporaryFile() as capture:
        _flush()
        os.dup2(capture.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()  # initialises the platforms: the cuInit line is written now
        finally:
            _flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            rest = without_banner(capture.read().decode("utf-8", "replace"))
            if rest:
                sys.stderr.write(rest)
                sys.stderr.flush()
    return tf


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, ValueError, OSError):  # None or closed
            pass


__all__ = ["import_tensorflow", "without_banner", "is_banner_line"]
