"""The target head pose of a frontalization edit, shared by both engines' render targets.

:class:`frontalize.liveportrait.frontalizer.PoseTarget` and :class:`frontalize.geometric.MeshTarget` add their own
switches (expression and stitching; symmetric fill) to these five fields, so the two engines read the same
``frontalizer.target`` / ``alpha`` / ``pitch`` / ``yaw`` / ``roll`` the same way. Torch-free: the geometric engine
imports it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from frontalize.errors import ConfigError

__all__ = ["TargetPose"]


@dataclass(frozen=True)
class TargetPose:
    """Where an edit turns the head.

    Attributes:
        mode: ``frontal`` (pitch = yaw = roll = 0), ``partial`` (source angles × (1 − alpha)) or ``pose``
            (explicit pitch/yaw/roll).
        alpha: frontalization strength of ``partial`` in [0, 1] (1 = frontal, 0 = unchanged).
        pitch: target pitch of ``pose``, degrees.
        yaw: target yaw of ``pose``, degrees.
        roll: target roll of ``pose``, degrees.
    """

    mode: Literal["frontal", "partial", "pose"] = field(
        default="frontal", metadata={"help": "frontal: pitch=yaw=roll=0; partial: angles*(1-alpha); pose: explicit"})
    alpha: float = field(default=1.0, metadata={"help": "strength of the partial edit", "min": 0.0, "max": 1.0})
    pitch: float = field(default=0.0, metadata={"help": "target pitch (mode pose), degrees", "min": -90.0,
                                                "max": 90.0})
    yaw: float = field(default=0.0, metadata={"help": "target yaw (mode pose), degrees", "min": -90.0, "max": 90.0})
    roll: float = field(default=0.0, metadata={"help": "target roll (mode pose), degrees", "min": -180.0,
                                               "max": 180.0})

    def __post_init__(self) -> None:
        name = type(self).__name__
        if self.mode not in ("frontal", "partial", "pose"):
            raise ConfigError(f"{name}.mode: expected frontal, partial or pose, got {self.mode!r}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"{name}.alpha: expected a value in [0, 1], got {self.alpha}")
