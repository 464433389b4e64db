"""InsightFace routes (SCRFD, ArcFaceONNX, Landmark 2d106 / 3d68) on the synthetic ONNX stand-ins."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest
from insightface.model_zoo import get_model
from insightface.model_zoo.arcface_onnx import ArcFaceONNX
from insightface.model_zoo.landmark import Landmark
from insightface.model_zoo.scrfd import SCRFD

from frontalize.errors import ConfigError, InputError
from frontalize.faces import synthetic
from frontalize.faces.arcface import ArcFaceRecognizer
from frontalize.faces.registry import build_detector, build_landmarker106, build_pose_estimator, build_recognizer
from frontalize.faces.scrfd import ScrfdDetector
from frontalize.faces.types import FaceDetector, FaceRecognizer, Landmarker106
from frontalize.weights import weight_path


def test_synthetic_models_route_to_the_right_insightface_class(synthetic_root: Path) -> None:
    expected = {"insightface_det_10g": SCRFD, "insightface_w600k_r50": ArcFaceONNX,
                "insightface_2d106det": Landmark, "insightface_1k3d68": Landmark}
    for key, cls in expected.items():
        model = get_model(str(weight_path(key, synthetic_root)), providers=["CPUExecutionProvider"])
        assert type(model) is cls, key
    assert get_model(str(weight_path("insightface_1k3d68", synthetic_root))).taskname == "landmark_3d_68"
    assert get_model(str(weight_path("insightface_2d106det", synthetic_root))).taskname == "landmark_2d_106"


@pytest.mark.parametrize("batched", [False, True])
def test_scrfd_detects_one_centred_face(tmp_path: Path, batched: bool, astronaut_rgb: np.ndarray) -> None:
    path = synthetic.write_scrfd_like(weight_path("insightface_det_10g", tmp_path), batched=batched)
    detector = build_detector("scrfd_10g", weights_root=tmp_path, det_size=320)
    assert isinstance(detector, ScrfdDetector) and isinstance(detector, FaceDetector)
    assert detector._model.batched is batched and detector._model.use_kps
    faces = detector.detect(astronaut_rgb)
    assert len(faces) == 1
    centre = (faces[0].box[:2] + faces[0].box[2:]) / 2
    np.testing.assert_allclose(centre, [256, 256], atol=20)
    kps = faces[0].kps
    assert kps[0, 0] < kps[1, 0] and kps[:2, 1].max() < kps[3:, 1].min()
    assert path.is_file()


def test_scrfd_follows_content_not_canvas_and_skips_flat_images(synthetic_root: Path, t1_rgb: np.ndarray) -> None:
    detector = build_detector("scrfd_10g", weights_root=synthetic_root, threshold=0.1)
    wide = detector.detect(t1_rgb)  # letterboxed into the top of the 640 canvas
    assert len(wide) == 1
    centre = (wide[0].box[:2] + wide[0].box[2:]) / 2
    np.testing.assert_allclose(centre, [640, 443], atol=40)
    assert np.all(wide[0].box[:2] >= 0) and wide[0].box[3] <= t1_rgb.shape[0]
    tall = detector.with_det_size(448).detect(np.ascontiguousarray(t1_rgb[:, :300]))
    assert len(tall) == 1 and tall[0].box[2] <= 300
    assert detector.detect(np.full((200, 300, 3), 128, np.uint8)) == []
    assert detector.detect(np.zeros((64, 64, 3), np.uint8)) == []
    assert detector.detect(np.full((3, 2000, 3), 200, np.uint8)) == []  # would letterbox to 0 rows


def test_scrfd_fingerprint_changes_with_file_and_size(tmp_path: Path, synthetic_root: Path) -> None:
    detector = build_detector("scrfd_10g", weights_root=synthetic_root)
    assert detector.fingerprint == build_detector("scrfd_10g", weights_root=synthetic_root).fingerprint
    assert detector.fingerprint != detector.with_det_size(448).fingerprint
    synthetic.write_scrfd_like(weight_path("insightface_det_10g", tmp_path), seed=7)
    assert build_detector("scrfd_10g", weights_root=tmp_path).fingerprint != detector.fingerprint


def test_arcface_shapes_determinism_and_batching(synthetic_root: Path, astronaut_rgb: np.ndarray) -> None:
    recognizer = build_recognizer("arcface_r50", weights_root=synthetic_root, batch_size=2)
    assert isinstance(recognizer, ArcFaceRecognizer) and isinstance(recognizer, FaceRecognizer)
    assert recognizer.embedding_dim == 512 and recognizer.weight_keys == ("insightface_w600k_r50",)
    face = build_detector("scrfd_10g", weights_root=synthetic_root).detect(astronaut_rgb)[0]
    chip = recognizer.align(astronaut_rgb, face)
    assert chip.shape == (112, 112, 3) and chip.dtype == np.uint8
    chips = [chip, cv2.GaussianBlur(chip, (3, 3), 0), np.ascontiguousarray(chip[:, ::-1]), chip[::-1].copy(), chip]
    batched = recognizer.embed(chips)  # 3 network calls of ≤ 2
    single = np.concatenate([recognizer.embed([c]) for c in chips])
    assert batched.shape == (5, 512) and batched.dtype == np.float32
    np.testing.assert_allclose(batched, single, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(batched[0], batched[4])
    assert batched[0] @ batched[1] > batched[0] @ batched[3]  # a blurred chip stays closer than a flipped one
    assert recognizer.embed([]).shape == (0, 512)
    with pytest.raises(InputError):
        recognizer.embed([np.zeros((150, 150, 3), np.uint8)])


def test_arcface_rgb_boundary(synthetic_root: Path) -> None:
    """Chips are RGB; insightface's own ``get_feat`` expects BGR. Our embedding of an RGB chip must equal
    insightface's embedding of the same chip in BGR order (deleting the channel swap fails this), and must differ
    from its embedding of the chip passed unswapped."""
    recognizer = build_recognizer("arcface_r100", weights_root=synthetic_root)
    reference = get_model(str(weight_path("insightface_glintr100", synthetic_root)), providers=["CPUExecutionProvider"])
    assert isinstance(reference, ArcFaceONNX)
    rng = np.random.default_rng(0)
    chips = [rng.integers(0, 256, (112, 112, 3), dtype=np.uint8) for _ in range(3)]
    ours = recognizer.embed(chips)
    for chip, embedding in zip(chips, ours):
        bgr = np.ascontiguousarray(chip[..., ::-1])
        expected = np.asarray(reference.get_feat([bgr]), dtype=np.float32).reshape(-1)
        expected /= np.linalg.norm(expected)
        np.testing.assert_allclose(embedding, expected, atol=1e-5)
        unswapped = np.asarray(reference.get_feat([chip]), dtype=np.float32).reshape(-1)
        assert float(embedding @ unswapped / np.linalg.norm(unswapped)) < 0.9999
    assert recognizer.fingerprint != build_recognizer("arcface_r50", weights_root=synthetic_root).fingerprint


def test_landmarks106_geometry(synthetic_root: Path, astronaut_rgb: np.ndarray) -> None:
    detector = build_detector("scrfd_10g", weights_root=synthetic_root)
    landmarker = build_landmarker106(weights_root=synthetic_root)
    assert isinstance(landmarker, Landmarker106)
    face = landmarker.with_landmarks(astronaut_rgb, detector.detect(astronaut_rgb))[0]
    points = face.landmarks106
    assert points is not None and points.shape == (106, 2)
    left_eye, right_eye = points[[33, 35, 40, 39]].mean(0), points[[87, 89, 94, 93]].mean(0)
    lip = points[[52, 61]].mean(0)
    assert left_eye[0] < right_eye[0] and max(left_eye[1], right_eye[1]) < lip[1]
    x1, _, x2, y2 = face.box
    assert points[:, 0].min() >= x1 - 2 and points[:, 0].max() <= x2 + 2 and points[:, 1].max() <= y2 + 2
    np.testing.assert_allclose(left_eye, face.kps[0], atol=6)  # consistent with the detector's 5 points
    np.testing.assert_allclose(landmarker.landmarks(astronaut_rgb, face), points)


def test_pose_from_1k3d68(tmp_path: Path, astronaut_rgb: np.ndarray) -> None:
    synthetic.write_1k3d68_like(weight_path("insightface_1k3d68", tmp_path), yaw_degrees=25.0)
    synthetic.write_scrfd_like(weight_path("insightface_det_10g", tmp_path))
    face = build_detector("scrfd_10g", weights_root=tmp_path).detect(astronaut_rgb)[0]
    estimator = build_pose_estimator(weights_root=tmp_path)
    pitch, yaw, roll = estimator.with_pose(astronaut_rgb, [face])[0].pose
    assert abs(yaw - 25.0) < 3 and abs(pitch) < 3 and abs(roll) < 3


def copy_weight(source_root: Path, source_key: str, target_root: Path, target_key: str) -> None:
    target = weight_path(target_key, target_root)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(weight_path(source_key, source_root), target)


def test_wrong_model_file_is_a_config_error(tmp_path: Path, synthetic_root: Path) -> None:
    copy_weight(synthetic_root, "insightface_w600k_r50", tmp_path, "insightface_det_10g")
    with pytest.raises(ConfigError, match="not an InsightFace SCRFD"):
        build_detector("scrfd_10g", weights_root=tmp_path)
    copy_weight(synthetic_root, "insightface_det_10g", tmp_path, "insightface_2d106det")
    with pytest.raises(ConfigError, match="landmark_2d_106"):
        build_landmarker106(weights_root=tmp_path)


@pytest.mark.gpu
@pytest.mark.skipif("CUDAExecutionProvider" not in ort.get_available_providers(),
                    reason="needs onnxruntime-gpu with a CUDA device")
def test_cuda_provider_matches_cpu(synthetic_root: Path, astronaut_rgb: np.ndarray) -> None:
    cpu = build_detector("scrfd_10g", weights_root=synthetic_root).detect(astronaut_rgb)
    gpu = build_detector("scrfd_10g", weights_root=synthetic_root, device="cuda:0").detect(astronaut_rgb)
    np.testing.assert_allclose(gpu[0].kps, cpu[0].kps, atol=0.5)
    recognizer = build_recognizer("arcface_r50", weights_root=synthetic_root, device="cuda")
    chip = recognizer.align(astronaut_rgb, cpu[0])
    reference = build_recognizer("arcface_r50", weights_root=synthetic_root).embed([chip])
    np.testing.assert_allclose(recognizer.embed([chip]), reference, atol=1e-3)
