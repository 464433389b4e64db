"""Offline dlib ResNet recognizer: same face (mirrored / resized / re-encoded) vs different people of t1."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from frontalize.errors import InputError
from frontalize.faces.dlib_recognizer import DlibRecognizer
from frontalize.faces.registry import build_detector, build_recognizer
from frontalize.faces.types import FaceDetector, FaceRecognizer


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return build_detector("retinaface_mnet", weights_root="/nonexistent")


@pytest.fixture(scope="module")
def recognizer() -> DlibRecognizer:
    built = build_recognizer("dlib_resnet", weights_root="/nonexistent", batch_size=4)
    assert isinstance(built, DlibRecognizer) and isinstance(built, FaceRecognizer)
    return built


def largest_chip(image: np.ndarray, detector: FaceDetector, recognizer: DlibRecognizer) -> np.ndarray:
    faces = detector.detect(image)
    assert faces, "no face found"
    return recognizer.align(image, faces[0])


def copies(image: np.ndarray) -> list[np.ndarray]:
    """The image mirrored, resized to 60 % and JPEG re-encoded at quality 40."""
    mirrored = np.ascontiguousarray(image[:, ::-1])
    small = cv2.resize(image, None, fx=0.6, fy=0.6, interpolation=cv2.INTER_AREA)
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 40])
    assert ok
    return [mirrored, small, cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED)]


def test_same_face_scores_far_above_different_people(
    detector: FaceDetector, recognizer: DlibRecognizer, t1_rgb: np.ndarray, astronaut_rgb: np.ndarray
) -> None:
    t1_faces = detector.detect(t1_rgb)
    different = recognizer.embed([recognizer.align(t1_rgb, face) for face in t1_faces])
    assert different.shape == (6, 128)
    between_people = different @ different.T
    off_diagonal = between_people[~np.eye(6, dtype=bool)]

    chips = [largest_chip(image, detector, recognizer) for image in [astronaut_rgb, *copies(astronaut_rgb)]]
    same = recognizer.embed(chips)
    same_person = (same[0] @ same[1:].T).min()
    assert same_person > 0.97
    assert same_person > off_diagonal.max() + 0.05, (same_person, off_diagonal.max())


def test_embeddings_are_normalised_batched_and_deterministic(
    detector: FaceDetector, recognizer: DlibRecognizer, t1_rgb: np.ndarray
) -> None:
    chips = [recognizer.align(t1_rgb, face) for face in detector.detect(t1_rgb)]
    assert all(chip.shape == (150, 150, 3) and chip.dtype == np.uint8 for chip in chips)
    batched = recognizer.embed(chips)  # batch_size 4 → two calls
    single = np.concatenate([recognizer.embed([chip]) for chip in chips])
    np.testing.assert_allclose(batched, single, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)
    assert recognizer.embed([]).shape == (0, 128)


def test_wrong_chip_size_is_rejected(recognizer: DlibRecognizer) -> None:
    with pytest.raises(InputError, match="150"):
        recognizer.embed([np.zeros((112, 112, 3), np.uint8)])


def test_fingerprint_names_model_and_alignment(recognizer: DlibRecognizer) -> None:
    assert recognizer.fingerprint.startswith("dlib_resnet:")
    assert recognizer.fingerprint == DlibRecognizer(batch_size=1).fingerprint  # batch size is not in it
    assert recognizer.weight_keys == () and recognizer.embedding_dim == 128
