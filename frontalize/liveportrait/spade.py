"""SPADE decoder G of LivePortrait.

G turns W's warped feature (B×256×64×64) into the 512×512 output image. The feature is both the input and the
SPADE "segmentation" map of every normalisation layer. Convolutions inside the residual blocks are spectrally
normalised with the stored u, v (see :class:`~frontalize.liveportrait.blocks.SpectralNormConv2d`). Attribute names
(``fc``, ``G_middle_{i}``, ``up_0``, ``up_1``, ``conv_img.0``) mirror the official checkpoint. Derived weights (the
spectral norm, SPADE's polyphase kernels and γ's bias + 1) are folded once by ``fold_inference_weights()`` into
non-persistent buffers, so a compiled G sees constant weights.
"""

from __future__ import annotations

import typing

import torch
import torch.nn.functional as F
from torch import nn

from frontalize.liveportrait.arch import SpadeArch
from frontalize.liveportrait.blocks import (
    SpectralNormConv2d,
    derived_weights_context,
    grad_needed,
    refold_after_load,
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
    # out of place (B×1×C tensors, negligible): vector_norm's backward needs its output unchanged
    rstd = torch.rsqrt(norm.square().div(height * width).add(_IN_EPS))
    centred_4d = centred.view(batch, height, width, channels).permute(0, 3, 1, 2)
    return centred_4d, rstd.view(batch, channels, 1, 1)


class SPADE(nn.Module):
    """Spatially-adaptive normalisation: InstanceNorm(x)·(1 + γ(seg)) + β(seg).

    Args:
        norm_channels: channels of the normalised input x.
        label_channels: channels of the segmentation map.
        hidden_channels: channels of the shared hidden layer.
        upsample_factor: size of x ÷ size of the segmentation map in the network (1 = same size); the polyphase
            kernels of ``mlp_shared`` are folded for this factor (other factors still work, derived per call).
    """

    shared_polyphase_weight: torch.Tensor | None
    shared_polyphase_bias: torch.Tensor | None
    gamma_bias_plus_one: torch.Tensor | None

    def __init__(self, norm_channels: int, label_channels: int, hidden_channels: int = 128,
                 upsample_factor: int = 1) -> None:
        super().__init__()
        self.mlp_shared = nn.Sequential(nn.Conv2d(label_channels, hidden_channels, kernel_size=3, padding=1),
                                        nn.ReLU(inplace=True))
        self.mlp_gamma = nn.Conv2d(hidden_channels, norm_channels, kernel_size=3, padding=1)
        self.mlp_beta = nn.Conv2d(hidden_channels, norm_channels, kernel_size=3, padding=1)
        self.upsample_factor = upsample_factor
        self.register_buffer("shared_polyphase_weight", None, persistent=False)
        self.register_buffer("shared_polyphase_bias", None, persistent=False)
        self.register_buffer("gamma_bias_plus_one", None, persistent=False)
        self.register_load_state_dict_post_hook(refold_after_load)

    @property
    def is_folded(self) -> bool:
        """Whether :meth:`fold_inference_weights` has stored the derived weights."""
        return self.gamma_bias_plus_one is not None

    def fold_inference_weights(self) -> None:
        """Store γ's bias + 1 and, for ``upsample_factor`` ≥ 2, ``mlp_shared``'s polyphase kernels as buffers.

        Computed without grad and with autocast off, in the dtype and device of the convolutions.
        """
        conv = self._shared_conv()
        with torch.no_grad(), derived_weights_context(conv.weight):
            if self.upsample_factor >= 2:
                weight, bias = upsampled_conv3x3_weights(conv.weight, conv.bias, self.upsample_factor)
                self.shared_polyphase_weight, self.shared_polyphase_bias = weight, bias
            self.gamma_bias_plus_one = self._gamma_bias() + 1

    def _shared_conv(self) -> nn.Conv2d:
        return typing.cast(nn.Conv2d, self.mlp_shared[0])

    def _gamma_bias(self) -> torch.Tensor:
        return typing.cast(torch.Tensor, self.mlp_gamma.bias)

    def _polyphase_weights(self, factor: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``mlp_shared``'s polyphase kernels for ``factor``: the folded ones when they fit, else derived now."""
        conv = self._shared_conv()
        folded = self.shared_polyphase_weight
        if folded is not None and factor == self.upsample_factor and not grad_needed(conv.weight, conv.bias):
            return folded, self.shared_polyphase_bias
        with derived_weights_context(conv.weight):
            return upsampled_conv3x3_weights(conv.weight, conv.bias, factor)

    def _scale_bias(self) -> torch.Tensor:
        """γ's bias + 1, so that (1 + γ) comes straight out of the convolution."""
        folded = self.gamma_bias_plus_one
        if folded is not None and not grad_needed(self.mlp_gamma.bias):
            return folded
        return self._gamma_bias() + 1

    def hidden(self, segmap: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """``mlp_shared(nearest_resize(segmap, size))``, exploiting integer up-sampling factors.

        Args:
            segmap: B×L×h×w segmentation map.
            size: target (H, W).

        Returns:
            B×hidden×H×W activations (after the ReLU).
        """
        factor = size[0] // segmap.shape[-2]
        if factor >= 2 and tuple(size) == (factor * segmap.shape[-2], factor * segmap.shape[-1]):
            return upsampled_conv3x3(segmap, self._polyphase_weights(factor), factor, relu=True)
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
        scale = F.conv2d(hidden, self.mlp_gamma.weight, self._scale_bias(), padding=1)
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
        segmap_factor: size of the block's output ÷ size of the segmentation map in the network (its SPADEs fold
            their polyphase kernels for it).
    """

    def __init__(self, fin: int, fout: int, label_channels: int, hidden_channels: int = 128, *,
                 segmap_factor: int = 1) -> None:
        super().__init__()
        fmiddle = min(fin, fout)
        self.learned_shortcut = fin != fout
        self.conv_0 = SpectralNormConv2d(fin, fmiddle, kernel_size=3, padding=1)
        self.conv_1 = SpectralNormConv2d(fmiddle, fout, kernel_size=3, padding=1)
        if self.learned_shortcut:
            self.conv_s = SpectralNormConv2d(fin, fout, kernel_size=1, bias=False)
        self.norm_0 = SPADE(fin, label_channels, hidden_channels, segmap_factor)
        self.norm_1 = SPADE(fmiddle, label_channels, hidden_channels, segmap_factor)
        if self.learned_shortcut:
            self.norm_s = SPADE(fin, label_channels, hidden_channels, segmap_factor)

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
        # fc keeps the input size and each up block doubles it: its SPADEs see x at 2× / 4× the segmentation map
        self.up_0 = SPADEResnetBlock(middle, label, label, hidden, segmap_factor=2)
        self.up_1 = SPADEResnetBlock(label, arch.out_channels, label, hidden, segmap_factor=4)
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
