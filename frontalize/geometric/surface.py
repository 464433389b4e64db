"""The one 3D face surface every face is rendered with (Hassner et al., CVPR 2015: one unmodified reference surface).

The surface is a height field ``z = depth(x, y)`` over the frontal plane of the model frame of
:func:`frontalize.faces.meanshape68.reference_shape` (x right, y down, z into the screen, inter-ocular distance 1,
origin at the eye midpoint). A face seen from the front is a height field, so every output pixel of a (near) frontal
view has exactly one surface point, and self-occlusion in a turned view is a depth test.

Anchors (then a thin-plate-spline interpolation onto a regular grid, computed once and cached):

* the 68 symmetrised mean-shape points;
* the forehead, which no landmark covers: three rows above the brows at 0.35, 0.7 and 1.0 IOD (hairline at about
  one inter-ocular distance above the brows: forehead height ≈ 55–60 mm, inter-ocular distance ≈ 62 mm), on a
  sagittal arc of radius :data:`FOREHEAD_RADIUS` (the forehead recedes 0.03 / 0.11 / 0.24 IOD), slightly narrowing;
* the sides of the face between the eye/mouth corners and the jaw contour, which the 68 points leave empty (the
  contour points at eye level sit 1.1 IOD behind the eye corners, by the ear: a straight interpolation would make the
  cheek and temple a steep wall): three anchors on each head-section ellipse of
  :func:`frontalize.faces.meanshape68.side_sections` (the same model the head-pose fit marches along);
* a receding skirt around the face outline (jaw contour and forehead edge): two rings 0.3 and 0.6 IOD outwards and
  0.45 / 1.0 IOD deeper, so the surface bends away near the silhouette instead of ending in a vertical wall.

The renderable region (:attr:`FaceSurface.domain`) is the polygon of the jaw contour and the forehead's top row; the
skirt only shapes the depth near that outline. Everything is symmetric about x = 0 (the grid too), so the mirror of
grid column j is column ``W − 1 − j``.

The head turns about the vertical line through the two upper contour ends (points 0 and 16, beside the ears): the
neck's axis, not a point on the face. So a pose change moves the face within the outline of the head, as a real head
turn does, and the outline itself (hair, ears) moves little (:attr:`FaceSurface.pivot`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np
from scipy.interpolate import RBFInterpolator

from frontalize.faces.meanshape68 import EYE_LEFT_68, EYE_RIGHT_68, JAW_68, reference_shape, side_sections

__all__ = ["FOREHEAD_RADIUS", "GRID_SPACING", "FaceSurface", "face_surface", "normals"]

GRID_SPACING = 0.04
"""Grid step in inter-ocular distances (≈ 4 px for a face in a 512 crop)."""
FOREHEAD_RADIUS = 2.2
"""Radius (IOD) of the sagittal arc the forehead follows above the brows."""
_FOREHEAD_ROWS = (0.35, 0.7, 1.0)
_SKIRT_RINGS = ((0.3, 0.45), (0.6, 1.0))  # (outward offset, extra depth), IOD
_EXTENT_X = 1.9
_EXTENT_Y = (-1.75, 2.35)
_EYE_HALF_AXES = (0.42, 0.24)  # eye region mirrored only where poorly seen: half-width, half-height (IOD)
_SIDE_FRACTIONS = (0.3, 0.55, 0.8)  # anchors along the ellipse, from the front point (0) to the contour point (1)


@dataclass(frozen=True, eq=False)
class FaceSurface:
    """The reference surface sampled on a regular grid (arrays are read-only).

    Attributes:
        xs: (W,) model x of the grid columns (symmetric: ``xs == -xs[::-1]``).
        ys: (H,) model y of the grid rows.
        depth: (H, W) float32 model z of the surface.
        normals: (H, W, 3) float32 unit normals pointing towards the viewer (negative z).
        domain: (H, W) float32, 1 inside the renderable face region (jaw contour + forehead), else 0.
        eyes: (H, W) float32 soft mask of the two eye regions (1 at the eyes; mirrored only where poorly seen).
        pivot: (3,) model point the head turns about: midline, at the height and depth of contour points 0 and 16
            (module docstring).
        outline: (K, 2) model xy of the domain polygon.
        rim: (M, 2) model xy of a ring well outside the domain (where a face-specific deformation fades to zero).
        mirror: (H, W, 2) float32 fractional grid (column, row) of each node's mirror partner, or None for the
            symmetric reference surface (partner of column j = column W − 1 − j).
    """

    xs: np.ndarray
    ys: np.ndarray
    depth: np.ndarray
    normals: np.ndarray
    domain: np.ndarray
    eyes: np.ndarray
    pivot: np.ndarray
    outline: np.ndarray
    rim: np.ndarray
    mirror: np.ndarray | None = None

    def mirrored(self, field: np.ndarray) -> np.ndarray:
        """A grid field (H, W) or (H, W, C) read at every node's mirror partner."""
        if self.mirror is None:
            return np.ascontiguousarray(field[:, ::-1])
        return cv2.remap(np.ascontiguousarray(field), self.mirror[..., 0], self.mirror[..., 1], cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REPLICATE)

    @property
    def spacing(self) -> float:
        """Grid step in IOD."""
        return float(self.xs[1] - self.xs[0])

    @property
    def shape(self) -> tuple[int, int]:
        """(H, W) of the grid."""
        return int(self.depth.shape[0]), int(self.depth.shape[1])

    def grid_coords(self, points_xy: np.ndarray) -> np.ndarray:
        """Model xy (…, 2) → fractional grid (column, row) coordinates (…, 2), float32, for ``cv2.remap``."""
        origin = np.array([self.xs[0], self.ys[0]])
        return ((np.asarray(points_xy, dtype=np.float64) - origin) / self.spacing).astype(np.float32)

    def points(self) -> np.ndarray:
        """(H, W, 3) model points of every grid node."""
        grid_x, grid_y = np.meshgrid(self.xs, self.ys)
        return np.stack([grid_x, grid_y, self.depth.astype(np.float64)], axis=-1)


