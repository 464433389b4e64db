"""The plan of an inference run: everything decided before the first image is read.

Its own module so that every part of the pipeline (the step builders, the identity guard, both executors) can
take a :class:`RunPlan` without importing the runner that makes it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
        verified_weights: every weight file the run loads, verified.
        device: the run's concrete device (models are placed by :func:`frontalize.devices.model_device`).
        overwrite: replace existing outputs.
        measure_poses: whether source/output poses are measured.
        hash_inputs: the flat key → value map the run hash is computed from (pixel-changing config keys and
            the checksum, or ``unverified``, of every weight file).
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
    measure_poses: bool = False
    hash_inputs: Mapping[str, Any] = field(default_factory=dict)
