"""Ground truth of rendered posed views (``FaceFit.target_landmarks``): the rendered outline is the head model's
silhouette, the landmarks sit where the texture was registered, and the pose estimator reads the stated pose back
from them. These are the checks behind the estimator diagnosis of docs/GEOMETRIC.md."""

from __future__ import annotations

import numpy as np
import pytest

from frontalize.faces.headpose import fit_head_pose
from frontalize.geometric import GeometricFrontalizer, MeshTarget
from frontalize.geometric.camera import target_view


def _outline_column(alpha: np.ndarray, row: float, leftmost: bool) -> float:
    columns = np.nonzero(alpha[round(row)] > 0.5)[0]
    return float(columns.min() if leftmost else columns.max())


@pytest.mark.parametrize("yaw", [-45.0, 45.0])
def test_rendered_outline_is_the_model_silhouette(engine, astronaut_case, yaw: float) -> None:  # type: ignore[no-untyped-def]
    fit = engine.fit(astronaut_case.crop, astronaut_case.face)
    target = MeshTarget("pose", yaw=yaw)
    layers = engine.render_layers(fit, target)
    truth = fit.target_landmarks(target)
    far = [0, 1, 2, 3, 4] if yaw > 0 else [16, 15, 14, 13, 12]  # yaw > 0 turns the face to image left
    gaps = [abs(_outline_column(layers.face_alpha, truth[i, 1], yaw > 0) - truth[i, 0]) / fit.head.scale for i in far]
    assert max(gaps) < 0.1  # IOD; measured ≤ 0.06 on the shipped faces
    # Its frontal 3D points, by the ear, are hidden behind the cheek at 45°: well inside the outline.
    pose = fit.target_pose(target)
    plain = target_view(fit.source, (pose["pitch"], pose["yaw"], pose["roll"])).project(fit.points3d)
    inwards = (plain[far, 0] - truth[far, 0]) * (1.0 if yaw > 0 else -1.0) / fit.head.scale
    assert float(inwards.min()) > 0.2


def test_truth_at_the_source_pose_is_the_registered_landmarks(engine, astronaut_case) -> None:  # type: ignore[no-untyped-def]
    fit = engine.fit(astronaut_case.crop, astronaut_case.face)
    truth = fit.target_landmarks(MeshTarget("partial", alpha=0.0))  # the source pose itself
    error = np.linalg.norm(truth[17:] - fit.head.landmarks[17:], axis=1) / fit.head.scale
    assert float(np.median(error)) < 0.02  # the texture's features are where the 3D landmarks project


@pytest.mark.parametrize("yaw", [-45.0, -30.0, 15.0, 30.0, 45.0])
def test_estimator_reads_the_stated_pose_from_the_truth(landmarker, astronaut_case, yaw: float) -> None:  # type: ignore[no-untyped-def]
    # On the unadapted surface the face's 3D landmarks are the mean shape's: the renderer and the estimator share
    # one head model, so the estimator must read the stated pose exactly.
    engine = GeometricFrontalizer(landmarker, adapt=False)
    fit = engine.fit(astronaut_case.crop, astronaut_case.face)
    pitch, estimated, roll = fit_head_pose(fit.target_landmarks(MeshTarget("pose", yaw=yaw))).angles
    assert (pitch, estimated, roll) == pytest.approx((0.0, yaw, 0.0), abs=0.2)
