"""Stand-ins of the identity-guard tests (importable as ``guard_standins``): a LivePortrait engine without networks
whose renders are real face crops blurred more the further they are rotated, with a readable residual pose."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import cv2
import numpy as np
import torch

SOURCE_YAW, SOURCE_PITCH, GENERATOR_ERROR = 20.0, 8.0, 2.0


class StandInEngine:
    """extract/render/estimate_pose of LivePortraitFrontalizer, without networks.

    A render of target α is the source crop blurred with σ = 0.5 + 4α (+1.5 for a neutralized expression); its
    top-left 8×8 pixels encode α, from which :meth:`estimate_pose` returns yaw = 20(1 − α) + 2, pitch = 8(1 − α).
    """

    device = torch.device("cpu")

    def __init__(self) -> None:
        self.extract_calls = 0
        self.render_calls: list[dict[str, Any]] = []

    def extract(self, x: torch.Tensor) -> Any:
        self.extract_calls += 1
        batch = x.shape[0]
        motion = SimpleNamespace(pitch=torch.full((batch,), SOURCE_PITCH), yaw=torch.full((batch,), SOURCE_YAW),
                                 roll=torch.zeros(batch))
        return SimpleNamespace(motion=motion, x=x)

    def render(self, state: Any, targets: list, *, roll_offset: Any = None, chunk_size: int | None = None
               ) -> dict[str, torch.Tensor]:
        self.render_calls.append({"targets": list(targets), "chunk_size": chunk_size,
                                  "rows": len(state.x) * len(targets)})
        sources = (state.x.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
        rows = []
        for source in sources:
            big = cv2.resize(source, (512, 512), interpolation=cv2.INTER_CUBIC)
            row = []
            for target in targets:
                sigma = 0.5 + 4 * target.alpha + (1.5 if target.expression == "neutralize" else 0.0)
                image = cv2.GaussianBlur(big, (0, 0), sigma)
                image[:8, :8] = round(200 * target.alpha)
                row.append(image)
            rows.append(np.stack(row))
        return {"image": torch.from_numpy(np.stack(rows)).permute(0, 1, 4, 2, 3).float() / 255}

    def frontalize(self, x: torch.Tensor, target: Any = None, *, roll_offset: Any = None) -> dict[str, torch.Tensor]:
        """The unguarded backend's call: one target (default frontal), source pose."""
        from frontalize.liveportrait.frontalizer import PoseTarget

        state = self.extract(x)
        image = self.render(state, [target or PoseTarget()], roll_offset=roll_offset)["image"][:, 0]
        return {"image": image, "pitch": state.motion.pitch, "yaw": state.motion.yaw, "roll": state.motion.roll}

    def estimate_pose(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        alpha = torch.round(x[:, 0, 1, 1] * 255 / 200 * 20) / 20
        return SOURCE_PITCH * (1 - alpha), SOURCE_YAW * (1 - alpha) + GENERATOR_ERROR, torch.zeros_like(alpha)
