"""RetinaFace-ResNet50 detector (biubug6 ``detection_Resnet50_Final.pth``) through facexlib's RetinaFace network.

We build facexlib's ``RetinaFace(network_name="resnet50")`` ourselves and load the state dict with
``torch.load(weights_only=True)`` + ``strict=True`` instead of ``facexlib.detection.init_detection_model``, which
downloads the file when it is absent. facexlib's ``detect_faces`` takes an OpenCV BGR array, subtracts the BGR
mean (104, 117, 123) and returns ``x1, y1, x2, y2, score`` + 5 landmarks (image-left eye first, the InsightFace
order). The image is resized so its longer side is ``det_size`` first (facexlib's own size rule is switched off
with ``use_origin_size=True``) and the results are mapped back.
"""

from __future__ import annotations

import logging
import pickle
import warnings
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from frontalize.errors import WeightsMissingError
from frontalize.faces.retinaface_onnx import resize_for_detection
from frontalize.faces.types import Face, check_image, make_fingerprint, rgb_to_bgr, sha256_file, sort_by_area

if TYPE_CHECKING:
    from facexlib.detection.retinaface import RetinaFace

logger = logging.getLogger(__name__)

_SHOW_KEYS = 5


def build_facexlib_r50(device: str = "cpu") -> RetinaFace:
    """facexlib's RetinaFace-R50 network with random weights, in eval mode on ``device``.

    torchvision warns that facexlib still passes ``pretrained=False``; the warning is silenced here.
    """
    from facexlib.detection.retinaface import RetinaFace

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return RetinaFace(network_name="resnet50", half=False, device=torch.device(device)).eval()


def strip_module_prefix(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove a leading DDP ``module.`` prefix from every key (prefix only, never inside a key)."""
    return {key[len("module."):] if key.startswith("module.") else key: value for key, value in state.items()}


def load_facexlib_r50(model_path: Path, device: str = "cpu") -> RetinaFace:
    """Build facexlib's RetinaFace-R50 and load ``model_path`` strictly (weights_only, CPU map).

    Raises:
        WeightsMissingError: when the file cannot be read or its keys/shapes do not match.
    """
    network = build_facexlib_r50(device)
    try:
        state = torch.load(model_path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as error:
        raise WeightsMissingError(f"cannot read RetinaFace-R50 weights {model_path}: {error}") from error
    if not isinstance(state, dict):
        raise WeightsMissingError(f"{model_path} is not a RetinaFace-R50 state dict")
    state = strip_module_prefix(state)
    expected = network.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if tuple(expected[k].shape) != tuple(state[k].shape))
    if missing or unexpected or wrong:
        raise WeightsMissingError(
            f"{model_path} does not match facexlib RetinaFace-R50: missing {missing[:_SHOW_KEYS]} "
            f"({len(missing)}), unexpected {unexpected[:_SHOW_KEYS]} ({len(unexpected)}), "
            f"wrong shape {wrong[:_SHOW_KEYS]} ({len(wrong)})"
        )
    network.load_state_dict(state, strict=True)
    return network.to(torch.device(device)).eval()


class RetinaFaceR50Detector:
    """facexlib RetinaFace-ResNet50 (``retinaface_r50``)."""

    name = "retinaface_r50"

    def __init__(
        self,
        network: RetinaFace,
        *,
        model_path: Path,
        weight_keys: tuple[str, ...],
        det_size: int = 640,
        threshold: float = 0.5,
        nms_threshold: float = 0.4,
    ) -> None:
        """Wrap a loaded network (see :func:`load_facexlib_r50`).

        Args:
            network: facexlib RetinaFace-R50 in eval mode (shared by ``with_det_size`` copies).
            model_path: the weight file (for the fingerprint).
            weight_keys: registry keys of the weight file.
            det_size: longer side of the network input in pixels.
            threshold: minimum face probability.
            nms_threshold: IoU above which the lower-scored box is dropped.
        """
        self.weight_keys = weight_keys
        self.det_size = det_size
        self.threshold = threshold
        self.nms_threshold = nms_threshold
        self._network = network
        self._model_path = model_path

    @cached_property
    def fingerprint(self) -> str:
        """sha256 of the .pth + det_size, thresholds and facexlib's BGR mean."""
        params = {"det_size": self.det_size, "threshold": self.threshold, "nms": self.nms_threshold,
                  "mean_bgr": (104, 117, 123), "impl": "facexlib.RetinaFace"}
        return make_fingerprint(self.name, [sha256_file(self._model_path)], params)

    def with_det_size(self, det_size: int) -> RetinaFaceR50Detector:
        """Same network and thresholds at another detection size."""
        return RetinaFaceR50Detector(self._network, model_path=self._model_path, weight_keys=self.weight_keys,
                                     det_size=det_size, threshold=self.threshold, nms_threshold=self.nms_threshold)

    def detect(self, image: np.ndarray) -> list[Face]:
        """Detect faces in an H×W×3 uint8 RGB image; largest first."""
        image = check_image(image)
        resized, scale = resize_for_detection(image, self.det_size)
        with torch.inference_mode():
            rows = self._network.detect_faces(rgb_to_bgr(resized), conf_threshold=self.threshold,
                                              nms_threshold=self.nms_threshold, use_origin_size=True)
        rows = np.asarray(rows, dtype=np.float32).reshape(-1, 15)
        faces = [Face(box=row[:4] / scale, score=float(row[4]), kps=row[5:].reshape(5, 2) / scale) for row in rows]
        return sort_by_area(faces)
