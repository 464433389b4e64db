"""InsightFace landmark models through insightface's ``Landmark`` class: 2d106det (106 points, used by the
LivePortrait crop) and 1k3d68 (68 3-D points → head pose pitch/yaw/roll in degrees).

``Landmark.get`` crops a 192×192 square around the box (scale 192 / (1.5·max(w, h))), normalises with the mean/std
it reads from the graph, and maps the prediction back to image pixels. It expects BGR images and an insightface
``Face`` record; both conversions happen here, so callers stay in RGB and our :class:`~frontalize.faces.types.Face`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path

import numpy as np
import onnxruntime as ort
from insightface.app.common import Face as InsightFaceRecord
from insightface.model_zoo.landmark import Landmark
from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

from frontalize.errors import ConfigError, WeightsMissingError
from frontalize.faces.types import (
    Face,
    Pose,
    check_image,
    get_insightface_model,
    make_fingerprint,
    rgb_to_bgr,
    sha256_file,
)

logger = logging.getLogger(__name__)

# What onnxruntime raises on a file that is not a loadable ONNX model (truncated, garbage, empty).
_UNLOADABLE = (ort_state.Fail, ort_state.InvalidProtobuf, ort_state.InvalidArgument, ort_state.InvalidGraph,
               ort_state.NoSuchFile, ort_state.RuntimeException)


def load_landmark_model(
    model_path: Path,
    *,
    taskname: str,
    providers: Sequence[str],
    provider_options: Sequence[dict[str, object]] | None,
    sess_options: ort.SessionOptions | None = None,
    fix: str | None = None,
) -> Landmark:
    """Load an insightface landmark ONNX and check its task (``landmark_2d_106`` or ``landmark_3d_68``).

    Args:
        fix: the command that replaces the file, quoted when it cannot be loaded.

    Raises:
        WeightsMissingError: the file is not a loadable ONNX model (truncated, corrupt, empty).
        ConfigError: when the file routes to another class or task.
    """
    try:
        model = get_insightface_model(model_path, providers=providers, provider_options=provider_options,
                                      sess_options=sess_options)
    except _UNLOADABLE as error:
        reason = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
        raise WeightsMissingError(
            f"{model_path}: cannot load the {taskname} model, the file is corrupt or not an ONNX model "
            f"({type(error).__name__}: {reason}); delete it and download it again"
            + (f": {fix}" if fix else "")) from error
    found = getattr(model, "taskname", type(model).__name__)
    if not isinstance(model, Landmark) or found != taskname:
        raise ConfigError(f"{model_path} is not an InsightFace {taskname} model (found {found})")
    return model


class _LandmarkBase:
    """Shared loading/fingerprint logic of the two insightface landmark wrappers."""

    name: str
    weight_keys: tuple[str, ...]

    def __init__(self, model: Landmark) -> None:
        self._model = model

    @cached_property
    def fingerprint(self) -> str:
        """sha256 of the ONNX file + crop and normalisation parameters."""
        params = {"crop": self._model.input_size, "scale": 1.5, "mean": self._model.input_mean,
                  "std": self._model.input_std}
        return make_fingerprint(self.name, [sha256_file(self._model.model_file)], params)

    def _predict(self, image: np.ndarray, face: Face) -> tuple[np.ndarray, InsightFaceRecord]:
        record = InsightFaceRecord(bbox=np.asarray(face.box, dtype=np.float32))
        points = self._model.get(rgb_to_bgr(check_image(image)), record)
        return np.asarray(points, dtype=np.float32), record


class InsightFaceLandmarker106(_LandmarkBase):
    """InsightFace ``2d106det.onnx`` landmarker (the points LivePortrait's crop uses)."""

    name = "insightface_2d106det"
    weight_keys = ("insightface_2d106det",)

    def landmarks(self, image: np.ndarray, face: Face) -> np.ndarray:
        """(106, 2) float32 points in image pixels for ``face`` of the H×W×3 uint8 RGB ``image``."""
        points, _ = self._predict(image, face)
        return points[:, :2].reshape(106, 2)

    def with_landmarks(self, image: np.ndarray, faces: Sequence[Face]) -> list[Face]:
        """Copies of ``faces`` with ``landmarks106`` filled in (order kept)."""
        return [face.with_landmarks(self.landmarks(image, face)) for face in faces]


class InsightFacePose68(_LandmarkBase):
    """InsightFace ``1k3d68.onnx``: 68 3-D landmarks, then pose by fitting insightface's mean shape.

    Pose is (pitch, yaw, roll) in degrees, insightface's convention (``face.pose``); used e.g. to pick the most
    frontal image of an identity.
    """

    name = "insightface_1k3d68"
    weight_keys = ("insightface_1k3d68",)

    def pose(self, image: np.ndarray, face: Face) -> Pose:
        """(pitch, yaw, roll) in degrees for ``face`` of the H×W×3 uint8 RGB ``image``."""
        _, record = self._predict(image, face)
        pitch, yaw, roll = (float(v) for v in record["pose"])
        return pitch, yaw, roll

    def with_pose(self, image: np.ndarray, faces: Sequence[Face]) -> list[Face]:
        """Copies of ``faces`` with ``pose`` filled in (order kept)."""
        return [face.with_pose(self.pose(image, face)) for face in faces]
