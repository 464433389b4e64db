"""Colour stage: move the output's colour statistics towards the source crop's (Reinhard-style transfer in Lab).

Frontalization and restoration can shift skin tone and contrast. The transfer standardises every Lab channel
of the output with its own mean/std and rescales it to the source's mean/std (Reinhard et al. 2001, "Color
Transfer between Images"), measured inside the face box when one is given so that backgrounds do not dominate.
"""

from __future__ import annotations

import logging

import cv2
import numpy as np

from frontalize.config.stages import ColourConfig
from frontalize.errors import ConfigError, StageError
from frontalize.stages.base import StageContext, check_face_box, check_image

__all__ = [
    "ColourStage",
    "box_mask",
    "channel_statistics",
    "match_colour_statistics",
    "transfer_statistics",
]

logger = logging.getLogger(__name__)

MIN_STD = 1e-3
"""Channels flatter than this (Lab units) only get their mean shifted: rescaling a constant is undefined."""


def box_mask(height: int, width: int, box: np.ndarray) -> np.ndarray:
    """Boolean H×W mask of the pixels inside ``box`` (x1, y1, x2, y2), clipped to the image, ≥ 1 pixel.

    Pixel (row r, column c) is inside when ``x1 ≤ c < x2`` and ``y1 ≤ r < y2`` after rounding the box outwards.
    """
    x1 = int(np.clip(np.floor(box[0]), 0, width - 1))
    y1 = int(np.clip(np.floor(box[1]), 0, height - 1))
    x2 = int(np.clip(np.ceil(box[2]), x1 + 1, width))
    y2 = int(np.clip(np.ceil(box[3]), y1 + 1, height))
    mask = np.zeros((height, width), dtype=bool)
    mask[y1:y2, x1:x2] = True
    return mask


def channel_statistics(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and (population) standard deviation.

    Args:
        values: N×C float array (N ≥ 1 samples).

    Returns:
        ``(mean, std)``, each of shape (C,).
    """
    return values.mean(axis=0), values.std(axis=0)


def transfer_statistics(values: np.ndarray, mean: np.ndarray, std: np.ndarray, reference_mean: np.ndarray,
                        reference_std: np.ndarray, strength: float) -> np.ndarray:
    """Affine per-channel map taking (mean, std) towards (reference_mean, reference_std).

    ``full = (v − mean)·(ref_std / std) + ref_mean`` and ``out = v + strength·(full − v)``; so with strength s
    the statistics become ``mean + s·(ref_mean − mean)`` and ``std·(1 − s) + s·ref_std``. Channels with
    ``std < MIN_STD`` keep scale 1 (mean shift only).

    Args:
        values: N×C (or any …×C) float array.
        mean, std: statistics of ``values`` to map from, shape (C,).
        reference_mean, reference_std: statistics to map to, shape (C,).
        strength: 0 = unchanged, 1 = full transfer.

    Returns:
        Float array of the same shape as ``values``.
    """
    scale = np.where(std >= MIN_STD, reference_std / np.maximum(std, MIN_STD), 1.0)
    full = (values - mean) * scale + reference_mean
    return values + strength * (full - values)


def _rgb_to_lab(image: np.ndarray) -> np.ndarray:
    # OpenCV's float conversion: L in [0, 100], a/b roughly in [-128, 127] (D65), exact inverse below.
    return cv2.cvtColor(image.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)


def _lab_to_rgb(lab: np.ndarray) -> np.ndarray:
    rgb = cv2.cvtColor(lab.astype(np.float32), cv2.COLOR_Lab2RGB)
    return np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)


def match_colour_statistics(image: np.ndarray, reference: np.ndarray, strength: float,
                            image_mask: np.ndarray | None = None,
                            reference_mask: np.ndarray | None = None) -> np.ndarray:
    """Match the per-channel Lab mean/std of ``image`` to those of ``reference``.

    Statistics are measured inside the masks (whole images when None); the map is applied to every pixel.

    Args:
        image: H×W×3 uint8 RGB to correct.
        reference: H'×W'×3 uint8 RGB whose statistics are the target.
        strength: 0..1.
        image_mask: optional H×W bool mask of ``image`` pixels used for its statistics (≥ 1 True).
        reference_mask: optional H'×W' bool mask of ``reference`` pixels (≥ 1 True).

    Returns:
        H×W×3 uint8 RGB (a copy of ``image`` for strength 0: the Lab round trip alone would move a few values
        by 1).
    """
    if strength == 0.0:
        return image.copy()
    lab = _rgb_to_lab(image)
    reference_lab = _rgb_to_lab(reference)
    samples = lab[image_mask] if image_mask is not None else lab.reshape(-1, 3)
    reference_samples = reference_lab[reference_mask] if reference_mask is not None else reference_lab.reshape(-1, 3)
    mean, std = channel_statistics(samples.astype(np.float64))
    reference_mean, reference_std = channel_statistics(reference_samples.astype(np.float64))
    corrected = transfer_statistics(lab.astype(np.float64), mean, std, reference_mean, reference_std, strength)
    return _lab_to_rgb(corrected)


class ColourStage:
    """Colour normalisation towards ``context.source_rgb``; RGBA input keeps its alpha channel.

    With ``region: face`` and a face box in the context, statistics come from the face box of the image and
    the same box scaled to the source crop's size (same framing); otherwise from the whole images.

    Args:
        config: colour parameters.
    """

    name = "colour"
    required_weights: tuple[str, ...] = ()

    def __init__(self, config: ColourConfig) -> None:
        if not 0.0 <= config.strength <= 1.0:
            raise ConfigError(f"stages.colour.strength: expected a value in [0, 1], got {config.strength}")
        self.config = config

    def _masks(self, image: np.ndarray, reference: np.ndarray,
               context: StageContext) -> tuple[np.ndarray | None, np.ndarray | None]:
        if self.config.region == "full" or context.face_box is None:
            if self.config.region == "face":
                logger.debug("%s: no face box, colour statistics from the whole image", context.input_id)
            return None, None
        box = check_face_box(self.name, context)
        scale = np.array([reference.shape[1] / image.shape[1], reference.shape[0] / image.shape[0]] * 2)
        return (box_mask(image.shape[0], image.shape[1], box),
                box_mask(reference.shape[0], reference.shape[1], box * scale))

    def __call__(self, image: np.ndarray, context: StageContext) -> np.ndarray:
        """Correct H×W×3 RGB (or H×W×4 RGBA) uint8; returns the same shape."""
        image = check_image(self.name, image, context, channels=(3, 4))
        if context.source_rgb is None:
            raise StageError(self.name, context.input_id, "needs the source crop (context.source_rgb), none given")
        reference = check_image(self.name, context.source_rgb, context)
        colour = image[..., :3]
        image_mask, reference_mask = self._masks(colour, reference, context)
        corrected = match_colour_statistics(colour, reference, self.config.strength, image_mask, reference_mask)
        if image.shape[2] == 4:
            return np.dstack([corrected, image[..., 3]])
        return corrected
