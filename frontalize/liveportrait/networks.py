"""Builder for the seven LivePortrait inference networks (F, M, W, G, S, R_lip, R_eye).

``build_network(name)`` returns an fp32 module in eval mode whose ``state_dict()`` keys and shapes are exactly the
official ones, so ``load_state_dict(official_tensors, strict=True)`` works without remapping (M keeps the
``detector.`` prefix; the MLPs take the ``mlp.*`` keys with the DDP ``module.`` prefix already stripped). Reading
files from disk is done elsewhere; this module only knows tensors.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from frontalize.liveportrait.appearance import AppearanceFeatureExtractor
from frontalize.liveportrait.arch import (
    AppearanceArch,
    MlpArch,
    MotionArch,
    SpadeArch,
    WarpingArch,
    retarget_eye_arch,
    retarget_lip_arch,
    stitching_arch,
)
from frontalize.liveportrait.motion import MotionExtractor
from frontalize.liveportrait.spade import SPADEDecoder
from frontalize.liveportrait.stitching import StitchingRetargetingNetwork
from frontalize.liveportrait.warping import WarpingNetwork

logger = logging.getLogger(__name__)

__all__ = ["NETWORK_NAMES", "NetworkArch", "build_network", "default_arch"]

NETWORK_NAMES = (
    "appearance_feature_extractor",
    "motion_extractor",
    "warping_module",
    "spade_generator",
    "stitching",
    "retarget_lip",
    "retarget_eye",
)

NetworkArch = AppearanceArch | MotionArch | WarpingArch | SpadeArch | MlpArch


@dataclass(frozen=True)
class _Spec:
    """How to build one network: its arch dataclass, the released defaults and the module class."""

    arch_type: type
    default: Callable[[], NetworkArch]
    constructor: Callable[[Any], nn.Module]


_SPECS: dict[str, _Spec] = {
    "appearance_feature_extractor": _Spec(AppearanceArch, AppearanceArch, AppearanceFeatureExtractor),
    "motion_extractor": _Spec(MotionArch, MotionArch, MotionExtractor),
    "warping_module": _Spec(WarpingArch, WarpingArch, WarpingNetwork),
    "spade_generator": _Spec(SpadeArch, SpadeArch, SPADEDecoder),
    "stitching": _Spec(MlpArch, stitching_arch, StitchingRetargetingNetwork),
    "retarget_lip": _Spec(MlpArch, retarget_lip_arch, StitchingRetargetingNetwork),
    "retarget_eye": _Spec(MlpArch, retarget_eye_arch, StitchingRetargetingNetwork),
}


def _check_name(name: str) -> None:
    if name not in _SPECS:
        raise ValueError(f"unknown LivePortrait network {name!r}; valid names: {', '.join(NETWORK_NAMES)}")


def default_arch(name: str) -> NetworkArch:
    """The released-model hyper-parameters of network ``name``.

    Raises:
        ValueError: unknown name (the message lists the valid names).
    """
    _check_name(name)
    return _SPECS[name].default()


def build_network(name: str, arch: NetworkArch | None = None) -> nn.Module:
    """Build one LivePortrait network, fp32, in eval mode, with gradients switched off.

    The weights are randomly initialised; load the official (or test) tensors with
    ``module.load_state_dict(state_dict, strict=True)``. Missing, unexpected or mis-shaped keys raise torch's
    ``RuntimeError`` naming every offending key.

    Args:
        name: one of :data:`NETWORK_NAMES`.
        arch: hyper-parameters (the dataclass of that network); ``None`` = the released model.

    Returns:
        The module: F ``(image) → volume``, M ``(image) → dict``, W ``(f_s, kp_driving=, kp_source=) → dict``,
        G ``(feature) → image``, S / R_lip / R_eye ``(x) → tensor``.

    Raises:
        ValueError: unknown name (the message lists the valid names).
        TypeError: ``arch`` is not the dataclass of that network.
    """
    _check_name(name)
    spec = _SPECS[name]
    if arch is None:
        arch = spec.default()
    elif not isinstance(arch, spec.arch_type):
        raise TypeError(f"network {name!r} takes a {spec.arch_type.__name__}, got {type(arch).__name__}")
    module = spec.constructor(arch).float().eval()
    module.requires_grad_(False)
    logger.debug("built %s (%d tensors)", name, len(module.state_dict()))
    return module
