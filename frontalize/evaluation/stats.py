"""Statistics for paired identity scores: Wilcoxon signed-rank test, cluster bootstrap CIs, pose bins.

Frames of one subject are strongly correlated (BIWI: ~1000 frames of the same person in one sequence), so the
unit of resampling is the *subject*. ``scipy.stats.bootstrap`` resamples observations; we hand it the array of
subject indices as the data and a statistic that aggregates the resampled subjects' values. The mean over
frames is then the ratio Σ sums / Σ counts of the drawn subjects (vectorised, fast for 9999 resamples), and
BCa's jackknife becomes leave-one-subject-out, which is the right jackknife for clustered data.
"""

from __future__ import annotations

import itertools
import logging
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats as sps

log = logging.getLogger(__name__)

__all__ = [
    "WilcoxonResult",
    "assign_bins",
    "bin_labels",
    "cluster_bootstrap_ci",
    "pose_bin_edges",
    "wilcoxon_signed_rank",
]


@dataclass(frozen=True)
class WilcoxonResult:
    """Two-sided Wilcoxon signed-rank test of paired differences against 0."""

    statistic: float
    p_value: float
    n: int
    n_nonzero: int


def wilcoxon_signed_rank(differences: np.ndarray) -> WilcoxonResult:
    """``scipy.stats.wilcoxon`` on the differences themselves (scipy advises passing d as ``x``).

    Returns NaN statistic and p-value when every difference is zero (the test is undefined) or there are none.
    """
    d = np.asarray(differences, dtype=np.float64)
    nonzero = int(np.count_nonzero(d))
    if nonzero == 0:
        return WilcoxonResult(float("nan"), float("nan"), int(d.size), 0)
    result = sps.wilcoxon(d)
    return WilcoxonResult(float(result.statistic), float(result.pvalue), int(d.size), nonzero)


def _cluster_sums(values: np.ndarray, clusters: Sequence[str] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    _, inverse = np.unique(np.asarray(clusters), return_inverse=True)
    sums = np.bincount(inverse, weights=values)
    counts = np.bincount(inverse).astype(np.float64)
    return sums, counts


def _run_bootstrap(
    index: np.ndarray,
    statistic: Callable[..., np.ndarray | float],
    *,
    vectorized: bool,
    n_resamples: int,
    confidence_level: float,
    method: str,
    seed: int,
) -> tuple[float, float]:
    with warnings.catch_warnings():
        # Degenerate resamples (e.g. every subject has the same mean) are handled by the caller's fallback.
        warnings.simplefilter("ignore", category=sps.DegenerateDataWarning)
        warnings.simplefilter("ignore", category=RuntimeWarning)
        result = sps.bootstrap(
            (index,), statistic, vectorized=vectorized, n_resamples=n_resamples,
            confidence_level=confidence_level, method=method, rng=np.random.default_rng(seed),
        )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def _resampled_statistic(
    values: np.ndarray, labels: np.ndarray, unique: np.ndarray, statistic: str | Callable[[np.ndarray], float]
) -> tuple[Callable[..., np.ndarray | float], bool]:
    """Statistic of a resample of cluster indices, and whether it is vectorised."""
    if isinstance(statistic, str):  # frame-weighted mean: ratio of the drawn clusters' sums and counts
        sums, counts = _cluster_sums(values, labels)

        def ratio(idx: np.ndarray, axis: int = -1) -> np.ndarray:
            return sums[idx].sum(axis=axis) / counts[idx].sum(axis=axis)

        return ratio, True
    groups = [values[labels == u] for u in unique]

    def flat(idx: np.ndarray) -> float:
        return float(statistic(np.concatenate([groups[int(i)] for i in idx])))

    return flat, False


def cluster_bootstrap_ci(
    values: np.ndarray,
    clusters: Sequence[str] | np.ndarray,
    *,
    statistic: Literal["mean", "win_rate"] | Callable[[np.ndarray], float] = "mean",
    n_resamples: int = 9999,
    confidence_level: float = 0.95,
    method: Literal["BCa", "percentile", "basic"] = "BCa",
    seed: int = 0,
) -> tuple[float, float]:
    """Confidence interval of a statistic of ``values`` by resampling whole clusters (subjects).

    Args:
        values: (N,) per-image values (e.g. paired differences).
        clusters: (N,) cluster id per value (the subject).
        statistic: "mean" (frame-weighted mean), "win_rate" (fraction of values > 0) — both vectorised — or a
            function of the flattened values of the drawn clusters (slower: one call per resample).
        n_resamples: bootstrap resamples.
        confidence_level: e.g. 0.95.
        method: scipy's CI method; when BCa cannot be computed (degenerate data) the percentile interval is
            returned instead.
        seed: seed of the resampling generator (results are reproducible).

    Returns:
        (low, high); (nan, nan) with fewer than two clusters; (v, v) when every value is the same v.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return float("nan"), float("nan")
    if statistic == "win_rate":
        v = (v > 0).astype(np.float64)
        statistic = "mean"
    labels = np.asarray(clusters)
    unique = np.unique(labels)
    if unique.size < 2:
        return float("nan"), float("nan")
    if np.all(v == v[0]) and isinstance(statistic, str):
        return float(v[0]), float(v[0])
    index = np.arange(unique.size)
    func, vectorized = _resampled_statistic(v, labels, unique, statistic)
    low, high = _run_bootstrap(index, func, vectorized=vectorized, n_resamples=n_resamples,
                               confidence_level=confidence_level, method=method, seed=seed)
    if (math.isnan(low) or math.isnan(high)) and method != "percentile":
        log.debug("bootstrap %s interval undefined, using the percentile interval", method)
        low, high = _run_bootstrap(index, func, vectorized=vectorized, n_resamples=n_resamples,
                                   confidence_level=confidence_level, method="percentile", seed=seed)
    return low, high


def pose_bin_edges(width: float, limit: float, *, signed: bool) -> np.ndarray:
    """Bin edges for pose angles: |angle| bins [0, w), [w, 2w) … [limit, ∞) or signed ones from −∞ to ∞.

    Args:
        width: bin width in degrees (e.g. 15).
        limit: last finite edge (e.g. 75 for |yaw|, 45 for signed pitch).
        signed: bins over the signed angle (symmetric around 0) instead of its magnitude.
    """
    steps = round(limit / width)
    positive = np.arange(0, steps + 1) * width
    if not signed:
        return np.concatenate([positive, [np.inf]])
    return np.concatenate([[-np.inf], -positive[:0:-1], positive, [np.inf]])


def bin_labels(edges: np.ndarray) -> list[str]:
    """Human labels of the bins between consecutive edges, e.g. "[15, 30)", "≥ 75", "< −45"."""
    labels = []
    for low, high in itertools.pairwise(edges):
        if np.isinf(low):
            labels.append(f"< {high:g}")
        elif np.isinf(high):
            labels.append(f">= {low:g}")
        else:
            labels.append(f"[{low:g}, {high:g})")
    return labels


def assign_bins(angles: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Index of the bin of each angle (−1 for NaN, i.e. unknown pose)."""
    a = np.asarray(angles, dtype=np.float64)
    index = np.searchsorted(edges, a, side="right") - 1
    index = np.clip(index, 0, len(edges) - 2)
    return np.where(np.isnan(a), -1, index)
