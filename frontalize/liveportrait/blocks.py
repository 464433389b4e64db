"""Shared building blocks of the LivePortrait networks (F, W, G).

2-D/3-D convolution blocks with eval-mode BatchNorm, a spectrally normalised convolution that keeps the official
``weight_orig``/``weight_u``/``weight_v`` state_dict layout, the corner-aligned coordinate grid used by the warping
module, the helpers of the "fold derived weights once" mechanism (``fold_inference_weights``: derived weights
stored as non-persistent buffers, re-folded after ``load_state_dict``), and an exact low-resolution evaluation
of "nearest up-sampling followed by a 3×3 convolution" used by G's SPADE layers. Submodule attribute names
mirror the official checkpoints so that ``load_state_dict`` needs no remapping.
"""

from __future__ import annotations

import logging
import math
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

from frontalize.liveportrait.fusion import (
    ConvNormFolding,
    InferenceFolding,
    derived_weights_context,
    fold_batch_norm,
    grad_needed,
    refold_after_load,
    upsampled_conv3d,
    upsampled_conv3d_weights,
)

logger = logging.getLogger(__name__)

__all__ = [
    "DownBlock2d",
    "DownBlock3d",
    "ResBlock3d",
    "SameBlock2d",
    "SpectralNormConv2d",
    "UpBlock3d",
    "coordinate_grid",
    "derived_weights_context",
    "grad_needed",
    "make_coordinate_grid",
    "refold_after_load",
    "spectral_normalised_weight",
    "upsampled_conv3x3",
    "upsampled_conv3x3_weights",
]


class SameBlock2d(ConvNormFolding, nn.Module):
    """Conv2d (k3, p1) → BatchNorm2d → ReLU (or LeakyReLU 0.01); resolution preserved (BN foldable).

    Args:
        in_features: input channels.
        out_features: output channels.
        leaky: use LeakyReLU(0.01) instead of ReLU (W's ``third`` block).
    """

    folded_weight: torch.Tensor | None
    folded_bias: torch.Tensor | None

    def __init__(self, in_features: int, out_features: int, leaky: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_features, out_features, kernel_size=3, padding=1)
        self.norm = nn.BatchNorm2d(out_features)
        self.leaky = leaky
        self._init_conv_norm_folding()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """B×C_in×H×W → B×C_out×H×W."""
        out = self._conv_norm(x)
        return F.leaky_relu(out, 0.01, inplace=True) if self.leaky else F.relu(out, inplace=True)


class DownBlock2d(ConvNormFolding, nn.Module):
    """Conv2d (k3, p1) → BatchNorm2d → ReLU → AvgPool 2×2: B×C_in×H×W → B×C_out×H/2×W/2 (BN foldable)."""

    folded_weight: torch.Tensor | None
    folded_bias: torch.Tensor | None

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_features, out_features, kernel_size=3, padding=1)
        self.norm = nn.BatchNorm2d(out_features)
        self._init_conv_norm_folding()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """B×C_in×H×W → B×C_out×H/2×W/2."""
        return F.avg_pool2d(F.relu(self._conv_norm(x), inplace=True), kernel_size=2)


