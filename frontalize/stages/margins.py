"""Margins stage: trim, pad and scale an image so the face box lands at the reference framing.

The reference framing (defaults of :class:`~frontalize.config.stages.MarginsConfig`) is LivePortrait's 512 crop:
the face's longer side is ``1/2.3 ≈ 0.435`` of the image side and its centre sits 12.5 % of the side below the
image centre. One similarity transform (uniform scale + translation, no rotation) maps the input onto the
square output; parts of the output outside the input are padded (constant colour, replicated edge or mirror).
"""

from __future__ import annotations

import logging

import cv2
import numpy as np

from frontalize.config.stages import MarginsConfig
from frontalize.errors import StageError
from frontalize.stages.base import StageContext, check_face_box, check_image

__all__ = ["MarginsStage", "apply_margins", "margins_transform", "transform_box"]

logger = logging.getLogger(__name__)

_BORDERS = {"constant": cv2.BORDER_CONSTANT, "replicate": cv2.BORDER_REPLICATE, "reflect": cv2.BORDER_REFLECT_101}


def margins_transform(face_box: np.ndarray, output_size: int, face_fraction: float, center_x: float,
                      center_y: float) -> np.ndarray:
    """Similarity (scale + translation) taking the face box to the reference framing.

    With box side ``b = max(x2 − x1, y2 − y1)`` and centre ``(cx, cy)``: ``s = face_fraction·output_size / b``
    and ``(x, y) ↦ (s·x + tx, s·y + ty)`` with ``tx = center_x·output_size − s·cx`` and likewise for y.

    Args:
        face_box: (4,) float ``x1, y1, x2, y2`` in input pixels (x2 > x1, y2 > y1).
        output_size: side of the square output in pixels.
        face_fraction: target longer box side as a fraction of ``output_size``.
        center_x, center_y: target box centre as fractions of the output width/height.

    Returns:
        2×3 float64 affine matrix (input pixel coordinates → output pixel coordinates), as used by
        ``cv2.warpAffine``.
    """
    x1, y1, x2, y2 = (float(v) for v in face_box)
    scale = face_fraction * output_size / max(x2 - x1, y2 - y1)
    tx = center_x * output_size - scale * (x1 + x2) / 2.0
    ty = center_y * output_size - scale * (y1 + y2) / 2.0
    return np.array([[scale, 0.0, tx], [0.0, scale, ty]], dtype=np.float64)


def transform_box(face_box: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Map a box (x1, y1, x2, y2) through a 2×3 scale+translation matrix; returns a (4,) float64 box."""
    box = np.asarray(face_box, dtype=np.float64).reshape(2, 2)
    mapped = box @ matrix[:, :2].T + matrix[:, 2]
    return mapped.reshape(4)


def apply_margins(image: np.ndarray, matrix: np.ndarray, output_size: int, pad: str,
                  fill: tuple[int, int, int]) -> np.ndarray:
    """Warp ``image`` with ``matrix`` onto an ``output_size``² canvas.

    Args:
        image: H×W×C uint8, C = 3 (RGB) or 4 (RGBA).
        matrix: 2×3 input→output affine matrix (from :func:`margins_transform`).
        output_size: side of the square output.
        pad: ``constant`` (``fill``; alpha 0 for RGBA), ``replicate`` or ``reflect``.
        fill: RGB padding colour for ``constant``.

    Returns:
        output_size×output_size×C uint8.
    """
    border_value = tuple(float(c) for c in fill) + ((0.0,) if image.shape[2] == 4 else ())
    source = image
    if matrix[0, 0] < 1.0:
        source, matrix = _area_prescale(image, matrix)
    return cv2.warpAffine(source, matrix, (output_size, output_size), flags=cv2.INTER_LINEAR,
                          borderMode=_BORDERS[pad], borderValue=border_value)


def _area_prescale(image: np.ndarray, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Shrink ``image`` by the matrix scale with area averaging and adapt the matrix to the smaller image.

    Bilinear warping alone aliases when shrinking a lot (a 4000 px photo to 512 px); cv2.resize with
    INTER_AREA averages instead. cv2.resize maps pixel centres as ``x = (x' + 0.5)/f − 0.5`` with the actual
    factor ``f`` = new size / old size, so the matrix becomes ``s/f·x' + s·(0.5/f − 0.5) + t``.
    """
    scale = matrix[0, 0]
    height, width = image.shape[:2]
    new_width, new_height = max(1, round(width * scale)), max(1, round(height * scale))
    resized = cv2.resize(image, (new_width, new_height), interpolation=cv2.INTER_AREA)
    fx, fy = new_width / width, new_height / height
    adapted = np.array([
        [scale / fx, 0.0, scale * (0.5 / fx - 0.5) + matrix[0, 2]],
        [0.0, scale / fy, scale * (0.5 / fy - 0.5) + matrix[1, 2]],
    ])
    return resized, adapted


class MarginsStage:
    """Re-frames the image around ``context.face_box`` (required); RGBA input stays RGBA.

    Args:
        config: margins parameters (output size, face fraction, centre position, padding).
    """

    name = "margins"
    required_weights: tuple[str, ...] = ()

    def __init__(self, config: MarginsConfig) -> None:
        self.config = config

    def __call__(self, image: np.ndarray, context: StageContext) -> np.ndarray:
        """Re-frame H×W×3 RGB (or H×W×4 RGBA) uint8; returns output_size×output_size×C."""
        image = check_image(self.name, image, context, channels=(3, 4))
        box = check_face_box(self.name, context)
        cfg = self.config
        matrix = margins_transform(box, cfg.output_size, cfg.face_fraction, cfg.center_x, cfg.center_y)
        try:
            return apply_margins(image, matrix, cfg.output_size, cfg.pad, cfg.fill)
        except cv2.error as error:
            raise StageError(self.name, context.input_id, f"warp failed: {error}") from error
