"""LivePortrait pose geometry: head-pose bins, rotations, implicit keypoints, stitching and retargeting.

Pure, batched torch functions (device and dtype follow the inputs; nothing here owns a model). The notation follows
the LivePortrait paper (Guo et al. 2024, Eq. 2): for a face with canonical keypoints ``x_c`` (B×K×3), head rotation
``R`` (B×3×3), expression deformation ``δ`` (B×K×3), scale ``s`` (B×1) and translation ``t`` (B×3), the implicit
keypoints are

    x = s · (x_c · R + δ) + (t_x, t_y, 0)

with keypoints as *row* vectors (right-multiplied by ``R``), x right, y down, z into the screen, in the warping
volume's normalised [−1, 1] coordinates. Only t_x and t_y are ever added (the official pipeline drops t_z).

Angles are degrees everywhere; pitch, yaw, roll are 1-D tensors of shape B (B×1 is accepted and flattened).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "BIN_OFFSET_DEG",
    "BIN_WIDTH_DEG",
    "EXPRESSION_COMPONENTS",
    "MotionInfo",
    "apply_retarget_delta",
    "apply_stitching",
    "expression_mask",
    "eye_open_ratios",
    "eye_retarget_input",
    "headpose_to_degrees",
    "lip_open_ratio",
    "lip_retarget_input",
    "neutralize_expression",
    "parse_motion",
    "rotation_matrix",
    "stitching_input",
    "target_angles",
    "transform_keypoints",
]

BIN_WIDTH_DEG = 3.0
"""Width of one head-pose bin in degrees."""
BIN_OFFSET_DEG = 97.5
"""Angle of bin 0 in degrees is −BIN_OFFSET_DEG (66 bins cover −97.5…+97.5)."""

EXPRESSION_COMPONENTS: dict[int, tuple[int, ...]] = {
    **{k: (0, 1, 2) for k in (1, 2, 6, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20)},
    3: (1,),
    4: (1,),
    5: (2,),
    8: (2,),
    9: (1, 2),
}
"""Keypoint index → axes (0 = x, 1 = y, 2 = z) of δ that carry facial expression, for K = 21.

