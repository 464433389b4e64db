"""Fixtures for the face-tool tests: real sample photos shipped by installed packages, synthetic weight trees."""

from __future__ import annotations

from pathlib import Path

import cv2
import insightface
import numpy as np
import pytest
from skimage import data

from frontalize.faces import synthetic
from frontalize.weights import weight_path

ONNX_WRITERS = {
    "insightface_det_10g": synthetic.write_scrfd_like,
    "insightface_2d106det": synthetic.write_landmark106_like,
    "insightface_1k3d68": synthetic.write_1k3d68_like,
    "insightface_w600k_r50": synthetic.write_arcface_like,
    "insightface_glintr100": synthetic.write_arcface_like,
}


@pytest.fixture(scope="session")
def t1_rgb() -> np.ndarray:
    """insightface's sample group photo (1280×886, 6 faces) as RGB."""
    path = Path(insightface.__file__).parent / "data" / "images" / "t1.jpg"
    image = cv2.imread(str(path))
    if image is None:
        pytest.fail(f"cannot read {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="session")
def astronaut_rgb() -> np.ndarray:
    """scikit-image's astronaut (512×512 RGB, one face)."""
    return np.ascontiguousarray(data.astronaut())


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A weights root holding the synthetic InsightFace ONNX stand-ins at their registry paths."""
    root = tmp_path_factory.mktemp("weights")
    for seed, (key, writer) in enumerate(ONNX_WRITERS.items()):
        writer(weight_path(key, root), seed=seed)
    return root


@pytest.fixture(scope="session")
def r50_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A weights root holding a deterministic random facexlib RetinaFace-R50 state dict (≈110 MB)."""
    root = tmp_path_factory.mktemp("weights_r50")
    synthetic.write_retinaface_r50_state_dict(weight_path("facexlib_retinaface_r50", root), seed=0)
    return root
