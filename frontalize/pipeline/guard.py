"""Identity guard: frontalize as far as identity allows, with any backend that renders candidates.

The backend's :class:`~frontalize.pipeline.backends.base.CandidateRenderer` analyses each source once and renders
its K candidate targets (liveportrait: F and M once, every rotation fraction α of ``guard.alphas`` × expression ×
stitching as one (B·K)-row W+G batch; mesh: one 68-landmark fit, every α × ``guard.symmetry`` from it), plus
optionally each rendered candidate post-processed by a ``guard.stages`` stage. Each candidate gets

* a **similarity**: cosine between the recognizer embedding of its largest face and that of the *source crop*
  (the source image in the crop's framing) — never the GT, which inference does not see. The recognizer embeds
  the chips of every source and candidate of the batch in one call. A candidate (or source) in which the guard's
  detector finds no face has similarity ``None``;
* a **residual pose**: measured by the backend's own estimator on the candidate crop (liveportrait: the motion
  extractor; mesh: 68 landmarks re-fitted), degrees; unknown (NaN, never within the limits) when it cannot be
  measured.

The choice (:func:`choose_candidate`, a pure function): the candidate of maximum similarity among those with
|residual yaw| ≤ ``max_residual_yaw`` and |residual pitch| ≤ ``max_residual_pitch``; ties go to the earlier
candidate (larger α first in the default order). When none qualifies, the most frontal candidate (smallest
√(yaw² + pitch²)) is kept and flagged ``fallback``. A candidate with similarity ``None`` is never chosen unless
every candidate's similarity is ``None`` (e.g. no face in the source crop); then the most frontal one is kept,
flagged ``fallback`` with reason ``no_face``. A face the backend cannot analyse (mesh: ``landmarks_unfit``) gets
that status, like an unguarded run.

This module imports no engine: the backends' modules build their renderers (``BackendSpec.build_candidates``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from frontalize.config.inference import GuardConfig
from frontalize.errors import ConfigError, InputError
from frontalize.faces.align import detect_with_retry
from frontalize.faces.registry import build_detector, build_recognizer
from frontalize.faces.types import FaceDetector, FaceRecognizer
from frontalize.pipeline.backends.base import (
    BackendContext,
    Candidate,
    CandidateRenderer,
    FaceInput,
    FaceOutcome,
    FrontalizedFace,
    get_backend_spec,
    no_candidates_message,
    with_stage_candidates,
)
from frontalize.pipeline.plan import RunPlan
from frontalize.pipeline.records import Pose
from frontalize.pipeline.steps import timed
from frontalize.stages.base import Stage, StageContext
from frontalize.stages.registry import build_stage

logger = logging.getLogger(__name__)

__all__ = [
    "CandidateScore",
    "GuardChoice",
    "GuardedFrontalizer",
    "IdentityScorer",
    "build_guard_frontalizer",
    "choose_candidate",
    "guard_candidates",
    "guard_record",
]

ChoiceReason = Literal["within_limits", "none_within_limits", "no_face"]


# ---- choice rule (pure) ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CandidateScore:
    """What the choice rule sees of one candidate: similarity to the source (None = no face) and residual pose."""

    similarity: float | None
    residual_yaw: float
    residual_pitch: float

    def within(self, max_residual_yaw: float, max_residual_pitch: float) -> bool:
        """|yaw| ≤ max_residual_yaw and |pitch| ≤ max_residual_pitch (NaN never qualifies)."""
        return abs(self.residual_yaw) <= max_residual_yaw and abs(self.residual_pitch) <= max_residual_pitch

    @property
    def off_frontal(self) -> float:
        """√(yaw² + pitch²) in degrees (inf when unknown): smaller is more frontal."""
        value = math.hypot(self.residual_yaw, self.residual_pitch)
        return value if math.isfinite(value) else math.inf


@dataclass(frozen=True)
class GuardChoice:
    """The chosen candidate: index, whether it is a fallback, and why."""

    index: int
    fallback: bool
    reason: ChoiceReason


def choose_candidate(scores: Sequence[CandidateScore], *, max_residual_yaw: float,
                     max_residual_pitch: float) -> GuardChoice:
    """Apply the guard's rule (module docstring) to K candidate scores.

    Args:
        scores: K ≥ 1 scores in candidate order.
        max_residual_yaw: limit on |residual yaw| (degrees).
        max_residual_pitch: limit on |residual pitch| (degrees).

    Returns:
        The choice; ``reason`` is ``within_limits`` (best similarity among qualifying candidates),
        ``none_within_limits`` (no scored candidate qualifies: most frontal scored one, fallback) or ``no_face``
        (no candidate has a similarity: most frontal of all, fallback).

    Raises:
        ValueError: ``scores`` is empty.
    """
    if not scores:
        raise ValueError("choose_candidate needs at least one candidate")
    scored = [i for i, s in enumerate(scores) if s.similarity is not None and math.isfinite(s.similarity)]
    qualifying = [i for i in scored if scores[i].within(max_residual_yaw, max_residual_pitch)]
    if qualifying:
        best = max(qualifying, key=lambda i: (scores[i].similarity, -i))
        return GuardChoice(best, False, "within_limits")
    pool = scored or list(range(len(scores)))
    most_frontal = min(pool, key=lambda i: (scores[i].off_frontal, -(scores[i].similarity or -math.inf), i))
    return GuardChoice(most_frontal, True, "none_within_limits" if scored else "no_face")


def cosine_or_none(source: np.ndarray | None, candidate: np.ndarray | None) -> float | None:
    """Cosine of two L2-normalised embeddings, or None when either face is missing (never 0)."""
    if source is None or candidate is None:
        return None
    return float(np.dot(source, candidate))


def guard_record(candidates: Sequence[Candidate], scores: Sequence[CandidateScore], rolls: Sequence[float],
                 choice: GuardChoice, *, config: GuardConfig, source_face: bool,
                 timings_ms: Mapping[str, float] | None = None) -> dict[str, Any]:
    """The ``guard`` object of a manifest row (JSON-ready; similarities rounded to 5, angles to 3 decimals).

    Each candidate row holds ``name``, ``alpha``, the backend's own fields (liveportrait: ``expression``,
    ``stitching``; mesh: ``symmetry``), ``stage``, the similarity, the residual pose and ``within_limits``.
    """
    rows = []
    for candidate, score, roll in zip(candidates, scores, rolls):
        rows.append({
            "name": candidate.name, "alpha": candidate.alpha, **dict(candidate.fields), "stage": candidate.stage,
            "similarity": None if score.similarity is None else round(float(score.similarity), 5),
            "residual_yaw": _rounded(score.residual_yaw), "residual_pitch": _rounded(score.residual_pitch),
            "residual_roll": _rounded(roll),
            "within_limits": score.within(config.max_residual_yaw, config.max_residual_pitch),
        })
    return {
        "recognizer": config.recognizer, "detector": config.detector, "source_face": source_face,
        "max_residual_yaw": config.max_residual_yaw, "max_residual_pitch": config.max_residual_pitch,
        "candidates": rows, "chosen": choice.index, "chosen_name": candidates[choice.index].name,
        "fallback": choice.fallback, "fallback_reason": None if not choice.fallback else choice.reason,
        "timings_ms": {step: round(ms, 2) for step, ms in (timings_ms or {}).items()},
    }


def _rounded(value: float) -> float | None:
    return round(float(value), 3) if math.isfinite(value) else None


# ---- scoring -----------------------------------------------------------------------------------------------------
class IdentityScorer:
    """Embeds the largest face of each image with the guard's detector and recognizer (recognizer batched)."""

    def __init__(self, detector: FaceDetector, recognizer: FaceRecognizer) -> None:
        """Args: detector: finds the face to align (with pad/size retry); recognizer: aligns and embeds it."""
        self.detector = detector
        self.recognizer = recognizer

    def embed(self, images: Sequence[np.ndarray]) -> list[np.ndarray | None]:
        """L2-normalised embedding of the largest face of each H×W×3 uint8 RGB image (None = no face).

        All found faces go through the recognizer in one ``embed`` call (batched internally).
        """
        found: list[int] = []
        chips: list[np.ndarray] = []
        for index, image in enumerate(images):
            faces, _ = detect_with_retry(self.detector, image)
            if faces:
                found.append(index)
                chips.append(self.recognizer.align(image, faces[0]))
        vectors = self.recognizer.embed(chips) if chips else np.zeros((0, 0), dtype=np.float32)
        embeddings: list[np.ndarray | None] = [None] * len(images)
        for index, vector in zip(found, vectors):
            embeddings[index] = np.asarray(vector, dtype=np.float32)
        return embeddings


