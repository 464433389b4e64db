"""GeometricFrontalizer: fit a face once, then render it at any number of targets (Hassner et al., CVPR 2015).

Per face: 68 landmarks (dlib, :mod:`frontalize.faces.landmarks68`) → weak-perspective fit of the 3D mean shape
(:mod:`frontalize.faces.headpose`) → the source view of the reference surface, with the source-crop position,
visibility and mirror colour gain of every surface point (:mod:`frontalize.geometric.visibility`). Per target: the
target view (:mod:`frontalize.geometric.camera`) and one dense backward warp of the crop, with the soft symmetric
fill (:mod:`frontalize.geometric.render`). Arrays in, arrays out; no files, no torch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from frontalize.faces.headpose import FitLimits, HeadPoseFit, fit_head_pose
from frontalize.faces.landmarks68 import landmarks5_from_68
from frontalize.faces.meanshape68 import reference_shape, silhouette_points
from frontalize.faces.types import Face, check_image
from frontalize.geometric.adapt import adapt_surface, landmark_shifts
from frontalize.geometric.camera import ViewCamera, source_view, target_view
from frontalize.geometric.render import RenderLayers, RenderSettings, render_layers
from frontalize.geometric.surface import FaceSurface, face_surface
from frontalize.geometric.target import MeshTarget, target_angles
from frontalize.geometric.visibility import SourceSampling, sample_source

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_LIMITS", "FaceFit", "GeometricFrontalizer", "transform_face"]

DEFAULT_LIMITS = FitLimits(max_abs_yaw=60.0)
"""The engine refuses faces turned more than 60°: beyond, most of the far half is hidden and the output would be
mostly mirrored texture (reference §6)."""

Landmarks68 = Callable[[np.ndarray, Face], np.ndarray]


def transform_face(face: Face, matrix: np.ndarray) -> Face:
    """``face`` mapped by a 2×3 or 3×3 affine matrix (e.g. a crop's ``M_o2c``): keypoints exactly, the box as the
    bounding box of its mapped corners.
    """
    affine = np.asarray(matrix, dtype=np.float64)[:2]
    kps = np.asarray(face.kps, dtype=np.float64) @ affine[:, :2].T + affine[:, 2]
    x1, y1, x2, y2 = (float(v) for v in face.box)
    corners = np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]]) @ affine[:, :2].T + affine[:, 2]
    return Face(box=np.r_[corners.min(axis=0), corners.max(axis=0)], score=face.score, kps=kps)


@dataclass(frozen=True, eq=False)
class FaceFit:
    """One fitted source face; :meth:`GeometricFrontalizer.render` turns it into any number of views.

    Attributes:
        crop: H×W×3 uint8 RGB source crop.
        head: the 68-landmark fit (landmarks, camera, residual, pose).
        source: the source view of the reference surface.
        surface: the reference surface adapted to this face (:func:`frontalize.geometric.adapt.adapt_surface`).
        sampling: per surface node: source position, visibility, mirror colour gain.
        points3d: (68, 3) the face's landmarks as model points (mean shape + the adaptation's shifts).
        roll_offset: degrees added to every target roll (the crop's upright offset).
    """

    crop: np.ndarray
    head: HeadPoseFit
    source: ViewCamera
    surface: FaceSurface
    sampling: SourceSampling
    points3d: np.ndarray
    roll_offset: float = 0.0

    @property
    def source_pose(self) -> dict[str, float]:
        """``{"pitch", "yaw", "roll"}`` of the source face in the crop frame, degrees."""
        return self.head.pose

    def target_pose(self, target: MeshTarget) -> dict[str, float]:
        """The pose (crop frame, degrees) ``target`` renders this face at."""
        pitch, yaw, roll = target_angles(self.head.angles, target, self.roll_offset)
        return {"pitch": pitch, "yaw": yaw, "roll": roll}

    def output_face(self, target: MeshTarget) -> Face:
        """Where the face is in the rendering of ``target``: a :class:`Face` (box + 5 keypoints, crop pixels).

        The face's own 68 points (the adapted model points, which project onto its landmarks in the source) are
        projected in the target view; the box is their bounding box. Use it to measure the output (e.g. the
        residual pose with a :class:`~frontalize.faces.headpose.HeadPoseEstimator`) without running a detector.
        """
        view = target_view(self.source, target_angles(self.head.angles, target, self.roll_offset))
        points = view.project(self.points3d)
        box = np.r_[points.min(axis=0), points.max(axis=0)]
        return Face(box=box, score=1.0, kps=landmarks5_from_68(points))


    def target_landmarks(self, target: MeshTarget) -> np.ndarray:
        """(68, 2) float64: where the face's 68 landmarks are in the rendering of ``target``, exactly (crop pixels).

        The face's own 3D landmarks (:attr:`points3d`, which the texture is registered to) projected in the target
        view, with the upper contour of the side turned away (0–4 or 12–16) on the head model's silhouette
        (:func:`frontalize.faces.meanshape68.silhouette_points`), where a 300-W landmarker puts it. The ground truth
        of a rendered view, e.g. for checking a landmarker or a pose estimator on it (``scripts/make_samples.py``).
        """
        view = target_view(self.source, target_angles(self.head.angles, target, self.roll_offset))
        points = np.array(self.points3d, dtype=np.float64)
        for index, point in silhouette_points(view.rotation).items():
            points[index] = point
        return view.project(points)


class GeometricFrontalizer:
    """The geometric (3D-model) frontalization engine.

    Thread safety: :meth:`fit` and :meth:`render` keep no state between calls (the surface is an immutable cached
    object), so one instance can serve several threads as far as its landmarker allows (the dlib landmarker can be
    shared; its calls serialise on the GIL).
    """

    name = "mesh"

    def __init__(self, landmarker: Landmarks68 | None = None, *, limits: FitLimits | None = None,
                 settings: RenderSettings | None = None, surface: FaceSurface | None = None,
                 adapt: bool = True) -> None:
        """Args:
        landmarker: ``(image, face) -> (68, 2)`` points, e.g. a ``DlibLandmarker68``; may be None when every call
            passes ``landmarks``.
        limits: refusal thresholds of the landmark fit (default :data:`DEFAULT_LIMITS`).
        settings: render constants.
        surface: the reference surface (default: :func:`face_surface`).
        adapt: deform the surface to each face's landmarks (:mod:`frontalize.geometric.adapt`); False renders every
            face on the generic surface, as Hassner et al. do.
        """
        self.landmarker = landmarker
        self.limits = limits or DEFAULT_LIMITS
        self.settings = settings or RenderSettings()
        self.surface = surface or face_surface()
        self.adapt = adapt

    def fit(self, crop: np.ndarray, face: Face | None = None, *, landmarks: np.ndarray | None = None,
            roll_offset: float = 0.0) -> FaceFit:
        """Fit one face of a crop.

        Args:
            crop: H×W×3 uint8 RGB crop (512×512 in the pipeline).
            face: its detection in crop coordinates (box + 5 keypoints), for the landmarker.
            landmarks: (68, 2) landmarks in crop pixels, instead of ``face``.
            roll_offset: degrees added to every target roll (``FaceInput.roll_offset`` for an upright result).

        Returns:
            The fit, reusable for any number of targets.

        Raises:
            LandmarkFitError: the landmarks cannot be fitted (status ``landmarks_unfit``, reason in the message).
            ValueError: neither ``face`` nor ``landmarks`` given, or no landmarker for ``face``.
        """
        crop = check_image(crop, "crop")
        if landmarks is None:
            if face is None or self.landmarker is None:
                raise ValueError("fit needs landmarks, or a face and a landmarker")
            landmarks = self.landmarker(crop, face)
        head = fit_head_pose(landmarks, self.limits)
        source = source_view(head, self.surface.pivot)
        if self.adapt:
            shifts = landmark_shifts(self.surface, head, source)
            surface = adapt_surface(self.surface, shifts)
        else:
            shifts, surface = np.zeros((68, 3)), self.surface
        return FaceFit(crop=crop, head=head, source=source, surface=surface,
                       sampling=sample_source(crop, surface, source, head.landmarks),
                       points3d=reference_shape() + shifts, roll_offset=float(roll_offset))

    def render(self, fit: FaceFit, targets: Sequence[MeshTarget]) -> list[np.ndarray]:
        """Render a fitted face at each target; same size as the crop, H×W×3 uint8 RGB each."""
        return [self.render_layers(fit, target).image for target in targets]

    def render_layers(self, fit: FaceFit, target: MeshTarget) -> RenderLayers:
        """Render one target with its layers (face weight, mirrored share, warp maps) for inspection and scoring."""
        view = target_view(fit.source, target_angles(fit.head.angles, target, fit.roll_offset))
        return render_layers(fit.crop, fit.surface, fit.sampling, view, symmetry=target.symmetry,
                             settings=self.settings)

    def frontalize(self, crop: np.ndarray, face: Face | None = None, *, landmarks: np.ndarray | None = None,
                   target: MeshTarget | None = None, roll_offset: float = 0.0) -> np.ndarray:
        """``fit`` then ``render`` one target (default frontal with symmetry)."""
        fit = self.fit(crop, face, landmarks=landmarks, roll_offset=roll_offset)
        return self.render(fit, [target or MeshTarget()])[0]
