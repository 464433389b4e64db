"""Identity guard: the choice rule on constructed scores, the candidate grid, its config and weight requirements."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from pipeline_helpers import OFFLINE_CONFIG

from frontalize.config.inference import GuardConfig, InferenceConfig
from frontalize.config.schema import load_config, with_value
from frontalize.errors import ConfigError
from frontalize.pipeline.backends.base import with_stage_candidates
from frontalize.pipeline.backends.liveportrait import liveportrait_candidates
from frontalize.pipeline.backends.mesh import mesh_candidates
from frontalize.pipeline.guard import (
    CandidateScore,
    GuardChoice,
    choose_candidate,
    cosine_or_none,
    guard_record,
)
from frontalize.pipeline.requirements import weight_requirements

LIMITS = {"max_residual_yaw": 10.0, "max_residual_pitch": 8.0}


def _scores(*rows: tuple[float | None, float, float]) -> list[CandidateScore]:
    return [CandidateScore(similarity, yaw, pitch) for similarity, yaw, pitch in rows]


def test_best_similarity_among_candidates_within_limits() -> None:
    scores = _scores((0.70, 1.0, 0.0),   # frontal, lower similarity
                     (0.95, 14.0, 0.0),  # most similar but |yaw| too large
                     (0.80, -9.5, 3.0),  # within limits, best of those
                     (0.90, 2.0, -8.5))  # |pitch| too large
    assert choose_candidate(scores, **LIMITS) == GuardChoice(2, False, "within_limits")


def test_limits_are_inclusive_and_ties_go_to_the_earlier_candidate() -> None:
    scores = _scores((0.8, 10.0, -8.0), (0.8, 0.0, 0.0))
    assert choose_candidate(scores, **LIMITS) == GuardChoice(0, False, "within_limits")


def test_fallback_keeps_the_most_frontal_scored_candidate() -> None:
    scores = _scores((0.9, 30.0, 0.0), (0.5, -12.0, 5.0), (None, 0.0, 0.0), (0.7, 11.0, 9.0))
    choice = choose_candidate(scores, **LIMITS)
    # candidate 2 is the most frontal but has no face: never chosen while others are scored
    assert choice == GuardChoice(1, True, "none_within_limits")


def test_candidate_without_face_is_never_chosen_even_within_limits() -> None:
    scores = _scores((None, 0.0, 0.0), (0.3, 5.0, 1.0))
    assert choose_candidate(scores, **LIMITS) == GuardChoice(1, False, "within_limits")


def test_all_similarities_null_falls_back_to_the_most_frontal_flagged_no_face() -> None:
    scores = _scores((None, 9.0, 0.0), (None, -3.0, 4.0), (None, 20.0, 0.0))
    assert choose_candidate(scores, **LIMITS) == GuardChoice(1, True, "no_face")


def test_nan_pose_never_qualifies_and_is_least_frontal() -> None:
    scores = _scores((0.99, math.nan, 0.0), (0.2, 40.0, 0.0))
    assert choose_candidate(scores, **LIMITS) == GuardChoice(1, True, "none_within_limits")
    assert choose_candidate(_scores((0.99, math.nan, 0.0), (0.2, 1.0, 0.0)), **LIMITS).index == 1


def test_choice_needs_a_candidate() -> None:
    with pytest.raises(ValueError, match="at least one"):
        choose_candidate([], **LIMITS)


def test_cosine_or_none_never_scores_a_missing_face() -> None:
    import numpy as np

    vector = np.array([0.6, 0.8], dtype=np.float32)
    assert cosine_or_none(vector, vector) == pytest.approx(1.0)
    assert cosine_or_none(None, vector) is None and cosine_or_none(vector, None) is None


def test_candidate_grid_order_names_and_targets() -> None:
    config = GuardConfig(alphas=(1.0, 0.5), expressions=("keep", "neutralize"), stitching=(True, False),
                         stages=("sharpen",))
    grid = with_stage_candidates(liveportrait_candidates(config), config.stages)
    assert len(grid) == config.candidate_count("liveportrait") == 16
    assert [c.name for c in grid[:4]] == ["a1.00-keep-stitch", "a1.00-keep-nostitch", "a1.00-neutral-stitch",
                                          "a1.00-neutral-nostitch"]
    assert grid[8].name == "a1.00-keep-stitch+sharpen" and grid[8].source_index == 0 and grid[8].stage == "sharpen"
    assert len({c.name for c in grid}) == 16
    assert grid[0].target.mode == "frontal"
    partial = grid[5].target
    assert (partial.mode, partial.alpha, partial.expression, partial.stitching) == ("partial", 0.5, "keep", False)


def test_mesh_candidate_grid_is_alpha_times_symmetry() -> None:
    config = GuardConfig(alphas=(1.0, 0.7, 0.5), stages=("sharpen",))  # symmetry defaults to [true, false]
    grid = with_stage_candidates(mesh_candidates(config), config.stages)
    assert len(grid) == config.candidate_count("mesh") == 12
    assert [c.name for c in grid[:6]] == ["a1.00-sym", "a1.00-nosym", "a0.70-sym", "a0.70-nosym", "a0.50-sym",
                                          "a0.50-nosym"]
    assert grid[7].name == "a1.00-nosym+sharpen" and grid[7].source_index == 1 and grid[7].stage == "sharpen"
    assert (grid[0].target.mode, grid[0].target.symmetry) == ("frontal", True)
    partial = grid[3].target
    assert (partial.mode, partial.alpha, partial.symmetry) == ("partial", 0.7, False)
    assert dict(grid[3].fields) == {"symmetry": False}
    with pytest.raises(ConfigError, match=r"guard.symmetry: a value is listed more than once"):
        GuardConfig(symmetry=(True, True))


def test_guard_record_holds_every_candidate_number() -> None:
    config = GuardConfig(alphas=(1.0, 0.7), expressions=("keep",))
    grid = liveportrait_candidates(config)
    scores = _scores((0.812345678, 1.23456, -0.5), (None, 12.0, 0.0))
    choice = choose_candidate(scores, max_residual_yaw=config.max_residual_yaw,
                              max_residual_pitch=config.max_residual_pitch)
    record = guard_record(grid, scores, [0.25, math.nan], choice, config=config, source_face=True)
    assert record["chosen"] == 0 and record["chosen_name"] == "a1.00-keep-stitch" and record["fallback"] is False
    first, second = record["candidates"]
    assert first == {"name": "a1.00-keep-stitch", "alpha": 1.0, "expression": "keep", "stitching": True,
                     "stage": None, "similarity": 0.81235, "residual_yaw": 1.235, "residual_pitch": -0.5,
                     "residual_roll": 0.25, "within_limits": True}
    assert list(first) == ["name", "alpha", "expression", "stitching", "stage", "similarity", "residual_yaw",
                           "residual_pitch", "residual_roll", "within_limits"]  # the record of earlier releases
    assert second["similarity"] is None and second["residual_roll"] is None and second["within_limits"] is False
    mesh = guard_record(mesh_candidates(config), scores, [0.25, math.nan], choice, config=config, source_face=True)
    assert mesh["candidates"][1] == {"name": "a1.00-nosym", "alpha": 1.0, "symmetry": False, "stage": None,
                                     "similarity": None, "residual_yaw": 12.0, "residual_pitch": 0.0,
                                     "residual_roll": None, "within_limits": False}


def test_guard_is_off_by_default_and_offline_config_uses_offline_models() -> None:
    assert InferenceConfig().guard.enabled is False
    offline = load_config(InferenceConfig, OFFLINE_CONFIG, ["guard.enabled=true"])
    assert (offline.guard.enabled, offline.guard.recognizer, offline.guard.detector) == (
        True, "dlib_resnet", "retinaface_mnet")


@pytest.mark.parametrize(("override", "message"), [
    ("guard.alphas=[1.0, 0.0]", r"guard.alphas: every alpha must be in \(0, 1\]"),
    ("guard.alphas=[]", r"guard.alphas: at least one value"),
    ("guard.expressions=[keep, keep]", r"guard.expressions: a value is listed more than once"),
    ("guard.expressions=[smile]", r"guard.expressions\[0\]: 'smile' is not one of"),
    ("guard.stages=[background]", r"guard.stages\[0\]: 'background' cannot form a guard candidate"),
    ("guard.stages=[sharpn]", r"did you mean 'sharpen'"),
    ("guard.recognizer=arcface", r"guard.recognizer: 'arcface' is not one of"),
    ("guard.det_size=500", r"guard.det_size: 500 is not a multiple of 32"),
    ("guard.max_residual_yaw=-1", r"guard.max_residual_yaw: -1.0 is below the minimum"),
])
def test_bad_guard_settings_name_the_key(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(InferenceConfig, None, [override])


def test_guard_weights_are_required_and_the_guard_needs_a_frontalizing_backend(tmp_path: Path) -> None:
    cfg = with_value(InferenceConfig(), "guard.enabled", True)
    with pytest.raises(ConfigError, match="the identity frontalizer renders no candidates for the identity guard"):
        weight_requirements(cfg, tmp_path)
    cfg = with_value(cfg, "frontalizer.backend", "liveportrait")
    needs = weight_requirements(cfg, tmp_path)
    assert {"insightface_w600k_r50", "insightface_det_10g", "lp_spade_generator"} <= set(needs.keys)
    assert needs.pose_source == "motion_extractor" and needs.packaged == ()
    cfg = with_value(with_value(cfg, "guard.recognizer", "arcface_r100"), "guard.stages", ["gfpgan"])
    keys = weight_requirements(cfg, tmp_path).keys
    assert {"insightface_glintr100", "gfpgan_v1.4"} <= set(keys) and "insightface_w600k_r50" not in keys
    offline = with_value(load_config(InferenceConfig, OFFLINE_CONFIG, ["guard.enabled=true"]),
                         "frontalizer.backend", "liveportrait")
    keys = weight_requirements(offline, tmp_path).keys
    assert not [key for key in keys if key.startswith("insightface")]
    mesh = weight_requirements(with_value(offline, "frontalizer.backend", "mesh"), tmp_path)
    assert mesh.keys == ()  # offline detector, dlib recognizer, package-shipped predictor: nothing to download
    assert mesh.packaged == ("dlib_shape_predictor_68",) and mesh.pose_source == "landmarks68"
    other = with_value(with_value(offline, "frontalizer.backend", "mesh"), "frontalizer.pose_source",
                       "motion_extractor")
    with pytest.raises(ConfigError, match=r"pose_source: the identity guard measures residual poses with the mesh"):
        weight_requirements(other, tmp_path)
