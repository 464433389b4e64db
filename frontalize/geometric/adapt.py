"""Fit the reference surface to one face: its landmarks land on the matching surface features.

The reference surface is generic; a face's landmarks lie some way off its projected mean-shape points (reference
§4.2: 2.8–5.7 px at 32–51 px inter-ocular distance). Painted onto the generic surface as they are, a narrow face's
contour would sit on the steep side of the surface, its nose tip beside the surface's nose, and every turn of the
head would move them by the wrong depth. So each face deforms the surface before rendering: the residual of every
reliable landmark (image position − fitted projection) is lifted to a 3D shift perpendicular to the source's line of
sight (the smallest shift that explains it), the shifts are spread over the grid by a smoothed thin-plate spline
that is zero on a ring well outside the face, and the deformed surface is resampled as a height field on the same
grid (so the renderer is unchanged). The depth of every feature stays the mean shape's; only where the features are
changes.

Reliable landmarks: full fit weight, not re-assigned to the silhouette (contour marching), and, for the inner points,
facing the source camera (cosine of the surface normal with the line of sight ≥ 0.5, fading from 0.2; a turned
face's far eye and brow end are guessed by the landmarker). Contour points are kept whatever their angle: where they
are not marched they mark the outline of the face, and their residual is the face being narrower or wider than the
mean shape. An unreliable landmark takes its mirror partner's shift, mirrored (faces are nearly symmetric), or none.
Shifts are capped at 0.3 IOD.

The mirror correspondence follows the deformation: a node's partner is the deformed position of the mirror of the
node it came from, so the left eye still pairs with the right eye (:attr:`FaceSurface.mirror`).
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from frontalize.faces.headpose import HeadPoseFit
from frontalize.faces.meanshape68 import MIRROR_68, reference_shape
from frontalize.geometric.camera import ViewCamera
from frontalize.geometric.surface import FaceSurface, normals

__all__ = ["adapt_surface", "landmark_shifts"]

_SMOOTHING = 0.01  # thin-plate-spline regulariser (IOD²): landmark noise is not followed exactly
_MAX_SHIFT = 0.3  # IOD
_FACING = (0.2, 0.5)
_INVERSION_STEPS = 5


def _tps_kernel(distance: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        values = distance**2 * np.log(distance)
    return np.nan_to_num(values)


@lru_cache(maxsize=2)
def _spline_operator(surface: FaceSurface) -> np.ndarray:
    """(68 + M, H·W) matrix: its transpose maps shifts at the 68 mean-shape points and the rim (zero) to every grid
    node.

    The anchors are fixed (mean-shape xy and the surface's rim), so the smoothed thin-plate spline is one linear map,
    computed once. It is stored transposed because ``values.T @ operator`` is about 15× faster than
    ``operator.T @ values`` for three right-hand sides (measured 0.3 ms against 6 ms).
    """
    anchors = np.vstack([reference_shape()[:, :2], surface.rim])
    count = len(anchors)
    kernel = _tps_kernel(np.linalg.norm(anchors[:, None] - anchors[None], axis=-1)) + _SMOOTHING * np.eye(count)
    affine = np.c_[np.ones(count), anchors]
    system = np.block([[kernel, affine], [affine.T, np.zeros((3, 3))]])
    solve = np.linalg.inv(system)[:, :count]  # coefficients per unit anchor value
    grid_x, grid_y = np.meshgrid(surface.xs, surface.ys)
    nodes = np.stack([grid_x.ravel(), grid_y.ravel()], axis=1)
    basis = np.c_[_tps_kernel(np.linalg.norm(nodes[:, None] - anchors[None], axis=-1)), np.ones(len(nodes)), nodes]
    return np.ascontiguousarray((basis @ solve).T.astype(np.float32))


def _reliability(surface: FaceSurface, head: HeadPoseFit, view: ViewCamera) -> np.ndarray:
    model = reference_shape()
    coords = surface.grid_coords(model[:, :2])
    normal = np.stack([cv2.remap(np.ascontiguousarray(surface.normals[..., axis]), coords[:, 0:1], coords[:, 1:2],
                                 cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE).ravel() for axis in range(3)],
                      axis=1)
    facing = -(normal.astype(np.float64) @ view.rotation.T)[:, 2]
    ramp = np.clip((facing - _FACING[0]) / (_FACING[1] - _FACING[0]), 0.0, 1.0)
    ramp[:17] = 1.0  # contour: an outline whatever its angle (module docstring)
    fixed = np.all(np.abs(head.model - model) < 1e-9, axis=1)  # not moved to the silhouette
    return ramp * (head.weights >= 0.99) * fixed


def landmark_shifts(surface: FaceSurface, head: HeadPoseFit, view: ViewCamera) -> np.ndarray:
    """(68, 3) model-frame shifts moving the mean-shape points onto the face's landmarks (module docstring)."""
    residual = (head.landmarks.astype(np.float64) - head.camera.project(head.model)) / view.scale
    shifts = np.c_[residual, np.zeros(68)] @ view.rotation  # Rᵀ·(e_x, e_y, 0): perpendicular to the line of sight
    reliable = _reliability(surface, head, view)
    partner = list(MIRROR_68)
    mirrored = shifts[partner] * np.array([-1.0, 1.0, 1.0])
    blended = reliable[:, None] * shifts + ((1.0 - reliable) * reliable[partner])[:, None] * mirrored
    length = np.linalg.norm(blended, axis=1, keepdims=True)
    return blended * np.minimum(1.0, _MAX_SHIFT / np.maximum(length, 1e-12))


def adapt_surface(surface: FaceSurface, shifts: np.ndarray) -> FaceSurface:
    """The reference surface deformed so the face's landmarks lie on their features (module docstring).

    Args:
        surface: the (symmetric) reference surface.
        shifts: (68, 3) model-frame shifts of the mean-shape points (:func:`landmark_shifts`).

    Returns:
        A surface on the same grid: depth, normals, domain and eye mask resampled, with its mirror map.
    """
    height, width = surface.shape
    values = np.vstack([np.asarray(shifts, dtype=np.float64), np.zeros((len(surface.rim), 3))])
    shift = (values.astype(np.float32).T @ _spline_operator(surface)).T.reshape(height, width, 3)
    grid = np.stack(np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32)), axis=-1)
    shift_cells = np.ascontiguousarray(shift[..., :2] / surface.spacing)

    def at(field: np.ndarray, coords: np.ndarray) -> np.ndarray:
        return cv2.remap(np.ascontiguousarray(field), coords[..., 0], coords[..., 1], cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REPLICATE)

    source = grid.copy()  # the undeformed node each grid position comes from: source + shift(source) = grid
    for _ in range(_INVERSION_STEPS):
        source = grid - at(shift_cells, source)
    depth = at(surface.depth, source) + at(np.ascontiguousarray(shift[..., 2]), source)
    mirror_source = np.stack([(width - 1) - source[..., 0], source[..., 1]], axis=-1)
    mirror = mirror_source + at(shift_cells, mirror_source)
    return FaceSurface(xs=surface.xs, ys=surface.ys, depth=depth, normals=normals(depth, surface.spacing),
                       domain=at(surface.domain, source), eyes=at(surface.eyes, source), pivot=surface.pivot,
                       outline=surface.outline, rim=surface.rim, mirror=mirror.astype(np.float32))
