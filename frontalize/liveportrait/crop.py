"""LivePortrait face crop: landmarks → similarity transform → 512×512 crop → 256×256 network input.

The crop follows the official LivePortrait ``crop_image`` geometry (reference §3): from the 106 InsightFace
landmarks, the face "down" axis runs from the midpoint of the two eye centres to the lip centre; the landmarks are
measured in that rotated frame, the square side is ``scale`` (2.3) times their larger extent, and the centre is
the extent box's centre shifted along the down axis by ``vy_ratio`` (−0.125) of the side, i.e. towards the forehead.
The similarity ``M_o2c`` scales by ``dsize/side``, rotates by −θ (θ = angle of the face's x axis, positive when it
turns towards +y, i.e. clockwise on screen) so the eye→lip axis becomes vertical, and maps the centre to the crop
centre. Matrices are 3×3 float32 with last row (0, 0, 1); images are H×W×3 uint8 RGB.

Upright option. A rotated crop shows the face upright, so the motion extractor sees roll ≈ 0 there, and the
frontal edit (roll 0 in the crop) is pasted back through ``M_c2o``, which re-applies the rotation θ: the final face
keeps the source's in-plane tilt. The network's roll uses the same on-screen sense as θ (positive roll turns the
keypoints' x axis towards +y, :func:`frontalize.liveportrait.geometry.rotation_matrix`, and the crop's x, y axes
map to the keypoint volume's x, y axes with positive scale), so a roll r in the crop appears as r + θ in the source
image. An upright result therefore needs the target roll −θ in the crop: :func:`upright_roll_offset`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch

__all__ = [
    "LEFT_EYE_106",
    "MOUTH_CORNERS_106",
    "RIGHT_EYE_106",
    "CropRect",
    "FaceCrop",
    "crop_face",
    "crop_rect_from_landmarks5",
    "crop_rect_from_landmarks106",
    "crop_transform",
    "halve_u8",
    "images_to_tensor",
    "invert_transform",
    "landmarks5_from_106",
    "network_input",
    "transform_points",
    "upright_roll_offset",
    "warp_to_crop",
]

CROP_SIZE = 512
"""Side of the LivePortrait crop in pixels (= the generator's output size)."""
NETWORK_SIZE = 256
"""Side of the network input in pixels."""

LEFT_EYE_106 = (33, 35, 40, 39)
"""InsightFace-106 indices whose mean is the image-left eye centre."""
RIGHT_EYE_106 = (87, 89, 94, 93)
"""InsightFace-106 indices whose mean is the image-right eye centre."""
MOUTH_CORNERS_106 = (52, 61)
"""InsightFace-106 indices of the image-left and image-right mouth corners (their mean is the lip centre)."""
NOSE_TIP_106 = 86
"""InsightFace-106 nose-tip index (only used to fill the 5-point layout; the crop does not use the nose)."""

# 5-point approximation constants, fitted on the seven 106-point sets of the LivePortrait goldens
# (geometry.npz: crop_pts106, one hand-fitted real face and six synthetic layouts with roll, yaw-like squash and
# jitter). Deriving the 5 points from each set (eye centres exactly as the crop does, mouth corners 52/61) and
# measuring the 106-point extent box in the crop's rotated frame gave, as medians over the sets:
#   vertical extent / eye-to-mouth distance        = 1.987  (range 1.966 … 2.027)
#   horizontal extent / inter-ocular distance       = 2.049  (range 2.020 … 2.148)
#   box-centre offset along the down axis / eye-to-mouth distance = 0.645 (range 0.627 … 0.648)
#   box-centre offset along the x axis / inter-ocular distance    = 0.000 (range −0.10 … +0.09)
# The side is `scale` × the larger of the two predicted extents, exactly like the 106-point rule; the angle uses
# the same eye-midpoint → mouth-centre axis, so it is exact whenever the mouth corners are landmarks 52/61.
_EXTENT_PER_EYE_MOUTH = 1.99
_EXTENT_PER_INTEROCULAR = 2.05
_CENTRE_DOWN_PER_EYE_MOUTH = 0.645


@dataclass(frozen=True)
class CropRect:
    """Rotated square crop rectangle in source-image pixels.

    Attributes:
        center: (x, y) centre of the square.
        size: side length in pixels.
        angle: θ in radians, angle of the face's x axis (positive = clockwise on screen, y down).
    """

    center: np.ndarray
    size: float
    angle: float


@dataclass(frozen=True)
class FaceCrop:
    """One LivePortrait face crop.

    Attributes:
        image: dsize×dsize×3 uint8 RGB crop (black outside the source image).
        M_o2c: 3×3 float32, source-image pixels → crop pixels.
        M_c2o: 3×3 float32, crop pixels → source-image pixels (inverse of ``M_o2c``).
        angle: in-plane rotation θ the crop removed, radians (0 for a crop without rotation).
        rect: the crop rectangle in the source image.
    """

    image: np.ndarray
    M_o2c: np.ndarray
    M_c2o: np.ndarray
    angle: float
    rect: CropRect

    @property
    def roll_offset(self) -> float:
        """Target-roll offset in degrees that makes the pasted-back face upright (see :func:`upright_roll_offset`)."""
        return upright_roll_offset(self.angle)


def upright_roll_offset(angle: float) -> float:
    """Crop-frame roll (degrees) that is upright in the source image for a crop that removed angle θ.

    A roll r rendered in the crop appears as r + θ after paste-back (module docstring), so upright needs −θ.

    Args:
        angle: θ in radians (:attr:`FaceCrop.angle`).

    Returns:
        −θ in degrees.
    """
    return -math.degrees(angle)


def _as_points(points: np.ndarray, count: int) -> np.ndarray:
    pts = np.asarray(points, dtype=np.float64)
    if pts.shape != (count, 2):
        raise ValueError(f"expected {count}×2 landmarks, got shape {pts.shape}")
    return pts


def _down_axis(top: np.ndarray, bottom: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Unit axes (u_x, u_y) of the face frame from the eye midpoint (top) to the lip centre (bottom), and θ."""
    axis = bottom - top
    length = float(np.linalg.norm(axis))
    u_y = axis / length if length > 1e-3 else np.array([0.0, 1.0])
    u_x = np.array([u_y[1], -u_y[0]])
    return u_x, u_y, float(math.atan2(u_x[1], u_x[0]))


def crop_rect_from_landmarks106(points: np.ndarray, *, scale: float = 2.3,
                                vy_ratio: float = -0.125) -> CropRect:
    """LivePortrait crop rectangle from the 106 InsightFace landmarks (official ``parse_rect_from_landmark``).

    Args:
        points: 106×2 landmarks in source-image pixels.
        scale: side = scale × the larger extent of the landmarks in the face frame.
        vy_ratio: centre shift along the face's down axis, as a fraction of the side (negative = up).

    Returns:
        The crop rectangle.
    """
    pts = _as_points(points, 106)
    top = (pts[list(LEFT_EYE_106)].mean(axis=0) + pts[list(RIGHT_EYE_106)].mean(axis=0)) / 2
    bottom = pts[list(MOUTH_CORNERS_106)].mean(axis=0)
    u_x, u_y, angle = _down_axis(top, bottom)
    mean = pts.mean(axis=0)
    rotated = (pts - mean) @ np.stack([u_x, u_y]).T
    low, high = rotated.min(axis=0), rotated.max(axis=0)
    box_centre = (low + high) / 2
    side = float(np.max(high - low)) * scale
    center = mean + u_x * box_centre[0] + u_y * box_centre[1] + u_y * (vy_ratio * side)
    return CropRect(center=center, size=side, angle=angle)


def landmarks5_from_106(points: np.ndarray) -> np.ndarray:
    """The 5-point layout (InsightFace order) implied by 106 landmarks, as used to calibrate the 5-point crop.

    Order: image-left eye centre, image-right eye centre, nose tip, image-left mouth corner, image-right mouth
    corner.

    Args:
        points: 106×2 landmarks.

    Returns:
        5×2 float64 points.
    """
    pts = _as_points(points, 106)
    return np.stack([pts[list(LEFT_EYE_106)].mean(axis=0), pts[list(RIGHT_EYE_106)].mean(axis=0),
                     pts[NOSE_TIP_106], pts[MOUTH_CORNERS_106[0]], pts[MOUTH_CORNERS_106[1]]])


def crop_rect_from_landmarks5(points: np.ndarray, *, scale: float = 2.3, vy_ratio: float = -0.125) -> CropRect:
    """Approximate LivePortrait crop rectangle from 5 landmarks (detectors that give no 106-point set).

    Uses the same eye-midpoint → mouth-centre axis as the 106-point crop and predicts the 106-point extent box from
    the eye-to-mouth and inter-ocular distances with constants fitted on the golden landmark sets (see the comment
    above the constants). The nose is not used.

    Args:
        points: 5×2 landmarks in InsightFace order (left eye, right eye, nose, left mouth corner, right mouth
            corner), source-image pixels.
        scale: as in :func:`crop_rect_from_landmarks106`.
        vy_ratio: as in :func:`crop_rect_from_landmarks106`.

    Returns:
        The approximate crop rectangle.
    """
    pts = _as_points(points, 5)
    top = (pts[0] + pts[1]) / 2
    bottom = (pts[3] + pts[4]) / 2
    _, u_y, angle = _down_axis(top, bottom)  # the fitted x offset of the centre is 0
    eye_mouth = float(np.linalg.norm(bottom - top))
    interocular = float(np.linalg.norm(pts[1] - pts[0]))
    extent = max(_EXTENT_PER_EYE_MOUTH * eye_mouth, _EXTENT_PER_INTEROCULAR * interocular)
    side = extent * scale
    center = top + u_y * (_CENTRE_DOWN_PER_EYE_MOUTH * eye_mouth) + u_y * (vy_ratio * side)
    return CropRect(center=center, size=side, angle=angle)


def crop_transform(rect: CropRect, *, dsize: int = CROP_SIZE, rotate: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Similarity transforms between the source image and the crop.

    ``M_o2c`` scales by dsize/side, rotates by −θ (when ``rotate``) and maps the rectangle centre to
    (dsize/2, dsize/2). Computed in float64, returned as float32 like the official matrices.

    Args:
        rect: crop rectangle.
        dsize: crop side in pixels.
        rotate: remove the in-plane angle θ (False: pure scale + translation).

    Returns:
        (M_o2c, M_c2o), each 3×3 float32.
    """
    s = dsize / rect.size
    cos, sin = (math.cos(rect.angle), math.sin(rect.angle)) if rotate else (1.0, 0.0)
    linear = s * np.array([[cos, sin], [-sin, cos]])
    m_o2c = np.eye(3)
    m_o2c[:2, :2] = linear
    m_o2c[:2, 2] = dsize / 2 - linear @ np.asarray(rect.center, dtype=np.float64)
    return m_o2c.astype(np.float32), np.linalg.inv(m_o2c).astype(np.float32)


def invert_transform(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a 3×3 affine matrix (computed in float64), as float32."""
    return np.linalg.inv(np.asarray(matrix, dtype=np.float64)).astype(np.float32)


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a 3×3 (or 2×3) affine matrix to N×2 points; returns N×2 float64."""
    m = np.asarray(matrix, dtype=np.float64)
    return np.asarray(points, dtype=np.float64) @ m[:2, :2].T + m[:2, 2]


def warp_to_crop(image: np.ndarray, m_o2c: np.ndarray, dsize: int = CROP_SIZE) -> np.ndarray:
    """Warp a source image into the crop (bilinear, constant black border).

    Args:
        image: H×W×3 uint8 RGB source image.
        m_o2c: 3×3 source → crop matrix.
        dsize: crop side.

    Returns:
        dsize×dsize×3 uint8 crop.
    """
    return cv2.warpAffine(image, np.asarray(m_o2c, dtype=np.float32)[:2], (dsize, dsize), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))


def crop_face(image: np.ndarray, landmarks: np.ndarray, *, dsize: int = CROP_SIZE, scale: float = 2.3,
              vy_ratio: float = -0.125, rotate: bool = True) -> FaceCrop:
    """Crop a face from 106 landmarks (exact LivePortrait crop) or 5 landmarks (approximation).

    Args:
        image: H×W×3 uint8 RGB source image.
        landmarks: 106×2 InsightFace landmarks or 5×2 points in InsightFace order, source pixels.
        dsize: crop side in pixels.
        scale: crop side relative to the face extent.
        vy_ratio: vertical centre shift relative to the side (negative = towards the forehead).
        rotate: remove the in-plane angle (eye→lip axis vertical in the crop).

    Returns:
        The crop with its transforms.

    Raises:
        ValueError: the image is not H×W×3 uint8 or the landmarks are neither 106×2 nor 5×2.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an H×W×3 uint8 RGB image, got shape {image.shape} dtype {image.dtype}")
    count = int(np.asarray(landmarks).shape[0]) if np.ndim(landmarks) == 2 else -1
    if count == 106:
        rect = crop_rect_from_landmarks106(landmarks, scale=scale, vy_ratio=vy_ratio)
    elif count == 5:
        rect = crop_rect_from_landmarks5(landmarks, scale=scale, vy_ratio=vy_ratio)
    else:
        raise ValueError(f"expected 106×2 or 5×2 landmarks, got shape {np.shape(landmarks)}")
    m_o2c, m_c2o = crop_transform(rect, dsize=dsize, rotate=rotate)
    return FaceCrop(image=warp_to_crop(image, m_o2c, dsize), M_o2c=m_o2c, M_c2o=m_c2o,
                    angle=rect.angle if rotate else 0.0, rect=rect)


def network_input(crop: np.ndarray, size: int = NETWORK_SIZE) -> np.ndarray:
    """Resize a crop to the network input size with INTER_AREA (the official 512 → 256 step).

    Args:
        crop: H×W×3 uint8 RGB crop.
        size: output side.

    Returns:
        size×size×3 uint8 RGB.
    """
    if crop.shape[:2] == (size, size):
        return crop
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)


def images_to_tensor(images: Sequence[np.ndarray] | np.ndarray,
                     device: torch.device | str | None = None) -> torch.Tensor:
    """Stack H×W×3 uint8 RGB images into a B×3×H×W float32 tensor in [0, 1] (``u8 / 255``, no normalisation).

    The uint8 data is moved to ``device`` first (from pinned memory when it is a GPU) and converted there (4× less
    transfer than float).

    Args:
        images: B images of equal size (a sequence, or a B×H×W×3 array).
        device: target device (default CPU).

    Returns:
        B×3×H×W float32 tensor.
    """
    batch = np.ascontiguousarray(np.stack(list(images)) if not isinstance(images, np.ndarray) else images)
    if batch.ndim != 4 or batch.shape[3] != 3 or batch.dtype != np.uint8:
        raise ValueError(f"expected B×H×W×3 uint8 RGB images, got shape {batch.shape} dtype {batch.dtype}")
    u8 = torch.from_numpy(batch)
    if torch.device(device or "cpu").type == "cuda":
        # Page-locked staging lets the copy run asynchronously (non_blocking only overlaps from pinned memory).
        u8 = u8.pin_memory()
    u8 = u8.to(device=device, non_blocking=True)
    return u8.permute(0, 3, 1, 2).float().div_(255.0).contiguous()


def halve_u8(images: torch.Tensor) -> torch.Tensor:
    """B×3×2H×2W uint8 → B×3×H×W float32 in [0, 1], on the images' device.

    Equals ``images_to_tensor([network_input(img) for img in images])`` for 2H×2W inputs bit for bit: OpenCV's
    INTER_AREA for an exact ×½ averages 2×2 blocks rounding half up, ``(a + b + c + d + 2) >> 2``. Why: the
    pipeline measures the residual pose of 512² outputs on 256² inputs; computing that on the GPU avoids a host
    resize and a second upload per batch.

    Args:
        images: B×3×H×W uint8 tensor with even H and W.

    Returns:
        B×3×(H/2)×(W/2) float32 tensor.
    """
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[-1] % 2 or images.shape[-2] % 2:
        raise ValueError(f"expected B×3×H×W uint8 with even sides, got {tuple(images.shape)} {images.dtype}")
    wide = images.to(torch.int32)
    sums = wide[..., 0::2, 0::2] + wide[..., 0::2, 1::2] + wide[..., 1::2, 0::2] + wide[..., 1::2, 1::2]
    return torch.div(sums + 2, 4, rounding_mode="floor").float().div_(255.0)
