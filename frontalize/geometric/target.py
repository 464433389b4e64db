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

from frontalize.config.targets import TargetPose
from frontalize.errors import ConfigError

__all__ = ["MeshTarget", "target_angles"]

Angles = tuple[float, float, float]


@dataclass(frozen=True)
class MeshTarget(TargetPose):
    """One render target of :class:`frontalize.geometric.GeometricFrontalizer`: the target pose
    (:class:`~frontalize.config.targets.TargetPose`: ``mode``, ``alpha``, ``pitch``, ``yaw``, ``roll``) and the
    symmetric fill.

    Attributes:
        symmetry: fill self-occluded regions from the symmetric side (soft blend).
    """

    symmetry: bool = field(default=True, metadata={"help": "fill self-occluded regions from the symmetric side"})

    def __post_init__(self) -> None:
        super().__post_init__()
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
