"""The mesh backend on real faces (the shipped photos, cropped like the pipeline) with the real shipped models:
targets, upright roll, poses measured on source and output, the landmarks_unfit outcome, and how the batch step
and the finish step record it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pipeline_helpers import unfit_face

from frontalize.config.inference import CropConfig, FrontalizerConfig
from frontalize.errors import InputError
from frontalize.faces.headpose import LandmarkFitError
from frontalize.faces.registry import build_detector
from frontalize.faces.types import Face
from frontalize.geometric import GeometricFrontalizer, MeshTarget
from frontalize.liveportrait.crop import crop_face
from frontalize.pipeline.backends.base import FaceInput, FrontalizedFace
from frontalize.pipeline.backends.mesh import MeshBackend, mesh_target
from frontalize.pipeline.inputs import InputItem
from frontalize.pipeline.outputs import FinishStep, OutputLayout
from frontalize.pipeline.records import Prepared, PreparedFace
from frontalize.pipeline.steps import FrontalizeBatch, face_in_crop

CROP = CropConfig()


@pytest.fixture(scope="module")
def engine(mesh_landmarker) -> GeometricFrontalizer:  # type: ignore[no-untyped-def]
    return GeometricFrontalizer(mesh_landmarker)


@pytest.fixture(scope="module")
def detector():  # type: ignore[no-untyped-def]
    return build_detector("retinaface_mnet", weights_root=".", det_size=640, threshold=0.5)


def prepared_face(detector, rgb: np.ndarray, index: int = 0) -> PreparedFace:  # type: ignore[no-untyped-def]
    """A face as the pipeline's prepare step hands it on (5-point crop, rotated upright, detection in the crop)."""
    face: Face = max(detector.detect(rgb), key=lambda f: f.score)
    result = crop_face(rgb, face.kps, scale=CROP.scale, vy_ratio=CROP.vy_ratio, rotate=True)
    return PreparedFace(index=index, box=np.asarray(face.box, dtype=np.float32), score=face.score, landmark_kind="5",
                        crop=result.image, crop_to_source=np.asarray(result.M_c2o, dtype=np.float32),
                        roll_offset=float(result.roll_offset), crop_face=face_in_crop(face, result.M_o2c))


def face_input(prepared: PreparedFace) -> FaceInput:
    return FaceInput(crop=prepared.crop, roll_offset=prepared.roll_offset, face=prepared.crop_face)


@pytest.fixture(scope="module")
def faces(detector, face_photos: dict[str, np.ndarray]) -> dict[str, PreparedFace]:  # type: ignore[no-untyped-def]
    return {name: prepared_face(detector, face_photos[name]) for name in ("astronaut", "t1_2", "t1_4")}


def test_frontal_target_gives_upright_frontal_faces_with_both_poses(engine: GeometricFrontalizer,
                                                                     faces: dict[str, PreparedFace]) -> None:
    backend = MeshBackend(engine, mesh_target(FrontalizerConfig(backend="mesh")))
    outcomes = backend.frontalize([face_input(face) for face in faces.values()])
    assert len(outcomes) == 3
    for face, outcome in zip(faces.values(), outcomes):
        assert isinstance(outcome, FrontalizedFace)
        assert outcome.image.shape == (512, 512, 3) and outcome.image.dtype == np.uint8
        fit = engine.fit(face.crop, face.crop_face, roll_offset=face.roll_offset)
        assert outcome.source_pose == pytest.approx(fit.source_pose)  # the fit's own pose, no second estimate
        output = outcome.output_pose
        assert output is not None
        # measured again on the output: frontal, and upright once pasted back (crop-frame roll = the crop's offset)
        assert abs(output["yaw"]) < 4 and abs(output["pitch"]) < 10, output  # pitch: the least sure angle
        assert abs(output["roll"] - face.roll_offset) < 3, (output, face.roll_offset)
        assert not np.array_equal(outcome.image, face.crop)
        mesh = outcome.extra["mesh"]
        assert 0 < mesh["landmark_residual"] < 0.2 and 0 <= mesh["mirrored"] < 0.5


def test_partial_pose_and_not_upright_targets_keep_the_liveportrait_meaning(engine: GeometricFrontalizer,
                                                                            faces: dict[str, PreparedFace]) -> None:
    face = faces["t1_4"]  # a face turned by about 20°
    source_yaw = engine.fit(face.crop, face.crop_face).source_pose["yaw"]
    assert abs(source_yaw) > 12
    half = MeshBackend(engine, MeshTarget("partial", alpha=0.5)).frontalize([face_input(face)])[0]
    posed = MeshBackend(engine, MeshTarget("pose", yaw=-20.0)).frontalize([face_input(face)])[0]
    tilted = MeshBackend(engine, MeshTarget(), upright=False).frontalize([face_input(face)])[0]
    assert isinstance(half, FrontalizedFace) and isinstance(posed, FrontalizedFace)
    assert isinstance(tilted, FrontalizedFace)
    assert half.output_pose is not None and abs(half.output_pose["yaw"] - source_yaw / 2) < 4
    assert posed.output_pose is not None and abs(posed.output_pose["yaw"] + 20) < 5
    assert tilted.output_pose is not None and abs(tilted.output_pose["roll"]) < 3  # upright in the crop frame


