"""Frontalizer backend interface: a small protocol plus the explicit registry of backends.

A backend turns a batch of 512×512 face crops into frontalized 512×512 crops. Adding a backend means one new
module defining a :class:`BackendSpec` named ``SPEC`` and one line in :data:`BACKEND_MODULES` (plus the name in
``FrontalizerConfig.backend``). Modules are imported lazily so the identity backend never loads torch models.

A backend that can feed the identity guard also builds a :class:`CandidateRenderer`: it lists its candidates for a
guard config, renders them per face from one analysis of the source, and measures their residual pose with its own
estimator. :mod:`frontalize.pipeline.guard` scores and chooses among whatever candidates a renderer gives, and
imports no engine.

Failures: a backend returns an :class:`~frontalize.errors.InputError` in place of a face's result when that face
cannot be processed for a deterministic reason (e.g. ``LandmarkFitError``, status ``landmarks_unfit``); the
pipeline records its status and reason and goes on. Any other exception fails the batch, which the pipeline then
retries face by face to isolate the culprit (status ``frontalize_error``).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from frontalize.config.inference import FrontalizerConfig, GuardConfig
from frontalize.errors import InputError
from frontalize.faces.types import Face

logger = logging.getLogger(__name__)

Pose = dict[str, float]
PoseSourceName = Literal["motion_extractor", "landmarks68"]

BACKEND_MODULES: Mapping[str, str] = {
    "identity": "frontalize.pipeline.backends.identity",
    "liveportrait": "frontalize.pipeline.backends.liveportrait",
    "mesh": "frontalize.pipeline.backends.mesh",
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


FaceOutcome = FrontalizedFace | InputError
"""A backend's answer for one face: the result, or the deterministic reason it cannot be processed."""


@dataclass(frozen=True)
class FaceInput:
    """One face handed to a backend.

    Attributes:
        crop: 512×512×3 uint8 RGB crop.
        roll_offset: degrees of target roll that make the face upright after paste-back (−θ of the crop).
        face: the detection that placed the crop, mapped into crop pixels (box + 5 keypoints), or None. Backends
            that place landmarks on the face (mesh, the 68-point pose source) start from it; LivePortrait ignores it.
    """

    crop: np.ndarray
    roll_offset: float = 0.0
    face: Face | None = None


class PoseEstimator(Protocol):
    """Measures head pose on face crops (a pose source of ``frontalizer.pose_source``)."""

    name: str

    def estimate(self, crops: Sequence[np.ndarray], faces: Sequence[Face | None]) -> list[Pose | None]:
        """Poses of B H×W×3 uint8 RGB crops (512 or 256 square), in degrees, project convention.

        Args:
            crops: the crops.
            faces: where the face is in each crop (None = unknown; estimators that need it return None there).

        Returns:
            One pose per crop; None where it cannot be measured (no face, landmarks that do not fit).
        """
        ...


class Frontalizer(Protocol):
    """A frontalization backend."""

    name: str

    def frontalize(self, faces: Sequence[FaceInput]) -> list[FaceOutcome]:
        """Frontalize a batch of faces (one outcome per face, same order)."""
        ...


# ---- identity-guard candidates -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Candidate:
    """One candidate output of the identity guard.

    Attributes:
        name: file-name-safe label, e.g. ``a0.85-keep-stitch`` (liveportrait), ``a0.85-sym`` (mesh), with
            ``+<stage>`` for a stage-processed version.
        alpha: rotation fraction towards frontal (1 = frontal).
        fields: backend-specific manifest fields of the candidate, in record order (liveportrait: ``expression``,
            ``stitching``; mesh: ``symmetry``).
        stage: post-processing stage applied on top of the rendered candidate, or None.
        source_index: index (in the backend's rendered list) of the render this candidate comes from.
        target: the backend's render target (e.g. a LivePortrait ``PoseTarget``, a ``MeshTarget``); opaque to the
            guard.
    """

    name: str
    alpha: float
    fields: tuple[tuple[str, Any], ...] = ()
    stage: str | None = None
    source_index: int = 0
    target: Any = field(default=None, compare=False)


