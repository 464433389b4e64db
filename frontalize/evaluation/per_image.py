"""Per-image results: one row per (output tree, combination, angled image), and one GT row per subject.

Written by every evaluation as ``REPORT/per_image.csv`` + ``per_image.jsonl`` and ``REPORT/per_image_gt.csv`` +
``per_image_gt.jsonl``. Columns are documented in README ("Per-image results"); a test keeps README and
:data:`PER_IMAGE_COLUMNS` / :data:`GT_COLUMNS` equal.

Everything comes from what the evaluation already holds — the detections and embeddings in the
:class:`~.embed.EmbeddingStore`, the combinations' GT galleries, the output trees and their manifests — so no
image is decoded, detected or embedded again. The similarities are the same dot products that
:func:`~.pairing.pair_arm` computes, so the mean of ``gain`` over ``pair_status == "paired"`` rows is Table 1's net
gain. A value that does not exist (no face, unknown pitch, landmarks that could not be fitted, no manifest) is
``None``: empty in CSV, ``null`` in JSON Lines, never 0. Angles are in the project's convention
(``frontalize.datasets.base.POSE_CONVENTION``) whatever their source.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from frontalize.config.evaluation import StatsConfig
from frontalize.datasets import base
from frontalize.datasets.base import HeadPose, Record
from frontalize.evaluation import poses, stats
from frontalize.evaluation.cache import Detection
from frontalize.evaluation.embed import PLAIN_ATTEMPT, EmbeddingStore
from frontalize.evaluation.guard_report import TreeRow, read_tree_rows
from frontalize.evaluation.results import EvaluationResults
from frontalize.evaluation.trees import OK_STATUSES, FrontalArm
from frontalize.io.atomic import atomic_write_text

__all__ = [
    "GT_COLUMNS",
    "PER_IMAGE_COLUMNS",
    "PerImageTables",
    "build_gt_rows",
    "build_rows",
    "detection_outcome",
    "pose_with_source",
    "to_csv",
    "to_jsonl",
    "write_per_image",
]

PER_IMAGE_COLUMNS: tuple[str, ...] = (
    "arm", "combination", "subject", "rel",
    "pitch", "yaw", "roll", "pose_source", "pose_status", "synthetic", "yaw_bin", "pitch_bin",
    "sim_angle_gt", "sim_frontal_gt", "gain", "pair_status",
    "angle_detection", "frontal_detection",
    "inference_status", "inference_reason", "residual_pitch", "residual_yaw", "residual_roll",
    "guard_candidate", "guard_fallback",
    "angle_path", "frontal_path", "gt_path",
)
"""Columns of ``per_image.csv`` in order (documented in README)."""

GT_COLUMNS: tuple[str, ...] = ("subject", "gt_rel", "gt_path", "pitch", "yaw", "roll", "pose_source", "pose_status",
                               "n_probes", "gt_rule")
"""Columns of ``per_image_gt.csv`` in order (documented in README)."""

POSE_ANNOTATION = base.POSE_ANNOTATION
POSE_KEYPOINTS = poses.POSE_KEYPOINTS
"""Pose-source labels besides the estimator's own name (see :func:`pose_with_source`)."""

_SIM_DIGITS = 6
_ANGLE_DIGITS = 2


def _round(value: float | None, digits: int) -> float | None:
    """``value`` rounded, or None when missing or not finite (never 0 for a missing value)."""
    if value is None or not math.isfinite(value):
        return None
    return round(float(value), digits)


def pose_with_source(pose: HeadPose | None, detection: Detection | None,
                     estimator: str | None) -> tuple[float | None, float | None, float | None, str | None]:
    """(pitch, yaw, roll, source) of an image, in degrees (project convention), the way the pose bins see it.

    The known pose wins (``annotation`` or ``rendered``); else the pose model's estimate (``detection.pose``,
    labelled with the model's name, e.g. ``"landmarks68"``; nothing when it could not fit the face); else the
    5-keypoint proxy (``"keypoints"``: pitch unknown); else nothing (no face). See
    :func:`frontalize.evaluation.poses.image_pose`, which the pose bins use too.
    """
    found = poses.image_pose(pose, detection, estimator)
    return found.pitch, found.yaw, found.roll, found.source


def detection_outcome(detection: Detection | None) -> str:
    """``found``, ``found_retry`` (only the padded / smaller-size attempt found it), ``no_face`` or
    ``unreadable``."""
    if detection is None or detection.status == "unreadable":
        return "unreadable"
    if not detection.found:
        return "no_face"
    return "found" if detection.attempt == PLAIN_ATTEMPT else "found_retry"


