"""Weights store: where weight files live on disk and whether they are intact.

Resolves the weights root, maps registry keys to paths, points third-party wrappers (InsightFace, rembg,
facexlib) at registry folders, and verifies files by size, sha256 and (where published) md5. Files without a
published sha256 are checked against the size and sha256 recorded the first time they were seen
(``<root>/weights.lock.json``, :mod:`frontalize.weights.lock`). Digests are cached per (absolute path, mtime_ns,
size) in ``<root>/.verified.json`` so a file is hashed once.

Files that installed packages ship are found and verified by :mod:`frontalize.weights.packaged`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shlex
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from frontalize.errors import WeightsMissingError
from frontalize.weights.lock import LOCK_FILENAME, WeightsLock, needs_lock
from frontalize.weights.registry import GROUPS, WeightFile, fetch_groups, get_weight

logger = logging.getLogger(__name__)

ENV_WEIGHTS_ROOT = "FRONTALIZE_WEIGHTS"
DEFAULT_WEIGHTS_ROOT = "pretrained_weights"
CACHE_FILENAME = ".verified.json"
_CACHE_VERSION = 1
_CHUNK = 1 << 20

# Keys already logged as trusted on first use in this process (one line per key is enough).
_warned_unrecorded: set[str] = set()
CHANGED_SINCE_FIRST_USE = "changed since it was first recorded"


@dataclass(frozen=True)
class VerifiedWeight:
    """A weight file found on disk.

    Attributes:
        key: registry key.
        path: absolute path of the file.
        size: size in bytes as found.
        sha256: sha256 computed from the file, or None when verification was skipped (allow_unverified).
    """

    key: str
    path: Path
    size: int
    sha256: str | None


@dataclass(frozen=True)
class FileDigests:
    """sha256 and md5 of one file (lower-case hex)."""

    sha256: str
    md5: str


def resolve_weights_root(cli_value: str | os.PathLike[str] | None = None) -> Path:
    """Weights root: ``--weights-dir`` value, else ``$FRONTALIZE_WEIGHTS``, else ``./pretrained_weights``.

    Args:
        cli_value: the ``--weights-dir`` value, or None when the flag was not given.

    Returns:
        The root folder (``~`` expanded, not required to exist).
    """
    if cli_value is not None and str(cli_value) != "":
        return Path(cli_value).expanduser()
    env_value = os.environ.get(ENV_WEIGHTS_ROOT, "")
    if env_value:
        return Path(env_value).expanduser()
    return Path(DEFAULT_WEIGHTS_ROOT)


def weight_path(key: str, root: str | os.PathLike[str]) -> Path:
    """``root / relpath`` of ``key``; no existence check.

    Raises:
        ConfigError: unknown key.
    """
    return Path(root) / get_weight(key).relpath


def insightface_root(root: str | os.PathLike[str]) -> Path:
    """Folder to pass as InsightFace ``root`` (``FaceAnalysis(name, root=...)`` reads ``<it>/models/<name>/``)."""
    return Path(root) / "insightface"


def rembg_home(root: str | os.PathLike[str]) -> Path:
    """Folder to export as ``U2NET_HOME``: rembg then finds ``<it>/<model>.onnx`` and downloads nothing."""
    return Path(root) / "rembg"


def facexlib_dir(root: str | os.PathLike[str]) -> Path:
    """Folder to pass as facexlib ``model_rootpath`` (holds detection_Resnet50_Final.pth)."""
    return Path(root) / "facexlib"


def file_digests(path: str | os.PathLike[str]) -> FileDigests:
    """sha256 and md5 of a file, computed in one read (hashlib.file_digest does one algorithm per pass).

    Args:
        path: file to hash.

    Returns:
        Both digests as lower-case hex.
    """
    sha256, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            sha256.update(chunk)
            md5.update(chunk)
    return FileDigests(sha256.hexdigest(), md5.hexdigest())


class DigestCache:
    """Digests keyed by (absolute path, mtime_ns, size), persisted as JSON under the weights root.

    A missing, unreadable or corrupt cache file is treated as empty; failing to write it (read-only root) is
    logged at debug level and otherwise ignored.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.path = Path(root) / CACHE_FILENAME
        self._entries: dict[str, dict[str, object]] = self._load()
        self._dirty = False

    def _load(self) -> dict[str, dict[str, object]]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as error:
            logger.debug("ignoring unreadable checksum cache %s: %s", self.path, error)
            return {}
        if not isinstance(data, dict) or data.get("version") != _CACHE_VERSION:
            logger.debug("ignoring checksum cache %s with unexpected content", self.path)
            return {}
        entries = data.get("entries")
        return {k: v for k, v in entries.items() if isinstance(v, dict)} if isinstance(entries, dict) else {}

    def digests(self, path: Path) -> FileDigests:
        """Digests of ``path``, from the cache when its mtime and size are unchanged."""
        absolute = path.resolve()
        stat = absolute.stat()
        entry = self._entries.get(str(absolute))
        if (
            entry is not None
            and entry.get("mtime_ns") == stat.st_mtime_ns
            and entry.get("size") == stat.st_size
            and isinstance(entry.get("sha256"), str)
            and isinstance(entry.get("md5"), str)
        ):
            return FileDigests(str(entry["sha256"]), str(entry["md5"]))
        digests = file_digests(absolute)
        self.record(absolute, digests)
        return digests

    def record(self, path: Path, digests: FileDigests) -> None:
        """Remember digests computed elsewhere (e.g. while downloading) for ``path`` as it is now."""
        absolute = path.resolve()
        stat = absolute.stat()
        self._entries[str(absolute)] = {
            "mtime_ns": stat.st_mtime_ns,
            "size": stat.st_size,
            "sha256": digests.sha256,
            "md5": digests.md5,
        }
        self._dirty = True

    def save(self) -> None:
        """Write the cache atomically (temp file + ``os.replace``) when something changed."""
        if not self._dirty:
            return
        payload = json.dumps({"version": _CACHE_VERSION, "entries": self._entries}, indent=1, sort_keys=True)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(prefix=CACHE_FILENAME, suffix=".tmp", dir=self.path.parent)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(payload)
            os.replace(tmp_name, self.path)
        except OSError as error:
            logger.debug("could not write checksum cache %s: %s", self.path, error)
            return
        self._dirty = False


