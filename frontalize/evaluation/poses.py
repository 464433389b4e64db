"""Head-pose sources of the evaluator, every one converted into the project's convention where it enters.

The convention (``frontalize.datasets.base.POSE_CONVENTION``) is LivePortrait's and
:mod:`frontalize.faces.headpose`'s: degrees, ``R = Rz(roll)·Ry(yaw)·Rx(pitch)`` with x right, y down, z into the
screen; pitch > 0 = looking down, yaw > 0 = face turned towards image left (the subject's right), roll > 0 =
clockwise. Sources and where they are converted:

* ``annotation`` — BIWI pose files (``datasets.biwi.pose_from_matrix``: the file matrix's ZYX decomposition, not the
  FSA-Net angles), ``poses.csv`` / ``poses.json`` of the generic layout (written in this convention);
* ``rendered`` — the pose a synthetic view was rendered at (``posed_views.json``);
* ``1k3d68`` — InsightFace's ``face.pose`` is (pitch, yaw, roll) of ``Rz·Ry·Rx`` in its mean shape's frame (z towards
  the viewer), i.e. the project's (−pitch, −yaw, +roll): converted by :func:`from_insightface` in
  :class:`InsightFacePoseModel`;
* ``landmarks68`` — :class:`frontalize.faces.headpose.HeadPoseEstimator` on dlib's 68 points, natively in this
  convention (:class:`Landmarks68PoseModel`);
* ``keypoints`` — the 5-keypoint yaw proxy (:func:`frontalize.evaluation.posecues.keypoint_pose`), written in this
  convention; no pitch.

The two models run in the detection pass on the face the detector found (no second detection), and their poses are
cached with the detection under a key that includes the model's fingerprint. A face whose 68 landmarks cannot be
fitted gets the pose :data:`UNFIT_POSE` (three NaN) and the reason in ``Detection.reason``: it has no pose (never 0)
and is counted.
"""

from __future__ import annotations

import importlib.util
import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

import numpy as np

from frontalize.datasets.base import HeadPose
from frontalize.evaluation.cache import Detection
from frontalize.evaluation.posecues import keypoint_pose
from frontalize.faces.types import Face

if TYPE_CHECKING:
    from frontalize.faces.headpose import HeadPoseEstimator
    from frontalize.faces.landmarks import InsightFacePose68

__all__ = ["POSE_1K3D68", "POSE_KEYPOINTS", "POSE_LANDMARKS68", "POSE_MODELS", "UNFIT_POSE", "ImagePose",
           "InsightFacePoseModel", "Landmarks68PoseModel", "PoseModel", "build_pose_model", "digest_root",
           "from_insightface", "image_pose", "is_unfit", "landmarks68_installed"]

POSE_1K3D68 = "1k3d68"
POSE_LANDMARKS68 = "landmarks68"
POSE_KEYPOINTS = "keypoints"
POSE_MODELS: tuple[str, ...] = (POSE_1K3D68, POSE_LANDMARKS68)
"""Pose models that can run in the detection pass (``dataset.pose``; ``keypoints`` needs none)."""

UNFIT_POSE: tuple[float, float, float] = (math.nan, math.nan, math.nan)
"""Stored pose of a face whose landmarks the estimator could not fit."""

Pose = tuple[float, float, float]
PoseStatus = Literal["known", "estimated", "unfit", "no_face"]


def from_insightface(pitch: float, yaw: float, roll: float) -> Pose:
    """InsightFace ``face.pose`` (1k3d68: pitch > 0 up, yaw > 0 towards image right) → the project's convention.

    Same Euler order, z axis flipped (the mean shape's z points towards the viewer): ``(−pitch, −yaw, +roll)``.
    """
    return -float(pitch), -float(yaw), float(roll)


class PoseModel(Protocol):
    """A head-pose model of the detection pass (project convention)."""

    name: str

    @property
    def fingerprint(self) -> str:
        """Model bytes, settings and output convention (part of the detection cache key)."""
        ...

    def pose(self, image: np.ndarray, face: Face) -> Pose:
        """(pitch, yaw, roll) in degrees of ``face`` in the H×W×3 uint8 RGB ``image``.

        Raises:
            LandmarkFitError: the face's landmarks cannot be fitted (68-point estimator).
        """
        ...


class InsightFacePoseModel:
    """InsightFace 1k3d68 with its pose converted into the project's convention (:func:`from_insightface`)."""

    name = POSE_1K3D68

    def __init__(self, model: InsightFacePose68) -> None:
        """Args: model: the loaded 1k3d68 wrapper (:func:`frontalize.faces.registry.build_pose_estimator`)."""
        self.model = model

    @property
    def fingerprint(self) -> str:
        """The model's fingerprint plus the convention (cache entries of the unconverted pose never match)."""
        return f"{self.model.fingerprint}|project-convention"

    def pose(self, image: np.ndarray, face: Face) -> Pose:
        """(pitch, yaw, roll), project convention."""
        return from_insightface(*self.model.pose(image, face))


