"""Identity guard: frontalize as far as identity allows.

Per face, the LivePortrait engine extracts the source features once (F and M) and renders K candidate targets
in one (B·K)-row batch through W and G: every rotation fraction α of ``guard.alphas`` × expression (keep /
neutralize) × stitching (on / off), plus optionally each rendered candidate post-processed by a ``guard.stages``
stage. Each candidate gets

* a **similarity**: cosine between the recognizer embedding of its largest face and that of the *source crop*
  (the source image in the crop's framing) — never the GT, which inference does not see. The recognizer embeds
  the chips of every source and candidate of the batch in one call. A candidate (or source) in which the guard's
  detector finds no face has similarity ``None``;
* a **residual pose**: the LivePortrait motion extractor run on the candidate crop (degrees).

The choice (:func:`choose_candidate`, a pure function): the candidate of maximum similarity among those with
|residual yaw| ≤ ``max_residual_yaw`` and |residual pitch| ≤ ``max_residual_pitch``; ties go to the earlier
candidate (larger α first in the default order). When none qualifies, the most frontal candidate (smallest
√(yaw² + pitch²)) is kept and flagged ``fallback``. A candidate with similarity ``None`` is never chosen unless
every candidate's similarity is ``None`` (e.g. no face in the source crop); then the most frontal one is kept,
flagged ``fallback`` with reason ``no_face``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
import torch

from frontalize.config.inference import GuardConfig
from frontalize.faces.align import detect_with_retry
from frontalize.faces.registry import build_detector, build_recognizer
from frontalize.faces.types import FaceDetector, FaceRecognizer
from frontalize.liveportrait.crop import images_to_tensor, network_input
from frontalize.liveportrait.frontalizer import LivePortraitFrontalizer, PoseTarget, SourceState
from frontalize.liveportrait.loading import load_official
from frontalize.liveportrait.pasteback import tensor_to_images
from frontalize.pipeline.backends.base import FaceInput, FrontalizedFace
from frontalize.pipeline.plan import RunPlan
from frontalize.pipeline.pose import poses_from_angles
from frontalize.pipeline.records import Pose
from frontalize.pipeline.steps import timed
from frontalize.stages.base import Stage, StageContext
from frontalize.stages.registry import build_stage

logger = logging.getLogger(__name__)

__all__ = [
    "Candidate",
    "CandidateScore",
    "GuardChoice",
    "GuardedFrontalizer",
    "IdentityScorer",
    "build_guard_frontalizer",
    "candidate_grid",
    "choose_candidate",
    "guard_record",
]

ChoiceReason = Literal["within_limits", "none_within_limits", "no_face"]


# ---- candidates --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Candidate:
    """One candidate output of the guard.

    Attributes:
        name: file-name-safe label, e.g. ``a0.85-keep-stitch`` or ``a1.00-neutral-stitch+sharpen``.
        alpha: rotation fraction towards frontal (1 = frontal).
        expression: ``keep`` or ``neutralize``.
        stitching: whether the stitching network S is applied.
        stage: post-processing stage applied on top of the rendered candidate, or None.
        source_index: index (in the rendered list) of the render this candidate comes from.
    """

    name: str
    alpha: float
    expression: Literal["keep", "neutralize"]
    stitching: bool
    stage: str | None = None
    source_index: int = 0

    def target(self) -> PoseTarget:
        """The engine's pose target (α = 1 uses the exact frontal recipe of the unguarded run)."""
        mode: Literal["frontal", "partial"] = "frontal" if self.alpha >= 1.0 else "partial"
        return PoseTarget(mode=mode, alpha=self.alpha, expression=self.expression, stitching=self.stitching)


def candidate_name(alpha: float, expression: str, stitching: bool, stage: str | None = None) -> str:
    """Label of a candidate: ``a<alpha>-<keep|neutral>-<stitch|nostitch>[+<stage>]``."""
    base = f"a{alpha:.2f}-{'keep' if expression == 'keep' else 'neutral'}-{'stitch' if stitching else 'nostitch'}"
    return f"{base}+{stage}" if stage else base


