"""GFPGAN network access on current torchvision: a narrow import shim, the official architecture, checkpoint I/O.

gfpgan 1.3.8 imports basicsr 1.4.2, whose ``basicsr/data/degradations.py`` does
``from torchvision.transforms.functional_tensor import rgb_to_grayscale``; that private module was removed in
torchvision 0.17, so ``import gfpgan`` fails on torchvision 0.29. :func:`install_functional_tensor_shim` puts
a module object under that name into ``sys.modules`` exposing only ``rgb_to_grayscale`` (the public
``torchvision.transforms.functional`` function with the same behaviour) — and only when the real module is
missing. It runs when the GFPGAN network class is first needed, never at import of this module. With the shim
the official ``GFPGANv1Clean`` class (the network behind GFPGANv1.3/1.4.pth) is used unchanged, so the released
checkpoints load strictly with no key remapping.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import pickle
import sys
import types
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from frontalize.errors import ConfigError, WeightsMissingError

__all__ = [
    "FUNCTIONAL_TENSOR_MODULE",
    "GfpganArch",
    "build_gfpgan_network",
    "gfpgan_checkpoint_dict",
    "gfpgan_network_class",
    "install_functional_tensor_shim",
    "load_gfpgan_network",
]

logger = logging.getLogger(__name__)

FUNCTIONAL_TENSOR_MODULE = "torchvision.transforms.functional_tensor"
_INSTALL_HINT = "the gfpgan stage needs the gfpgan package: pip install 'gfpgan==1.3.8' 'basicsr==1.4.2'"
_SHOWN_KEYS = 5


@dataclass(frozen=True)
class GfpganArch:
    """Constructor arguments of ``GFPGANv1Clean``; the defaults are those of the released v1.3 and v1.4."""

    out_size: int = 512
    num_style_feat: int = 512
    channel_multiplier: int = 2
    fix_decoder: bool = False
    num_mlp: int = 8
    input_is_latent: bool = True
    different_w: bool = True
    narrow: float = 1
    sft_half: bool = True


def _real_module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def install_functional_tensor_shim() -> bool:
    """Provide ``torchvision.transforms.functional_tensor.rgb_to_grayscale`` if torchvision lacks the module.

    Returns:
        True when the shim was installed by this call; False when the module already exists (the real one on
        old torchvision, or the shim from an earlier call).
    """
    if FUNCTIONAL_TENSOR_MODULE in sys.modules or _real_module_exists(FUNCTIONAL_TENSOR_MODULE):
        return False
    from torchvision.transforms import functional

    shim = types.ModuleType(
        FUNCTIONAL_TENSOR_MODULE,
        "frontalize compatibility shim for basicsr 1.4.2: only rgb_to_grayscale, from "
        "torchvision.transforms.functional (the private functional_tensor module was removed in torchvision 0.17).")
    shim.rgb_to_grayscale = functional.rgb_to_grayscale  # type: ignore[attr-defined]
    sys.modules[FUNCTIONAL_TENSOR_MODULE] = shim
    logger.debug("installed the %s shim (rgb_to_grayscale only)", FUNCTIONAL_TENSOR_MODULE)
    return True


def gfpgan_network_class() -> type[nn.Module]:
    """The official ``gfpgan.archs.gfpganv1_clean_arch.GFPGANv1Clean`` class (installs the shim if needed).

    Raises:
        ConfigError: gfpgan/basicsr are not installed or cannot be imported.
    """
    install_functional_tensor_shim()
    try:
        from gfpgan.archs.gfpganv1_clean_arch import GFPGANv1Clean
    except ImportError as error:
        raise ConfigError(f"{_INSTALL_HINT} (import failed: {error})") from error
    return GFPGANv1Clean  # type: ignore[no-any-return]


def build_gfpgan_network(arch: GfpganArch | None = None, *, device: str | torch.device = "cpu") -> nn.Module:
    """Build ``GFPGANv1Clean`` with its own (random) initialisation, e.g. for test weights.

    Args:
        arch: architecture; default = the released v1.3/v1.4 one.
        device: device to build on (``"meta"`` gives a weightless skeleton instantly).

    Returns:
        The network (training mode, as constructed).
    """
    arch = arch or GfpganArch()
    network_class = gfpgan_network_class()
    with torch.device(device):
        return network_class(**dataclasses.asdict(arch))


def gfpgan_checkpoint_dict(network: nn.Module) -> dict[str, dict[str, torch.Tensor]]:
    """On-disk structure of an official GFPGAN checkpoint: ``{"params_ema": state_dict}`` (CPU tensors)."""
    return {"params_ema": {k: v.detach().cpu() for k, v in network.state_dict().items()}}


def _read_checkpoint(path: Path, fix: str) -> dict[str, torch.Tensor]:
    """torch.load (weights_only) and pick ``params_ema`` (preferred) or ``params``."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile) as error:
        raise WeightsMissingError(f"GFPGAN checkpoint {path} cannot be read ({type(error).__name__}: "
                                  f"{str(error).splitlines()[0] if str(error) else 'no detail'}); "
                                  f"the file is corrupt or not a GFPGAN .pth; fix: {fix}") from error
    for key in ("params_ema", "params"):
        if isinstance(checkpoint, dict) and isinstance(checkpoint.get(key), dict):
            # Tensors are assigned, not copied, into the network: keep its float32 dtype whatever was stored.
            return {name: value.float() if torch.is_tensor(value) and value.is_floating_point() else value
                    for name, value in checkpoint[key].items()}
    found = sorted(checkpoint)[:_SHOWN_KEYS] if isinstance(checkpoint, dict) else type(checkpoint).__name__
    raise WeightsMissingError(f"GFPGAN checkpoint {path} has neither 'params_ema' nor 'params' (found {found}); "
                              f"fix: {fix}")


