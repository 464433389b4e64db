"""A guarded and an unguarded ``inference.py`` run followed by ``evaluate.py``: the guarded-vs-unguarded comparison
and the identity/frontality trade-off in the report.

Everything is real (offline RetinaFace-mnet detection and crops, dlib scoring in the guard and in the evaluator,
manifest, dumps, statistics, figures) except the LivePortrait networks: the stand-in engine's renders are the
real face crop blurred more for a larger α, and its motion extractor reads back residual yaw 20(1 − α) + 2.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from guard_standins import StandInEngine
from helpers import assert_figure
from pipeline_helpers import OFFLINE_CONFIG, REPO_ROOT, save

from frontalize.cli.evaluate import main as evaluate_main
from frontalize.io.manifest import read_manifest
from frontalize.liveportrait.loading import LP_WEIGHT_KEYS
from frontalize.weights import weight_path

EVAL_OFFLINE = REPO_ROOT / "configs" / "eval-offline.yaml"
COMBO = "retinaface_mnet+dlib_resnet"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory, face_photos: dict[str, np.ndarray]) -> Path:
    """Generic layout: DATA/<id>/{a,b}.jpg angled (two sizes, b mirrored), DATA/gt/<id>.png; plus inputs.txt."""
    root = tmp_path_factory.mktemp("guard_data")
    data = root / "data"
    rels = []
    for name, rgb in sorted(face_photos.items()):
        save(data / name / "a.jpg", cv2.resize(rgb, (300, round(300 * rgb.shape[0] / rgb.shape[1]))))
        save(data / name / "b.jpg", np.ascontiguousarray(rgb[:, ::-1]))
        save(data / "gt" / f"{name}.png", cv2.resize(rgb, (260, round(260 * rgb.shape[0] / rgb.shape[1]))))
        rels += [f"{name}/a.jpg", f"{name}/b.jpg"]
    (root / "inputs.txt").write_text("\n".join(rels) + "\n")
    return data


@pytest.fixture()
def stand_in_liveportrait(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Weights folder with empty LivePortrait files (presence-checked only) and the stand-in engine patched in."""
    weights = tmp_path / "weights"
    for key in LP_WEIGHT_KEYS:
        path = weight_path(key, weights)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()

    def engine(*args: object, **kwargs: object) -> StandInEngine:
        return StandInEngine()

    for module in ("frontalize.liveportrait.loading", "frontalize.pipeline.backends.liveportrait"):
        monkeypatch.setattr(f"{module}.load_official", lambda *args, **kwargs: {})
    for module in ("frontalize.liveportrait.frontalizer", "frontalize.pipeline.backends.liveportrait"):
        monkeypatch.setattr(f"{module}.LivePortraitFrontalizer", engine)
    return weights


def _evaluate(data: Path, report: Path, cache: Path, *trees: Path) -> dict:
    frontal = [arg for tree in trees for arg in ("--frontal-dir", str(tree))]
    code = evaluate_main(["--config", str(EVAL_OFFLINE), "--layout", "generic", "--data", str(data), *frontal,
                          "-o", str(report), "--cache-dir", str(cache), "--bootstrap-resamples", "200",
                          "--no-progress", "-q"])
    assert code == 0
    return json.loads((report / "summary.json").read_text())


def _rows(table: list[dict], **match: object) -> list[dict]:
    return [row for row in table if all(row[k] == v for k, v in match.items())]


