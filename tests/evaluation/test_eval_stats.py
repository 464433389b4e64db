"""Wilcoxon and cluster bootstrap against scipy; pose bins by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from frontalize.evaluation import stats


def test_wilcoxon_matches_scipy() -> None:
    d = np.array([0.12, -0.03, 0.2, 0.05, -0.07, 0.3, 0.01, 0.15])
    result = stats.wilcoxon_signed_rank(d)
    reference = sps.wilcoxon(d)
    assert result.statistic == pytest.approx(reference.statistic)
    assert result.p_value == pytest.approx(reference.pvalue)
    assert (result.n, result.n_nonzero) == (8, 8)
    # by hand: ranks of |d| -> negatives are |-0.03| (rank 2) and |-0.07| (rank 4): W = min(W+, W-) = 6
    assert result.statistic == pytest.approx(6.0)


def test_wilcoxon_all_zero_is_undefined() -> None:
    result = stats.wilcoxon_signed_rank(np.zeros(5))
    assert math.isnan(result.p_value) and result.n_nonzero == 0


def test_singleton_clusters_equal_scipy_bootstrap() -> None:
    values = np.random.default_rng(3).normal(0.1, 0.2, size=30)
    for method in ("percentile", "BCa"):
        labels = np.array([f"{i:02d}" for i in range(30)])  # sorted like the values, so draws map 1:1
        mine = stats.cluster_bootstrap_ci(values, labels, n_resamples=999, method=method, seed=7)
        reference = sps.bootstrap((values,), np.mean, n_resamples=999, method=method,
                                  rng=np.random.default_rng(7)).confidence_interval
        assert mine == pytest.approx((reference.low, reference.high), rel=1e-9)


def test_cluster_resampling_by_hand() -> None:
    # Two subjects: A has values {1, 1, 1} (sum 3, n 3), B has {0} (sum 0, n 1). Any resample is AA (mean 1),
    # BB (0) or AB/BA (3/4). The percentile interval therefore lies within [0, 1] and hits both ends with
    # enough resamples at a wide level.
    values = np.array([1.0, 1.0, 1.0, 0.0])
    subjects = np.array(["A", "A", "A", "B"])
    low, high = stats.cluster_bootstrap_ci(values, subjects, n_resamples=2000, confidence_level=0.99,
                                           method="percentile", seed=0)
    assert (low, high) == (0.0, 1.0)
    generic = stats.cluster_bootstrap_ci(values, subjects, statistic=np.mean, n_resamples=200,
                                         confidence_level=0.99, method="percentile", seed=0)
    assert set(np.round(generic, 6)) <= {0.0, 0.75, 1.0}


def test_cluster_ci_wider_than_frame_ci_for_correlated_frames() -> None:
    rng = np.random.default_rng(5)
    subject_effect = rng.normal(0, 0.2, size=8)
    subjects = np.repeat(np.arange(8), 50)
    values = subject_effect[subjects] + rng.normal(0, 0.02, size=subjects.size)
    cluster = stats.cluster_bootstrap_ci(values, subjects.astype(str), n_resamples=999, seed=1)
    frames = stats.cluster_bootstrap_ci(values, np.arange(values.size).astype(str), n_resamples=999, seed=1)
    assert (cluster[1] - cluster[0]) > 3 * (frames[1] - frames[0])


def test_win_rate_constant_and_degenerate_inputs() -> None:
    values = np.array([0.2, -0.1, 0.3, 0.4])
    subjects = np.array(["a", "b", "c", "d"])
    low, high = stats.cluster_bootstrap_ci(values, subjects, statistic="win_rate", n_resamples=500,
                                           method="percentile")
    assert 0.0 <= low <= 0.75 <= high <= 1.0
    assert stats.cluster_bootstrap_ci(np.full(4, 0.3), subjects) == (0.3, 0.3)
    assert all(math.isnan(v) for v in stats.cluster_bootstrap_ci(values, np.full(4, "a")))
    assert all(math.isnan(v) for v in stats.cluster_bootstrap_ci(np.zeros(0), np.zeros(0)))
    # BCa is undefined when every subject mean is equal: falls back to the percentile interval
    tied = stats.cluster_bootstrap_ci(np.array([0.1, 0.3, 0.3, 0.1]), np.array(["a", "a", "b", "b"]),
                                      n_resamples=100)
    assert tied == pytest.approx((0.2, 0.2))


def test_pose_bins() -> None:
    yaw_edges = stats.pose_bin_edges(15, 75, signed=False)
    assert yaw_edges.tolist() == [0, 15, 30, 45, 60, 75, np.inf]
    assert stats.bin_labels(yaw_edges)[0] == "[0, 15)" and stats.bin_labels(yaw_edges)[-1] == ">= 75"
    pitch_edges = stats.pose_bin_edges(15, 45, signed=True)
    assert pitch_edges.tolist() == [-np.inf, -45, -30, -15, 0, 15, 30, 45, np.inf]
    assert stats.bin_labels(pitch_edges)[0] == "< -45"
    bins = stats.assign_bins(np.array([0.0, 14.9, 15.0, 80.0, np.nan]), yaw_edges)
    assert bins.tolist() == [0, 0, 1, 5, -1]
    assert stats.assign_bins(np.array([-50.0, -0.1, 0.0, 44.0, 90.0]), pitch_edges).tolist() == [0, 3, 4, 6, 7]
