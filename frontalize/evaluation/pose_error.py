"""Pose of the report: how each image's pose was obtained, and the pose estimators' error against known poses.

Images with a *known* pose — BIWI annotations, ``poses.csv`` / ``poses.json`` entries, the synthetic posed views
of ``posed_views.json`` (pose source ``rendered``) — are binned by that pose. The evaluator's pose model (1k3d68 or
the 68-point estimator, ``dataset.pose``) still runs on them in the detection pass, and so does the 5-keypoint
yaw proxy (free: the keypoints are there), so the report can state each estimator's mean absolute error against
the known pose, per angle, overall and per |yaw| bin of the known pose (:func:`pose_error_rows`, Table 7).
Counts: images with a known pose, those where the detector found no face, those whose landmarks the model could not
fit (no pose, never 0), and ``n`` = the images scored. Angle differences are wrapped into [−180°, 180°).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from frontalize.config.evaluation import StatsConfig
from frontalize.datasets.base import POSE_CONVENTION, POSE_RENDERED, Dataset, HeadPose, ImageRef
from frontalize.evaluation import stats
from frontalize.evaluation.embed import EmbeddingStore
from frontalize.evaluation.poses import POSE_KEYPOINTS, image_pose, is_unfit

__all__ = ["POSE_ERROR_KEYS", "POSE_MODEL_TEXT", "describe_pose_source", "known_pose_images", "pose_error_rows",
           "unfit_count"]

POSE_MODEL_TEXT: dict[str, str] = {
    "1k3d68": "InsightFace 1k3d68 pose",
    "landmarks68": "68-point pose (dlib's 68 landmarks fitted by the 3D mean shape)",
    POSE_KEYPOINTS: "yaw proxy from the 5 detected keypoints (pitch unknown)",
}
"""How each pose source is named in the report."""

POSE_ERROR_KEYS: tuple[str, ...] = ("detector", "estimator", "known", "bin", "images", "no_face", "no_fit", "n",
                                    "mae_pitch", "mae_yaw", "mae_roll", "median_abs_yaw_error")
"""Keys of a pose-error row (Table 7 and ``summary.json`` ``pose_error``)."""


def known_pose_images(dataset: Dataset) -> list[tuple[ImageRef, HeadPose]]:
    """Every image of the dataset with a known pose (probes, then GT images), each once."""
    found: dict[str, tuple[ImageRef, HeadPose]] = {}
    for ref, pose in [(r.image, r.pose) for r in dataset.records] + [(g.image, g.pose) for g in dataset.gt.values()]:
        if pose is not None:
            found.setdefault(str(ref.path), (ref, pose))
    return list(found.values())


def unfit_count(dataset: Dataset, store: EmbeddingStore, detector: str) -> int:
    """Angled images without a known pose whose face (under ``detector``) the pose model could not fit."""
    count = 0
    for record in dataset.records:
        detection = store.detection(record.image.path, detector)
        count += record.pose is None and detection is not None and detection.found and is_unfit(detection.pose)
    return count


def describe_pose_source(dataset: Dataset, store: EmbeddingStore, detector: str, model: str | None) -> str:
    """One sentence for the report: where the pose of the angled images comes from, and the convention."""
    records = dataset.records
    known = [r for r in records if r.pose is not None]
    rendered = sum(r.pose is not None and r.pose.source == POSE_RENDERED for r in records)
    estimator = f"{POSE_MODEL_TEXT[model or POSE_KEYPOINTS]} of the angled image (detector {detector})"
    if records and len(known) == len(records):
        head = "annotated in the dataset" if not rendered else \
            f"known for every angled image ({rendered} rendered synthetic views, {len(known) - rendered} annotated)"
        if dataset.layout == "biwi":
            head += " (the pose files' rotation matrices decomposed as Rz(roll)·Ry(yaw)·Rx(pitch))"
    elif known:
        head = (f"known for {len(known)} of {len(records)} angled images ({rendered} rendered synthetic views, "
                f"{len(known) - rendered} annotated); estimated for the others with the {estimator}")
    else:
        head = f"estimated with the {estimator}"
    unfit = unfit_count(dataset, store, detector)
    if unfit:
        head += (f"; {unfit} faces whose 68 landmarks could not be fitted have no pose (empty, in no pose bin, "
                 "never 0)")
    return f"{head}. Convention: {POSE_CONVENTION}"


def _wrapped(estimate: float, truth: float) -> float:
    return abs((estimate - truth + 180.0) % 360.0 - 180.0)


def _mae(errors: np.ndarray) -> float | None:
    finite = errors[np.isfinite(errors)]
    return float(np.mean(finite)) if finite.size else None


def _row(errors: np.ndarray, counts: tuple[int, int, int], labels: dict[str, str]) -> dict[str, Any]:
    """One row over the (N, 3) absolute errors (NaN = that angle not estimated) of the scored images."""
    images, no_face, no_fit = counts
    scored = errors[np.isfinite(errors[:, 1])] if errors.size else errors.reshape(0, 3)
    median = float(np.median(scored[:, 1])) if len(scored) else None
    return {**labels, "images": images, "no_face": no_face, "no_fit": no_fit, "n": len(scored),
            "mae_pitch": _mae(scored[:, 0]), "mae_yaw": _mae(scored[:, 1]), "mae_roll": _mae(scored[:, 2]),
            "median_abs_yaw_error": median}


def _estimator_rows(images: list[tuple[ImageRef, HeadPose]], store: EmbeddingStore, detector: str,
                    estimator: str, cfg: StatsConfig) -> list[dict[str, Any]]:
    """Rows (all, then per |yaw| bin of the known pose) of one estimator under one detector."""
    truth = np.array([(p.pitch, p.yaw, p.roll) for _, p in images], dtype=np.float64)
    errors = np.full((len(images), 3), np.nan)
    status = []
    for index, (ref, _) in enumerate(images):
        detection = store.detection(ref.path, detector)
        if estimator == POSE_KEYPOINTS and detection is not None:
            detection = replace(detection, pose=None)  # the proxy sees the keypoints only
        estimate = image_pose(None, detection, estimator)
        status.append(estimate.status)
        values = (estimate.pitch, estimate.yaw, estimate.roll)
        errors[index] = [math.nan if v is None else _wrapped(v, t) for v, t in zip(values, truth[index])]
    status_arr = np.asarray(status)
    sources = sorted({p.source for _, p in images})
    labels = {"detector": detector, "estimator": estimator, "known": "+".join(sources)}
    edges = stats.pose_bin_edges(cfg.yaw_bin_width, cfg.yaw_bin_limit, signed=False)
    bins = stats.assign_bins(np.abs(truth[:, 1]), edges)
    subsets = [("all", np.ones(len(images), dtype=bool))]
    subsets += [(label, bins == i) for i, label in enumerate(stats.bin_labels(edges)) if np.any(bins == i)]
    rows = []
    for label, mask in subsets:
        ok = mask & (status_arr == "estimated")
        counts = (int(mask.sum()), int(np.sum(mask & (status_arr == "no_face"))),
                  int(np.sum(mask & (status_arr == "unfit"))))
        rows.append(_row(errors[ok], counts, {**labels, "bin": label}))
    return rows


def pose_error_rows(dataset: Dataset, store: EmbeddingStore, detectors: Sequence[str], model: str | None,
                    cfg: StatsConfig) -> list[dict[str, Any]]:
    """Error of the pose model (when one ran) and of the keypoint proxy against every known pose, per detector.

    Args:
        dataset: the dataset (its records' and GT images' known poses).
        store: the detection pass's results (poses are those of each detector's used face).
        detectors: detectors of the run (each once, in order).
        model: the pose model of the detection pass, or None.
        cfg: statistics config (the |yaw| bins).

    Returns:
        Rows with :data:`POSE_ERROR_KEYS`; empty when no image has a known pose.
    """
    images = known_pose_images(dataset)
    if not images:
        return []
    rows = []
    for detector in dict.fromkeys(detectors):
        for estimator in ([model] if model else []) + [POSE_KEYPOINTS]:
            rows += _estimator_rows(images, store, detector, estimator, cfg)
    return rows