def candidate_grid(config: GuardConfig) -> list[Candidate]:
    """Every candidate of ``config``, in choice order: the rendered ones (α outer, then expression, then
    stitching, each in config order), then per stage of ``config.stages`` the same list post-processed."""
    rendered = [Candidate(candidate_name(alpha, expression, stitching), alpha, expression, stitching,
                          source_index=index)
                for index, (alpha, expression, stitching) in enumerate(
                    (a, e, s) for a in config.alphas for e in config.expressions for s in config.stitching)]
    staged = [Candidate(candidate_name(c.alpha, c.expression, c.stitching, stage), c.alpha, c.expression,
                        c.stitching, stage=stage, source_index=c.source_index)
              for stage in config.stages for c in rendered]
    return rendered + staged


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
    """The ``guard`` object of a manifest row (JSON-ready; similarities rounded to 5, angles to 3 decimals)."""
    rows = []
    for candidate, score, roll in zip(candidates, scores, rolls):
        rows.append({
            "name": candidate.name, "alpha": candidate.alpha, "expression": candidate.expression,
            "stitching": candidate.stitching, "stage": candidate.stage,
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


class GuardEngine(Protocol):
    """The part of :class:`~frontalize.liveportrait.LivePortraitFrontalizer` the guard uses."""

    device: torch.device

    def extract(self, x: torch.Tensor) -> SourceState:
        """F and M once on B×3×256×256 crops."""
        ...

    def render(self, state: SourceState, targets: Sequence[PoseTarget] | None = None, *,
               roll_offset: Sequence[float] | None = None, chunk_size: int | None = None) -> dict[str, torch.Tensor]:
        """``image`` B×K×3×512×512 for K targets."""
        ...

    def estimate_pose(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(pitch, yaw, roll) B-tensors of degrees."""
        ...


# ---- the guarded frontalizer -------------------------------------------------------------------------------------
@dataclass
class _BatchCandidates:
    """Intermediate results of one batch: B×K images, poses and similarities, and step timings."""

    images: list[list[np.ndarray]]
    poses: list[list[Pose]]
    similarities: list[list[float | None]]
    source_faces: list[bool]
    source_poses: list[Pose]
    timings: dict[str, float]


class GuardedFrontalizer:
    """LivePortrait frontalizer that renders the guard's K candidates per face and keeps the best one."""

    name = "liveportrait+guard"

    def __init__(self, engine: GuardEngine, config: GuardConfig, scorer: IdentityScorer, *,
                 stages: Mapping[str, Stage] | None = None, upright: bool = True) -> None:
        """Args:
        engine: loaded LivePortrait frontalizer (or anything with its extract/render/estimate_pose).
        config: the guard section of the config.
        scorer: detector + recognizer scoring candidates against the source crop.
        stages: built stages of ``config.stages`` by name.
        upright: add each crop's roll offset to the target roll (``crop.upright``).
        """
        self.engine = engine
        self.config = config
        self.scorer = scorer
        self.stages = dict(stages or {})
        missing = [name for name in config.stages if name not in self.stages]
        if missing:
            raise ValueError(f"guard stages not built: {', '.join(missing)}")
        self.upright = upright
        self.candidates = candidate_grid(config)
        self.rendered = [c for c in self.candidates if c.stage is None]

    def frontalize(self, faces: Sequence[FaceInput]) -> list[FrontalizedFace]:
        """Frontalize a batch: K candidates per face, scored; one result per face carrying the ``guard`` record."""
        if not faces:
            return []
        batch = self._candidates(faces)
        share = {step: ms / len(faces) for step, ms in batch.timings.items()}
        results = []
        for b in range(len(faces)):
            # rounded as in the manifest, so the recorded numbers reproduce the choice exactly
            scores = [CandidateScore(None if sim is None else round(sim, 5), round(pose["yaw"], 3),
                                     round(pose["pitch"], 3))
                      for sim, pose in zip(batch.similarities[b], batch.poses[b])]
            choice = choose_candidate(scores, max_residual_yaw=self.config.max_residual_yaw,
                                      max_residual_pitch=self.config.max_residual_pitch)
            record = guard_record(self.candidates, scores, [pose["roll"] for pose in batch.poses[b]], choice,
                                  config=self.config, source_face=batch.source_faces[b], timings_ms=share)
            dumps = ({c.name: image for c, image in zip(self.candidates, batch.images[b])} if self.config.dump
                     else {})
            results.append(FrontalizedFace(image=batch.images[b][choice.index], source_pose=batch.source_poses[b],
                                           output_pose=batch.poses[b][choice.index], extra={"guard": record},
                                           candidate_images=dumps))
        return results

    def _candidates(self, faces: Sequence[FaceInput]) -> _BatchCandidates:
        timings: dict[str, float] = {}
        with timed(timings, "render"):
            batch = images_to_tensor([network_input(face.crop) for face in faces], device=self.engine.device)
            state = self.engine.extract(batch)
            offsets = [face.roll_offset for face in faces] if self.upright else None
            out = self.engine.render(state, [c.target() for c in self.rendered], roll_offset=offsets,
                                     chunk_size=self.config.render_chunk)
            rendered = out["image"]
            flat = tensor_to_images(rendered.reshape(-1, *rendered.shape[2:]))
        count = len(self.rendered)
        images = [[flat[b * count + k] for k in range(count)] for b in range(len(faces))]
        if self.config.stages:
            with timed(timings, "stages"):
                images = [self._with_stages(face, row) for face, row in zip(faces, images)]
        with timed(timings, "pose"):
            poses = self._residual_poses([image for row in images for image in row])
        with timed(timings, "score"):
            embeddings = self.scorer.embed([face.crop for face in faces] + [im for row in images for im in row])
        sources, rest = embeddings[: len(faces)], embeddings[len(faces):]
        total = len(self.candidates)
        similarities = [[cosine_or_none(sources[b], rest[b * total + k]) for k in range(total)]
                        for b in range(len(faces))]
        return _BatchCandidates(
            images=images, poses=[poses[b * total:(b + 1) * total] for b in range(len(faces))],
            similarities=similarities, source_faces=[vector is not None for vector in sources],
            source_poses=poses_from_angles(state.motion.pitch, state.motion.yaw, state.motion.roll),
            timings=timings)

    def _with_stages(self, face: FaceInput, rendered: list[np.ndarray]) -> list[np.ndarray]:
        """The rendered candidates of one face followed by their stage-processed versions (candidate order)."""
        context = StageContext(input_id="guard candidate", source_rgb=face.crop)
        staged = [self.stages[c.stage](rendered[c.source_index], context)
                  for c in self.candidates if c.stage is not None]
        return [*rendered, *staged]

    def _residual_poses(self, images: Sequence[np.ndarray]) -> list[Pose]:
        """Motion-extractor pose of every candidate crop (one batch of B·K, or chunks of ``render_chunk``)."""
        step = self.config.render_chunk or len(images)
        poses: list[Pose] = []
        for start in range(0, len(images), step):
            chunk = images_to_tensor([network_input(image) for image in images[start:start + step]],
                                     device=self.engine.device)
            poses.extend(poses_from_angles(*self.engine.estimate_pose(chunk)))
        return poses


# ---- building ----------------------------------------------------------------------------------------------------
def build_guard_frontalizer(plan: RunPlan) -> GuardedFrontalizer:
    """Load LivePortrait, the guard's detector, recognizer and stages (weights verified by ``plan_run``; each
    model placed by :func:`frontalize.devices.model_device` for its kind)."""
    cfg = plan.config
    guard = cfg.guard
    front = cfg.frontalizer
    if (front.target, front.alpha, front.expression, front.stitching) != ("frontal", 1.0, "keep", True):
        logger.warning("identity guard: frontalizer.target/alpha/expression/stitching are ignored; the candidates "
                       "come from guard.alphas/expressions/stitching")
    networks = load_official(plan.weights_root, device=plan.device, allow_unverified=cfg.allow_unverified_weights)
    engine = LivePortraitFrontalizer(networks, device=plan.device, precision=cfg.frontalizer.precision)
    detector = build_detector(guard.detector, weights_root=plan.weights_root, det_size=guard.det_size,
                              threshold=guard.threshold, nms_threshold=cfg.detection.nms_threshold,
                              device=plan.device)
    recognizer = build_recognizer(guard.recognizer, weights_root=plan.weights_root, device=plan.device,
                                  batch_size=max(32, cfg.frontalizer.batch_size * guard.candidate_count))
    stages = {name: build_stage(name, cfg.stages, weights_root=plan.weights_root, device=plan.device)
              for name in guard.stages}
    logger.info("identity guard: %d candidates per face (%s), scored with %s on %s faces, limits |yaw| ≤ %g°, "
                "|pitch| ≤ %g°", guard.candidate_count, ", ".join(c.name for c in candidate_grid(guard)),
                guard.recognizer, guard.detector, guard.max_residual_yaw, guard.max_residual_pitch)
    return GuardedFrontalizer(engine, guard, IdentityScorer(detector, recognizer), stages=stages,
                              upright=cfg.crop.upright)
