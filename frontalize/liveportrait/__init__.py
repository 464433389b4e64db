"""LivePortrait engine: the five networks (F, M, W, G, S/R), pose geometry, crop, paste-back and the frontalizer.

Public contract::

    from frontalize.liveportrait import build_network, load_official, LivePortraitFrontalizer, PoseTarget

Networks know tensors only; :func:`load_official` reads the released checkpoints through the weights registry.
"""

from __future__ import annotations

from frontalize.liveportrait.crop import FaceCrop, crop_face, images_to_tensor, network_input, upright_roll_offset
from frontalize.liveportrait.frontalizer import LivePortraitFrontalizer, PoseTarget, Precision, SourceState
from frontalize.liveportrait.loading import LP_WEIGHT_KEYS, load_official, official_checkpoint_dicts
from frontalize.liveportrait.networks import NETWORK_NAMES, build_network
from frontalize.liveportrait.pasteback import feather_mask, paste_back, tensor_to_images

__all__ = [
    "LP_WEIGHT_KEYS",
    "NETWORK_NAMES",
    "FaceCrop",
    "LivePortraitFrontalizer",
    "PoseTarget",
    "Precision",
    "SourceState",
    "build_network",
    "crop_face",
    "feather_mask",
    "images_to_tensor",
    "load_official",
    "network_input",
    "official_checkpoint_dicts",
    "paste_back",
    "tensor_to_images",
    "upright_roll_offset",
]
