"""Configuration of the post-processing stages (GFPGAN, colour, sharpen, background, margins).

Frozen dataclasses following the project's config convention: every field carries ``metadata={"help": ...}``
(plus ``min``/``max`` for numbers, checked by :mod:`frontalize.config.schema`), choices are ``Literal``
types, and each stage block starts with ``enabled: bool = False``. ``StagesConfig.order`` fixes the order in
which the enabled stages run. Cross-field checks live in ``__post_init__`` and raise ``ValueError``; the loader
(:func:`frontalize.config.schema.from_dict`) reports it as a :class:`~frontalize.errors.ConfigError` naming the
file and the dotted key.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "STAGE_NAMES",
    "BackgroundConfig",
    "ColourConfig",
    "GfpganConfig",
    "MarginsConfig",
    "SharpenConfig",
    "StagesConfig",
]

STAGE_NAMES: tuple[str, ...] = ("gfpgan", "colour", "sharpen", "background", "margins")
"""Every stage name, in the default running order."""

BackgroundModel = Literal["u2net", "u2netp", "u2net_human_seg", "isnet-general-use", "silueta"]


def _check_rgb(name: str, colour: tuple[int, ...]) -> None:
    if len(colour) != 3 or any(not 0 <= int(c) <= 255 for c in colour):
        raise ValueError(f"{name}: expected three integers in [0, 255] (e.g. [255, 255, 255]), got {list(colour)}")


@dataclass(frozen=True)
class GfpganConfig:
    """GFPGAN face restoration of the aligned 512×512 face crop."""

    enabled: bool = field(default=False, metadata={"help": "run GFPGAN face restoration"})
    version: Literal["1.3", "1.4"] = field(
        default="1.4", metadata={"help": "GFPGAN release (checkpoint GFPGANv<version>.pth)"})
    weight: float = field(default=0.5, metadata={
        "help": "blend of the restored face with the input: 0 = input unchanged, 1 = restored face only",
        "min": 0.0, "max": 1.0})


@dataclass(frozen=True)
class SharpenConfig:
    """Unsharp-mask sharpening: ``out = img + amount·(img − gaussian(img, radius))``."""

    enabled: bool = field(default=False, metadata={"help": "sharpen with an unsharp mask"})
    amount: float = field(default=1.0, metadata={"help": "strength of the sharpening (0 = none)", "min": 0.0})
    radius: float = field(default=1.0, metadata={
        "help": "Gaussian sigma of the blur, in pixels", "min": 0.01, "max": 100.0})
    threshold: int = field(default=0, metadata={
        "help": "leave a channel value unchanged where |img − blurred| is below this (0..255)",
        "min": 0, "max": 255})


@dataclass(frozen=True)
class BackgroundConfig:
    """Background removal with a rembg segmentation model (weights from the registry, never downloaded)."""

    enabled: bool = field(default=False, metadata={"help": "replace the background"})
    model: BackgroundModel = field(default="u2netp", metadata={"help": "rembg segmentation model"})
    fill: tuple[int, int, int] = field(default=(255, 255, 255), metadata={
        "help": "RGB colour put behind the person (ignored when alpha is true)"})
    alpha: bool = field(default=False, metadata={
        "help": "output RGBA (H×W×4, alpha = person mask) instead of compositing onto fill"})

    def __post_init__(self) -> None:
        _check_rgb("fill", self.fill)


@dataclass(frozen=True)
class ColourConfig:
    """Colour normalisation: move the Lab mean/std of the output towards the source crop's."""

    enabled: bool = field(default=False, metadata={"help": "match the colour statistics of the source crop"})
    strength: float = field(default=1.0, metadata={
        "help": "0 = unchanged, 1 = statistics fully matched to the source", "min": 0.0, "max": 1.0})
    region: Literal["face", "full"] = field(default="face", metadata={
        "help": "statistics from the face box (when the pipeline provides one) or from the whole image"})


