"""Head pose of face crops from the LivePortrait motion extractor (M) alone.

Used with the ``identity`` backend (the ``liveportrait`` backend measures poses with its own M). The pose is
M's head-pose estimate in the crop frame, in degrees: ``source_pose`` on the input crop, ``output_pose`` on
the frontalized crop (the residual).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from frontalize.liveportrait.crop import images_to_tensor, network_input
from frontalize.liveportrait.geometry import parse_motion
from frontalize.liveportrait.loading import load_base_network
from frontalize.pipeline.records import Pose

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

    def __init__(self, module: nn.Module, device: str = "cpu") -> None:
        """Args: module: the motion extractor; device: torch device of ``module``."""
        self.module = module
        self.device = device

    @torch.inference_mode()
    def estimate(self, crops: Sequence[np.ndarray]) -> list[Pose]:
        """Poses of H×W×3 uint8 RGB crops (resized to 256 with INTER_AREA like the network input)."""
        if not crops:
            return []
        batch = images_to_tensor([network_input(crop) for crop in crops], device=self.device)
        motion = parse_motion(self.module(batch))
        return poses_from_angles(motion.pitch, motion.yaw, motion.roll)
