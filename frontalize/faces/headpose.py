"""Head pose (pitch, yaw, roll) from 68 landmarks and the symmetrised 3D mean shape.

Method: a weak-perspective (scaled orthographic) camera ``x ≈ s·(R·X)_xy + t`` is fitted to the 68 image points by
linear least squares (2×3 affine), projected onto a scaled rotation (SVD), then refined by a few Gauss-Newton steps
on (rotation, log-scale, translation). The model ``X`` is :func:`frontalize.faces.meanshape68.reference_shape`
(x right, y down, z into the screen, IOD units), so the scale ``s`` is in pixels per inter-ocular distance.

Convention: the project's, i.e. LivePortrait's (:func:`frontalize.liveportrait.geometry.rotation_matrix`):
``R = Rz(roll)·Ry(yaw)·Rx(pitch)`` acting on column vectors (LivePortrait stores its transpose for row vectors).
With z into the screen this means yaw > 0 = face turned towards image LEFT (the subject's right), pitch > 0 = looking
DOWN, roll > 0 = clockwise on screen. Angles are degrees.

BIWI: ``frontalize.datasets.biwi.rotation_to_euler`` (FSA-Net) yields yaw and roll with these signs but pitch > 0 =
looking UP, and another Euler order (``R_file = Rx(−pitch)·Ry(yaw)·Rz(roll)``). :func:`pose_from_biwi_matrix` gives
the same annotation in this module's convention; compare estimates with that, not with the FSA-Net angles.

Robustness: the jaw contour (points 0–16) of 300-W-style landmarkers follows the visible silhouette, not fixed 3D
points, once the head turns: on the mean shape the far-side contour starts folding over at 17.5° of yaw (reference
§2). The contour matters: without it the pose rests on the nose alone and is ill-conditioned (on one face rendered
at 30° of yaw the 51 inner points gave 21° and the 68 points 30°). So the fit marches the contour (as 3DDFA does):
starting from all 68 points at their frontal correspondences, the upper contour points of the side the head turns
away from (0–4 or 16–12) are re-assigned to the silhouette of the head model for the current rotation
(:func:`frontalize.faces.meanshape68.silhouette_points`); this is repeated :data:`MARCHING_STEPS` times.

The whole far-side contour (0–7 or 9–16) then fades out of the fit, weight ``clip((20° − |yaw|) / 10°, 0, 1)``
(:func:`contour_weights`): past the fold-over it is a silhouette, the least certain and the most leveraged group of
points. Its place depends on the cheek shape of the identity (the model's head sections are the mean shape's) and on
the landmarker actually following the outline, and a shift of the far contour moves the yaw more than the same
shift of any other group (0.1 IOD outwards: −2.8° at 45°; the far eye −1.9°, the near contour −1.0°). Measured on
the synthetic posed views of ``scripts/make_samples.py`` (docs/GEOMETRIC.md): their rendered outline lies within
0.06 IOD of the model's marched silhouette, dlib's far contour outside it at ±45° (median 0.13 IOD, up to 0.37),
which read as 8.6° too little turn (median) while it was fitted, 7.0° since. The near contour, the chin and the
inner points stay and keep yaw well conditioned up to the 75° the fit accepts (s.d. 0.5° for 0.02 IOD of noise).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from frontalize.errors import InputError
from frontalize.faces.meanshape68 import EYE_LEFT_68, EYE_RIGHT_68, reference_shape, silhouette_points
from frontalize.faces.types import Face

logger = logging.getLogger(__name__)

__all__ = ["UNFIT_STATUS", "FitLimits", "HeadPoseEstimator", "HeadPoseFit", "LandmarkFitError", "WeakPerspective",
           "contour_weights", "euler_from_rotation", "fit_head_pose", "fit_weak_perspective", "marched_model",
           "pose_from_biwi_matrix", "rotation_from_euler"]

UNFIT_STATUS = "landmarks_unfit"
"""Manifest status of a face whose 68 landmarks cannot be fitted."""

MARCHING_STEPS = 3
"""Re-fits after re-assigning the far-side contour to the silhouette."""
_FAR_CONTOUR_FULL_DEG = 10.0
_FAR_CONTOUR_NONE_DEG = 20.0
_GAUSS_NEWTON_STEPS = 4


class LandmarkFitError(InputError):
    """The 68 landmarks of a face cannot be fitted by the head model (manifest status ``landmarks_unfit``)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, status=UNFIT_STATUS)


