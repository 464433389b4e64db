"""Fixtures of the pipeline tests: a folder-per-identity tree of real photos and an in-process CLI runner.

The photos are faces cut from the group photo shipped inside the insightface package (``t1.jpg``, 6 people) and
scikit-image's astronaut, re-saved at several sizes and formats — real faces, no download.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import insightface
import numpy as np
import pytest
import skimage.data
from pipeline_helpers import load_script, save

from frontalize.cli.inference import main
from frontalize.faces.registry import build_detector


def _cut(image: np.ndarray, box: np.ndarray, margin: float) -> np.ndarray:
    x1, y1, x2, y2 = (float(v) for v in box)
    side = max(x2 - x1, y2 - y1) * (1 + 2 * margin)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    top, left = int(max(0, cy - side / 2)), int(max(0, cx - side / 2))
    bottom, right = int(min(image.shape[0], cy + side / 2)), int(min(image.shape[1], cx + side / 2))
    return np.ascontiguousarray(image[top:bottom, left:right])


@pytest.fixture(scope="session")
def group_photo() -> np.ndarray:
    """insightface's t1.jpg (6 faces), RGB."""
    path = Path(insightface.__file__).parent / "data" / "images" / "t1.jpg"
    return np.ascontiguousarray(cv2.imread(str(path))[:, :, ::-1])


@pytest.fixture(scope="session")
def face_photos(group_photo: np.ndarray) -> dict[str, np.ndarray]:
    """Real face photos (RGB): the astronaut and three faces cut from t1.jpg with a wide margin."""
    detector = build_detector("retinaface_mnet", weights_root=".", det_size=640, threshold=0.6)
    faces = sorted(detector.detect(group_photo), key=lambda face: float(face.box[0]))
    assert len(faces) == 6
    photos = {"astronaut": np.ascontiguousarray(skimage.data.astronaut())}
    for index in (0, 2, 4):
        photos[f"t1_{index}"] = _cut(group_photo, faces[index].box, 0.9)
    return photos


def _resized(rgb: np.ndarray, side: int) -> np.ndarray:
    scale = side / max(rgb.shape[:2])
    size = (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)


@pytest.fixture(scope="session")
def identity_tree(tmp_path_factory: pytest.TempPathFactory, face_photos: dict[str, np.ndarray]) -> Path:
    """``<id>/<name>.<ext>`` tree: 4 identities × 2 images at different sizes and formats (8 inputs)."""
    root = tmp_path_factory.mktemp("identities")
    formats = [("jpg", "png"), ("png", "bmp"), ("jpg", "webp"), ("png", "jpg")]
    for (name, rgb), (first, second) in zip(sorted(face_photos.items()), formats):
        save(root / name / f"view_a.{first}", _resized(rgb, 400))
        save(root / name / f"view_b.{second}", _resized(rgb, 240))
    return root


@pytest.fixture()
def run_cli() -> Callable[..., int]:
    """Run ``inference.py`` in-process: ``run_cli(*args)`` → exit code (progress bar off)."""

    def runner(*args: str | Path) -> int:
        return main([*(str(a) for a in args), "--no-progress"])

    return runner


@pytest.fixture(scope="session")
def sample_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``scripts/make_samples.py`` output: real faces (t1.jpg, the astronaut) as generic-layout identities, their
    GT crops and the synthetic posed views at ±15/30/45° of yaw (``<id>/yaw±NN.jpg``, ``posed_views.json``)."""
    root = tmp_path_factory.mktemp("samples") / "data"
    load_script("make_samples").build_samples(root)
    return root


@pytest.fixture(scope="session")
def mesh_landmarker():  # type: ignore[no-untyped-def]
    """dlib's 68-point landmarker from the installed face-recognition-models (shared by the mesh tests)."""
    from frontalize.faces.registry import build_landmarker68

    return build_landmarker68()
