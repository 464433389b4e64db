"""Embedding cache: detections and embeddings on disk, keyed by image content hash + model fingerprint.

One SQLite file (``<cache dir>/embeddings.sqlite``) holds three tables:

* ``files``: path, size, mtime → sha256 of the content (so a second run does not re-hash unchanged files);
* ``detections``: (content hash, detector key) → outcome, attempt, score, box, 5 keypoints, pose (+ why a face
  has no pose);
* ``embeddings``: (content hash, detector key, recognizer key) → float32 vector.

The detector key is the detector's fingerprint (model bytes + det size + thresholds) plus the retry settings and the
pose model's fingerprint (model bytes, settings and output convention);
the recognizer key is the recognizer's fingerprint (model bytes + alignment + preprocessing). Keys change when
any of these change, so a stale entry is never reused. Because the key is the *content* hash, the same image
reached through two output trees (or copied) is computed once, and evaluating a second output tree computes
only its new images. SQLite (standard library) gives atomic, incremental writes that survive an interrupted run.
With the cache disabled the same tables live in memory for the duration of one run.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

log = logging.getLogger(__name__)

__all__ = ["Detection", "EmbeddingCache", "default_cache_dir", "sha256_of_file"]

DetectionStatus = Literal["face", "no_face", "unreadable"]
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, sha256 TEXT)",
    "CREATE TABLE IF NOT EXISTS detections (image TEXT, detector TEXT, status TEXT, attempt TEXT, "
    "n_faces INTEGER, score REAL, box BLOB, kps BLOB, pose BLOB, reason TEXT, PRIMARY KEY (image, detector))",
    "CREATE TABLE IF NOT EXISTS embeddings (image TEXT, detector TEXT, recognizer TEXT, vector BLOB, "
    "PRIMARY KEY (image, detector, recognizer))",
)
_CHUNK = 500  # SQLite host-parameter limit is 999 on old builds


@dataclass(frozen=True, eq=False)
class Detection:
    """Detection outcome of one image under one detector (the largest face is the one used).

    Attributes:
        status: "face", "no_face" or "unreadable" (the file could not be decoded).
        attempt: label of the detection attempt that found the face ("plain", or a padded/smaller-size retry).
        n_faces: faces found.
        score: detector score of the used face.
        box: (4,) x1, y1, x2, y2 of the used face, or None.
        kps: (5, 2) keypoints of the used face, or None.
        pose: (pitch, yaw, roll) in degrees, project convention, when the evaluator's pose model ran on the used
            face (:mod:`frontalize.evaluation.poses`); NaN × 3 when it could not fit the face's landmarks; else None.
        reason: why the image is unreadable (decode error text), or why the pose model could not fit the face;
            else None.
    """

    status: DetectionStatus
    attempt: str | None = None
    n_faces: int = 0
    score: float | None = None
    box: np.ndarray | None = None
    kps: np.ndarray | None = None
    pose: tuple[float, float, float] | None = None
    reason: str | None = None

    @property
    def found(self) -> bool:
        """True when a face was detected."""
        return self.status == "face"


def default_cache_dir() -> Path:
    """``$FRONTALIZE_CACHE``, else ``$XDG_CACHE_HOME/frontalize``, else ``~/.cache/frontalize``."""
    if os.environ.get("FRONTALIZE_CACHE"):
        return Path(os.environ["FRONTALIZE_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "frontalize"


def sha256_of_file(path: str | os.PathLike[str]) -> str:
    """sha256 hex digest of a file's bytes (streamed in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _blob(array: np.ndarray | None) -> bytes | None:
    return None if array is None else np.asarray(array, dtype=np.float32).tobytes()


def _array(blob: bytes | None, shape: tuple[int, ...]) -> np.ndarray | None:
    return None if blob is None else np.frombuffer(blob, dtype=np.float32).reshape(shape).copy()


