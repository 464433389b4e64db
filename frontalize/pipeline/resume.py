"""Resume: which inputs a rerun can skip, decided from the manifest and the config hash.

An input is done when the last complete manifest row for it has the current config hash and a final status
(``ok``, ``no_face``, ``decode_error``, ``too_large``, ``landmarks_unfit``, ``skipped_existing``): running it again
would give the same answer (the 68-point fit is deterministic for the same image, config and predictor file, which
the run hash covers). Rows with another hash, or with a status that may be transient (``unreadable``,
``frontalize_error``, ``stage_error``, ``write_error``, ``internal_error``), are redone. ``--overwrite`` redoes
everything.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from frontalize.pipeline.inputs import InputItem

logger = logging.getLogger(__name__)

FINAL_STATUSES: frozenset[str] = frozenset({"ok", "no_face", "decode_error", "too_large", "landmarks_unfit",
                                            "skipped_existing"})
SUCCESS_STATUSES: frozenset[str] = frozenset({"ok", "skipped_existing"})


@dataclass(frozen=True)
class ResumePlan:
    """Split of the inputs of a run.

    Attributes:
        todo: inputs to process now, in input order.
        done: the manifest rows of the inputs skipped because they are already done.
    """

    todo: tuple[InputItem, ...]
    done: tuple[dict[str, Any], ...]


def is_done(row: Mapping[str, Any] | None, config_hash: str) -> bool:
    """Whether ``row`` (the last manifest row of an input) finishes that input under ``config_hash``."""
    return row is not None and row.get("config_hash") == config_hash and row.get("status") in FINAL_STATUSES


def plan_resume(
    items: Sequence[InputItem],
    latest: Mapping[str, Mapping[str, Any]],
    config_hash: str,
    *,
    overwrite: bool = False,
) -> ResumePlan:
    """Decide which inputs to process.

    Args:
        items: every selected input.
        latest: last manifest row per input (``frontalize.io.manifest.latest_rows``).
        config_hash: hash of the current config (without run-only keys).
        overwrite: redo every input.

    Returns:
        The plan.
    """
    if overwrite:
        return ResumePlan(todo=tuple(items), done=())
    todo: list[InputItem] = []
    done: list[dict[str, Any]] = []
    for item in items:
        row = latest.get(item.rel)
        if is_done(row, config_hash):
            done.append(dict(row))  # type: ignore[arg-type]
        else:
            todo.append(item)
    if done:
        logger.info("resume: %d input(s) already done with this config, %d to process", len(done), len(todo))
    return ResumePlan(todo=tuple(todo), done=tuple(done))
