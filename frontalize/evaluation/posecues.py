"""Head-pose cue for datasets without pose annotation (LFW, generic): a yaw proxy from the 5 face keypoints.

The detectors give five keypoints (left eye, right eye, nose tip, left and right mouth corner, image-left/right
as InsightFace orders them). After undoing the in-plane roll (eye line horizontal), the nose tip sticks out of
the face plane by roughly D ≈ 0.45 × the inter-ocular distance, so turning the head by yaw moves it sideways by
D·sin(yaw) while the eyes come closer by cos(yaw). The offset of the nose from the face midline (halfway between
the eye midpoint and the mouth midpoint) divided by the observed eye distance is r = (D / IOD)·tan(|yaw|), hence
|yaw| = atan(|r| / 0.45). The sign is the project's (``frontalize.datasets.base.POSE_CONVENTION``, LivePortrait's):
yaw > 0 = the face turned towards image LEFT, i.e. the nose left of the face midline; roll > 0 = clockwise.

This is a coarse *proxy* (several degrees of error, saturating beyond ~60°), good for ranking images by
frontality and for 15° |yaw| bins; reports label it "estimated (keypoint proxy)". Pitch is not estimated from
five points: the nose's vertical position between eyes and mouth varies with expression (smiles lift the mouth
corners) as much as with pitch, so it is left unknown (NaN) rather than guessed. When a detector chain supplies a
learned pose (InsightFace 1k3d68, or the 68-point landmark estimator), that pose is used instead, pitch included.
"""

from __future__ import annotations

import math

import numpy as np

NOSE_DEPTH_OVER_IOD = 0.45


def keypoint_pose(kps: np.ndarray) -> tuple[float, float, float]:
    """Estimate (pitch, yaw, roll) in degrees from five keypoints; pitch is always NaN (see module docstring).

    Args:
        kps: (5, 2) keypoints x, y in pixels (left eye, right eye, nose, left mouth, right mouth).

    Returns:
        (NaN, yaw, roll), project convention (yaw > 0 = face towards image left); yaw is NaN too for degenerate
        keypoints (coincident eyes, mouth not below the eyes).
    """
    points = np.asarray(kps, dtype=np.float64).reshape(5, 2)
    eye_vec = points[1] - points[0]
    iod = float(np.hypot(*eye_vec))
    if iod < 1e-6:
        return float("nan"), float("nan"), float("nan")
    roll = math.atan2(eye_vec[1], eye_vec[0])
    cos_r, sin_r = math.cos(-roll), math.sin(-roll)
    rotation = np.array([[cos_r, -sin_r], [sin_r, cos_r]])
    eye_mid = points[:2].mean(axis=0)
    p = (points - eye_mid) @ rotation.T  # eye midpoint at the origin, eye line horizontal
    mouth_mid = p[3:5].mean(axis=0)
    if mouth_mid[1] <= 1e-6:
        return float("nan"), float("nan"), math.degrees(roll)
    midline_x = mouth_mid[0] / 2.0  # halfway between eye midpoint (x = 0) and mouth midpoint
    ratio = (midline_x - p[2, 0]) / iod  # nose left of the midline = face turned towards image left = yaw > 0
    yaw = math.degrees(math.atan(ratio / NOSE_DEPTH_OVER_IOD))
    return float("nan"), yaw, math.degrees(roll)
