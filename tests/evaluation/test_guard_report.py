"""Identity-guard report section: manifest reading through the evaluator's tree matching, the pure aggregations
(residual pose, wins, trade-off) and the figures. The full guard run → evaluate.py chain is in
tests/pipeline/test_guard_eval_chain.py."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from helpers import assert_figure, figure_panels

from frontalize.evaluation.guard_figures import TradeoffSeries, residual_ecdf_plot, tradeoff_plot
from frontalize.evaluation.guard_report import (
    GuardSection,
    TradeoffPoint,
    read_tree_rows,
    residual_summary,
    tradeoff_rows,
    win_rows,
)
from frontalize.evaluation.trees import discover_arms


def _candidate(name: str, alpha: float, expression: str = "keep", stitching: bool = True,
               stage: str | None = None, yaw: float = 0.0) -> dict:
    return {"name": name, "alpha": alpha, "expression": expression, "stitching": stitching, "stage": stage,
            "similarity": 0.9, "residual_yaw": yaw, "residual_pitch": 0.0, "residual_roll": 0.0}


def _guard(chosen: int, fallback: str | None = None) -> dict:
    candidates = [_candidate("a1.00-keep-stitch", 1.0, yaw=1.0), _candidate("a0.70-neutral-nostitch", 0.7,
                                                                            "neutralize", False, yaw=6.0),
                  _candidate("a1.00-keep-stitch+sharpen", 1.0, stage="sharpen", yaw=1.5)]
    return {"candidates": candidates, "chosen": chosen, "chosen_name": candidates[chosen]["name"],
            "fallback": fallback is not None, "fallback_reason": fallback, "max_residual_yaw": 10.0,
            "max_residual_pitch": 10.0}


def test_residual_summary_counts_unknown_poses_apart() -> None:
    poses = [{"yaw": -2.0, "pitch": 1.0}, {"yaw": 4.0, "pitch": -12.0}, None, {"yaw": 12.0, "pitch": 0.0},
             {"yaw": 6.0, "pitch": 3.0}]
    summary = residual_summary(poses, 10.0, 10.0)
    assert (summary["n"], summary["n_unknown"]) == (4, 1)
    assert summary["mean_abs_yaw"] == pytest.approx(6.0) and summary["median_abs_yaw"] == pytest.approx(5.0)
    assert summary["max_abs_yaw"] == 12.0 and summary["p90_abs_yaw"] == pytest.approx(np.percentile([2, 4, 6, 12], 90))
    assert summary["mean_abs_pitch"] == pytest.approx(4.0) and summary["within_limits"] == pytest.approx(0.5)
    empty = residual_summary([None], 10.0, 10.0)
    assert empty["n"] == 0 and empty["mean_abs_yaw"] is None and empty["within_limits"] is None


def test_win_rows_count_candidates_properties_and_fallbacks() -> None:
    rows = win_rows([_guard(1), _guard(1), _guard(2), _guard(0, "none_within_limits")])
    table = {(row["axis"], row["value"]): (row["wins"], row["share"]) for row in rows}
    assert table[("candidate", "a0.70-neutral-nostitch")] == (2, 0.5)
    assert table[("alpha", "1.00")] == (2, 0.5) and table[("alpha", "0.70")] == (2, 0.5)
    assert table[("expression", "neutralize")] == (2, 0.5) and table[("stitching", "off")] == (2, 0.5)
    assert table[("stage", "sharpen")] == (1, 0.25) and table[("stage", "none")] == (3, 0.75)
    assert table[("fallback", "none_within_limits")] == (1, 0.25) and table[("fallback", "no")] == (3, 0.75)
    assert win_rows([]) == []


def test_tradeoff_rows_group_by_kind_and_alpha() -> None:
    points = [TradeoffPoint("keep/stitch", 1.0, 0.5, 2.0), TradeoffPoint("keep/stitch", 1.0, None, 4.0),
              TradeoffPoint("keep/stitch", 0.5, 0.7, 10.0), TradeoffPoint("input", 0.0, 0.8, None),
              TradeoffPoint("keep/stitch", 0.5, 0.9, None)]
    rows = tradeoff_rows(points)
    assert [(r["kind"], r["alpha"]) for r in rows] == [("input", 0.0), ("keep/stitch", 0.5), ("keep/stitch", 1.0)]
    assert rows[1] == {"kind": "keep/stitch", "alpha": 0.5, "n": 2, "n_face": 2, "mean_frontal_gt": pytest.approx(0.8),
                       "mean_abs_residual_yaw": 10.0}
    assert rows[2]["n_face"] == 1 and rows[2]["mean_frontal_gt"] == 0.5 and rows[2]["mean_abs_residual_yaw"] == 3.0
    assert rows[0]["mean_abs_residual_yaw"] is None
    series = TradeoffSeries.from_rows("keep/stitch", rows[1:][::-1], rows[0])
    assert series.alphas == (0.0, 0.5, 1.0) and series.similarities == (0.8, pytest.approx(0.8), 0.5)


def _write(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((16, 16, 3), 90, dtype=np.uint8))
    return path.name


@pytest.fixture()
def variant_tree(tmp_path: Path) -> Path:
    """inference.py output with two variants × crop/full, a guard row with dumps, a failure and a plain row."""
    out = tmp_path / "run"
    rows = []
    for stem, status in (("p1/x", "ok"), ("p2/y", "ok"), ("p3/z", "no_face")):
        outputs = {}
        if status == "ok":
            for variant in ("base", "sharp"):
                outputs[variant] = {kind: f"{variant}/{kind}/{stem}.png" for kind in ("crop", "full")}
                for rel in outputs[variant].values():
                    _write(out / rel)
        row = {"input": f"{stem}.jpg", "status": status, "outputs": outputs,
               "source_pose": {"pitch": 1.0, "yaw": 30.0, "roll": 0.0},
               "output_pose": {"pitch": 0.5, "yaw": 6.0, "roll": 0.0}}
        if stem == "p1/x":
            row["guard"] = _guard(1)
            row["guard_dumps"] = {c["name"]: f"_guard/{stem}/{c['name']}.png" for c in row["guard"]["candidates"]}
            for rel in list(row["guard_dumps"].values())[:2]:  # the third dump file is missing
                _write(out / rel)
        rows.append(row)
    (out / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return out


def test_read_tree_rows_through_variant_and_kind_subtrees(variant_tree: Path) -> None:
    rels = ["hpdb/p1/x.jpg", "hpdb/p2/y.jpg", "hpdb/p3/z.jpg"]  # one more leading folder than inference saw
    arms = discover_arms(variant_tree, rels, kind="auto")
    assert [arm.name for arm in arms] == ["run/base", "run/sharp"]
    for arm in arms:
        rows = read_tree_rows(arm)
        assert sorted(rows) == ["hpdb/p1/x.jpg", "hpdb/p2/y.jpg"]  # the failed input has no row here
        guarded, plain = rows["hpdb/p1/x.jpg"], rows["hpdb/p2/y.jpg"]
        assert guarded.guard is not None and guarded.chosen["name"] == "a0.70-neutral-nostitch"
        assert sorted(guarded.dumps) == ["a0.70-neutral-nostitch", "a1.00-keep-stitch"]  # existing files only
        assert plain.guard is None and plain.output_pose == {"pitch": 0.5, "yaw": 6.0, "roll": 0.0}
    section = GuardSection()
    assert len(section.image_paths(SimpleNamespace(), arms)) == 4  # 2 existing dumps × 2 variant arms


def test_section_is_absent_without_a_guarded_tree(variant_tree: Path, tmp_path: Path) -> None:
    manifest = variant_tree / "manifest.jsonl"
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    manifest.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "guard"}) + "\n" for r in rows))
    arms = discover_arms(variant_tree, ["p1/x.jpg", "p2/y.jpg"])
    assert GuardSection().build(SimpleNamespace(arms=arms), tmp_path) is None  # type: ignore[arg-type]


def test_guard_figures_are_written(tmp_path: Path) -> None:
    series = [TradeoffSeries("keep/stitch", (0.0, 0.5, 1.0), (0.8, None, 0.6), (20.0, 11.0, 2.0))]
    tradeoff = tradeoff_plot(tmp_path / "t.png", series, "trade-off", limit=10.0)
    assert len(assert_figure(tradeoff, min_panels=2, max_panels=2)) == 2  # similarity and residual-yaw panels
    residual = residual_ecdf_plot(tmp_path / "r.png", {"guarded": [1.0, 8.0], "plain": []}, 10.0, "residual")
    assert len(assert_figure(residual, min_panels=1, max_panels=1)) == 1
    empty = tradeoff_plot(tmp_path / "empty.png", [], "nothing")  # no data: still both (empty) panels, no crash
    assert len(figure_panels(empty)) == 2
