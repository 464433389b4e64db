"""LivePortrait paste-back: blend the generated 512×512 crop into the source image with a feathered mask.

Recipe (official ``paste_back``, reference §6): the mask and the generated crop are warped into the source frame
with ``M_c2o`` (bilinear, black border); ``result = clip(mask·warped + (1 − mask)·source, 0, 255)`` computed in
float32 and truncated to uint8. The mask is LivePortrait's ``mask_template.png``: a feathered square, generated here
procedurally (the package never reads files outside itself at run time), see :func:`feather_mask`.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np
import torch

__all__ = ["feather_mask", "paste_back", "tensor_to_images", "tensor_to_u8", "warp_mask"]


@lru_cache(maxsize=8)
def _feather_mask_cached(size: int, feather: int) -> np.ndarray:
    # Continuous model of the template: the square [0, size]² sampled at integer pixel positions, 255 inside, a
    # linear ramp over `feather` pixels at the edges and quarter-circle corners of radius `feather` (value from the
    # distance to the corner circle's centre). Truncated like the template: floor(255·v/feather). This reproduces
    # LivePortrait's mask_template.png (512, 16) exactly (its right/bottom ramps end at 15, not 0, which is what
    # sampling [0, size] at 0…size−1 gives).
    coord = np.arange(size, dtype=np.float64)
    edge = np.minimum(coord, size - coord)  # distance to the nearer border of [0, size]
    inset = np.clip(feather - edge, 0.0, None)  # how far a pixel lies inside the ramp, per axis
    corner_dist = np.sqrt(inset[:, None] ** 2 + inset[None, :] ** 2)
    value = np.clip(feather - corner_dist, 0.0, float(feather))
    mask = np.floor(255.0 * value / feather).astype(np.uint8)
    mask.setflags(write=False)
    return mask


def feather_mask(size: int = 512, feather: int = 16) -> np.ndarray:
    """LivePortrait's feathered square paste-back mask.

    255 inside; along each edge a linear ramp 0, 15, 31, …, 239, 255 over ``feather`` pixels; rounded corners of
    radius ``feather``. For (512, 16) it equals the official ``mask_template.png``.

    Args:
        size: side of the square mask in pixels.
        feather: ramp width (and corner radius) in pixels.

    Returns:
        size×size uint8 mask (read-only, cached).

    Raises:
        ValueError: size or feather not positive, or feather larger than half the size.
    """
    if size < 1 or feather < 1 or 2 * feather > size:
        raise ValueError(f"feather mask needs size ≥ 1 and 1 ≤ feather ≤ size/2, got size {size}, feather {feather}")
    return _feather_mask_cached(int(size), int(feather))


def _warp_kwargs(height: int, width: int) -> dict:
    return {"dsize": (width, height), "flags": cv2.INTER_LINEAR, "borderMode": cv2.BORDER_CONSTANT,
            "borderValue": (0, 0, 0)}


def warp_mask(mask: np.ndarray, m_c2o: np.ndarray, height: int, width: int) -> np.ndarray:
    """Warp the crop mask into the source frame: ``warpAffine(mask, M_c2o) / 255`` as float32 H×W×3.

    Args:
        mask: S×S uint8 (or S×S×3) crop mask.
        m_c2o: 3×3 (or 2×3) crop → source matrix.
        height: source height.
        width: source width.

    Returns:
        H×W×3 float32 blend weights in [0, 1].
    """
    mask3 = np.repeat(mask[:, :, None], 3, axis=2) if mask.ndim == 2 else np.ascontiguousarray(mask)
    affine = np.asarray(m_c2o, dtype=np.float32)[:2]
    return cv2.warpAffine(mask3, affine, **_warp_kwargs(height, width)).astype(np.float32) / 255


def paste_back(crop: np.ndarray, m_c2o: np.ndarray, source: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Paste a generated crop back into the source image (official recipe, float32 blend, truncation).

    Args:
        crop: S×S×3 uint8 RGB generated crop (S = 512 for LivePortrait).
        m_c2o: 3×3 (or 2×3) crop → source matrix of that crop.
        source: H×W×3 uint8 RGB source image.
        mask: S×S uint8 (or S×S×3) mask; default :func:`feather_mask` of the crop's size.

    Returns:
        H×W×3 uint8 RGB composite.

    Raises:
        ValueError: images are not H×W×3 uint8, or the mask does not match the crop size.
    """
    for name, img in (("crop", crop), ("source", source)):
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise ValueError(f"paste_back: {name} must be H×W×3 uint8, got shape {img.shape} dtype {img.dtype}")
    if mask is None:
        mask = feather_mask(crop.shape[0])
    if mask.shape[:2] != crop.shape[:2]:
        raise ValueError(f"paste_back: mask {mask.shape[:2]} does not match the crop {crop.shape[:2]}")
    height, width = source.shape[:2]
    mask_ori = warp_mask(mask, m_c2o, height, width)
    warped = cv2.warpAffine(crop, np.asarray(m_c2o, dtype=np.float32)[:2], **_warp_kwargs(height, width))
    blended = mask_ori * warped + (1 - mask_ori) * source
    return np.clip(blended, 0, 255).astype(np.uint8)


def tensor_to_images(images: torch.Tensor) -> np.ndarray:
    """Network output B×3×H×W in [0, 1] → B×H×W×3 uint8 RGB (clip, ×255, truncate; official ``parse_output``).

    The conversion runs on the tensor's device; only uint8 data is copied to the host.

    Args:
        images: B×3×H×W float tensor.

    Returns:
        B×H×W×3 uint8 array.
    """
    return tensor_to_u8(images).permute(0, 2, 3, 1).contiguous().cpu().numpy()


def tensor_to_u8(images: torch.Tensor) -> torch.Tensor:
    """B×3×H×W in [0, 1] → B×3×H×W uint8 on the same device (the quantisation of :func:`tensor_to_images`)."""
    return (images.detach().float().clamp(0, 1) * 255).clamp(0, 255).to(torch.uint8)