class Landmarks68PoseModel:
    """The 68-point estimator: dlib's landmarks on the detector's face, then the 3D mean-shape fit."""

    name = POSE_LANDMARKS68

    def __init__(self, estimator: HeadPoseEstimator) -> None:
        """Args: estimator: :func:`frontalize.faces.registry.build_headpose68`."""
        self.estimator = estimator

    @property
    def fingerprint(self) -> str:
        """Landmarker model bytes, box rule and fit limits."""
        return str(self.estimator.fingerprint)

    def pose(self, image: np.ndarray, face: Face) -> Pose:
        """(pitch, yaw, roll), project convention.

        Raises:
            LandmarkFitError: the landmarks cannot be fitted (or dlib sees no face where they are).
        """
        angles = self.estimator.estimate(image, face)
        return float(angles["pitch"]), float(angles["yaw"]), float(angles["roll"])


def landmarks68_installed() -> bool:
    """True when the packages of the 68-point estimator (the ``offline`` extra: dlib, face-recognition-models) are
    importable (the predictor file itself is verified separately)."""
    return all(importlib.util.find_spec(name) is not None for name in ("dlib", "face_recognition_models"))


def digest_root(weights_root: str | os.PathLike[str]) -> str | os.PathLike[str] | None:
    """Where the packaged predictor's checksum is remembered: the weights root when it exists (an offline run must
    not create ``./pretrained_weights`` just for that), else this process only."""
    return weights_root if os.path.isdir(weights_root) else None


def build_pose_model(name: str, *, weights_root: str | os.PathLike[str], device: str = "cpu") -> PoseModel:
    """Build pose model ``name`` (:data:`POSE_MODELS`).

    Raises:
        ConfigError: unknown name, or the offline extra is missing for ``landmarks68`` (names the install command).
        WeightsMissingError: the model file is missing or corrupt.
    """
    from frontalize.errors import ConfigError
    from frontalize.faces import registry

    if name == POSE_1K3D68:
        return InsightFacePoseModel(registry.build_pose_estimator(weights_root=weights_root, device=device))
    if name == POSE_LANDMARKS68:
        return Landmarks68PoseModel(registry.build_headpose68(weights_root=digest_root(weights_root)))
    raise ConfigError(f"unknown pose model {name!r} (choices: {', '.join(POSE_MODELS)})")


def is_unfit(pose: tuple[float, ...] | None) -> bool:
    """True for the stored pose of a face whose landmarks could not be fitted (all NaN)."""
    return pose is not None and all(not math.isfinite(float(v)) for v in pose)


@dataclass(frozen=True)
class ImagePose:
    """The pose of one image as the evaluator uses it (pose bins, GT choice, per-image columns).

    Attributes:
        pitch, yaw, roll: degrees (project convention), None when unknown — never 0 for a missing value.
        source: ``annotation``, ``rendered``, the model's name (``1k3d68``, ``landmarks68``) or ``keypoints``;
            None when there was nothing to estimate from (no face).
        status: ``known`` (annotation / rendered), ``estimated``, ``unfit`` (the model could not fit the face's
            landmarks) or ``no_face``.
    """

    pitch: float | None
    yaw: float | None
    roll: float | None
    source: str | None
    status: PoseStatus

    @property
    def pitch_or_nan(self) -> float:
        """Pitch, NaN when unknown (for the numpy statistics)."""
        return math.nan if self.pitch is None else self.pitch

    @property
    def yaw_or_nan(self) -> float:
        """Yaw, NaN when unknown."""
        return math.nan if self.yaw is None else self.yaw


def _finite(value: float | None) -> float | None:
    return float(value) if value is not None and math.isfinite(float(value)) else None


def image_pose(known: HeadPose | None, detection: Detection | None, model: str | None) -> ImagePose:
    """Pose of an image: its known pose wins; else the pose model's estimate on the detected face (none when the
    model could not fit it); else, when no model ran, the 5-keypoint proxy; else nothing (no face).

    Args:
        known: annotated or rendered pose of the image, or None.
        detection: the image's detection under the detector in question.
        model: name of the pose model of the detection pass (None: keypoint proxy).
    """
    if known is not None:
        return ImagePose(_finite(known.pitch), _finite(known.yaw), _finite(known.roll), known.source, "known")
    if detection is None or not detection.found or detection.kps is None:
        return ImagePose(None, None, None, None, "no_face")
    if detection.pose is not None:
        source = model or "estimator"
        if is_unfit(detection.pose):
            return ImagePose(None, None, None, source, "unfit")
        pitch, yaw, roll = (_finite(v) for v in detection.pose)
        return ImagePose(pitch, yaw, roll, source, "estimated")
    pitch, yaw, roll = (_finite(v) for v in keypoint_pose(detection.kps))
    return ImagePose(pitch, yaw, roll, POSE_KEYPOINTS, "estimated")
