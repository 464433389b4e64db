"""Result containers of one evaluation run (filled by the runner, read by tables, figures and the report)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from frontalize.config.evaluation import CombinationConfig, EvalConfig
from frontalize.datasets.base import Dataset
from frontalize.evaluation.analysis import PairVerification
from frontalize.evaluation.embed import EmbeddingStore
from frontalize.evaluation.metrics import VerificationResult
from frontalize.evaluation.pairing import ArmScores, Gallery
from frontalize.evaluation.trees import FrontalArm

__all__ = ["ArmResult", "CombinationResult", "EvaluationResults"]


@dataclass
class ArmResult:
    """Everything computed for one output tree under one combination."""

    arm: FrontalArm
    scores: ArmScores
    summary: dict[str, Any]
    verification: dict[str, Any]
    curves: dict[str, VerificationResult]
    pose_bins: list[dict[str, Any]]
    vs_reference: dict[str, Any] | None = None
    pairs: PairVerification | None = None


@dataclass
class CombinationResult:
    """Everything computed for one detector × recognizer combination."""

    combination: CombinationConfig
    gallery: Gallery
    similarity: dict[str, Any]
    detection: list[dict[str, Any]]
    arms: list[ArmResult] = field(default_factory=list)
    pairs_angle: PairVerification | None = None

    @property
    def label(self) -> str:
        """Table label of the combination."""
        return self.combination.label


@dataclass
class EvaluationResults:
    """One run: dataset, output trees, per-combination results, provenance."""

    config: EvalConfig
    dataset: Dataset
    arms: list[FrontalArm]
    combinations: list[CombinationResult]
    store: EmbeddingStore
    pose_source: str
    notes: list[str] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)
    verified_weights: dict[str, Any] = field(default_factory=dict)
    pose_estimator: str | None = None
    """Pose model of the detection pass (``"1k3d68"``, ``"landmarks68"``); None = 5-keypoint proxy only."""
    pose_error: list[dict[str, Any]] = field(default_factory=list)
    """Pose estimators against the known poses (:func:`~.pose_error.pose_error_rows`); empty without known poses."""
