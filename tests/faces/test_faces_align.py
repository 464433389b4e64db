"""Padding helpers, ArcFace chips and detection with retry (fake detector for the order, real one on tight crops)."""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
import pytest
from insightface.utils.face_align import arcface_dst

from frontalize.errors import ConfigError
from frontalize.faces.align import arcface_chip, detect_with_retry, pad_image, unpad_faces
from frontalize.faces.registry import build_detector
from frontalize.faces.types import Face, FaceDetector

KPS = np.array([[30, 40], [60, 40], [45, 55], [33, 70], [57, 70]], np.float32)


def test_pad_and_unpad_round_trip() -> None:
    image = np.arange(20 * 40 * 3, dtype=np.uint8).reshape(20, 40, 3)
    padded, offset = pad_image(image, 0.25)
    assert offset == (10, 10) and padded.shape == (40, 60, 3)
    np.testing.assert_array_equal(padded[10:30, 10:50], image)
    assert padded[:10].max() == 0  # constant black border
    face = Face(box=[12, 14, 30, 28], score=0.9, kps=KPS + 10)
    back = unpad_faces([face], offset)[0]
    np.testing.assert_allclose(back.box, [2, 4, 20, 18])
    np.testing.assert_allclose(back.kps, KPS)


def test_pad_modes_and_errors() -> None:
    image = np.random.default_rng(0).integers(0, 255, (8, 8, 3), dtype=np.uint8)
    reflected, _ = pad_image(image, 0.25, mode="reflect")
    np.testing.assert_array_equal(reflected[2, 1], image[0, 1])  # mirrored without repeating the edge
    wide, _ = pad_image(image, 2.0, mode="reflect")  # wider than the image: falls back to replicate
    assert wide.shape == (40, 40, 3)
    assert pad_image(image, 0.0)[1] == (0, 0)
    with pytest.raises(ConfigError):
        pad_image(image, -0.1)
    with pytest.raises(ConfigError):
        pad_image(image, 0.1, mode="wrap")  # type: ignore[arg-type]


def test_arcface_chip_puts_keypoints_on_template() -> None:
    ys, xs = np.mgrid[:256, :256]
    image = np.stack([xs, ys, np.zeros_like(xs)], axis=-1).astype(np.uint8)  # R = x, G = y
    kps = arcface_dst * 1.7 + np.array([5.0, 8.0])  # the template, scaled and moved
    chip = arcface_chip(image, kps, 112)
    assert chip.shape == (112, 112, 3) and chip.dtype == np.uint8
    for template_point, source_point in zip(arcface_dst, kps):
        col, row = np.round(template_point).astype(int)
        np.testing.assert_allclose(chip[row, col, :2], source_point, atol=2.0)  # each keypoint lands on the template
    with pytest.raises(ConfigError):
        arcface_chip(image, kps, 100)


@dataclass
class ScriptedDetector:
    """Finds a face only for attempts listed in ``succeed_on`` (label-like keys), recording every call."""

    succeed_on: set[tuple[int, bool]]
    det_size: int = 640
    calls: list[tuple[int, tuple[int, int]]] = field(default_factory=list)
    name: str = "scripted"
    weight_keys: tuple[str, ...] = ()
    fingerprint: str = "scripted"

    def with_det_size(self, det_size: int) -> ScriptedDetector:
        return ScriptedDetector(self.succeed_on, det_size, self.calls)

    def detect(self, image: np.ndarray) -> list[Face]:
        self.calls.append((self.det_size, image.shape[:2]))
        padded = image.shape[:2] != (100, 80)
        if (self.det_size, padded) in self.succeed_on:
            offset = 15 if padded else 0
            return [Face(box=[offset + 10, offset + 10, offset + 70, offset + 90], score=0.9, kps=KPS + offset)]
        return []


@pytest.mark.parametrize(
    ("succeed_on", "label", "n_calls"),
    [({(640, False)}, "plain", 1), ({(640, True)}, "padded", 2), ({(448, False)}, "plain@448", 3),
     ({(448, True)}, "padded@448", 4), (set(), "none", 4)],
)
def test_retry_order_and_labels(succeed_on: set, label: str, n_calls: int) -> None:
    detector = ScriptedDetector(succeed_on)
    assert isinstance(detector, FaceDetector)
    image = np.zeros((100, 80, 3), np.uint8)
    faces, found = detect_with_retry(detector, image, pad_fraction=0.15, retry_sizes=(448,))
    assert found == label and len(detector.calls) == n_calls
    if faces:
        np.testing.assert_allclose(faces[0].kps, KPS)  # padded results are mapped back
    assert detector.calls[0] == (640, (100, 80))


