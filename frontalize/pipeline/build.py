"""Build the step callables of a run from its plan: detector chain, frontalizer backend, stages, layout.

Called after every weight file was verified (:func:`frontalize.pipeline.runner.plan_run`); models are loaded
once here and shared by the worker threads. Every builder hands the run's device on; where each model really runs
(torch on it, ONNX on CUDA only with onnxruntime's CUDA provider, dlib on the CPU) is decided by
:func:`frontalize.devices.model_device` inside the face registry and the stages.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Protocol

import numpy as np

from frontalize.config.inference import DetectionConfig
from frontalize.faces.registry import build_detector, build_headpose68, build_landmarker106
from frontalize.faces.types import Face, FaceDetector
from frontalize.pipeline.backends.base import BackendContext, PoseEstimator, get_backend_spec
from frontalize.pipeline.crop_fill import resolve_crop_fill
from frontalize.pipeline.guard import build_guard_frontalizer
from frontalize.pipeline.outputs import FinishStep, OutputLayout
from frontalize.pipeline.plan import RunPlan
from frontalize.pipeline.pose import Landmarks68PoseEstimator, MotionPoseEstimator, load_motion_extractor
from frontalize.pipeline.requirements import DETECTOR_CHAINS, POSE_WEIGHT_KEY
from frontalize.pipeline.steps import FrontalizeBatch, PrepareStep, Steps
from frontalize.stages.registry import build_stage
from frontalize.weights import weight_path

logger = logging.getLogger(__name__)

OUTPUT_KINDS: dict[str, tuple[str, ...]] = {"crop": ("crop",), "full": ("full",), "both": ("crop", "full")}


class LandmarkAdder(Protocol):
    """Adds 106 landmarks to detected faces (the part of ``Landmarker106`` the locator uses)."""

    def with_landmarks(self, image: np.ndarray, faces: Sequence[Face]) -> list[Face]:
        """Copies of ``faces`` carrying ``landmarks106``."""
        ...


class DetectorLocator:
    """Detector, optionally followed by the 106-point landmarker (LivePortrait's crop landmarks)."""

    def __init__(self, detector: FaceDetector, landmarker: LandmarkAdder | None = None) -> None:
        """Args: detector: finds faces (5 points); landmarker: adds 106 points to each face when given."""
        self.detector = detector
        self.landmarker = landmarker

    def locate(self, image: np.ndarray) -> list[Face]:
        """Faces of an H×W×3 uint8 RGB image, largest first (with 106 landmarks when a landmarker is set)."""
        faces: Sequence[Face] = self.detector.detect(image)
        if self.landmarker is not None and faces:
            faces = self.landmarker.with_landmarks(image, faces)
        return list(faces)


def build_locator(detection: DetectionConfig, weights_root: Path, device: str) -> DetectorLocator:
    """The configured detector chain (see :data:`~frontalize.pipeline.requirements.DETECTOR_CHAINS`)."""
    name, landmarks = DETECTOR_CHAINS[detection.detector]
    detector = build_detector(name, weights_root=weights_root, det_size=detection.det_size,
                              threshold=detection.threshold, nms_threshold=detection.nms_threshold, device=device)
    landmarker = build_landmarker106(weights_root=weights_root, device=device) if landmarks else None
    return DetectorLocator(detector, landmarker)


def build_prepare_step(plan: RunPlan) -> PrepareStep:
    """Decode + detect + crop step (CPU; loads the detector chain)."""
    cfg = plan.config
    crop = replace(cfg.crop, fill=resolve_crop_fill(cfg.crop.fill, cfg.frontalizer.backend))
    return PrepareStep(build_locator(cfg.detection, plan.weights_root, plan.device), crop,
                       face_choice=cfg.detection.face_choice, max_faces=cfg.detection.max_faces,
                       max_pixels=cfg.input.max_pixels, keep_source="full" in OUTPUT_KINDS[cfg.output.kind])


def build_pose_estimator(plan: RunPlan, native: str | None) -> PoseEstimator | None:
    """The run's pose source as a shared estimator, unless the backend measures it with its own model (``native``)."""
    if plan.pose_source is None or plan.pose_source == native:
        return None
    if plan.pose_source == "motion_extractor":
        module = load_motion_extractor(weight_path(POSE_WEIGHT_KEY, plan.weights_root), plan.device)
        return MotionPoseEstimator(module, plan.device)
    root = plan.weights_root if plan.weights_root.is_dir() else None
    return Landmarks68PoseEstimator(build_headpose68(weights_root=root))


def build_frontalize_batch(plan: RunPlan) -> FrontalizeBatch:
    """Frontalizer batch step (loads the backend, or the identity guard with the backend's candidate renderer,
    and, where the backend does not measure poses with its own model, the pose estimator)."""
    cfg = plan.config
    if cfg.guard.enabled:
        return FrontalizeBatch(build_guard_frontalizer(plan), cfg.frontalizer.batch_size, plan.pose_source)
    spec = get_backend_spec(cfg.frontalizer.backend)
    backend = spec.build(BackendContext(config=cfg.frontalizer, weights_root=plan.weights_root, device=plan.device,
                                        allow_unverified=cfg.allow_unverified_weights, upright=cfg.crop.upright,
                                        pose_source=plan.pose_source,
                                        pose_estimator=build_pose_estimator(plan, spec.native_pose_source),
                                        guard=cfg.guard))
    return FrontalizeBatch(backend, cfg.frontalizer.batch_size, plan.pose_source)


def build_layout(plan: RunPlan) -> OutputLayout:
    """Where the outputs of the run go."""
    cfg = plan.config
    return OutputLayout(out_dir=plan.out_dir, trees=cfg.variant_plan(), kinds=OUTPUT_KINDS[cfg.output.kind],
                        fmt=cfg.output.format)


def build_finish_step(plan: RunPlan) -> FinishStep:
    """Paste-back + stages + encode + write step (loads every stage some output tree uses)."""
    cfg = plan.config
    stages = {name: build_stage(name, cfg.stages, weights_root=plan.weights_root, device=plan.device)
              for name in cfg.used_stages()}
    return FinishStep(build_layout(plan), stages, config_hash=plan.config_hash, jpeg_quality=cfg.output.jpeg_quality)


def build_steps(plan: RunPlan) -> Steps:
    """Load every model of the run and return its step callables (each builder can also run on its own, e.g.
    once per worker of a distributed executor)."""
    cfg = plan.config
    frontalize = build_frontalize_batch(plan)
    finish = build_finish_step(plan)
    layout = finish.layout
    logger.info("pipeline: detector %s, frontalizer %s, poses %s, trees %s, outputs %s", cfg.detection.detector,
                frontalize.frontalizer.name, plan.pose_source or "not measured",
                ", ".join(name or "." for name, _ in layout.trees), "+".join(layout.kinds))
    return Steps(prepare=build_prepare_step(plan), frontalize=frontalize, finish=finish,
                 expected_outputs=lambda item: layout.face_paths(item.output_stem),
                 batch_size=cfg.frontalizer.batch_size)
