"""Background stage: person segmentation with a rembg model (U²-Net family / IS-Net), then fill or alpha.

rembg's sessions look for ``$U2NET_HOME/<model>.onnx`` and download the file when it is absent. The stage
checks that the registry file exists first (:class:`~frontalize.errors.WeightsMissingError` otherwise) and
points ``U2NET_HOME`` at the registry's rembg folder only while the session is created, so rembg finds the
file and never downloads. Only the segmentation comes from rembg; compositing is done here so the output
stays an RGB (or RGBA) numpy array with exact, testable arithmetic.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from frontalize.config.stages import BackgroundConfig
from frontalize.devices import onnx_providers
from frontalize.errors import ConfigError, StageError, WeightsMissingError
from frontalize.stages.base import StageContext, check_image
from frontalize.weights import download_command, get_weight, rembg_home, weight_path

__all__ = ["BackgroundStage", "attach_alpha", "background_weight_key", "composite_on_fill"]

logger = logging.getLogger(__name__)

_INSTALL_HINT = "the background stage needs rembg: pip install 'rembg==2.0.86'"


def background_weight_key(model: str) -> str:
    """Weights-registry key of a rembg model name (``isnet-general-use`` → ``rembg_isnet_general_use``)."""
    return "rembg_" + model.replace("-", "_")


def composite_on_fill(image: np.ndarray, alpha: np.ndarray, fill: tuple[int, int, int]) -> np.ndarray:
    """Alpha-composite ``image`` over a constant colour: ``out = a·image + (1 − a)·fill`` with ``a = alpha/255``.

    Args:
        image: H×W×3 uint8 RGB.
        alpha: H×W uint8 foreground opacity (255 = person).
        fill: RGB background colour.

    Returns:
        H×W×3 uint8 RGB (rounded to nearest).
    """
    opacity = alpha.astype(np.float64)[..., None] / 255.0
    background = np.asarray(fill, dtype=np.float64).reshape(1, 1, 3)
    mixed = opacity * image.astype(np.float64) + (1.0 - opacity) * background
    return np.clip(np.rint(mixed), 0, 255).astype(np.uint8)


def attach_alpha(image: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Stack an H×W uint8 alpha onto H×W×3 uint8 RGB → H×W×4 uint8 RGBA (colours untouched)."""
    return np.dstack([image, alpha]).astype(np.uint8)


@contextmanager
def _u2net_home(folder: Path) -> Iterator[None]:
    """Set ``U2NET_HOME`` for the duration of the block and restore the previous value (or absence)."""
    previous = os.environ.get("U2NET_HOME")
    os.environ["U2NET_HOME"] = str(folder)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("U2NET_HOME", None)
        else:
            os.environ["U2NET_HOME"] = previous


def _providers(device: str) -> list[Any]:
    """onnxruntime providers in rembg's form (name, or (name, options)) for the run's ``device``.

    The placement is :func:`frontalize.devices.onnx_providers`: CUDA only when onnxruntime offers it, else the
    CPU (announced once per process).
    """
    providers, options = onnx_providers(device)
    if options is None:
        return list(providers)
    return [(name, option) if option else name for name, option in zip(providers, options)]


class BackgroundStage:
    """Replace the background behind the person with ``fill``, or output RGBA when ``alpha`` is set.

    Args:
        config: background parameters (model, fill colour, alpha output).
        weights_root: weights root folder; the model is ``<root>/rembg/<model>.onnx``.
        device: the run's device (``cpu``, ``cuda``, ``cuda:N``); the ONNX model falls back to the CPU when
            onnxruntime has no CUDA provider.

    Raises:
        WeightsMissingError: the model file is missing (nothing is downloaded).
        ConfigError: rembg is not installed.
    """

    name = "background"

    def __init__(self, config: BackgroundConfig, weights_root: Path, device: str = "cpu") -> None:
        self.config = config
        key = background_weight_key(config.model)
        self.required_weights: tuple[str, ...] = (key,)
        path = weight_path(key, weights_root)
        if not path.is_file():
            raise WeightsMissingError(
                f"background model {config.model!r} not found at {path}; fix: "
                f"{download_command(weights_root, [get_weight(key).group])} (or copy {path.name} there by hand)")
        try:
            from rembg import new_session
        except ImportError as error:
            raise ConfigError(_INSTALL_HINT) from error
        with _u2net_home(rembg_home(weights_root)):
            try:
                self._session = new_session(config.model, providers=_providers(device))
            except Exception as error:  # onnxruntime's load errors derive from Exception only
                raise WeightsMissingError(f"background model {path} cannot be loaded (corrupt?): {error}; fix: "
                                          f"{download_command(weights_root, [get_weight(key).group])}") from error
        logger.info("background: rembg %s loaded from %s", config.model, path)

    def person_alpha(self, image: np.ndarray) -> np.ndarray:
        """Foreground opacity of an H×W×3 uint8 RGB image → H×W uint8 (255 = person)."""
        from PIL import Image

        masks = self._session.predict(Image.fromarray(image))
        alpha = np.asarray(masks[0].convert("L"), dtype=np.uint8)
        if alpha.shape != image.shape[:2]:
            raise ValueError(f"mask of shape {alpha.shape} for an image of shape {image.shape}")
        return alpha

    def __call__(self, image: np.ndarray, context: StageContext) -> np.ndarray:
        """Segment and composite H×W×3 uint8 RGB → H×W×3 RGB (or H×W×4 RGBA with ``alpha``)."""
        image = check_image(self.name, image, context)
        try:
            alpha = self.person_alpha(image)
        except Exception as error:  # onnxruntime/PIL errors have no common base below Exception
            raise StageError(self.name, context.input_id, f"segmentation failed: {error}") from error
        if self.config.alpha:
            return attach_alpha(image, alpha)
        return composite_on_fill(image, alpha, self.config.fill)