This is the set of components the official LivePortrait pipeline transfers from a driving face in its absolute
driving mode (everything else of δ stays the source's): eyebrows, eyes, eyelids, mouth and lips fully, plus the
vertical part of two cheek points and single axes of three more. The remaining components encode the subject's own
face shape and are never touched by :func:`neutralize_expression`.
"""


@dataclass(frozen=True)
class MotionInfo:
    """Post-processed motion-extractor output for a batch of B faces.

    Attributes:
        pitch: B, degrees.
        yaw: B, degrees.
        roll: B, degrees.
        translation: t, B×3 (only t_x, t_y are used).
        expression: δ, B×K×3.
        scale: s, B×1.
        canonical: x_c, canonical keypoints B×K×3.
    """

    pitch: Tensor
    yaw: Tensor
    roll: Tensor
    translation: Tensor
    expression: Tensor
    scale: Tensor
    canonical: Tensor

    @property
    def batch_size(self) -> int:
        """Number of faces B."""
        return int(self.canonical.shape[0])


def headpose_to_degrees(logits: Tensor) -> Tensor:
    """Head-pose bin logits to degrees: softmax expectation of the bin index, ``3·E[idx] − 97.5``.

    Args:
        logits: B×N raw bin logits of one angle (N = 66 for the released motion extractor).

    Returns:
        B angles in degrees.
    """
    probs = F.softmax(logits, dim=1)
    index = torch.arange(logits.shape[1], dtype=probs.dtype, device=probs.device)
    return torch.sum(probs * index, dim=1) * BIN_WIDTH_DEG - BIN_OFFSET_DEG


def _flat_angle(angle: Tensor) -> Tensor:
    """B or B×1 → B."""
    return angle.reshape(angle.shape[0])


def rotation_matrix(pitch: Tensor, yaw: Tensor, roll: Tensor) -> Tensor:
    """Euler angles to the row-vector rotation ``R = (R_z(roll) · R_y(yaw) · R_x(pitch))ᵀ``.

    Keypoints are rotated as ``p' = p · R``, i.e. in column form ``p' = R_z R_y R_x p`` (pitch first, then yaw,
    then roll). With y pointing down, a positive roll turns the x axis towards +y (clockwise on screen).

    Args:
        pitch: B (or B×1) degrees, rotation about x.
        yaw: B (or B×1) degrees, rotation about y.
        roll: B (or B×1) degrees, rotation about z.

    Returns:
        B×3×3 rotation matrices; ``rotation_matrix(0, 0, 0)`` is exactly the identity.
    """
    x, y, z = (_flat_angle(a) / 180 * math.pi for a in (pitch, yaw, roll))
    one, zero = torch.ones_like(x), torch.zeros_like(x)
    rot_x = torch.stack([one, zero, zero, zero, x.cos(), -x.sin(), zero, x.sin(), x.cos()], dim=1)
    rot_y = torch.stack([y.cos(), zero, y.sin(), zero, one, zero, -y.sin(), zero, y.cos()], dim=1)
    rot_z = torch.stack([z.cos(), -z.sin(), zero, z.sin(), z.cos(), zero, zero, zero, one], dim=1)
    rot = rot_z.view(-1, 3, 3) @ rot_y.view(-1, 3, 3) @ rot_x.view(-1, 3, 3)
    return rot.transpose(1, 2)


def transform_keypoints(canonical: Tensor, rotation: Tensor, expression: Tensor, scale: Tensor,
                        translation: Tensor) -> Tensor:
    """Implicit keypoints, paper Eq. 2: ``x = s · (x_c · R + δ) + (t_x, t_y, 0)``.

    δ is added after the rotation (it lives in the camera-aligned frame); t_z is never added.

    Args:
        canonical: x_c, B×K×3.
        rotation: R, B×3×3 (row-vector convention, see :func:`rotation_matrix`).
        expression: δ, B×K×3.
        scale: s, B×1 (or B).
        translation: t, B×3.

    Returns:
        B×K×3 keypoints.
    """
    x = (canonical @ rotation + expression) * scale.reshape(-1, 1, 1)
    shift = F.pad(translation[:, :2], (0, 1))  # (t_x, t_y, 0): t_z is dropped
    return x + shift[:, None, :]


def parse_motion(raw: Mapping[str, Tensor]) -> MotionInfo:
    """Motion-extractor raw heads to :class:`MotionInfo` (angles in degrees, keypoints B×K×3).

    Args:
        raw: dict with ``pitch``, ``yaw``, ``roll`` (B×66 logits), ``t`` (B×3), ``exp`` (B×3K), ``scale`` (B×1),
            ``kp`` (B×3K), as returned by the motion extractor M.

    Returns:
        The parsed motion of the B faces (all float32 views/conversions of the inputs).
    """
    batch = raw["kp"].shape[0]
    return MotionInfo(
        pitch=headpose_to_degrees(raw["pitch"]),
        yaw=headpose_to_degrees(raw["yaw"]),
        roll=headpose_to_degrees(raw["roll"]),
        translation=raw["t"],
        expression=raw["exp"].reshape(batch, -1, 3),
        scale=raw["scale"].reshape(batch, 1),
        canonical=raw["kp"].reshape(batch, -1, 3),
    )


def target_angles(motion: MotionInfo, mode: str, *, alpha: float = 1.0, pitch: float = 0.0, yaw: float = 0.0,
                  roll: float = 0.0, roll_offset: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Target head pose (degrees, shape B each) of a pose edit.

    * ``frontal``: (0, 0, 0) — the frontal edit R = I of the LivePortrait recipe.
    * ``partial``: the source angles scaled by (1 − α): α = 1 is frontal, α = 0 keeps the source pose.
    * ``pose``: the explicit target (pitch, yaw, roll).

    ``roll_offset`` (B degrees) re-expresses the roll in another in-plane frame, e.g. the upright image frame of a
    rotated crop (:func:`frontalize.liveportrait.crop.upright_roll_offset`): a target roll r in that frame is
    ``r + roll_offset`` in the crop frame. In ``partial`` mode the offset is blended like the angles
    (``(1 − α)·roll_s + α·offset``), so α = 0 still leaves the source untouched.

    Args:
        motion: source motion (B faces).
        mode: ``frontal``, ``partial`` or ``pose``.
        alpha: frontalization strength for ``partial``, in [0, 1].
        pitch: target pitch for ``pose``.
        yaw: target yaw for ``pose``.
        roll: target roll for ``pose``.
        roll_offset: optional B tensor of degrees added to the target roll (see above).

    Returns:
        (pitch, yaw, roll), each a B tensor in degrees.

    Raises:
        ValueError: unknown mode.
    """
    zero = torch.zeros_like(motion.pitch)
    offset = zero if roll_offset is None else roll_offset.to(zero).reshape(zero.shape)
    if mode == "frontal":
        return zero, zero, offset
    if mode == "partial":
        keep = 1.0 - alpha
        return motion.pitch * keep, motion.yaw * keep, motion.roll * keep + offset * alpha
    if mode == "pose":
        return zero + pitch, zero + yaw, zero + roll + offset
    raise ValueError(f"unknown pose-target mode {mode!r}; expected frontal, partial or pose")


@lru_cache(maxsize=16)
def _expression_mask_cached(num_kp: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    # Built on the CPU and copied once per (device, dtype): indexing a GPU tensor with Python lists would copy
    # the index to the device on every call.
    if num_kp != 21:
        raise ValueError(f"expression neutralization is defined for 21 keypoints, got {num_kp}")
    mask = torch.zeros(num_kp, 3, dtype=dtype)
    for kp, axes in EXPRESSION_COMPONENTS.items():
        mask[kp, list(axes)] = 1
    return mask.to(device)


def expression_mask(num_kp: int, *, device: torch.device | str | None = None,
                    dtype: torch.dtype = torch.float32) -> Tensor:
    """K×3 mask with 1 on the expression-driven components of δ (:data:`EXPRESSION_COMPONENTS`), 0 elsewhere.

    Args:
        num_kp: K; must be 21 (the released model's keypoint count).
        device: device of the mask.
        dtype: dtype of the mask.

    Raises:
        ValueError: K is not 21 (the component table is defined for the released keypoints only).
    """
    return _expression_mask_cached(num_kp, torch.device(device or "cpu"), dtype).clone()


def neutralize_expression(expression: Tensor) -> Tensor:
    """Neutral expression: δ set to 0 on its expression-driven components, the rest kept.

    Definition used by the toolkit: "neutral" is the canonical expression of the implicit-keypoint model, i.e.
    δ = 0, applied only to the components LivePortrait itself treats as expression (those it transfers from a
    driver, :data:`EXPRESSION_COMPONENTS`), so eyes, brows and mouth go to the canonical state while the
    subject's face shape, encoded in the other components, is preserved. (LivePortrait's own lip normalisation
    needs its ``lip_array`` template and lip-ratio landmarks, which are not available here.)

    Args:
        expression: δ, B×21×3.

    Returns:
        B×21×3 neutralized δ.
    """
    mask = _expression_mask_cached(expression.shape[1], expression.device, expression.dtype)
    return expression * (1 - mask)


def stitching_input(x_s: Tensor, x_d: Tensor) -> Tensor:
    """Input of the stitching MLP S: ``concat(flat(x_s), flat(x_d))``.

    Args:
        x_s: source keypoints B×K×3.
        x_d: driving keypoints B×K×3.

    Returns:
        B×6K (126 for K = 21).
    """
    batch = x_s.shape[0]
    return torch.cat([x_s.reshape(batch, -1), x_d.reshape(batch, -1)], dim=1)


def apply_stitching(x_d: Tensor, delta: Tensor) -> Tensor:
    """Apply the stitching output: per-keypoint Δ, then one shared (Δt_x, Δt_y) for every keypoint.

    Args:
        x_d: driving keypoints B×K×3.
        delta: S output B×(3K+2): first 3K values Δ (K×3), last 2 (Δt_x, Δt_y).

    Returns:
        B×K×3 stitched keypoints.
    """
    batch, num_kp, _ = x_d.shape
    moved = x_d + delta[:, : 3 * num_kp].reshape(batch, num_kp, 3)
    shift = F.pad(delta[:, 3 * num_kp : 3 * num_kp + 2], (0, 1))  # (Δt_x, Δt_y, 0)
    return moved + shift[:, None, :]


def lip_retarget_input(x_s: Tensor, lip_ratio_source: Tensor, lip_ratio_target: Tensor) -> Tensor:
    """Input of the lip retargeting MLP R_lip: ``concat(flat(x_s), c_lip_source, c_lip_target)``.

    Args:
        x_s: source keypoints B×K×3.
        lip_ratio_source: B (or B×1) lip-open ratio of the source (:func:`lip_open_ratio`).
        lip_ratio_target: B (or B×1) wanted lip-open ratio (0 closes the mouth).

    Returns:
        B×(3K+2) (65 for K = 21).
    """
    batch = x_s.shape[0]
    ratios = [r.reshape(batch, 1).to(x_s) for r in (lip_ratio_source, lip_ratio_target)]
    return torch.cat([x_s.reshape(batch, -1), *ratios], dim=1)


def eye_retarget_input(x_s: Tensor, eye_ratios_source: Tensor, eye_ratio_target: Tensor) -> Tensor:
    """Input of the eye retargeting MLP R_eye: ``concat(flat(x_s), c_eye_left, c_eye_right, c_eye_target)``.

    Args:
        x_s: source keypoints B×K×3.
        eye_ratios_source: B×2 (left, right) eye-open ratios of the source (:func:`eye_open_ratios`).
        eye_ratio_target: B (or B×1) wanted eye-open ratio.

    Returns:
        B×(3K+3) (66 for K = 21).
    """
    batch = x_s.shape[0]
    return torch.cat([x_s.reshape(batch, -1), eye_ratios_source.reshape(batch, 2).to(x_s),
                      eye_ratio_target.reshape(batch, 1).to(x_s)], dim=1)


def apply_retarget_delta(x_d: Tensor, delta: Tensor) -> Tensor:
    """Add a retargeting MLP output (B×3K) to the driving keypoints B×K×3."""
    return x_d + delta.reshape(x_d.shape)


def _distance_ratio(points: Tensor, a: int, b: int, c: int, d: int, eps: float = 1e-6) -> Tensor:
    """‖p_a − p_b‖ / (‖p_c − p_d‖ + eps) for B×N×2 points → B."""
    top = torch.linalg.vector_norm(points[:, a] - points[:, b], dim=-1)
    bottom = torch.linalg.vector_norm(points[:, c] - points[:, d], dim=-1)
    return top / (bottom + eps)


def eye_open_ratios(landmarks203: Tensor) -> Tensor:
    """Eye-open ratios from LivePortrait's 203-point landmarks: ``‖p6−p18‖/‖p0−p12‖``, ``‖p30−p42‖/‖p24−p36‖``.

    Args:
        landmarks203: B×203×2 landmarks (any pixel frame; the ratios are scale free).

    Returns:
        B×2 (left, right) ratios.
    """
    return torch.stack([_distance_ratio(landmarks203, 6, 18, 0, 12),
                        _distance_ratio(landmarks203, 30, 42, 24, 36)], dim=1)


def lip_open_ratio(landmarks203: Tensor) -> Tensor:
    """Lip-open ratio from LivePortrait's 203-point landmarks: ``‖p90−p102‖/‖p48−p66‖``.

    Args:
        landmarks203: B×203×2 landmarks.

    Returns:
        B ratios.
    """
    return _distance_ratio(landmarks203, 90, 102, 48, 66)