def _check_keys(path: Path, network: nn.Module, state_dict: dict[str, Any], fix: str) -> None:
    expected = set(network.state_dict())
    missing = sorted(expected - set(state_dict))
    unexpected = sorted(set(state_dict) - expected)
    if missing or unexpected:
        raise WeightsMissingError(
            f"GFPGAN checkpoint {path} does not match GFPGANv1Clean: {len(missing)} missing key(s) "
            f"{missing[:_SHOWN_KEYS]}, {len(unexpected)} unexpected key(s) {unexpected[:_SHOWN_KEYS]}; fix: {fix}")


def load_gfpgan_network(path: Path, device: str | torch.device = "cpu", *, arch: GfpganArch | None = None,
                        fix: str = "re-download the file") -> nn.Module:
    """Load an official GFPGAN checkpoint strictly into ``GFPGANv1Clean``.

    The network is built on the meta device (no random initialisation of 87 M parameters) and the checkpoint
    tensors are assigned to it, then moved to ``device``.

    Args:
        path: ``GFPGANv1.3.pth`` / ``GFPGANv1.4.pth`` (or any checkpoint in that format).
        device: target device.
        arch: architecture; default = the released one.
        fix: how the user fixes a bad file (appended to error messages).

    Returns:
        The network in eval mode on ``device``.

    Raises:
        WeightsMissingError: unreadable/corrupt file, wrong structure, key or shape mismatch.
    """
    state_dict = _read_checkpoint(Path(path), fix)
    network = build_gfpgan_network(arch, device="meta")
    _check_keys(Path(path), network, state_dict, fix)
    try:
        network.load_state_dict(state_dict, strict=True, assign=True)
    except RuntimeError as error:
        first = str(error).strip().splitlines()
        detail = "; ".join(line.strip() for line in first[1:1 + _SHOWN_KEYS]) or first[0]
        raise WeightsMissingError(f"GFPGAN checkpoint {path} does not match GFPGANv1Clean ({detail}); "
                                  f"fix: {fix}") from error
    return network.to(device).eval()
