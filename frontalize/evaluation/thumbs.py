"""Face thumbnails of the per-image browser: small JPEGs under ``REPORT/thumbs/``, written once.

Each thumbnail is named by a hash of the source image's *content* hash (the one the embedding cache already
computed, so no file is hashed twice), the thumbnail size and the face box it is cut around. A rerun, or a second
report in the same folder, finds the file and skips it; a changed image, size or detector gets a new name. Files
that the current report no longer references are removed, so the folder holds exactly what ``report.html`` shows.

Thumbnails show the face, not the whole frame: a BIWI frame is 640×480 with the head in a part of it, which at
96 px would be a few pixels wide. The crop is a square of :data:`FACE_MARGIN` × the larger box side around the
box centre (the largest detected face, the one that was scored); an image without a detected face is shrunk whole.

Work: every unique image is decoded once (:func:`frontalize.io.images.load_image`, the decoder the evaluation
used, so the box coordinates match), in a thread pool — OpenCV releases the GIL while decoding, resizing and
encoding.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from frontalize.errors import InputError
from frontalize.io.atomic import atomic_write_bytes
from frontalize.io.images import DEFAULT_MAX_PIXELS, load_image

log = logging.getLogger(__name__)

__all__ = ["FACE_MARGIN", "THUMB_DIR", "ThumbRequest", "ThumbStats", "render_thumbnail", "thumb_name",
           "write_thumbnails"]

THUMB_DIR = "thumbs"
FACE_MARGIN = 1.6
"""Side of the square cut around a face, as a multiple of the larger side of its detection box."""
_BACKGROUND = 236  # light grey where the square reaches past the image border


@dataclass(frozen=True)
class ThumbRequest:
    """One thumbnail to have: source file, its content hash, and the face box (x1, y1, x2, y2) or None."""

    path: str
    content_hash: str
    box: tuple[float, float, float, float] | None = None


@dataclass
class ThumbStats:
    """What :func:`write_thumbnails` did."""

    written: int = 0
    reused: int = 0
    failed: int = 0
    removed: int = 0


def thumb_name(request: ThumbRequest, size: int) -> str:
    """Relative path ``thumbs/ab/<hash>.jpg`` of a thumbnail (content hash + size + rounded box)."""
    box = "full" if request.box is None else ",".join(f"{v:.0f}" for v in request.box)
    digest = hashlib.sha256(f"{request.content_hash}|{size}|{box}".encode()).hexdigest()[:24]
    return f"{THUMB_DIR}/{digest[:2]}/{digest}.jpg"


def render_thumbnail(rgb: np.ndarray, box: tuple[float, float, float, float] | None, size: int) -> np.ndarray:
    """Thumbnail pixels of an H×W×3 uint8 RGB image.

    Args:
        rgb: the decoded image.
        box: face box in ``rgb`` pixels, or None for the whole image.
        size: output side in pixels.

    Returns:
        size×size×3 uint8 (face square, padded light grey past the border), or the whole image shrunk to fit in
        size×size (aspect kept) when ``box`` is None.
    """
    height, width = rgb.shape[:2]
    if box is None:
        scale = size / max(height, width)
        target = (max(1, round(width * scale)), max(1, round(height * scale)))
        return cv2.resize(rgb, target, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
    x1, y1, x2, y2 = box
    side = max(2, round(max(x2 - x1, y2 - y1) * FACE_MARGIN))
    left, top = round((x1 + x2) / 2 - side / 2), round((y1 + y2) / 2 - side / 2)
    square = np.full((side, side, 3), _BACKGROUND, dtype=np.uint8)
    src_x, src_y = max(0, left), max(0, top)
    end_x, end_y = min(width, left + side), min(height, top + side)
    if end_x > src_x and end_y > src_y:
        square[src_y - top:end_y - top, src_x - left:end_x - left] = rgb[src_y:end_y, src_x:end_x]
    interpolation = cv2.INTER_AREA if side > size else cv2.INTER_CUBIC
    return cv2.resize(square, (size, size), interpolation=interpolation)


def _write_one(request: ThumbRequest, target: Path, size: int, quality: int, max_pixels: int) -> bool:
    """Decode, cut, encode and atomically write one thumbnail; False when the source cannot be decoded."""
    try:
        rgb = load_image(request.path, max_pixels=max_pixels).rgb
    except InputError as exc:
        log.debug("no thumbnail for %s: %s", request.path, exc)
        return False
    pixels = render_thumbnail(rgb, request.box, size)
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        return False
    atomic_write_bytes(target, encoded.tobytes(), durable=False)  # a lost thumbnail is rewritten by the next run
    return True


def _remove_unreferenced(folder: Path, keep: Iterable[str]) -> int:
    """Delete ``*.jpg`` under ``folder`` whose relative name is not in ``keep``; returns the count."""
    if not folder.is_dir():
        return 0
    wanted = set(keep)
    removed = 0
    for path in folder.glob("*/*.jpg"):
        if f"{THUMB_DIR}/{path.parent.name}/{path.name}" not in wanted:
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def write_thumbnails(
    requests: Mapping[str, ThumbRequest],
    out_dir: str | Path,
    *,
    size: int,
    quality: int = 80,
    workers: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> tuple[dict[str, str], ThumbStats]:
    """Make sure every requested thumbnail exists under ``out_dir/thumbs``.

    Args:
        requests: key (any id, e.g. the image path) -> what to draw.
        out_dir: report folder.
        size: thumbnail side in pixels.
        quality: JPEG quality.
        workers: threads (None = one per CPU core).
        max_pixels: decode limit (the evaluation's, so face boxes stay in the same pixel frame).

    Returns:
        (key -> thumbnail path relative to ``out_dir``, for every key whose thumbnail exists; counts).
    """
    out = Path(out_dir)
    names = {key: thumb_name(request, size) for key, request in requests.items()}
    todo: dict[str, ThumbRequest] = {}
    for key, name in names.items():
        if not (out / name).is_file():
            todo.setdefault(name, requests[key])  # several keys may share one file: drawn once
    stats = ThumbStats(reused=len(set(names.values())) - len(todo))
    failed: set[str] = set()
    if todo:
        threads = workers or os.cpu_count() or 1
        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="thumbs") as pool:
            done = pool.map(lambda item: (item[0], _write_one(item[1], out / item[0], size, quality, max_pixels)),
                            todo.items())
            for name, ok in done:
                stats.written += ok
                if not ok:
                    failed.add(name)
        stats.failed = len(failed)
    stats.removed = _remove_unreferenced(out / THUMB_DIR, set(names.values()) - failed)
    log.info("thumbnails: %d written, %d reused, %d not decodable, %d stale removed", stats.written, stats.reused,
             stats.failed, stats.removed)
    return {key: name for key, name in names.items() if name not in failed}, stats
