"""Registry of post-processing stages: name → builder and required weights (an explicit dict literal).

``build_stage`` builds one stage from its block of :class:`~frontalize.config.stages.StagesConfig` whether or
not that block is ``enabled`` (the caller chooses the names; :func:`enabled_stage_names` gives the enabled
ones in configured order). ``stage_weight_keys`` tells which registry files a stage will load so the pipeline
can verify them all before the first image.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from frontalize.config.stages import StagesConfig
from frontalize.errors import ConfigError
from frontalize.stages.background import BackgroundStage, background_weight_key
from frontalize.stages.base import Stage
from frontalize.stages.colour import ColourStage
from frontalize.stages.gfpgan import GfpganStage, gfpgan_weight_key
from frontalize.stages.margins import MarginsStage
from frontalize.stages.sharpen import SharpenStage

__all__ = [
    "STAGES",
    "StageSpec",
    "build_pipeline_stages",
    "build_stage",
    "enabled_stage_names",
    "stage_weight_keys",
]


@dataclass(frozen=True)
class StageSpec:
    """How to build one stage.

    Attributes:
        build: ``(stage_config, weights_root, device) -> Stage``; ``stage_config`` is the stage's block of
            ``StagesConfig`` (e.g. ``cfg.gfpgan``).
        weight_keys: ``stage_config -> registry keys`` the stage loads.
    """

    build: Callable[[Any, Path, str], Stage]
    weight_keys: Callable[[Any], tuple[str, ...]]


def _no_weights(_config: Any) -> tuple[str, ...]:
    return ()


STAGES: dict[str, StageSpec] = {
    "gfpgan": StageSpec(lambda c, root, device: GfpganStage(c, root, device),
                        lambda c: (gfpgan_weight_key(c.version),)),
    "colour": StageSpec(lambda c, root, device: ColourStage(c), _no_weights),
    "sharpen": StageSpec(lambda c, root, device: SharpenStage(c), _no_weights),
    "background": StageSpec(lambda c, root, device: BackgroundStage(c, root, device),
                            lambda c: (background_weight_key(c.model),)),
    "margins": StageSpec(lambda c, root, device: MarginsStage(c), _no_weights),
}

def _spec(name: str) -> StageSpec:
    spec = STAGES.get(name)
    if spec is None:
        close = difflib.get_close_matches(name, list(STAGES), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigError(f"unknown stage {name!r}; {hint}valid stages: {', '.join(STAGES)}")
    return spec


def build_stage(name: str, cfg: StagesConfig, *, weights_root: Path, device: str = "cpu") -> Stage:
    """Build the stage ``name`` from its block of ``cfg``.

    Args:
        name: stage name (a key of :data:`STAGES`).
        cfg: the stages configuration.
        weights_root: weights root folder (for gfpgan and background).
        device: torch-style device string.

    Returns:
        The stage, ready to call on images.

    Raises:
        ConfigError: unknown name (with a close-match suggestion) or invalid parameters.
        WeightsMissingError: a weight file the stage needs is missing or corrupt.
    """
    return _spec(name).build(getattr(cfg, name), Path(weights_root), device)


def stage_weight_keys(name: str, cfg: StagesConfig) -> tuple[str, ...]:
    """Weights-registry keys the stage ``name`` would load with ``cfg`` (empty for weightless stages).

    Raises:
        ConfigError: unknown name.
    """
    return _spec(name).weight_keys(getattr(cfg, name))


def enabled_stage_names(cfg: StagesConfig) -> tuple[str, ...]:
    """Names of the enabled stages in ``cfg.order``."""
    return cfg.enabled_names()


def build_pipeline_stages(names: Sequence[str] | None, cfg: StagesConfig, *, weights_root: Path,
                          device: str = "cpu") -> list[Stage]:
    """Build several stages in the given order (all names are checked before anything is built).

    Args:
        names: stage names in running order; None = the enabled stages of ``cfg`` in ``cfg.order``.
        cfg: the stages configuration.
        weights_root: weights root folder.
        device: torch-style device string.

    Returns:
        The stages, in order.

    Raises:
        ConfigError: an unknown name.
        WeightsMissingError: a weight file is missing or corrupt.
    """
    chosen = enabled_stage_names(cfg) if names is None else tuple(names)
    for name in chosen:
        _spec(name)
    return [build_stage(name, cfg, weights_root=weights_root, device=device) for name in chosen]
