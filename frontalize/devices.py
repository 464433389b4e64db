"""Where each model runs: the one mapping from a requested device to every kind of model.

A run asks for one device (``--device`` / config ``device``: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``).
:func:`resolve_device` turns the request into a concrete torch device once, at the start of a command, and
:func:`model_device` maps that device to each kind of model the toolkit loads:

=======  =====================================================================================================
kind     where it runs when the run's device is ``cuda:N``
=======  =====================================================================================================
torch    ``cuda:N`` (LivePortrait, GFPGAN, RetinaFace-R50). A CUDA device torch cannot see is an error, never a
         silent fallback.
onnx     ``cuda:N`` when onnxruntime really offers ``CUDAExecutionProvider`` (the ``onnxruntime-gpu`` package);
         otherwise the CPU, announced by one info line per process (SCRFD, ArcFace, the landmark models, the
         offline RetinaFace-MobileNet, rembg).
dlib     always the CPU: the dlib wheels are CPU builds (a dlib compiled with CUDA picks its GPU by itself).
=======  =====================================================================================================

The face registry (detectors, recognizers, landmarkers), the stages, the inference pipeline, the identity guard
and the evaluator all go through :func:`model_device` / :func:`onnx_providers`, so a machine with a GPU but
without onnxruntime-gpu or a CUDA dlib runs every command. Why a top-level module: ``faces`` and ``stages`` are
shared tools that may not import ``pipeline`` or ``evaluation``, and ``cli`` resolves the request; like
:mod:`frontalize.errors`, this module sits below every package and imports nothing of the toolkit but errors.
"""

from __future__ import annotations

import logging
import re
from typing import Literal

from frontalize.errors import ConfigError, DeviceError

logger = logging.getLogger(__name__)

__all__ = [
    "MODEL_KINDS",
    "ModelKind",
    "ProviderSpec",
    "cuda_index",
    "model_device",
    "model_devices",
    "onnx_cuda_available",
    "onnx_providers",
    "resolve_device",
    "torch_device",
]

ModelKind = Literal["torch", "onnx", "dlib"]
MODEL_KINDS: tuple[ModelKind, ...] = ("torch", "onnx", "dlib")

ProviderSpec = tuple[list[str], list[dict[str, object]] | None]
"""onnxruntime ``(providers, provider_options)``; options None for the CPU provider alone."""

CUDA_PROVIDER = "CUDAExecutionProvider"
_REQUEST = re.compile(r"^(auto|cpu|cuda|cuda:\d+)$")
_CUDA = re.compile(r"^cuda(?::(\d+))?$")

_announced: set[str] = set()
"""Devices whose ONNX CPU fallback was already announced in this process (one info line, not one per model)."""


def cuda_index(device: str) -> int | None:
    """CUDA ordinal of a concrete device string: None for ``cpu``, N for ``cuda:N`` (0 for ``cuda``).

    Raises:
        ConfigError: not ``cpu``, ``cuda`` or ``cuda:N``.
    """
    match = _CUDA.match(device)
    if device != "cpu" and match is None:
        raise ConfigError(f"unknown device {device!r}; expected cpu, cuda or cuda:N")
    return None if match is None else int(match.group(1) or 0)


def resolve_device(spec: str) -> str:
    """Map a request (``auto``, ``cpu``, ``cuda``, ``cuda:N``) to the run's concrete torch device.

    ``auto`` is ``cuda:0`` when torch sees a GPU, else ``cpu``.

    Raises:
        DeviceError: CUDA was requested explicitly but torch sees no such device (never a silent CPU fallback).
        ConfigError: ``spec`` is not one of the accepted forms.
    """
    if not _REQUEST.match(spec):
        raise ConfigError(f"device {spec!r}: use auto, cpu, cuda or cuda:N")
    if spec == "cpu":
        return "cpu"
    import torch  # local: torch is heavy and `cpu` needs no probe

    available = torch.cuda.is_available()
    if spec == "auto":
        return "cuda:0" if available else "cpu"
    if not available:
        raise DeviceError(f"--device {spec}: CUDA is not available on this machine (use --device cpu or auto)")
    index = cuda_index(spec) or 0
    if index >= torch.cuda.device_count():
        raise DeviceError(f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s) present")
    return f"cuda:{index}"


def torch_device(device: str) -> str:
    """Validated torch device for ``cpu`` / ``cuda`` / ``cuda:N`` (``cuda`` becomes ``cuda:0``).

    Raises:
        DeviceError: CUDA requested but torch sees no such GPU.
        ConfigError: not a device string.
    """
    index = cuda_index(device)
    if index is None:
        return "cpu"
    import torch

    if not torch.cuda.is_available() or index >= torch.cuda.device_count():
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        raise DeviceError(f"device {device!r} requested but torch sees {count} CUDA device(s)")
    return f"cuda:{index}"


def onnx_cuda_available() -> bool:
    """Whether this onnxruntime build offers the CUDA execution provider (asked every time: tests patch it)."""
    import onnxruntime

    return CUDA_PROVIDER in onnxruntime.get_available_providers()


def model_device(device: str, kind: ModelKind) -> str:
    """Where a model of ``kind`` runs when the run's device is ``device`` (table in the module docstring).

    Args:
        device: the run's concrete device (``cpu``, ``cuda``, ``cuda:N``), from :func:`resolve_device`.
        kind: ``torch``, ``onnx`` or ``dlib``.

    Returns:
        ``cpu`` or ``cuda:N``.

    Raises:
        DeviceError: a torch model on a CUDA device torch cannot see.
        ConfigError: an unknown device string or model kind.
    """
    if kind not in MODEL_KINDS:
        raise ConfigError(f"unknown model kind {kind!r}; expected one of {', '.join(MODEL_KINDS)}")
    index = cuda_index(device)
    if kind == "torch":
        return torch_device(device)
    if kind == "dlib" or index is None:
        return "cpu"
    if onnx_cuda_available():
        return f"cuda:{index}"
    if device not in _announced:
        _announced.add(device)
        logger.info("ONNX models (detectors, landmarks, ArcFace, rembg) run on the CPU: onnxruntime has no "
                    "CUDAExecutionProvider (pip install onnxruntime-gpu to run them on %s)", device)
    return "cpu"


def model_devices(device: str) -> dict[ModelKind, str]:
    """:func:`model_device` for every kind, e.g. ``{"torch": "cuda:0", "onnx": "cpu", "dlib": "cpu"}``."""
    return {kind: model_device(device, kind) for kind in MODEL_KINDS}


def onnx_providers(device: str) -> ProviderSpec:
    """onnxruntime ``(providers, provider_options)`` for an ONNX model of a run on ``device``.

    The CUDA provider (with its ``device_id``, the CPU provider behind it) when :func:`model_device` puts ONNX
    models on CUDA, else the CPU provider alone.

    Raises:
        ConfigError: not a device string.
    """
    index = cuda_index(model_device(device, "onnx"))
    if index is None:
        return ["CPUExecutionProvider"], None
    return [CUDA_PROVIDER, "CPUExecutionProvider"], [{"device_id": index}, {}]
