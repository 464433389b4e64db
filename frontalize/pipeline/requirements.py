"""Which weight files a run needs, derived from the config alone (verified before any image is read)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from frontalize.config.inference import GuardConfig, InferenceConfig
from frontalize.errors import ConfigError
from frontalize.faces.registry import LANDMARKER106_KEYS, detector_weight_keys, recognizer_weight_keys
from frontalize.pipeline.backends.base import get_backend_spec
from frontalize.stages.registry import stage_weight_keys
from frontalize.weights import weight_path

logger = logging.getLogger(__name__)

POSE_WEIGHT_KEY = "lp_motion_extractor"
"""The LivePortrait motion extractor measures source and output poses."""

DETECTOR_CHAINS: dict[str, tuple[str, bool]] = {
    "insightface": ("scrfd_10g", True),
    "scrfd_10g": ("scrfd_10g", False),
    "retinaface_r50": ("retinaface_r50", False),
    "retinaface_mnet": ("retinaface_mnet", False),
}
"""Config detector choice → (faces-registry detector, whether 2d106det landmarks drive the crop).

``insightface`` is LivePortrait's chain: SCRFD ``det_10g`` boxes + InsightFace 106 landmarks; the others give
5 points and the approximate crop."""


def pose_estimator_wanted(cfg: InferenceConfig, weights_root: Path) -> bool:
    """Whether the identity-style backends get a motion-extractor pose estimator (``frontalizer.pose_estimation``).

    ``auto`` uses it when the weight file is present (it is then verified with the others), so a crop-only run
    on a machine without LivePortrait weights still works, with null poses.
    """
    mode = cfg.frontalizer.pose_estimation
    if mode == "auto":
        present = weight_path(POSE_WEIGHT_KEY, weights_root).is_file()
        if not present:
            logger.info("poses: not measured (no %s under %s; pose_estimation auto)", POSE_WEIGHT_KEY, weights_root)
        return present
    return mode == "always"


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


def weight_requirements(cfg: InferenceConfig, weights_root: Path) -> tuple[list[str], bool]:
    """Every registry key the run loads, and whether poses are measured.

    Returns:
        ``(keys, measure_poses)``: keys in a stable order without duplicates.

    Raises:
        ConfigError: ``guard.enabled`` without the liveportrait frontalizer.
    """
    detector, landmarks = DETECTOR_CHAINS[cfg.detection.detector]
    keys: list[str] = list(detector_weight_keys(detector))
    if landmarks:
        keys.extend(LANDMARKER106_KEYS)
    spec = get_backend_spec(cfg.frontalizer.backend)
    keys.extend(spec.weight_keys(cfg.frontalizer))
    if spec.uses_pose_estimator:
        measure_poses = pose_estimator_wanted(cfg, weights_root)
        if measure_poses:
            keys.append(POSE_WEIGHT_KEY)
    else:
        measure_poses = cfg.frontalizer.pose_estimation != "never"
    for name in cfg.used_stages():
        keys.extend(stage_weight_keys(name, cfg.stages))
    if cfg.guard.enabled:
        if cfg.frontalizer.backend != "liveportrait":
            raise ConfigError("guard.enabled: the identity guard needs the liveportrait frontalizer "
                              "(add --frontalize or set frontalizer.backend: liveportrait)")
        keys.extend(guard_weight_keys(cfg.guard, {name: stage_weight_keys(name, cfg.stages)
                                                  for name in cfg.guard.stages}))
    return list(dict.fromkeys(keys)), measure_poses
