"""The warp of everything around the face (hair, ears, neck, background) so the output stays a photograph.

The face region changes shape between the source and the target view: a turned face's far cheek is hidden in the
source and appears in the frontal output, and the other way round. Around the face the output must show what the
source shows around the face, not a second copy of a cheek. So the background warp maps the outline of the face as
the target view shows it onto the outline of the face as the source view shows it, and returns to the identity
further out.

Both outlines are described radially about the image position of the head's pivot (faces are star-shaped about it):
``r_out(θ)`` and ``r_src(θ)`` are the outermost radii of the face region (the projection of the surface's domain) in
the target and source views. A pixel at angle θ and radius r outside the output face samples the source at radius

    r + (r_src(θ) − r_out(θ)) · f((r − r_out(θ)) / band),   f(t) = (1 + cos πt) / 2 for t in [0, 1], 0 beyond,

so the face outline lands on the face outline and the displacement fades out. Only directions where the face
shrank (``r_src > r_out``: what the source face covered is uncovered) are warped; where it grew, the face simply
covers what was behind it and the background stays put. With ``band ≥ 2·max(r_src − r_out)``
the radial map keeps a positive slope (one-to-one: no duplicated or folded content). The displacement also fades to
zero near the crop border, so the crop border is left exactly as it was.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

__all__ = ["background_displacement", "outline_radii", "splat_mask"]

_ANGLE_BINS = 360
_ANGLE_SMOOTHING = 3.0  # bins (degrees)


def splat_mask(positions: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Binary (h, w) mask of the cells that (N, 2) positions (coarse-grid pixels) fall in, holes closed."""
    mask = np.zeros(shape, dtype=np.uint8)
    cells = np.round(positions).astype(np.int64)
    keep = (cells[:, 0] >= 0) & (cells[:, 0] < shape[1]) & (cells[:, 1] >= 0) & (cells[:, 1] < shape[0])
    mask[cells[keep, 1], cells[keep, 0]] = 1
    kernel = np.ones((3, 3), np.uint8)
    return cv2.erode(cv2.dilate(mask, kernel), kernel)


def outline_radii(mask: np.ndarray, centre: np.ndarray, max_radius: float) -> np.ndarray:
    """(360,) outermost radius of a region about ``centre`` per degree of angle (0 where the ray meets nothing).

    Args:
        mask: (h, w) region, values in [0, 1].
        centre: (2,) x, y in the mask's pixels.
        max_radius: largest radius considered, pixels.
    """
    bins = max(8, math.ceil(max_radius))
    polar = cv2.warpPolar(mask.astype(np.float32), (bins, _ANGLE_BINS), (float(centre[0]), float(centre[1])),
                          max_radius, cv2.WARP_POLAR_LINEAR | cv2.INTER_LINEAR | cv2.WARP_FILL_OUTLIERS)
    covered = polar > 0.5
    last = np.where(covered.any(axis=1), bins - 1 - np.argmax(covered[:, ::-1], axis=1), 0)
    radii = (last + 1).astype(np.float64) * (max_radius / bins)
    padded = np.concatenate([radii[-10:], radii, radii[:10]])  # circular smoothing
    smoothed = cv2.GaussianBlur(padded.reshape(1, -1).astype(np.float32), (0, 0), _ANGLE_SMOOTHING).ravel()
    return smoothed[10:-10].astype(np.float64)


def _raised_cosine(t: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.cos(np.pi * np.clip(t, 0.0, 1.0)))


def background_displacement(pixels: np.ndarray, centre: np.ndarray, r_out: np.ndarray, r_src: np.ndarray,
                            min_band: float, border_width: float) -> np.ndarray:
    """(h, w, 2) source − output displacement of the background warp (module docstring), in pixel units.

    Args:
        pixels: (h, w, 2) output positions.
        centre: (2,) the radial centre (image of the head's pivot).
        r_out: (360,) face outline radii in the output.
        r_src: (360,) face outline radii in the source.
        min_band: narrowest fade band, pixels.
        border_width: width over which the displacement fades out at the image border, pixels.
    """
    offset = pixels.astype(np.float64) - centre
    radius = np.hypot(offset[..., 0], offset[..., 1])
    angle = np.degrees(np.arctan2(offset[..., 1], offset[..., 0])) % 360.0
    degrees = np.arange(_ANGLE_BINS + 1, dtype=np.float64)
    outline = np.interp(angle, degrees, np.append(r_out, r_out[0]))
    uncovered = np.maximum(r_src - r_out, 0.0)  # where the face grew, it simply covers what was there
    change = np.interp(angle, degrees, np.append(uncovered, uncovered[0]))
    band = max(min_band, 2.0 * float(uncovered.max()))
    # Outside the face outline the shift fades out; inside (where the face covers the background anyway) it grows
    # linearly from zero at the centre, so the map stays one-to-one there too.
    inner = np.clip(radius / np.maximum(outline, 1e-6), 0.0, 1.0)
    shift = change * np.where(radius < outline, inner, _raised_cosine((radius - outline) / band))
    direction = offset / np.maximum(radius, 1e-6)[..., None]
    height, width = pixels.shape[:2]
    rows, cols = np.mgrid[0:height, 0:width]
    edge = np.minimum(np.minimum(cols, width - 1 - cols), np.minimum(rows, height - 1 - rows)).astype(np.float64)
    border = 1.0 - _raised_cosine(edge / max(border_width, 1e-6))
    return (direction * (shift * border)[..., None]).astype(np.float32)
