"""SCRFD face detector (InsightFace ``det_10g.onnx`` / ``scrfd_10g_bnkps.onnx``) through insightface's own SCRFD class.

insightface 2.x detects at two sizes by default ("Auto": 128 and 640, merged by NMS); we always pass one explicit
square ``input_size`` per call so ``det_size`` means exactly one letterboxed network input (aspect kept, zero pad
at the bottom/right — insightface's own resize). InsightFace expects BGR images; the RGB→BGR swap happens here.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path

import numpy as np
import onnxruntime as ort
from insightface.model_zoo.scrfd import SCRFD

from frontalize.errors import ConfigError
from frontalize.faces.types import (
    Face,
    check_image,
    get_insightface_model,
    make_fingerprint,
    rgb_to_bgr,
    sha256_file,
    sort_by_area,
)

logger = logging.getLogger(__name__)


def load_scrfd(
    model_path: Path,
    *,
    providers: Sequence[str],
    provider_options: Sequence[dict[str, object]] | None,
    sess_options: ort.SessionOptions | None = None,
) -> SCRFD:
    """Load an ONNX detector with ``insightface.model_zoo.get_model`` and check it routed to SCRFD with keypoints.

    Raises:
        ConfigError: when the file is not a 5-keypoint SCRFD detector.
    """
    model = get_insightface_model(model_path, providers=providers, provider_options=provider_options,
                                  sess_options=sess_options)
    if not isinstance(model, SCRFD) or getattr(model, "taskname", None) != "detection":
        raise ConfigError(f"{model_path} is not an InsightFace SCRFD detector (routed to {type(model).__name__})")
    if not model.use_kps:
        raise ConfigError(f"{model_path} is an SCRFD detector without keypoints; a 5-keypoint model is required")
    return model


class ScrfdDetector:
    """InsightFace SCRFD-10G with keypoints (``scrfd_10g``)."""

    name = "scrfd_10g"

    def __init__(
        self,
        model: SCRFD,
        *,
        weight_keys: tuple[str, ...],
        det_size: int = 640,
        threshold: float = 0.5,
        nms_threshold: float = 0.4,
    ) -> None:
        """Wrap a loaded SCRFD model (see :func:`load_scrfd`).

        Args:
            model: the insightface SCRFD instance (shared by ``with_det_size`` copies).
            weight_keys: registry keys of the model file.
            det_size: side of the square letterboxed network input.
            threshold: minimum face score.
            nms_threshold: IoU above which the lower-scored box is dropped.
        """
        self.weight_keys = weight_keys
        self.det_size = det_size
        self.threshold = threshold
        self.nms_threshold = nms_threshold
        self._model = model
        model.nms_thresh = nms_threshold
        model.det_thresh = threshold

    @cached_property
    def fingerprint(self) -> str:
        """sha256 of the ONNX file + det_size, thresholds and insightface's normalisation."""
        params = {"det_size": self.det_size, "threshold": self.threshold, "nms": self.nms_threshold,
                  "mean": self._model.input_mean, "std": self._model.input_std, "impl": "insightface.SCRFD"}
        return make_fingerprint(self.name, [sha256_file(self._model.model_file)], params)

    def with_det_size(self, det_size: int) -> ScrfdDetector:
        """Same loaded model and thresholds at another detection size."""
        return ScrfdDetector(self._model, weight_keys=self.weight_keys, det_size=det_size,
                             threshold=self.threshold, nms_threshold=self.nms_threshold)

    def detect(self, image: np.ndarray) -> list[Face]:
        """Detect faces in an H×W×3 uint8 RGB image; largest first."""
        image = check_image(image)
        height, width = image.shape[:2]
        if min(height, width) * self.det_size < max(height, width):  # letterboxed to < 1 px: insightface crashes
            logger.debug("image %dx%d too elongated for det_size %d: no face", width, height, self.det_size)
            return []
        self._model.nms_thresh = self.nms_threshold  # the model is shared; NMS reads this attribute
        detections, keypoints = self._model.detect(
            rgb_to_bgr(image), input_size=(self.det_size, self.det_size), det_thresh=self.threshold
        )
        faces = [
            Face(box=row[:4], score=float(row[4]), kps=points)
            for row, points in zip(detections, keypoints if keypoints is not None else [])
        ]
        return sort_by_area(faces)
