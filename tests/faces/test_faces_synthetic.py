"""Synthetic ONNX stand-ins: signatures, determinism and the geometry of their fixed layouts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from frontalize.faces import synthetic


def session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_scrfd_signature_and_output_layout(tmp_path: Path) -> None:
    sess = session(synthetic.write_scrfd_like(tmp_path / "det.onnx"))
    (inp,) = sess.get_inputs()
    assert inp.name == "input.1" and inp.shape[:2] == [1, 3] and all(isinstance(d, str) for d in inp.shape[2:])
    outputs = sess.get_outputs()
    assert [o.name for o in outputs] == [f"{k}_{s}" for k in ("score", "bbox", "kps") for s in (8, 16, 32)]
    blob = np.random.default_rng(0).uniform(-1, 1, (1, 3, 96, 64)).astype(np.float32)
    results = sess.run(None, {"input.1": blob})
    for index, (stride, width) in enumerate((s, w) for w in (1, 4, 10) for s in (8, 16, 32)):
        assert results[index].shape == ((96 // stride) * (64 // stride) * 2, width)  # SCRFD's anchor count
    np.testing.assert_array_equal(results[0], sess.run(None, {"input.1": blob})[0])


def test_writers_are_deterministic_per_seed(tmp_path: Path) -> None:
    a = synthetic.write_arcface_like(tmp_path / "a.onnx", seed=3).read_bytes()
    b = synthetic.write_arcface_like(tmp_path / "b.onnx", seed=3).read_bytes()
    c = synthetic.write_arcface_like(tmp_path / "c.onnx", seed=4).read_bytes()
    assert a == b and a != c
    assert synthetic.write_scrfd_like(tmp_path / "s0.onnx").read_bytes() != synthetic.write_scrfd_like(
        tmp_path / "s1.onnx", seed=1).read_bytes()


def test_arcface_signature(tmp_path: Path) -> None:
    sess = session(synthetic.write_arcface_like(tmp_path / "r.onnx", dim=128, input_size=128))
    assert sess.get_inputs()[0].shape[1:] == [3, 128, 128]
    out = sess.run(None, {"input.1": np.zeros((3, 3, 128, 128), np.float32)})[0]
    assert out.shape == (3, 128)
    with pytest.raises(ValueError, match="divisible by 16"):
        synthetic.write_arcface_like(tmp_path / "bad.onnx", input_size=120)


def test_template_106_geometry() -> None:
    points = synthetic.template_106()
    assert points.shape == (106, 2) and np.abs(points).max() < 1 / 1.5 + 0.05  # inside the box region
    left_eye, right_eye = points[[33, 35, 40, 39]].mean(0), points[[87, 89, 94, 93]].mean(0)
    assert left_eye[0] < 0 < right_eye[0] and abs(left_eye[1] - right_eye[1]) < 1e-6
    assert points[35, 1] < points[40, 1] and points[33, 0] < points[39, 0]  # top lid above bottom, corners L→R
    assert points[52, 0] < points[61, 0] and points[52, 1] > left_eye[1]  # mouth corners below the eyes
    assert points[0, 1] == points[:, 1].max()  # chin lowest
    assert points[1:17, 0].max() < 0 < points[17:33, 0].min()  # contour halves on their sides
    five = synthetic.five_points_from_106(points)
    assert five[0, 0] < five[1, 0] and five[1, 1] < five[2, 1] < five[3, 1]


def test_lp_landmark_signature_and_ratios(tmp_path: Path) -> None:
    sess = session(synthetic.write_lp_landmark_like(tmp_path / "landmark.onnx"))
    assert sess.get_inputs()[0].name == "input" and sess.get_inputs()[0].shape == [1, 3, 224, 224]
    image = np.random.default_rng(1).uniform(0, 1, (1, 3, 224, 224)).astype(np.float32)
    outputs = sess.run(None, {"input": image})
    assert len(outputs) == 3 and outputs[2].shape == (1, 406)
    points = outputs[2].reshape(203, 2)
    assert points.min() > 0 and points.max() < 1

    def ratio(a: int, b: int, c: int, d: int) -> float:
        return float(np.linalg.norm(points[a] - points[b]) / np.linalg.norm(points[c] - points[d]))

    left_eye, right_eye = ratio(6, 18, 0, 12), ratio(30, 42, 24, 36)
    lip = ratio(90, 102, 48, 66)
    assert 0.2 < left_eye < 0.6 and 0.2 < right_eye < 0.6 and 0.0 < lip < 0.3
    assert points[6, 1] < points[18, 1]  # upper lid above lower lid


def test_landmark_outputs_stay_near_template(tmp_path: Path) -> None:
    sess = session(synthetic.write_landmark106_like(tmp_path / "2d106.onnx"))
    blob = np.random.default_rng(2).uniform(-1, 1, (2, 3, 192, 192)).astype(np.float32)
    out = sess.run(None, {"data": blob})[0]
    assert out.shape == (2, 212)
    assert np.abs(out.reshape(2, 106, 2) - synthetic.template_106()).max() < 0.05
    assert not np.allclose(out[0], out[1])  # image-dependent
