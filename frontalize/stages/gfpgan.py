"""GFPGAN stage: blind face restoration (GFP-GAN, Wang et al. 2021) of the aligned face crop.

Only the network is used — never ``GFPGANer``, whose face helper downloads detector/parsing weights into
``./gfpgan/weights`` of the current directory. The pipeline hands this stage the aligned 512×512 crop before
paste-back; other sizes are resized to 512 for the network and the result back to the input size. The network
sees RGB in [-1, 1] (``x/127.5 − 1``), its output is clamped to [-1, 1] and mapped back to uint8, then blended
with the input: ``out = weight·restored + (1 − weight)·input``. The network's stored noise buffers are used
(``randomize_noise=False``), so the same input always gives the same output.
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import torch

from frontalize.config.stages import GfpganConfig
from frontalize.errors import ConfigError, DeviceError, StageError, WeightsMissingError
from frontalize.stages.base import StageContext, check_image
from frontalize.stages.gfpgan_compat import load_gfpgan_network
from frontalize.weights import download_command, get_weight, weight_path

__all__ = ["GFPGAN_SIZE", "GfpganStage", "blend", "from_network_output", "gfpgan_weight_key", "to_network_input"]

logger = logging.getLogger(__name__)

GFPGAN_SIZE = 512
"""Side of the square face crop the released GFPGAN networks take and return."""


def gfpgan_weight_key(version: str) -> str:
    """Weights-registry key of a GFPGAN release (``"1.4"`` → ``"gfpgan_v1.4"``)."""
    return f"gfpgan_v{version}"


def blend(restored: np.ndarray, original: np.ndarray, weight: float) -> np.ndarray:
    """``round(weight·restored + (1 − weight)·original)`` as uint8; weight 0 gives ``original`` exactly.

    Args:
        restored, original: H×W×3 uint8 images of the same shape.
        weight: 0..1.
    """
    mixed = weight * restored.astype(np.float64) + (1.0 - weight) * original.astype(np.float64)
    return np.clip(np.rint(mixed), 0, 255).astype(np.uint8)


def to_network_input(image: np.ndarray, device: torch.device) -> torch.Tensor:
    """H×W×3 uint8 RGB → 1×3×H×W float32 tensor in [-1, 1] on ``device``."""
    tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).unsqueeze(0).float()
    return (tensor / 127.5 - 1.0).to(device)


def from_network_output(tensor: torch.Tensor) -> np.ndarray:
    """1×3×H×W tensor in [-1, 1] (clamped) → H×W×3 uint8 RGB, rounded to nearest."""
    unit = (tensor.detach().float().clamp(-1.0, 1.0) + 1.0) / 2.0
    return (unit[0].permute(1, 2, 0).cpu().numpy() * 255.0).round().astype(np.uint8)


def _resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    if image.shape[:2] == (height, width):
        return image
    shrinking = height * width < image.shape[0] * image.shape[1]
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC)


def _torch_device(device: str) -> torch.device:
    try:
        resolved = torch.device(device)
    except (RuntimeError, ValueError) as error:
        raise DeviceError(f"gfpgan: invalid device {device!r} ({error})") from error
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"gfpgan: device {device!r} requested but CUDA is not available")
    return resolved


class GfpganStage:
    """Restore an aligned face crop with GFPGAN v1.3/v1.4 and blend it with the input.

    Args:
        config: version and blend weight.
        weights_root: weights root; the checkpoint is ``<root>/gfpgan/GFPGANv<version>.pth``.
        device: torch device string (``cpu``, ``cuda``, ``cuda:N``, ``mps``).

    Raises:
        WeightsMissingError: the checkpoint is missing, corrupt or does not match the network.
        ConfigError: gfpgan/basicsr not installed, or a weight outside [0, 1].
        DeviceError: the device is invalid or unavailable.
    """

    name = "gfpgan"

    def __init__(self, config: GfpganConfig, weights_root: Path, device: str = "cpu") -> None:
        if not 0.0 <= config.weight <= 1.0:
            raise ConfigError(f"stages.gfpgan.weight: expected a value in [0, 1], got {config.weight}")
        self.config = config
        key = gfpgan_weight_key(config.version)
        self.required_weights: tuple[str, ...] = (key,)
        self.device = _torch_device(device)
        path = weight_path(key, weights_root)
        fix = download_command(weights_root, [get_weight(key).group])
        if not path.is_file():
            raise WeightsMissingError(f"GFPGAN v{config.version} checkpoint not found at {path}; fix: {fix}")
        network = load_gfpgan_network(path, "cpu", fix=fix)
        try:
            self.network = network.to(self.device)
        except RuntimeError as error:
            raise DeviceError(f"gfpgan: cannot move the network to {device!r}: {error}") from error
        logger.info("gfpgan: v%s loaded from %s on %s", config.version, path, self.device)

    def restore(self, face: np.ndarray) -> np.ndarray:
        """Run the network on a 512×512×3 uint8 RGB crop → 512×512×3 uint8 RGB (no blending)."""
        with torch.inference_mode():
            output, _ = self.network(to_network_input(face, self.device), return_rgb=False, randomize_noise=False)
        return from_network_output(output)

    def __call__(self, image: np.ndarray, context: StageContext) -> np.ndarray:
        """Restore H×W×3 uint8 RGB (ideally 512×512) → H×W×3 uint8 RGB."""
        image = check_image(self.name, image, context)
        height, width = image.shape[:2]
        try:
            restored = self.restore(_resize(image, GFPGAN_SIZE, GFPGAN_SIZE))
        except RuntimeError as error:  # e.g. CUDA out of memory; never hand back the unrestored face
            raise StageError(self.name, context.input_id, f"network failed: {error}") from error
        return blend(_resize(restored, height, width), image, self.config.weight)
