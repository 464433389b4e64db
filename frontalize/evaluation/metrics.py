"""Identity metrics as pure numpy functions: cosine similarity, paired differences, verification, rank-1.

Every similarity is the cosine of two L2-normalised embeddings. A face that was not detected has no embedding
and never enters these functions: the caller counts it (it is never a similarity of 0).

Verification follows the usual protocol: *genuine* scores compare a probe with its own subject's GT, *impostor*
scores compare it with every other subject's GT. ROC AUC and the ROC curve come from ``sklearn.metrics``; the
EER is read off that curve; TAR@FAR is reported only when there are enough impostor pairs to resolve that FAR
(:func:`enough_impostors`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

__all__ = [
    "PairedSummary",
    "VerificationResult",
    "cosine_similarity",
    "enough_impostors",
    "equal_error_rate",
    "far_key",
    "genuine_impostor_scores",
    "l2_normalize",
    "mean_pairwise_similarity",
    "mean_within_groups",
    "rank1_accuracy",
    "similarity_matrix",
    "summarize_paired",
    "tar_at_far",
    "verification_metrics",
]


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Row-wise L2 normalisation of (N, D) vectors (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float64)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two (N, D) arrays -> (N,)."""
    return np.sum(l2_normalize(a) * l2_normalize(b), axis=-1)


