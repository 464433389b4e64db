"""Appearance feature extractor F of LivePortrait.

F maps the cropped source image to a 3-D appearance feature volume f_s: two 2-D down-sampling blocks, a 1×1
convolution to ``reshape_channel·reshape_depth`` channels, a feature-major reshape into (C, D), then a stack of
3-D residual blocks. Attribute names (``first``, ``down_blocks``, ``second``, ``resblocks_3d.3dr{i}``) mirror the
official checkpoint. ``fold_inference_weights()`` on the blocks folds their eval-mode BatchNorms into the
convolutions (``norm2`` into ``conv1`` in the residual blocks); unfolded blocks run the official formulation.
"""

from __future__ import annotations

import torch
from torch import nn

from frontalize.liveportrait.arch import AppearanceArch
from frontalize.liveportrait.blocks import DownBlock2d, ResBlock3d, SameBlock2d

__all__ = ["AppearanceFeatureExtractor"]


class AppearanceFeatureExtractor(nn.Module):
    """F: source image → appearance feature volume f_s.

    Args:
        arch: hyper-parameters; the defaults are the released model.
    """

    def __init__(self, arch: AppearanceArch | None = None) -> None:
        super().__init__()
        arch = arch or AppearanceArch()
        self.arch = arch
        self.first = SameBlock2d(arch.image_channel, arch.block_expansion)
        blocks = []
        for i in range(arch.num_down_blocks):
            in_features = min(arch.max_features, arch.block_expansion * 2**i)
            out_features = min(arch.max_features, arch.block_expansion * 2 ** (i + 1))
            blocks.append(DownBlock2d(in_features, out_features))
        self.down_blocks = nn.ModuleList(blocks)
        last = min(arch.max_features, arch.block_expansion * 2**arch.num_down_blocks)
        self.second = nn.Conv2d(last, arch.max_features, kernel_size=1)
        self.resblocks_3d = nn.Sequential()
        for i in range(arch.num_resblocks):
            self.resblocks_3d.add_module(f"3dr{i}", ResBlock3d(arch.reshape_channel))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Extract the appearance volume.

        Args:
            image: B×3×H×W RGB in [0, 1] (256×256 for the released model).

        Returns:
            B×C×D×H/4×W/4 feature volume (32×16×64×64 for the released model); the 512 channels of ``second``
            are viewed feature-major as (C, D).
        """
        out = self.first(image)
        for block in self.down_blocks:
            out = block(out)
        out = self.second(out)
        batch, _, height, width = out.shape
        volume = out.view(batch, self.arch.reshape_channel, self.arch.reshape_depth, height, width)
        return self.resblocks_3d(volume)
