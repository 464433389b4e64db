"""Identity guard on the real LivePortrait engine with deterministic test weights (scripts/make_test_weights.py)
and the offline scorer, through ``inference.py`` and then ``evaluate.py``; plus the guard's pre-flight checks.

Test weights render noise, so the offline detector finds no face in the candidates: every similarity is null and
the guard keeps the most frontal candidate, flagged ``no_face`` — which is exactly what must happen then.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from pipeline_helpers import OFFLINE_CONFIG, REPO_ROOT, load_script, save

from frontalize.cli.evaluate import main as evaluate_main
from frontalize.io.manifest import read_manifest
from frontalize.pipeline.guard import CandidateScore, choose_candidate

GUARD = ["--set", "guard.enabled=true", "--set", "guard.alphas=[1.0, 0.6]", "--set", "guard.expressions=[keep]",
         "--set", "guard.stages=[sharpen]"]


@pytest.fixture(scope="module")
def lp_weights(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("guard_test_weights")
    assert load_script("make_test_weights").main([str(root), "--only", "liveportrait"]) == 0
    yield root
    shutil.rmtree(root)  # ~500 MB: not left in pytest's kept temp folders


@pytest.fixture(scope="module")
def one_face(tmp_path_factory: pytest.TempPathFactory, face_photos: dict[str, np.ndarray]) -> Path:
    """Generic evaluation layout with one angled image: DATA/astro/a.jpg, DATA/gt/astro.png."""
    data = tmp_path_factory.mktemp("guard_one") / "data"
    save(data / "astro" / "a.jpg", face_photos["astronaut"])
    save(data / "gt" / "astro.png", cv2.resize(face_photos["astronaut"], (300, 300)))
    (data.parent / "inputs.txt").write_text("astro/a.jpg\n")
    return data


def _read(path: Path) -> np.ndarray:
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


@pytest.mark.slow
def test_guard_with_liveportrait_test_weights(one_face: Path, lp_weights: Path, tmp_path: Path,
                                               run_cli: Callable[..., int]) -> None:
    common = ["--config", OFFLINE_CONFIG, "--source_dir", one_face, "--list-file", one_face.parent / "inputs.txt",
              "--frontalize", "--weights-dir", lp_weights, "--allow-unverified-weights"]
    out = tmp_path / "guarded"
    assert run_cli(*common, "-o", out, *GUARD, "--guard-dump") == 0
    (row,) = read_manifest(out / "manifest.jsonl")
    assert row["status"] == "ok"
    guard = row["guard"]
    names = ["a1.00-keep-stitch", "a0.60-keep-stitch", "a1.00-keep-stitch+sharpen", "a0.60-keep-stitch+sharpen"]
    assert [c["name"] for c in guard["candidates"]] == names  # K = 2 renders × (1 + 1 stage)
    for candidate in guard["candidates"]:
        assert set(candidate) >= {"name", "alpha", "expression", "stitching", "similarity", "residual_yaw",
                                  "residual_pitch", "residual_roll"}
        assert all(math.isfinite(candidate[axis]) for axis in ("residual_yaw", "residual_pitch", "residual_roll"))
    scores = [CandidateScore(c["similarity"], c["residual_yaw"], c["residual_pitch"]) for c in guard["candidates"]]
    choice = choose_candidate(scores, max_residual_yaw=guard["max_residual_yaw"],
                              max_residual_pitch=guard["max_residual_pitch"])
    assert (guard["chosen"], guard["fallback"]) == (choice.index, choice.fallback)
    assert guard["chosen_name"] == names[guard["chosen"]]
    if all(c["similarity"] is None for c in guard["candidates"]):
        assert guard["fallback"] and guard["fallback_reason"] == "no_face"
    chosen = guard["candidates"][guard["chosen"]]
    assert row["output_pose"]["yaw"] == pytest.approx(chosen["residual_yaw"], abs=1e-3)
    # the chosen candidate is written where the plain output would be; every candidate is dumped
    assert sorted(row["guard_dumps"]) == sorted(names)
    written = _read(out / row["outputs"]["default"]["crop"])
    assert np.array_equal(written, _read(out / row["guard_dumps"][guard["chosen_name"]]))

    # the α = 1 candidate is the unguarded output (same recipe, same source features)
    plain = tmp_path / "plain"
    assert run_cli(*common, "-o", plain) == 0
    (plain_row,) = read_manifest(plain / "manifest.jsonl")
    assert "guard" not in plain_row
    difference = np.abs(_read(plain / plain_row["outputs"]["default"]["crop"]).astype(int)
                        - _read(out / row["guard_dumps"]["a1.00-keep-stitch"]).astype(int))
    assert difference.max() <= 2

    report = tmp_path / "report"
    assert evaluate_main(["--config", str(REPO_ROOT / "configs" / "eval-offline.yaml"), "--data", str(one_face),
                          "--frontal-dir", str(out), "--frontal-dir", str(plain), "-o", str(report), "--no-cache",
                          "--bootstrap-resamples", "50", "--no-progress", "-q"]) == 0
    summary = json.loads((report / "summary.json").read_text())
    section = summary["sections"]["guard"]
    assert section["guarded"] == ["guarded"] and section["tradeoff_source"] == {"guarded": "dumped candidates"}
    assert {row["kind"] for row in section["guard_tradeoff"]} == {"input", "keep/stitch", "keep/stitch+sharpen"}
    assert {f["kind"] for f in summary["figures"]} >= {"guard_tradeoff", "guard_residual"}
    assert "## Identity guard" in (report / "report.md").read_text()


def test_guard_weights_are_verified_before_any_image_is_read(one_face: Path, tmp_path: Path,
                                                             run_cli: Callable[..., int],
                                                             capsys: pytest.CaptureFixture[str],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    def no_reading(*args: object, **kwargs: object) -> None:
        raise AssertionError("an image was read before the weights were checked")

    monkeypatch.setattr("frontalize.pipeline.steps.load_image", no_reading)
    empty = tmp_path / "empty"
    empty.mkdir()
    code = run_cli("--config", OFFLINE_CONFIG, "--source_dir", one_face / "astro", "-o", tmp_path / "out",
                   "--frontalize", "--weights-dir", empty, "--set", "guard.enabled=true",
                   "--set", "guard.recognizer=arcface_r50", "--set", "guard.detector=scrfd_10g")
    assert code == 3
    message = capsys.readouterr().err
    for relpath in ("insightface/models/buffalo_l/w600k_r50.onnx", "insightface/models/buffalo_l/det_10g.onnx",
                    "liveportrait/base_models/spade_generator.pth"):
        assert relpath in message
    assert not (tmp_path / "out" / "manifest.jsonl").exists()


def test_guard_with_the_identity_backend_is_a_config_error(one_face: Path, tmp_path: Path, run_cli: Callable[..., int],
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    code = run_cli("--config", OFFLINE_CONFIG, "--source_dir", one_face / "astro", "-o", tmp_path / "out",
                   "--set", "guard.enabled=true", "--dry-run")
    assert code == 2
    assert "guard.enabled: the identity frontalizer renders no candidates for the identity guard" in \
        capsys.readouterr().err
