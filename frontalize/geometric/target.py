"""Render targets of the geometric engine: the same meaning as LivePortrait's ``PoseTarget``, without torch.

* ``frontal``: pitch = yaw = roll = 0;
* ``partial``: the source angles × (1 − α) (α = 1 frontal, α = 0 unchanged);
* ``pose``: explicit (pitch, yaw, roll);

plus the crop's roll offset for an upright result after paste-back, applied exactly as
:func:`frontalize.liveportrait.geometry.target_angles` applies it (added to the target roll; blended by α in
``partial`` mode), and ``symmetry`` (soft symmetric fill on or off). Angles are degrees, project convention.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from frontalize.errors import ConfigError

__all__ = ["MeshTarget", "target_angles"]

Angles = tuple[float, float, float]


@dataclass(frozen=True)
class MeshTarget:
    """One render target of :class:`frontalize.geometric.GeometricFrontalizer`.

    Attributes:
        mode: ``frontal``, ``partial`` or ``pose``.
        alpha: strength of ``partial`` in [0, 1].
        pitch: target pitch of ``pose``, degrees.
        yaw: target yaw of ``pose``, degrees.
        roll: target roll of ``pose``, degrees.
        symmetry: fill self-occluded regions from the symmetric side (soft blend).
    """

    mode: Literal["frontal", "partial", "pose"] = field(
        default="frontal", metadata={"help": "frontal: pitch=yaw=roll=0; partial: angles*(1-alpha); pose: explicit"})
    alpha: float = field(default=1.0, metadata={"help": "strength of the partial edit", "min": 0.0, "max": 1.0})
    pitch: float = field(default=0.0, metadata={"help": "target pitch (mode pose), degrees", "min": -90.0,
                                                "max": 90.0})
    yaw: float = field(default=0.0, metadata={"help": "target yaw (mode pose), degrees", "min": -90.0, "max": 90.0})
    roll: float = field(default=0.0, metadata={"help": "target roll (mode pose), degrees", "min": -180.0,
                                               "max": 180.0})
    symmetry: bool = field(default=True, metadata={"help": "fill self-occluded regions from the symmetric side"})

    def __post_init__(self) -> None:
        if self.mode not in ("frontal", "partial", "pose"):
            raise ConfigError(f"MeshTarget.mode: expected frontal, partial or pose, got {self.mode!r}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"MeshTarget.alpha: expected a value in [0, 1], got {self.alpha}")
        if not (abs(self.pitch) <= 90.0 and abs(self.yaw) <= 90.0 and abs(self.roll) <= 180.0):
            raise ConfigError(f"MeshTarget: pose angles out of range (pitch, yaw in [-90, 90], roll in [-180, 180]): "
                              f"{(self.pitch, self.yaw, self.roll)}")


def target_angles(source: Angles, target: MeshTarget, roll_offset: float = 0.0) -> Angles:
    """Target (pitch, yaw, roll) in degrees for a source pose, as LivePortrait's ``geometry.target_angles``.

    Args:
        source: source (pitch, yaw, roll), degrees.
        target: the render target.
        roll_offset: degrees added to the target roll (the crop's upright offset); blended by α in ``partial``.

    Returns:
        (pitch, yaw, roll) in degrees.
    """
    pitch, yaw, roll = (float(v) for v in source)
    if target.mode == "frontal":
        return 0.0, 0.0, float(roll_offset)
    if target.mode == "partial":
        keep = 1.0 - target.alpha
        return pitch * keep, yaw * keep, roll * keep + roll_offset * target.alpha
    return float(target.pitch), float(target.yaw), float(target.roll) + roll_offset