def _chunks(items: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


class EmbeddingCache:
    """Detections and embeddings by (content hash, model key); see the module docstring.

    Args:
        directory: cache folder (created when missing), or None for an in-memory cache of one run.
    """

    def __init__(self, directory: str | os.PathLike[str] | None) -> None:
        if directory is None:
            self.path: Path | None = None
            self._db = sqlite3.connect(":memory:")
        else:
            folder = Path(directory).expanduser()
            folder.mkdir(parents=True, exist_ok=True)
            self.path = folder / "embeddings.sqlite"
            self._db = sqlite3.connect(self.path, timeout=60)
            self._db.execute("PRAGMA journal_mode=WAL")
            # A commit per batch must not cost an fsync (≈ 5 % of the embedding pass measured with full sync): in
            # WAL mode NORMAL keeps the database consistent on a crash and can only lose the newest batches on a
            # power cut, which a cache recomputes.
            self._db.execute("PRAGMA synchronous=NORMAL")
        for statement in _SCHEMA:
            self._db.execute(statement)
        self._db.commit()

    def close(self) -> None:
        """Commit and close the database."""
        self._db.commit()
        self._db.close()

    def __enter__(self) -> EmbeddingCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def content_hash(self, path: str | os.PathLike[str]) -> str:
        """sha256 of ``path``'s content, memoised by (absolute path, size, mtime)."""
        resolved = str(Path(path).resolve())
        stat = os.stat(resolved)
        row = self._db.execute("SELECT size, mtime_ns, sha256 FROM files WHERE path = ?", (resolved,)).fetchone()
        if row is not None and row[0] == stat.st_size and row[1] == stat.st_mtime_ns:
            return str(row[2])
        digest = sha256_of_file(resolved)
        self._db.execute("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?)",
                         (resolved, stat.st_size, stat.st_mtime_ns, digest))
        return digest

    def get_detections(self, images: Sequence[str], detector: str) -> dict[str, Detection]:
        """Cached detections of ``images`` (content hashes) under ``detector``; absent ones are left out."""
        found: dict[str, Detection] = {}
        for chunk in _chunks(list(images)):
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT image, status, attempt, n_faces, score, box, kps, pose, reason FROM detections "
                f"WHERE detector = ? AND image IN ({marks})", (detector, *chunk))
            for image, status, attempt, n_faces, score, box, kps, pose, reason in rows:
                pose_arr = _array(pose, (3,))
                angles = None if pose_arr is None else (float(pose_arr[0]), float(pose_arr[1]), float(pose_arr[2]))
                found[image] = Detection(
                    status=status, attempt=attempt, n_faces=int(n_faces), score=score, box=_array(box, (4,)),
                    kps=_array(kps, (5, 2)), pose=angles, reason=reason)
        return found

    def put_detections(self, detector: str, detections: Mapping[str, Detection]) -> None:
        """Store detections of content hashes under ``detector`` (replacing older entries)."""
        rows = [(image, detector, d.status, d.attempt, d.n_faces, d.score, _blob(d.box), _blob(d.kps),
                 _blob(None if d.pose is None else np.asarray(d.pose)), d.reason) for image, d in detections.items()]
        self._db.executemany("INSERT OR REPLACE INTO detections VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        self._db.commit()

    def get_embeddings(self, images: Sequence[str], detector: str, recognizer: str) -> dict[str, np.ndarray]:
        """Cached (D,) float32 embeddings of ``images`` under (detector, recognizer); absent ones left out."""
        found: dict[str, np.ndarray] = {}
        for chunk in _chunks(list(images)):
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT image, vector FROM embeddings WHERE detector = ? AND recognizer = ? AND image IN ({marks})",
                (detector, recognizer, *chunk))
            for image, vector in rows:
                found[image] = np.frombuffer(vector, dtype=np.float32).copy()
        return found

    def put_embeddings(self, detector: str, recognizer: str, vectors: Mapping[str, np.ndarray]) -> None:
        """Store (D,) embeddings of content hashes under (detector, recognizer)."""
        rows = [(image, detector, recognizer, _blob(v)) for image, v in vectors.items()]
        self._db.executemany("INSERT OR REPLACE INTO embeddings VALUES (?, ?, ?, ?)", rows)
        self._db.commit()

    def commit(self) -> None:
        """Flush pending writes (the file-hash memo is written lazily)."""
        self._db.commit()
