"""What a run needs, derived from the config alone (verified before any image is read): weight files, package-shipped
files, and the pose source that measures ``source_pose`` / ``output_pose``."""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from frontalize.config.inference import GuardConfig, InferenceConfig
from frontalize.errors import ConfigError, WeightsMissingError
from frontalize.faces.registry import LANDMARKER106_KEYS, detector_weight_keys, recognizer_weight_keys
from frontalize.pipeline.backends.base import BackendSpec, PoseSourceName, get_backend_spec, no_candidates_message
from frontalize.stages.registry import stage_weight_keys
from frontalize.weights import OFFLINE_INSTALL, weight_path

logger = logging.getLogger(__name__)

POSE_WEIGHT_KEY = "lp_motion_extractor"
"""The LivePortrait motion extractor (pose source ``motion_extractor``)."""

LANDMARKS68_KEY = "dlib_shape_predictor_68"
"""The package-shipped dlib 68-point predictor (pose source ``landmarks68``; the mesh backend)."""

LANDMARKS68_MODULES = ("dlib", "face_recognition_models")
"""Python packages the 68-point landmarker imports (the ``offline`` extra)."""

DETECTOR_CHAINS: dict[str, tuple[str, bool]] = {
    "insightface": ("scrfd_10g", True),
    "scrfd_10g": ("scrfd_10g", False),
    "retinaface_r50": ("retinaface_r50", False),
    "retinaface_mnet": ("retinaface_mnet", False),
}
"""Config detector choice → (faces-registry detector, whether 2d106det landmarks drive the crop).

``insightface`` is LivePortrait's chain: SCRFD ``det_10g`` boxes + InsightFace 106 landmarks; the others give
5 points and the approximate crop."""


@dataclass(frozen=True)
class RunRequirements:
    """What a run loads.

    Attributes:
        keys: registry weight keys (under the weights root), stable order, no duplicates.
        packaged: :data:`frontalize.weights.PACKAGED` keys (files inside installed packages).
        pose_source: the resolved pose source, or None when poses are not measured.
    """

    keys: tuple[str, ...]
    packaged: tuple[str, ...]
    pose_source: PoseSourceName | None

    @property
    def measure_poses(self) -> bool:
        """Whether source/output poses are measured."""
        return self.pose_source is not None


def landmarks68_installed() -> bool:
    """Whether dlib and face_recognition_models are importable (found without importing them)."""
    return all(importlib.util.find_spec(name) is not None for name in LANDMARKS68_MODULES)


def require_landmarks68(why: str) -> None:
    """Stop before any image when the 68-point landmarker's packages are missing.

    Raises:
        WeightsMissingError: dlib or face_recognition_models is not installed (exit 3, names the install command).
    """
    missing = [name for name in LANDMARKS68_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise WeightsMissingError(f"{why} needs dlib's 68-point landmarker, but {', '.join(missing)} is not "
                                  f"installed; install the offline extra with: {OFFLINE_INSTALL}")


def resolve_pose_source(cfg: InferenceConfig, weights_root: Path, spec: BackendSpec) -> PoseSourceName | None:
    """The pose source of a run (``frontalizer.pose_estimation`` × ``frontalizer.pose_source``, README "Poses").

    ``auto`` is the backend's own estimator (liveportrait: motion extractor; mesh: 68 landmarks); for identity, the
    motion extractor when its weight file is present, else the 68-point estimator. With ``pose_estimation: auto`` a
    source whose model is unavailable leaves poses null (one info line); ``always`` keeps it, so its verification
    stops the run (exit 3). With the identity guard the backend's own estimator is used (it measures the
    candidates' residual poses).

    Raises:
        ConfigError: the guard with a pose source other than the backend's own.
    """
    front = cfg.frontalizer
    native = spec.native_pose_source
    if cfg.guard.enabled and native is not None:
        if front.pose_source not in ("auto", native):
            raise ConfigError(f"frontalizer.pose_source: the identity guard measures residual poses with the "
                              f"{front.backend} backend's own estimator ({native}); set pose_source: auto or {native}")
        return native
    if front.pose_estimation == "never":
        return None
    source: PoseSourceName
    if front.pose_source != "auto":
        source = front.pose_source
    elif native is not None:
        source = native
    else:
        source = "motion_extractor" if weight_path(POSE_WEIGHT_KEY, weights_root).is_file() else "landmarks68"
    if front.pose_estimation == "always" or source == native:
        return source
    available = (weight_path(POSE_WEIGHT_KEY, weights_root).is_file() if source == "motion_extractor"
                 else landmarks68_installed())
    if not available:
        what = (f"no {POSE_WEIGHT_KEY} under {weights_root}" if source == "motion_extractor"
                else f"dlib's 68-point landmarker is not installed ({OFFLINE_INSTALL})")
        logger.info("poses: not measured (%s; pose_estimation auto)", what)
        return None
    return source


def guard_weight_keys(config: GuardConfig, stage_keys: Mapping[str, tuple[str, ...]] | None = None
                      ) -> tuple[str, ...]:
    """Registry keys of the identity guard's detector and recognizer (plus ``stage_keys`` of its stages).

    Args:
        config: the guard section.
        stage_keys: stage name → weight keys (from :func:`frontalize.stages.registry.stage_weight_keys`).
    """
    keys = [*detector_weight_keys(config.detector), *recognizer_weight_keys(config.recognizer)]
    for name in config.stages:
        keys.extend((stage_keys or {}).get(name, ()))
    return tuple(dict.fromkeys(keys))


def weight_requirements(cfg: InferenceConfig, weights_root: Path) -> RunRequirements:
    """Every registry key and package-shipped file the run loads, and the pose source.

    Raises:
        ConfigError: ``guard.enabled`` with a backend that renders no candidates; a pose source the guard cannot
            use.
    """
    detector, landmarks = DETECTOR_CHAINS[cfg.detection.detector]
    keys: list[str] = list(detector_weight_keys(detector))
    if landmarks:
        keys.extend(LANDMARKER106_KEYS)
    spec = get_backend_spec(cfg.frontalizer.backend)
    keys.extend(spec.weight_keys(cfg.frontalizer))
    packaged = list(spec.packaged_keys)
    if cfg.guard.enabled and spec.build_candidates is None:
        raise ConfigError(no_candidates_message(cfg.frontalizer.backend))
    pose_source = resolve_pose_source(cfg, weights_root, spec)
    if pose_source == "motion_extractor":
        keys.append(POSE_WEIGHT_KEY)
    elif pose_source == "landmarks68":
        packaged.append(LANDMARKS68_KEY)
    for name in cfg.used_stages():
        keys.extend(stage_weight_keys(name, cfg.stages))
    if cfg.guard.enabled:
        keys.extend(guard_weight_keys(cfg.guard, {name: stage_weight_keys(name, cfg.stages)
                                                  for name in cfg.guard.stages}))
    return RunRequirements(tuple(dict.fromkeys(keys)), tuple(dict.fromkeys(packaged)), pose_source)
