"""``mesh`` frontalizer: the geometric (3D-model) engine of :mod:`frontalize.geometric`, offline.

Per face: dlib's 68 landmarks on the detection the pipeline hands over (mapped into crop pixels), the fit of the 3D
mean shape and the dense surface, then one render at the target (``frontalizer.target/alpha/pitch/yaw/roll`` with
LivePortrait's meaning, ``frontalizer.symmetry`` for the soft symmetric fill, ``crop.upright`` through the crop's roll
offset). A face whose landmarks cannot be fitted gets status ``landmarks_unfit`` and the reason; the batch goes on.

Poses: with ``landmarks68`` (what ``pose_source: auto`` picks) the source pose is the fit's and the output pose is a
new fit of 68 landmarks on the output crop, started from where the engine put the face
(:meth:`~frontalize.geometric.FaceFit.output_face`); with ``motion_extractor``, LivePortrait's M on both crops.
Output poses are in the crop frame (an upright result has roll = the crop's roll offset).

Identity guard: :class:`MeshCandidates` fits each face once and renders α × symmetry from that fit; residual poses
by 68 landmarks re-fitted on each candidate.

Manifest extra ``mesh``: ``landmark_residual`` (RMS of the fit, inter-ocular distances) and ``mirrored`` (share of
the rendered face area whose texture comes from the mirrored side, i.e. invented).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from frontalize.config.inference import FrontalizerConfig, GuardConfig
from frontalize.errors import InputError
from frontalize.faces.headpose import HeadPoseEstimator, LandmarkFitError
from frontalize.faces.registry import build_landmarker68
from frontalize.faces.types import Face
from frontalize.geometric import FaceFit, GeometricFrontalizer, MeshTarget, RenderLayers
from frontalize.pipeline.backends.base import (
    BackendContext,
    BackendSpec,
    Candidate,
    CandidateRenders,
    FaceInput,
    FaceOutcome,
    FrontalizedFace,
    Pose,
    PoseEstimator,
)
from frontalize.pipeline.pose import LANDMARKS68_LIMITS, Landmarks68PoseEstimator

logger = logging.getLogger(__name__)

PREDICTOR_KEY = "dlib_shape_predictor_68"
"""The package-shipped dlib predictor (:data:`frontalize.weights.PACKAGED`) the backend loads."""


def mesh_target(config: FrontalizerConfig) -> MeshTarget:
    """The engine's render target for a frontalizer config (LivePortrait's target meaning, plus symmetry)."""
    return MeshTarget(mode=config.target, alpha=config.alpha, pitch=config.pitch, yaw=config.yaw, roll=config.roll,
                      symmetry=config.symmetry)


def fit_face(engine: GeometricFrontalizer, face: FaceInput, upright: bool) -> FaceFit:
    """Fit one pipeline face (its detection gives the landmarker's box).

    Raises:
        LandmarkFitError: the landmarks cannot be fitted.
        ValueError: the face carries no detection.
    """
    if face.face is None:
        raise ValueError("the mesh backend needs the face's detection in crop pixels (FaceInput.face)")
    return engine.fit(face.crop, face.face, roll_offset=face.roll_offset if upright else 0.0)


def output_landmarker(landmarker: Callable[[np.ndarray, Face], np.ndarray]) -> Callable[[np.ndarray, Face], np.ndarray]:
    """The landmarker for measuring outputs: the same predictor without dlib's HOG face check.

    The check refuses boxes without a face; on an output the engine itself put the face where
    :meth:`~frontalize.geometric.FaceFit.output_face` says (the HOG detector scores some strongly warped renders,
    e.g. of 45° views, just below its threshold), so the output is measured there. The fit's own limits (residual,
    anisotropy, |yaw| ≤ 75°) still refuse landmarks that are not a head. A landmarker without a ``verify`` switch is
    used as it is.
    """
    if not getattr(landmarker, "verify", False):
        return landmarker
    clone = copy.copy(landmarker)  # shares the loaded predictor and detector (read-only, see landmarks68)
    clone.__dict__.pop("fingerprint", None)
    clone.verify = False  # type: ignore[attr-defined]
    return clone


def mirrored_share(layers: RenderLayers) -> float:
    """Share of the rendered face area (weighted by the face layer) whose texture is mirrored, in [0, 1]."""
    weight = float(layers.face_alpha.sum())
    return float((layers.mirror_share * layers.face_alpha).sum() / weight) if weight > 0 else 0.0


class MeshBackend:
    """Geometric frontalization of 512 crops, one face at a time (about 25–40 ms per face on a CPU core)."""

    name = "mesh"

    def __init__(self, engine: GeometricFrontalizer, target: MeshTarget, *, upright: bool = True,
                 pose_source: str | None = "landmarks68", pose_estimator: PoseEstimator | None = None) -> None:
        """Args:
        engine: the geometric engine with its 68-point landmarker.
        target: render target of every face.
        upright: add each crop's roll offset to the target roll.
        pose_source: ``landmarks68`` (own fit and a re-fit on the output), ``motion_extractor`` (``pose_estimator``
            on source and output crops) or None (no poses).
        pose_estimator: the estimator of a pose source other than landmarks68.
        """
        self.engine = engine
        self.target = target
        self.upright = upright
        self.pose_source = pose_source
        self.pose_estimator = pose_estimator
        if engine.landmarker is None:
            raise ValueError("the mesh backend needs an engine with a 68-point landmarker")
        self.refit = Landmarks68PoseEstimator(HeadPoseEstimator(output_landmarker(engine.landmarker),
                                                                limits=LANDMARKS68_LIMITS))

    def frontalize(self, faces: Sequence[FaceInput]) -> list[FaceOutcome]:
        """Frontalize a batch; a face whose landmarks cannot be fitted gets its :class:`LandmarkFitError`."""
        outcomes: list[FaceOutcome] = []
        for face in faces:
            try:
                fit = fit_face(self.engine, face, self.upright)
            except LandmarkFitError as error:
                outcomes.append(error)
                continue
            layers = self.engine.render_layers(fit, self.target)
            source_pose, output_pose = None, None
            if self.pose_source == "landmarks68":
                source_pose = fit.source_pose
                output_pose = self.refit.estimate_one(layers.image, fit.output_face(self.target))
            extra = {"mesh": {"landmark_residual": round(float(fit.head.residual), 4),
                              "mirrored": round(mirrored_share(layers), 4)}}
            outcomes.append(FrontalizedFace(image=layers.image, source_pose=source_pose, output_pose=output_pose,
                                            extra=extra))
        if self.pose_source is not None and self.pose_source != "landmarks68" and self.pose_estimator is not None:
            self._external_poses(faces, outcomes)
        return outcomes

    def _external_poses(self, faces: Sequence[FaceInput], outcomes: list[FaceOutcome]) -> None:
        """Source and output poses from another pose source (one batch each)."""
        assert self.pose_estimator is not None
        done = [i for i, outcome in enumerate(outcomes) if isinstance(outcome, FrontalizedFace)]
        if not done:
            return
        sources = self.pose_estimator.estimate([faces[i].crop for i in done], [faces[i].face for i in done])
        outputs = self.pose_estimator.estimate([outcomes[i].image for i in done],  # type: ignore[union-attr]
                                               [None for _ in done])
        for i, source, output in zip(done, sources, outputs):
            result = outcomes[i]
            assert isinstance(result, FrontalizedFace)
            result.source_pose, result.output_pose = source, output


# ---- identity-guard candidates -------------------------------------------------------------------------------------
def mesh_candidates(config: GuardConfig) -> list[Candidate]:
    """The rendered candidates of ``config``: α outer, then symmetry, each in config order (``a0.85-sym``)."""
    combos = [(alpha, symmetry) for alpha in config.alphas for symmetry in config.symmetry]
    return [Candidate(f"a{alpha:.2f}-{'sym' if symmetry else 'nosym'}", alpha, (("symmetry", symmetry),),
                      source_index=index,
                      target=MeshTarget(mode="frontal" if alpha >= 1.0 else "partial", alpha=alpha,
                                        symmetry=symmetry))
            for index, (alpha, symmetry) in enumerate(combos)]


class MeshCandidates:
    """The guard's candidates with the geometric engine: one fit per face, every α × symmetry rendered from it."""

    name = "mesh"

    def __init__(self, engine: GeometricFrontalizer, config: GuardConfig, *, upright: bool = True) -> None:
        """Args:
        engine: the geometric engine with its 68-point landmarker.
        config: the guard section (alphas, symmetry).
        upright: add each crop's roll offset to the target roll (``crop.upright``).
        """
        self.backend = MeshBackend(engine, MeshTarget(), upright=upright)
        self._candidates = mesh_candidates(config)

    @property
    def candidates(self) -> list[Candidate]:
        """α × symmetry, in choice order."""
        return list(self._candidates)

    def render_candidates(self, faces: Sequence[FaceInput]) -> CandidateRenders:
        """Every candidate of every face; source pose from the fit; a face that cannot be fitted gets its error."""
        images: list[list[np.ndarray] | InputError] = []
        fits: list[FaceFit | None] = []
        poses: list[Pose | None] = []
        for face in faces:
            try:
                fit = fit_face(self.backend.engine, face, self.backend.upright)
            except LandmarkFitError as error:
                images.append(error)
                fits.append(None)
                poses.append(None)
                continue
            images.append(self.backend.engine.render(fit, [c.target for c in self._candidates]))
            fits.append(fit)
            poses.append(fit.source_pose)
        return CandidateRenders(images=images, source_poses=poses, state=fits)

    def residual_poses(self, renders: CandidateRenders,
                       images: Sequence[tuple[int, int, np.ndarray]]) -> list[Pose | None]:
        """68 landmarks re-fitted on each candidate, started where the engine put the face for its target."""
        fits: list[Any] = renders.state
        poses: list[Pose | None] = []
        for face_index, rendered_index, image in images:
            fit = fits[face_index]
            target = self._candidates[rendered_index].target
            poses.append(None if fit is None else self.backend.refit.estimate_one(image, fit.output_face(target)))
        return poses


# ---- building ------------------------------------------------------------------------------------------------------
def _weight_keys(config: FrontalizerConfig) -> tuple[str, ...]:
    del config  # the predictor is package-shipped (packaged_keys), nothing under the weights root
    return ()


def _engine(context: BackendContext) -> GeometricFrontalizer:
    root = context.weights_root if context.weights_root.is_dir() else None
    return GeometricFrontalizer(build_landmarker68(weights_root=root))


def _build(context: BackendContext) -> MeshBackend:
    return MeshBackend(_engine(context), mesh_target(context.config), upright=context.upright,
                       pose_source=context.pose_source, pose_estimator=context.pose_estimator)


def _build_candidates(context: BackendContext) -> MeshCandidates:
    front = context.config
    if (front.target, front.alpha, front.symmetry) != ("frontal", 1.0, True):
        logger.warning("identity guard: frontalizer.target/alpha/symmetry are ignored; the candidates come from "
                       "guard.alphas/symmetry")
    return MeshCandidates(_engine(context), context.guard, upright=context.upright)


SPEC = BackendSpec(weight_keys=_weight_keys, build=_build, native_pose_source="landmarks68",
                   packaged_keys=(PREDICTOR_KEY,), build_candidates=_build_candidates)
