"""Warping module W of LivePortrait (dense motion network + 3-D feature warping).

Given the appearance volume f_s and the source / driving implicit keypoints (x_s, x_d), the dense motion network
builds K+1 sparse motions (identity "background" + one per keypoint: ``grid − x_d[k] + x_s[k]``), warps a
compressed copy of f_s with each of them, adds Gaussian heatmap differences, and lets a 3-D hourglass predict a
softmax mask over the K+1 motions and an occlusion map. The blended deformation warps f_s, which is flattened to
2-D and projected to W's output feature. Attribute names mirror the official checkpoint.

``fold_inference_weights()`` (called on every submodule by the frontalizer) folds each eval-mode BatchNorm into
its convolution and switches the mask convolution and the large-resolution up-blocks to the exact fast forms of
:mod:`frontalize.liveportrait.fusion`; unfolded modules run the official formulation.

Every ``grid_sample`` uses ``align_corners=False`` with the corner-aligned grid of
:func:`~frontalize.liveportrait.blocks.coordinate_grid`, as the released weights expect.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from frontalize.liveportrait.arch import DenseMotionArch, WarpingArch
from frontalize.liveportrait.blocks import DownBlock3d, SameBlock2d, UpBlock3d, coordinate_grid
from frontalize.liveportrait.fusion import (
    ConvNormFolding,
    InferenceFolding,
    depth_stacked_conv3d,
    depth_stacked_weight,
    fold_batch_norm,
)

__all__ = ["DenseMotionNetwork", "Hourglass", "WarpingNetwork", "keypoint_gaussians", "single_output_conv2d"]

_KP_VARIANCE = 0.01


class _Encoder(nn.Module):
    """Hourglass encoder: a chain of DownBlock3d; returns every intermediate (input first)."""

    def __init__(self, block_expansion: int, in_features: int, num_blocks: int, max_features: int) -> None:
        super().__init__()
        blocks = []
        for i in range(num_blocks):
            c_in = in_features if i == 0 else min(max_features, block_expansion * 2**i)
            blocks.append(DownBlock3d(c_in, min(max_features, block_expansion * 2 ** (i + 1))))
        self.down_blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """B×C×D×H×W → [x, level 1, …, level N] (each level halves H and W)."""
        outs = [x]
        for block in self.down_blocks:
            outs.append(block(outs[-1]))
        return outs


class _Decoder(ConvNormFolding, nn.Module):
    """Hourglass decoder: UpBlock3d with skip concatenation, then Conv3d → BatchNorm3d → ReLU (BN foldable).

    The up-blocks of all but the two deepest levels use the polyphase form when folded: their inputs are at
    least 1/8 of the volume's side (8×8 for the released 64×64 volume), where it measured 1.8–3.3× faster per
    layer; on the 2×2 and 4×4 inputs of the two deepest levels it measured about 20 % slower.
    """

    folded_weight: torch.Tensor | None
    folded_bias: torch.Tensor | None

    def __init__(self, block_expansion: int, in_features: int, num_blocks: int, max_features: int) -> None:
        super().__init__()
        blocks = []
        for i in reversed(range(num_blocks)):
            c_in = (1 if i == num_blocks - 1 else 2) * min(max_features, block_expansion * 2 ** (i + 1))
            blocks.append(UpBlock3d(c_in, min(max_features, block_expansion * 2**i), polyphase=i < num_blocks - 2))
        self.up_blocks = nn.ModuleList(blocks)
        self.up_channels = tuple(min(max_features, block_expansion * 2**i) for i in reversed(range(num_blocks)))
        self.out_filters = block_expansion + in_features
        self.conv = nn.Conv3d(self.out_filters, self.out_filters, kernel_size=3, padding=1)
        self.norm = nn.BatchNorm3d(self.out_filters)
        self._init_conv_norm_folding()

    def forward(self, skips: list[torch.Tensor]) -> torch.Tensor:
        """Encoder outputs → B×(block_expansion+in_features)×D×H×W."""
        out = skips[-1]
        for block, up_channels, skip in zip(self.up_blocks, self.up_channels, reversed(skips[:-1])):
            # torch.cat([block(out), skip]) without the extra copy: the up-block writes its half in place
            merged = skip.new_empty(skip.shape[0], up_channels + skip.shape[1], *skip.shape[2:],
                                    dtype=torch.promote_types(out.dtype, skip.dtype))
            block(out, out=merged[:, :up_channels])
            merged[:, up_channels:] = skip
            out = merged
        return F.relu(self._conv_norm(out), inplace=True)


class Hourglass(nn.Module):
    """3-D U-Net (depth preserved) used by the dense motion network."""

    def __init__(self, block_expansion: int, in_features: int, num_blocks: int, max_features: int) -> None:
        super().__init__()
        self.encoder = _Encoder(block_expansion, in_features, num_blocks, max_features)
        self.decoder = _Decoder(block_expansion, in_features, num_blocks, max_features)
        self.out_filters = self.decoder.out_filters

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """B×C×D×H×W → B×out_filters×D×H×W."""
        return self.decoder(self.encoder(x))


def keypoint_gaussians(grid: torch.Tensor, keypoints: torch.Tensor, variance: float = _KP_VARIANCE) -> torch.Tensor:
    """Gaussian heatmaps exp(−½‖g − kp‖² / variance) of all keypoints at once.

    Why separable: on an axis-aligned grid the Gaussian is the product of three 1-D Gaussians (exp of a sum =
    product of exps, equal up to float rounding), so only (D+H+W)·K exponentials are evaluated instead of
    D·H·W·K (measured 39 → 0.4 ms for W's 21 keypoints on 16×64×64, one thread).

    Args:
        grid: D×H×W×3 axis-aligned coordinate grid (x varies along W, y along H, z along D), e.g.
            :func:`~frontalize.liveportrait.blocks.coordinate_grid`.
        keypoints: B×K×3 keypoints (x, y, z) in the same normalised space.
        variance: Gaussian variance.

    Returns:
        B×K×D×H×W heatmaps.
    """
    x, y, z = grid[0, 0, :, 0], grid[0, :, 0, 1], grid[:, 0, 0, 2]

    def axis_gaussian(axis: torch.Tensor, column: int) -> torch.Tensor:  # B×K×n
        return torch.exp(-0.5 * (axis - keypoints[:, :, column, None]).square() / variance)

    depth, height, width = axis_gaussian(z, 2), axis_gaussian(y, 1), axis_gaussian(x, 0)
    return depth[:, :, :, None, None] * height[:, :, None, :, None] * width[:, :, None, None, :]


def single_output_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Same-padded k×k convolution with ONE output channel, computed as a GEMM plus k² shifted adds.

    Why not ``F.conv2d``: with a single output channel oneDNN runs W's 2272-channel 7×7 occlusion convolution far
    below peak (≈ 0.1 s on 2 cores). Contracting the channels first, ``taps = W_mat @ x`` (one efficient GEMM
    giving one map per kernel tap), then summing the k² shifted, zero-padded tap maps is the same linear map at
    a fraction of the cost (zero padding commutes with the channel contraction).

    Args:
        x: B×C×H×W input.
        weight: 1×C×k×k kernel (k odd).
        bias: [1] bias or None.

    Returns:
        B×1×H×W output, equal to ``F.conv2d(x, weight, bias, padding=k // 2)``.
    """
    batch, channels, height, width = x.shape
    size = weight.shape[-1]
    taps = torch.matmul(weight.reshape(channels, size * size).t(), x.reshape(batch, channels, height * width))
    half = size // 2
    padded = F.pad(taps.view(batch, size * size, height, width), (half, half, half, half))
    out = x.new_zeros(batch, 1, height, width)
    for tap in range(size * size):  # loop over kernel taps (49), not over samples
        dy, dx = divmod(tap, size)
        out += padded[:, tap : tap + 1, dy : dy + height, dx : dx + width]
    return out if bias is None else out.add_(bias.view(1, 1, 1, 1))


class DenseMotionNetwork(InferenceFolding, nn.Module):
    """Predicts W's deformation field, the per-motion softmax mask and the occlusion map.

    ``fold_inference_weights()`` folds ``norm`` into ``compress`` and stores the mask kernel with its depth taps
    stacked into the output channels (see :func:`~frontalize.liveportrait.fusion.depth_stacked_conv3d`).
    """

    folded_compress_weight: torch.Tensor | None
    folded_compress_bias: torch.Tensor | None
    stacked_mask_weight: torch.Tensor | None

    def __init__(self, arch: DenseMotionArch, num_kp: int, feature_channel: int, estimate_occlusion_map: bool) -> None:
        super().__init__()
        self.num_kp = num_kp
        in_features = (num_kp + 1) * (arch.compress + 1)
        self.hourglass = Hourglass(arch.block_expansion, in_features, arch.num_blocks, arch.max_features)
        out_filters = self.hourglass.out_filters
        self.mask = nn.Conv3d(out_filters, num_kp + 1, kernel_size=7, padding=3)
        self.compress = nn.Conv3d(feature_channel, arch.compress, kernel_size=1)
        self.norm = nn.BatchNorm3d(arch.compress)
        self.occlusion = (nn.Conv2d(out_filters * arch.reshape_depth, 1, kernel_size=7, padding=3)
                          if estimate_occlusion_map else None)
        self._init_folding("folded_compress_weight", "folded_compress_bias", "stacked_mask_weight")

    def _derived_weights(self) -> dict[str, torch.Tensor]:
        weight, bias = fold_batch_norm(self.compress.weight, self.compress.bias, self.norm)
        return {"folded_compress_weight": weight, "folded_compress_bias": bias,
                "stacked_mask_weight": depth_stacked_weight(self.mask.weight)}

    def sparse_motions(self, grid: torch.Tensor, kp_driving: torch.Tensor, kp_source: torch.Tensor) -> torch.Tensor:
        """Background (identity) motion followed by ``grid − x_d[k] + x_s[k]`` per keypoint.

        Returns:
            B×(K+1)×D×H×W×3 sampling grids.
        """
        batch = kp_driving.shape[0]
        driving = kp_driving[:, :, None, None, None, :]
        source = kp_source[:, :, None, None, None, :]
        # (grid − x_d) + x_s in the reference's order, so the rounding matches it exactly.
        keypoint_motions = (grid[None, None] - driving) + source
        background = grid[None, None].expand(batch, 1, *grid.shape)
        return torch.cat([background, keypoint_motions], dim=1)

    def forward(self, feature: torch.Tensor, kp_driving: torch.Tensor,
                kp_source: torch.Tensor) -> dict[str, torch.Tensor]:
        """Run the dense motion network.

        Args:
            feature: B×C×D×H×W appearance volume f_s.
            kp_driving: B×K×3 driving keypoints x_d.
            kp_source: B×K×3 source keypoints x_s.

        Returns:
            ``mask`` B×(K+1)×D×H×W (softmax, background first), ``deformation`` B×D×H×W×3 (x, y, z) and, when
            enabled, ``occlusion_map`` B×1×H×W (sigmoid).
        """
        folded = self._folded_tensors()
        if folded is not None:
            compressed = F.relu(F.conv3d(feature, folded[0], folded[1]), inplace=True)
        else:
            compressed = F.relu(self.norm(self.compress(feature)), inplace=True)
        batch, channels, depth, height, width = compressed.shape
        grid = coordinate_grid(depth, height, width, compressed.dtype, compressed.device)
        motions = self.sparse_motions(grid, kp_driving, kp_source)
        num = motions.shape[1]
        # One grid_sample for all K+1 motions: stacking them along the output depth axis avoids repeating the
        # compressed volume K+1 times (the output spatial shape follows the grid's).
        deformed = F.grid_sample(compressed, motions.view(batch, num * depth, height, width, 3),
                                 mode="bilinear", padding_mode="zeros", align_corners=False)
        deformed = deformed.view(batch, channels, num, depth, height, width).transpose(1, 2)
        heatmap = keypoint_gaussians(grid, kp_driving) - keypoint_gaussians(grid, kp_source)
        heatmap = torch.cat([heatmap.new_zeros(batch, 1, depth, height, width), heatmap], dim=1)
        stacked = torch.cat([heatmap.unsqueeze(2), deformed], dim=2).view(batch, -1, depth, height, width)
        prediction = self.hourglass(stacked)
        logits = (self.mask(prediction) if folded is None
                  else depth_stacked_conv3d(prediction, folded[2], self.mask.bias))
        mask = torch.softmax(logits, dim=1)
        # Element-wise product and sum (not einsum), so autocast cannot lower the sampling grid to fp16.
        deformation = (motions * mask.unsqueeze(-1)).sum(dim=1)
        result = {"mask": mask, "deformation": deformation}
        if self.occlusion is not None:
            flat = prediction.reshape(batch, -1, height, width)
            occlusion = single_output_conv2d(flat, self.occlusion.weight, self.occlusion.bias)
            result["occlusion_map"] = torch.sigmoid(occlusion)
        return result


class WarpingNetwork(nn.Module):
    """W: warp the source appearance volume from the source keypoints to the driving keypoints.

    Args:
        arch: hyper-parameters; the defaults are the released model.
    """

    def __init__(self, arch: WarpingArch | None = None) -> None:
        super().__init__()
        arch = arch or WarpingArch()
        self.arch = arch
        self.dense_motion_network = DenseMotionNetwork(arch.dense_motion, arch.num_kp, arch.reshape_channel,
                                                       arch.estimate_occlusion_map)
        self.third = SameBlock2d(arch.max_features, arch.out_channels, leaky=True)
        self.fourth = nn.Conv2d(arch.out_channels, arch.out_channels, kernel_size=1)

    def forward(self, feature_3d: torch.Tensor, kp_driving: torch.Tensor, kp_source: torch.Tensor,
                return_mask: bool = False) -> dict[str, torch.Tensor]:
        """Warp f_s so that x_s moves to x_d. Call as ``W(f_s, kp_driving=x_d, kp_source=x_s)``.

        Args:
            feature_3d: B×32×16×64×64 appearance volume f_s (from F).
            kp_driving: B×21×3 driving keypoints x_d (x right, y down, z into the screen).
            kp_source: B×21×3 source keypoints x_s.
            return_mask: also return the dense-motion softmax under ``mask`` (B×22×16×64×64, background first).

        Returns:
            ``out`` B×256×64×64 warped feature (times the occlusion map), ``occlusion_map`` B×1×64×64 (absent
            when the arch disables it), ``deformation`` B×16×64×64×3 sampling grid (x, y, z).
        """
        dense = self.dense_motion_network(feature_3d, kp_driving, kp_source)
        deformation = dense["deformation"]
        warped = F.grid_sample(feature_3d, deformation, mode="bilinear", padding_mode="zeros", align_corners=False)
        batch, channels, depth, height, width = warped.shape
        out = self.fourth(self.third(warped.reshape(batch, channels * depth, height, width)))
        result = {"deformation": deformation}
        if "occlusion_map" in dense:
            out.mul_(dense["occlusion_map"])
            result["occlusion_map"] = dense["occlusion_map"]
        result["out"] = out
        if return_mask:
            result["mask"] = dense["mask"]
        return result
