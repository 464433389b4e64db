"""Identity guard in the evaluation report: guarded vs unguarded output trees and the identity/frontality trade-off.

A *guarded* tree is an ``--frontal-dir`` whose ``manifest.jsonl`` rows carry the ``guard`` object written by
``inference.py`` with ``guard.enabled``; every other tree is *unguarded*. With at least one guarded tree the
report gains (:class:`GuardSection`):

* **comparison** — per combination and tree: net gain (Frontal↔GT − Angle↔GT) with its cluster-bootstrap CI
  (the numbers of Table 1), and the guard's fallback count;
* **paired difference** — each guarded tree minus each unguarded tree, per image (Frontal↔GT), with CI, win rate
  and Wilcoxon p, on images with a face in both;
* **residual pose** — distribution of the output's residual |yaw| and |pitch| (the ``output_pose`` that
  inference measured with the run's pose source, e.g. the LivePortrait motion extractor; for a guarded tree, the
  chosen candidate's);
* **wins** — how often each candidate (name, α, expression, stitching, stage) was chosen, and the fallbacks;
* **trade-off** — mean Frontal↔GT and mean residual |yaw| as α varies, one curve per candidate kind
  (expression / stitching / stage). Source: the *dumped candidates* (``inference.py --guard-dump``) when their
  files exist — every candidate of every image is embedded with the evaluation recognizer, so each α point
  covers the same images; otherwise the *chosen α distribution* — images grouped by the α the guard chose, using
  the chosen output (a selection effect: each point covers different images). The point α = 0 is the angled
  input itself (Angle↔GT, and the source pose inference measured).

Candidates of mesh runs carry ``symmetry`` instead of ``expression`` and ``stitching``: their kinds are ``sym`` /
``nosym`` (``+stage``), and the wins table counts the symmetry axis.
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from frontalize.datasets.base import Dataset, Record
from frontalize.evaluation.analysis import arm_difference
from frontalize.evaluation.figure_plan import FigureRef
from frontalize.evaluation.guard_figures import TradeoffSeries, residual_ecdf_plot, tradeoff_plot
from frontalize.evaluation.report import SectionOutput
from frontalize.evaluation.results import CombinationResult, EvaluationResults
from frontalize.evaluation.tables import Column, Table
from frontalize.evaluation.trees import FrontalArm
from frontalize.io.manifest import latest_rows, read_manifest

log = logging.getLogger(__name__)

__all__ = ["GuardSection", "TreeRow", "read_tree_rows", "residual_summary", "tradeoff_rows", "win_rows"]

SOURCE_DUMPS = "dumped candidates"
SOURCE_CHOSEN = "chosen α distribution"
_AXES = ("candidate", "alpha", "expression", "stitching", "symmetry", "stage")
"""Candidate properties counted in the wins table (a backend's candidates carry some of them: LivePortrait's
expression and stitching, the mesh backend's symmetry)."""


@dataclass(frozen=True)
class TreeRow:
    """The manifest row of one dataset record in one output tree (status ok).

    Attributes:
        rel: dataset relative path of the angled input.
        source_pose: pose of the input crop measured by inference (degrees), or None.
        output_pose: residual pose of the written output, or None.
        guard: the row's ``guard`` object (None in an unguarded tree).
        dumps: candidate name → dumped candidate file that exists.
    """

    rel: str
    source_pose: Mapping[str, float] | None
    output_pose: Mapping[str, float] | None
    guard: Mapping[str, Any] | None = None
    dumps: Mapping[str, Path] = field(default_factory=dict)

    @property
    def chosen(self) -> Mapping[str, Any] | None:
        """The chosen candidate's record (None in an unguarded tree)."""
        if self.guard is None:
            return None
        return self.guard["candidates"][int(self.guard["chosen"])]


def read_tree_rows(arm: FrontalArm) -> dict[str, TreeRow]:
    """Rows (status ok) of the tree's manifest keyed by dataset rel; matched through the output files the
    evaluator found for the dataset (``arm.outputs``), so variant and crop/full sub-trees map correctly."""
    path = arm.root / "manifest.jsonl"
    if not path.is_file():
        return {}
    by_file = {Path(p).resolve(): rel for rel, p in arm.outputs.items()}
    found: dict[str, TreeRow] = {}
    for row in latest_rows(read_manifest(path)).values():
        if row.get("status") != "ok":
            continue
        files = [f for tree in (row.get("outputs") or {}).values() for f in tree.values()]
        rel = next((by_file[p] for p in ((arm.root / f).resolve() for f in files) if p in by_file), None)
        if rel is None:
            continue
        guard = row.get("guard") if isinstance(row.get("guard"), dict) else None
        dumps = {name: arm.root / file for name, file in (row.get("guard_dumps") or {}).items()
                 if (arm.root / file).is_file()}
        found[rel] = TreeRow(rel, row.get("source_pose"), row.get("output_pose"), guard, dumps)
    return found


# ---- pure aggregation --------------------------------------------------------------------------------------------
def _num(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def residual_summary(poses: Iterable[Mapping[str, float] | None], max_yaw: float | None = None,
                     max_pitch: float | None = None) -> dict[str, Any]:
    """Distribution of residual |yaw| and |pitch| (degrees) of outputs; unknown poses are counted apart.

    Returns:
        n, n_unknown, mean / median / p90 / max |yaw|, mean / p90 |pitch|, and the share within the limits
        (None when no limits are given).
    """
    everything = list(poses)
    known = [p for p in everything if p is not None]
    unknown = len(everything) - len(known)
    yaw = np.abs(np.asarray([p["yaw"] for p in known], dtype=float))
    pitch = np.abs(np.asarray([p["pitch"] for p in known], dtype=float))
    result: dict[str, Any] = {"n": len(known), "n_unknown": unknown}
    for name, values in (("yaw", yaw), ("pitch", pitch)):
        for label, quantile in (("median", 50.0), ("p90", 90.0), ("max", 100.0)):
            result[f"{label}_abs_{name}"] = _num(float(np.percentile(values, quantile))) if values.size else None
        result[f"mean_abs_{name}"] = _num(float(np.mean(values))) if values.size else None
    within = None
    if max_yaw is not None and max_pitch is not None and yaw.size:
        within = float(np.mean((yaw <= max_yaw) & (pitch <= max_pitch)))
    result["within_limits"] = within
    return result


def win_rows(guards: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """How often each candidate and each candidate property was chosen, and the fallbacks (by reason)."""
    guards = list(guards)
    counts: dict[str, Counter[str]] = {axis: Counter() for axis in (*_AXES, "fallback")}
    for guard in guards:
        chosen = guard["candidates"][int(guard["chosen"])]
        counts["candidate"][str(chosen["name"])] += 1
        counts["alpha"][f"{float(chosen['alpha']):.2f}"] += 1
        if "expression" in chosen:
            counts["expression"][str(chosen["expression"])] += 1
        for axis in ("stitching", "symmetry"):
            if axis in chosen:
                counts[axis]["on" if chosen[axis] else "off"] += 1
        counts["stage"][str(chosen.get("stage") or "none")] += 1
        counts["fallback"][str(guard.get("fallback_reason")) if guard.get("fallback") else "no"] += 1
    total = len(guards)
    return [{"axis": axis, "value": value, "wins": wins, "share": wins / total if total else None}
            for axis, counter in counts.items() for value, wins in sorted(counter.items(), key=lambda kv: -kv[1])]


@dataclass(frozen=True)
class TradeoffPoint:
    """One (image, candidate) observation: kind label, α, Frontal↔GT (None = no face) and residual |yaw|."""

    kind: str
    alpha: float
    similarity: float | None
    abs_yaw: float | None


def tradeoff_rows(points: Iterable[TradeoffPoint]) -> list[dict[str, Any]]:
    """Mean Frontal↔GT (over observations with a face) and mean residual |yaw| per (kind, α), α ascending."""
    groups: dict[tuple[str, float], list[TradeoffPoint]] = defaultdict(list)
    for point in points:
        groups[(point.kind, point.alpha)].append(point)
    rows = []
    for (kind, alpha), items in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        sims = [p.similarity for p in items if p.similarity is not None]
        yaws = [p.abs_yaw for p in items if p.abs_yaw is not None]
        rows.append({"kind": kind, "alpha": alpha, "n": len(items), "n_face": len(sims),
                     "mean_frontal_gt": float(np.mean(sims)) if sims else None,
                     "mean_abs_residual_yaw": float(np.mean(yaws)) if yaws else None})
    return rows


def _kind(candidate: Mapping[str, Any]) -> str:
    """Curve label of a candidate: ``keep/stitch[+stage]`` (LivePortrait) or ``sym|nosym[+stage]`` (mesh)."""
    stage = f"+{candidate['stage']}" if candidate.get("stage") else ""
    if "symmetry" in candidate:
        return f"{'sym' if candidate['symmetry'] else 'nosym'}{stage}"
    expression = "keep" if candidate["expression"] == "keep" else "neutral"
    return f"{expression}/{'stitch' if candidate['stitching'] else 'nostitch'}{stage}"


def _abs_yaw(pose: Mapping[str, Any] | None, key: str = "yaw") -> float | None:
    value = None if pose is None else pose.get(key)
    return None if value is None else abs(float(value))


# ---- the report section ------------------------------------------------------------------------------------------
def _cosine(vector: np.ndarray | None, gt: np.ndarray) -> float | None:
    return None if vector is None else float(vector @ gt)


class GuardSection:
    """Report section comparing guarded and unguarded output trees (see module docstring).

    Its dumped candidates join the evaluator's detection + embedding pass through :meth:`image_paths`.
    """

    name = "guard"

    def __init__(self) -> None:
        self._rows: dict[str, dict[str, TreeRow]] = {}

    def rows(self, arm: FrontalArm) -> dict[str, TreeRow]:
        """Manifest rows of ``arm`` by dataset rel (read once)."""
        if arm.name not in self._rows:
            self._rows[arm.name] = read_tree_rows(arm)
        return self._rows[arm.name]

    def limits(self, guarded: Sequence[FrontalArm]) -> tuple[float, float]:
        """(max |yaw|, max |pitch|) of the first guarded tree's guard settings."""
        first = next(row.guard for row in self.rows(guarded[0]).values() if row.guard)
        return float(first["max_residual_yaw"]), float(first["max_residual_pitch"])

    def image_paths(self, dataset: Dataset, arms: Sequence[FrontalArm]) -> list[Path]:
        """Dumped candidate files of the dataset's records in every guarded tree."""
        del dataset  # rows are already restricted to the dataset's records by read_tree_rows
        return [path for arm in arms for row in self.rows(arm).values() if row.guard for path in row.dumps.values()]

    def build(self, results: EvaluationResults, out_dir: Path) -> SectionOutput | None:
        """Tables, figures and summary of the guard comparison (None when no tree was guarded)."""
        guarded = [arm for arm in results.arms if any(row.guard for row in self.rows(arm).values())]
        if not guarded:
            return None
        unguarded = [arm for arm in results.arms if arm not in guarded]
        records = {record.image.rel: record for record in results.dataset.records}
        tradeoff, sources = self._tradeoff(results, guarded, records)
        tables = [self._comparison(results, guarded), self._paired(results, guarded, unguarded),
                  self._residuals(results.arms, guarded), self._wins(guarded), tradeoff]
        figures = self._figures(results, out_dir / "figures", tradeoff, guarded) if results.config.figures.enabled \
            else []
        names = {"guarded": [a.name for a in guarded], "unguarded": [a.name for a in unguarded]}
        summary = {**names, "tradeoff_source": sources, **{t.name: t.to_json()["rows"] for t in tables}}
        return SectionOutput("Identity guard: guarded vs unguarded", self._markdown(names, sources), tables,
                             figures, summary)

    # ---- tables --------------------------------------------------------------------------------------------------
    def _comparison(self, results: EvaluationResults, guarded: Sequence[FrontalArm]) -> Table:
        rows = []
        for combo in results.combinations:
            for arm_result in combo.arms:
                arm = arm_result.arm
                guards = [row.guard for row in self.rows(arm).values() if row.guard]
                rows.append({"combination": combo.label, "arm": arm.name,
                             "guarded": "yes" if arm in guarded else "no", **arm_result.summary,
                             "fallbacks": sum(bool(g.get("fallback")) for g in guards) if guards else None})
        columns = [Column("combination", "Combination", "s"), Column("arm", "Output tree", "s"),
                   Column("guarded", "Guarded", "s"), Column("mean_angle_gt", "Mean(Angle↔GT)"),
                   Column("mean_frontal_gt", "Mean(Frontal↔GT)"), Column("net_gain", "Net gain", "+3"),
                   Column("net_gain_ci95", "95% CI (subjects)", "ci"), Column("win_rate", "Win rate", "pct"),
                   Column("n", "N", "d"), Column("fallbacks", "Guard fallbacks", "d")]
        return Table("guard_comparison", "Guard G1 — Net gain of guarded and unguarded trees", columns, rows,
                     ["Same numbers as Table 1; a fallback is an image where no candidate met the residual-pose "
                      "limits (or none had a face) and the most frontal candidate was written."])

    def _paired(self, results: EvaluationResults, guarded: Sequence[FrontalArm],
                unguarded: Sequence[FrontalArm]) -> Table:
        rows = []
        for combo in results.combinations:
            by_name = {a.arm.name: a for a in combo.arms}
            for g in guarded:
                for u in unguarded:
                    diff = arm_difference(by_name[g.name].scores, by_name[u.name].scores, results.config.stats)
                    rows.append({"combination": combo.label, "guarded": g.name, "unguarded": u.name, **diff})
        columns = [Column("combination", "Combination", "s"), Column("guarded", "Guarded tree", "s"),
                   Column("unguarded", "Unguarded tree", "s"), Column("mean_reference", "Unguarded F↔GT"),
                   Column("mean_arm", "Guarded F↔GT"), Column("mean_difference", "Difference", "+3"),
                   Column("difference_ci95", "95% CI (subjects)", "ci"), Column("win_rate", "Guard better", "pct"),
                   Column("wilcoxon_p", "Wilcoxon p", "e2"), Column("n", "N", "d")]
        notes = ["Per image: cos(guarded output, GT) − cos(unguarded output, GT), on images with a face in both."]
        if not unguarded:
            notes.append("No unguarded tree was given (pass one more --frontal-dir) — nothing to pair.")
        return Table("guard_vs_unguarded", "Guard G2 — Paired difference, guarded minus unguarded", columns, rows,
                     notes)

    def _residuals(self, arms: Sequence[FrontalArm], guarded: Sequence[FrontalArm]) -> Table:
        limits = self.limits(guarded)
        rows = []
        for arm in arms:
            tree = self.rows(arm)
            if tree:
                rows.append({"arm": arm.name, "guarded": "yes" if arm in guarded else "no",
                             **residual_summary([row.output_pose for row in tree.values()], *limits)})
        columns = [Column("arm", "Output tree", "s"), Column("guarded", "Guarded", "s"), Column("n", "N", "d"),
                   Column("mean_abs_yaw", "Mean abs yaw", "f3"), Column("median_abs_yaw", "Median abs yaw", "f3"),
                   Column("p90_abs_yaw", "P90 abs yaw", "f3"), Column("max_abs_yaw", "Max abs yaw", "f3"),
                   Column("mean_abs_pitch", "Mean abs pitch", "f3"), Column("p90_abs_pitch", "P90 abs pitch", "f3"),
                   Column("within_limits", "Within limits", "pct"), Column("n_unknown", "No pose", "d")]
        return Table("guard_residual_pose", "Guard G3 — Residual pose of the outputs (degrees)", columns, rows,
                     [f"Residual pose = the output's pose measured by inference with the LivePortrait motion "
                      f"extractor (manifest output_pose). Limits: |yaw| ≤ {limits[0]:g}°, |pitch| ≤ {limits[1]:g}° "
                      f"(guard settings of {guarded[0].name})."])

    def _wins(self, guarded: Sequence[FrontalArm]) -> Table:
        rows = [{"arm": arm.name, **row} for arm in guarded
                for row in win_rows(r.guard for r in self.rows(arm).values() if r.guard)]
        columns = [Column("arm", "Guarded tree", "s"), Column("axis", "What", "s"), Column("value", "Value", "s"),
                   Column("wins", "Chosen", "d"), Column("share", "Share", "pct")]
        return Table("guard_wins", "Guard G4 — Which candidates the guard chose", columns, rows,
                     ["One row per candidate name and per candidate property; 'fallback' counts the images where "
                      "no candidate met the limits (none_within_limits) or no candidate had a face (no_face)."])

    def _tradeoff(self, results: EvaluationResults, guarded: Sequence[FrontalArm],
                  records: Mapping[str, Record]) -> tuple[Table, dict[str, str]]:
        rows, sources = [], {}
        for combo in results.combinations:
            for arm in guarded:
                source, points = self._points(results, combo, arm, records)
                sources[arm.name] = source
                rows += [{"arm": arm.name, "combination": combo.label, "source": source, **row}
                         for row in tradeoff_rows(points)]
        columns = [Column("arm", "Guarded tree", "s"), Column("combination", "Combination", "s"),
                   Column("source", "From", "s"), Column("kind", "Candidate kind", "s"),
                   Column("alpha", "α", "f3"), Column("n", "N", "d"), Column("n_face", "With face", "d"),
                   Column("mean_frontal_gt", "Mean(Frontal↔GT)"),
                   Column("mean_abs_residual_yaw", "Mean residual abs yaw", "f3")]
        return Table("guard_tradeoff", "Guard G5 — Identity vs frontality as α varies", columns, rows,
                     [f"From '{SOURCE_DUMPS}': every candidate of every image (inference --guard-dump); from "
                      f"'{SOURCE_CHOSEN}': images grouped by the α the guard chose (each α covers different "
                      "images). α = 0 is the angled input (Angle↔GT and its measured pose)."]), sources

    def _points(self, results: EvaluationResults, combo: CombinationResult, arm: FrontalArm,
                records: Mapping[str, Record]) -> tuple[str, list[TradeoffPoint]]:
        tree = {rel: row for rel, row in self.rows(arm).items() if row.guard and rel in records}
        source = SOURCE_DUMPS if any(row.dumps for row in tree.values()) else SOURCE_CHOSEN
        detector, recognizer = combo.combination.detector, combo.combination.recognizer
        row_of = combo.gallery.index()
        frontal = next(a.scores.frontal_by_rel for a in combo.arms if a.arm.name == arm.name)
        store = results.store
        points = []
        for rel, row in tree.items():
            record = records[rel]
            if record.subject not in row_of:
                continue
            gt = combo.gallery.embeddings[row_of[record.subject]]
            angle = store.embedding(record.image.path, detector, recognizer)
            points.append(TradeoffPoint("input", 0.0, _cosine(angle, gt), _abs_yaw(row.source_pose)))
            if source == SOURCE_CHOSEN:
                chosen = row.chosen or {}
                sim = frontal[rel][1] if rel in frontal else None
                points.append(TradeoffPoint("chosen", float(chosen["alpha"]), sim,
                                            _abs_yaw(chosen, "residual_yaw")))
                continue
            for candidate in (row.guard or {}).get("candidates", []):
                path = row.dumps.get(candidate["name"])
                if path is not None:
                    points.append(TradeoffPoint(_kind(candidate), float(candidate["alpha"]),
                                                _cosine(store.embedding(path, detector, recognizer), gt),
                                                _abs_yaw(candidate, "residual_yaw")))
        return source, points

    # ---- figures and text ----------------------------------------------------------------------------------------
    def _figures(self, results: EvaluationResults, folder: Path, tradeoff: Table,
                 guarded: Sequence[FrontalArm]) -> list[FigureRef]:
        dpi = results.config.figures.dpi
        limit = self.limits(guarded)[0]
        refs = []
        for combo in results.combinations:
            for arm in guarded:
                rows = [r for r in tradeoff.rows if r["arm"] == arm.name and r["combination"] == combo.label]
                start = next((r for r in rows if r["kind"] == "input"), None)
                series = [TradeoffSeries.from_rows(kind, [r for r in rows if r["kind"] == kind], start)
                          for kind in dict.fromkeys(r["kind"] for r in rows) if kind != "input"]
                slug = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{arm.name}__{combo.label}")
                title = f"{arm.name} · {combo.label}: identity vs frontality ({rows[0]['source'] if rows else '–'})"
                path = tradeoff_plot(folder / f"guard_tradeoff__{slug}.png", series, title, limit=limit, dpi=dpi)
                refs.append(FigureRef("guard_tradeoff", path, f"Identity-vs-frontality trade-off as α varies "
                                                              f"({arm.name}, {combo.label})"))
        values = {arm.name: [abs(float(r.output_pose["yaw"])) for r in self.rows(arm).values() if r.output_pose]
                  for arm in results.arms if self.rows(arm)}
        path = residual_ecdf_plot(folder / "guard_residual_yaw.png", values, limit,
                                  "Residual |yaw| of the outputs (cumulative share)", dpi=dpi)
        refs.append(FigureRef("guard_residual", path, "Residual |yaw| distribution, guarded vs unguarded trees"))
        return refs

    @staticmethod
    def _markdown(names: Mapping[str, list[str]], sources: Mapping[str, str]) -> str:
        guarded = ", ".join(f"`{n}`" for n in names["guarded"])
        unguarded = ", ".join(f"`{n}`" for n in names["unguarded"]) or "none"
        trade = "; ".join(f"`{arm}` — {source}" for arm, source in sources.items())
        return "\n".join([
            f"Guarded trees: {guarded}; unguarded trees: {unguarded}. Per face, the guard wrote the candidate most "
            "similar to the *source* image (inference never sees the GT) among those whose residual pose met its "
            "limits; the tables below measure that choice against the GT.", "",
            "- G1: net gain per tree (as Table 1) and the guard's fallbacks.",
            "- G2: per image, Frontal↔GT of the guarded output minus that of the unguarded one.",
            "- G3: residual |yaw|/|pitch| of the written outputs (the run's pose source, from the manifests).",
            "- G4: how often each candidate kind was chosen.",
            f"- G5 and the trade-off figures: mean Frontal↔GT and mean residual |yaw| per α. Source: {trade}. "
            f"'{SOURCE_DUMPS}' embeds every dumped candidate (the same images at every α); '{SOURCE_CHOSEN}' "
            "groups images by the α the guard chose (run inference with --guard-dump for true curves).", "",
        ])
