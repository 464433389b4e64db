"""Post-processing stage protocol, per-image context and input checks shared by every stage.

Boundary convention (the same for every stage): an image is an H×W×3 ``uint8`` RGB numpy array. The only
exception is the background stage with ``alpha: true``, which returns H×W×4 ``uint8`` RGBA (alpha = person
mask); the stages that can follow it (colour, sharpen, margins) accept RGBA and pass the alpha channel through,
GFPGAN and background itself refuse it. A stage that cannot do its work raises
:class:`~frontalize.errors.StageError`; it never returns its input unchanged as a silent fallback.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from frontalize.errors import StageError

__all__ = ["Stage", "StageContext", "check_face_box", "check_image"]


@dataclass(frozen=True)
class StageContext:
    """What a stage may know about the image besides its pixels.

    Attributes:
        input_id: identifier of the input (relative path), used in error messages.
        source_rgb: the source face crop, H'×W'×3 uint8 RGB, in the same framing as the processed image
            (possibly another resolution); used for colour statistics. None when not available.
        face_box: ``(x1, y1, x2, y2)`` float array of the face in the processed image's pixel coordinates;
            used by margins and by the colour stage's face region. None when not available.
    """

    input_id: str
    source_rgb: np.ndarray | None = None
    face_box: np.ndarray | None = None


@runtime_checkable
class Stage(Protocol):
    """A post-processing step: image in, image out.

    Attributes:
        name: stage name as used in ``stages.order``.
        required_weights: weights-registry keys the stage loads (verified before the run).
    """

    name: str
    required_weights: tuple[str, ...]

    def __call__(self, image: np.ndarray, context: StageContext) -> np.ndarray:
        """Process one image.

        Args:
            image: H×W×3 uint8 RGB (H×W×4 RGBA where the stage supports it).
            context: per-image context.

        Returns:
            H×W×3 uint8 RGB (background with alpha: H×W×4 RGBA; margins: output_size²).

        Raises:
            StageError: the stage failed on this image.
        """
        ...


def check_image(stage: str, image: object, context: StageContext, *, channels: tuple[int, ...] = (3,)) -> np.ndarray:
    """Check that ``image`` is a non-empty H×W×C uint8 array with an accepted channel count.

    Args:
        stage: stage name for the error message.
        image: the value handed to the stage.
        context: per-image context (for the input id).
        channels: accepted values of C.

    Returns:
        The same array, typed.

    Raises:
        StageError: wrong type, dtype, rank, channel count or an empty image.
    """
    if not isinstance(image, np.ndarray):
        raise StageError(stage, context.input_id, f"expected a numpy image, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise StageError(stage, context.input_id, f"expected uint8 pixels, got {image.dtype}")
    allowed = " or ".join(f"H×W×{c}" for c in channels)
    if image.ndim != 3 or image.shape[2] not in channels:
        raise StageError(stage, context.input_id, f"expected an {allowed} image, got shape {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise StageError(stage, context.input_id, f"empty image of shape {image.shape}")
    return image


def check_face_box(stage: str, context: StageContext) -> np.ndarray:
    """Return ``context.face_box`` as a float64 ``(4,)`` array with x2 > x1 and y2 > y1.

    Raises:
        StageError: the box is missing or malformed.
    """
    if context.face_box is None:
        raise StageError(stage, context.input_id, "needs the face box, but none was given")
    box = np.asarray(context.face_box, dtype=np.float64).reshape(-1)
    if box.shape != (4,) or not np.all(np.isfinite(box)) or box[2] <= box[0] or box[3] <= box[1]:
        raise StageError(stage, context.input_id, f"invalid face box {context.face_box!r} (expected x1<x2, y1<y2)")
    return box
