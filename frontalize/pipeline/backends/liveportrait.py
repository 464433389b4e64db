"""``liveportrait`` frontalizer: the LivePortrait engine re-poses each crop (frontal, partial α or explicit pose).

Poses (``frontalizer.pose_source``): with ``motion_extractor`` (what ``auto`` picks) the source pose comes from the
engine's own motion extractor (no extra pass) and the output pose is M run again on the frontalized crop (the
residual); with ``landmarks68`` both are measured by the offline 68-point estimator (on the output crop with the
source face's box as the landmarker's start, refined from its own first prediction); without a pose source both
are null. With ``crop.upright`` the target roll compensates the crop's in-plane rotation so the pasted-back head is
upright in the source image.

Identity guard: :class:`LivePortraitCandidates` extracts F and M once per face and renders the K targets
(α × expression × stitching) as one (B·K) batch through W and G; residual poses by M.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Literal, Protocol

import numpy as np
import torch

from frontalize.config.inference import FrontalizerConfig, GuardConfig
from frontalize.errors import InputError
from frontalize.liveportrait.crop import NETWORK_SIZE, halve_u8, images_to_tensor, network_input
from frontalize.liveportrait.frontalizer import LivePortraitFrontalizer, PoseTarget, SourceState
from frontalize.liveportrait.loading import LP_WEIGHT_KEYS, load_official
from frontalize.liveportrait.pasteback import tensor_to_images, tensor_to_u8
from frontalize.pipeline.backends.base import (
    BackendContext,
    BackendSpec,
    Candidate,
    CandidateRenders,
    FaceInput,
    FaceOutcome,
    FrontalizedFace,
    Pose,
    PoseEstimator,
)
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
                 measure_output_pose: bool = True, pose_estimator: PoseEstimator | None = None) -> None:
        """Args:
        engine: the loaded LivePortrait frontalizer.
        target: pose target of every face.
        upright: add each crop's roll offset to the target roll.
        measure_output_pose: measure poses (source from M on the way; output by M, or by ``pose_estimator``);
            False leaves both null.
        pose_estimator: another pose source measuring source and output crops instead of M (e.g. landmarks68).
        """
        self.engine = engine
        self.target = target
        self.upright = upright
        self.measure_output_pose = measure_output_pose
        self.pose_estimator = pose_estimator

    def frontalize(self, faces: Sequence[FaceInput]) -> list[FaceOutcome]:
        """Frontalize a batch; one result per face with source and (optionally) output pose."""
        if not faces:
            return []
        device = self.engine.device
        batch = images_to_tensor([network_input(face.crop) for face in faces], device=device)
        offsets = [face.roll_offset for face in faces] if self.upright else None
        out = self.engine.frontalize(batch, self.target, roll_offset=offsets)
        u8 = tensor_to_u8(out["image"])  # on the device; one host copy per batch below
        images = u8.permute(0, 2, 3, 1).contiguous().cpu().numpy()
        source_poses: list[Pose | None] = [None] * len(faces)
        output_poses: list[Pose | None] = [None] * len(faces)
        if self.measure_output_pose and self.pose_estimator is not None:
            boxes = [face.face for face in faces]
            source_poses = self.pose_estimator.estimate([face.crop for face in faces], boxes)
            output_poses = self.pose_estimator.estimate(list(images), boxes)
        elif self.measure_output_pose:
            source_poses = list(poses_from_angles(out["pitch"], out["yaw"], out["roll"]))
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


# ---- identity-guard candidates -------------------------------------------------------------------------------------
class GuardEngine(Protocol):
    """The part of :class:`~frontalize.liveportrait.LivePortraitFrontalizer` the guard's candidates use."""

    device: torch.device

    def extract(self, x: torch.Tensor) -> SourceState:
        """F and M once on B×3×256×256 crops."""
        ...

    def render(self, state: SourceState, targets: Sequence[PoseTarget] | None = None, *,
               roll_offset: Sequence[float] | None = None, chunk_size: int | None = None) -> dict[str, torch.Tensor]:
        """``image`` B×K×3×512×512 for K targets."""
        ...

    def estimate_pose(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(pitch, yaw, roll) B-tensors of degrees."""
        ...


def candidate_name(alpha: float, expression: str, stitching: bool) -> str:
    """Label of a LivePortrait candidate: ``a<alpha>-<keep|neutral>-<stitch|nostitch>``."""
    return f"a{alpha:.2f}-{'keep' if expression == 'keep' else 'neutral'}-{'stitch' if stitching else 'nostitch'}"


def candidate_target(alpha: float, expression: Literal["keep", "neutralize"], stitching: bool) -> PoseTarget:
    """The engine's target of a candidate (α = 1 uses the exact frontal recipe of the unguarded run)."""
    mode: Literal["frontal", "partial"] = "frontal" if alpha >= 1.0 else "partial"
    return PoseTarget(mode=mode, alpha=alpha, expression=expression, stitching=stitching)


def liveportrait_candidates(config: GuardConfig) -> list[Candidate]:
    """The rendered candidates of ``config``: α outer, then expression, then stitching, each in config order."""
    combos = [(a, e, s) for a in config.alphas for e in config.expressions for s in config.stitching]
    return [Candidate(candidate_name(alpha, expression, stitching), alpha,
                      (("expression", expression), ("stitching", stitching)), source_index=index,
                      target=candidate_target(alpha, expression, stitching))
            for index, (alpha, expression, stitching) in enumerate(combos)]


class LivePortraitCandidates:
    """The guard's candidates with LivePortrait: F and M once per face, the K targets as one (B·K) W+G batch."""

    name = "liveportrait"

    def __init__(self, engine: GuardEngine, config: GuardConfig, *, upright: bool = True) -> None:
        """Args:
        engine: loaded LivePortrait frontalizer (or anything with its extract/render/estimate_pose).
        config: the guard section (alphas, expressions, stitching, render_chunk).
        upright: add each crop's roll offset to the target roll (``crop.upright``).
        """
        self.engine = engine
        self.upright = upright
        self.render_chunk = config.render_chunk
        self._candidates = liveportrait_candidates(config)

    @property
    def candidates(self) -> list[Candidate]:
        """α × expression × stitching, in choice order."""
        return list(self._candidates)

    def render_candidates(self, faces: Sequence[FaceInput]) -> CandidateRenders:
        """Every candidate of every face; source poses from M of the extraction."""
        batch = images_to_tensor([network_input(face.crop) for face in faces], device=self.engine.device)
        state = self.engine.extract(batch)
        offsets = [face.roll_offset for face in faces] if self.upright else None
        out = self.engine.render(state, [c.target for c in self._candidates], roll_offset=offsets,
                                 chunk_size=self.render_chunk)
        rendered = out["image"]
        flat = tensor_to_images(rendered.reshape(-1, *rendered.shape[2:]))
        count = len(self._candidates)
        images: list[list[np.ndarray] | InputError] = [[flat[b * count + k] for k in range(count)]
                                                       for b in range(len(faces))]
        source_poses: list[Pose | None] = list(poses_from_angles(state.motion.pitch, state.motion.yaw,
                                                                 state.motion.roll))
        return CandidateRenders(images=images, source_poses=source_poses)

    def residual_poses(self, renders: CandidateRenders,
                       images: Sequence[tuple[int, int, np.ndarray]]) -> list[Pose | None]:
        """Motion-extractor pose of every candidate crop (one batch, or chunks of ``guard.render_chunk``)."""
        del renders
        crops = [image for _, _, image in images]
        step = self.render_chunk or len(crops) or 1
        poses: list[Pose | None] = []
        for start in range(0, len(crops), step):
            chunk = images_to_tensor([network_input(image) for image in crops[start:start + step]],
                                     device=self.engine.device)
            poses.extend(poses_from_angles(*self.engine.estimate_pose(chunk)))
        return poses


# ---- building ------------------------------------------------------------------------------------------------------
def _weight_keys(config: FrontalizerConfig) -> tuple[str, ...]:
    del config  # every target needs the same five files
    return tuple(LP_WEIGHT_KEYS)


def _engine(context: BackendContext) -> LivePortraitFrontalizer:
    networks = load_official(context.weights_root, device=context.device, allow_unverified=context.allow_unverified)
    return LivePortraitFrontalizer(networks, device=context.device, precision=context.config.precision,
                                   compile=context.config.compile)


def _build(context: BackendContext) -> LivePortraitBackend:
    external = context.pose_estimator if context.pose_source == "landmarks68" else None
    return LivePortraitBackend(_engine(context), pose_target(context.config), upright=context.upright,
                               measure_output_pose=context.measure_poses, pose_estimator=external)


def _build_candidates(context: BackendContext) -> LivePortraitCandidates:
    front = context.config
    if (front.target, front.alpha, front.expression, front.stitching) != ("frontal", 1.0, "keep", True):
        logger.warning("identity guard: frontalizer.target/alpha/expression/stitching are ignored; the candidates "
                       "come from guard.alphas/expressions/stitching")
    networks = load_official(context.weights_root, device=context.device, allow_unverified=context.allow_unverified)
    engine = LivePortraitFrontalizer(networks, device=context.device, precision=front.precision)
    return LivePortraitCandidates(engine, context.guard, upright=context.upright)


SPEC = BackendSpec(weight_keys=_weight_keys, build=_build, native_pose_source="motion_extractor",
                   build_candidates=_build_candidates)