@dataclass
class CandidateRenders:
    """The rendered candidates of a batch of faces.

    Attributes:
        images: per face, the K rendered candidate images (H×W×3 uint8 RGB, in the renderer's candidate order), or
            the InputError that stopped that face.
        source_poses: per face, the source pose the renderer measured (None when unknown or failed).
        state: backend data that :meth:`CandidateRenderer.residual_poses` needs (e.g. per-face fits).
    """

    images: list[list[np.ndarray] | InputError]
    source_poses: list[Pose | None]
    state: Any = None


class CandidateRenderer(Protocol):
    """A backend's side of the identity guard: its candidates, their renders, their residual poses."""

    name: str

    @property
    def candidates(self) -> list[Candidate]:
        """The rendered candidates (``stage`` None, ``source_index`` = position), in the guard's choice order."""
        ...

    def render_candidates(self, faces: Sequence[FaceInput]) -> CandidateRenders:
        """Analyse each source once and render every candidate of :attr:`candidates` from it."""
        ...

    def residual_poses(self, renders: CandidateRenders,
                       images: Sequence[tuple[int, int, np.ndarray]]) -> list[Pose | None]:
        """Residual pose of candidate images: ``(face index, rendered candidate index, image)`` each (the image may
        be a stage-processed version of that render). None where it cannot be measured."""
        ...


# ---- building ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BackendContext:
    """What a backend builder receives.

    Attributes:
        config: the frontalizer section of the config.
        weights_root: weights root folder (files already verified).
        device: concrete torch device string (``cpu``, ``cuda:0``).
        allow_unverified: weights were accepted without checksums (test weights).
        upright: compensate the crop rotation in the target roll (``crop.upright``).
        pose_source: the resolved pose source (``motion_extractor``, ``landmarks68``), or None = no poses.
        pose_estimator: shared estimator of ``pose_source`` for backends that do not measure with their own model,
            or None.
        guard: the guard section (candidate renderers read their candidates from it).
    """

    config: FrontalizerConfig
    weights_root: Path
    device: str
    allow_unverified: bool = False
    upright: bool = True
    pose_source: PoseSourceName | None = None
    pose_estimator: PoseEstimator | None = None
    guard: GuardConfig = field(default_factory=GuardConfig)

    @property
    def measure_poses(self) -> bool:
        """Whether source/output poses are measured."""
        return self.pose_source is not None


@dataclass(frozen=True)
class BackendSpec:
    """How to build a backend.

    Attributes:
        weight_keys: registry keys the backend loads for a given frontalizer config.
        build: constructor taking a :class:`BackendContext`.
        native_pose_source: the pose source the backend measures with its own models (``pose_source: auto`` picks
            it; the guard's residual poses always use it), or None (identity: no model of its own).
        packaged_keys: keys of :data:`frontalize.weights.PACKAGED` files the backend loads (verified before the run
            like the registry weights; their sha256 enters the run hash).
        build_candidates: constructor of the backend's :class:`CandidateRenderer` for the identity guard, or None
            when the backend has no candidates (the guard is then a config error).
    """

    weight_keys: Callable[[FrontalizerConfig], tuple[str, ...]]
    build: Callable[[BackendContext], Frontalizer]
    native_pose_source: PoseSourceName | None = None
    packaged_keys: tuple[str, ...] = ()
    build_candidates: Callable[[BackendContext], CandidateRenderer] | None = None


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


def with_stage_candidates(rendered: Sequence[Candidate], stages: Sequence[str]) -> list[Candidate]:
    """Every guard candidate in choice order: ``rendered``, then per stage the same list stage-processed
    (``<name>+<stage>``, same α and fields, ``source_index`` of the render it comes from)."""
    staged = [Candidate(f"{c.name}+{stage}", c.alpha, c.fields, stage=stage, source_index=c.source_index,
                        target=c.target)
              for stage in stages for c in rendered]
    return [*rendered, *staged]


def no_candidates_message(backend: str) -> str:
    """The config error of an identity guard with a backend that renders no candidates (identity)."""
    return (f"guard.enabled: the {backend} frontalizer renders no candidates for the identity guard (it does not "
            "frontalize); use --frontalize mesh or --frontalize (liveportrait), or set guard.enabled: false")