class ResBlock3d(InferenceFolding, nn.Module):
    """Pre-activation 3-D residual block: x + conv2(relu(norm2(conv1(relu(norm1(x)))))), channels preserved.

    ``fold_inference_weights()`` folds ``norm2`` into ``conv1`` (``norm1`` precedes a ReLU, so it stays).
    """

    folded_conv1_weight: torch.Tensor | None
    folded_conv1_bias: torch.Tensor | None

    def __init__(self, features: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(features, features, kernel_size=3, padding=1)
        self.conv2 = nn.Conv3d(features, features, kernel_size=3, padding=1)
        self.norm1 = nn.BatchNorm3d(features)
        self.norm2 = nn.BatchNorm3d(features)
        self._init_folding("folded_conv1_weight", "folded_conv1_bias")

    def _derived_weights(self) -> dict[str, torch.Tensor]:
        weight, bias = fold_batch_norm(self.conv1.weight, self.conv1.bias, self.norm2)
        return {"folded_conv1_weight": weight, "folded_conv1_bias": bias}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """B×C×D×H×W → B×C×D×H×W."""
        out = F.relu(self.norm1(x), inplace=True)
        folded = self._folded_tensors()
        out = self.norm2(self.conv1(out)) if folded is None else F.conv3d(out, folded[0], folded[1], padding=1)
        out = self.conv2(F.relu(out, inplace=True))
        return out.add_(x)


class DownBlock3d(ConvNormFolding, nn.Module):
    """Conv3d (k3, p1) → BatchNorm3d → ReLU → AvgPool (1,2,2): depth untouched, H and W halved (BN foldable)."""

    folded_weight: torch.Tensor | None
    folded_bias: torch.Tensor | None

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.conv = nn.Conv3d(in_features, out_features, kernel_size=3, padding=1)
        self.norm = nn.BatchNorm3d(out_features)
        self._init_conv_norm_folding()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """B×C_in×D×H×W → B×C_out×D×H/2×W/2."""
        return F.avg_pool3d(F.relu(self._conv_norm(x), inplace=True), kernel_size=(1, 2, 2))


class UpBlock3d(ConvNormFolding, nn.Module):
    """Nearest up-sampling (1,2,2) → Conv3d (k3, p1) → BatchNorm3d → ReLU (BN foldable).

    With ``polyphase``, ``fold_inference_weights()`` stores the four 3×2×2 phase kernels of
    :func:`~frontalize.liveportrait.fusion.upsampled_conv3d_weights` instead, and the block runs at low resolution
    without materialising the up-sampled input: 2.25× fewer multiply-adds at large sizes, but slower on tiny inputs
    where the 1.8× larger kernels dominate — hence a per-block choice.

    Args:
        in_features: input channels.
        out_features: output channels.
        polyphase: fold into phase kernels (else into one 3×3×3 kernel).
    """

    folded_weight: torch.Tensor | None
    folded_bias: torch.Tensor | None

    def __init__(self, in_features: int, out_features: int, polyphase: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv3d(in_features, out_features, kernel_size=3, padding=1)
        self.norm = nn.BatchNorm3d(out_features)
        self.polyphase = polyphase
        self._init_conv_norm_folding()

    def _derived_weights(self) -> dict[str, torch.Tensor]:
        derived = super()._derived_weights()
        if self.polyphase:
            derived["folded_weight"], derived["folded_bias"] = upsampled_conv3d_weights(
                derived["folded_weight"], derived["folded_bias"])
        return derived

    def forward(self, x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """B×C_in×D×H×W → B×C_out×D×2H×2W, written into ``out`` when given (e.g. a slice of a concat buffer)."""
        folded = self._folded_tensors()
        if folded is not None and self.polyphase:
            return upsampled_conv3d(x, folded[0], folded[1], out=out)
        upsampled = F.interpolate(x, scale_factor=(1.0, 2.0, 2.0), mode="nearest")
        result = F.relu(self._conv_norm(upsampled), inplace=True)
        return result if out is None else out.copy_(result)


def spectral_normalised_weight(weight_orig: torch.Tensor, weight_u: torch.Tensor,
                               weight_v: torch.Tensor) -> torch.Tensor:
    """``weight_orig / σ`` with σ = u·(W_mat v) from the stored power-iteration vectors (eval-mode spectral norm).

    Args:
        weight_orig: out×in×k×k unnormalised kernel.
        weight_u: [out] left vector.
        weight_v: [in·k·k] right vector.

    Returns:
        out×in×k×k kernel, in ``weight_orig``'s memory layout.
    """
    weight_mat = weight_orig.reshape(weight_orig.shape[0], -1)
    sigma = torch.dot(weight_u, torch.mv(weight_mat, weight_v))
    return weight_orig / sigma


class SpectralNormConv2d(nn.Module):
    """Conv2d whose weight is ``weight_orig / σ`` with σ = u·(W_mat v) from the STORED u and v (eval-mode SN).

    Design choice: instead of torch's spectral-norm parametrisation (which would run power iterations and
    re-normalise on every call) this module keeps the official state_dict layout — parameter ``weight_orig``,
    buffers ``weight_u`` [out] and ``weight_v`` [in·kh·kw] — so official checkpoints load with ``strict=True``
    and ``state_dict()`` returns the official keys. :meth:`fold_inference_weights` stores the effective weight
    once as the non-persistent buffer ``weight_folded`` (re-folded after ``load_state_dict``); until then, or while
    autograd needs the weight, it is computed on every call.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: square kernel size.
        padding: zero padding on each side.
        bias: whether the convolution has a bias.
    """

    weight_u: torch.Tensor
    weight_v: torch.Tensor
    weight_folded: torch.Tensor | None

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, padding: int = 0,
                 bias: bool = True) -> None:
        super().__init__()
        self.padding = padding
        fan_in = in_channels * kernel_size * kernel_size
        bound = 1.0 / math.sqrt(fan_in)
        self.bias = nn.Parameter(torch.empty(out_channels).uniform_(-bound, bound)) if bias else None
        self.weight_orig = nn.Parameter(
            torch.empty(out_channels, in_channels, kernel_size, kernel_size).uniform_(-bound, bound)
        )
        self.register_buffer("weight_u", F.normalize(torch.randn(out_channels), dim=0))
        self.register_buffer("weight_v", F.normalize(torch.randn(fan_in), dim=0))
        self.register_buffer("weight_folded", None, persistent=False)
        self.register_load_state_dict_post_hook(refold_after_load)

    @property
    def is_folded(self) -> bool:
        """Whether :meth:`fold_inference_weights` has stored the effective weight."""
        return self.weight_folded is not None

    def fold_inference_weights(self) -> None:
        """Store ``weight_orig / σ`` as the non-persistent buffer ``weight_folded`` (no grad, autocast off)."""
        with torch.no_grad(), derived_weights_context(self.weight_orig):
            self.weight_folded = spectral_normalised_weight(self.weight_orig, self.weight_u, self.weight_v)

    def effective_weight(self) -> torch.Tensor:
        """The weight ``weight_orig / σ``, shape out×in×k×k: the folded buffer, or computed now when not folded."""
        folded = self.weight_folded
        if folded is not None and not grad_needed(self.weight_orig):
            return folded
        with derived_weights_context(self.weight_orig):
            return spectral_normalised_weight(self.weight_orig, self.weight_u, self.weight_v)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """B×C_in×H×W → B×C_out×H'×W'."""
        return F.conv2d(x, self.effective_weight(), self.bias, padding=self.padding)

    def extra_repr(self) -> str:
        out_c, in_c, k, _ = self.weight_orig.shape
        return f"{in_c}, {out_c}, kernel_size={k}, padding={self.padding}, bias={self.bias is not None}"


def make_coordinate_grid(
    depth: int, height: int, width: int, dtype: torch.dtype = torch.float32, device: torch.device | None = None
) -> torch.Tensor:
    """Corner-aligned normalised coordinates of a D×H×W volume (a new tensor; :func:`coordinate_grid` caches).

    ``x_i = 2i/(W−1) − 1`` (right), ``y_j = 2j/(H−1) − 1`` (down), ``z_k = 2k/(D−1) − 1`` (into the screen).
    The grid is corner-aligned although every ``grid_sample`` in W uses ``align_corners=False``; the released
    weights were trained with that mismatch, so it is kept on purpose.

    Returns:
        D×H×W×3 tensor, last axis (x, y, z).
    """

    def axis(n: int) -> torch.Tensor:
        # Same operation order as the reference (2·(i/(n−1)) − 1) to stay bit-close to it.
        return 2 * (torch.arange(n, dtype=dtype, device=device) / (n - 1)) - 1

    z, y, x = torch.meshgrid(axis(depth), axis(height), axis(width), indexing="ij")
    return torch.stack((x, y, z), dim=-1).contiguous()


_cached_coordinate_grid = lru_cache(maxsize=16)(make_coordinate_grid)


def coordinate_grid(
    depth: int, height: int, width: int, dtype: torch.dtype = torch.float32, device: torch.device | None = None
) -> torch.Tensor:
    """:func:`make_coordinate_grid`, built once per shape, dtype and device (shared: do not modify in place).

    Under ``torch.compile`` the grid is traced instead (a compiled graph bakes it in as constants; dynamo would
    otherwise warn that it ignores the cache wrapper).
    """
    if torch.compiler.is_compiling():
        return make_coordinate_grid(depth, height, width, dtype, device)
    return _cached_coordinate_grid(depth, height, width, dtype, device)


# 3-tap → 2-tap maps of a 3×3 kernel applied after nearest up-sampling (see upsampled_conv3x3_weights).
_TAP_MAPS = {
    "first": ((1.0, 0.0, 0.0), (0.0, 1.0, 1.0)),  # output phase 0: low-res rows {i−1, i}
    "middle": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),  # phases 1 … s−2: only row i (same window as "first")
    "last": ((1.0, 1.0, 0.0), (0.0, 0.0, 1.0)),  # phase s−1: low-res rows {i, i+1}
}


def _phase_kinds(factor: int) -> tuple[list[str], list[str]]:
    """(kind of each output phase 0…factor−1, the distinct kinds in a fixed order)."""
    per_phase = ["first"] + ["middle"] * (factor - 2) + ["last"]
    distinct: list[str] = [k for k in ("first", "middle", "last") if k in per_phase]
    return per_phase, distinct


def _phase_groups(factor: int) -> list[tuple[int, int, int]]:
    """Runs of equal output phases along one axis: (kind index, low-res row offset, number of phases).

    Phase 0 reads low-res rows {i−1, i} (stored at offset 0 of the padded low-res output), phases 1 … s−2 row i
    (offset 0), phase s−1 rows {i, i+1} (offset 1); the phases of one kind are consecutive.
    """
    per_phase, distinct = _phase_kinds(factor)
    return [(index, 1 if kind == "last" else 0, per_phase.count(kind)) for index, kind in enumerate(distinct)]


def upsampled_conv3x3_weights(weight: torch.Tensor, bias: torch.Tensor | None,
                              factor: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Polyphase 2×2 kernels equivalent to a 3×3 convolution applied after nearest up-sampling by ``factor``.

    After nearest up-sampling by s ≥ 2, the 3 taps of a row of the kernel at output row s·i + a read low-res rows
    {i−1, i} (a = 0), {i} (0 < a < s−1) or {i, i+1} (a = s−1); summing the taps that read the same low-res pixel
    gives one 2-tap kernel per phase kind and axis. The distinct (row kind, column kind) pairs are stacked along
    the output channels.

    Args:
        weight: Cout×Cin×3×3 kernel.
        bias: [Cout] bias or None.
        factor: integer up-sampling factor ≥ 2.

    Returns:
        (n²·Cout×Cin×2×2 kernels ordered (row kind, column kind, Cout), the bias repeated n² times), with n = 2
        (factor 2) or 3 (factor > 2) distinct kinds.
    """
    _, distinct = _phase_kinds(factor)
    maps = torch.tensor([_TAP_MAPS[k] for k in distinct], dtype=weight.dtype, device=weight.device)
    kernels = torch.einsum("yak,oikl,xbl->yxoiab", maps, weight, maps)
    count = len(distinct) ** 2
    stacked = kernels.reshape(count * weight.shape[0], weight.shape[1], 2, 2)
    return stacked.contiguous(memory_format=torch.channels_last), None if bias is None else bias.repeat(count)


def upsampled_conv3x3(x: torch.Tensor, weights: tuple[torch.Tensor, torch.Tensor | None], factor: int,
                      relu: bool = False) -> torch.Tensor:
    """``conv3x3(nearest_upsample(x, factor), padding=1)`` evaluated at low resolution (then ReLU if asked).

    Why: SPADE's shared MLP convolves a nearest-up-sampled copy of G's 64×64 input at 128² and 256². Every
    output pixel then depends on at most 2×2 low-res pixels, so computing the distinct phases at low resolution
    with 2×2 kernels (see :func:`upsampled_conv3x3_weights`) and interleaving them is exact and needs 2.25×
    (factor 2) to 4× (factor 4) fewer multiply-adds. The interleave takes strided slices of the channels-last
    low-res output (one per run of equal phases, broadcast over the repeated middle phases) and concatenates them
    in pixel-shuffle order, instead of an advanced-indexing gather (measured slower, docs/PERFORMANCE.md).

    Args:
        x: B×Cin×H×W low-resolution input.
        weights: the output of :func:`upsampled_conv3x3_weights` for this factor.
        factor: integer up-sampling factor ≥ 2.
        relu: apply ReLU (done before the interleave, on fewer elements).

    Returns:
        B×Cout×(factor·H)×(factor·W), channels-last memory layout.
    """
    kernels, bias = weights
    batch, _, height, width = x.shape
    # padding=1 with 2×2 kernels equals F.pad(x, (1, 1, 1, 1)) then a valid convolution, without the padded copy
    low = F.conv2d(x, kernels, bias, padding=1)  # B×(n·n·Cout)×(H+1)×(W+1)
    if relu:
        low = F.relu(low, inplace=True)
    groups = _phase_groups(factor)
    count = len(groups)
    channels = low.shape[1] // (count * count)
    # B×(H+1)×(W+1)×n×n×Cout; a view when low is channels-last (oneDNN's output for channels-last kernels)
    phases = low.permute(0, 2, 3, 1).reshape(batch, height + 1, width + 1, count, count, channels)
    rows = []
    for row_kind, row_offset, row_repeat in groups:
        cols = [phases[:, row_offset:row_offset + height, col_offset:col_offset + width, row_kind, col_kind, None]
                .expand(batch, height, width, col_repeat, channels) for col_kind, col_offset, col_repeat in groups]
        rows.append(torch.cat(cols, dim=3)[:, :, None].expand(batch, height, row_repeat, width, factor, channels))
    out = torch.cat(rows, dim=2)  # B×H×s×W×s×Cout: (row, row phase, column, column phase) = pixel-shuffle order
    return out.view(batch, factor * height, factor * width, channels).permute(0, 3, 1, 2)
