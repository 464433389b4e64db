"""Keypoint yaw proxy on synthetic projections of a 3-D face."""

from __future__ import annotations

import math

import numpy as np
import pytest

from frontalize.evaluation.posecues import keypoint_pose

# eyes, nose tip (in front of the face plane), mouth corners; x right, y down, z towards the camera; IOD = 1
FACE_3D = np.array([[-0.5, 0.0, 0.0], [0.5, 0.0, 0.0], [0.0, 0.55, 0.45], [-0.4, 1.1, 0.0], [0.4, 1.1, 0.0]])
ARCFACE_DST = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655],
                        [70.7299, 92.2041]])


def _project(yaw: float, roll: float = 0.0) -> np.ndarray:
    y, r = math.radians(yaw), math.radians(roll)
    rot_y = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    points = FACE_3D @ rot_y.T
    rot_z = np.array([[math.cos(r), -math.sin(r)], [math.sin(r), math.cos(r)]])
    return (points[:, :2] @ rot_z.T) * 60 + 100


def test_template_is_frontal() -> None:
    pitch, yaw, roll = keypoint_pose(ARCFACE_DST)
    assert math.isnan(pitch) and abs(yaw) < 1.0 and abs(roll) < 1.0


@pytest.mark.parametrize("true_yaw", [-60.0, -30.0, 0.0, 20.0, 45.0])
@pytest.mark.parametrize("roll", [0.0, 25.0])
def test_yaw_recovered_under_roll(true_yaw: float, roll: float) -> None:
    # _project turns the face by +angle towards image RIGHT (the nose tip, in front, moves to +x): the project's
    # convention calls that a negative yaw (yaw > 0 = towards image left)
    _, yaw, estimated_roll = keypoint_pose(_project(true_yaw, roll))
    assert yaw == pytest.approx(-true_yaw, abs=1.0)
    assert estimated_roll == pytest.approx(roll, abs=1.0)


def test_nose_left_of_the_midline_is_positive_yaw() -> None:
    points = ARCFACE_DST.copy()
    points[2, 0] -= 10.0  # nose tip towards image left: the face is turned towards image left
    assert keypoint_pose(points)[1] > 10.0
    mirrored = points.copy()
    mirrored[:, 0] = 112.0 - mirrored[:, 0]
    mirrored = mirrored[[1, 0, 2, 4, 3]]  # re-ordered by image position, as detectors report them
    assert keypoint_pose(mirrored)[1] < -10.0  # the mirror image turns the other way
    assert keypoint_pose(mirrored)[1] == pytest.approx(-keypoint_pose(points)[1], abs=1.5)


def test_degenerate_keypoints() -> None:
    same = np.zeros((5, 2))
    assert all(math.isnan(v) for v in keypoint_pose(same))
    upside = ARCFACE_DST.copy()
    upside[3:, 1] = 40.0  # mouth above the eyes
    assert math.isnan(keypoint_pose(upside)[1])
