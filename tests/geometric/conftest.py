"""Fixtures of the geometric engine tests: the offline detector, dlib's 68-point landmarker, the engine, and
pipeline-style 512 crops of the real faces shipped by installed packages (insightface's t1.jpg, the astronaut)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import insightface
import numpy as np
import pytest
from skimage import data

from frontalize.faces.types import Face
from frontalize.geometric import GeometricFrontalizer, transform_face
from frontalize.liveportrait.crop import crop_face


@dataclass(frozen=True)
class CropCase:
    """One face as the pipeline hands it to a backend: the 512 crop, its face in crop pixels, its roll offset."""

    name: str
    crop: np.ndarray
    face: Face
    roll_offset: float


@pytest.fixture(scope="session")
def detector():  # type: ignore[no-untyped-def]
    from frontalize.faces.registry import build_detector

    return build_detector("retinaface_mnet", weights_root="/nonexistent", det_size=640, threshold=0.5)


@pytest.fixture(scope="session")
def landmarker():  # type: ignore[no-untyped-def]
    from frontalize.faces.registry import build_landmarker68

    return build_landmarker68()


@pytest.fixture(scope="session")
def engine(landmarker) -> GeometricFrontalizer:  # type: ignore[no-untyped-def]
    return GeometricFrontalizer(landmarker)


def _photos() -> list[tuple[str, np.ndarray]]:
    bgr = cv2.imread(str(Path(insightface.__file__).parent / "data" / "images" / "t1.jpg"))
    return [("t1", cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)), ("astronaut", np.ascontiguousarray(data.astronaut()))]


@pytest.fixture(scope="session")
def crops(detector) -> list[CropCase]:  # type: ignore[no-untyped-def]
    """The 7 real faces, cropped like the pipeline (5-point LivePortrait crop, rotated upright).

    The photos are padded by reflection first, so no crop reaches outside its photo (a crop that does is black
    there, which is the pipeline's concern, not the engine's), and the crops are raised to at least 1 (t1 has truly
    black clothes), so a black pixel in an output can only come from the engine.
    """
    cases = []
    for name, photo in _photos():
        padded = cv2.copyMakeBorder(photo, 256, 256, 256, 256, cv2.BORDER_REFLECT_101)
        faces = sorted(detector.detect(photo), key=lambda f: float(f.box[0]))
        for index, face in enumerate(faces):
            face = face.transformed(1.0, (256.0, 256.0))
            crop = crop_face(padded, face.kps)
            image = np.maximum(crop.image, 1)
            cases.append(CropCase(f"{name}_{index}", image, transform_face(face, crop.M_o2c), crop.roll_offset))
    return cases


@pytest.fixture(scope="session")
def astronaut_case(crops) -> CropCase:  # type: ignore[no-untyped-def]
    return next(case for case in crops if case.name.startswith("astronaut"))