class _Bins:
    """Pose-bin labels of Table 4 (same edges, labels and assignment rule as :func:`stats.assign_bins`)."""

    def __init__(self, cfg: StatsConfig) -> None:
        self._yaw = stats.pose_bin_edges(cfg.yaw_bin_width, cfg.yaw_bin_limit, signed=False)
        self._pitch = stats.pose_bin_edges(cfg.pitch_bin_width, cfg.pitch_bin_limit, signed=True)
        self._labels = {id(self._yaw): stats.bin_labels(self._yaw), id(self._pitch): stats.bin_labels(self._pitch)}

    def _label(self, value: float | None, edges: np.ndarray) -> str | None:
        if value is None:
            return None
        index = min(max(int(np.searchsorted(edges, value, side="right")) - 1, 0), len(edges) - 2)
        return self._labels[id(edges)][index]

    def yaw(self, yaw: float | None) -> str | None:
        """Label of the |yaw| bin (None when the yaw is unknown)."""
        return self._label(None if yaw is None else abs(yaw), self._yaw)

    def pitch(self, pitch: float | None) -> str | None:
        """Label of the signed pitch bin (None when the pitch is unknown)."""
        return self._label(pitch, self._pitch)


def _inference(arm: FrontalArm, rel: str, tree_row: TreeRow | None) -> dict[str, Any]:
    """Inference status, reason, residual pose and guard choice of one input, from the tree's manifest."""
    failure = arm.failures.get(rel) if rel not in arm.outputs else None
    residual = (tree_row.output_pose if tree_row is not None else None) or {}
    chosen = tree_row.chosen if tree_row is not None else None
    guard = tree_row.guard if tree_row is not None else None
    listed = arm.statuses.get(rel)  # the last manifest row's status, e.g. skipped_existing
    status = failure[0] if failure else (listed if listed in OK_STATUSES else None) or \
        ("ok" if tree_row is not None else None)
    return {
        "inference_status": status,
        "inference_reason": (failure[1] or None) if failure else None,
        "residual_pitch": _round(residual.get("pitch"), _ANGLE_DIGITS),
        "residual_yaw": _round(residual.get("yaw"), _ANGLE_DIGITS),
        "residual_roll": _round(residual.get("roll"), _ANGLE_DIGITS),
        "guard_candidate": None if chosen is None else str(chosen.get("name")),
        "guard_fallback": None if guard is None else bool(guard.get("fallback")),
    }


def _pair_status(has_gt: bool, gt_face: bool, angle: bool, frontal: bool) -> str:
    if not has_gt:
        return "no_gt"
    if not gt_face:
        return "no_face_gt"
    return {(True, True): "paired", (True, False): "angle_only", (False, True): "frontal_only",
            (False, False): "neither"}[(angle, frontal)]


def _similarity(store: EmbeddingStore, path: Path | None, pair: tuple[str, str], gt: np.ndarray | None
                ) -> float | None:
    if path is None or gt is None:
        return None
    vector = store.embedding(path, *pair)
    return None if vector is None else float(vector @ gt)


@dataclass(frozen=True)
class _Context:
    """What every row of one output tree × combination shares."""

    results: EvaluationResults
    arm: FrontalArm
    combination: str
    pair: tuple[str, str]
    gallery_row: Mapping[str, int]
    gallery: np.ndarray
    manifest_rows: Mapping[str, TreeRow]
    bins: _Bins


