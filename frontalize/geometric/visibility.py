"""Which surface points the source photo shows, and the soft symmetric fill of the others.

Visibility of a surface point in the source view is the product of

* a depth test (z-buffer): the point is hidden when another part of the surface (the nose, the near cheek) projects
  to the same place nearer the camera. The buffer is splatted from the surface grid itself on cells of 1.5 grid steps,
  so every cell the face covers gets a sample;
* a grazing-angle weight: texture seen at a steep angle is stretched when the face turns to the front (by
  1 / cos of the angle: 1.4× at 45°, 2.9× at 70°), smeared and unreliable near the silhouette (where the generic
  surface and dlib's far contour are least exact: shadow under the jaw, hair and background get sampled). The weight
  rises smoothly from 0 to 1 as the cosine between the surface normal and the viewing direction goes from 0.35 to
  0.7 (70° to 45°). With the earlier 0.1–0.4 (84° to 66°), real photographs turned 20–55° showed dark blobs on the far
  jaw and smeared far eyes (stretched own texture kept over a well-seen mirror partner);
* the face's own silhouette: 300-W-style jaw contour points follow the visible outline of the face (reference §2),
  so surface points that project outside the polygon of the detected contour (0–16, closed over the forehead by
  the contour ends moved up to the model's hairline) are not on the visible face, however the generic surface
  fits (tolerance 0.1 IOD). This is what stops background from being sampled into a turned face's far temple.

The product is blurred on the grid (soft weights, no seam). A point's own texture then gets the weight ``a`` =
visibility and its mirror partner's texture ``(1 − a) · a_mirror · s(a_mirror − a)``: the partner must itself be
visible, and clearly better seen (``s`` rises from 0 to 1 as the partner's visibility exceeds the point's by 0 to
0.3), so a frontal face, whose halves are equally well seen, keeps its own, asymmetric texture. The eye regions are
mirrored only where the eye itself is poorly seen (Hassner et al.: mirrored eyes look wrong, so an eye keeps its own
texture while its visibility is above 0.7, and takes the mirrored eye below 0.3; a far eye that the nose or the
foreshortening hides would otherwise be a smear). The mirrored texture carries the other half's lighting, so it is
multiplied by a per-side colour gain measured on pairs of points that are visible on both sides; the gain changes
smoothly across the midline.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from frontalize.geometric.camera import ViewCamera
from frontalize.geometric.surface import FaceSurface

__all__ = ["SourceSampling", "mirror_weights", "sample_source"]

_FACING = (0.35, 0.7)
_DEPTH_TOLERANCE = 0.1  # IOD: a point is hidden when the buffer holds something nearer by more than this
_CELL_STEPS = 1.5
_BLUR_STEPS = 1.5
_BETTER_SEEN = 0.3  # visibility margin by which a mirror partner must be better seen to be used fully
_EYE_KEPT = (0.3, 0.7)  # visibility below which an eye is mirrored, above which it keeps its own texture
_GAIN_LIMITS = (0.6, 1.6)
_GAIN_MIN_PAIRS = 20
_MIDLINE_SOFTNESS = 0.1  # IOD
_SILHOUETTE_TOLERANCE = 0.1  # IOD
_HAIRLINE_ABOVE_CONTOUR_ENDS = 1.35  # IOD: model y of points 0/16 (≈ 0.03) to the forehead's top row (≈ −1.32)


@dataclass(frozen=True, eq=False)
class SourceSampling:
    """What the source view gives every surface grid node (computed once per face, reused by every target).

    Attributes:
        positions: (H, W, 2) float32 source-crop pixel of each node.
        visibility: (H, W) float32 soft visibility in [0, 1].
        gain: (H, W, 3) float32 colour gain applied to mirrored texture arriving at each node.
    """

    positions: np.ndarray
    visibility: np.ndarray
    gain: np.ndarray


def _smoothstep(values: np.ndarray, low: float, high: float) -> np.ndarray:
    t = np.clip((values - low) / (high - low), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _depth_visible(camera_points: np.ndarray, positions: np.ndarray, region: np.ndarray, cell: float) -> np.ndarray:
    """Depth test of every node against a z-buffer splatted from the nodes of ``region``."""
    cells = np.floor(positions / cell).astype(np.int64)
    cells -= cells[region].min(axis=0)
    extent = cells[region].max(axis=0) + 1
    inside = region & np.all(cells >= 0, axis=-1) & np.all(cells < extent, axis=-1)
    flat = cells[..., 1] * extent[0] + cells[..., 0]
    buffer = np.full(int(extent[0] * extent[1]), np.inf)
    np.minimum.at(buffer, flat[inside], camera_points[..., 2][inside])
    nearest = np.full(camera_points.shape[:2], np.inf)
    nearest[inside] = buffer[flat[inside]]
    return camera_points[..., 2] <= nearest + _DEPTH_TOLERANCE


def _inside_silhouette(landmarks: np.ndarray, view: ViewCamera, positions: np.ndarray,
                       crop_shape: tuple[int, int]) -> np.ndarray:
    """1 where a node projects inside the detected face outline (module docstring), else 0."""
    up = -view.scale * view.rotation[:2, 1] * _HAIRLINE_ABOVE_CONTOUR_ENDS  # image vector of model −y
    contour = np.asarray(landmarks[:17], dtype=np.float64)
    polygon = np.vstack([contour, contour[16] + up, contour[0] + up])
    outline = np.zeros(crop_shape, dtype=np.uint8)
    cv2.fillPoly(outline, [np.round(polygon * 4).astype(np.int32)], 255, lineType=cv2.LINE_8, shift=2)
    radius = max(1, round(_SILHOUETTE_TOLERANCE * view.scale))
    mask = cv2.dilate(outline, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1)))
    inside = cv2.remap(mask, positions[..., 0], positions[..., 1], cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return inside.astype(np.float32) / 255.0


def _visibility(surface: FaceSurface, view: ViewCamera, camera_points: np.ndarray, positions: np.ndarray,
                silhouette: np.ndarray) -> np.ndarray:
    facing = _smoothstep(-(surface.normals.astype(np.float64) @ view.rotation.T)[..., 2], *_FACING)
    region = cv2.dilate(surface.domain, np.ones((5, 5), np.uint8)) > 0
    cell = max(_CELL_STEPS * surface.spacing * view.scale, 1.0)
    visible = _depth_visible(camera_points, positions, region, cell)
    weights = (facing * visible * silhouette).astype(np.float32)
    return np.clip(cv2.GaussianBlur(weights, (0, 0), _BLUR_STEPS), 0.0, 1.0)


def _colour_gain(crop: np.ndarray, surface: FaceSurface, positions: np.ndarray, visibility: np.ndarray,
                 scale: float) -> np.ndarray:
    """(H, W, 3) gain for mirrored texture: per side, own colour / mirrored colour over mutually visible pairs."""
    # Low frequencies only (lighting, not texture): blur at 0.1 IOD, on a 4× smaller copy (same result, cheaper).
    small = cv2.resize(crop, (max(1, crop.shape[1] // 4), max(1, crop.shape[0] // 4)), interpolation=cv2.INTER_AREA)
    blurred = cv2.GaussianBlur(small, (0, 0), max(0.1 * scale / 4.0, 0.5)).astype(np.float32)
    factor = np.array([small.shape[1] / crop.shape[1], small.shape[0] / crop.shape[0]], dtype=np.float32)
    cells = (positions + 0.5) * factor - 0.5
    colours = cv2.remap(blurred, cells[..., 0], cells[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    mirrored = surface.mirrored(colours)
    both = (visibility > 0.8) & (surface.mirrored(visibility) > 0.8) & (surface.domain > 0) & (surface.eyes < 0.01)
    grid_x = np.broadcast_to(surface.xs[None, :], surface.shape)
    side_gain = []
    for side in (grid_x < 0, grid_x > 0):
        pairs = both & side
        if int(pairs.sum()) < _GAIN_MIN_PAIRS:
            side_gain.append(np.ones(3, dtype=np.float32))
            continue
        ratio = np.median((colours[pairs] + 1.0) / (mirrored[pairs] + 1.0), axis=0)
        side_gain.append(np.clip(ratio, *_GAIN_LIMITS).astype(np.float32))
    blend = (0.5 * (1.0 + np.tanh(grid_x / _MIDLINE_SOFTNESS)))[..., None].astype(np.float32)
    return (side_gain[0] * (1.0 - blend) + side_gain[1] * blend).astype(np.float32)


def sample_source(crop: np.ndarray, surface: FaceSurface, view: ViewCamera, landmarks: np.ndarray) -> SourceSampling:
    """Source-crop positions, visibility and mirror colour gain of every surface node.

    Args:
        crop: H×W×3 uint8 RGB source crop.
        surface: the reference surface.
        view: the fitted source view.
        landmarks: (68, 2) landmarks of the face in crop pixels (their jaw contour bounds the visible face).
    """
    points = surface.points()
    camera_points = view.camera_points(points)
    positions = (view.scale * camera_points[..., :2] + view.centre).astype(np.float32)
    silhouette = _inside_silhouette(landmarks, view, positions, crop.shape[:2])
    visibility = _visibility(surface, view, camera_points, positions, silhouette)
    gain = _colour_gain(crop, surface, positions, visibility, view.scale)
    return SourceSampling(positions=positions, visibility=visibility, gain=gain)


def mirror_weights(surface: FaceSurface, visibility: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-node weights of the own and the mirrored texture (grid arrays, before normalisation).

    Returns:
        ``(own, mirror)``: own = visibility + 1e-3 (so a node nobody sees keeps its own, stretched texture) and
        mirror = (1 − v) · v_mirror · s(v_mirror − v) · (1 − eye · s(v)), the module docstring's rule.
    """
    mirrored = surface.mirrored(visibility)
    own = visibility + 1e-3
    better_seen = _smoothstep(mirrored - visibility, 0.0, _BETTER_SEEN)
    eye_kept = surface.eyes * _smoothstep(visibility, *_EYE_KEPT)
    mirror = (1.0 - visibility) * mirrored * better_seen * (1.0 - eye_kept)
    return own.astype(np.float32), mirror.astype(np.float32)
