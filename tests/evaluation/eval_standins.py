"""Small stand-in detector/recognizer for the evaluation tests (count their calls; no model files).

Images encode what the stand-ins "see": a face is found when the mean grey level is above 10; an image whose
top-left pixel is pure white is a "tight crop" that is only detected once padded (the constant black border
then sits in the corner). The embedding is the L2-normalised mean colour of the chip plus a constant, so images
of the same colour embed identically and different colours differ.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from frontalize.faces.types import Face


class CountingDetector:
    """Stand-in FaceDetector; ``calls`` counts detect() calls per det size (shared with_det_size copies)."""

    weight_keys: tuple[str, ...] = ()

    def __init__(self, name: str = "fake_det", det_size: int = 640, calls: Counter | None = None) -> None:
        self.name = name
        self.det_size = det_size
        self.calls: Counter[int] = calls if calls is not None else Counter()

    @property
    def fingerprint(self) -> str:
        return f"{self.name}:v1:{self.det_size}"

    def with_det_size(self, det_size: int) -> CountingDetector:
        return CountingDetector(self.name, det_size, self.calls)

    def detect(self, image: np.ndarray) -> list[Face]:
        self.calls[self.det_size] += 1
        if image.mean() <= 10 or tuple(image[0, 0]) == (255, 255, 255):
            return []
        h, w = image.shape[:2]
        kps = np.array([[0.35 * w, 0.4 * h], [0.65 * w, 0.4 * h], [0.5 * w, 0.55 * h], [0.38 * w, 0.72 * h],
                        [0.62 * w, 0.72 * h]])
        return [Face(box=np.array([0.1 * w, 0.1 * h, 0.9 * w, 0.9 * h]), score=0.99, kps=kps)]


class CountingRecognizer:
    """Stand-in FaceRecognizer; counts embed() calls and embedded chips."""

    weight_keys: tuple[str, ...] = ()
    embedding_dim = 4

    def __init__(self, name: str = "fake_rec", batch_size: int = 32) -> None:
        self.name = name
        self.batch_size = batch_size
        self.embed_calls = 0
        self.chips = 0

    @property
    def fingerprint(self) -> str:
        return f"{self.name}:v1"

    def align(self, image: np.ndarray, face: Face) -> np.ndarray:
        x1, y1, x2, y2 = (round(float(v)) for v in face.box)
        h, w = image.shape[:2]
        crop = image[max(0, y1):min(h, y2), max(0, x1):min(w, x2)]
        return cv2.resize(crop, (8, 8), interpolation=cv2.INTER_AREA)

    def embed(self, chips: Sequence[np.ndarray]) -> np.ndarray:
        self.embed_calls += 1
        self.chips += len(chips)
        vectors = np.array([[*c.reshape(-1, 3).mean(axis=0), 40.0] for c in chips], dtype=np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


class Factories:
    """detector_factory / recognizer_factory pair handing out shared counting stand-ins."""

    def __init__(self) -> None:
        self.detectors: dict[str, CountingDetector] = {}
        self.recognizers: dict[str, CountingRecognizer] = {}

    def detector(self, name: str, **kwargs: object) -> CountingDetector:
        return self.detectors.setdefault(name, CountingDetector(name, int(kwargs.get("det_size", 640))))

    def recognizer(self, name: str, **kwargs: object) -> CountingRecognizer:
        return self.recognizers.setdefault(name, CountingRecognizer(name))

    def as_kwargs(self) -> dict[str, object]:
        return {"detector_factory": self.detector, "recognizer_factory": self.recognizer}


def colour_image(path: Path, colour: tuple[int, int, int], *, size: int = 24, tight: bool = False) -> Path:
    """Write a flat-colour PNG (with a white top-left pixel when ``tight``)."""
    image = np.zeros((size, size, 3), np.uint8)
    image[:] = colour
    if tight:
        image[0, 0] = 255
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return path
