"""GuardedFrontalizer with the real offline scorer (RetinaFace-mnet + dlib ResNet) on real face crops, and a
stand-in engine whose renders are the source crop blurred more the further it is rotated (α), so identity
similarity falls with α while the residual pose (read back by the stand-in motion extractor) falls too."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from guard_standins import SOURCE_PITCH, SOURCE_YAW, StandInEngine

from frontalize.config.inference import GuardConfig
from frontalize.config.stages import SharpenConfig
from frontalize.faces.registry import build_detector, build_recognizer
from frontalize.liveportrait.crop import crop_face
from frontalize.pipeline.backends.base import FaceInput
from frontalize.pipeline.backends.liveportrait import LivePortraitCandidates
from frontalize.pipeline.guard import CandidateScore, GuardedFrontalizer, IdentityScorer, choose_candidate
from frontalize.stages.sharpen import SharpenStage


@pytest.fixture(scope="module")
def scorer() -> IdentityScorer:
    return IdentityScorer(build_detector("retinaface_mnet", weights_root=".", det_size=640, threshold=0.5),
                          build_recognizer("dlib_resnet", weights_root="."))


@pytest.fixture(scope="module")
def crops(face_photos: dict[str, np.ndarray], scorer: IdentityScorer) -> list[np.ndarray]:
    """LivePortrait-style 512 crops of two real faces."""
    result = []
    for name in ("astronaut", "t1_2"):
        face = scorer.detector.detect(face_photos[name])[0]
        result.append(crop_face(face_photos[name], face.kps, scale=2.3, vy_ratio=-0.125, rotate=True).image)
    return result


CONFIG = GuardConfig(enabled=True, alphas=(1.0, 0.7, 0.5), expressions=("keep",), stages=("sharpen",),
                     recognizer="dlib_resnet", detector="retinaface_mnet", dump=True)


def _guard(config: GuardConfig, scorer: IdentityScorer) -> tuple[GuardedFrontalizer, StandInEngine]:
    engine = StandInEngine()
    stages = {"sharpen": SharpenStage(SharpenConfig(enabled=True))} if config.stages else {}
    return GuardedFrontalizer(LivePortraitCandidates(engine, config), config, scorer, stages=stages), engine


def _rescored(record: dict) -> list[CandidateScore]:
    return [CandidateScore(c["similarity"], c["residual_yaw"], c["residual_pitch"]) for c in record["candidates"]]


def test_k_candidates_one_render_batch_scored_and_chosen_by_the_rule(scorer: IdentityScorer,
                                                                      crops: list[np.ndarray]) -> None:
    guard, engine = _guard(CONFIG, scorer)
    results = guard.frontalize([FaceInput(crop=crop, roll_offset=3.0) for crop in crops])
    assert engine.extract_calls == 1 and len(engine.render_calls) == 1
    assert engine.render_calls[0]["rows"] == 2 * 3  # B faces × 3 rendered targets, one W+G batch
    assert len(results) == 2
    for result in results:
        record = result.extra["guard"]
        names = [c["name"] for c in record["candidates"]]
        assert names == ["a1.00-keep-stitch", "a0.70-keep-stitch", "a0.50-keep-stitch",
                         "a1.00-keep-stitch+sharpen", "a0.70-keep-stitch+sharpen", "a0.50-keep-stitch+sharpen"]
        sims = [c["similarity"] for c in record["candidates"]]
        assert all(s is not None and 0.5 < s <= 1.0 for s in sims), sims
        assert sims[2] > sims[1] > sims[0]  # less rotation (less blur) keeps more identity
        yaws = [c["residual_yaw"] for c in record["candidates"]]
        assert yaws[:3] == pytest.approx([2.0, 8.0, 12.0], abs=0.01)
        choice = choose_candidate(_rescored(record), max_residual_yaw=10.0, max_residual_pitch=10.0)
        assert (record["chosen"], record["fallback"]) == (choice.index, False)
        chosen = record["candidates"][record["chosen"]]
        assert chosen["alpha"] == 0.7 and chosen["within_limits"]  # α = 0.5 is more similar but not frontal
        assert record["chosen_name"] == chosen["name"] and record["source_face"] is True
        assert np.array_equal(result.image, result.candidate_images[chosen["name"]])
        assert sorted(result.candidate_images) == sorted(names)
        assert result.output_pose is not None and result.output_pose["yaw"] == pytest.approx(chosen["residual_yaw"],
                                                                                              abs=1e-3)
        assert result.source_pose == {"pitch": SOURCE_PITCH, "yaw": SOURCE_YAW, "roll": 0.0}
        assert set(record["timings_ms"]) == {"render", "stages", "pose", "score"}


def test_fallback_to_the_most_frontal_when_none_is_frontal_enough(scorer: IdentityScorer,
                                                                 crops: list[np.ndarray]) -> None:
    config = replace(CONFIG, stages=(), max_residual_yaw=1.0, dump=False, render_chunk=2)
    guard, engine = _guard(config, scorer)
    (result,) = guard.frontalize([FaceInput(crop=crops[0])])
    record = result.extra["guard"]
    assert engine.render_calls[0]["chunk_size"] == 2
    assert record["fallback"] is True and record["fallback_reason"] == "none_within_limits"
    assert record["chosen_name"] == "a1.00-keep-stitch" and not any(c["within_limits"] for c in record["candidates"])
    assert result.candidate_images == {}


def test_source_without_face_gives_null_similarities_and_a_flagged_choice(scorer: IdentityScorer) -> None:
    blank = np.full((512, 512, 3), 128, dtype=np.uint8)
    guard, _ = _guard(replace(CONFIG, stages=()), scorer)
    (result,) = guard.frontalize([FaceInput(crop=blank)])
    record = result.extra["guard"]
    assert record["source_face"] is False
    assert all(c["similarity"] is None for c in record["candidates"])
    assert (record["fallback"], record["fallback_reason"], record["chosen_name"]) == (True, "no_face",
                                                                                      "a1.00-keep-stitch")
    assert guard.frontalize([]) == []
