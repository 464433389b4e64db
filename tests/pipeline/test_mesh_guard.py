"""Identity guard with the mesh backend: α × symmetry candidates from one fit, scored by the real offline scorer
(RetinaFace-mnet + dlib ResNet) on real faces, residual poses by 68 landmarks; then through ``inference.py`` and
``evaluate.py`` (guard section, trade-off curves per symmetry setting)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from pipeline_helpers import OFFLINE_CONFIG, REPO_ROOT, save, unfit_face

from frontalize.cli.evaluate import main as evaluate_main
from frontalize.config.inference import GuardConfig
from frontalize.config.stages import SharpenConfig
from frontalize.faces.headpose import LandmarkFitError
from frontalize.faces.registry import build_detector, build_recognizer
from frontalize.geometric import GeometricFrontalizer, MeshTarget
from frontalize.io.manifest import read_manifest
from frontalize.liveportrait.crop import crop_face
from frontalize.pipeline.backends.base import FaceInput, FrontalizedFace
from frontalize.pipeline.backends.mesh import MeshCandidates
from frontalize.pipeline.guard import CandidateScore, GuardedFrontalizer, IdentityScorer, choose_candidate
from frontalize.pipeline.steps import face_in_crop
from frontalize.stages.sharpen import SharpenStage

CONFIG = GuardConfig(enabled=True, alphas=(1.0, 0.6), stages=("sharpen",), recognizer="dlib_resnet",
                     detector="retinaface_mnet", dump=True)


@pytest.fixture(scope="module")
def scorer() -> IdentityScorer:
    return IdentityScorer(build_detector("retinaface_mnet", weights_root=".", det_size=640, threshold=0.5),
                          build_recognizer("dlib_resnet", weights_root="."))


def _face_input(scorer: IdentityScorer, rgb: np.ndarray) -> FaceInput:
    face = max(scorer.detector.detect(rgb), key=lambda f: f.score)
    result = crop_face(rgb, face.kps, scale=2.3, vy_ratio=-0.125, rotate=True)
    return FaceInput(crop=result.image, roll_offset=float(result.roll_offset), face=face_in_crop(face, result.M_o2c))


@pytest.fixture(scope="module")
def turned(scorer: IdentityScorer, mesh_landmarker, face_photos: dict[str, np.ndarray]) -> FaceInput:  # type: ignore[no-untyped-def]
    """The astronaut turned to 30° of yaw (a synthetic posed view, as make_samples renders them), cropped again."""
    engine = GeometricFrontalizer(mesh_landmarker)
    source = _face_input(scorer, face_photos["astronaut"])
    view = engine.render(engine.fit(source.crop, source.face), [MeshTarget("pose", yaw=30.0)])[0]
    return _face_input(scorer, view)


def _rescored(record: dict) -> list[CandidateScore]:
    nan = float("nan")
    return [CandidateScore(c["similarity"], nan if c["residual_yaw"] is None else c["residual_yaw"],
                           nan if c["residual_pitch"] is None else c["residual_pitch"]) for c in record["candidates"]]


def test_mesh_candidates_are_rendered_from_one_fit_scored_and_chosen(
        scorer: IdentityScorer, mesh_landmarker, turned: FaceInput,  # type: ignore[no-untyped-def]
        face_photos: dict[str, np.ndarray]) -> None:
    renderer = MeshCandidates(GeometricFrontalizer(mesh_landmarker), CONFIG)
    guard = GuardedFrontalizer(renderer, CONFIG, scorer,
                               stages={"sharpen": SharpenStage(SharpenConfig(enabled=True))})
    assert guard.name == "mesh+guard"
    blurred = _face_input(scorer, unfit_face(face_photos["astronaut"]))
    result, unfit = guard.frontalize([turned, blurred])
    assert isinstance(unfit, LandmarkFitError) and unfit.status == "landmarks_unfit"
    assert isinstance(result, FrontalizedFace)
    record = result.extra["guard"]
    names = ["a1.00-sym", "a1.00-nosym", "a0.60-sym", "a0.60-nosym", "a1.00-sym+sharpen", "a1.00-nosym+sharpen",
             "a0.60-sym+sharpen", "a0.60-nosym+sharpen"]
    assert [c["name"] for c in record["candidates"]] == names
    for candidate in record["candidates"]:
        assert set(candidate) == {"name", "alpha", "symmetry", "stage", "similarity", "residual_yaw",
                                  "residual_pitch", "residual_roll", "within_limits"}
        assert candidate["similarity"] is not None and 0.5 < candidate["similarity"] <= 1.0
    yaws = {c["name"]: c["residual_yaw"] for c in record["candidates"]}
    assert result.source_pose is not None and 20 < result.source_pose["yaw"] < 35  # the 30° view, read back
    assert abs(yaws["a1.00-sym"]) < 5 and 8 < abs(yaws["a0.60-sym"]) < 18  # 40 % of the turn is left at α 0.6
    choice = choose_candidate(_rescored(record), max_residual_yaw=10.0, max_residual_pitch=10.0)
    assert (record["chosen"], record["fallback"]) == (choice.index, choice.fallback)
    chosen = record["candidates"][record["chosen"]]
    assert np.array_equal(result.image, result.candidate_images[chosen["name"]])
    assert sorted(result.candidate_images) == sorted(names)
    assert result.output_pose is not None and result.output_pose["yaw"] == pytest.approx(chosen["residual_yaw"],
                                                                                          abs=1e-3)
    assert set(record["timings_ms"]) == {"render", "stages", "pose", "score"}
    # symmetry on and off differ only where the face was hidden: same fit, same geometry
    sym, nosym = result.candidate_images["a1.00-sym"], result.candidate_images["a1.00-nosym"]
    changed = np.abs(sym.astype(int) - nosym.astype(int)).max(axis=2) > 8
    assert 0.002 < changed.mean() < 0.25


@pytest.mark.slow
def test_mesh_guard_through_inference_and_evaluate(sample_data: Path, tmp_path: Path,
                                                    run_cli: Callable[..., int]) -> None:
    listed = tmp_path / "inputs.txt"
    listed.write_text("astronaut_00/yaw+30.jpg\nastronaut_00/mirror.jpg\nt1_02/yaw-30.jpg\n")
    common = ["--config", OFFLINE_CONFIG, "--source_dir", sample_data, "--list-file", listed, "--frontalize", "mesh",
              "--weights-dir", tmp_path / "no-weights"]
    guarded, plain = tmp_path / "guarded", tmp_path / "plain"
    assert run_cli(*common, "-o", guarded, "--set", "guard.enabled=true", "--set", "guard.alphas=[1.0, 0.7]",
                   "--guard-dump") == 0
    rows = read_manifest(guarded / "manifest.jsonl")
    assert len(rows) == 3
    for row in rows:
        assert row["status"] == "ok" and row["pose_source"] == "landmarks68"
        guard = row["guard"]
        assert [c["name"] for c in guard["candidates"]] == ["a1.00-sym", "a1.00-nosym", "a0.70-sym", "a0.70-nosym"]
        choice = choose_candidate(_rescored(guard), max_residual_yaw=guard["max_residual_yaw"],
                                  max_residual_pitch=guard["max_residual_pitch"])
        assert guard["chosen"] == choice.index
        written = cv2.imread(str(guarded / row["outputs"]["default"]["crop"]))
        assert np.array_equal(written, cv2.imread(str(guarded / row["guard_dumps"][guard["chosen_name"]])))
    assert run_cli(*common, "-o", plain) == 0
    # the α = 1, symmetric candidate is the unguarded output (same fit, same target)
    for row, plain_row in zip(rows, read_manifest(plain / "manifest.jsonl")):
        same = cv2.imread(str(guarded / row["guard_dumps"]["a1.00-sym"]))
        assert np.array_equal(same, cv2.imread(str(plain / plain_row["outputs"]["default"]["crop"])))

    report = tmp_path / "report"
    assert evaluate_main(["--config", str(REPO_ROOT / "configs" / "eval-offline.yaml"), "--layout", "generic",
                          "--data", str(sample_data), "--frontal-dir", str(guarded), "--frontal-dir", str(plain),
                          "-o", str(report), "--no-cache", "--bootstrap-resamples", "50", "--no-progress", "-q"]) == 0
    section = json.loads((report / "summary.json").read_text())["sections"]["guard"]
    assert section["guarded"] == ["guarded"] and section["tradeoff_source"] == {"guarded": "dumped candidates"}
    assert {row["kind"] for row in section["guard_tradeoff"]} == {"input", "sym", "nosym"}
    assert {row["alpha"] for row in section["guard_tradeoff"] if row["kind"] == "sym"} == {0.7, 1.0}
    wins = {(row["axis"], row["value"]) for row in section["guard_wins"]}
    assert any(axis == "symmetry" for axis, _ in wins) and not any(axis == "expression" for axis, _ in wins)


def test_guard_config_errors_for_mesh(run_cli: Callable[..., int], tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str], face_photos: dict[str, np.ndarray]) -> None:
    save(tmp_path / "in" / "a.jpg", face_photos["astronaut"])
    code = run_cli("--config", OFFLINE_CONFIG, "--source_dir", tmp_path / "in", "-o", tmp_path / "out",
                   "--frontalize", "mesh", "--set", "guard.enabled=true",
                   "--set", "frontalizer.pose_source=motion_extractor", "--dry-run")
    assert code == 2
    assert "the identity guard measures residual poses with the mesh backend's own estimator" in \
        capsys.readouterr().err
    assert replace(CONFIG, symmetry=(False,)).candidate_count("mesh") == 4
