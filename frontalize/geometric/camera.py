"""Orthographic views of the reference surface: the fitted source camera, a target camera, and ray casting.

A view maps a model point X (frame of :mod:`frontalize.geometric.surface`) to the image as

    u = scale · (R · (X − pivot))_xy + centre,        camera depth w = (R · (X − pivot))_z

with R a column-vector rotation in the project's convention (:func:`frontalize.faces.headpose.rotation_from_euler`).
The source view is the weak-perspective camera fitted to the face's 68 landmarks, re-expressed about the surface's
pivot; a target view keeps the source's scale and the image position of the pivot (the face stays where it was in
the crop) and only changes R. Weak perspective is adequate for a face in a crop: its depth (≈ 2 IOD) is small against
the camera distance of an ordinary photograph.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from frontalize.faces.headpose import HeadPoseFit, rotation_from_euler
from frontalize.geometric.surface import FaceSurface

__all__ = ["ViewCamera", "cast_rays", "source_view", "target_view"]

_RAY_STEPS = 24
_BISECTIONS = 6


@dataclass(frozen=True, eq=False)
class ViewCamera:
    """An orthographic view (see the module docstring).

    Attributes:
        scale: pixels per inter-ocular distance.
        rotation: (3, 3) model → camera rotation (column vectors).
        pivot: (3,) model point the view rotates about.
        centre: (2,) image position of the pivot, pixels.
    """

    scale: float
    rotation: np.ndarray
    pivot: np.ndarray
    centre: np.ndarray

    def camera_points(self, points: np.ndarray) -> np.ndarray:
        """(…, 3) model points → (…, 3) camera coordinates ``R · (X − pivot)`` (model units)."""
        return (np.asarray(points, dtype=np.float64) - self.pivot) @ self.rotation.T

    def project(self, points: np.ndarray) -> np.ndarray:
        """(…, 3) model points → (…, 2) image points in pixels."""
        return self.scale * self.camera_points(points)[..., :2] + self.centre


def source_view(fit: HeadPoseFit, pivot: np.ndarray) -> ViewCamera:
    """The fitted camera of a face, re-expressed about ``pivot`` (same projection of every model point)."""
    pivot = np.asarray(pivot, dtype=np.float64)
    centre = fit.camera.project(pivot[None])[0]
    return ViewCamera(fit.camera.scale, np.asarray(fit.camera.rotation, dtype=np.float64), pivot, centre)


def target_view(source: ViewCamera, angles: tuple[float, float, float]) -> ViewCamera:
    """``source`` turned to (pitch, yaw, roll) degrees: same scale, pivot and pivot position."""
    return ViewCamera(source.scale, rotation_from_euler(*angles), source.pivot, source.centre)


def _sample(field: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """Bilinear samples of a 2D float32 grid at (…, 2) fractional (column, row) coordinates (border replicated)."""
    return cv2.remap(field, coords[..., 0], coords[..., 1], interpolation=cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)


def cast_rays(view: ViewCamera, surface: FaceSurface, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First intersection of each pixel's viewing ray with the surface.

    For a view without pitch and yaw the rays run along model z and the answer is direct; otherwise each ray is
    marched front to back in :data:`_RAY_STEPS` steps over the depth range of the face, and the first crossing is
    refined by bisection (so the nose, not the cheek behind it, is what a ray sees).

    Args:
        view: the view.
        surface: the reference surface.
        pixels: (h, w, 2) float32 image positions.

    Returns:
        ``(coords, hit)``: (h, w, 2) float32 fractional grid (column, row) coordinates of the surface point seen at
        each pixel, and an (h, w) bool mask of pixels whose ray meets the gridded surface.
    """
    rotation = view.rotation
    q = (np.asarray(pixels, dtype=np.float64) - view.centre) / view.scale
    base = view.pivot + q[..., 0:1] * rotation[0] + q[..., 1:2] * rotation[1]  # model point at camera depth 0
    direction = rotation[2]  # model direction of increasing camera depth
    height, width = surface.shape
    if abs(direction[0]) < 1e-9 and abs(direction[1]) < 1e-9:
        coords = surface.grid_coords(base[..., :2])
        return coords, _inside(coords, height, width)
    depth = surface.depth
    nodes = surface.points()[surface.domain > 0]
    w_range = (nodes - view.pivot) @ direction
    steps = np.linspace(w_range.min() - 0.05, w_range.max() + 0.05, _RAY_STEPS + 1)

    def gap(w: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        point = base + np.asarray(w)[..., None] * direction
        coords = surface.grid_coords(point[..., :2])
        return (point[..., 2] - _sample(depth, coords)).astype(np.float64), coords

    previous, _ = gap(steps[0])
    low = np.full(previous.shape, np.nan)
    for k in range(1, len(steps)):
        current, _ = gap(steps[k])
        crossing = np.isnan(low) & (previous < 0) & (current >= 0)
        low[crossing] = steps[k - 1]
        previous = current
    hit = ~np.isnan(low)
    low = np.where(hit, low, steps[0])
    high = low + (steps[1] - steps[0])
    for _ in range(_BISECTIONS):
        middle = (low + high) / 2
        value, _ = gap(middle)
        behind = value >= 0
        high = np.where(behind, middle, high)
        low = np.where(behind, low, middle)
    _, coords = gap((low + high) / 2)
    return coords, hit & _inside(coords, height, width)


def _inside(coords: np.ndarray, height: int, width: int) -> np.ndarray:
    column, row = coords[..., 0], coords[..., 1]
    return (column >= 0) & (column <= width - 1) & (row >= 0) & (row <= height - 1)
