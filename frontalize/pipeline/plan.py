"""The plan of an inference run: everything decided before the first image is read.

Its own module so that every part of the pipeline (the step builders, the identity guard, both executors) can
take a :class:`RunPlan` without importing the runner that makes it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from frontalize.config.inference import InferenceConfig
from frontalize.pipeline.inputs import InputItem
from frontalize.pipeline.resume import ResumePlan
from frontalize.weights import VerifiedWeight

__all__ = ["RunPlan"]


@dataclass(frozen=True)
class RunPlan:
    """Everything decided before the first image is read.

    Attributes:
        config: the resolved config.
        source_root: folder the input paths are relative to.
        out_dir: output folder.
        items: every selected input.
        resume: which of them to process now and which are already done.
        config_hash: the run hash (:func:`frontalize.pipeline.provenance.run_hash` of ``hash_inputs``).
        weights_root: weights root folder.
        verified_weights: every weight file under the weights root the run loads, verified (what Ray workers
            verify again).
        device: the run's concrete device (models are placed by :func:`frontalize.devices.model_device`).
        overwrite: replace existing outputs.
        hash_inputs: the flat key → value map the run hash is computed from (pixel-changing config keys, the
            checksum, or ``unverified``, of every weight file, the pose source and its estimator).
        pose_source: the resolved pose source (``motion_extractor``, ``landmarks68``) or None (no poses).
        packaged_weights: every package-shipped file the run loads (``frontalize.weights.PACKAGED``), verified.
    """

    config: InferenceConfig
    source_root: Path
    out_dir: Path
    items: tuple[InputItem, ...]
    resume: ResumePlan
    config_hash: str
    weights_root: Path
    verified_weights: dict[str, VerifiedWeight]
    device: str
    overwrite: bool = False
    hash_inputs: Mapping[str, Any] = field(default_factory=dict)
    pose_source: Literal["motion_extractor", "landmarks68"] | None = None
    packaged_weights: dict[str, VerifiedWeight] = field(default_factory=dict)

    @property
    def measure_poses(self) -> bool:
        """Whether source/output poses are measured."""
        return self.pose_source is not None