def download_command(root: str | os.PathLike[str], groups: Iterable[str]) -> str:
    """The exact shell command that downloads ``groups`` into ``root``."""
    ordered = [group for group in GROUPS if group in set(groups)]
    return f"python scripts/download_weights.py --weights-dir {shlex.quote(str(root))} --only {' '.join(ordered)}"


def check_file(
    spec: WeightFile, path: Path, cache: DigestCache, lock: WeightsLock | None = None
) -> tuple[str | None, str | None]:
    """Compare one file on disk with its registry entry, and with its trust-on-first-use record.

    Args:
        spec: registry entry.
        path: the file.
        cache: digest cache of the root.
        lock: the root's lock; a file without a published sha256 is compared with its record there, or recorded
            (in memory: the caller saves the lock) when it has none. None: no trust-on-first-use check.

    Returns:
        ``(problem, sha256)``: a short description of what is wrong (None when the file is fine) and the
        computed sha256 (None when the file is missing or has the wrong size, so it was not hashed).
    """
    if not path.is_file():
        return "missing", None
    size = path.stat().st_size
    if spec.size is not None and size != spec.size:
        return f"size {size:,} ≠ {spec.size:,} bytes (truncated or wrong file)", None
    digests = cache.digests(path)
    if spec.sha256 is not None and digests.sha256 != spec.sha256.lower():
        return f"sha256 mismatch (got {digests.sha256[:12]}…, expected {spec.sha256[:12]}…)", digests.sha256
    if spec.md5 is not None and digests.md5 != spec.md5.lower():
        return f"md5 mismatch (got {digests.md5[:12]}…, expected {spec.md5[:12]}…)", digests.sha256
    if lock is None or not needs_lock(spec):
        return None, digests.sha256
    entry = lock.get(spec)
    if entry is None:
        lock.record(spec, size, digests.sha256, how="first verification")
        if spec.key not in _warned_unrecorded:
            _warned_unrecorded.add(spec.key)
            logger.info("%s: no published checksum; trusting %s on first use (size %s, sha256 %s), recorded in %s",
                        spec.key, spec.relpath, f"{size:,}", digests.sha256, lock.path)
        return None, digests.sha256
    if (size, digests.sha256) != (entry.size, entry.sha256):
        return (f"{CHANGED_SINCE_FIRST_USE} in {LOCK_FILENAME} (now size {size:,} bytes, sha256 "
                f"{digests.sha256[:12]}…; recorded {entry.describe()})"), digests.sha256
    return None, digests.sha256