def test_a_face_that_cannot_be_fitted_is_an_input_error_and_the_others_go_on(
        engine: GeometricFrontalizer, detector, faces: dict[str, PreparedFace],  # type: ignore[no-untyped-def]
        face_photos: dict[str, np.ndarray]) -> None:
    blurred = prepared_face(detector, unfit_face(face_photos["astronaut"]))
    outcomes = MeshBackend(engine, MeshTarget()).frontalize([face_input(blurred), face_input(faces["astronaut"])])
    error, result = outcomes
    assert isinstance(error, LandmarkFitError) and error.status == "landmarks_unfit"
    assert "HOG" in str(error)
    assert isinstance(result, FrontalizedFace)


class _FixedPoses:
    """A stand-in pose source (the motion extractor's place): records what it was given."""

    name = "motion_extractor"

    def __init__(self) -> None:
        self.calls: list[tuple[int, list[Face | None]]] = []

    def estimate(self, crops, faces):  # type: ignore[no-untyped-def]
        self.calls.append((len(crops), list(faces)))
        return [{"pitch": 1.0, "yaw": float(len(self.calls)), "roll": 0.0} for _ in crops]


def test_another_pose_source_measures_the_source_and_output_crops(engine: GeometricFrontalizer,
                                                                   faces: dict[str, PreparedFace]) -> None:
    poses = _FixedPoses()
    backend = MeshBackend(engine, MeshTarget(), pose_source="motion_extractor", pose_estimator=poses)
    (result,) = backend.frontalize([face_input(faces["astronaut"])])
    assert isinstance(result, FrontalizedFace)
    assert [count for count, _ in poses.calls] == [1, 1]  # one batch of sources, one of outputs
    assert result.source_pose == {"pitch": 1.0, "yaw": 1.0, "roll": 0.0}
    assert result.output_pose == {"pitch": 1.0, "yaw": 2.0, "roll": 0.0}
    (none,) = MeshBackend(engine, MeshTarget(), pose_source=None).frontalize([face_input(faces["astronaut"])])
    assert isinstance(none, FrontalizedFace) and none.source_pose is None and none.output_pose is None


def _prepared(rel: str, faces: list[PreparedFace]) -> Prepared:
    item = InputItem(path=Path("/nonexistent") / rel, rel=rel, output_stem=rel.rsplit(".", 1)[0])
    return Prepared(item=item, faces=faces, face_count=len(faces))


def test_batch_step_and_manifest_record_unfit_faces(engine: GeometricFrontalizer, detector,  # type: ignore[no-untyped-def]
                                                    faces: dict[str, PreparedFace],
                                                    face_photos: dict[str, np.ndarray], tmp_path: Path) -> None:
    blurred = prepared_face(detector, unfit_face(face_photos["astronaut"]))
    second = prepared_face(detector, face_photos["t1_2"], index=1)
    step = FrontalizeBatch(MeshBackend(engine, MeshTarget()), batch_size=2, pose_source="landmarks68")
    only_unfit, mixed = step([_prepared("a/blur.jpg", [blurred]), _prepared("b/two.jpg", [blurred, second])])
    assert (only_unfit.status, only_unfit.faces) == ("landmarks_unfit", [])
    assert "HOG" in only_unfit.reason
    assert mixed.status == "ok" and [face.face.index for face in mixed.faces] == [1]
    assert mixed.failed_faces == [{"face_index": 0, "status": "landmarks_unfit", "reason": only_unfit.reason}]
    finish = FinishStep(OutputLayout(out_dir=tmp_path, trees=(("", ()),), kinds=("crop",), fmt="png"), {},
                        config_hash="h")
    row = finish(mixed)
    assert row["status"] == "ok" and row["face_index"] == 1 and row["pose_source"] == "landmarks68"
    assert row["failed_faces"][0]["status"] == "landmarks_unfit"
    assert (tmp_path / "b" / "two_face1.png").is_file() and not (tmp_path / "b" / "two.png").exists()
    unfit_row = finish(only_unfit)
    assert (unfit_row["status"], unfit_row["outputs"], unfit_row["source_pose"]) == ("landmarks_unfit", {}, None)
    assert issubclass(LandmarkFitError, InputError)
