"""ArcFace recognizers (buffalo_l ``w600k_r50.onnx``, antelopev2 ``glintr100.onnx``) via insightface's ArcFaceONNX.

Alignment is ``insightface.utils.face_align.norm_crop`` (similarity transform of the 5 keypoints onto
``arcface_dst``), applied to the RGB image — a pure geometric warp, so the chip stays RGB. ``ArcFaceONNX.get_feat``
expects BGR images (it swaps to RGB inside ``blobFromImages``), so chips are swapped to BGR right before it.
Embeddings are L2-normalised, so cosine similarity is a dot product.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path

import numpy as np
import onnxruntime as ort
from insightface.model_zoo.arcface_onnx import ArcFaceONNX

from frontalize.errors import ConfigError, InputError
from frontalize.faces.align import arcface_chip
from frontalize.faces.types import Face, get_insightface_model, make_fingerprint, rgb_to_bgr, sha256_file

logger = logging.getLogger(__name__)


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    """Row-wise L2 normalisation of an (N, D) array (zero rows stay zero), float32."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def check_chips(chips: Sequence[np.ndarray], size: int, name: str) -> None:
    """Raise InputError unless every chip is a size×size×3 uint8 array (as returned by ``align``)."""
    for index, chip in enumerate(chips):
        if not isinstance(chip, np.ndarray) or chip.dtype != np.uint8 or chip.shape != (size, size, 3):
            shape = getattr(chip, "shape", None)
            raise InputError(f"{name}: chip {index} must be {size}×{size}×3 uint8 (from align()), got {shape}")


def load_arcface(
    model_path: Path,
    *,
    providers: Sequence[str],
    provider_options: Sequence[dict[str, object]] | None,
    sess_options: ort.SessionOptions | None = None,
) -> ArcFaceONNX:
    """Load an ONNX recognizer and check that insightface routed it to ArcFaceONNX (taskname ``recognition``).

    Raises:
        ConfigError: when the file is not an ArcFace-style recognizer.
    """
    model = get_insightface_model(model_path, providers=providers, provider_options=provider_options,
                                  sess_options=sess_options)
    if not isinstance(model, ArcFaceONNX) or getattr(model, "taskname", None) != "recognition":
        raise ConfigError(f"{model_path} is not an InsightFace recognition model (routed to {type(model).__name__})")
    return model


class ArcFaceRecognizer:
    """InsightFace ArcFace recognizer with ``norm_crop`` alignment (``arcface_r50`` / ``arcface_r100``)."""

    def __init__(self, name: str, model: ArcFaceONNX, *, weight_keys: tuple[str, ...], batch_size: int = 32) -> None:
        """Wrap a loaded ArcFaceONNX (see :func:`load_arcface`).

        Args:
            name: recognizer name (``arcface_r50`` or ``arcface_r100``).
            model: the insightface model.
            weight_keys: registry keys of the model file.
            batch_size: chips per network call in :meth:`embed`.
        """
        if batch_size < 1:
            raise ConfigError(f"{name}: batch_size must be ≥ 1, got {batch_size}")
        self.name = name
        self.weight_keys = weight_keys
        self.batch_size = batch_size
        self._model = model
        self.chip_size = int(model.input_size[0])
        if self.chip_size % 112 and self.chip_size % 128:
            raise ConfigError(f"{name}: input size {self.chip_size} has no ArcFace alignment template (112k or 128k)")
        output_dim = model.output_shape[-1]
        if not isinstance(output_dim, int):
            raise ConfigError(f"{name}: embedding size of {model.model_file} is not fixed ({model.output_shape})")
        self.embedding_dim = output_dim

    @cached_property
    def fingerprint(self) -> str:
        """sha256 of the ONNX file + alignment and normalisation parameters."""
        params = {"align": "insightface.norm_crop", "chip": self.chip_size, "mean": self._model.input_mean,
                  "std": self._model.input_std, "normalised": True}
        return make_fingerprint(self.name, [sha256_file(self._model.model_file)], params)

    def align(self, image: np.ndarray, face: Face) -> np.ndarray:
        """Aligned chip_size×chip_size×3 uint8 RGB chip from the 5 keypoints (zero border)."""
        return arcface_chip(image, face.kps, self.chip_size)

    def embed(self, chips: Sequence[np.ndarray]) -> np.ndarray:
        """(N, embedding_dim) float32 L2-normalised embeddings of N aligned RGB chips."""
        check_chips(chips, self.chip_size, self.name)
        if not chips:
            return np.zeros((0, self.embedding_dim), dtype=np.float32)
        parts = []
        for start in range(0, len(chips), self.batch_size):
            batch = [rgb_to_bgr(chip) for chip in chips[start:start + self.batch_size]]
            parts.append(np.asarray(self._model.get_feat(batch), dtype=np.float32).reshape(len(batch), -1))
        return l2_normalise(np.concatenate(parts))
