"""Helpers shared by the geometric engine tests."""

from __future__ import annotations

import numpy as np

from frontalize.faces.types import Face, FaceDetector


def best_detection(detector: FaceDetector, image: np.ndarray) -> Face | None:
    """The most confident face of an output (not the largest: a loose false box can be larger than the face)."""
    found = detector.detect(image)
    return max(found, key=lambda face: face.score) if found else None


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """PSNR in dB of two uint8 images, over ``mask`` when given."""
    diff = a.astype(np.float64) - b.astype(np.float64)
    if mask is not None:
        diff = diff[mask]
    return float(10 * np.log10(255.0**2 / max(float(np.mean(diff**2)), 1e-12)))
