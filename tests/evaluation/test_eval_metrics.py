"""Metrics against hand-computed values and sklearn/brute-force references."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from frontalize.evaluation import metrics


def _unit(rng: np.random.Generator, n: int, d: int = 8) -> np.ndarray:
    return metrics.l2_normalize(rng.normal(size=(n, d)))


def test_cosine_by_hand() -> None:
    a = np.array([[1.0, 0.0], [1.0, 1.0], [3.0, 4.0]])
    b = np.array([[0.0, 2.0], [2.0, 2.0], [-3.0, -4.0]])
    assert metrics.cosine_similarity(a, b) == pytest.approx([0.0, 1.0, -1.0])
    assert metrics.similarity_matrix(a[:1], b)[0] == pytest.approx([0.0, math.sqrt(0.5), -0.6])
    assert metrics.l2_normalize(np.zeros((1, 3))) == pytest.approx(np.zeros((1, 3)))


def test_summarize_paired_by_hand() -> None:
    angle = np.array([0.5, 0.6, 0.7, 0.8])
    frontal = np.array([0.6, 0.5, 0.9, 0.8])  # d = +0.1, -0.1, +0.2, 0
    s = metrics.summarize_paired(angle, frontal)
    assert (s.n, s.mean_angle_gt, s.mean_frontal_gt) == (4, pytest.approx(0.65), pytest.approx(0.7))
    assert s.net_gain == pytest.approx(0.05) and s.median_gain == pytest.approx(0.05)
    assert s.win_rate == pytest.approx(0.5)
    assert s.std_gain == pytest.approx(np.std([0.1, -0.1, 0.2, 0.0], ddof=1))
    assert math.isnan(metrics.summarize_paired(np.zeros(0), np.zeros(0)).net_gain)
    with pytest.raises(ValueError, match="shape"):
        metrics.summarize_paired(np.zeros(2), np.zeros(3))


def test_mean_pairwise_matches_brute_force() -> None:
    e = _unit(np.random.default_rng(0), 7)
    brute = [float(e[i] @ e[j]) for i, j in itertools.combinations(range(7), 2)]
    mean, pairs = metrics.mean_pairwise_similarity(e)
    assert pairs == 21 and mean == pytest.approx(np.mean(brute))
    assert metrics.mean_pairwise_similarity(e[:1])[1] == 0


def test_mean_within_groups_is_pair_weighted() -> None:
    e = _unit(np.random.default_rng(1), 6)
    groups = ["a", "a", "a", "b", "b", "c"]
    pairs = [(i, j) for i, j in itertools.combinations(range(6), 2) if groups[i] == groups[j]]
    mean, count = metrics.mean_within_groups(e, groups)
    assert count == 4 and mean == pytest.approx(np.mean([e[i] @ e[j] for i, j in pairs]))


def test_genuine_impostor_and_rank1() -> None:
    gallery = np.eye(3)
    probes = np.array([[0.9, 0.1, 0.0], [0.0, 0.2, 0.9], [0.6, 0.5, 0.0]])
    labels = ["a", "c", "b"]
    genuine, impostor = metrics.genuine_impostor_scores(probes, labels, gallery, ["a", "b", "c"])
    sims = metrics.similarity_matrix(probes, gallery)
    assert genuine == pytest.approx([sims[0, 0], sims[1, 2], sims[2, 1]])
    assert impostor.size == 6
    assert metrics.rank1_accuracy(probes, labels, gallery, ["a", "b", "c"]) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="exactly once"):
        metrics.genuine_impostor_scores(probes, ["a", "z", "b"], gallery, ["a", "b", "c"])


def test_verification_by_hand() -> None:
    genuine = np.array([0.9, 0.8, 0.4])
    impostor = np.array([0.5, 0.3, 0.2, 0.1])
    result = metrics.verification_metrics(genuine, impostor, far_levels=(0.25,))
    # 11 of 12 genuine/impostor orderings are correct.
    assert result.auc == pytest.approx(11 / 12)
    labels = np.r_[np.ones(3), np.zeros(4)]
    assert result.auc == pytest.approx(roc_auc_score(labels, np.r_[genuine, impostor]))
    # Between thresholds 0.8 (FNR 1/3, FPR 0) and 0.5 (FNR 1/3, FPR 1/4) ... crossing: EER within [1/4, 1/3].
    assert 0.25 <= result.eer <= 1 / 3
    assert result.tar_at_far["0.25"] is None  # only 4 impostors < max(20, 1/FAR)


def test_eer_interpolation_exact() -> None:
    # ROC points (fpr, tpr): (0, 0), (0, 0.5), (0.5, 0.5), (0.5, 1), (1, 1): FNR-FPR goes 1, .5, 0 ... -> EER .5?
    fpr = np.array([0.0, 0.0, 0.5, 0.5, 1.0])
    tpr = np.array([0.0, 0.5, 0.5, 1.0, 1.0])
    thresholds = np.array([np.inf, 0.9, 0.7, 0.5, 0.1])
    eer, threshold = metrics.equal_error_rate(fpr, tpr, thresholds)
    assert eer == pytest.approx(0.5) and threshold == pytest.approx(0.7)
    fpr2 = np.array([0.0, 0.2, 0.6])
    tpr2 = np.array([0.0, 0.6, 1.0])  # gap = 1, 0.2, -0.6 -> crossing at w = 0.25 between points 1 and 2
    eer2, _ = metrics.equal_error_rate(fpr2, tpr2, np.array([np.inf, 0.5, 0.1]))
    assert eer2 == pytest.approx(0.2 + 0.25 * 0.4)


def test_tar_at_far_and_enough_impostors() -> None:
    fpr = np.array([0.0, 0.001, 0.01, 0.1, 1.0])
    tpr = np.array([0.3, 0.5, 0.7, 0.9, 1.0])
    assert metrics.tar_at_far(fpr, tpr, 0.01) == pytest.approx(0.7)
    assert metrics.tar_at_far(fpr, tpr, 0.005) == pytest.approx(0.5)
    assert metrics.enough_impostors(100, 1e-2) and not metrics.enough_impostors(99, 1e-2)
    assert not metrics.enough_impostors(19, 0.5) and metrics.enough_impostors(1000, 1e-3)
    big = metrics.verification_metrics(np.full(10, 0.9), np.linspace(-0.5, 0.5, 1000), far_levels=(1e-2, 1e-3))
    assert big.tar_at_far == {"0.01": 1.0, "0.001": 1.0} and big.auc == 1.0 and big.eer == pytest.approx(0.0)


def test_verification_empty_classes() -> None:
    result = metrics.verification_metrics(np.array([0.5]), np.zeros(0))
    assert result.auc is None and result.eer is None and result.tar_at_far == {"0.01": None, "0.001": None}
