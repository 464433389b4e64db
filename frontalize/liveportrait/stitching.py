"""Stitching (S) and retargeting (R_lip, R_eye) MLPs of LivePortrait.

All three are the same module: ``mlp`` = Linear, ReLU, …, Linear (a ReLU after every hidden layer, none at the
end), so the linear layers sit at even indices (``mlp.0``, ``mlp.2``, …) as in the official checkpoint. The
official file stores them as sub-dicts ``retarget_shoulder`` (S), ``retarget_mouth`` (R_lip) and ``retarget_eye``
(R_eye) whose keys carry a DDP ``module.`` prefix; stripping it is the loader's job, this module takes the bare
``mlp.*`` keys.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

from frontalize.liveportrait.arch import MlpArch

__all__ = ["StitchingRetargetingNetwork"]


class StitchingRetargetingNetwork(nn.Module):
    """An S / R_lip / R_eye MLP.

    Args:
        arch: layer widths; the defaults are the stitching network S (126 → 128 → 128 → 64 → 65).
    """

    def __init__(self, arch: MlpArch | None = None) -> None:
        super().__init__()
        arch = arch or MlpArch()
        self.arch = arch
        widths = (arch.in_features, *arch.hidden_features)
        layers: list[nn.Module] = []
        for c_in, c_out in itertools.pairwise(widths):
            layers += [nn.Linear(c_in, c_out), nn.ReLU(inplace=True)]
        layers.append(nn.Linear(widths[-1], arch.out_features))
        self.mlp = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the MLP.

        Args:
            x: B×in_features; S: concat(x_s, x_d) flattened (126); R_lip: concat(x_s, c_lip_src, c_lip_target)
                (65); R_eye: concat(x_s, c_eye_left, c_eye_right, c_eye_target) (66).

        Returns:
            B×out_features; S: 63 keypoint deltas then (Δt_x, Δt_y); R_lip / R_eye: 63 keypoint deltas.
        """
        return self.mlp(x)