def test_retry_can_be_switched_off() -> None:
    detector = ScriptedDetector({(640, True)})
    assert detect_with_retry(detector, np.zeros((100, 80, 3), np.uint8), pad_fraction=0.0, retry_sizes=()) == (
        [], "none")
    assert len(detector.calls) == 1


def test_pad_first_swaps_plain_and_padded() -> None:
    detector = ScriptedDetector({(640, False), (640, True)})
    faces, label = detect_with_retry(detector, np.zeros((100, 80, 3), np.uint8), pad_first=True)
    assert label == "padded" and detector.calls == [(640, (130, 110))]
    np.testing.assert_allclose(faces[0].kps, KPS)


def crop_inside(image: np.ndarray, face: Face, inset: float, margin_kps: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Tight crop: the face box shrunk by ``inset`` of its size per side, or (``margin_kps``) the keypoints'
    extent shrunk by ``inset`` × eye distance. Returns (crop, true keypoints in crop coordinates)."""
    if margin_kps:
        grow = -inset * float(np.linalg.norm(face.kps[1] - face.kps[0]))
        corners = np.concatenate([face.kps.min(axis=0) - grow, face.kps.max(axis=0) + grow])
    else:
        size = np.tile(face.box[2:] - face.box[:2], 2)
        corners = face.box + np.array([1, 1, -1, -1]) * inset * size
    x1, y1 = np.floor(corners[:2]).astype(int).clip(0)
    x2, y2 = np.ceil(corners[2:]).astype(int)
    return np.ascontiguousarray(image[y1:y2, x1:x2]), face.kps - [x1, y1]


@pytest.fixture(scope="module")
def real_sources(t1_rgb: np.ndarray, astronaut_rgb: np.ndarray) -> tuple[FaceDetector, list[tuple[np.ndarray, Face]]]:
    detector = build_detector("retinaface_mnet", weights_root=".")
    sources = [(t1_rgb, face) for face in detector.detect(t1_rgb)]
    sources.append((astronaut_rgb, detector.detect(astronaut_rgb)[0]))
    return detector, sources


def test_retry_recovers_tight_crops(real_sources) -> None:
    """Faces cropped inside their keypoints: count hits of the plain pass and of the full retry."""
    detector, sources = real_sources
    plain_hits, retry_hits, recovered = 0, 0, []
    for image, face in sources:
        crop, _ = crop_inside(image, face, 0.1, margin_kps=True)
        plain_hits += bool(detector.detect(crop))
        faces, label = detect_with_retry(detector, crop)
        retry_hits += bool(faces)
        if label.startswith("padded"):
            recovered.append((faces[0], crop.shape[:2]))
    # measured: plain 5/7, with retry 6/7 (one crop is recovered by the padded pass)
    assert retry_hits > plain_hits, f"plain {plain_hits}/{len(sources)}, with retry {retry_hits}/{len(sources)}"
    for face, (height, width) in recovered:  # the recovered face sits on the crop, eyes above the mouth
        centre = (face.box[:2] + face.box[2:]) / 2
        assert 0 < centre[0] < width and 0 < centre[1] < height
        assert face.kps[:2, 1].max() < face.kps[3:, 1].min()


def test_padding_first_improves_keypoints_on_tight_crops(real_sources) -> None:
    """Crops 15 % inside the face box, upscaled to 512: padded keypoints are closer to the truth than plain ones."""
    detector, sources = real_sources
    errors: dict[bool, list[float]] = {False: [], True: []}
    for image, face in sources:
        crop, true_kps = crop_inside(image, face, 0.15)
        scale = 512 / max(crop.shape[:2])
        crop = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
        true_kps = true_kps * scale
        eye_distance = float(np.linalg.norm(true_kps[1] - true_kps[0]))
        for pad_first in (False, True):
            faces, _ = detect_with_retry(detector, crop, pad_first=pad_first)
            errors[pad_first].append(float(np.abs(faces[0].kps - true_kps).max()) / eye_distance)
    assert np.mean(errors[True]) < np.mean(errors[False]), errors
    assert max(errors[True]) < 0.5
