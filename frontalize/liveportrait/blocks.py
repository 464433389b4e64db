"""Shared building blocks of the LivePortrait networks (F, W, G).

2-D/3-D convolution blocks with eval-mode BatchNorm, a spectrally normalised convolution that keeps the official
``weight_orig``/``weight_u``/``weight_v`` state_dict layout, the corner-aligned coordinate grid used by the warping
module, a cache for weights derived from stored tensors, and an exact low-resolution evaluation of "nearest
up-sampling followed by a 3×3 convolution" used by G's SPADE layers. Submodule attribute names mirror the official
checkpoints so that ``load_state_dict`` needs no remapping.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from functools import lru_cache
from typing import Generic, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

logger = logging.getLogger(__name__)

T = TypeVar("T")

__all__ = [
    "DerivedTensorCache",
    "DownBlock2d",
    "DownBlock3d",
    "ResBlock3d",
    "SameBlock2d",
    "SpectralNormConv2d",
    "UpBlock3d",
    "coordinate_grid",
    "upsampled_conv3x3",
    "upsampled_conv3x3_weights",
]


class SameBlock2d(nn.Module):
    """Conv2d (k3, p1) → BatchNorm2d → ReLU (or LeakyReLU 0.01); resolution preserved.

    Args:
        in_features: input channels.
        out_features: output channels.
        leaky: use LeakyReLU(0.01) instead of ReLU (W's ``third`` block).
    """

    def __init__(self, in_features: int, out_features: int, leaky: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_features, out_features, kernel_size=3, padding=1)
        self.norm = nn.BatchNorm2d(out_features)
        self.leaky = leaky

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """B×C_in×H×W → B×C_out×H×W."""
        out = self.norm(self.conv(x))
        return F.leaky_relu(out, 0.01, inplace=True) if self.leaky else F.relu(out, inplace=True)


class DownBlock2d(nn.Module):
    """Conv2d (k3, p1) → BatchNorm2d → ReLU → AvgPool 2×2: B×C_in×H×W → B×C_out×H/2×W/2."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_features, out_features, kernel_size=3, padding=1)
        self.norm = nn.BatchNorm2d(out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """B×C_in×H×W → B×C_out×H/2×W/2."""
        return F.avg_pool2d(F.relu(self.norm(self.conv(x)), inplace=True), kernel_size=2)


class ResBlock3d(nn.Module):
    """Pre-activation 3-D residual block: x + conv2(relu(norm2(conv1(relu(norm1(x)))))), channels preserved."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(features, features, kernel_size=3, padding=1)
        self.conv2 = nn.Conv3d(features, features, kernel_size=3, padding=1)
        self.norm1 = nn.BatchNorm3d(features)
        self.norm2 = nn.BatchNorm3d(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """B×C×D×H×W → B×C×D×H×W."""
        out = self.conv1(F.relu(self.norm1(x), inplace=True))
        out = self.conv2(F.relu(self.norm2(out), inplace=True))
        return out.add_(x)


class DownBlock3d(nn.Module):
    """Conv3d (k3, p1) → BatchNorm3d → ReLU → AvgPool (1,2,2): depth untouched, H and W halved."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.conv = nn.Conv3d(in_features, out_features, kernel_size=3, padding=1)
        self.norm = nn.BatchNorm3d(out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """B×C_in×D×H×W → B×C_out×D×H/2×W/2."""
        return F.avg_pool3d(F.relu(self.norm(self.conv(x)), inplace=True), kernel_size=(1, 2, 2))


class UpBlock3d(nn.Module):
    """Nearest up-sampling (1,2,2) → Conv3d (k3, p1) → BatchNorm3d → ReLU."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.conv = nn.Conv3d(in_features, out_features, kernel_size=3, padding=1)
        self.norm = nn.BatchNorm3d(out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """B×C_in×D×H×W → B×C_out×D×2H×2W."""
        out = F.interpolate(x, scale_factor=(1.0, 2.0, 2.0), mode="nearest")
        return F.relu(self.norm(self.conv(out)), inplace=True)


def _autocast_disabled(tensors: list[torch.Tensor]) -> AbstractContextManager[object]:
    """Context that switches autocast off for the device type of ``tensors`` (no-op when there are none)."""
    if not tensors:
        return nullcontext()
    return torch.autocast(tensors[0].device.type, enabled=False)


class DerivedTensorCache(Generic[T]):
    """Caches a value derived from module tensors (a folded weight) until one of the sources changes.

    The key holds each source's storage pointer, version counter, dtype and device, so ``load_state_dict``
    (in-place ``copy_``), ``.to()``, ``.half()`` or any in-place edit invalidates the cached value, plus an optional
    hashable ``tag`` (e.g. an up-sampling factor). While autograd tracks a source nothing is cached.
    """

    def __init__(self) -> None:
        self._key: tuple[object, ...] | None = None
        self._value: T | None = None

    def get(self, sources: tuple[torch.Tensor | None, ...], compute: Callable[[], T], tag: object = None) -> T:
        """Return ``compute()``, re-evaluated only when the sources (or ``tag``) changed since the last call.

        Args:
            sources: the tensors the value is derived from (``None`` entries are ignored).
            compute: evaluates the value (run under ``torch.no_grad`` when cached).
            tag: extra hashable part of the key.

        Returns:
            The cached or freshly computed value.
        """
        present = [t for t in sources if t is not None]
        if torch.is_grad_enabled() and any(t.requires_grad for t in present):
            return compute()
        key = (tag, *((t.data_ptr(), t._version, t.dtype, t.device) for t in present))
        if self._value is None or key != self._key:
            # autocast off: a value folded inside a bf16/fp16 autocast region must not be cached in half precision
            # (a later exact fp32 call would then mix dtypes); autocast re-casts the fp32 value where it is used.
            with torch.no_grad(), _autocast_disabled(present):
                self._value = compute()
            self._key = key
        return self._value


class SpectralNormConv2d(nn.Module):
    """Conv2d whose weight is ``weight_orig / σ`` with σ = u·(W_mat v) from the STORED u and v (eval-mode SN).

    Design choice: instead of torch's spectral-norm parametrisation (which would run power iterations and
    re-normalise on every call) this module keeps the official state_dict layout — parameter ``weight_orig``,
    buffers ``weight_u`` [out] and ``weight_v`` [in·kh·kw] — so official checkpoints load with ``strict=True``
    and ``state_dict()`` returns the official keys. The effective weight is folded once, lazily, and cached in a
    :class:`DerivedTensorCache`, which any change of the stored tensors (e.g. ``load_state_dict``) invalidates.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: square kernel size.
        padding: zero padding on each side.
        bias: whether the convolution has a bias.
    """

    weight_u: torch.Tensor
    weight_v: torch.Tensor

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
        self._folded: DerivedTensorCache[torch.Tensor] = DerivedTensorCache()

    def effective_weight(self) -> torch.Tensor:
        """The folded weight ``weight_orig / σ``, shape out×in×k×k (cached while the stored tensors are unchanged)."""
        return self._folded.get((self.weight_orig, self.weight_u, self.weight_v), self._fold)

    def _fold(self) -> torch.Tensor:
        weight_mat = self.weight_orig.reshape(self.weight_orig.shape[0], -1)
        sigma = torch.dot(self.weight_u, torch.mv(weight_mat, self.weight_v))
        return self.weight_orig / sigma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """B×C_in×H×W → B×C_out×H'×W'."""
        return F.conv2d(x, self.effective_weight(), self.bias, padding=self.padding)

    def extra_repr(self) -> str:
        out_c, in_c, k, _ = self.weight_orig.shape
        return f"{in_c}, {out_c}, kernel_size={k}, padding={self.padding}, bias={self.bias is not None}"


@lru_cache(maxsize=16)
def coordinate_grid(
    depth: int, height: int, width: int, dtype: torch.dtype = torch.float32, device: torch.device | None = None
) -> torch.Tensor:
    """Corner-aligned normalised coordinates of a D×H×W volume (cached per shape, dtype and device).

    ``x_i = 2i/(W−1) − 1`` (right), ``y_j = 2j/(H−1) − 1`` (down), ``z_k = 2k/(D−1) − 1`` (into the screen).
    The grid is corner-aligned although every ``grid_sample`` in W uses ``align_corners=False``; the released
    weights were trained with that mismatch, so it is kept on purpose. The returned tensor is shared: do not
    modify it in place.

    Returns:
        D×H×W×3 tensor, last axis (x, y, z).
    """

    def axis(n: int) -> torch.Tensor:
        # Same operation order as the reference (2·(i/(n−1)) − 1) to stay bit-close to it.
        return 2 * (torch.arange(n, dtype=dtype, device=device) / (n - 1)) - 1

    z, y, x = torch.meshgrid(axis(depth), axis(height), axis(width), indexing="ij")
    return torch.stack((x, y, z), dim=-1).contiguous()


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
    with 2×2 kernels (see :func:`upsampled_conv3x3_weights`) and gathering them is exact and needs 2.25× (factor
    2) to 4× (factor 4) fewer multiply-adds.

    Args:
        x: B×Cin×H×W low-resolution input.
        weights: the output of :func:`upsampled_conv3x3_weights` for this factor.
        factor: integer up-sampling factor ≥ 2.
        relu: apply ReLU (done before the gather, on fewer elements).

    Returns:
        B×Cout×(factor·H)×(factor·W), channels-last memory layout.
    """
    kernels, bias = weights
    per_phase, distinct = _phase_kinds(factor)
    batch, _, height, width = x.shape
    low = F.conv2d(F.pad(x, (1, 1, 1, 1)), kernels, bias)  # B×(n·n·Cout)×(H+1)×(W+1)
    if relu:
        low = F.relu(low, inplace=True)
    count = len(distinct)
    out_channels = low.shape[1] // (count * count)
    low = low.view(batch, count, count, out_channels, height + 1, width + 1)
    kind_index = torch.tensor([distinct.index(k) for k in per_phase], device=x.device)
    offset = torch.tensor([1 if k == "last" else 0 for k in per_phase], device=x.device)
    rows = torch.arange(factor * height, device=x.device)
    cols = torch.arange(factor * width, device=x.device)
    row_kind, row_pos = kind_index[rows % factor], rows // factor + offset[rows % factor]
    col_kind, col_pos = kind_index[cols % factor], cols // factor + offset[cols % factor]
    samples = torch.arange(batch, device=x.device)[:, None, None]
    gathered = low[samples, row_kind[None, :, None], col_kind[None, None, :], :, row_pos[None, :, None],
                   col_pos[None, None, :]]  # B×sH×sW×Cout
    return gathered.permute(0, 3, 1, 2)
