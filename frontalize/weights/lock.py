"""Trust on first use: size and sha256 of weight files that have no published checksum.

The registry records a published size and sha256 only where the authors publish one (the LivePortrait Hugging
Face repo); rembg publishes an md5. For every other file (ArcFace R50/R100, the antelopev2 SCRFD, 1k3d68, GFPGAN,
facexlib RetinaFace-R50) the first time the toolkit sees it — when ``scripts/download_weights.py`` installs it, or
at the first verification of a file copied by hand — its size and sha256 are written to ``<root>/weights.lock.json``
and every later verification compares the file with that record. A file that changed afterwards (truncated,
overwritten, swapped) is then reported like a checksum mismatch (``WeightsMissingError``, exit code 3).

The lock holds values only; :mod:`frontalize.weights.store` and :mod:`frontalize.weights.download` decide when to
read and write it. Writes are atomic (temp file + ``os.replace``) and merge with what another process (a Ray
worker on a shared folder) recorded meanwhile: an entry already on disk is never replaced, except by an explicit
re-download (``--force``).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from frontalize.weights.registry import WeightFile

logger = logging.getLogger(__name__)

LOCK_FILENAME = "weights.lock.json"
_LOCK_VERSION = 1


def needs_lock(spec: WeightFile) -> bool:
    """True when ``spec`` has no published sha256, so its checksum is trusted on first use."""
    return spec.sha256 is None


@dataclass(frozen=True)
class LockEntry:
    """What a file was when it was first seen.

    Attributes:
        key: registry key.
        size: size in bytes.
        sha256: sha256, lower-case hex.
        recorded: UTC time of the record (ISO 8601, seconds).
        how: ``download`` (installed by the downloader) or ``first verification`` (a file found on disk).
    """

    key: str
    size: int
    sha256: str
    recorded: str
    how: str

    def describe(self) -> str:
        """Short text for error messages: ``size 1,234 bytes, sha256 0123abcd… (first verification, DATE)``."""
        return f"size {self.size:,} bytes, sha256 {self.sha256[:12]}… ({self.how}, {self.recorded})"


def _now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


class WeightsLock:
    """The lock file of one weights root: entries keyed by the file's registry ``relpath``.

    A missing or unreadable lock file is treated as empty (an unreadable one is logged: its entries cannot be
    trusted, and writing a new one replaces it).
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.path = Path(root) / LOCK_FILENAME
        self._entries = self._read()
        self._changed: dict[str, LockEntry] = {}
        self._replace: set[str] = set()

    def _read(self) -> dict[str, LockEntry]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as error:
            logger.warning("ignoring unreadable weights lock %s: %s", self.path, error)
            return {}
        files = data.get("files") if isinstance(data, dict) and data.get("version") == _LOCK_VERSION else None
        if not isinstance(files, dict):
            logger.warning("ignoring weights lock %s with unexpected content", self.path)
            return {}
        entries = {}
        for relpath, raw in files.items():
            try:
                entries[relpath] = LockEntry(str(raw["key"]), int(raw["size"]), str(raw["sha256"]).lower(),
                                             str(raw["recorded"]), str(raw["how"]))
            except (KeyError, TypeError, ValueError):
                logger.warning("ignoring malformed entry %r of weights lock %s", relpath, self.path)
        return entries

    def get(self, spec: WeightFile) -> LockEntry | None:
        """The recorded entry of ``spec``'s file, or None when it was never recorded."""
        return self._entries.get(spec.relpath)

    def record(self, spec: WeightFile, size: int, sha256: str, *, how: str, replace: bool = False) -> LockEntry:
        """Record ``spec``'s file (kept in memory until :meth:`save`).

        Args:
            spec: registry entry.
            size: size in bytes.
            sha256: sha256 of the file.
            how: ``download`` or ``first verification``.
            replace: overwrite an existing entry (an explicit re-download); otherwise an existing entry wins.
        """
        existing = self._entries.get(spec.relpath)
        if existing is not None and not replace:
            return existing
        entry = LockEntry(spec.key, size, sha256.lower(), _now(), how)
        self._entries[spec.relpath] = entry
        self._changed[spec.relpath] = entry
        if replace:
            self._replace.add(spec.relpath)
        return entry

    def save(self) -> bool:
        """Write new entries atomically, merged with the file as it is now on disk.

        Returns:
            True when written (or nothing to write); False when the root is not writable (logged as a warning:
            trust on first use is then not in effect for these files).
        """
        if not self._changed:
            return True
        merged = self._read()
        for relpath, entry in self._changed.items():
            if relpath in self._replace or relpath not in merged:
                merged[relpath] = entry
        payload = {"version": _LOCK_VERSION,
                   "about": "size and sha256 of weight files without a published checksum, recorded the first "
                            "time frontalize saw them (trust on first use); every later verification compares "
                            "the files with these values",
                   "files": {relpath: asdict(entry) for relpath, entry in sorted(merged.items())}}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(prefix=LOCK_FILENAME, suffix=".tmp", dir=self.path.parent)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(payload, handle, indent=1)
                handle.write("\n")
            os.replace(tmp_name, self.path)
        except OSError as error:
            logger.warning("cannot write the weights lock %s (%s): the checksums of %s are not recorded, so later "
                           "changes to these files cannot be detected", self.path, error,
                           ", ".join(entry.key for entry in self._changed.values()))
            return False
        self._entries = merged
        self._changed, self._replace = {}, set()
        return True
