"""Head pose from 68 landmarks: known angles from posed mean-shape projections, sign conventions (LivePortrait,
BIWI, mirroring), the real dlib chain on shipped photos, and the refusals."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from frontalize.datasets.biwi import rotation_to_euler
from frontalize.errors import InputError
from frontalize.faces.headpose import (
    UNFIT_STATUS,
    FitLimits,
    HeadPoseEstimator,
    LandmarkFitError,
    contour_weights,
    euler_from_rotation,
    fit_head_pose,
    marched_model,
    pose_from_biwi_matrix,
    rotation_from_euler,
)
from frontalize.faces.meanshape68 import MIRROR_68, RAW_SHA256, raw_sha256, reference_shape
from frontalize.liveportrait.geometry import rotation_matrix

SCALE = 100.0  # pixels per inter-ocular distance of the synthetic projections
CENTRE = np.array([256.0, 256.0])


def lp_rotation(pitch: float, yaw: float, roll: float) -> np.ndarray:
    """LivePortrait's row-vector rotation for one face, as numpy."""
    angles = [torch.tensor([float(v)], dtype=torch.float64) for v in (pitch, yaw, roll)]
    return rotation_matrix(*angles)[0].numpy()


def landmarker_view(head_to_camera: np.ndarray, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    """68 image points of the mean shape turned by a column-vector rotation, as a 300-W landmarker reports them:
    the far side's upper contour on the silhouette (contour marching), plus Gaussian noise (pixels)."""
    model = marched_model(head_to_camera)
    points = SCALE * (model @ head_to_camera.T)[:, :2] + CENTRE
    return points + np.random.default_rng(seed).normal(0.0, noise, points.shape)


def test_rotation_matches_liveportrait_and_decomposes() -> None:
    for angles in [(10.0, -35.0, 5.0), (-25.0, 40.0, -12.0), (0.0, 0.0, 30.0), (30.0, 0.0, 0.0)]:
        column = rotation_from_euler(*angles)
        np.testing.assert_allclose(column, lp_rotation(*angles).T, atol=1e-12)
        assert euler_from_rotation(column) == pytest.approx(angles, abs=1e-9)


def test_mean_shape_transcription_and_symmetry() -> None:
    assert raw_sha256() == RAW_SHA256
    shape = reference_shape()
    np.testing.assert_allclose(shape[list(MIRROR_68)] * [-1.0, 1.0, 1.0], shape, atol=1e-12)
    iod = np.linalg.norm(shape[42:48].mean(0) - shape[36:42].mean(0))
    assert iod == pytest.approx(1.0)
    assert shape[30, 2] < shape[36, 2] < shape[0, 2]  # nose tip nearest the viewer, jaw ends furthest (z into screen)


@pytest.mark.parametrize("pitch", [-20.0, 0.0, 20.0])
@pytest.mark.parametrize("yaw", [-45.0, -30.0, -10.0, 0.0, 10.0, 30.0, 45.0])
@pytest.mark.parametrize("roll", [-15.0, 0.0, 15.0])
def test_recovers_known_angles_posed_with_liveportrait(pitch: float, yaw: float, roll: float) -> None:
    # Posed with LivePortrait's own rotation (row vectors: X @ R) and 1 px noise at 100 px per IOD.
    rotation = lp_rotation(pitch, yaw, roll).T
    fit = fit_head_pose(landmarker_view(rotation, noise=1.0, seed=int(abs(yaw) + abs(pitch))))
    assert fit.angles == pytest.approx((pitch, yaw, roll), abs=1.5)
    assert fit.scale == pytest.approx(SCALE, rel=0.02)
    assert fit.residual < 0.03


def test_plain_projection_without_a_silhouette_contour() -> None:
    # The far contour at its frontal 3D points instead of the silhouette: the marching assumption is off by the
    # difference between the two, which is small at small yaw.
    rotation = rotation_from_euler(-12.0, 8.0, 4.0)
    points = SCALE * (reference_shape() @ rotation.T)[:, :2] + CENTRE
    assert fit_head_pose(points).angles == pytest.approx((-12.0, 8.0, 4.0), abs=1.5)


def test_far_contour_fades_out_of_the_fit_past_the_fold_over() -> None:
    # Full weight up to 10° of yaw, none from 20°, on the whole contour of the side the nose turns to (0–7 for
    # yaw > 0, 9–16 for yaw < 0); the near side and the inner points keep weight 1. Mirrored poses mirror the weights.
    for yaw, far_weight in [(5.0, 1.0), (10.0, 1.0), (15.0, 0.5), (20.0, 0.0), (45.0, 0.0)]:
        weights = contour_weights(yaw)
        assert np.all(weights[:8] == far_weight) and np.all(weights[8:] == 1.0), yaw
        np.testing.assert_array_equal(contour_weights(-yaw), weights[list(MIRROR_68)])


@pytest.mark.parametrize("yaw", [-45.0, -30.0, 30.0, 45.0])
def test_far_contour_off_the_silhouette_does_not_bias_yaw(yaw: float) -> None:
    # A landmarker that does not follow the far silhouette: its far contour (upper 0–4 and lower 5–7, or their
    # mirrors) 0.2 IOD further out than the silhouette, as dlib puts it on renders at 45° (docs/GEOMETRIC.md).
    # With the far contour fitted this read about 6° too little turn; faded out, the rest of the face gives the yaw.
    points = landmarker_view(rotation_from_euler(0.0, yaw, 0.0), noise=0.5, seed=3)
    far = list(range(8)) if yaw > 0 else list(range(9, 17))
    points[far, 0] += (-1.0 if yaw > 0 else 1.0) * 0.2 * SCALE  # outwards: towards the side the face turns to
    assert fit_head_pose(points).angles[1] == pytest.approx(yaw, abs=1.0)


def test_signs_follow_the_liveportrait_frame() -> None:
    # yaw > 0: nose tip (30) left of the eye midpoint; pitch > 0: nose tip lower (looking down); roll > 0: the
    # eye line turns clockwise on screen (right eye lower).
    points = landmarker_view(lp_rotation(0.0, 25.0, 0.0).T)
    assert points[30, 0] < (points[36:48, 0].mean()) and fit_head_pose(points).angles[1] > 20
    frontal = landmarker_view(lp_rotation(0.0, 0.0, 0.0).T)
    down = landmarker_view(lp_rotation(20.0, 0.0, 0.0).T)
    assert (down[30, 1] - down[36:48, 1].mean()) > (frontal[30, 1] - frontal[36:48, 1].mean())
    assert fit_head_pose(down).angles[0] > 15
    tilted = landmarker_view(lp_rotation(0.0, 0.0, 10.0).T)
    assert tilted[42:48, 1].mean() > tilted[36:42, 1].mean() and fit_head_pose(tilted).angles[2] > 8


@pytest.mark.parametrize("angles", [(12.0, 30.0, 8.0), (-15.0, -40.0, -5.0), (5.0, 10.0, -20.0)])
def test_mirroring_flips_yaw_and_roll(angles: tuple[float, float, float]) -> None:
    points = landmarker_view(rotation_from_euler(*angles), noise=0.5)
    mirrored = points[list(MIRROR_68)] * [-1.0, 1.0] + [511.0, 0.0]
    pitch, yaw, roll = fit_head_pose(points).angles
    m_pitch, m_yaw, m_roll = fit_head_pose(mirrored).angles
    assert (m_pitch, m_yaw, m_roll) == pytest.approx((pitch, -yaw, -roll), abs=0.5)


def biwi_file_matrix(pitch: float, yaw: float, roll: float) -> np.ndarray:
    """The matrix a BIWI pose file holds for FSA-Net angles (FSA-Net reads R = Mᵀ = Rz(−roll)·Ry(−yaw)·Rx(pitch))."""
    return (rotation_from_euler(pitch, 0, 0).T @ rotation_from_euler(0, -yaw, 0).T @ rotation_from_euler(0, 0, -roll).T)


@pytest.mark.parametrize("fsa", [(0.0, 30.0, 0.0), (20.0, 0.0, 0.0), (0.0, 0.0, 15.0), (10.0, -25.0, 6.0),
                                 (-15.0, 35.0, -8.0)])
def test_biwi_annotations_in_the_project_convention(fsa: tuple[float, float, float]) -> None:
    matrix = biwi_file_matrix(*fsa)
    converted = rotation_to_euler(matrix)
    assert (converted.pitch, converted.yaw, converted.roll) == pytest.approx(fsa, abs=1e-9)
    # The file matrix turns the head (x right, y down, z away from the camera): posing the mean shape with it and
    # estimating gives pose_from_biwi_matrix, the ZYX decomposition of that same matrix.
    estimate = fit_head_pose(landmarker_view(matrix, noise=0.5)).angles
    assert estimate == pytest.approx(pose_from_biwi_matrix(matrix), abs=1.0)
    np.testing.assert_allclose(rotation_from_euler(*pose_from_biwi_matrix(matrix)), matrix, atol=1e-9)
    if sum(v != 0 for v in fsa) == 1:  # one axis: FSA-Net's yaw and roll, its pitch negated
        assert pose_from_biwi_matrix(matrix) == pytest.approx((-fsa[0], fsa[1], fsa[2]), abs=1e-9)


def test_refusals_carry_the_manifest_status() -> None:
    good = landmarker_view(rotation_from_euler(0.0, 10.0, 0.0))
    bad_inputs = {
        "NaN": np.where(np.arange(68)[:, None] == 5, np.nan, good),
        "68×2": good[:60],
        "apart": np.full((68, 2), 10.0) + np.random.default_rng(0).normal(0, 0.3, (68, 2)),
        "beyond": landmarker_view(rotation_from_euler(0.0, 80.0, 0.0)),
        "residual": good + np.random.default_rng(1).normal(0, 40.0, good.shape),
    }
    for reason, points in bad_inputs.items():
        with pytest.raises(LandmarkFitError, match=reason) as caught:
            fit_head_pose(points)
        assert isinstance(caught.value, InputError) and caught.value.status == UNFIT_STATUS
    with pytest.raises(LandmarkFitError, match="beyond"):
        fit_head_pose(landmarker_view(rotation_from_euler(0.0, 50.0, 0.0)), FitLimits(max_abs_yaw=40.0))


def test_real_faces_and_their_mirrors(headpose_chain) -> None:  # type: ignore[no-untyped-def]
    estimator, faces = headpose_chain
    assert len(faces) == 14  # t1's six people and the astronaut, each also mirrored
    for (name, image, face), (_, mirrored_image, mirrored_face) in zip(faces[::2], faces[1::2]):
        pose = estimator.estimate(image, face)
        mirrored = estimator.estimate(mirrored_image, mirrored_face)
        assert all(math.isfinite(v) for v in pose.values()), name
        assert mirrored["yaw"] == pytest.approx(-pose["yaw"], abs=6.0), name
        assert mirrored["roll"] == pytest.approx(-pose["roll"], abs=3.0), name
        assert mirrored["pitch"] == pytest.approx(pose["pitch"], abs=4.0), name
    astronaut = estimator.estimate(faces[-2][1], faces[-2][2])
    assert abs(astronaut["yaw"]) < 5 and abs(astronaut["roll"]) < 6 and abs(astronaut["pitch"]) < 8


def test_non_face_image_is_refused(headpose_chain, astronaut_rgb) -> None:  # type: ignore[no-untyped-def]
    estimator, faces = headpose_chain
    face = faces[-2][2]
    noise = np.random.default_rng(0).integers(0, 256, astronaut_rgb.shape, dtype=np.uint8)
    with pytest.raises(LandmarkFitError, match="no face") as caught:
        estimator.estimate(noise, face)
    assert caught.value.status == UNFIT_STATUS
    assert isinstance(estimator, HeadPoseEstimator) and estimator.fingerprint.startswith("landmarks68:")
