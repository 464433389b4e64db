"""The geometric engine on real faces: detectable, frontal and upright outputs that stay photographs; one fit for
many targets; the identity edit; and faces that cannot be fitted."""

from __future__ import annotations

import numpy as np
import pytest
from geometric.geo_helpers import best_detection, psnr  # tests/ is on sys.path (rootdir conftest)

from frontalize.evaluation.posecues import keypoint_pose
from frontalize.faces.headpose import UNFIT_STATUS, LandmarkFitError, fit_head_pose, marched_model, rotation_from_euler
from frontalize.geometric import GeometricFrontalizer, MeshTarget


@pytest.fixture(scope="module")
def frontal_outputs(engine, crops):  # type: ignore[no-untyped-def]
    outputs = []
    for case in crops:
        fit = engine.fit(case.crop, case.face, roll_offset=case.roll_offset)
        outputs.append((case, fit, engine.render_layers(fit, MeshTarget())))
    return outputs


def test_outputs_are_found_frontal_and_upright(frontal_outputs, detector, landmarker) -> None:  # type: ignore[no-untyped-def]
    residual, proxy = [], []
    for case, _, layers in frontal_outputs:
        found = best_detection(detector, layers.image)
        assert found is not None and found.score > 0.5, case.name
        pitch, yaw, roll = fit_head_pose(landmarker.landmarks(layers.image, found)).angles
        upright_roll = roll - case.roll_offset  # the crop frame's offset undone: the roll after paste-back
        residual.append((abs(pitch), abs(yaw), abs(upright_roll)))
        proxy.append(abs(keypoint_pose(found.kps)[1]))
        assert abs(yaw) < 6 and abs(upright_roll) < 4 and abs(pitch) < 10, (case.name, pitch, yaw, roll)
    median = np.median(np.array(residual), axis=0)
    assert median[0] <= 5 and median[1] <= 3 and median[2] <= 2, median
    assert np.median(proxy) <= 5  # the independent 5-keypoint yaw proxy agrees
    assert max(abs(fit.head.angles[1]) for _, fit, _ in frontal_outputs) > 30  # real turns were corrected


def test_outputs_stay_photographs(frontal_outputs) -> None:  # type: ignore[no-untyped-def]
    for case, _, layers in frontal_outputs:
        image = layers.image
        assert image.shape == case.crop.shape and image.dtype == np.uint8
        assert not np.any(np.all(image == 0, axis=-1)), case.name  # no black / empty pixel anywhere
        for border in (np.s_[0, :], np.s_[-1, :], np.s_[:, 0], np.s_[:, -1]):
            np.testing.assert_array_equal(image[border], case.crop[border])  # the crop border is left as it was
        assert psnr(image[:, :8], case.crop[:, :8]) > 40  # ... and so is its neighbourhood: no smeared border
        # The background warp is one-to-one: its map keeps a positive Jacobian everywhere (no fold, no duplicate).
        positions = layers.background_positions.astype(np.float64)
        dx, dy = np.gradient(positions[..., 0]), np.gradient(positions[..., 1])
        determinant = dx[1] * dy[0] - dx[0] * dy[1]
        assert determinant.min() > 0.05, case.name
        assert 0.0 <= layers.mirror_share.min() and layers.mirror_share.max() <= 1.0


def test_hidden_side_is_filled_from_the_other(frontal_outputs) -> None:  # type: ignore[no-untyped-def]
    turned = max(frontal_outputs, key=lambda item: abs(item[1].head.angles[1]))
    _, fit, layers = turned
    yaw = fit.head.angles[1]
    middle = round(float(fit.output_face(MeshTarget()).kps[[0, 1, 3, 4], 0].mean()))  # the face's midline
    half = layers.mirror_share[:, :middle].sum(), layers.mirror_share[:, middle:].sum()
    hidden_side = 0 if yaw > 0 else 1  # yaw > 0 turns the face to image left, hiding that cheek
    assert half[hidden_side] > 3 * half[1 - hidden_side]
    frontal = next(item for item in frontal_outputs if item[0].name.startswith("astronaut"))
    assert frontal[2].mirror_share.mean() < 0.5 * layers.mirror_share.mean()


def test_one_fit_many_targets_and_the_identity_edit(engine, astronaut_case, crops) -> None:  # type: ignore[no-untyped-def]
    fit = engine.fit(astronaut_case.crop, astronaut_case.face)
    targets = [MeshTarget(), MeshTarget(symmetry=False), MeshTarget("partial", alpha=0.5),
               MeshTarget("partial", alpha=0.0, symmetry=False), MeshTarget("pose", yaw=20.0)]
    images = engine.render(fit, targets)
    assert len(images) == len(targets) and all(image.shape == (512, 512, 3) for image in images)
    # Rendering the source pose itself changes nothing inside the face: the warp is exact.
    identity = engine.render_layers(fit, targets[3])
    assert psnr(identity.image, astronaut_case.crop, identity.face_alpha > 0.5) > 40
    assert psnr(images[4], astronaut_case.crop) < 30  # a real turn changes the image
    turned = next(case for case in crops if case.name == "t1_3")
    turned_fit = engine.fit(turned.crop, turned.face)
    on, off = (engine.render_layers(turned_fit, MeshTarget(symmetry=flag)) for flag in (True, False))
    differs = np.any(on.image != off.image, axis=-1)
    assert differs.any() and not differs[on.mirror_share == 0].any()  # symmetry only touches mirrored pixels


def test_roll_offset_makes_the_pasted_back_face_upright(engine, crops) -> None:  # type: ignore[no-untyped-def]
    case = crops[0]
    lines = {}
    for offset in (0.0, 15.0, -20.0):
        fit = engine.fit(case.crop, case.face, roll_offset=offset)
        face = fit.output_face(MeshTarget())
        lines[offset] = np.degrees(np.arctan2(*(face.kps[1] - face.kps[0])[::-1]))
        assert fit.target_pose(MeshTarget()) == {"pitch": 0.0, "yaw": 0.0, "roll": offset}
    assert abs(lines[0.0]) < 4  # the person's own eye line (not exactly the mean shape's) is near level
    for offset in (15.0, -20.0):  # crop-frame roll = offset, i.e. upright after paste-back
        assert lines[offset] - lines[0.0] == pytest.approx(offset, abs=0.5)


def test_faces_that_cannot_be_fitted(engine, astronaut_case) -> None:  # type: ignore[no-untyped-def]
    crop = astronaut_case.crop
    noise = np.random.default_rng(0).integers(0, 256, crop.shape, dtype=np.uint8)
    with pytest.raises(LandmarkFitError, match="no face") as caught:
        engine.fit(noise, astronaut_case.face)
    assert caught.value.status == UNFIT_STATUS
    turned = rotation_from_euler(0.0, 70.0, 0.0)
    profile = 100.0 * (marched_model(turned) @ turned.T)[:, :2] + 256.0
    with pytest.raises(LandmarkFitError, match="beyond the 60"):
        engine.fit(crop, landmarks=profile)
    with pytest.raises(LandmarkFitError, match="NaN"):
        engine.fit(crop, landmarks=np.full((68, 2), np.nan))
    with pytest.raises(ValueError, match="landmarks"):
        GeometricFrontalizer().fit(crop, astronaut_case.face)
