"""``evaluate.py`` with the 68-point pose model and known poses, on real faces rendered at a known yaw: the generic
layout with posed_views.json (synthetic images labelled, binned by their rendered pose), a BIWI-shaped tree whose
pose files hold the rotations the views were rendered at (the estimator's error against the annotations), and
faces whose landmarks cannot be fitted (no pose, counted)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from eval_posed import write_posed_biwi, write_posed_generic, write_posed_lfw

from frontalize.cli.evaluate import build_parser, main, resolve_config
from frontalize.config.evaluation import (
    CacheConfig,
    CombinationConfig,
    EvalConfig,
    EvalDatasetConfig,
    EvalRunConfig,
    FiguresConfig,
    ReportConfig,
    StatsConfig,
)
from frontalize.evaluation.poses import Landmarks68PoseModel
from frontalize.evaluation.runner import EvaluationInputs, evaluate
from frontalize.faces.headpose import FitLimits, HeadPoseEstimator
from frontalize.faces.registry import build_landmarker68

OFFLINE = str(Path(__file__).resolve().parents[2] / "configs" / "eval-offline.yaml")
COMBO = "retinaface_mnet+dlib_resnet"


def _rows(path: Path) -> dict[str, dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return {row["rel"]: row for row in csv.DictReader(handle)}


def _args(data: Path, out: Path, report: Path, cache: Path, *extra: str) -> list[str]:
    return ["--config", OFFLINE, "--bootstrap-resamples", "100", "--no-progress", "-q", "--data", str(data),
            "--frontal-dir", str(out), "--cache-dir", str(cache), "-o", str(report), *extra]


def test_generic_posed_views_with_the_68_point_model(tmp_path: Path) -> None:
    data, out = write_posed_generic(tmp_path)
    report = tmp_path / "report"
    assert main(_args(data, out, report, tmp_path / "cache", "--layout", "generic",
                      "--set", "dataset.pose=landmarks68", "--no-figures")) == 0
    rows = _rows(report / "per_image.csv")
    assert len(rows) == 9
    posed, photo = rows["astro/yaw+30.jpg"], rows["astro/mirror.jpg"]
    assert (posed["pose_source"], posed["pose_status"], posed["synthetic"]) == ("rendered", "known", "true")
    assert (float(posed["yaw"]), posed["yaw_bin"]) == (30.0, "[30, 45)")
    assert (photo["pose_source"], photo["pose_status"], photo["synthetic"]) == ("landmarks68", "estimated", "false")
    assert photo["pitch"] != "" and abs(float(photo["yaw"])) < 15  # pitch included, unlike the keypoint proxy
    summary = json.loads((report / "summary.json").read_text())
    assert summary["dataset"]["n_synthetic"] == 6 and "SYNTHETIC" in summary["dataset"]["supplied_notes"]
    assert summary["pose_error"]["pose_model"] == "landmarks68"
    by_key = {(r["estimator"], r["bin"]): r for r in summary["pose_error"]["rows"]}
    overall = by_key[("landmarks68", "all")]
    assert (overall["images"], overall["known"], overall["no_face"]) == (6, "rendered", 0)
    assert overall["n"] + overall["no_fit"] == 6 and overall["n"] >= 5
    assert overall["mae_yaw"] < 10 and overall["mae_pitch"] is not None  # a sign error would cost ~60°
    assert by_key[("keypoints", "all")]["mae_pitch"] is None and by_key[("keypoints", "all")]["mae_yaw"] < 20
    assert by_key[("landmarks68", "[30, 45)")]["images"] == 6
    text = (report / "report.md").read_text()
    assert "Table 7" in text and "## Dataset notes" in text and "> The yaw*.jpg views are SYNTHETIC renders." in text
    assert "**Synthetic images:** 6 of the 9 angled images" in text
    assert "known for 6 of 9 angled images (6 rendered synthetic views" in text
    html = (report / "report.html").read_text()
    assert "Table 7" in html and "Dataset notes" in html and "synthetic image (rendered posed view)" in html


def test_biwi_states_the_68_point_error_against_the_annotations(tmp_path: Path) -> None:
    data, out = write_posed_biwi(tmp_path)
    report = tmp_path / "report"
    assert main(_args(data, out, report, tmp_path / "cache", "--layout", "biwi", "--no-figures")) == 0
    summary = json.loads((report / "summary.json").read_text())
    assert summary["pose_error"]["pose_model"] == "landmarks68"  # auto on BIWI
    by_key = {(r["estimator"], r["bin"]): r for r in summary["pose_error"]["rows"]}
    overall = by_key[("landmarks68", "all")]
    assert (overall["images"], overall["known"], overall["no_face"], overall["no_fit"]) == (9, "annotation", 0, 0)
    assert overall["n"] == 9 and overall["mae_yaw"] < 6 and overall["mae_roll"] < 6 and overall["mae_pitch"] < 8
    turned = by_key[("landmarks68", "[30, 45)")]
    assert (turned["images"], turned["n"]) == (6, 6) and turned["median_abs_yaw_error"] < 8
    assert by_key[("landmarks68", "[0, 15)")]["images"] == 3  # the GT frames count: their pose is annotated too
    rows = _rows(report / "per_image.csv")
    frame = rows["hpdb/01/frame_00003_rgb.jpg"]  # rendered at yaw +30: the annotation, read in the same convention
    assert (frame["pose_source"], float(frame["yaw"]), float(frame["pitch"])) == ("annotation", 30.0, 0.0)
    assert "Table 7" in (report / "report.md").read_text()
    keypoints_only = tmp_path / "report_kp"
    assert main(_args(data, out, keypoints_only, tmp_path / "cache", "--layout", "biwi", "--no-figures",
                      "--pose", "keypoints")) == 0
    rows_kp = json.loads((keypoints_only / "summary.json").read_text())["pose_error"]["rows"]
    assert {r["estimator"] for r in rows_kp} == {"keypoints"}


def _config(cache: Path, pose: str = "landmarks68") -> EvalConfig:
    return EvalConfig(device="cpu", combinations=(CombinationConfig("retinaface_mnet", "dlib_resnet"),),
                      dataset=EvalDatasetConfig(pose=pose),  # type: ignore[arg-type]
                      cache=CacheConfig(dir=str(cache)), stats=StatsConfig(bootstrap_resamples=20),
                      figures=FiguresConfig(enabled=False), report=ReportConfig(html=False),
                      run=EvalRunConfig(progress=False))


def test_faces_the_model_cannot_fit_have_no_pose_and_are_counted(tmp_path: Path) -> None:
    data, out = write_posed_generic(tmp_path)
    (data / "posed_views.json").unlink()  # no known pose: every pose comes from the model
    strict = HeadPoseEstimator(build_landmarker68().landmarks, limits=FitLimits(max_abs_yaw=15.0), fingerprint="s")
    factories = {"pose_factory": lambda name, **_: Landmarks68PoseModel(strict)}
    for run in ("first", "cached"):  # the second run reads the unfit faces (and why) back from the cache
        results = evaluate(_config(tmp_path / "cache"), EvaluationInputs(data, (out,), tmp_path / run),
                           weights_root=tmp_path / "w", device="cpu", model_factories=factories)
    assert results.store.computed["detections"] == 0
    turned = results.store.detection(data / "p0" / "yaw+30.jpg", "retinaface_mnet")
    assert turned is not None and turned.reason is not None and turned.reason.startswith("landmarks_unfit: |yaw|")
    rows = _rows(tmp_path / "cached" / "per_image.csv")
    unfit = [r for r in rows.values() if r["pose_status"] == "unfit"]
    assert {r["rel"].split("/")[1] for r in unfit} == {"yaw-30.jpg", "yaw+30.jpg"} and len(unfit) == 6
    for row in unfit:  # no pose, never 0: empty values, no bin
        assert (row["pose_source"], row["yaw"], row["pitch"], row["yaw_bin"], row["pitch_bin"]) == \
            ("landmarks68", "", "", "", "")
        assert row["pair_status"] == "paired"  # the identity numbers still count the image
    assert all(r["pose_status"] == "estimated" for r in rows.values() if "mirror" in r["rel"])
    assert "6 faces whose 68 landmarks could not be fitted have no pose" in results.pose_source
    bins = results.combinations[0].arms[0].pose_bins
    assert sum(b["records"] for b in bins if b["axis"] == "|yaw|") == 3  # only the fitted faces are binned
    assert results.pose_error == []  # nothing has a known pose
    assert json.loads((tmp_path / "cached" / "summary.json").read_text())["pose_unfit"] == 6


def test_pose_flag_beats_set(tmp_path: Path) -> None:
    args = build_parser().parse_args(["--config", OFFLINE, "--set", "dataset.pose=landmarks68", "--pose", "keypoints"])
    assert resolve_config(args).dataset.pose == "keypoints"
    args = build_parser().parse_args(["--config", OFFLINE, "--set", "dataset.pose=landmarks68"])
    assert resolve_config(args).dataset.pose == "landmarks68"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--pose", "dlib"])


def test_lfw_gt_is_the_most_frontal_face_by_the_68_point_model(tmp_path: Path) -> None:
    data, out = write_posed_lfw(tmp_path)  # per person: yaw +30, 0, -30 (files 1, 2, 3)
    report = tmp_path / "report"
    assert main(_args(data, out, report, tmp_path / "cache", "--layout", "lfw", "--pose", "landmarks68",
                      "--no-figures")) == 0
    gt_rows = list(csv.DictReader((report / "per_image_gt.csv").open(encoding="utf-8")))
    assert len(gt_rows) == 3 and all(row["gt_rel"].endswith("_0002.jpg") for row in gt_rows)
    assert all(row["pose_source"] == "landmarks68" and row["pose_status"] == "estimated" for row in gt_rows)
    assert "68-point pose" in gt_rows[0]["gt_rule"]
    rows = _rows(report / "per_image.csv")
    first = rows["Person_p0/Person_p0_0001.jpg"]  # rendered at +30 (towards image left): yaw > 0, pitch estimated
    assert first["pose_source"] == "landmarks68" and float(first["yaw"]) > 15 and first["pitch"] != ""
    assert float(rows["Person_p0/Person_p0_0003.jpg"]["yaw"]) < -15
    assert json.loads((report / "summary.json").read_text())["pose_error"]["rows"] == []  # LFW has no known pose