# ---- the guarded frontalizer -------------------------------------------------------------------------------------
def guard_candidates(renderer: CandidateRenderer, config: GuardConfig) -> list[Candidate]:
    """Every candidate of a guarded run, in choice order: the renderer's, then per ``guard.stages`` stage the same
    list stage-processed."""
    return with_stage_candidates(renderer.candidates, config.stages)


@dataclass
class _BatchCandidates:
    """Intermediate results of one batch: per face the K images, poses and similarities (or its error)."""

    images: list[list[np.ndarray] | InputError]
    poses: list[list[Pose | None]]
    similarities: list[list[float | None]]
    source_faces: list[bool]
    source_poses: list[Pose | None]
    timings: dict[str, float]


class GuardedFrontalizer:
    """Frontalizer that has a backend render the guard's K candidates per face and keeps the best one."""

    def __init__(self, renderer: CandidateRenderer, config: GuardConfig, scorer: IdentityScorer, *,
                 stages: Mapping[str, Stage] | None = None) -> None:
        """Args:
        renderer: the backend's candidate renderer (its candidates, renders and residual poses).
        config: the guard section of the config.
        scorer: detector + recognizer scoring candidates against the source crop.
        stages: built stages of ``config.stages`` by name.
        """
        self.renderer = renderer
        self.name = f"{renderer.name}+guard"
        self.config = config
        self.scorer = scorer
        self.stages = dict(stages or {})
        missing = [name for name in config.stages if name not in self.stages]
        if missing:
            raise ValueError(f"guard stages not built: {', '.join(missing)}")
        self.candidates = guard_candidates(renderer, config)

    def frontalize(self, faces: Sequence[FaceInput]) -> list[FaceOutcome]:
        """Frontalize a batch: K candidates per face, scored; one result per face carrying the ``guard`` record."""
        if not faces:
            return []
        batch = self._candidates(faces)
        share = {step: ms / len(faces) for step, ms in batch.timings.items()}
        results: list[FaceOutcome] = []
        for b, images in enumerate(batch.images):
            if isinstance(images, InputError):
                results.append(images)
                continue
            poses = [_pose_or_nan(pose) for pose in batch.poses[b]]
            # rounded as in the manifest, so the recorded numbers reproduce the choice exactly
            scores = [CandidateScore(None if sim is None else round(sim, 5), round(pose["yaw"], 3),
                                     round(pose["pitch"], 3))
                      for sim, pose in zip(batch.similarities[b], poses)]
            choice = choose_candidate(scores, max_residual_yaw=self.config.max_residual_yaw,
                                      max_residual_pitch=self.config.max_residual_pitch)
            record = guard_record(self.candidates, scores, [pose["roll"] for pose in poses], choice,
                                  config=self.config, source_face=batch.source_faces[b], timings_ms=share)
            dumps = {c.name: image for c, image in zip(self.candidates, images)} if self.config.dump else {}
            results.append(FrontalizedFace(image=images[choice.index], source_pose=batch.source_poses[b],
                                           output_pose=batch.poses[b][choice.index], extra={"guard": record},
                                           candidate_images=dumps))
        return results

    def _candidates(self, faces: Sequence[FaceInput]) -> _BatchCandidates:
        timings: dict[str, float] = {}
        with timed(timings, "render"):
            renders = self.renderer.render_candidates(faces)
        ok = [b for b, row in enumerate(renders.images) if not isinstance(row, InputError)]
        images: list[list[np.ndarray] | InputError] = list(renders.images)
        if self.config.stages:
            with timed(timings, "stages"):
                for b in ok:
                    images[b] = self._with_stages(faces[b], _rendered(images[b]))
        jobs = [(b, c.source_index, image) for b in ok for c, image in zip(self.candidates, _rendered(images[b]))]
        with timed(timings, "pose"):
            flat_poses = self.renderer.residual_poses(renders, jobs) if jobs else []
        with timed(timings, "score"):
            embeddings = self.scorer.embed([faces[b].crop for b in ok] + [image for _, _, image in jobs])
        sources, rest = embeddings[: len(ok)], embeddings[len(ok):]
        total = len(self.candidates)
        poses: list[list[Pose | None]] = [[] for _ in faces]
        similarities: list[list[float | None]] = [[] for _ in faces]
        source_faces = [False] * len(faces)
        for position, b in enumerate(ok):
            block = slice(position * total, (position + 1) * total)
            poses[b] = list(flat_poses[block])
            similarities[b] = [cosine_or_none(sources[position], vector) for vector in rest[block]]
            source_faces[b] = sources[position] is not None
        return _BatchCandidates(images=images, poses=poses, similarities=similarities, source_faces=source_faces,
                                source_poses=list(renders.source_poses), timings=timings)

    def _with_stages(self, face: FaceInput, rendered: list[np.ndarray]) -> list[np.ndarray]:
        """The rendered candidates of one face followed by their stage-processed versions (candidate order)."""
        context = StageContext(input_id="guard candidate", source_rgb=face.crop)
        staged = [self.stages[c.stage](rendered[c.source_index], context)
                  for c in self.candidates if c.stage is not None]
        return [*rendered, *staged]


