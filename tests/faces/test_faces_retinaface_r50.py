"""facexlib RetinaFace-R50 on a deterministic random state dict (runs, shapes, strict loading)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from frontalize.errors import WeightsMissingError
from frontalize.faces.registry import build_detector
from frontalize.faces.retinaface_r50 import RetinaFaceR50Detector, load_facexlib_r50, strip_module_prefix
from frontalize.weights import weight_path


@pytest.fixture(scope="module")
def detector(r50_root: Path) -> RetinaFaceR50Detector:
    built = build_detector("retinaface_r50", weights_root=r50_root, det_size=160, threshold=0.5)
    assert isinstance(built, RetinaFaceR50Detector)
    return built


def test_runs_and_returns_faces_in_image_coordinates(detector: RetinaFaceR50Detector, astronaut_rgb) -> None:
    faces = detector.detect(astronaut_rgb)
    assert 0 < len(faces) < 100  # random weights: some boxes, not thousands
    areas = [face.area for face in faces]
    assert areas == sorted(areas, reverse=True)
    for face in faces:
        assert face.box.shape == (4,) and face.kps.shape == (5, 2)
        assert np.isfinite(face.box).all() and np.isfinite(face.kps).all()
        assert 0.5 < face.score <= 1.0
    boxes = np.stack([face.box for face in faces])
    assert boxes.max() > 160  # mapped back from the 160 network input to the 512 image


def test_deterministic_with_det_size_and_fingerprint(detector: RetinaFaceR50Detector, astronaut_rgb) -> None:
    first = detector.detect(astronaut_rgb)
    again = detector.detect(astronaut_rgb)
    np.testing.assert_array_equal(np.stack([f.box for f in first]), np.stack([f.box for f in again]))
    other = detector.with_det_size(128)
    assert other.det_size == 128 and other._network is detector._network
    assert other.fingerprint != detector.fingerprint
    assert detector.fingerprint.startswith("retinaface_r50:")


def test_module_prefix_and_strict_loading(tmp_path: Path, r50_root: Path) -> None:
    state = torch.load(weight_path("facexlib_retinaface_r50", r50_root), map_location="cpu", weights_only=True)
    assert strip_module_prefix({"module.a.module.b": 1, "c": 2}) == {"a.module.b": 1, "c": 2}
    prefixed = tmp_path / "prefixed.pth"
    torch.save({f"module.{key}": value for key, value in state.items()}, prefixed)
    network = load_facexlib_r50(prefixed)
    key = "ClassHead.0.conv1x1.bias"
    torch.testing.assert_close(network.state_dict()[key], state[key])
    broken = tmp_path / "broken.pth"
    torch.save({key: value for key, value in state.items() if not key.startswith("ssh1")}, broken)
    with pytest.raises(WeightsMissingError, match=r"missing .*ssh1"):
        load_facexlib_r50(broken)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsMissingError, match="cannot read"):
        load_facexlib_r50(garbage)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu(r50_root: Path, detector: RetinaFaceR50Detector, astronaut_rgb) -> None:
    on_gpu = build_detector("retinaface_r50", weights_root=r50_root, det_size=160, device="cuda:0")
    cpu_boxes = np.stack([face.box for face in detector.detect(astronaut_rgb)])
    gpu_boxes = np.stack([face.box for face in on_gpu.detect(astronaut_rgb)])
    assert cpu_boxes.shape == gpu_boxes.shape
    np.testing.assert_allclose(gpu_boxes, cpu_boxes, atol=1.0)