def _row(ctx: _Context, record: Record) -> dict[str, Any]:
    """The per-image row of one angled record (same similarities and outcomes as :func:`.pairing.pair_arm`)."""
    store, detector = ctx.results.store, ctx.pair[0]
    rel, subject = record.image.rel, record.subject
    gt = ctx.results.dataset.gt.get(subject)
    gt_vector = ctx.gallery[ctx.gallery_row[subject]] if subject in ctx.gallery_row else None
    angle_det = store.detection(record.image.path, detector)
    frontal_path = ctx.arm.outputs.get(rel)
    sim_angle = _similarity(store, record.image.path, ctx.pair, gt_vector)
    sim_frontal = _similarity(store, frontal_path, ctx.pair, gt_vector)
    pose = poses.image_pose(record.pose, angle_det, ctx.results.pose_estimator)
    pitch, yaw = pose.pitch, pose.yaw
    return {
        "arm": ctx.arm.name, "combination": ctx.combination, "subject": subject, "rel": rel,
        "pitch": _round(pitch, _ANGLE_DIGITS), "yaw": _round(yaw, _ANGLE_DIGITS),
        "roll": _round(pose.roll, _ANGLE_DIGITS), "pose_source": pose.source, "pose_status": pose.status,
        "synthetic": record.synthetic, "yaw_bin": ctx.bins.yaw(yaw), "pitch_bin": ctx.bins.pitch(pitch),
        "sim_angle_gt": _round(sim_angle, _SIM_DIGITS), "sim_frontal_gt": _round(sim_frontal, _SIM_DIGITS),
        "gain": None if sim_angle is None or sim_frontal is None else _round(sim_frontal - sim_angle, _SIM_DIGITS),
        "pair_status": _pair_status(gt is not None, gt_vector is not None, sim_angle is not None,
                                    sim_frontal is not None),
        "angle_detection": detection_outcome(angle_det),
        "frontal_detection": "no_output" if frontal_path is None
        else detection_outcome(store.detection(frontal_path, detector)),
        **_inference(ctx.arm, rel, ctx.manifest_rows.get(rel)),
        "angle_path": str(record.image.path),
        "frontal_path": None if frontal_path is None else str(frontal_path),
        "gt_path": None if gt is None else str(gt.image.path),
    }


def build_rows(results: EvaluationResults) -> list[dict[str, Any]]:
    """Every per-image row, ordered by output tree, then combination, then dataset record (see module doc)."""
    bins = _Bins(results.config.stats)
    rows: list[dict[str, Any]] = []
    for arm in results.arms:
        manifest_rows = read_tree_rows(arm)
        for combo in results.combinations:
            ctx = _Context(results, arm, combo.label, (combo.combination.detector, combo.combination.recognizer),
                           combo.gallery.index(), combo.gallery.embeddings, manifest_rows, bins)
            rows.extend(_row(ctx, record) for record in results.dataset.records)
    return rows


def build_gt_rows(results: EvaluationResults) -> list[dict[str, Any]]:
    """One row per subject with a GT: its image, pose (as for probes, under the first combination's detector),
    number of probes and the rule that chose it."""
    dataset = results.dataset
    detector = results.combinations[0].combination.detector if results.combinations else ""
    probes = Counter(record.subject for record in dataset.records)
    rows = []
    for subject in sorted(dataset.gt):
        gt = dataset.gt[subject]
        pose = poses.image_pose(gt.pose, results.store.detection(gt.image.path, detector), results.pose_estimator)
        rows.append({"subject": subject, "gt_rel": gt.image.rel, "gt_path": str(gt.image.path),
                     "pitch": _round(pose.pitch, _ANGLE_DIGITS), "yaw": _round(pose.yaw, _ANGLE_DIGITS),
                     "roll": _round(pose.roll, _ANGLE_DIGITS), "pose_source": pose.source,
                     "pose_status": pose.status, "n_probes": probes.get(subject, 0), "gt_rule": dataset.gt_rule})
    return rows


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def to_csv(rows: Iterable[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """CSV text with a header row; missing values are empty cells, booleans ``true``/``false``."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_csv_cell(row.get(column)) for column in columns])
    return buffer.getvalue()


def to_jsonl(rows: Iterable[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """JSON Lines text: one object per row with ``columns`` in order; missing values are ``null``."""
    return "".join(json.dumps({c: row.get(c) for c in columns}, ensure_ascii=False, allow_nan=False) + "\n"
                   for row in rows)


@dataclass(frozen=True)
class PerImageTables:
    """The rows written for one run (kept for the HTML page)."""

    rows: list[dict[str, Any]]
    gt_rows: list[dict[str, Any]]


def write_per_image(results: EvaluationResults, out_dir: str | Path) -> PerImageTables:
    """Write ``per_image.csv`` / ``.jsonl`` and ``per_image_gt.csv`` / ``.jsonl`` into ``out_dir``."""
    out = Path(out_dir)
    tables = PerImageTables(build_rows(results), build_gt_rows(results))
    for name, rows, columns in (("per_image", tables.rows, PER_IMAGE_COLUMNS),
                                ("per_image_gt", tables.gt_rows, GT_COLUMNS)):
        atomic_write_text(out / f"{name}.csv", to_csv(rows, columns))
        atomic_write_text(out / f"{name}.jsonl", to_jsonl(rows, columns))
    return tables
