"""Records passed between the pipeline steps (plain, picklable data: numpy arrays, strings, dicts).

``InputItem`` → prepare step → :class:`Prepared` → frontalize batch → :class:`Rendered` → finish step →
manifest row. Keeping them plain lets an executor move them between threads, processes or Ray workers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from frontalize.faces.types import Face
from frontalize.pipeline.inputs import InputItem

Pose = dict[str, float]
"""Head pose in degrees: ``{"pitch": p, "yaw": y, "roll": r}`` (the project's convention, LivePortrait's)."""


@dataclass
class PreparedFace:
    """One face cut out of its source image.

    Attributes:
        index: rank of the face by box area (0 = largest).
        box: (4,) float32 ``x1, y1, x2, y2`` in source pixels.
        score: detector confidence.
        landmark_kind: ``"106"`` (crop from InsightFace 106 points) or ``"5"`` (approximate crop from 5 points).
        crop: 512×512×3 uint8 RGB face crop.
        crop_to_source: 3×3 float32 matrix mapping crop pixels to source pixels (``M_c2o``).
        roll_offset: target-roll offset in degrees that makes the face upright in the source image (−θ of the
            crop's in-plane rotation).
        crop_face: the detection mapped into crop pixels (box + 5 keypoints), for backends that place landmarks.
    """

    index: int
    box: np.ndarray
    score: float
    landmark_kind: str
    crop: np.ndarray
    crop_to_source: np.ndarray
    roll_offset: float = 0.0
    crop_face: Face | None = None


@dataclass
class Prepared:
    """An input after decode + detection + crop (or the reason it stopped there).

    Attributes:
        item: the input.
        status: ``ok`` or a failure status (``decode_error``, ``no_face``, ...).
        reason: human-readable failure reason ("" when ok).
        source: the decoded H×W×3 uint8 RGB image when a full-image output needs it, else None (memory).
        faces: the chosen faces (largest first).
        face_count: number of faces the detector found (before the choice).
        timings: milliseconds per step so far.
        info: extra manifest fields (decode notes, image size).
    """

    item: InputItem
    status: str = "ok"
    reason: str = ""
    source: np.ndarray | None = None
    faces: list[PreparedFace] = field(default_factory=list)
    face_count: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class RenderedFace:
    """A face after the frontalizer.

    Attributes:
        face: the prepared face it comes from.
        image: 512×512×3 uint8 RGB frontalized crop.
        source_pose: pose of the source crop, or None without a pose estimator.
        output_pose: pose of the frontalized crop (the residual), or None.
        extra: backend-specific manifest fields (e.g. candidates of an identity guard).
        candidate_images: name → candidate crop written under ``_guard/`` (identity guard with ``guard.dump``).
        pose_source: what measured the poses (``motion_extractor``, ``landmarks68``), or None.
    """

    face: PreparedFace
    image: np.ndarray
    source_pose: Pose | None = None
    output_pose: Pose | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    candidate_images: dict[str, np.ndarray] = field(default_factory=dict)
    pose_source: str | None = None


@dataclass
class Rendered:
    """An input after the frontalize batch.

    Attributes:
        prepared: the prepared input.
        faces: the rendered faces (empty unless status is ok).
        status: ``ok`` or the failure status.
        reason: failure reason ("" when ok).
        timings: milliseconds per step so far.
        failed_faces: ``{"face_index", "status", "reason"}`` of each face the backend could not process (e.g.
            ``landmarks_unfit``) while the input as a whole went on.
    """

    prepared: Prepared
    faces: list[RenderedFace] = field(default_factory=list)
    status: str = "ok"
    reason: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    failed_faces: list[dict[str, Any]] = field(default_factory=list)
