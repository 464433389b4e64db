"""SPADE decoder G of LivePortrait.

G turns W's warped feature (B×256×64×64) into the 512×512 output image. The feature is both the input and the
SPADE "segmentation" map of every normalisation layer. Convolutions inside the residual blocks are spectrally
normalised with the stored u, v (see :class:`~frontalize.liveportrait.blocks.SpectralNormConv2d`). Attribute names
(``fc``, ``G_middle_{i}``, ``up_0``, ``up_1``, ``conv_img.0``) mirror the official checkpoint.
"""

from __future__ import annotations

import typing

import torch
import torch.nn.functional as F
from torch import nn

from frontalize.liveportrait.arch import SpadeArch
from frontalize.liveportrait.blocks import (
    DerivedTensorCache,
    SpectralNormConv2d,
    upsampled_conv3x3,
    upsampled_conv3x3_weights,
)

__all__ = ["SPADE", "SPADEDecoder", "SPADEResnetBlock"]

_IN_EPS = 1e-5
_LEAKY_SLOPE = 0.2


def instance_norm_parts(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Parameter-free instance norm split as (x − μ, 1/√(σ² + eps)), per sample and channel (two-pass variance).

    Why not ``F.instance_norm``: it forces an NCHW copy of channels-last inputs, and the one-pass
    ``F.group_norm`` loses precision when |μ| ≫ σ. Returning the parts lets SPADE fold 1/σ into its γ.

    Args:
        x: B×C×H×W input (any memory layout; channels-last is fastest).

    Returns:
        (B×C×H×W centred input, B×C×1×1 reciprocal standard deviation).
    """
    batch, channels, height, width = x.shape
    flat = x.permute(0, 2, 3, 1).reshape(batch, height * width, channels)  # a view for channels-last x
    centred = flat - flat.mean(dim=1, keepdim=True)
    norm = torch.linalg.vector_norm(centred, dim=1, keepdim=True)
    rstd = torch.rsqrt(norm.square_().div_(height * width).add_(_IN_EPS))
    centred_4d = centred.view(batch, height, width, channels).permute(0, 3, 1, 2)
    return centred_4d, rstd.view(batch, channels, 1, 1)


class SPADE(nn.Module):
    """Spatially-adaptive normalisation: InstanceNorm(x)·(1 + γ(seg)) + β(seg).

    Args:
        norm_channels: channels of the normalised input x.
        label_channels: channels of the segmentation map.
        hidden_channels: channels of the shared hidden layer.
    """

    def __init__(self, norm_channels: int, label_channels: int, hidden_channels: int = 128) -> None:
        super().__init__()
        self.mlp_shared = nn.Sequential(nn.Conv2d(label_channels, hidden_channels, kernel_size=3, padding=1),
                                        nn.ReLU(inplace=True))
        self.mlp_gamma = nn.Conv2d(hidden_channels, norm_channels, kernel_size=3, padding=1)
        self.mlp_beta = nn.Conv2d(hidden_channels, norm_channels, kernel_size=3, padding=1)
        self._polyphase: DerivedTensorCache[tuple[torch.Tensor, torch.Tensor | None]] = DerivedTensorCache()

    def hidden(self, segmap: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """``mlp_shared(nearest_resize(segmap, size))``, exploiting integer up-sampling factors.

        Args:
            segmap: B×L×h×w segmentation map.
            size: target (H, W).

        Returns:
            B×hidden×H×W activations (after the ReLU).
        """
        conv = typing.cast(nn.Conv2d, self.mlp_shared[0])
        factor = size[0] // segmap.shape[-2]
        if factor >= 2 and tuple(size) == (factor * segmap.shape[-2], factor * segmap.shape[-1]):
            weights = self._polyphase.get((conv.weight, conv.bias),
                                          lambda: upsampled_conv3x3_weights(conv.weight, conv.bias, factor),
                                          tag=factor)
            return upsampled_conv3x3(segmap, weights, factor, relu=True)
        if tuple(segmap.shape[-2:]) != tuple(size):
            segmap = F.interpolate(segmap, size=size, mode="nearest")
        return self.mlp_shared(segmap)

    def forward(self, x: torch.Tensor, segmap: torch.Tensor) -> torch.Tensor:
        """Normalise x and modulate it with the segmentation map.

        Args:
            x: B×C×H×W input.
            segmap: B×L×h×w segmentation map; resized (nearest) to H×W as in the reference.

        Returns:
            B×C×H×W modulated tensor.
        """
        return self.modulate(instance_norm_parts(x), segmap)

    def modulate(self, parts: tuple[torch.Tensor, torch.Tensor], segmap: torch.Tensor) -> torch.Tensor:
        """SPADE on a precomputed instance norm (shared by ``norm_0`` and ``norm_s`` of a block).

        Args:
            parts: :func:`instance_norm_parts` of the B×C×H×W input (centred input and 1/σ); not modified.
            segmap: B×L×h×w segmentation map.

        Returns:
            B×C×H×W modulated tensor.
        """
        centred, rstd = parts
        hidden = self.hidden(segmap, (centred.shape[-2], centred.shape[-1]))
        # (1 + γ) comes straight out of the convolution by adding 1 to its bias.
        gamma_bias = typing.cast(torch.Tensor, self.mlp_gamma.bias)
        scale = F.conv2d(hidden, self.mlp_gamma.weight, gamma_bias + 1, padding=1)
        shift = self.mlp_beta(hidden)
        return shift.addcmul_(centred, scale.mul_(rstd))


class SPADEResnetBlock(nn.Module):
    """Residual block: shortcut + conv_1(act(norm_1(conv_0(act(norm_0(x)))))) with LeakyReLU 0.2.

    The shortcut is ``conv_s(norm_s(x))`` (1×1, no bias, no activation) when the channel count changes, else x.

    Args:
        fin: input channels.
        fout: output channels.
        label_channels: channels of the segmentation map.
        hidden_channels: hidden channels of each SPADE.
    """

    def __init__(self, fin: int, fout: int, label_channels: int, hidden_channels: int = 128) -> None:
        super().__init__()
        fmiddle = min(fin, fout)
        self.learned_shortcut = fin != fout
        self.conv_0 = SpectralNormConv2d(fin, fmiddle, kernel_size=3, padding=1)
        self.conv_1 = SpectralNormConv2d(fmiddle, fout, kernel_size=3, padding=1)
        if self.learned_shortcut:
            self.conv_s = SpectralNormConv2d(fin, fout, kernel_size=1, bias=False)
        self.norm_0 = SPADE(fin, label_channels, hidden_channels)
        self.norm_1 = SPADE(fmiddle, label_channels, hidden_channels)
        if self.learned_shortcut:
            self.norm_s = SPADE(fin, label_channels, hidden_channels)

    def forward(self, x: torch.Tensor, segmap: torch.Tensor, upscale: int = 1) -> torch.Tensor:
        """Apply the block to ``nearest_upsample(x, upscale)``.

        The decoder's nearest up-sampling is folded in here: instance-norm statistics of an up-sampled tensor equal
        those of the original, so they are computed at low resolution and only the centred tensor is up-sampled.

        Args:
            x: B×fin×h×w input (before up-sampling).
            segmap: B×L×h'×w' segmentation map, resized inside each SPADE.
            upscale: integer nearest up-sampling factor of the input (1 = none).

        Returns:
            B×fout×(upscale·h)×(upscale·w).
        """
        centred, rstd = instance_norm_parts(x)
        if upscale > 1:
            centred = F.interpolate(centred, scale_factor=float(upscale), mode="nearest")
        parts = (centred, rstd)
        if self.learned_shortcut:
            shortcut = self.conv_s(self.norm_s.modulate(parts, segmap))
        else:
            shortcut = x if upscale == 1 else F.interpolate(x, scale_factor=float(upscale), mode="nearest")
        out = self.conv_0(F.leaky_relu(self.norm_0.modulate(parts, segmap), _LEAKY_SLOPE, inplace=True))
        out = self.conv_1(F.leaky_relu(self.norm_1(out, segmap), _LEAKY_SLOPE, inplace=True))
        return out.add_(shortcut)


class SPADEDecoder(nn.Module):
    """G: warped feature → output image.

    The released model has ``upscale`` 2 (``conv_img.0`` + PixelShuffle(2)); other values keep the same
    ``conv_img.0`` layout with PixelShuffle(upscale).

    Args:
        arch: hyper-parameters; the defaults are the released model.
    """

    def __init__(self, arch: SpadeArch | None = None) -> None:
        super().__init__()
        arch = arch or SpadeArch()
        self.arch = arch
        label = arch.input_channels
        middle = 2 * label
        hidden = arch.hidden_channels
        self.fc = nn.Conv2d(label, middle, kernel_size=3, padding=1)
        for i in range(arch.num_middle_blocks):
            self.add_module(f"G_middle_{i}", SPADEResnetBlock(middle, middle, label, hidden))
        self.up_0 = SPADEResnetBlock(middle, label, label, hidden)
        self.up_1 = SPADEResnetBlock(label, arch.out_channels, label, hidden)
        self.conv_img = nn.Sequential(
            nn.Conv2d(arch.out_channels, arch.image_channel * arch.upscale**2, kernel_size=3, padding=1),
            nn.PixelShuffle(arch.upscale),
        )
        self.to(memory_format=torch.channels_last)  # matches the channels-last activations of forward()

    def middle_blocks(self) -> list[SPADEResnetBlock]:
        """The ``G_middle_{i}`` blocks in order."""
        return [getattr(self, f"G_middle_{i}") for i in range(self.arch.num_middle_blocks)]

    def forward(self, feature: torch.Tensor) -> torch.Tensor:
        """Decode a warped feature into an image.

        Args:
            feature: B×256×64×64 (W's ``out``).

        Returns:
            B×3×512×512 image in (0, 1) (sigmoid output).
        """
        # Channels-last throughout: oneDNN convolutions and the fused element-wise ops are faster in NHWC.
        feature = feature.contiguous(memory_format=torch.channels_last)
        out = self.fc(feature)
        for block in self.middle_blocks():
            out = block(out, feature)
        for block in (self.up_0, self.up_1):
            out = block(out, feature, upscale=2)  # the reference's nearest ×2 up-sampling, folded into the block
        out = self.conv_img(F.leaky_relu(out, _LEAKY_SLOPE, inplace=True))
        return torch.sigmoid_(out).contiguous()
