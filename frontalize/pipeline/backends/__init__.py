"""Frontalizer backends behind one small interface (see :mod:`frontalize.pipeline.backends.base`)."""

from __future__ import annotations

from frontalize.pipeline.backends.base import (
    BACKEND_MODULES,
    BackendContext,
    BackendSpec,
    FaceInput,
    FrontalizedFace,
    Frontalizer,
    PoseEstimator,
    get_backend_spec,
)

__all__ = [
    "BACKEND_MODULES",
    "BackendContext",
    "BackendSpec",
    "FaceInput",
    "FrontalizedFace",
    "Frontalizer",
    "PoseEstimator",
    "get_backend_spec",
]