def _present_unverified(keys: list[str], root: Path) -> dict[str, VerifiedWeight]:
    """The ``allow_unverified`` path of :func:`verify_weights`: presence only, nothing hashed."""
    missing = [key for key in keys if not weight_path(key, root).is_file()]
    if missing:
        raise WeightsMissingError(_problem_message(root, [(key, "missing") for key in missing]))
    logger.warning(
        "WEIGHTS NOT VERIFIED: sizes and checksums of %d file(s) under %s are not checked "
        "(allow_unverified); results are only meaningful with test weights",
        len(keys),
        root,
    )
    found = {}
    for key in keys:
        path = weight_path(key, root).resolve()
        found[key] = VerifiedWeight(key, path, path.stat().st_size, None)
    return found


def _problem_message(root: Path, problems: list[tuple[str, str]]) -> str:
    """Multi-line error text: one line per ``(key, problem)`` and the download command that fixes them."""
    lines = [f"{len(problems)} weight file(s) missing or corrupt under {root}:"]
    lines += [f"  - {key}: {get_weight(key).relpath}: {what}" for key, what in problems]
    lines.append(
        f"fix: {download_command(root, fetch_groups([key for key, _ in problems]))}"
        " (or copy the files by hand to the paths above)"
    )
    if any(CHANGED_SINCE_FIRST_USE in what for _, what in problems):
        lines.append(
            f"files that {CHANGED_SINCE_FIRST_USE} have no published checksum and were trusted on first use "
            f"({root / LOCK_FILENAME}): the command above downloads them again and keeps the first record; if "
            "you replaced a file on purpose, add --force to record the new download, or delete its entry from "
            "the lock file to trust the file you copied"
        )
    return "\n".join(lines)


def verify_weights(
    keys: Iterable[str], root: str | os.PathLike[str], *, allow_unverified: bool = False
) -> dict[str, VerifiedWeight]:
    """Check that every file in ``keys`` is present and intact under ``root``.

    Intact means the published size / sha256 / md5 where the registry has them, and for a file without a
    published sha256 the size and sha256 recorded in ``<root>/weights.lock.json`` the first time it was seen
    (recorded now when it has no record yet).

    Args:
        keys: registry keys to check (duplicates are checked once).
        root: weights root folder.
        allow_unverified: only require the files to exist; sizes and checksums are not enforced, nothing is
            recorded in the lock, and ``VerifiedWeight.sha256`` is None (for test weights; logs a loud warning).

    Returns:
        ``{key: VerifiedWeight}`` for every requested key.

    Raises:
        ConfigError: an unknown key.
        WeightsMissingError: one error listing every missing or corrupt file and the command that fixes them.
    """
    wanted = list(dict.fromkeys(keys))
    for key in wanted:
        get_weight(key)
    root_path = Path(root)
    if allow_unverified:
        return _present_unverified(wanted, root_path)
    cache = DigestCache(root_path)
    lock = WeightsLock(root_path)
    found: dict[str, VerifiedWeight] = {}
    problems: list[tuple[str, str]] = []
    try:
        for key in wanted:
            path = weight_path(key, root_path)
            problem, sha256 = check_file(get_weight(key), path, cache, lock)
            if problem is not None:
                problems.append((key, problem))
            else:
                found[key] = VerifiedWeight(key, path.resolve(), path.stat().st_size, sha256)
    finally:
        cache.save()
        lock.save()
    if problems:
        raise WeightsMissingError(_problem_message(root_path, problems))
    return found


def file_status(key: str, root: str | os.PathLike[str]) -> str:
    """Quick status of one file without hashing: ``ok``, ``present``, ``missing`` or ``size X≠Y``.

    ``ok`` means present with the reference size; ``present`` means present but no reference size is known.
    """
    spec = get_weight(key)
    path = weight_path(key, root)
    if not path.is_file():
        return "missing"
    size = path.stat().st_size
    if spec.size is None:
        return "present"
    return "ok" if size == spec.size else f"size {size:,}≠{spec.size:,}"
