"""Sharpen stage: unsharp mask ``out = img + amount·(img − G_σ * img)`` with a per-value threshold."""

from __future__ import annotations

import logging

import numpy as np
from scipy import ndimage

from frontalize.config.stages import SharpenConfig
from frontalize.errors import ConfigError
from frontalize.stages.base import StageContext, check_image

__all__ = ["SharpenStage", "unsharp_mask"]

logger = logging.getLogger(__name__)

GAUSSIAN_TRUNCATE = 4.0
"""The Gaussian kernel is cut at ±4σ (scipy's default), i.e. it has 2·ceil(4σ)+1 taps."""


def unsharp_mask(image: np.ndarray, amount: float, radius: float, threshold: int = 0) -> np.ndarray:
    """Unsharp-mask an image.

    ``detail = img − G_σ * img`` (separable Gaussian over the two spatial axes, σ = ``radius``, kernel cut at
    ±4σ, border pixels reflected); ``out = clip(round(img + amount·detail), 0, 255)`` wherever
    ``|detail| ≥ threshold``, and ``out = img`` elsewhere (threshold semantics of GIMP/PIL: small differences,
    i.e. noise and flat regions, are left alone). Each channel is treated independently.

    Args:
        image: H×W×C uint8 (C = 1, 3 or 4 — callers pass only the colour channels).
        amount: sharpening strength, ≥ 0 (0 returns the input).
        radius: Gaussian sigma in pixels, > 0.
        threshold: minimum |detail| (in 0..255 units) for a value to be changed.

    Returns:
        H×W×C uint8, same shape as ``image``.

    Raises:
        ValueError: negative amount or threshold, or non-positive radius.
    """
    if amount < 0 or radius <= 0 or threshold < 0:
        raise ValueError(f"need amount >= 0, radius > 0, threshold >= 0; got {amount}, {radius}, {threshold}")
    pixels = image.astype(np.float64)
    sigma = (radius, radius) + (0.0,) * (image.ndim - 2)
    blurred = ndimage.gaussian_filter(pixels, sigma=sigma, mode="reflect", truncate=GAUSSIAN_TRUNCATE)
    detail = pixels - blurred
    sharpened = pixels + amount * detail
    sharpened = np.where(np.abs(detail) >= threshold, sharpened, pixels)
    return np.clip(np.rint(sharpened), 0, 255).astype(np.uint8)


class SharpenStage:
    """Unsharp-mask stage; RGBA input keeps its alpha channel untouched.

    Args:
        config: sharpening parameters.
    """

    name = "sharpen"
    required_weights: tuple[str, ...] = ()

    def __init__(self, config: SharpenConfig) -> None:
        if config.amount < 0 or config.radius <= 0 or not 0 <= config.threshold <= 255:
            raise ConfigError(f"stages.sharpen: need amount >= 0, radius > 0, threshold in [0, 255]; got {config}")
        self.config = config

    def __call__(self, image: np.ndarray, context: StageContext) -> np.ndarray:
        """Sharpen H×W×3 RGB (or H×W×4 RGBA) uint8; returns the same shape."""
        image = check_image(self.name, image, context, channels=(3, 4))
        cfg = self.config
        colour = unsharp_mask(image[..., :3], cfg.amount, cfg.radius, cfg.threshold)
        if image.shape[2] == 4:
            return np.dstack([colour, image[..., 3]])
        return colour