def rotation_from_euler(pitch: float, yaw: float, roll: float) -> np.ndarray:
    """Column-vector rotation ``Rz(roll)·Ry(yaw)·Rx(pitch)`` (degrees) → (3, 3) float64.

    Equals ``frontalize.liveportrait.geometry.rotation_matrix(pitch, yaw, roll)[0].T`` (LivePortrait keeps the
    transpose for row vectors).
    """
    x, y, z = (math.radians(v) for v in (pitch, yaw, roll))
    rot_x = np.array([[1, 0, 0], [0, math.cos(x), -math.sin(x)], [0, math.sin(x), math.cos(x)]])
    rot_y = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    rot_z = np.array([[math.cos(z), -math.sin(z), 0], [math.sin(z), math.cos(z), 0], [0, 0, 1]])
    return rot_z @ rot_y @ rot_x


def euler_from_rotation(rotation: np.ndarray) -> tuple[float, float, float]:
    """(pitch, yaw, roll) in degrees of a column-vector rotation ``Rz(roll)·Ry(yaw)·Rx(pitch)``; yaw in [−90, 90]."""
    r = np.asarray(rotation, dtype=np.float64)
    yaw = math.asin(float(np.clip(-r[2, 0], -1.0, 1.0)))
    pitch = math.atan2(r[2, 1], r[2, 2])
    roll = math.atan2(r[1, 0], r[0, 0])
    return math.degrees(pitch), math.degrees(yaw), math.degrees(roll)


def pose_from_biwi_matrix(matrix: np.ndarray) -> tuple[float, float, float]:
    """A BIWI ``frame_NNNNN_pose.txt`` rotation (rows as written) → (pitch, yaw, roll) in this module's convention.

    The file matrix is the head-to-camera rotation in a frame with x right, y down, z away from the camera (the
    reading under which FSA-Net's formulas give the 300W-LP signs: yaw > 0 towards image left, pitch > 0 up, roll
    clockwise), which is this module's frame; so its ZYX decomposition is the answer. For a rotation about one axis
    this is ``(−pitch, yaw, roll)`` of ``biwi.rotation_to_euler``; for combined rotations the two Euler orders differ
    by several degrees (e.g. FSA (10, −25, 6) is (−13.6, −23.3, 11.0) here), so convert the matrix, not the angles.
    """
    return euler_from_rotation(np.asarray(matrix, dtype=np.float64))


def _skew_rows(points: np.ndarray) -> np.ndarray:
    """(N, 2, 3): the first two rows of ``−[p]×`` for each rotated point p (d(R·X)/dω for R ← exp(ω)·R)."""
    zero = np.zeros(len(points))
    row0 = np.stack([zero, points[:, 2], -points[:, 1]], axis=1)
    row1 = np.stack([-points[:, 2], zero, points[:, 0]], axis=1)
    return np.stack([row0, row1], axis=1)


def _rodrigues(omega: np.ndarray) -> np.ndarray:
    angle = float(np.linalg.norm(omega))
    if angle < 1e-12:
        return np.eye(3)
    k = omega / angle
    skew = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + math.sin(angle) * skew + (1 - math.cos(angle)) * skew @ skew


