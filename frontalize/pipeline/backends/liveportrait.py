"""``liveportrait`` frontalizer: the LivePortrait engine re-poses each crop (frontal, partial α or explicit pose).

Source pose comes from the engine's own motion extractor (no extra pass); the output pose is M run again on the
frontalized crop (the residual), unless ``frontalizer.pose_estimation`` is ``never``. With ``crop.upright`` the
target roll compensates the crop's in-plane rotation so the pasted-back head is upright in the source image.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch

from frontalize.config.inference import FrontalizerConfig
from frontalize.liveportrait.crop import NETWORK_SIZE, halve_u8, images_to_tensor, network_input
from frontalize.liveportrait.frontalizer import LivePortraitFrontalizer, PoseTarget
from frontalize.liveportrait.loading import LP_WEIGHT_KEYS, load_official
from frontalize.liveportrait.pasteback import tensor_to_u8
from frontalize.pipeline.backends.base import BackendContext, BackendSpec, FaceInput, FrontalizedFace
from frontalize.pipeline.pose import poses_from_angles

logger = logging.getLogger(__name__)


def pose_target(config: FrontalizerConfig) -> PoseTarget:
    """The engine's pose target for a frontalizer config."""
    return PoseTarget(mode=config.target, alpha=config.alpha, pitch=config.pitch, yaw=config.yaw, roll=config.roll,
                      expression=config.expression, stitching=config.stitching)


class LivePortraitBackend:
    """Batched LivePortrait frontalization of 512 crops (256 network input, 512 output)."""

    name = "liveportrait"

    def __init__(self, engine: LivePortraitFrontalizer, target: PoseTarget, *, upright: bool = True,
                 measure_output_pose: bool = True) -> None:
        """Args:
        engine: the loaded LivePortrait frontalizer.
        target: pose target of every face.
        upright: add each crop's roll offset to the target roll.
        measure_output_pose: run M on the outputs for the residual pose.
        """
        self.engine = engine
        self.target = target
        self.upright = upright
        self.measure_output_pose = measure_output_pose

    def frontalize(self, faces: Sequence[FaceInput]) -> list[FrontalizedFace]:
        """Frontalize a batch; one result per face with source and (optionally) output pose."""
        if not faces:
            return []
        device = self.engine.device
        batch = images_to_tensor([network_input(face.crop) for face in faces], device=device)
        offsets = [face.roll_offset for face in faces] if self.upright else None
        out = self.engine.frontalize(batch, self.target, roll_offset=offsets)
        u8 = tensor_to_u8(out["image"])  # on the device; one host copy per batch below
        images = u8.permute(0, 2, 3, 1).contiguous().cpu().numpy()
        source_poses = poses_from_angles(out["pitch"], out["yaw"], out["roll"])
        output_poses: list[dict[str, float] | None] = [None] * len(faces)
        if self.measure_output_pose:
            output_poses = list(poses_from_angles(*self.engine.estimate_pose(self._pose_input(u8, images))))
        return [FrontalizedFace(image=images[i], source_pose=source_poses[i], output_pose=output_poses[i])
                for i in range(len(faces))]


    def _pose_input(self, u8: torch.Tensor, images: np.ndarray) -> torch.Tensor:
        """M's input for the residual pose: the saved uint8 outputs at the network size, on the engine's device.

        A 512² output is halved on the device (bit-identical to the host INTER_AREA path, no second upload);
        other sizes go through the host resize.
        """
        if u8.shape[-2:] == (2 * NETWORK_SIZE, 2 * NETWORK_SIZE):
            return halve_u8(u8)
        return images_to_tensor([network_input(image) for image in images], device=self.engine.device)


def _weight_keys(config: FrontalizerConfig) -> tuple[str, ...]:
    del config  # every target needs the same five files
    return tuple(LP_WEIGHT_KEYS)


def _build(context: BackendContext) -> LivePortraitBackend:
    networks = load_official(context.weights_root, device=context.device, allow_unverified=context.allow_unverified)
    engine = LivePortraitFrontalizer(networks, device=context.device, precision=context.config.precision,
                                     compile=context.config.compile)
    return LivePortraitBackend(engine, pose_target(context.config), upright=context.upright,
                               measure_output_pose=context.measure_poses)


SPEC = BackendSpec(weight_keys=_weight_keys, build=_build, uses_pose_estimator=False)
