"""Motion extractor M of LivePortrait: a ConvNeXt-V2 backbone with seven linear heads.

M predicts, from the cropped source image, the canonical keypoints x_c (``kp``), the head pose as 66-bin logits
per angle (``pitch``, ``yaw``, ``roll``), the translation ``t``, the expression deformation δ (``exp``) and the
scale ``s``. All outputs are the raw head outputs (no activation); converting logits to degrees and reshaping
keypoints to B×K×3 is pure geometry and lives elsewhere. The backbone sits under the attribute ``detector`` as in
the official checkpoint (all keys start with ``detector.``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from frontalize.liveportrait.arch import MotionArch

__all__ = ["ConvNeXtV2", "MotionExtractor"]

_LN_EPS = 1e-6
_GRN_EPS = 1e-6


class ChannelsFirstLayerNorm(nn.Module):
    """LayerNorm over the channel axis of a B×C×H×W tensor (biased variance, eps 1e-6, per-channel affine)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """B×C×H×W → B×C×H×W."""
        # F.layer_norm normalises trailing axes, so move C last; permute is a view, no copy for channels_last.
        out = F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), self.weight, self.bias, _LN_EPS)
        return out.permute(0, 3, 1, 2)


class GlobalResponseNorm(nn.Module):
    """ConvNeXt-V2 GRN on a channels-last tensor: γ·(x·n) + β + x with n = ‖x‖_HW / (mean_C ‖x‖_HW + 1e-6)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1, 1, 1, channels))
        self.beta = nn.Parameter(torch.zeros(1, 1, 1, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """B×H×W×C → B×H×W×C."""
        norm = torch.linalg.vector_norm(x, ord=2, dim=(1, 2), keepdim=True)
        scale = norm / (norm.mean(dim=-1, keepdim=True) + _GRN_EPS)
        return torch.addcmul(self.beta + x, self.gamma, x * scale)


class ConvNeXtBlock(nn.Module):
    """ConvNeXt-V2 block: depthwise 7×7 → LayerNorm → Linear 4× → GELU → GRN → Linear → residual (no drop-path)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=_LN_EPS)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.grn = GlobalResponseNorm(4 * dim)
        self.pwconv2 = nn.Linear(4 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """B×C×H×W → B×C×H×W."""
        out = self.dwconv(x).permute(0, 2, 3, 1)
        out = self.pwconv2(self.grn(F.gelu(self.pwconv1(self.norm(out)))))
        return x + out.permute(0, 3, 1, 2)


class ConvNeXtV2(nn.Module):
    """ConvNeXt-V2 backbone plus M's heads (the official ``detector``).

    Args:
        arch: hyper-parameters; the defaults are convnextv2_tiny with 21 keypoints and 66 pose bins.
    """

    def __init__(self, arch: MotionArch) -> None:
        super().__init__()
        dims = arch.dims
        stem = nn.Sequential(nn.Conv2d(arch.image_channel, dims[0], kernel_size=4, stride=4),
                             ChannelsFirstLayerNorm(dims[0]))
        self.downsample_layers = nn.ModuleList([stem])
        for i in range(len(dims) - 1):
            self.downsample_layers.append(nn.Sequential(ChannelsFirstLayerNorm(dims[i]),
                                                        nn.Conv2d(dims[i], dims[i + 1], kernel_size=2, stride=2)))
        self.stages = nn.ModuleList(
            nn.Sequential(*(ConvNeXtBlock(dim) for _ in range(depth))) for dim, depth in zip(dims, arch.depths)
        )
        self.norm = nn.LayerNorm(dims[-1], eps=_LN_EPS)
        num_kp, bins, width = arch.num_kp, arch.num_bins, dims[-1]
        self.fc_kp = nn.Linear(width, 3 * num_kp)
        self.fc_scale = nn.Linear(width, 1)
        self.fc_pitch = nn.Linear(width, bins)
        self.fc_yaw = nn.Linear(width, bins)
        self.fc_roll = nn.Linear(width, bins)
        self.fc_t = nn.Linear(width, 3)
        self.fc_exp = nn.Linear(width, 3 * num_kp)

    def forward_features(self, image: torch.Tensor) -> torch.Tensor:
        """B×3×H×W → B×dims[-1] pooled features (after the final LayerNorm)."""
        out = image
        for downsample, stage in zip(self.downsample_layers, self.stages):
            out = stage(downsample(out))
        return self.norm(out.mean(dim=(-2, -1)))

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """Raw head outputs, see :meth:`MotionExtractor.forward`."""
        features = self.forward_features(image)
        return {
            "pitch": self.fc_pitch(features),
            "yaw": self.fc_yaw(features),
            "roll": self.fc_roll(features),
            "t": self.fc_t(features),
            "exp": self.fc_exp(features),
            "scale": self.fc_scale(features),
            "kp": self.fc_kp(features),
        }


class MotionExtractor(nn.Module):
    """M: source image → canonical keypoints, pose logits, translation, expression and scale.

    Args:
        arch: hyper-parameters; the defaults are the released model.
    """

    def __init__(self, arch: MotionArch | None = None) -> None:
        super().__init__()
        self.arch = arch or MotionArch()
        self.detector = ConvNeXtV2(self.arch)

    def forward_features(self, image: torch.Tensor) -> torch.Tensor:
        """Pooled backbone features.

        Args:
            image: B×3×H×W RGB in [0, 1].

        Returns:
            B×768 features after the final LayerNorm (the inputs of the seven heads).
        """
        return self.detector.forward_features(image)

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """Predict the motion parameters of a batch of 256×256 crops.

        Args:
            image: B×3×256×256 RGB in [0, 1], no mean/std normalisation.

        Returns:
            ``pitch``, ``yaw``, ``roll``: B×66 logits (degrees = softmax-expectation·3 − 97.5);
            ``t``: B×3; ``exp``: B×63 (δ, reshape to B×21×3); ``scale``: B×1; ``kp``: B×63 (x_c, reshape to B×21×3).
        """
        return self.detector(image)
