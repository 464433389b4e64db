"""Frontalizer backend interface: a small protocol plus the explicit registry of backends.

A backend turns a batch of 512×512 face crops into frontalized 512×512 crops. Adding a backend means one new
module defining a :class:`BackendSpec` named ``SPEC`` and one line in :data:`BACKEND_MODULES` (plus the name in
``FrontalizerConfig.backend``). Modules are imported lazily so the identity backend never loads torch models.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from frontalize.config.inference import FrontalizerConfig

logger = logging.getLogger(__name__)

Pose = dict[str, float]

BACKEND_MODULES: Mapping[str, str] = {
    "identity": "frontalize.pipeline.backends.identity",
    "liveportrait": "frontalize.pipeline.backends.liveportrait",
}
"""Backend name → module defining ``SPEC`` (explicit; no import-time registration)."""


@dataclass
class FrontalizedFace:
    """One backend result.

    Attributes:
        image: 512×512×3 uint8 RGB frontalized crop.
        source_pose: pose of the input crop when the backend measured it on the way (None otherwise).
        output_pose: residual pose of ``image`` when the backend measured it (None otherwise).
        extra: backend-specific manifest fields.
        candidate_images: name → 512×512×3 uint8 RGB image of every candidate to dump for inspection (identity
            guard with ``guard.dump``; empty otherwise).
    """

    image: np.ndarray
    source_pose: Pose | None = None
    output_pose: Pose | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    candidate_images: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class FaceInput:
    """One face handed to a backend.

    Attributes:
        crop: 512×512×3 uint8 RGB crop.
        roll_offset: degrees of target roll that make the face upright after paste-back (−θ of the crop).
    """

    crop: np.ndarray
    roll_offset: float = 0.0


class PoseEstimator(Protocol):
    """Measures head pose on face crops."""

    def estimate(self, crops: Sequence[np.ndarray]) -> list[Pose]:
        """Poses of B H×W×3 uint8 RGB crops (512 or 256 square), in degrees."""
        ...


class Frontalizer(Protocol):
    """A frontalization backend."""

    name: str

    def frontalize(self, faces: Sequence[FaceInput]) -> list[FrontalizedFace]:
        """Frontalize a batch of faces (one result per face, same order)."""
        ...


@dataclass(frozen=True)
class BackendContext:
    """What a backend builder receives.

    Attributes:
        config: the frontalizer section of the config.
        weights_root: weights root folder (files already verified).
        device: concrete torch device string (``cpu``, ``cuda:0``).
        allow_unverified: weights were accepted without checksums (test weights).
        upright: compensate the crop rotation in the target roll (``crop.upright``).
        measure_poses: measure source/output poses (``frontalizer.pose_estimation`` not never).
        pose_estimator: shared pose estimator for backends that use one, or None.
    """

    config: FrontalizerConfig
    weights_root: Path
    device: str
    allow_unverified: bool = False
    upright: bool = True
    measure_poses: bool = True
    pose_estimator: PoseEstimator | None = None


@dataclass(frozen=True)
class BackendSpec:
    """How to build a backend.

    Attributes:
        weight_keys: registry keys the backend loads for a given frontalizer config.
        build: constructor taking a :class:`BackendContext`.
        uses_pose_estimator: the backend measures poses with the shared LivePortrait motion-extractor estimator
            (built by the pipeline per ``frontalizer.pose_estimation``); False when it measures them itself.
    """

    weight_keys: Callable[[FrontalizerConfig], tuple[str, ...]]
    build: Callable[[BackendContext], Frontalizer]
    uses_pose_estimator: bool = False


def get_backend_spec(name: str) -> BackendSpec:
    """The :class:`BackendSpec` of backend ``name``.

    Raises:
        ValueError: unknown name (the config's Literal normally prevents it).
    """
    module_name = BACKEND_MODULES.get(name)
    if module_name is None:
        raise ValueError(f"unknown frontalizer backend {name!r}; valid: {', '.join(BACKEND_MODULES)}")
    spec = importlib.import_module(module_name).SPEC
    if not isinstance(spec, BackendSpec):
        raise TypeError(f"{module_name}.SPEC is not a BackendSpec")
    return spec
