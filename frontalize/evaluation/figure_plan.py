"""Which figures a run gets and which images go into them (drawing itself is in :mod:`.figures`).

Per output tree × combination: the triplet grid (best / median / worst net gain), the LFW-style three-row grid
(columns spread evenly over the sorted net gains, so it shows the whole range) and the ordered-similarity strip
(the median-gain probe, angled and frontalized, against every GT). Per combination: net gain by pose bin and ROC
curves over all trees. Per tree: a sample of input → output pairs. Selections are deterministic.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from frontalize.evaluation import figures
from frontalize.evaluation.figures import BinSeries, RocSeries, StripEntry, Triplet
from frontalize.evaluation.metrics import similarity_matrix
from frontalize.evaluation.results import ArmResult, CombinationResult, EvaluationResults

log = logging.getLogger(__name__)

__all__ = ["FigureRef", "make_figures"]


@dataclass(frozen=True)
class FigureRef:
    """A written figure: kind, file and a caption for the report."""

    kind: str
    path: Path
    caption: str


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "x"


def _spread(n_items: int, count: int) -> list[int]:
    """``count`` indices spread evenly over ``range(n_items)`` (all of them when fewer)."""
    if n_items <= count:
        return list(range(n_items))
    return sorted({round(v) for v in np.linspace(0, n_items - 1, count)})


def _triplet(results: EvaluationResults, combo: CombinationResult, arm: ArmResult, index: int, title: str) -> Triplet:
    scores = arm.scores
    rel = scores.rels[index]
    subject = str(scores.subjects[index])
    return Triplet(title=title, angle=str(results.dataset.root / rel), frontal=str(arm.arm.outputs[rel]),
                   gt=combo.gallery.paths[subject], sim_angle=float(scores.angle_gt[index]),
                   sim_frontal=float(scores.frontal_gt[index]))


def _order(arm: ArmResult) -> np.ndarray:
    return np.argsort(arm.scores.differences, kind="stable")


def _strip_entries(probe: np.ndarray, subject: str, combo: CombinationResult, size: int) -> list[StripEntry]:
    sims = similarity_matrix(probe[None, :], combo.gallery.embeddings)[0]
    order = list(np.argsort(-sims, kind="stable"))
    labels = [str(v) for v in combo.gallery.labels]
    own = labels.index(subject)
    chosen = order[:size]
    if own not in chosen:
        chosen = [*chosen[:size - 1], own]
    return [StripEntry(combo.gallery.paths[labels[i]], f"#{order.index(i) + 1} {labels[i]}", float(sims[i]),
                       i == own) for i in chosen]


def _arm_figures(results: EvaluationResults, combo: CombinationResult, arm: ArmResult, folder: Path) -> list[FigureRef]:
    cfg = results.config.figures
    scores = arm.scores
    if scores.n == 0:
        return []
    tag = f"{_slug(arm.arm.name)}__{_slug(combo.label)}"
    order = _order(arm)
    picks = [("best", order[-1]), ("median", order[len(order) // 2]), ("worst", order[0])]
    triplets = [_triplet(results, combo, arm, int(i), f"{name} (gain {scores.differences[i]:+.3f})")
                for name, i in picks]
    refs = [FigureRef("triplets", figures.triplet_grid(
        folder / f"triplets__{tag}.png", triplets, f"{arm.arm.name} · {combo.label}: best / median / worst net gain",
        thumb=cfg.thumb_px, dpi=cfg.dpi), f"Angle → Frontal → GT, best/median/worst net gain ({arm.arm.name}, "
        f"{combo.label})")]
    columns = [_triplet(results, combo, arm, int(order[i]), str(scores.subjects[order[i]]))
               for i in _spread(scores.n, cfg.grid_columns)]
    refs.append(FigureRef("grid", figures.three_row_grid(
        folder / f"grid__{tag}.png", columns, f"{arm.arm.name} · {combo.label}: angled / frontalized / GT",
        thumb=cfg.thumb_px, dpi=cfg.dpi), f"Angled / frontalized / GT grid ({arm.arm.name}, {combo.label})"))
    median = int(order[len(order) // 2])
    subject = str(scores.subjects[median])
    rel = scores.rels[median]
    rows = [("angled probe", str(results.dataset.root / rel),
             _strip_entries(scores.angle_emb[median], subject, combo, cfg.strip_size)),
            ("frontalized probe", str(arm.arm.outputs[rel]),
             _strip_entries(scores.frontal_emb[median], subject, combo, cfg.strip_size))]
    refs.append(FigureRef("strip", figures.similarity_strip(
        folder / f"strip__{tag}.png", rows, f"{rel}: similarity to every GT, sorted (own GT framed)",
        thumb=cfg.thumb_px, dpi=cfg.dpi), f"Ordered-similarity strip ({arm.arm.name}, {combo.label})"))
    return refs


def _pose_series(combo: CombinationResult) -> list[BinSeries]:
    series = []
    for arm in combo.arms:
        for axis in ("|yaw|", "pitch"):
            rows = [r for r in arm.pose_bins if r["axis"] == axis and r["n"] > 0]
            if rows:
                starts = [-np.inf if r["low"] is None else r["low"] for r in rows]
                series.append(BinSeries(arm.arm.name, axis, [r["bin"] for r in rows], starts,
                                        [r["net_gain"] for r in rows], [r["net_gain_ci95"][0] for r in rows],
                                        [r["net_gain_ci95"][1] for r in rows]))
    return series


def _roc_series(combo: CombinationResult) -> list[RocSeries]:
    series = []
    for position, arm in enumerate(combo.arms):
        if position == 0:
            curve = arm.curves["angle"]
            series.append(RocSeries("angled probes", curve.fpr, curve.tpr, curve.auc, dashed=True))
        curve = arm.curves["frontal"]
        series.append(RocSeries(f"frontalized: {arm.arm.name}", curve.fpr, curve.tpr, curve.auc))
    return series


def _combination_figures(results: EvaluationResults, combo: CombinationResult, folder: Path) -> list[FigureRef]:
    cfg = results.config.figures
    tag = _slug(combo.label)
    refs = []
    series = _pose_series(combo)
    if series:
        refs.append(FigureRef("pose_bins", figures.pose_bin_plot(
            folder / f"pose_bins__{tag}.png", series, f"{combo.label}: net gain by pose bin (95% CI over subjects)",
            dpi=cfg.dpi), f"Net gain by pose bin ({combo.label}; pose {results.pose_source})"))
    roc = _roc_series(combo)
    if any(s.fpr.size for s in roc):
        refs.append(FigureRef("roc", figures.roc_plot(
            folder / f"roc__{tag}.png", roc, f"{combo.label}: genuine vs impostor", dpi=cfg.dpi),
            f"ROC curves ({combo.label})"))
    return refs


def _pairs_figure(results: EvaluationResults, arm_index: int, folder: Path) -> list[FigureRef]:
    cfg = results.config.figures
    arm = results.arms[arm_index]
    records = [r for r in results.dataset.records if r.image.rel in arm.outputs]
    if not records:
        return []
    sample = [records[i] for i in _spread(len(records), cfg.grid_columns)]
    pairs = [(str(r.image.path), str(arm.outputs[r.image.rel]), r.image.rel) for r in sample]
    path = figures.input_output_pairs(folder / f"pairs__{_slug(arm.name)}.png", pairs,
                                      f"{arm.name}: input → output", columns=min(4, len(pairs)),
                                      thumb=cfg.thumb_px, dpi=cfg.dpi)
    return [FigureRef("pairs", path, f"Input → output sample ({arm.name})")]


def make_figures(results: EvaluationResults, folder: Path) -> list[FigureRef]:
    """Draw every figure of the run into ``folder``; returns them in report order."""
    refs: list[FigureRef] = []
    for combo in results.combinations:
        for arm in combo.arms:
            refs += _arm_figures(results, combo, arm, folder)
        refs += _combination_figures(results, combo, folder)
    for index in range(len(results.arms)):
        refs += _pairs_figure(results, index, folder)
    log.info("%d figures written to %s", len(refs), folder)
    return refs