def _rendered(row: list[np.ndarray] | InputError) -> list[np.ndarray]:
    assert not isinstance(row, InputError)
    return row


_UNKNOWN_POSE: Pose = {"pitch": math.nan, "yaw": math.nan, "roll": math.nan}


def _pose_or_nan(pose: Pose | None) -> Pose:
    """A residual pose that could not be measured is NaN for the choice rule (never within the limits)."""
    return _UNKNOWN_POSE if pose is None else pose


# ---- building ----------------------------------------------------------------------------------------------------
def build_guard_frontalizer(plan: RunPlan) -> GuardedFrontalizer:
    """The backend's candidate renderer, the guard's detector, recognizer and stages (weights verified by
    ``plan_run``; each model placed by :func:`frontalize.devices.model_device` for its kind).

    Raises:
        ConfigError: the backend renders no candidates (identity).
    """
    cfg = plan.config
    guard = cfg.guard
    spec = get_backend_spec(cfg.frontalizer.backend)
    if spec.build_candidates is None:
        raise ConfigError(no_candidates_message(cfg.frontalizer.backend))
    renderer = spec.build_candidates(BackendContext(
        config=cfg.frontalizer, weights_root=plan.weights_root, device=plan.device,
        allow_unverified=cfg.allow_unverified_weights, upright=cfg.crop.upright, pose_source=plan.pose_source,
        guard=guard))
    count = guard.candidate_count(cfg.frontalizer.backend)
    detector = build_detector(guard.detector, weights_root=plan.weights_root, det_size=guard.det_size,
                              threshold=guard.threshold, nms_threshold=cfg.detection.nms_threshold,
                              device=plan.device)
    recognizer = build_recognizer(guard.recognizer, weights_root=plan.weights_root, device=plan.device,
                                  batch_size=max(32, cfg.frontalizer.batch_size * count))
    stages = {name: build_stage(name, cfg.stages, weights_root=plan.weights_root, device=plan.device)
              for name in guard.stages}
    logger.info("identity guard (%s): %d candidates per face (%s), scored with %s on %s faces, limits |yaw| ≤ %g°, "
                "|pitch| ≤ %g°", renderer.name, count, ", ".join(c.name for c in guard_candidates(renderer, guard)),
                guard.recognizer, guard.detector, guard.max_residual_yaw, guard.max_residual_pitch)
    return GuardedFrontalizer(renderer, guard, IdentityScorer(detector, recognizer), stages=stages)

