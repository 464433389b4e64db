"""Atomic file writes: temp file in the same folder + fsync + ``os.replace``.

A reader (or a rerun after ``kill -9``) therefore sees either the complete old file, the complete new file or
no file at all — never a truncated image. Temporary files carry a recognisable name
(``.<name>.frontalize-tmp-<random>``) so a later run can remove the ones a killed run left behind.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

logger = logging.getLogger(__name__)

TEMP_MARKER = ".frontalize-tmp-"


def _fsync_directory(directory: Path) -> None:
    """Make a rename inside ``directory`` durable (no-op where directories cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        logger.debug("fsync of directory %s not supported", directory)
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | Path, data: bytes, *, durable: bool = True) -> None:
    """Write ``data`` to ``path`` atomically, creating parent folders.

    Args:
        path: destination file.
        data: the complete file content.
        durable: fsync the file and its folder so the content survives a power loss, not only a killed process.

    Raises:
        OSError: the folder cannot be created or written; the temporary file is removed.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}{TEMP_MARKER}", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    if durable:
        _fsync_directory(target.parent)


def atomic_write_text(path: str | Path, text: str, *, durable: bool = True) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically (see :func:`atomic_write_bytes`)."""
    atomic_write_bytes(path, text.encode("utf-8"), durable=durable)


def remove_stale_temp_files(root: str | Path) -> int:
    """Delete temporary files that a killed run left under ``root``.

    Only files whose name contains :data:`TEMP_MARKER` are touched.

    Args:
        root: folder searched recursively; a missing folder counts as empty.

    Returns:
        Number of files removed.
    """
    base = Path(root)
    if not base.is_dir():
        return 0
    removed = 0
    for candidate in base.rglob(f"*{TEMP_MARKER}*"):
        if candidate.is_file():
            candidate.unlink(missing_ok=True)
            removed += 1
    if removed:
        logger.info("removed %d temporary file(s) left by an interrupted run under %s", removed, base)
    return removed