@dataclass(frozen=True)
class MarginsConfig:
    """Trim/pad/scale the image so the face sits at a fixed place and size (the reference framing).

    The defaults reproduce LivePortrait's 512 crop framing (crop side = 2.3 × face size, crop centre moved
    towards the forehead by 12.5 % of the side): the face box's longer side becomes ``face_fraction`` of the
    output side and its centre lands at (``center_x``, ``center_y``) × output side.
    """

    enabled: bool = field(default=False, metadata={"help": "re-frame the image around the face box"})
    output_size: int = field(default=512, metadata={
        "help": "side of the square output image, in pixels", "min": 16, "max": 8192})
    face_fraction: float = field(default=0.435, metadata={
        "help": "longer side of the face box as a fraction of the output side", "min": 0.05, "max": 1.0})
    center_x: float = field(default=0.5, metadata={
        "help": "horizontal position of the face-box centre, fraction of the output width", "min": 0.0, "max": 1.0})
    center_y: float = field(default=0.625, metadata={
        "help": "vertical position of the face-box centre, fraction of the output height", "min": 0.0, "max": 1.0})
    pad: Literal["constant", "replicate", "reflect"] = field(default="constant", metadata={
        "help": "how areas outside the input are filled: constant colour, replicated edge, or mirror"})
    fill: tuple[int, int, int] = field(default=(0, 0, 0), metadata={
        "help": "RGB colour of padded areas when pad is constant (transparent for RGBA images)"})

    def __post_init__(self) -> None:
        _check_rgb("fill", self.fill)


@dataclass(frozen=True)
class StagesConfig:
    """All post-processing stages: which run (``enabled``) and in what order (``order``)."""

    order: tuple[str, ...] = field(default=STAGE_NAMES, metadata={
        "help": "running order of the enabled stages; names from " + ", ".join(STAGE_NAMES)})
    gfpgan: GfpganConfig = field(default_factory=GfpganConfig, metadata={"help": "GFPGAN face restoration"})
    colour: ColourConfig = field(default_factory=ColourConfig, metadata={"help": "colour normalisation"})
    sharpen: SharpenConfig = field(default_factory=SharpenConfig, metadata={"help": "unsharp-mask sharpening"})
    background: BackgroundConfig = field(default_factory=BackgroundConfig, metadata={
        "help": "background removal"})
    margins: MarginsConfig = field(default_factory=MarginsConfig, metadata={"help": "re-framing around the face"})

    def __post_init__(self) -> None:
        for name in self.order:
            if name not in STAGE_NAMES:
                close = difflib.get_close_matches(name, STAGE_NAMES, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise ValueError(f"order: unknown stage {name!r}; {hint}valid: {', '.join(STAGE_NAMES)}")
        duplicates = sorted({name for name in self.order if self.order.count(name) > 1})
        if duplicates:
            raise ValueError(f"order: {', '.join(duplicates)} listed more than once")
        missing = [name for name in self.enabled_names(ignore_order=True) if name not in self.order]
        if missing:
            raise ValueError(f"order: enabled stage(s) {', '.join(missing)} missing from the order "
                              f"(add them or set <name>.enabled: false)")
        self._check_rgba_consumers()

    def _check_rgba_consumers(self) -> None:
        """RGBA output of ``background.alpha`` cannot feed GFPGAN or another background pass."""
        if not (self.background.enabled and self.background.alpha):
            return
        after = self.order[self.order.index("background") + 1:]
        if self.gfpgan.enabled and "gfpgan" in after:
            raise ValueError("order: gfpgan cannot run after background with alpha: true "
                              "(it needs RGB input); move gfpgan before background")

    def enabled_names(self, *, ignore_order: bool = False) -> tuple[str, ...]:
        """Names of the enabled stages in running order (or in ``STAGE_NAMES`` order with ``ignore_order``)."""
        names = STAGE_NAMES if ignore_order else self.order
        return tuple(name for name in names if getattr(self, name).enabled)
