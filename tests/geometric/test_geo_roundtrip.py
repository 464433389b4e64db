"""Round trip: the astronaut rendered at a known yaw, then frontalized back from its re-detected landmarks, matches
the original where both views show the face.

Metric: PSNR of the low frequencies (Gaussian σ = 2 px, so sub-pixel texture misregistration is not what is judged)
over the face pixels that the frontalized view takes from its own texture (face weight > 0.9, mirrored share < 0.1,
eroded by 4 px). Threshold :data:`ROUND_TRIP_PSNR` = 15 dB, chosen between what was measured for the round trips at
±20° and ±30° (15.9–19.3 dB) and for the posed views compared uncorrected (12.4–14.3 dB); the same posed views turned
the wrong way (the estimated yaw's sign flipped) score 10.6–12.2 dB, and so does the test's control.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from geometric.geo_helpers import best_detection  # tests/ is on sys.path (rootdir conftest)

from frontalize.geometric import MeshTarget

ROUND_TRIP_PSNR = 15.0


def low_frequency_psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    blurred_a = cv2.GaussianBlur(a, (0, 0), 2.0).astype(np.float64)
    blurred_b = cv2.GaussianBlur(b, (0, 0), 2.0).astype(np.float64)
    region = cv2.erode(mask.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    assert region.mean() > 0.1  # a real part of the face is compared
    error = np.mean((blurred_a - blurred_b)[region] ** 2)
    return float(10 * np.log10(255.0**2 / error))


@pytest.fixture(scope="module")
def source_fit(engine, astronaut_case):  # type: ignore[no-untyped-def]
    return engine.fit(astronaut_case.crop, astronaut_case.face)


@pytest.mark.parametrize("yaw", [-30.0, -20.0, 20.0, 30.0])
def test_posed_view_frontalized_back_matches_the_original(engine, detector, source_fit, astronaut_case,  # type: ignore[no-untyped-def]
                                                          yaw: float) -> None:
    original = astronaut_case.crop
    posed = engine.render(source_fit, [MeshTarget("pose", yaw=yaw)])[0]
    face = best_detection(detector, posed)
    assert face is not None
    posed_fit = engine.fit(posed, face)
    measured = posed_fit.head.angles[1]
    assert np.sign(measured) == np.sign(yaw) and abs(measured) > 0.5 * abs(yaw)
    back = engine.render_layers(posed_fit, MeshTarget())
    visible = (back.face_alpha > 0.9) & (back.mirror_share < 0.1)
    assert low_frequency_psnr(back.image, original, visible) >= ROUND_TRIP_PSNR
    assert low_frequency_psnr(posed, original, visible) < ROUND_TRIP_PSNR  # the round trip did the work
    pitch, _, roll = posed_fit.head.angles
    wrong = engine.render_layers(posed_fit, MeshTarget("pose", pitch=pitch, yaw=2.0 * measured, roll=roll))
    assert low_frequency_psnr(wrong.image, original, (wrong.face_alpha > 0.9) & (wrong.mirror_share < 0.1)) \
        < ROUND_TRIP_PSNR - 2.0  # the wrong direction fails clearly