def test_guard_run_then_evaluate(dataset: Path, stand_in_liveportrait: Path, tmp_path: Path,
                                 run_cli: Callable[..., int]) -> None:
    common = ["--config", OFFLINE_CONFIG, "--source_dir", dataset, "--list-file", dataset.parent / "inputs.txt",
              "--frontalize", "--weights-dir", stand_in_liveportrait, "--allow-unverified-weights"]
    guarded, plain = tmp_path / "guarded", tmp_path / "plain"
    assert run_cli(*common, "-o", guarded, "--guard-dump", "--set", "guard.enabled=true",
                   "--set", "guard.alphas=[1.0, 0.7, 0.5]", "--set", "guard.expressions=[keep]") == 0
    assert run_cli(*common, "-o", plain) == 0
    rows = read_manifest(guarded / "manifest.jsonl")
    assert len(rows) == 8 and all(len(row["guard"]["candidates"]) == 3 for row in rows)
    assert all((guarded / path).is_file() for row in rows for path in row["guard_dumps"].values())

    summary = _evaluate(dataset, tmp_path / "report", tmp_path / "cache", guarded, plain)
    section = summary["sections"]["guard"]
    assert (section["guarded"], section["unguarded"]) == (["guarded"], ["plain"])
    assert section["tradeoff_source"] == {"guarded": "dumped candidates"}
    (paired,) = section["guard_vs_unguarded"]
    # the guard kept α = 0.7 (less blur than the unguarded α = 1 output): more identity, paired per image
    assert paired["n"] == 8 and paired["mean_difference"] > 0 and paired["difference_ci95"][0] is not None
    assert _rows(section["guard_wins"], axis="alpha")[0] == {"arm": "guarded", "axis": "alpha", "value": "0.70",
                                                              "wins": 8, "share": 1.0}
    curve = {row["alpha"]: row for row in _rows(section["guard_tradeoff"], kind="keep/stitch")}
    assert sorted(curve) == [0.5, 0.7, 1.0] and all(row["n"] == 8 for row in curve.values())
    assert [round(curve[a]["mean_abs_residual_yaw"], 2) for a in (0.5, 0.7, 1.0)] == [12.0, 8.0, 2.0]
    assert curve[0.5]["mean_frontal_gt"] > curve[1.0]["mean_frontal_gt"]
    (start,) = _rows(section["guard_tradeoff"], kind="input")
    assert start["alpha"] == 0.0 and start["mean_abs_residual_yaw"] == pytest.approx(20.0)
    residual = {row["arm"]: row for row in section["guard_residual_pose"]}
    assert residual["guarded"]["mean_abs_yaw"] == pytest.approx(8.0, abs=0.01)
    assert residual["plain"]["mean_abs_yaw"] == pytest.approx(2.0, abs=0.01)
    assert residual["guarded"]["within_limits"] == 1.0
    comparison = _rows(section["guard_comparison"], arm="guarded")[0]
    assert comparison["net_gain"] is not None and comparison["net_gain_ci95"][0] is not None
    assert comparison["fallbacks"] == 0

    report = (tmp_path / "report" / "report.md").read_text()
    assert "## Identity guard: guarded vs unguarded" in report
    for name in ("guard_comparison", "guard_vs_unguarded", "guard_residual_pose", "guard_wins", "guard_tradeoff"):
        assert (tmp_path / "report" / "tables" / f"{name}.csv").is_file() and f"tables/{name}.csv" in summary[
            "tables"][name]["csv"]
    figures = {f["kind"]: f["path"] for f in summary["figures"]}
    for kind in ("guard_tradeoff", "guard_residual"):
        assert figures[kind] in report
        assert_figure(tmp_path / "report" / figures[kind], min_panels={"guard_tradeoff": 2, "guard_residual": 1}[kind])

    # without the dumps the trade-off falls back to the chosen α distribution
    no_dumps = tmp_path / "no_dumps"
    shutil.copytree(guarded, no_dumps, ignore=shutil.ignore_patterns("_guard"))
    summary = _evaluate(dataset, tmp_path / "report2", tmp_path / "cache", no_dumps)
    section = summary["sections"]["guard"]
    assert section["tradeoff_source"] == {"no_dumps": "chosen α distribution"} and section["unguarded"] == []
    chosen = _rows(section["guard_tradeoff"], kind="chosen")
    assert [(row["alpha"], row["n"]) for row in chosen] == [(0.7, 8)] and section["guard_vs_unguarded"] == []