@dataclass(frozen=True, eq=False)
class WeakPerspective:
    """A scaled orthographic camera ``x = scale·(rotation·X)_xy + translation``.

    Attributes:
        scale: pixels per model unit (per inter-ocular distance for the reference shape).
        rotation: (3, 3) column-vector rotation (model → camera), det +1.
        translation: (2,) pixels.
        anisotropy: ratio of the two singular values of the unconstrained affine fit (1 for a rigid projection).
    """

    scale: float
    rotation: np.ndarray
    translation: np.ndarray
    anisotropy: float = 1.0

    def project(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) model points → (N, 2) image points."""
        rotated = np.asarray(points, dtype=np.float64) @ self.rotation.T
        return self.scale * rotated[:, :2] + self.translation

    def depth(self, points: np.ndarray) -> np.ndarray:
        """(N,) camera depth of model points in model units (larger = further from the camera)."""
        return np.asarray(points, dtype=np.float64) @ self.rotation[2]


def _affine_start(points: np.ndarray, model: np.ndarray, weights: np.ndarray) -> WeakPerspective:
    total = weights.sum()
    mean2, mean3 = weights @ points / total, weights @ model / total
    centred3, centred2 = model - mean3, points - mean2
    weighted = centred3 * weights[:, None]
    normal = weighted.T @ centred3
    if np.linalg.cond(normal) > 1e8:
        raise LandmarkFitError("the model points used for the fit are degenerate")
    affine = np.linalg.solve(normal, weighted.T @ centred2).T  # (2, 3)
    u, sing, vt = np.linalg.svd(affine, full_matrices=False)
    if sing[1] <= 1e-9:
        raise LandmarkFitError("the landmarks are degenerate (collinear or coincident)")
    rows = u @ vt
    rotation = np.vstack([rows, np.cross(rows[0], rows[1])])
    scale = float(sing.mean())
    translation = mean2 - scale * (rotation @ mean3)[:2]
    return WeakPerspective(scale, rotation, translation, float(sing[0] / sing[1]))


def fit_weak_perspective(points: np.ndarray, model: np.ndarray, weights: np.ndarray | None = None) -> WeakPerspective:
    """Weighted least-squares weak-perspective camera mapping ``model`` onto ``points``.

    Args:
        points: (N, 2) image points in pixels.
        model: (N, 3) model points (N ≥ 4, not coplanar).
        weights: (N,) non-negative weights (default all 1).

    Returns:
        The camera minimising ``Σ w·‖scale·(R·X)_xy + t − x‖²`` (affine start, SVD projection, Gauss-Newton).

    Raises:
        LandmarkFitError: the weighted points are degenerate.
    """
    pts = np.asarray(points, dtype=np.float64)
    mdl = np.asarray(model, dtype=np.float64)
    wts = np.ones(len(pts)) if weights is None else np.asarray(weights, dtype=np.float64)
    camera = _affine_start(pts, mdl, wts)
    rotation, log_scale, translation = camera.rotation, math.log(camera.scale), camera.translation
    sqrt_w = np.sqrt(wts)[:, None]
    for _ in range(_GAUSS_NEWTON_STEPS):
        scale = math.exp(log_scale)
        rotated = mdl @ rotation.T
        residual = scale * rotated[:, :2] + translation - pts
        jac = np.concatenate([scale * _skew_rows(rotated), scale * rotated[:, :2, None],
                              np.broadcast_to(np.eye(2), (len(pts), 2, 2))], axis=2)  # (N, 2, 6)
        jac_w = (jac * sqrt_w[:, :, None]).reshape(-1, 6)
        step = np.linalg.lstsq(jac_w, -(residual * sqrt_w).reshape(-1), rcond=None)[0]
        rotation = _rodrigues(step[:3]) @ rotation
        log_scale += float(step[3])
        translation = translation + step[4:]
    return WeakPerspective(math.exp(log_scale), rotation, translation, camera.anisotropy)


def contour_weights(yaw: float) -> np.ndarray:
    """(68,) fit weights: 1 everywhere but on the far side's contour, which fades out with |yaw|.

    The far side is the side the nose turns to (it hides that cheek): contour points 0–7 (image left) when yaw > 0
    (face towards image left), 9–16 when yaw < 0; weight ``clip((20° − |yaw|) / 10°, 0, 1)`` (module docstring: past
    the fold-over the far contour is a silhouette whose place the model cannot predict well enough for its leverage).
    """
    weights = np.ones(68)
    far = np.arange(0, 8) if yaw > 0 else np.arange(9, 17)
    span = _FAR_CONTOUR_NONE_DEG - _FAR_CONTOUR_FULL_DEG
    weights[far] = float(np.clip((_FAR_CONTOUR_NONE_DEG - abs(yaw)) / span, 0.0, 1.0))
    return weights


@dataclass(frozen=True)
class FitLimits:
    """When a fit is refused (:class:`LandmarkFitError`).

    Attributes:
        max_residual: largest weighted RMS reprojection error, in inter-ocular distances. The shipped photos'
            faces measure 0.06–0.12; 0.2 leaves room for expressions and identity shape. (dlib's points on non-face
            images fit as well, 0.08–0.14: this catches broken landmarks, the landmarker's face check non-faces.)
        max_anisotropy: largest ratio of the affine fit's singular values (a rigid head gives ≈ 1; the shipped
            photos' faces 1.01–1.16).
        max_abs_yaw: largest |yaw| in degrees the 68-point method is trusted with.
        min_interocular_px: smallest inter-ocular distance in pixels.
    """

    max_residual: float = 0.2
    max_anisotropy: float = 1.5
    max_abs_yaw: float = 75.0
    min_interocular_px: float = 4.0


@dataclass(frozen=True, eq=False)
class HeadPoseFit:
    """A fitted head: landmarks, camera and pose.

    Attributes:
        landmarks: (68, 2) float32 image points the fit used.
        camera: the weak-perspective camera (model → image); ``camera.scale`` is in pixels per IOD.
        residual: weighted RMS reprojection error in inter-ocular distances.
        weights: (68,) the point weights of the final fit.
        model: (68, 3) the model points of the final fit (the reference shape, far-side contour marched).
    """

    landmarks: np.ndarray
    camera: WeakPerspective
    residual: float
    weights: np.ndarray = field(repr=False)
    model: np.ndarray = field(repr=False, default_factory=lambda: reference_shape().copy())

    @property
    def scale(self) -> float:
        """Pixels per inter-ocular distance."""
        return self.camera.scale

    @property
    def rotation(self) -> np.ndarray:
        """(3, 3) column-vector rotation, model → camera."""
        return self.camera.rotation

    @property
    def translation(self) -> np.ndarray:
        """(2,) image translation in pixels."""
        return self.camera.translation

    @cached_property
    def angles(self) -> tuple[float, float, float]:
        """(pitch, yaw, roll) in degrees, project convention."""
        return euler_from_rotation(self.camera.rotation)

    @property
    def pose(self) -> dict[str, float]:
        """``{"pitch", "yaw", "roll"}`` in degrees."""
        pitch, yaw, roll = self.angles
        return {"pitch": pitch, "yaw": yaw, "roll": roll}


def _residual(points: np.ndarray, model: np.ndarray, camera: WeakPerspective, weights: np.ndarray) -> float:
    errors = np.sum((camera.project(model) - points) ** 2, axis=1)
    return float(math.sqrt(weights @ errors / weights.sum()) / camera.scale)


def _check_points(landmarks: np.ndarray, limits: FitLimits) -> np.ndarray:
    points = np.asarray(landmarks, dtype=np.float64)
    if points.shape != (68, 2):
        raise LandmarkFitError(f"expected 68×2 landmarks, got shape {points.shape}")
    if not np.all(np.isfinite(points)):
        raise LandmarkFitError("the landmarks contain NaN or infinite values")
    iod = float(np.linalg.norm(points[list(EYE_RIGHT_68)].mean(0) - points[list(EYE_LEFT_68)].mean(0)))
    if iod < limits.min_interocular_px:
        raise LandmarkFitError(f"the eyes are {iod:.1f} px apart (< {limits.min_interocular_px:g} px): degenerate")
    return points


def fit_head_pose(landmarks: np.ndarray, limits: FitLimits | None = None) -> HeadPoseFit:
    """Fit the head model to 68 landmarks (inner points first, then the contour re-weighted by yaw).

    Args:
        landmarks: (68, 2) image points (dlib / iBUG order), pixels.
        limits: refusal thresholds (default :class:`FitLimits`).

    Returns:
        The fit; ``fit.angles`` is (pitch, yaw, roll) in degrees.

    Raises:
        LandmarkFitError: malformed or degenerate landmarks, or a fit outside ``limits`` (the message says which).
    """
    limits = limits or FitLimits()
    points = _check_points(landmarks, limits)
    model, weights = reference_shape(), np.ones(68)
    camera = fit_weak_perspective(points, model, weights)
    for _ in range(MARCHING_STEPS):
        model = marched_model(camera.rotation)
        weights = contour_weights(euler_from_rotation(camera.rotation)[1])
        camera = fit_weak_perspective(points, model, weights)
    fit = HeadPoseFit(points.astype(np.float32), camera, _residual(points, model, camera, weights), weights, model)
    _check_fit(fit, limits)
    return fit


def marched_model(rotation: np.ndarray) -> np.ndarray:
    """(68, 3) reference shape with the far side's upper contour moved to the silhouette for ``rotation``."""
    model = reference_shape().copy()
    for index, point in silhouette_points(rotation).items():
        model[index] = point
    return model


def _check_fit(fit: HeadPoseFit, limits: FitLimits) -> None:
    if fit.residual > limits.max_residual:
        raise LandmarkFitError(f"the landmarks do not fit a head: residual {fit.residual:.3f} IOD "
                               f"> {limits.max_residual:g}")
    if fit.camera.anisotropy > limits.max_anisotropy:
        raise LandmarkFitError(f"the landmarks are not a rigid projection of a head: anisotropy "
                               f"{fit.camera.anisotropy:.2f} > {limits.max_anisotropy:g}")
    yaw = fit.angles[1]
    if abs(yaw) > limits.max_abs_yaw:
        raise LandmarkFitError(f"|yaw| {abs(yaw):.1f}° is beyond the {limits.max_abs_yaw:g}° the 68-point fit supports")


class HeadPoseEstimator:
    """Pose source from 68 landmarks: ``estimate(image, face)`` → ``{"pitch", "yaw", "roll"}`` (degrees).

    Thread safety: as safe as its landmarker (the dlib predictor can be shared, see
    :mod:`frontalize.faces.landmarks68`); the fit itself is pure.
    """

    name = "landmarks68"

    def __init__(self, landmarker: Callable[[np.ndarray, Face], np.ndarray], *, limits: FitLimits | None = None,
                 fingerprint: str = "") -> None:
        """Args:
        landmarker: ``(image, face) -> (68, 2)`` points, e.g. ``DlibLandmarker68.landmarks``.
        limits: refusal thresholds of the fit.
        fingerprint: the landmarker's fingerprint (kept on :attr:`fingerprint` with the limits).
        """
        self.landmarker = landmarker
        self.limits = limits or FitLimits()
        self.fingerprint = f"{self.name}:{fingerprint}:{self.limits}"

    def fit(self, image: np.ndarray, face: Face) -> HeadPoseFit:
        """Landmarks of ``face`` in the H×W×3 uint8 RGB ``image``, then :func:`fit_head_pose`.

        Raises:
            LandmarkFitError: the landmarks cannot be fitted.
        """
        return fit_head_pose(self.landmarker(image, face), self.limits)

    def estimate(self, image: np.ndarray, face: Face) -> dict[str, float]:
        """``{"pitch", "yaw", "roll"}`` in degrees (project convention) of ``face`` in ``image``.

        Raises:
            LandmarkFitError: the landmarks cannot be fitted.
        """
        return self.fit(image, face).pose
