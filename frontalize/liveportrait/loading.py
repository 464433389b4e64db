"""Loading the released LivePortrait checkpoints into our networks, and writing that on-disk layout back.

The official human model ships four base-model files (plain fp32 state_dicts; the motion extractor's keys carry a
``detector.`` prefix) and one ``stitching_retargeting_module.pth`` holding three sub-dicts whose keys carry a DDP
``module.`` prefix: ``retarget_shoulder`` (stitching S), ``retarget_mouth`` (R_lip) and ``retarget_eye`` (R_eye).
Files are checked through the weights registry first, then loaded with ``torch.load(weights_only=True)`` and a
strict ``load_state_dict``. :func:`official_checkpoint_dicts` produces exactly that layout from modules, so test
weight writers and these tests share one code path.
"""

from __future__ import annotations

import logging
import os
import pickle
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from frontalize.errors import WeightsMissingError
from frontalize.liveportrait.networks import build_network
from frontalize.weights import get_weight, verify_weights

logger = logging.getLogger(__name__)

__all__ = ["LP_WEIGHT_KEYS", "STITCHING_SUBDICTS", "load_base_network", "load_official", "official_checkpoint_dicts",
           "strip_prefix"]

# registry key → network name, for the four single-network files
_BASE_FILES: dict[str, str] = {
    "lp_appearance_feature_extractor": "appearance_feature_extractor",
    "lp_motion_extractor": "motion_extractor",
    "lp_warping_module": "warping_module",
    "lp_spade_generator": "spade_generator",
}
_STITCHING_KEY = "lp_stitching_retargeting"
STITCHING_SUBDICTS: dict[str, str] = {
    "retarget_shoulder": "stitching",
    "retarget_mouth": "retarget_lip",
    "retarget_eye": "retarget_eye",
}
"""Sub-dict name in ``stitching_retargeting_module.pth`` → network name."""

LP_WEIGHT_KEYS: tuple[str, ...] = (*_BASE_FILES, _STITCHING_KEY)
"""Registry keys of every file :func:`load_official` reads."""

_V = TypeVar("_V")
_DDP_PREFIX = "module."
_MOTION_PREFIX = "detector."
_MAX_KEYS_SHOWN = 8
# what torch.load raises for truncated, corrupt or non-checkpoint files (zip reader, unpickler, I/O)
_READ_ERRORS = (RuntimeError, pickle.UnpicklingError, EOFError, OSError, ValueError)


def strip_prefix(state_dict: Mapping[str, _V], prefix: str) -> OrderedDict[str, _V]:
    """Remove ``prefix`` from the start of every key that has it (only at the start; order kept)."""
    return OrderedDict((k[len(prefix):] if k.startswith(prefix) else k, v) for k, v in state_dict.items())


def _load_file(path: Path) -> Mapping[str, Any]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except _READ_ERRORS as exc:
        first_line = (str(exc).strip().splitlines() or [""])[0]
        raise WeightsMissingError(f"{path}: cannot be read as a PyTorch checkpoint "
                                  f"({type(exc).__name__}: {first_line})") from exc
    if not isinstance(obj, Mapping):
        raise WeightsMissingError(f"{path}: expected a state_dict (mapping), found {type(obj).__name__}")
    return obj


def _key_report(expected: set[str], found: set[str]) -> str:
    parts = []
    for label, keys in (("missing", sorted(expected - found)), ("unexpected", sorted(found - expected))):
        if keys:
            shown = ", ".join(keys[:_MAX_KEYS_SHOWN]) + (f", … ({len(keys)} in all)" if len(keys) > _MAX_KEYS_SHOWN
                                                         else "")
            parts.append(f"{label} keys: {shown}")
    return "; ".join(parts)


def _load_strict(module: nn.Module, state_dict: Mapping[str, torch.Tensor], where: str) -> None:
    """Strict load; any key or shape mismatch becomes one WeightsMissingError naming the file and the keys."""
    expected, found = set(module.state_dict()), set(state_dict)
    if expected != found:
        raise WeightsMissingError(f"{where}: state_dict does not match the network: {_key_report(expected, found)}")
    try:
        module.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:
        detail = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        raise WeightsMissingError(f"{where}: {detail}") from exc


