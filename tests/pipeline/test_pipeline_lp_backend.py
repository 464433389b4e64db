"""The LivePortrait backend's residual-pose input: computed on the device, equal to the host resize path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from frontalize.liveportrait.crop import images_to_tensor, network_input
from frontalize.liveportrait.frontalizer import PoseTarget
from frontalize.pipeline.backends.base import FaceInput
from frontalize.pipeline.backends.liveportrait import LivePortraitBackend


class _Engine:
    """Stand-in engine: returns fixed output images and records what M was given for the residual pose."""

    device = torch.device("cpu")

    def __init__(self, side: int) -> None:
        self.side = side
        self.pose_inputs: list[torch.Tensor] = []

    def frontalize(self, batch, target, roll_offset=None):
        gen = torch.Generator().manual_seed(batch.shape[0])
        image = torch.rand(batch.shape[0], 3, self.side, self.side, generator=gen)
        zeros = torch.zeros(batch.shape[0])
        return {"image": image, "pitch": zeros, "yaw": zeros + 10, "roll": zeros}

    def estimate_pose(self, x):
        self.pose_inputs.append(x)
        zeros = torch.zeros(x.shape[0])
        return zeros, zeros + 1, zeros


@pytest.mark.parametrize("side", [512, 384])
def test_residual_pose_input_equals_host_resize_of_the_saved_images(side):
    engine = _Engine(side)
    backend = LivePortraitBackend(engine, PoseTarget())  # type: ignore[arg-type]
    faces = [FaceInput(crop=np.full((512, 512, 3), 100 + i, dtype=np.uint8)) for i in range(3)]
    results = backend.frontalize(faces)
    saved = np.stack([r.image for r in results])
    assert saved.shape == (3, side, side, 3) and saved.dtype == np.uint8
    expected = images_to_tensor([network_input(image) for image in saved])
    assert torch.equal(engine.pose_inputs[0], expected)
    assert results[0].output_pose is not None and results[0].output_pose["yaw"] == pytest.approx(1.0)
