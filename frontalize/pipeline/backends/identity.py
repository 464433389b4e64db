"""``identity`` frontalizer: crop/align only — the no-frontalization baseline.

The output is the 512×512 crop itself, so the whole pipeline (detection, crop, paste-back, stages, manifest,
resume) runs without LivePortrait weights. With a pose source (``frontalizer.pose_source``: the motion extractor
when its weight is present, else the offline 68-point estimator) the source pose is measured and the output pose
equals it (the image is unchanged); without one both are null. It has no guard candidates.
"""

from __future__ import annotations

from collections.abc import Sequence

from frontalize.config.inference import FrontalizerConfig
from frontalize.pipeline.backends.base import (
    BackendContext,
    BackendSpec,
    FaceInput,
    FaceOutcome,
    FrontalizedFace,
    PoseEstimator,
)


class IdentityFrontalizer:
    """Returns each crop unchanged (optionally with its measured pose)."""

    name = "identity"

    def __init__(self, pose_estimator: PoseEstimator | None = None) -> None:
        """Args: pose_estimator: measures the source pose; None leaves poses null."""
        self.pose_estimator = pose_estimator

    def frontalize(self, faces: Sequence[FaceInput]) -> list[FaceOutcome]:
        """One result per face: the crop, and its pose as both source and output pose."""
        poses = (self.pose_estimator.estimate([face.crop for face in faces], [face.face for face in faces])
                 if self.pose_estimator else [None] * len(faces))
        return [FrontalizedFace(image=face.crop, source_pose=pose, output_pose=pose)
                for face, pose in zip(faces, poses)]


def _weight_keys(config: FrontalizerConfig) -> tuple[str, ...]:
    del config  # the identity backend loads nothing
    return ()


def _build(context: BackendContext) -> IdentityFrontalizer:
    return IdentityFrontalizer(context.pose_estimator)


SPEC = BackendSpec(weight_keys=_weight_keys, build=_build, native_pose_source=None)