def _forehead(shape: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Forehead anchors above the brows and its top row (left to right)."""
    brows = shape[17:27]
    glabella = np.array([0.0, brows[4:6, 1].mean(), brows[4:6, 2].mean() - 0.02])
    base = np.vstack([brows[:5], glabella, brows[5:]])
    rows = []
    for height in _FOREHEAD_ROWS:
        recess = FOREHEAD_RADIUS - math.sqrt(FOREHEAD_RADIUS**2 - height**2)
        row = base.copy()
        row[:, 0] *= 1.0 - 0.05 * height
        row[:, 1] -= height
        row[:, 2] += recess
        rows.append(row)
    return np.vstack(rows), rows[-1]


def _outline(shape: np.ndarray, top_row: np.ndarray) -> np.ndarray:
    """Domain polygon in model xy: jaw contour 0 → 16, then the forehead's top row right → left."""
    return np.vstack([shape[list(JAW_68), :2], top_row[::-1, :2]])


def _skirt(outline_3d: np.ndarray) -> np.ndarray:
    """Receding rings around a closed 3D outline (outward = away from the outline's centroid in xy)."""
    centre = outline_3d[:, :2].mean(axis=0)
    previous, following = np.roll(outline_3d, 1, axis=0), np.roll(outline_3d, -1, axis=0)
    tangent = following[:, :2] - previous[:, :2]
    normal = np.stack([tangent[:, 1], -tangent[:, 0]], axis=1)
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    flip = np.sum(normal * (outline_3d[:, :2] - centre), axis=1) < 0
    normal[flip] *= -1
    rings = []
    for offset, deeper in _SKIRT_RINGS:
        ring = outline_3d.copy()
        ring[:, :2] += offset * normal
        ring[:, 2] += deeper
        rings.append(ring)
    return np.vstack(rings)


def _sides() -> np.ndarray:
    """Anchors on the head sections of contour points 0–4 (image left; the caller mirrors them)."""
    return np.asarray([section.point(section.front_angle * (1.0 - fraction))
                       for section in side_sections() for fraction in _SIDE_FRACTIONS])


def _soft_ellipses(grid_x: np.ndarray, grid_y: np.ndarray, centres: list[np.ndarray]) -> np.ndarray:
    mask = np.zeros_like(grid_x)
    for centre in centres:
        r2 = ((grid_x - centre[0]) / _EYE_HALF_AXES[0]) ** 2 + ((grid_y - centre[1]) / _EYE_HALF_AXES[1]) ** 2
        mask = np.maximum(mask, np.clip(1.5 - r2, 0.0, 1.0))  # 1 inside r² ≤ 0.5, 0 from r² ≥ 1.5
    return mask


def normals(depth: np.ndarray, spacing: float) -> np.ndarray:
    """(H, W, 3) float32 unit normals of a height field, pointing towards the viewer (negative z)."""
    d_dy, d_dx = np.gradient(depth.astype(np.float64), spacing)
    unit = np.stack([d_dx, d_dy, -np.ones_like(d_dx)], axis=-1)  # ∝ (∂z/∂x, ∂z/∂y, −1)
    return (unit / np.linalg.norm(unit, axis=-1, keepdims=True)).astype(np.float32)


@lru_cache(maxsize=1)
def face_surface() -> FaceSurface:
    """The cached reference surface (built once per process, ~50 ms)."""
    shape = reference_shape()
    forehead, top_row = _forehead(shape)
    outline_3d = np.vstack([shape[list(JAW_68)], top_row[::-1]])
    anchors = np.vstack([shape, forehead, _sides(), _skirt(outline_3d)])
    anchors = np.vstack([anchors, anchors * np.array([-1.0, 1.0, 1.0])])  # exact symmetry of the interpolant
    anchors = np.unique(np.round(anchors, 9), axis=0)
    half = math.ceil(_EXTENT_X / GRID_SPACING)
    xs = np.arange(-half, half + 1) * GRID_SPACING
    ys = np.arange(math.floor(_EXTENT_Y[0] / GRID_SPACING), math.ceil(_EXTENT_Y[1] / GRID_SPACING) + 1) * GRID_SPACING
    grid_x, grid_y = np.meshgrid(xs, ys)
    tps = RBFInterpolator(anchors[:, :2], anchors[:, 2], kernel="thin_plate_spline", smoothing=1e-4)
    depth = tps(np.stack([grid_x.ravel(), grid_y.ravel()], axis=1)).reshape(grid_x.shape)
    depth = np.clip(depth, anchors[:, 2].min(), anchors[:, 2].max())
    depth = (depth + depth[:, ::-1]) / 2.0  # remove round-off asymmetry
    outline = _outline(shape, top_row)
    domain = np.zeros(grid_x.shape, dtype=np.uint8)
    polygon = np.round((outline - np.array([xs[0], ys[0]])) / GRID_SPACING * 16).astype(np.int32)
    cv2.fillPoly(domain, [polygon], 1, lineType=cv2.LINE_8, shift=4)
    domain = np.maximum(domain, domain[:, ::-1]).astype(np.float32)
    eye_centres = [shape[list(EYE_LEFT_68)].mean(axis=0), shape[list(EYE_RIGHT_68)].mean(axis=0)]
    eyes = _soft_ellipses(grid_x, grid_y, eye_centres).astype(np.float32)
    pivot = np.array([0.0, (shape[0, 1] + shape[16, 1]) / 2.0, (shape[0, 2] + shape[16, 2]) / 2.0])
    rim = _skirt(np.c_[outline, np.zeros(len(outline))])[len(outline):, :2]  # the outer ring's xy
    surface = FaceSurface(xs=xs, ys=ys, depth=depth.astype(np.float32), normals=normals(depth, GRID_SPACING),
                          domain=domain, eyes=eyes, pivot=pivot, outline=outline, rim=rim)
    for array in (surface.xs, surface.ys, surface.depth, surface.normals, surface.domain, surface.eyes,
                  surface.pivot, surface.outline, surface.rim):
        array.setflags(write=False)
    return surface
