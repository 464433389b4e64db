"""Manifest shards: rows written by distributed workers, merged into ``manifest.jsonl`` by the driver.

A worker that finishes a batch of inputs writes their rows as one small JSONL file under
``OUT/.manifest-shards/`` atomically (temp file + ``os.replace``, after the images they name), so a shard is
either complete or absent. The driver merges the shards into the manifest at the end of a run and, for shards an
interrupted run left behind, at the start of the next one (the resume plan reads them too). Merging keeps one row
per input (the newest shard wins: a task retried after its worker died may have written the same input twice),
skips rows the manifest already ends with for that input (a merge interrupted before the shards were deleted),
appends the rest in input order and then deletes the shard files — so the manifest gets every input exactly once.

The write gate of a run (``OUT/.manifest-shards/.gate-<run id>…``) lets the driver know when no task of the run
writes into the output folder any more. A task holds a shared file lock on it while it writes a batch (images,
then shard) and writes nothing when the driver has marked the gate closed. When the run ends — also on Ctrl-C or
``run.on_error: abort``, after Ray has been told to cancel the tasks — the driver takes the exclusive lock, which it
gets once every task that was writing has finished or died (the kernel drops the locks of a killed process),
marks the gate closed and merges the shards: nothing of the run is written into the folder after that.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from frontalize.io.atomic import TEMP_MARKER, atomic_write_bytes
from frontalize.io.manifest import ManifestWriter, latest_rows, read_manifest

logger = logging.getLogger(__name__)

SHARD_DIR_NAME = ".manifest-shards"
"""Folder of the shards inside the output folder (hidden: never taken for an output tree)."""
GATE_OPEN = b"open\n"
GATE_CLOSED = b"closed\n"
_NO_LOCKS = {errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP}
"""flock errors of a file system without locks (NFS mounted ``nolock`` keeps them local; Lustre without ``flock``)."""

try:
    import fcntl
except ImportError:  # Windows: no flock; the gate still stops late tasks, it cannot wait for running ones
    fcntl = None  # type: ignore[assignment]


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


def gate_path(out_dir: str | Path, run_id: str) -> Path:
    """The write gate of run ``run_id``: hidden in the shard folder, named like a temp file so that a run started
    after a killed driver removes it (:func:`frontalize.io.atomic.remove_stale_temp_files`)."""
    return shard_dir(out_dir) / f".gate-{run_id}{TEMP_MARKER}lock"


def open_gate(gate: Path) -> None:
    """Create the write gate, open (driver, before the first task)."""
    atomic_write_bytes(gate, GATE_OPEN, durable=False)


def _lock(handle: IO[bytes], *, exclusive: bool, wait: bool = True) -> bool | None:
    """``flock`` the gate file (the lock goes with the file handle, and with the process when it dies).

    Returns:
        True when locked; False when another process holds it (only with ``wait=False``); None where the platform
        or the file system has no file locks.
    """
    if fcntl is None:
        return None
    operation = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | (0 if wait else fcntl.LOCK_NB)
    try:
        fcntl.flock(handle.fileno(), operation)
    except BlockingIOError:
        return False
    except OSError as exc:
        if exc.errno not in _NO_LOCKS:
            raise
        return None
    return True


@contextmanager
def gate_pass(gate: Path) -> Iterator[bool]:
    """Worker: hold the gate while writing a batch (``with gate_pass(job.gate) as admitted:``).

    The gate is opened with ``O_CREAT``, which an NFS client resolves on the server (a plain open may trust a
    cached "no such file"); a gate that was removed, or that this node does not see, is then an empty file.

    Yields:
        True: write (the driver waits for this block to end, or for the process to die, before it merges);
        False: the gate is closed, removed or not visible here: write nothing.
    """
    try:
        fd = os.open(gate, os.O_RDONLY | os.O_CREAT, 0o644)
    except FileNotFoundError:  # no shard folder on this node
        yield False
        return
    with open(fd, "rb") as handle:
        _lock(handle, exclusive=False)
        state = handle.read()  # read under the lock: the driver marks the gate closed under its own
        if not state:  # created just now (the driver writes the gate whole, by rename): leave no stray file
            gate.unlink(missing_ok=True)
        yield state == GATE_OPEN


def close_gate(gate: Path) -> None:
    """Driver: wait until no task writes under the gate, mark it closed (later tasks write nothing), remove it.

    Call it after Ray was told to stop the run: a task that was writing then either finishes its batch (images,
    then shard) or is killed; either way its lock goes and this returns. Ctrl-C stops the wait.
    """
    try:
        handle = open(gate, "r+b")  # write access: an exclusive lock on NFS needs it
    except FileNotFoundError:
        return
    with handle:
        locked = _lock(handle, exclusive=True, wait=False)
        if locked is False:
            logger.info("ray: waiting for the tasks still writing outputs to stop (Ctrl-C again to stop waiting)")
            locked = _lock(handle, exclusive=True)
        if locked is None:
            logger.warning("no file locks on the file system of %s: Ray tasks that were writing when the run stopped "
                           "may finish after the command returned (the next run merges their rows)", gate.parent)
        handle.truncate(0)
        handle.write(GATE_CLOSED)
        handle.flush()
    gate.unlink(missing_ok=True)
