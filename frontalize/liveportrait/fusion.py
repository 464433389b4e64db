"""Exact inference-time restructurings of W's and F's convolutions (pure functions + the weight-folding mixin).

Everything here computes the same linear maps as the official layers, in a form that runs faster with oneDNN on
the CPU (measured per layer; see ``docs/PERFORMANCE.md``). Only float rounding differs:

* eval-mode BatchNorm after a convolution is folded into the convolution's weight and bias;
* nearest up-sampling by (1, 2, 2) followed by a 3×3×3 convolution is evaluated at low resolution with one
  3×2×2 kernel per output phase (polyphase), 2.25× fewer multiply-adds at large spatial sizes;
* a k×k×k convolution with few output channels (W's 22-channel mask) is one (1, k, k) convolution with the k
  depth taps stacked into the output channels, followed by k shifted adds along depth.

:class:`InferenceFolding` is the shared "fold derived weights once" mechanism: ``fold_inference_weights()``
stores the derived tensors as non-persistent buffers (``state_dict`` keeps the official keys) and a
``load_state_dict`` post-hook re-folds them.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "ConvNormFolding",
    "InferenceFolding",
    "depth_stacked_conv3d",
    "depth_stacked_weight",
    "derived_weights_context",
    "fold_batch_norm",
    "grad_needed",
    "refold_after_load",
    "upsampled_conv3d",
    "upsampled_conv3d_weights",
]

# 3-tap → 2-tap maps of one kernel axis after nearest up-sampling by 2 (rows: output phase 0, 1; columns: taps).
# Phase 0 (output row 2i) reads low-res rows {i−1, i, i}, phase 1 (row 2i+1) reads {i, i, i+1}.
_PHASE_TAPS = (((1.0, 0.0, 0.0), (0.0, 1.0, 1.0)), ((1.0, 1.0, 0.0), (0.0, 0.0, 1.0)))


def _autocast_disabled(reference: torch.Tensor) -> AbstractContextManager[object]:
    """Autocast switched off for the device type of ``reference`` (no-op where that type has no autocast)."""
    device_type = reference.device.type
    if not torch.amp.is_autocast_available(device_type):
        return nullcontext()
    return torch.autocast(device_type, enabled=False)


def derived_weights_context(reference: torch.Tensor) -> AbstractContextManager[object]:
    """Context for computing a derived weight from ``reference``'s module: autocast off.

    Why: a weight derived inside a bf16/fp16 autocast region would otherwise be computed (and, when folded, stored)
    in half precision; a later exact fp32 call would then mix dtypes. Autocast re-casts the fp32 value where it is
    used, so the folded and the on-the-fly results are the same.
    """
    return _autocast_disabled(reference)


def grad_needed(*sources: torch.Tensor | None) -> bool:
    """Whether autograd must see a weight derived from ``sources`` (grad mode on and one of them requires grad).

    Folded weights are constants; while this is true, forward derives the weight on the fly instead.
    """
    return torch.is_grad_enabled() and any(s is not None and s.requires_grad for s in sources)


def refold_after_load(module: nn.Module, incompatible_keys: object) -> None:
    """``load_state_dict`` post-hook: re-fold the derived weights of a module that had been folded.

    Registered by every module with ``fold_inference_weights()`` (the :class:`InferenceFolding` blocks of F and W,
    G's spectral-norm convolutions and SPADEs); torch runs it after the module's own tensors and those of its
    children are loaded, so the folded buffers never go stale.
    """
    del incompatible_keys
    if getattr(module, "is_folded", False):
        module.fold_inference_weights()  # type: ignore[operator]


class InferenceFolding:
    """Mixin for ``nn.Module`` blocks with derived inference weights (BN folded into a convolution, …).

    A subclass calls :meth:`_init_folding` with the names of its derived tensors at the end of ``__init__``,
    implements ``_derived_weights()`` (name → tensor, computed from its parameters and buffers) and branches in
    ``forward`` on :meth:`_folded_tensors`. Until ``fold_inference_weights()`` is called, or while autograd needs a
    parameter, forward computes the official formulation on the fly. Same conventions as G's spectral-norm
    folding in ``blocks.py`` (``is_folded``, non-persistent buffers that start as None, re-fold after load).
    """

    _folded_names: tuple[str, ...] = ()

    def _init_folding(self, *names: str) -> None:
        module = self._as_module()
        self._folded_names = names
        for name in names:
            module.register_buffer(name, None, persistent=False)
        module.register_load_state_dict_post_hook(refold_after_load)

    def _derived_weights(self) -> dict[str, torch.Tensor]:
        """name → derived tensor; every class using the mixin defines its own."""
        raise TypeError(f"{type(self).__name__} uses InferenceFolding but does not define _derived_weights()")

    @property
    def is_folded(self) -> bool:
        """Whether :meth:`fold_inference_weights` has stored the derived weights."""
        return bool(self._folded_names) and getattr(self, self._folded_names[0]) is not None

    def fold_inference_weights(self) -> None:
        """Compute the derived weights once and store them as non-persistent buffers.

        Runs under ``torch.no_grad()`` with autocast off, so the buffers have the dtype and device of the
        parameters they come from (``.to()``/``.half()`` then move them with the module).
        """
        module = self._as_module()
        with torch.no_grad(), derived_weights_context(next(module.parameters())):
            derived = self._derived_weights()
        for name in self._folded_names:
            setattr(module, name, derived[name].contiguous())

    def _folded_tensors(self) -> tuple[torch.Tensor, ...] | None:
        """The folded buffers (in ``_init_folding`` order) when forward may use them, else None.

        None before folding, and while grad mode is on and a parameter requires grad (autograd must then see
        the official formulation).
        """
        tensors = tuple(getattr(self, name) for name in self._folded_names)
        if not tensors or tensors[0] is None:
            return None
        if torch.is_grad_enabled() and any(p.requires_grad for p in self._as_module().parameters()):
            return None
        return tensors

    def _as_module(self) -> nn.Module:
        if not isinstance(self, nn.Module):
            raise TypeError(f"{type(self).__name__} must also derive from nn.Module")
        return self


class ConvNormFolding(InferenceFolding):
    """:class:`InferenceFolding` for blocks with a ``conv`` followed by an eval-mode ``norm`` (BN folded).

    The folded pair is stored as ``folded_weight`` / ``folded_bias``; :meth:`_conv_norm` evaluates
    ``norm(conv(x))`` with them (or with the two official layers before folding).
    """

    def _init_conv_norm_folding(self) -> None:
        self._init_folding("folded_weight", "folded_bias")

    def _conv_and_norm(self) -> tuple[nn.Conv2d | nn.Conv3d, nn.modules.batchnorm._BatchNorm]:
        module = self._as_module()
        return cast("nn.Conv2d | nn.Conv3d", module.conv), cast(nn.modules.batchnorm._BatchNorm, module.norm)

    def _derived_weights(self) -> dict[str, torch.Tensor]:
        conv, norm = self._conv_and_norm()
        weight, bias = fold_batch_norm(conv.weight, conv.bias, norm)
        return {"folded_weight": weight, "folded_bias": bias}

    def _conv_norm(self, x: torch.Tensor) -> torch.Tensor:
        """``norm(conv(x))``, from the folded weights when available."""
        conv, norm = self._conv_and_norm()
        folded = self._folded_tensors()
        if folded is None:
            return norm(conv(x))
        return conv._conv_forward(x, folded[0], folded[1])


def fold_batch_norm(weight: torch.Tensor, bias: torch.Tensor | None,
                    norm: nn.modules.batchnorm._BatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold eval-mode BatchNorm into the preceding convolution: ``norm(conv(x, w, b)) = conv(x, w', b')``.

    ``w' = w·s`` and ``b' = (b − μ)·s + β`` with ``s = γ / sqrt(σ² + ε)`` per output channel.

    Args:
        weight: Cout×Cin×k… convolution weight.
        bias: [Cout] convolution bias or None.
        norm: the BatchNorm after the convolution (running statistics are used).

    Returns:
        (folded weight, folded bias), same dtype and device as ``weight``.
    """
    if norm.running_mean is None or norm.running_var is None:
        raise ValueError("fold_batch_norm needs a BatchNorm with running statistics")
    scale = torch.rsqrt(norm.running_var + norm.eps)
    if norm.weight is not None:
        scale = scale * norm.weight
    shift = -norm.running_mean if bias is None else bias - norm.running_mean
    folded_bias = shift * scale
    if norm.bias is not None:
        folded_bias = folded_bias + norm.bias
    shape = (-1,) + (1,) * (weight.dim() - 1)
    return weight * scale.view(shape), folded_bias


def upsampled_conv3d_weights(weight: torch.Tensor, bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Polyphase kernels of "nearest up-sampling by (1, 2, 2), then a 3×3×3 convolution with padding 1".

    The depth axis is not up-sampled, so its 3 taps are kept; along H and W each output phase sums the taps that
    read the same low-resolution voxel (``_PHASE_TAPS``).

    Args:
        weight: Cout×Cin×3×3×3 kernel.
        bias: [Cout] bias.

    Returns:
        (4·Cout×Cin×3×2×2 kernels ordered (row phase, column phase, Cout), the bias repeated 4 times).
    """
    maps = torch.tensor(_PHASE_TAPS, dtype=weight.dtype, device=weight.device)  # phase × 2 taps × 3 taps
    kernels = torch.einsum("yak,oidkl,xbl->yxoidab", maps, weight, maps)
    out_channels, in_channels = weight.shape[:2]
    return kernels.reshape(4 * out_channels, in_channels, 3, 2, 2).contiguous(), bias.repeat(4)


def upsampled_conv3d(x: torch.Tensor, kernels: torch.Tensor, bias: torch.Tensor,
                     out: torch.Tensor | None = None) -> torch.Tensor:
    """``relu(conv3d(nearest_upsample(x, (1, 2, 2)), w, b, padding=1))`` evaluated at low resolution.

    Output voxel (d, 2i+a, 2j+b) reads low-res rows {i−1+a, i+a} and columns {j−1+b, j+b} only, so one
    convolution of the padded low-res input with the 4 phase kernels of :func:`upsampled_conv3d_weights` gives
    every phase on an (H+1)×(W+1) grid; the ReLU runs there and the phases are interleaved into ``out``.

    Args:
        x: B×Cin×D×H×W low-resolution input.
        kernels: 4·Cout×Cin×3×2×2 phase kernels.
        bias: [4·Cout] phase bias.
        out: optional B×Cout×D×2H×2W destination (may be a channel slice of a larger buffer, e.g. the decoder's
            concatenation buffer); allocated when None.

    Returns:
        ``out``: B×Cout×D×2H×2W, ReLU applied.
    """
    batch, _, depth, height, width = x.shape
    out_channels = kernels.shape[0] // 4
    low = F.relu_(F.conv3d(x, kernels, bias, padding=1))  # B×4Cout×D×(H+1)×(W+1)
    low = low.view(batch, 2, 2, out_channels, depth, height + 1, width + 1)
    if out is None:
        out = low.new_empty(batch, out_channels, depth, 2 * height, 2 * width)
    phases = out.view(batch, out_channels, depth, height, 2, width, 2)
    for row in (0, 1):
        for col in (0, 1):
            phases[:, :, :, :, row, :, col] = low[:, row, col, :, :, row : row + height, col : col + width]
    return out


def depth_stacked_weight(weight: torch.Tensor) -> torch.Tensor:
    """Cout×Cin×k×k×k kernel → (k·Cout)×Cin×1×k×k: one 2-D kernel per (depth tap, output channel)."""
    out_channels, in_channels, depth_taps, kh, kw = weight.shape
    return weight.permute(2, 0, 1, 3, 4).reshape(depth_taps * out_channels, in_channels, 1, kh, kw).contiguous()


def depth_stacked_conv3d(x: torch.Tensor, stacked: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Same-padded k×k×k convolution computed as a (1, k, k) convolution over depth-tap-stacked outputs.

    Why: oneDNN blocks output channels by 16, so W's 22-channel 7×7×7 mask convolution computes 32 channels;
    stacking the 7 depth taps into 154 output channels wastes 4 %, and the k shifted adds along depth
    (``out[d] = Σ_t y[d + t − k//2, t]``, zero outside the volume) are cheap. Measured faster per layer.

    Args:
        x: B×Cin×D×H×W input.
        stacked: (k·Cout)×Cin×1×k×k kernels from :func:`depth_stacked_weight` (k odd).
        bias: [Cout] bias or None.

    Returns:
        B×Cout×D×H×W, equal to ``F.conv3d(x, weight, bias, padding=k // 2)``; float32 when ``x`` is bf16/fp16
        under autocast (the adds accumulate in the bias dtype).
    """
    batch, _, depth, height, width = x.shape
    size = stacked.shape[-1]
    half = size // 2
    out_channels = stacked.shape[0] // size
    taps = F.conv3d(x, stacked, None, padding=(0, half, half)).view(batch, size, out_channels, depth, height, width)
    out = taps[:, half].clone() if bias is None else taps[:, half] + bias.view(1, -1, 1, 1, 1)
    for tap in range(size):  # k shifted adds along depth, not a loop over samples
        shift = tap - half
        if shift > 0 and shift < depth:
            out[:, :, : depth - shift] += taps[:, tap, :, shift:]
        elif shift < 0 and -shift < depth:
            out[:, :, -shift:] += taps[:, tap, :, : depth + shift]
    return out
