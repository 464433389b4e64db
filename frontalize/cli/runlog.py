"""The run's log file: every log record of a command, and the traceback of an internal error.

Each command logs to the terminal and to its run's log file, ``OUT/inference.log`` for ``inference.py`` and
``REPORT/evaluate.log`` for ``evaluate.py``; every run into the same folder appends to it, after a header line
naming the command line. Records logged before the folder is known (config, weight checks) are kept in memory and
written first when the file opens. An internal error (a bug) is one line on the terminal; its traceback goes to
this file, or to a new ``frontalize-<command>-*.log`` in the temp folder when the run's folder is not open yet
(e.g. a ``--dry-run``, which writes nothing into the output folder).
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import sys
import tempfile
import traceback
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

__all__ = ["LOG_FORMAT", "RunLog", "activated", "current_run_log", "open_run_log"]

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_MAX_PENDING = 10_000
"""Records kept in memory until the file opens (the oldest are dropped beyond this)."""


class RunLog(logging.Handler):
    """Logging handler writing a command's records to its run's log file (buffered until :meth:`open`).

    Args:
        command: command name, e.g. ``inference`` (names the temp-folder fallback file).
    """

    def __init__(self, command: str) -> None:
        super().__init__(logging.DEBUG)
        self.command = command
        self.path: Path | None = None
        self._pending: deque[str] = deque(maxlen=_MAX_PENDING)
        self._stream: TextIO | None = None
        self.setFormatter(logging.Formatter(LOG_FORMAT))

    def emit(self, record: logging.LogRecord) -> None:
        """Format ``record`` and write it (or keep it until the file opens)."""
        try:
            self._write(self.format(record))
        except Exception:  # logging's contract: a handler never raises into the code that logs
            self.handleError(record)

    def _write(self, text: str) -> None:
        if self._stream is None:
            self._pending.append(text)
            return
        self._stream.write(text + "\n")
        self._stream.flush()

    def open(self, path: str | Path) -> Path:
        """Append from now on to ``path`` (its folder is created); the records kept so far are written first.

        Raises:
            OSError: the file cannot be created or opened for appending.
        """
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        stream = open(target, "a", encoding="utf-8")
        started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        stream.write(f"==== {started} pid {os.getpid()}: {' '.join(sys.argv)}\n")
        self.acquire()
        try:
            if self._stream is not None:
                self._stream.close()
            self._stream, self.path = stream, target
            while self._pending:
                self._write(self._pending.popleft())
        finally:
            self.release()
        return target

    def write_traceback(self, error: BaseException) -> Path | None:
        """Write the traceback of ``error`` to the log file (a new temp-folder file when none is open).

        Returns:
            The log file, or None when no file could be written.
        """
        if self._stream is None:
            try:
                handle, name = tempfile.mkstemp(prefix=f"frontalize-{self.command}-", suffix=".log")
                os.close(handle)
                self.open(name)
            except OSError:
                return None
        text = "".join(traceback.format_exception(type(error), error, error.__traceback__)).rstrip("\n")
        self.acquire()
        try:
            self._write(text)
        finally:
            self.release()
        return self.path

    def close(self) -> None:
        """Close the file (records logged afterwards are dropped)."""
        self.acquire()
        try:
            if self._stream is not None:
                self._stream.close()
                self._stream = None
            self._pending.clear()
        finally:
            self.release()
        super().close()


_CURRENT: list[RunLog] = []
"""The run log of the command running in this process (set by ``run_cli``; a list to avoid ``global``)."""


@contextmanager
def activated(run_log: RunLog) -> Iterator[RunLog]:
    """Make ``run_log`` the running command's log for the block; detach and close it afterwards."""
    _CURRENT.append(run_log)
    try:
        yield run_log
    finally:
        _CURRENT.remove(run_log)
        logging.getLogger().removeHandler(run_log)
        run_log.close()


def current_run_log() -> RunLog | None:
    """The run log of the running command, if any."""
    return _CURRENT[-1] if _CURRENT else None


def open_run_log(path: str | Path) -> Path | None:
    """Open the running command's log file at ``path`` (no-op outside ``run_cli``).

    Raises:
        OSError: the file cannot be created or opened.
    """
    run_log = current_run_log()
    return None if run_log is None else run_log.open(path)
