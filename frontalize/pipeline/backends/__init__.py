"""Frontalizer backends behind one small interface (see :mod:`frontalize.pipeline.backends.base`): ``identity``,
``liveportrait`` and ``mesh``; the last two also render the identity guard's candidates."""

from __future__ import annotations

from frontalize.pipeline.backends.base import (
    BACKEND_MODULES,
    BackendContext,
    BackendSpec,
    Candidate,
    CandidateRenderer,
    CandidateRenders,
    FaceInput,
    FaceOutcome,
    FrontalizedFace,
    Frontalizer,
    PoseEstimator,
    get_backend_spec,
)

__all__ = [
    "BACKEND_MODULES",
    "BackendContext",
    "BackendSpec",
    "Candidate",
    "CandidateRenderer",
    "CandidateRenders",
    "FaceInput",
    "FaceOutcome",
    "FrontalizedFace",
    "Frontalizer",
    "PoseEstimator",
    "get_backend_spec",
]
