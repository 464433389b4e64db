"""Analysis: turn paired scores into the numbers of the report (per output tree × combination).

Pure functions over :class:`~.pairing.ArmScores` and embeddings; no I/O. The numbers:

* paired summary: mean Angle↔GT, mean Frontal↔GT, net gain (mean of per-image differences) with a 95 % cluster
  bootstrap CI over subjects, median, win rate (+ CI), Wilcoxon signed-rank p, n images and n subjects, and the
  outcome counts (no face per arm, failures, records with only one arm);
* similarity-model baselines (Angled vs GT, Angled vs Angled of the same subject, GT vs GT of different
  subjects) — see :data:`SIMILARITY_DEFINITIONS`;
* pose bins (|yaw| and signed pitch) with CIs and per-bin no-face counts;
* identification (rank-1 against the gallery of all GTs) and verification (ROC AUC, EER, TAR@FAR) of angled
  and of frontalized probes, on the paired probes so both arms see the same images;
* arm-vs-reference: Frontal↔GT of each output tree minus that of the first tree, per image.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from frontalize.config.evaluation import StatsConfig
from frontalize.datasets.base import Dataset, VerificationPair
from frontalize.evaluation import metrics, stats
from frontalize.evaluation.embed import EmbeddingStore
from frontalize.evaluation.pairing import ArmScores, Gallery

__all__ = [
    "SIMILARITY_DEFINITIONS",
    "arm_difference",
    "pair_verification",
    "paired_summary",
    "pose_bin_rows",
    "similarity_model",
    "verification_summary",
]

SIMILARITY_DEFINITIONS: dict[str, str] = {
    "angle_gt": "Angled vs GT: cosine of every angled probe with its own subject's GT image, averaged over "
                "probes (both faces detected).",
    "angle_angle": "Angled vs Angled: cosine of every unordered pair of two different angled probes of the same "
                   "subject, averaged over all such pairs of all subjects (pair-weighted).",
    "gt_gt": "GT vs GT: cosine of the GT images of two DIFFERENT subjects, averaged over every unordered pair of "
             "subjects - the level at which two different people score under this combination (a GT against "
             "itself is 1 by construction and is not reported).",
}


def _ci(values: np.ndarray, subjects: np.ndarray, cfg: StatsConfig, statistic: str = "mean") -> list[float | None]:
    low, high = stats.cluster_bootstrap_ci(
        values, subjects, statistic=statistic, n_resamples=cfg.bootstrap_resamples,  # type: ignore[arg-type]
        confidence_level=cfg.confidence_level, method=cfg.bootstrap_method, seed=cfg.seed)
    return [_num(low), _num(high)]


def _num(value: float | None) -> float | None:
    """JSON-friendly float: NaN/inf -> None."""
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def _mean(values: np.ndarray) -> float | None:
    return _num(float(np.mean(values))) if len(values) else None


COUNT_KEYS: tuple[str, ...] = (
    "records", "paired", "no_face_angle", "no_face_frontal", "no_face_angle_plain", "no_face_frontal_plain",
    "frontal_failed", "frontal_missing", "unreadable_angle", "unreadable_frontal", "no_gt", "no_face_gt",
    "angle_only", "frontal_only", "neither",
)


def paired_summary(scores: ArmScores, cfg: StatsConfig) -> dict[str, Any]:
    """Headline numbers of one arm × combination (JSON-serialisable)."""
    d = scores.differences
    summary = metrics.summarize_paired(scores.angle_gt, scores.frontal_gt)
    test = stats.wilcoxon_signed_rank(d)
    result: dict[str, Any] = {
        "mean_angle_gt": _num(summary.mean_angle_gt),
        "mean_frontal_gt": _num(summary.mean_frontal_gt),
        "net_gain": _num(summary.net_gain),
        "net_gain_ci95": _ci(d, scores.subjects, cfg),
        "median_gain": _num(summary.median_gain),
        "win_rate": _num(summary.win_rate),
        "win_rate_ci95": _ci(d, scores.subjects, cfg, "win_rate"),
        "wilcoxon_statistic": _num(test.statistic),
        "wilcoxon_p": _num(test.p_value),
        "n": summary.n,
        "n_subjects": int(np.unique(scores.subjects).size),
        "mean_angle_gt_angle_only": _mean(scores.angle_only),
        "mean_frontal_gt_frontal_only": _mean(scores.frontal_only),
        "frontal_failure_statuses": dict(scores.failure_reasons),
    }
    result.update({key: int(scores.counts.get(key, 0)) for key in COUNT_KEYS})
    return result


def similarity_model(dataset: Dataset, store: EmbeddingStore, gallery: Gallery, detector: str,
                     recognizer: str) -> dict[str, Any]:
    """Angled vs GT, Angled vs Angled (same subject) and GT vs GT (different subjects) of one combination."""
    row_of = gallery.index()
    subjects, vectors, angle_gt = [], [], []
    for record in dataset.records:
        vector = store.embedding(record.image.path, detector, recognizer)
        if vector is None:
            continue
        subjects.append(record.subject)
        vectors.append(vector)
        if record.subject in row_of:
            angle_gt.append(float(vector @ gallery.embeddings[row_of[record.subject]]))
    within, n_within = (metrics.mean_within_groups(np.stack(vectors), subjects) if vectors
                        else (float("nan"), 0))
    between, n_between = metrics.mean_pairwise_similarity(gallery.embeddings)
    return {
        "angle_gt": _mean(np.asarray(angle_gt)), "n_angle_gt": len(angle_gt),
        "angle_angle": _num(within), "n_angle_angle": n_within,
        "gt_gt": _num(between), "n_gt_gt": n_between,
    }


def _verify(probes: np.ndarray, labels: np.ndarray, gallery: Gallery, fars: Sequence[float]
            ) -> tuple[dict[str, Any], metrics.VerificationResult]:
    if len(labels) == 0 or gallery.labels.size == 0:
        empty = metrics.verification_metrics(np.zeros(0), np.zeros(0), fars)
        return {"rank1": None, "auc": None, "eer": None, "tar_at_far": empty.tar_at_far, "n_genuine": 0,
                "n_impostor": 0}, empty
    genuine, impostor = metrics.genuine_impostor_scores(probes, labels, gallery.embeddings, gallery.labels)
    result = metrics.verification_metrics(genuine, impostor, fars)
    return {
        "rank1": _num(metrics.rank1_accuracy(probes, labels, gallery.embeddings, gallery.labels)),
        "auc": _num(result.auc), "eer": _num(result.eer), "tar_at_far": result.tar_at_far,
        "n_genuine": result.n_genuine, "n_impostor": result.n_impostor,
    }, result


def verification_summary(scores: ArmScores, gallery: Gallery, cfg: StatsConfig
                         ) -> tuple[dict[str, Any], dict[str, metrics.VerificationResult]]:
    """Rank-1 and genuine/impostor verification of the paired angled and frontalized probes.

    Returns:
        ({"angle": {...}, "frontal": {...}} JSON numbers, the same as VerificationResult with ROC curves).
    """
    numbers, curves = {}, {}
    for arm, probes in (("angle", scores.angle_emb), ("frontal", scores.frontal_emb)):
        numbers[arm], curves[arm] = _verify(probes, scores.subjects, gallery, cfg.far_levels)
    return numbers, curves


def _bin_row(scores: ArmScores, mask: np.ndarray, outcome_mask: np.ndarray, outcomes: list, cfg: StatsConfig
             ) -> dict[str, Any]:
    d = scores.differences[mask]
    chosen = [o for o, keep in zip(outcomes, outcome_mask) if keep]
    return {
        "n": int(mask.sum()),
        "n_subjects": int(np.unique(scores.subjects[mask]).size),
        "mean_angle_gt": _mean(scores.angle_gt[mask]),
        "mean_frontal_gt": _mean(scores.frontal_gt[mask]),
        "net_gain": _mean(d),
        "net_gain_ci95": _ci(d, scores.subjects[mask], cfg) if d.size else [None, None],
        "records": len(chosen),
        "no_face_angle": sum(o[2] == "no_face_angle" for o in chosen),
        "no_face_frontal": sum(o[3] == "no_face_frontal" for o in chosen),
    }


def pose_bin_rows(scores: ArmScores, cfg: StatsConfig) -> list[dict[str, Any]]:
    """Net gain by |yaw| bin and by signed pitch bin (empty bins omitted), with per-bin no-face counts."""
    rows: list[dict[str, Any]] = []
    all_pose = np.asarray([(o[0], o[1]) for o in scores.outcomes], dtype=np.float64).reshape(-1, 2)
    axes = (("|yaw|", np.abs(scores.yaw), np.abs(all_pose[:, 1]),
             stats.pose_bin_edges(cfg.yaw_bin_width, cfg.yaw_bin_limit, signed=False)),
            ("pitch", scores.pitch, all_pose[:, 0],
             stats.pose_bin_edges(cfg.pitch_bin_width, cfg.pitch_bin_limit, signed=True)))
    for axis, paired_angles, all_angles, edges in axes:
        paired_bins = stats.assign_bins(paired_angles, edges)
        all_bins = stats.assign_bins(all_angles, edges)
        for index, label in enumerate(stats.bin_labels(edges)):
            mask, outcome_mask = paired_bins == index, all_bins == index
            if not outcome_mask.any() and not mask.any():
                continue
            row = {"axis": axis, "bin": label, "low": _num(edges[index]), "high": _num(edges[index + 1])}
            row.update(_bin_row(scores, mask, outcome_mask, scores.outcomes, cfg))
            rows.append(row)
    return rows


def arm_difference(scores: ArmScores, reference: ArmScores, cfg: StatsConfig) -> dict[str, Any]:
    """Frontal↔GT of ``scores``'s arm minus the reference arm's, over records with a face in both."""
    common = sorted(set(scores.frontal_by_rel) & set(reference.frontal_by_rel))
    mine = np.asarray([scores.frontal_by_rel[r][1] for r in common])
    theirs = np.asarray([reference.frontal_by_rel[r][1] for r in common])
    subjects = np.asarray([scores.frontal_by_rel[r][0] for r in common], dtype=object)
    d = mine - theirs
    test = stats.wilcoxon_signed_rank(d)
    return {
        "reference": reference.arm, "n": len(common), "n_subjects": int(np.unique(subjects).size),
        "mean_reference": _mean(theirs), "mean_arm": _mean(mine), "mean_difference": _mean(d),
        "difference_ci95": _ci(d, subjects, cfg) if d.size else [None, None],
        "win_rate": _mean((d > 0).astype(float)), "wilcoxon_p": _num(test.p_value),
    }


@dataclass
class PairVerification:
    """LFW-style pair verification of one arm ("angle" = original images) under one combination."""

    numbers: dict[str, Any] = field(default_factory=dict)
    curve: metrics.VerificationResult | None = None


def pair_verification(pairs: Sequence[VerificationPair], embed_of: Any, cfg: StatsConfig) -> PairVerification:
    """AUC/EER/TAR@FAR over official pairs; ``embed_of(ref)`` gives an image's embedding or None.

    Pairs with a missing face on either side are counted (``skipped``), never scored 0.
    """
    genuine: list[float] = []
    impostor: list[float] = []
    skipped = 0
    for pair in pairs:
        first, second = embed_of(pair.first), embed_of(pair.second)
        if first is None or second is None:
            skipped += 1
            continue
        (genuine if pair.same else impostor).append(float(first @ second))
    curve = metrics.verification_metrics(np.asarray(genuine), np.asarray(impostor), cfg.far_levels)
    return PairVerification({"auc": _num(curve.auc), "eer": _num(curve.eer), "tar_at_far": curve.tar_at_far,
                             "n_genuine": len(genuine), "n_impostor": len(impostor), "skipped": skipped}, curve)
