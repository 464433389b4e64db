"""Post-processing stages (GFPGAN, colour, sharpen, background, margins) and their registry.

Every stage takes and returns H×W×3 uint8 RGB numpy images (the background stage with ``alpha`` returns H×W×4
RGBA) and raises :class:`~frontalize.errors.StageError` on failure. Build stages with
:func:`~frontalize.stages.registry.build_stage` from a :class:`~frontalize.config.stages.StagesConfig`.
"""

from __future__ import annotations

from frontalize.stages.base import Stage, StageContext
from frontalize.stages.registry import (
    STAGES,
    build_pipeline_stages,
    build_stage,
    enabled_stage_names,
    stage_weight_keys,
)

__all__ = [
    "STAGES",
    "Stage",
    "StageContext",
    "build_pipeline_stages",
    "build_stage",
    "enabled_stage_names",
    "stage_weight_keys",
]
