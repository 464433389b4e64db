"""The per-input and per-batch steps of the pipeline, as plain callables any executor can drive.

* :class:`PrepareStep` — one input: decode → detect (+ landmarks) → choose faces → crop. CPU work.
* :class:`FrontalizeBatch` — a list of prepared inputs: their faces go through the frontalizer in network
  batches. GPU work.
* ``frontalize.pipeline.outputs.FinishStep`` — one rendered input: paste-back → stages → encode → atomic
  write → manifest row. CPU work.

None of them raises for a bad input: failures become a status and a reason on the record, so a batch always
goes on. The local executor (:mod:`frontalize.pipeline.runner`) runs them with thread prefetching; a
distributed executor can run the same classes as tasks/actors.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from frontalize.config.inference import CropConfig
from frontalize.errors import InputError, NoFaceError
from frontalize.faces.types import Face
from frontalize.io.images import DEFAULT_MAX_PIXELS, load_image
from frontalize.liveportrait.crop import crop_face, transform_points
from frontalize.pipeline.backends.base import FaceInput, FaceOutcome, Frontalizer
from frontalize.pipeline.crop_fill import reflect_crop
from frontalize.pipeline.inputs import InputItem
from frontalize.pipeline.records import Prepared, PreparedFace, Rendered, RenderedFace

logger = logging.getLogger(__name__)

MIN_DETECTABLE_SIDE = 16
"""Images with a shorter side are reported as ``no_face`` without running the detector."""


@dataclass(frozen=True)
class Steps:
    """The step callables of a run, as an executor drives them.

    Attributes:
        prepare: one input → :class:`Prepared` (decode, detect, crop).
        frontalize: prepared inputs → :class:`Rendered` (network batches of ``batch_size`` faces).
        finish: one rendered input → its manifest row (files written first).
        expected_outputs: the files the largest face of an input produces (resume keeps existing ones).
        batch_size: faces per network batch.
    """

    prepare: Callable[[InputItem], Prepared]
    frontalize: Callable[[Sequence[Prepared]], list[Rendered]]
    finish: Callable[[Rendered], dict[str, Any]]
    expected_outputs: Callable[[InputItem], list[Path]]
    batch_size: int = 8


class FaceLocator(Protocol):
    """Finds faces with the landmarks the crop needs (106 points when available, else 5)."""

    def locate(self, image: np.ndarray) -> list[Face]:
        """Faces in an H×W×3 uint8 RGB image, largest first."""
        ...


@contextmanager
def timed(timings: dict[str, float], step: str) -> Iterator[None]:
    """Add the wall time of the ``with`` body to ``timings[step]`` in milliseconds."""
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[step] = timings.get(step, 0.0) + (time.perf_counter() - start) * 1000.0


def describe_error(exc: BaseException) -> str:
    """One-line reason for an unexpected exception (type and message)."""
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


class PrepareStep:
    """Decode, detect and crop one input (see module docstring)."""

    def __init__(
        self,
        locator: FaceLocator,
        crop: CropConfig,
        *,
        face_choice: Literal["largest", "all"] = "largest",
        max_faces: int = 16,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        keep_source: bool = False,
    ) -> None:
        """Args:
        locator: face detector (+ landmarker).
        crop: crop geometry and fill (``fill`` resolved: black or reflect; see :mod:`~frontalize.pipeline.crop_fill`).
        face_choice: keep the largest face, or all of them (at most ``max_faces``).
        max_faces: cap for ``all``.
        max_pixels: decode limit (see :func:`frontalize.io.images.decode_image`).
        keep_source: keep the decoded image on the record (needed for full-image outputs).
        """
        self.locator = locator
        self.crop = crop
        self.face_choice = face_choice
        self.max_faces = max_faces
        self.max_pixels = max_pixels
        self.keep_source = keep_source

    def __call__(self, item: InputItem) -> Prepared:
        """Prepare one input; never raises for a bad input (status + reason instead)."""
        prepared = Prepared(item=item)
        try:
            self._run(prepared)
        except InputError as exc:
            prepared.status, prepared.reason = exc.status, str(exc)
            prepared.faces, prepared.source = [], None
        except Exception as exc:  # a per-input boundary: one broken input must not stop the batch
            logger.debug("prepare failed on %s", item.rel, exc_info=True)
            prepared.status, prepared.reason = "internal_error", describe_error(exc)
            prepared.faces, prepared.source = [], None
        return prepared

    def _run(self, prepared: Prepared) -> None:
        with timed(prepared.timings, "decode"):
            decoded = load_image(prepared.item.path, max_pixels=self.max_pixels)
        rgb = decoded.rgb
        prepared.info = {"width": int(rgb.shape[1]), "height": int(rgb.shape[0])}
        if decoded.notes:
            prepared.info["notes"] = list(decoded.notes)
        if min(rgb.shape[:2]) < MIN_DETECTABLE_SIDE:
            raise NoFaceError(f"image is {rgb.shape[1]}×{rgb.shape[0]}, too small for face detection")
        with timed(prepared.timings, "detect"):
            faces = self.locator.locate(rgb)
        prepared.face_count = len(faces)
        if not faces:
            raise NoFaceError("no face detected")
        chosen = faces[:1] if self.face_choice == "largest" else faces[: self.max_faces]
        with timed(prepared.timings, "crop"):
            prepared.faces = [self._crop(rgb, face, index) for index, face in enumerate(chosen)]
        prepared.source = rgb if self.keep_source else None

    def _crop(self, rgb: np.ndarray, face: Face, index: int) -> PreparedFace:
        landmarks = face.landmarks106 if face.landmarks106 is not None else face.kps
        result = crop_face(rgb, landmarks, scale=self.crop.scale, vy_ratio=self.crop.vy_ratio, rotate=True)
        crop = reflect_crop(rgb, result.M_o2c, result.image) if self.crop.fill == "reflect" else result.image
        return PreparedFace(
            index=index,
            box=np.asarray(face.box, dtype=np.float32),
            score=float(face.score),
            landmark_kind="106" if face.landmarks106 is not None else "5",
            crop=crop,
            crop_to_source=np.asarray(result.M_c2o, dtype=np.float32),
            roll_offset=float(result.roll_offset),
            crop_face=face_in_crop(face, result.M_o2c),
        )


def face_in_crop(face: Face, source_to_crop: np.ndarray) -> Face:
    """A detection mapped into crop pixels (box + 5 keypoints; the box as the bounding box of its mapped corners).

    Args:
        face: the detection in source-image pixels.
        source_to_crop: 3×3 (or 2×3) affine matrix, source → crop (``M_o2c``).
    """
    x1, y1, x2, y2 = (float(v) for v in face.box)
    corners = transform_points(np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]]), source_to_crop)
    return Face(box=np.r_[corners.min(axis=0), corners.max(axis=0)], score=face.score,
                kps=transform_points(face.kps, source_to_crop))


class FrontalizeBatch:
    """Run the faces of several prepared inputs through a frontalizer in batches of ``batch_size``.

    A face the backend answers with an :class:`~frontalize.errors.InputError` (e.g. ``landmarks_unfit``) is listed in
    its input's ``failed_faces``; the input stays ``ok`` when another of its faces was rendered, else it takes that
    face's status and reason. Any other failure of a face fails its input (``frontalize_error``).
    """

    def __init__(self, frontalizer: Frontalizer, batch_size: int = 8, pose_source: str | None = None) -> None:
        """Args: frontalizer: the backend; batch_size: faces per network call; pose_source: what measured the
        poses (recorded on each face)."""
        self.frontalizer = frontalizer
        self.batch_size = max(1, int(batch_size))
        self.pose_source = pose_source

    def __call__(self, prepared: Sequence[Prepared]) -> list[Rendered]:
        """One :class:`Rendered` per prepared input (same order); failed inputs pass through unchanged."""
        rendered = [Rendered(prepared=p, status=p.status, reason=p.reason, timings=dict(p.timings)) for p in prepared]
        jobs = [(slot, face) for slot, p in enumerate(prepared) if p.status == "ok" for face in p.faces]
        for start in range(0, len(jobs), self.batch_size):
            chunk = jobs[start : start + self.batch_size]
            for (slot, face), outcome, elapsed_ms in self._run_chunk(chunk):
                target = rendered[slot]
                target.timings["frontalize"] = target.timings.get("frontalize", 0.0) + elapsed_ms
                if isinstance(outcome, InputError):  # this face only (e.g. landmarks_unfit): the others go on
                    target.failed_faces.append({"face_index": face.index, "status": outcome.status,
                                                "reason": str(outcome)})
                elif isinstance(outcome, BaseException):
                    if target.status == "ok":
                        target.status, target.reason = "frontalize_error", describe_error(outcome)
                else:
                    target.faces.append(RenderedFace(face=face, image=outcome.image, source_pose=outcome.source_pose,
                                                     output_pose=outcome.output_pose, extra=outcome.extra,
                                                     candidate_images=outcome.candidate_images,
                                                     pose_source=self.pose_source))
        for item in rendered:
            if item.status == "ok" and not item.faces and item.failed_faces:
                first = item.failed_faces[0]
                item.status, item.reason = str(first["status"]), str(first["reason"])
            if item.status != "ok":
                item.faces = []
        return rendered

    def _run_chunk(
        self, chunk: list[tuple[int, PreparedFace]]
    ) -> list[tuple[tuple[int, PreparedFace], FaceOutcome | BaseException, float]]:
        """Frontalize one chunk; when the whole chunk fails, retry face by face to isolate the culprit."""
        start = time.perf_counter()
        try:
            outputs = self.frontalizer.frontalize([FaceInput(crop=face.crop, roll_offset=face.roll_offset,
                                                             face=face.crop_face) for _, face in chunk])
        except Exception as exc:  # a failing batch (OOM, bad crop): isolate it instead of failing every input
            if len(chunk) == 1:
                logger.debug("frontalize failed", exc_info=True)
                return [(chunk[0], exc, (time.perf_counter() - start) * 1000.0)]
            logger.warning("a batch of %d faces failed (%s); retrying one by one", len(chunk), describe_error(exc))
            return [result for job in chunk for result in self._run_chunk([job])]
        if len(outputs) != len(chunk):
            raise RuntimeError(f"frontalizer {self.frontalizer.name} returned {len(outputs)} results for "
                               f"{len(chunk)} faces")
        share = (time.perf_counter() - start) * 1000.0 / len(chunk)
        return [(job, output, share) for job, output in zip(chunk, outputs)]
