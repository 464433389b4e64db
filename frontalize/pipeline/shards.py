"""Manifest shards: rows written by distributed workers, merged into ``manifest.jsonl`` by the driver.

A worker that finishes a batch of inputs writes their rows as one small JSONL file under
``OUT/.manifest-shards/`` atomically (temp file + ``os.replace``, after the images they name), so a shard is
either complete or absent. The driver merges the shards into the manifest at the end of a run and, for shards an
interrupted run left behind, at the start of the next one (the resume plan reads them too). Merging keeps one row
per input (the newest shard wins: a task retried after its worker died may have written the same input twice),
skips rows the manifest already ends with for that input (a merge interrupted before the shards were deleted),
appends the rest in input order and then deletes the shard files — so the manifest gets every input exactly once.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from frontalize.io.atomic import TEMP_MARKER
from frontalize.io.manifest import ManifestWriter, latest_rows, read_manifest

logger = logging.getLogger(__name__)

SHARD_DIR_NAME = ".manifest-shards"
"""Folder of the shards inside the output folder (hidden: never taken for an output tree)."""


def shard_dir(out_dir: str | Path) -> Path:
    """The shard folder of an output folder."""
    return Path(out_dir) / SHARD_DIR_NAME


def write_shard(directory: str | Path, rows: Sequence[Mapping[str, Any]]) -> Path | None:
    """Write ``rows`` as one new shard file, atomically (fsync'ed temp file, then rename).

    Args:
        directory: the shard folder (created when missing).
        rows: manifest rows of one finished batch.

    Returns:
        The shard path, or None when ``rows`` is empty (nothing is written).
    """
    if not rows:
        return None
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:12]}.jsonl"
    target = folder / name
    temporary = folder / f".{name}{TEMP_MARKER}{uuid.uuid4().hex[:8]}"
    try:
        with ManifestWriter(temporary, durable=False) as writer:
            for row in rows:
                writer.append(row)
        with open(temporary, "rb") as handle:  # one fsync for the whole shard instead of one per row
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return target


def shard_files(out_dir: str | Path) -> list[Path]:
    """Complete shard files of an output folder, oldest first (modification time, then name)."""
    folder = shard_dir(out_dir)
    if not folder.is_dir():
        return []
    files = [path for path in folder.glob("*.jsonl") if path.is_file() and not path.name.startswith(".")]
    return sorted(files, key=lambda path: (path.stat().st_mtime_ns, path.name))


def read_shard_rows(out_dir: str | Path) -> list[dict[str, Any]]:
    """Every row of every shard of ``out_dir``, oldest shard first (for the resume plan; nothing is changed)."""
    return read_manifest(*shard_files(out_dir))


def _ordered(rows: Iterable[dict[str, Any]], order: Sequence[str] | None) -> list[dict[str, Any]]:
    """Rows sorted by the position of their input in ``order`` (inputs not in it keep their order, last)."""
    listed = list(rows)
    if order is None:
        return listed
    position = {rel: index for index, rel in enumerate(order)}
    return sorted(listed, key=lambda row: position.get(str(row["input"]), len(position)))


def merge_shards(out_dir: str | Path, manifest_path: str | Path, order: Sequence[str] | None = None) -> int:
    """Append the shard rows of ``out_dir`` to the manifest (one per input, see module docstring), then delete
    the shards.

    Args:
        out_dir: output folder holding ``.manifest-shards/``.
        manifest_path: the JSONL manifest.
        order: input order of the run (relative paths); rows are appended in this order.

    Returns:
        Number of rows appended.
    """
    files = shard_files(out_dir)
    if not files:
        return 0
    newest = latest_rows(read_manifest(*files))
    current = latest_rows(read_manifest(manifest_path))
    rows = [row for rel, row in newest.items() if current.get(rel) != row]
    with ManifestWriter(manifest_path) as manifest:
        for row in _ordered(rows, order):
            manifest.append(row)
    for path in files:
        path.unlink(missing_ok=True)
    try:
        shard_dir(out_dir).rmdir()
    except OSError:
        logger.debug("shard folder of %s not removed (not empty: a worker may still be writing)", out_dir)
    if rows:
        logger.info("manifest: merged %d row(s) from %d shard file(s)", len(rows), len(files))
    return len(rows)
