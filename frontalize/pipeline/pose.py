"""Pose sources of ``frontalizer.pose_source``: head pose of face crops, in the crop frame, in degrees.

* ``motion_extractor``: the LivePortrait motion extractor (M) alone (:class:`MotionPoseEstimator`; the
  ``liveportrait`` backend measures with its own M instead of loading a second one);
* ``landmarks68``: dlib's 68 landmarks placed on the face box + the weak-perspective fit of the 3D mean shape
  (:class:`Landmarks68PoseEstimator`, offline; the ``mesh`` backend measures with its own fit instead).

Both answer in the project convention (LivePortrait's): yaw > 0 = face turned towards image left, pitch > 0 =
looking down, roll > 0 = clockwise. ``source_pose`` is measured on the input crop, ``output_pose`` on the
frontalized crop (the residual); both in the crop frame (see README, "Poses").
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from frontalize.faces.headpose import FitLimits, HeadPoseEstimator, LandmarkFitError
from frontalize.faces.landmarks68 import BOX_CENTRE_Y, BOX_SIDE, MAX_UPRIGHT_DEG, MIN_FACE_SCORE
from frontalize.faces.types import Face
from frontalize.liveportrait.crop import images_to_tensor, network_input
from frontalize.liveportrait.geometry import parse_motion
from frontalize.liveportrait.loading import load_base_network
from frontalize.pipeline.records import Pose

LANDMARKS68_LIMITS = FitLimits()
"""Refusal thresholds of the 68-point pose source (|yaw| ≤ 75°: the estimator's own range)."""

logger = logging.getLogger(__name__)


def poses_from_angles(pitch: torch.Tensor, yaw: torch.Tensor, roll: torch.Tensor) -> list[Pose]:
    """B-tensors of degrees → one ``{"pitch", "yaw", "roll"}`` dict per face."""
    rows = torch.stack([pitch.reshape(-1), yaw.reshape(-1), roll.reshape(-1)], dim=1).float().cpu().tolist()
    return [{"pitch": p, "yaw": y, "roll": r} for p, y, r in rows]


def load_motion_extractor(path: Path, device: str) -> nn.Module:
    """Build M and load the official ``motion_extractor.pth`` (strict; keys carry the ``detector.`` prefix).

    Raises:
        WeightsMissingError: the file cannot be read or does not match the network.
    """
    return load_base_network("motion_extractor", path).to(device).eval()


class MotionPoseEstimator:
    """Pose of B crops with M (thread-safe for inference; runs on the pipeline's device)."""

    name = "motion_extractor"

    def __init__(self, module: nn.Module, device: str = "cpu") -> None:
        """Args: module: the motion extractor; device: torch device of ``module``."""
        self.module = module
        self.device = device

    @torch.inference_mode()
    def estimate(self, crops: Sequence[np.ndarray], faces: Sequence[Face | None] | None = None
                 ) -> list[Pose | None]:
        """Poses of H×W×3 uint8 RGB crops (resized to 256 with INTER_AREA like the network input); M reads the
        whole crop, so ``faces`` is not used."""
        del faces
        if not crops:
            return []
        batch = images_to_tensor([network_input(crop) for crop in crops], device=self.device)
        motion = parse_motion(self.module(batch))
        return list(poses_from_angles(motion.pitch, motion.yaw, motion.roll))


class Landmarks68PoseEstimator:
    """Pose of crops from dlib's 68 landmarks on the given face box + the 3D mean-shape fit (CPU, offline).

    A face whose landmarks cannot be fitted (no face where the box is, |yaw| > 75°, a fit that is not a head) gets
    None. Shareable by threads as far as its landmarker (dlib's calls take turns on the GIL).
    """

    name = "landmarks68"

    def __init__(self, estimator: HeadPoseEstimator) -> None:
        """Args: estimator: landmarker + fit (``frontalize.faces.registry.build_headpose68``)."""
        self.estimator = estimator

    def estimate(self, crops: Sequence[np.ndarray], faces: Sequence[Face | None] | None = None
                 ) -> list[Pose | None]:
        """Pose of the face of each crop (None where no face is given or its landmarks do not fit)."""
        faces = list(faces) if faces is not None else [None] * len(crops)
        return [self.estimate_one(crop, face) for crop, face in zip(crops, faces)]

    def estimate_one(self, crop: np.ndarray, face: Face | None) -> Pose | None:
        """Pose of ``face`` in the H×W×3 uint8 RGB ``crop``, or None."""
        if face is None:
            return None
        try:
            return self.estimator.estimate(crop, face)
        except LandmarkFitError as error:
            logger.debug("68-point pose not measured: %s", error)
            return None


def landmarks68_identity() -> str:
    """What makes a 68-point pose (beside the predictor file, whose sha256 the run hash holds): the box rule of
    the landmarker and the fit's limits. Part of the run hash, so a changed estimator is not resumed over."""
    return (f"landmarks68 box=({BOX_CENTRE_Y},{BOX_SIDE}) refine=True verify=True min_face_score={MIN_FACE_SCORE} "
            f"max_upright_deg={MAX_UPRIGHT_DEG} limits={LANDMARKS68_LIMITS}")
