"""The one root of the errors every eorecords command reports to its user.

``EORecordsError`` is bad input or a bad request, never a bug: the command runner
(``prep.cli.run_command``) prints it as one line, ``error: <file>: <problem>``, and exits 1;
``UsageError`` (a bad flag or argument) exits 2 and adds ``(see --help)``. Anything else that
escapes a command is a bug and keeps its traceback.

Library code raises the subclass that fits (``prep.shards.PrepError``, ``prep.reader.ReaderError``,
``pretrained.fetch.FetchError``, ...); each also derives from the built-in class callers caught
before (ValueError, KeyError, RuntimeError), so existing ``except`` clauses keep working.
"""
from __future__ import annotations

import os


class EORecordsError(Exception):
    """Bad input or a bad request. ``str(e)`` is ``"<path>: <problem>"`` when a path is given.

    Args:
      problem: what is wrong, in words a user can act on.
      path: the file, folder, flag or value concerned (shown first), if any.
      hint: what to do about it (appended after " - "), if known.
    """

    exit_code = 1

    def __init__(self, problem: str = "", path: str | os.PathLike | None = None, hint: str | None = None):
        self.problem = str(problem)
        self.path = os.fspath(path) if path is not None else None
        self.hint = hint
        super().__init__(self._text())

    def _text(self) -> str:
        text = f"{self.path}: {self.problem}" if self.path else self.problem
        return f"{text} - {self.hint}" if self.hint else text

    def __str__(self) -> str:  # KeyError subclasses would otherwise quote the message
        return self.args[0] if self.args else ""


class InputError(EORecordsError, ValueError):
    """A file or value given to a command is missing, unreadable or not what it should be."""


class UsageError(EORecordsError, ValueError):
    """A flag or argument is missing, unknown or contradicts another: exit status 2."""

    exit_code = 2


class PrepError(EORecordsError, RuntimeError):
    """Preparation stopped on bad input (``--on_error=fail``) or an inconsistent output folder."""


__all__ = ["EORecordsError", "InputError", "UsageError", "PrepError"]
