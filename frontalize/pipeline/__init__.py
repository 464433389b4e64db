"""pipeline: the inference runner — discover inputs → decode → detect → crop → frontalize → outputs → stages →
encode → manifest, with resume and a local threaded executor.

The per-input / per-batch work is plain callables (:class:`PrepareStep`, :class:`FrontalizeBatch`,
:class:`FinishStep`) so another executor can drive the same code; :func:`plan_run` + :func:`execute_run` are the
local one. Frontalizer backends live in ``frontalize.pipeline.backends`` (``identity``, ``liveportrait``,
``mesh``); the identity guard (``guard.enabled``: K candidates per face rendered by the backend, the most
source-similar frontal-enough one kept) is :mod:`frontalize.pipeline.guard`. Poses come from the pose source of
``frontalizer.pose_source`` (:mod:`frontalize.pipeline.pose`).
"""

from __future__ import annotations

from frontalize.pipeline.build import build_steps
from frontalize.pipeline.inputs import InputItem, discover_inputs
from frontalize.pipeline.outputs import FinishStep, OutputLayout
from frontalize.pipeline.plan import RunPlan
from frontalize.pipeline.records import Prepared, PreparedFace, Rendered, RenderedFace
from frontalize.pipeline.runner import RunSummary, execute_run, plan_run
from frontalize.pipeline.steps import FrontalizeBatch, PrepareStep, Steps

__all__ = [
    "FinishStep",
    "FrontalizeBatch",
    "InputItem",
    "OutputLayout",
    "PrepareStep",
    "Prepared",
    "PreparedFace",
    "Rendered",
    "RenderedFace",
    "RunPlan",
    "RunSummary",
    "Steps",
    "build_steps",
    "discover_inputs",
    "execute_run",
    "plan_run",
]