def similarity_matrix(probes: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    """All cosine similarities of (N, D) probes against (M, D) gallery vectors -> (N, M)."""
    return l2_normalize(probes) @ l2_normalize(gallery).T


@dataclass(frozen=True)
class PairedSummary:
    """Paired comparison of Frontal↔GT against Angle↔GT over the same images.

    ``d = cos(Frontal, GT) − cos(Angle, GT)`` per image; ``net_gain`` is its mean; ``win_rate`` = P(d > 0).
    """

    n: int
    mean_angle_gt: float
    mean_frontal_gt: float
    net_gain: float
    median_gain: float
    std_gain: float
    win_rate: float


def summarize_paired(angle_gt: np.ndarray, frontal_gt: np.ndarray) -> PairedSummary:
    """Summary of per-image paired differences (NaNs when the arrays are empty).

    Args:
        angle_gt: (N,) cos(Angle_i, GT) for images detected in both arms.
        frontal_gt: (N,) cos(Frontal_i, GT) for the same images, same order.
    """
    a = np.asarray(angle_gt, dtype=np.float64)
    f = np.asarray(frontal_gt, dtype=np.float64)
    if a.shape != f.shape:
        raise ValueError(f"paired arrays differ in shape: {a.shape} vs {f.shape}")
    if a.size == 0:
        nan = float("nan")
        return PairedSummary(0, nan, nan, nan, nan, nan, nan)
    d = f - a
    return PairedSummary(
        n=int(a.size),
        mean_angle_gt=float(a.mean()),
        mean_frontal_gt=float(f.mean()),
        net_gain=float(d.mean()),
        median_gain=float(np.median(d)),
        std_gain=float(d.std(ddof=1)) if d.size > 1 else float("nan"),
        win_rate=float(np.mean(d > 0)),
    )


def mean_pairwise_similarity(embeddings: np.ndarray) -> tuple[float, int]:
    """Mean cosine over all unordered pairs i < j of (N, D) vectors, in O(N·D).

    For unit vectors Σ_{i≠j} e_i·e_j = ‖Σ e_i‖² − Σ ‖e_i‖², so no N×N matrix is built (BIWI subjects have
    ~1000 frames each).

    Returns:
        (mean, number of pairs); (nan, 0) for fewer than two vectors.
    """
    e = l2_normalize(np.asarray(embeddings))
    n = e.shape[0]
    if n < 2:
        return float("nan"), 0
    total = e.sum(axis=0)
    off_diagonal = float(total @ total) - float(np.sum(e * e))
    return off_diagonal / (n * (n - 1)), n * (n - 1) // 2


def mean_within_groups(embeddings: np.ndarray, groups: Sequence[str] | np.ndarray) -> tuple[float, int]:
    """Mean cosine over all unordered pairs of vectors that share a group (pair-weighted across groups).

    Returns:
        (mean, number of pairs); (nan, 0) when no group has two members.
    """
    labels = np.asarray(groups)
    e = np.asarray(embeddings)
    total, pairs = 0.0, 0
    for label in np.unique(labels):
        mean, count = mean_pairwise_similarity(e[labels == label])
        if count:
            total += mean * count
            pairs += count
    return (total / pairs if pairs else float("nan")), pairs


def genuine_impostor_scores(
    probes: np.ndarray,
    probe_labels: Sequence[str] | np.ndarray,
    gallery: np.ndarray,
    gallery_labels: Sequence[str] | np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Genuine (probe vs own GT) and impostor (probe vs every other GT) cosine scores.

    Args:
        probes: (N, D) probe embeddings; every probe label must occur once in ``gallery_labels``.
        gallery: (G, D) one embedding per subject.

    Returns:
        (genuine (N,), impostor (N·(G−1),)).
    """
    scores = similarity_matrix(probes, gallery)
    own = np.asarray(probe_labels)[:, None] == np.asarray(gallery_labels)[None, :]
    if not np.all(own.sum(axis=1) == 1):
        raise ValueError("every probe label must appear exactly once in the gallery")
    return scores[own], scores[~own]


def rank1_accuracy(
    probes: np.ndarray,
    probe_labels: Sequence[str] | np.ndarray,
    gallery: np.ndarray,
    gallery_labels: Sequence[str] | np.ndarray,
) -> float:
    """Fraction of probes whose most similar gallery entry has their own label (closed-set rank-1)."""
    if len(probe_labels) == 0:
        return float("nan")
    best = np.argmax(similarity_matrix(probes, gallery), axis=1)
    return float(np.mean(np.asarray(gallery_labels)[best] == np.asarray(probe_labels)))


def far_key(far: float) -> str:
    """Key of a FAR level in TAR@FAR mappings: shortest exact text, e.g. 0.01 -> "0.01"."""
    return format(far, "g")


def enough_impostors(n_impostor: int, far: float) -> bool:
    """Whether TAR@FAR=``far`` is resolvable: at least max(20, ⌈1/far⌉) impostor pairs.

    One false accept among fewer than 1/far impostors already exceeds the FAR, so the TAR at that FAR would be
    read off a single point; 20 is InsightFace's own floor (``gui/core/evaluation.py::tar_at_far``).
    """
    return n_impostor >= max(20, math.ceil(1.0 / far - 1e-9))


def tar_at_far(fpr: np.ndarray, tpr: np.ndarray, far: float) -> float:
    """True-accept rate at the largest ROC operating point whose false-accept rate is ≤ ``far``."""
    allowed = np.asarray(fpr) <= far + 1e-12
    return float(np.max(np.asarray(tpr)[allowed])) if np.any(allowed) else 0.0


def equal_error_rate(fpr: np.ndarray, tpr: np.ndarray, thresholds: np.ndarray) -> tuple[float, float]:
    """EER (where false-reject = false-accept) by linear interpolation between ROC points.

    Returns:
        (eer, threshold at the crossing).
    """
    fnr = 1.0 - np.asarray(tpr, dtype=np.float64)
    fpr = np.asarray(fpr, dtype=np.float64)
    gap = fnr - fpr  # decreasing along the ROC (thresholds descending)
    idx = int(np.argmax(gap <= 0)) if np.any(gap <= 0) else len(gap) - 1
    if idx == 0 or gap[idx] == 0:
        return float((fnr[idx] + fpr[idx]) / 2), float(thresholds[idx])
    g0, g1 = gap[idx - 1], gap[idx]
    w = g0 / (g0 - g1)
    eer = fpr[idx - 1] + w * (fpr[idx] - fpr[idx - 1])
    t0, t1 = thresholds[idx - 1], thresholds[idx]
    t0 = t1 + 1.0 if not np.isfinite(t0) else t0
    return float(eer), float(t0 + w * (t1 - t0))


@dataclass(frozen=True)
class VerificationResult:
    """Genuine-vs-impostor verification figures; ``None`` marks a figure the data cannot support."""

    n_genuine: int
    n_impostor: int
    auc: float | None
    eer: float | None
    eer_threshold: float | None
    tar_at_far: dict[str, float | None] = field(default_factory=dict)
    fpr: np.ndarray = field(default_factory=lambda: np.zeros(0))
    tpr: np.ndarray = field(default_factory=lambda: np.zeros(0))


def verification_metrics(
    genuine: np.ndarray, impostor: np.ndarray, far_levels: Sequence[float] = (1e-2, 1e-3)
) -> VerificationResult:
    """ROC AUC, EER and TAR@FAR of genuine vs impostor scores (higher score = same identity).

    TAR@FAR entries are keyed by :func:`far_key` ("0.01") and are None when :func:`enough_impostors` fails;
    all figures are None when either class is empty.
    """
    g = np.asarray(genuine, dtype=np.float64)
    i = np.asarray(impostor, dtype=np.float64)
    keys = [far_key(far) for far in far_levels]
    if g.size == 0 or i.size == 0:
        return VerificationResult(int(g.size), int(i.size), None, None, None, dict.fromkeys(keys))
    labels = np.concatenate([np.ones(g.size), np.zeros(i.size)])
    scores = np.concatenate([g, i])
    fpr, tpr, thresholds = roc_curve(labels, scores, drop_intermediate=False)
    eer, threshold = equal_error_rate(fpr, tpr, thresholds)
    tars = {
        key: (tar_at_far(fpr, tpr, far) if enough_impostors(i.size, far) else None)
        for key, far in zip(keys, far_levels)
    }
    return VerificationResult(
        n_genuine=int(g.size),
        n_impostor=int(i.size),
        auc=float(roc_auc_score(labels, scores)),
        eer=eer,
        eer_threshold=threshold,
        tar_at_far=tars,
        fpr=fpr,
        tpr=tpr,
    )
