"""The part of a face crop that lies beyond the image border, filled so the crop still looks like a photograph.

A face near the image border (or a tilted face, whose crop is rotated upright) gets a crop that reaches past the
image. LivePortrait's own crop fills that with black, and a backend that keeps the crop's surroundings (the identity
baseline, the geometric frontalizer, whose output is the crop warped around the face) then shows black wedges.

Here the crop is sampled with the image reflected at its border, and the reflected part is blurred and faded
towards the image's mean colour with the distance from the border, as the FFHQ alignment does: close to the border
it continues the photograph, further out it is an out-of-focus, featureless extension. So no mirrored copy of the
face shows sharply, nothing is black, and what lies inside the image is untouched (bit-identical to the plain crop).
OpenCV has no border mode that does this, hence the few lines below.
"""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np

__all__ = ["outside_mask", "reflect_crop", "resolve_crop_fill"]

_FADE = 0.15  # fraction of the crop side over which the reflected part fades to the blurred mean
_BLUR = 0.02  # Gaussian sigma of the blur, fraction of the crop side
_BLUR_RAMP = 3.0  # the blur is complete at a third of the fade distance


def outside_mask(image_shape: tuple[int, ...], m_o2c: np.ndarray, dsize: int) -> np.ndarray | None:
    """(dsize, dsize) uint8 mask, 255 where a crop pixel lies beyond the image; None when the crop is inside it.

    Args:
        image_shape: the source image's shape (H, W, ...).
        m_o2c: 2×3 or 3×3 source → crop matrix.
        dsize: crop side.
    """
    matrix = np.asarray(m_o2c, dtype=np.float64)[:2]
    height, width = int(image_shape[0]), int(image_shape[1])
    corners = np.array([[0.0, 0.0, 1.0], [dsize - 1.0, 0.0, 1.0], [0.0, dsize - 1.0, 1.0],
                        [dsize - 1.0, dsize - 1.0, 1.0]])
    inverse = cv2.invertAffineTransform(matrix)
    source = corners @ inverse.T
    if (source[:, 0] >= -0.5).all() and (source[:, 0] <= width - 0.5).all() and \
            (source[:, 1] >= -0.5).all() and (source[:, 1] <= height - 0.5).all():
        return None
    inside = cv2.warpAffine(np.full((height, width), 255, np.uint8), matrix.astype(np.float32), (dsize, dsize),
                            flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    # One pixel more: the bilinear crop darkens the last half pixel inside the border (it blends in the black).
    outside = cv2.dilate(255 - inside, np.ones((3, 3), np.uint8))
    return outside if outside.any() else None


def reflect_crop(image: np.ndarray, m_o2c: np.ndarray, crop: np.ndarray) -> np.ndarray:
    """``crop`` (the plain crop of ``image`` by ``m_o2c``) with its part beyond the image filled (module docstring).

    Args:
        image: H×W×3 uint8 RGB source image.
        m_o2c: 2×3 or 3×3 source → crop matrix.
        crop: dsize×dsize×3 uint8 crop (black beyond the image).

    Returns:
        The filled crop; ``crop`` itself when the crop lies inside the image.
    """
    dsize = crop.shape[0]
    outside = outside_mask(image.shape, m_o2c, dsize)
    if outside is None:
        return crop
    matrix = np.asarray(m_o2c, dtype=np.float32)[:2]
    reflected = cv2.warpAffine(image, matrix, (dsize, dsize), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REFLECT_101).astype(np.float32)
    distance = cv2.distanceTransform((outside > 0).astype(np.uint8), cv2.DIST_L2, 5)
    fade = np.clip(distance / (_FADE * dsize), 0.0, 1.0)[..., None]
    blurred = cv2.GaussianBlur(reflected, (0, 0), _BLUR * dsize)
    filled = reflected + (blurred - reflected) * np.clip(_BLUR_RAMP * fade, 0.0, 1.0)
    step = max(1, int(np.sqrt(image.shape[0] * image.shape[1] / 250_000)))  # ≈ 250k pixels are plenty for a mean
    mean = image[::step, ::step].reshape(-1, 3).mean(axis=0).astype(np.float32)
    filled += (mean - filled) * fade
    result = crop.copy()
    beyond = outside > 0
    result[beyond] = np.clip(filled[beyond] + 0.5, 0, 255).astype(np.uint8)
    return result


def resolve_crop_fill(fill: str, backend: str) -> Literal["black", "reflect"]:
    """``crop.fill`` for a backend: ``auto`` is black for LivePortrait (its own crop) and reflect for the others."""
    if fill in ("black", "reflect"):
        return "black" if fill == "black" else "reflect"
    return "black" if backend == "liveportrait" else "reflect"
