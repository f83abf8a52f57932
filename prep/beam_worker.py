"""A DirectRunner worker process of ``prep.beam`` (``direct_running_mode=multi_processing``).

Beam starts each worker as ``python -m apache_beam.runners.worker.sdk_worker_main``. There the
root logger has no handler when Beam's import logs its first warning (the apitools / BigQuery
client libraries are missing: irrelevant to a preparation), so Python's logging installs a
stderr handler at that moment; the harness then runs at level INFO and every worker prints its
start-up and shutdown lines (about 20 each) and a warning about main-session pickling, which
this project does not use. ``prep.beam`` starts its workers with this module instead, which
gives the root logger a do-nothing handler before Beam is imported and then runs Beam's own
harness (``sdk_worker_main.main``) unchanged. Log records still reach the handler the harness
adds, which sends them to the runner; ``prep.beam`` shows the workers' warnings and errors, except
the reports of a ``PrepError`` (bad input), which the command prints as one line; so the worker
also leaves out the traceback the harness prints to stderr for such a bundle. Anything else a
worker writes to stderr (other tracebacks included) goes through.

For the DaskRunner the module is a Dask worker preload (``dask worker --preload prep.beam_worker``;
``prep.beam`` passes it to the local cluster it starts): ``dask_setup`` gives the worker's root
logger the same do-nothing handler and imports Beam through ``prep.beam``, whose import leaves out
those notes, before the first task unpickles Beam's functions.
"""
from __future__ import annotations

import logging
import sys

# The harness's note that nothing was staged for it; the driver's modules are importable here.
_STAGING_NOTE = "No semi_persistent_directory found"


class _DropStagingNote(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(_STAGING_NOTE)


class WithoutPrepErrorTracebacks:
    """A text stream (``sys.stderr``) that drops what Beam's harness prints for a failed bundle.

    Beam's SDK harness prints the traceback of a failed bundle to ``sys.stderr`` (in a worker
    process, or in the driver with ``direct_running_mode=multi_threading``). When the error is a
    ``PrepError`` (bad input, which the command reports as one line) that traceback is dropped;
    everything else is written to the wrapped stream.
    """

    def __init__(self, stream):
        self._stream = stream
        self._dropped = False

    def write(self, text: str) -> int:
        """Write ``text`` through, unless it is such a traceback (or the line end printed after it)."""
        if text.startswith("Traceback (most recent call last)") and "prep.errors.PrepError: " in text:
            self._dropped = True  # print() writes the end of line separately
            return len(text)
        if self._dropped and text == "\n":
            self._dropped = False
            return len(text)
        self._dropped = False
        return self._stream.write(text)

    def __getattr__(self, name):
        return getattr(self._stream, name)


def dask_setup(worker: object | None = None) -> None:
    """Dask worker preload hook: quiet logging set-up and Beam imported through ``prep.beam``.

    Args:
      worker: the ``distributed.Worker`` starting (unused; Dask passes it).
    """
    logging.getLogger().addHandler(logging.NullHandler())
    import prep.beam  # noqa: F401  (imports Beam without its notes about Google Cloud libraries)


def main(argv: list[str] | None = None) -> None:
    """Run Beam's SDK harness (the worker) with the logging set-up described in the module doc."""
    logging.getLogger().addHandler(logging.NullHandler())
    sys.stderr = WithoutPrepErrorTracebacks(sys.stderr)
    from apache_beam.runners.worker import sdk_worker_main

    logging.getLogger(sdk_worker_main.__name__).addFilter(_DropStagingNote())
    sdk_worker_main.main(sys.argv if argv is None else argv)


if __name__ == "__main__":
    main()