def _motion_state_dict(module: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> Mapping[str, torch.Tensor]:
    """The file's M keys are ``detector.``-prefixed; strip it only if our module's own keys are not."""
    own_prefixed = all(k.startswith(_MOTION_PREFIX) for k in module.state_dict())
    return state_dict if own_prefixed else strip_prefix(state_dict, _MOTION_PREFIX)


def _load_stitching_bundle(path: Path) -> dict[str, nn.Module]:
    """S, R_lip and R_eye from the three ``module.``-prefixed sub-dicts of the stitching/retargeting file."""
    bundle = _load_file(path)
    networks = {}
    for sub, name in STITCHING_SUBDICTS.items():
        part = bundle.get(sub)
        if not isinstance(part, Mapping):
            raise WeightsMissingError(f"{path}: sub-dict {sub!r} (network {name}) is missing; found "
                                      f"{', '.join(map(str, bundle)) or 'nothing'}")
        module = build_network(name)
        _load_strict(module, strip_prefix(part, _DDP_PREFIX), f"{path}:{sub}")
        networks[name] = module
    return networks


def load_base_network(name: str, path: str | os.PathLike[str]) -> nn.Module:
    """Build one base network (F, M, W or G) and load its released checkpoint file (strict, weights_only).

    The caller verifies the file through the weights registry first.

    Raises:
        WeightsMissingError: the file is unreadable or its keys/shapes do not match the network.
    """
    module = build_network(name)
    state_dict: Mapping[str, Any] = strip_prefix(_load_file(Path(path)), _DDP_PREFIX)
    if name == "motion_extractor":
        state_dict = _motion_state_dict(module, state_dict)
    _load_strict(module, state_dict, str(path))
    return module


def load_official(weights_dir: str | os.PathLike[str], *, device: torch.device | str = "cpu",
                  allow_unverified: bool = False) -> dict[str, nn.Module]:
    """Build the seven LivePortrait networks and load the released checkpoints into them (strict).

    Args:
        weights_dir: weights root (files at the registry's relative paths, e.g.
            ``liveportrait/base_models/warping_module.pth``).
        device: device the modules are moved to after loading.
        allow_unverified: only require the files to exist (sizes and checksums not enforced; for test weights).

    Returns:
        ``{network name: module}`` for every name in ``networks.NETWORK_NAMES``, eval mode, fp32.

    Raises:
        WeightsMissingError: a file is missing, corrupt, unreadable or its keys/shapes do not match (the message
            names the file and the offending keys).
    """
    verified = verify_weights(LP_WEIGHT_KEYS, weights_dir, allow_unverified=allow_unverified)
    # the small stitching file first, then the base models from small to large: a broken file fails fast
    networks = _load_stitching_bundle(verified[_STITCHING_KEY].path)
    for key, name in _BASE_FILES.items():
        networks[name] = load_base_network(name, verified[key].path)
    logger.info("loaded LivePortrait networks from %s", weights_dir)
    return {name: module.to(device).eval() for name, module in networks.items()}


def _cpu_state_dict(module: nn.Module, prefix: str = "") -> OrderedDict[str, torch.Tensor]:
    return OrderedDict((prefix + k, v.detach().to("cpu")) for k, v in module.state_dict().items())


def official_checkpoint_dicts(networks: Mapping[str, nn.Module]) -> dict[str, object]:
    """The released on-disk structure, built from our modules: relative path → object to ``torch.save``.

    * the four base models: their state_dicts (M's keys prefixed ``detector.`` if the module's are not);
    * ``stitching_retargeting_module.pth``: ``{"retarget_shoulder": …, "retarget_mouth": …, "retarget_eye": …}``
      with every inner key prefixed ``module.``.

    Args:
        networks: ``{network name: module}`` with all seven names.

    Returns:
        ``{relpath under the weights root: checkpoint object}`` (CPU tensors).

    Raises:
        ValueError: a network is missing.
    """
    missing = [n for n in (*_BASE_FILES.values(), *STITCHING_SUBDICTS.values()) if n not in networks]
    if missing:
        raise ValueError(f"official_checkpoint_dicts: missing networks {', '.join(missing)}")
    files: dict[str, object] = {}
    for key, name in _BASE_FILES.items():
        module = networks[name]
        prefix = ""
        if name == "motion_extractor" and not all(k.startswith(_MOTION_PREFIX) for k in module.state_dict()):
            prefix = _MOTION_PREFIX
        files[get_weight(key).relpath] = _cpu_state_dict(module, prefix)
    files[get_weight(_STITCHING_KEY).relpath] = {
        sub: _cpu_state_dict(networks[name], _DDP_PREFIX) for sub, name in STITCHING_SUBDICTS.items()
    }
    return files
