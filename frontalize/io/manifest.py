"""Run manifest: one JSON object per line (JSONL), appended with fsync, exported to CSV at the end.

Crash safety: each row is written with a single ``write`` + flush + fsync *after* the files it names, so a
``kill -9`` leaves at most one torn last line. Readers skip a line that does not parse, writers cut such a tail
before appending, and :func:`latest_rows` keeps the last complete row per input — so a rerun sees every input
at most once.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from frontalize.io.atomic import atomic_write_text

logger = logging.getLogger(__name__)

LEADING_COLUMNS: tuple[str, ...] = ("input", "status", "reason")


def _json_safe(value: Any) -> Any:
    """Replace non-finite floats by ``None`` (strict JSON has no NaN/Infinity)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(key): _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    return value


def repair_torn_tail(path: str | Path) -> bool:
    """Cut an incomplete last line (no trailing newline) left by a killed writer.

    Returns:
        ``True`` when bytes were removed.
    """
    target = Path(path)
    if not target.is_file():
        return False
    with open(target, "rb+") as handle:
        size = handle.seek(0, os.SEEK_END)
        if size == 0:
            return False
        handle.seek(size - 1)
        if handle.read(1) == b"\n":
            return False
        keep = 0
        position = size
        chunk = 65536
        while position > 0:
            start = max(0, position - chunk)
            handle.seek(start)
            block = handle.read(position - start)
            newline = block.rfind(b"\n")
            if newline >= 0:
                keep = start + newline + 1
                break
            position = start
        handle.truncate(keep)
        handle.flush()
        os.fsync(handle.fileno())
    logger.warning("manifest %s ended with a torn line (interrupted run); removed %d byte(s)", target, size - keep)
    return True


class ManifestWriter:
    """Appends rows to a JSONL manifest, one fsync'ed line per row; safe to share between threads.

    Use as a context manager::

        with ManifestWriter(out_dir / "manifest.jsonl") as manifest:
            manifest.append({"input": "a/b.jpg", "status": "ok", "reason": ""})
    """

    def __init__(self, path: str | Path, *, durable: bool = True) -> None:
        """Args: path: the ``.jsonl`` file (created with its folder); durable: fsync after every row."""
        self.path = Path(path)
        self.durable = durable
        self._lock = threading.Lock()
        self._handle: io.BufferedWriter | None = None

    def open(self) -> ManifestWriter:
        """Repair a torn tail and open for appending."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        repair_torn_tail(self.path)
        self._handle = open(self.path, "ab")  # closed in close()
        return self

    def append(self, row: Mapping[str, Any]) -> None:
        """Write one row as a single JSON line, then flush (+ fsync when durable).

        Raises:
            RuntimeError: the writer is not open (an internal misuse, not a user error).
        """
        line = (json.dumps(_json_safe(row), ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")
        with self._lock:
            if self._handle is None:
                raise RuntimeError(f"manifest {self.path} is not open")
            self._handle.write(line)
            self._handle.flush()
            if self.durable:
                os.fsync(self._handle.fileno())

    def close(self) -> None:
        """Close the file (idempotent)."""
        with self._lock:
            if self._handle is not None:
                self._handle.close()
                self._handle = None

    def __enter__(self) -> ManifestWriter:
        return self.open()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def read_manifest(*paths: str | Path) -> list[dict[str, Any]]:
    """Read every complete row of one or more JSONL manifests, in file order.

    A line that does not parse as a JSON object (a torn last line, a stray edit) is skipped with a warning.
    Missing files count as empty.

    Args:
        paths: manifest files (e.g. the main manifest, or per-worker shards).

    Returns:
        The rows as dicts.
    """
    rows: list[dict[str, Any]] = []
    for path in paths:
        target = Path(path)
        if not target.is_file():
            continue
        with open(target, "rb") as handle:
            for number, raw in enumerate(handle, start=1):
                if not raw.strip():
                    continue
                try:
                    row = json.loads(raw.decode("utf-8"))
                except (UnicodeDecodeError, json.JSONDecodeError):
                    logger.warning("%s:%d: skipping an incomplete manifest line", target, number)
                    continue
                if isinstance(row, dict) and isinstance(row.get("input"), str):
                    rows.append(row)
                else:
                    logger.warning("%s:%d: skipping a manifest line without an 'input' field", target, number)
    return rows


def latest_rows(rows: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Last row per ``input`` (later rows supersede earlier ones), in first-seen input order."""
    latest: dict[str, dict[str, Any]] = {}
    for row in rows:
        latest[str(row["input"])] = dict(row)
    return latest


def flatten_row(row: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested dicts to dotted columns (``source_pose.yaw``); lists become JSON text."""
    flat: dict[str, Any] = {}
    for key, value in row.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_row(value, prefix=f"{name}."))
        elif isinstance(value, (list, tuple)):
            flat[name] = json.dumps(_json_safe(list(value)), ensure_ascii=False)
        else:
            flat[name] = "" if value is None else value
    return flat


def export_csv(rows: Iterable[Mapping[str, Any]], path: str | Path) -> int:
    """Write rows as CSV (flattened, union of columns, ``input,status,reason`` first), atomically.

    Returns:
        Number of data rows written.
    """
    flat_rows = [flatten_row(row) for row in rows]
    columns: dict[str, None] = dict.fromkeys(LEADING_COLUMNS)
    for flat in flat_rows:
        columns.update(dict.fromkeys(flat))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(flat_rows)
    atomic_write_text(path, buffer.getvalue())
    return len(flat_rows)
