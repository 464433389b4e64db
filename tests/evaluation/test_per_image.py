"""Per-image results: rows built from a run with stand-in models on a tree whose outcomes are known, checked
against the aggregate tables, the manifest and the missing-value rule; CSV / JSONL; README column docs."""

from __future__ import annotations

import csv
import json
import math
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from eval_standins import Factories, colour_image

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
from frontalize.datasets.base import HeadPose
from frontalize.evaluation.cache import Detection
from frontalize.evaluation.per_image import (
    GT_COLUMNS,
    PER_IMAGE_COLUMNS,
    detection_outcome,
    pose_with_source,
    to_csv,
)
from frontalize.evaluation.results import EvaluationResults
from frontalize.evaluation.runner import EvaluationInputs, evaluate

REPO = Path(__file__).resolve().parents[2]
COMBOS = ("fake_det+rec_a", "fake_det+rec_b")
A, B, C, D = (200, 40, 40), (40, 200, 40), (40, 40, 200), (150, 150, 20)
BLACK = (0, 0, 0)


def _guard(name: str, fallback: bool) -> dict:
    return {"candidates": [{"name": "a1.00-keep", "alpha": 1.0}, {"name": name, "alpha": 0.7}], "chosen": 1,
            "chosen_name": name, "fallback": fallback}


def _tree(root: Path, outputs: dict[str, tuple], manifest: list[dict] | None) -> Path:
    for rel, colour in outputs.items():
        colour_image(root / rel, colour[0], tight=len(colour) > 1)
    if manifest is not None:
        (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in manifest), encoding="utf-8")
    return root


def _ok(rel: str, **extra: object) -> dict:
    return {"input": rel, "status": "ok", "reason": "", "outputs": {"default": {"crop": rel}}, **extra}


def write_fixture(root: Path) -> tuple[Path, Path, Path]:
    """DATA with s1..s4 (s3 has no GT, s4's GT has no face; s1/b has no face) and two trees.

    Tree ``out`` (manifest): s2/a has no face, s2/b failed in inference (no_face, reason given), s1/a carries a
    residual pose and a guard choice, s1/b a guard fallback, s3/a's last row is ``skipped_existing`` (a rerun).
    Tree ``out2`` (no manifest): everything present, s1/a is a tight crop found only by the padded retry, s2/b
    missing.
    """
    data = root / "data"
    for rel, colour in {"s1/a.png": A, "s1/b.png": BLACK, "s2/a.png": B, "s2/b.png": B, "s3/a.png": C,
                        "s4/a.png": D, "gt/s1.png": A, "gt/s2.png": B, "gt/s4.png": BLACK}.items():
        colour_image(data / rel, colour)
    (data / "poses.csv").write_text("rel,pitch,yaw,roll\ns1/a.png,-7.5,33.0,2.0\n", encoding="utf-8")
    out = _tree(root / "out", {"s1/a.png": ((210, 40, 40),), "s1/b.png": ((205, 45, 40),), "s2/a.png": (BLACK,),
                               "s3/a.png": (C,), "s4/a.png": (D,)},
                [_ok("s1/a.png", output_pose={"pitch": 1.25, "yaw": -3.5, "roll": 0.0}, guard=_guard("a0.70", False)),
                 _ok("s1/b.png", output_pose=None, guard=_guard("a0.85", True)),
                 _ok("s2/a.png"), {"input": "s2/b.png", "status": "no_face", "reason": "no face detected"},
                 _ok("s3/a.png"), _ok("s4/a.png"),
                 {"input": "s3/a.png", "status": "skipped_existing", "reason": "output exists"}])
    out2 = _tree(root / "out2", {"s1/a.png": ((200, 50, 40), "tight"), "s1/b.png": (A,), "s2/a.png": (B,),
                                 "s3/a.png": (C,), "s4/a.png": (D,)}, None)
    return data, out, out2


def _config(**report: object) -> EvalConfig:
    """Two combinations (the second needs a weight file: an empty stand-in, see :func:`_weights`)."""
    combinations = (CombinationConfig("retinaface_mnet", "dlib_resnet", COMBOS[0]),
                    CombinationConfig("retinaface_mnet", "arcface_r50", COMBOS[1]))
    # the stand-in detector's faces are flat colours: no pose model, the keypoint proxy is what is checked here
    return EvalConfig(device="cpu", allow_unverified_weights=True, combinations=combinations,
                      dataset=EvalDatasetConfig(pose="keypoints"),
                      cache=CacheConfig(enabled=False), stats=StatsConfig(bootstrap_resamples=20),
                      figures=FiguresConfig(enabled=False), run=EvalRunConfig(progress=False, batch_size=4),
                      report=ReportConfig(**report))  # type: ignore[arg-type]


def _weights(root: Path) -> Path:
    stand_in = root / "weights" / "insightface" / "models" / "buffalo_l" / "w600k_r50.onnx"
    stand_in.parent.mkdir(parents=True, exist_ok=True)
    stand_in.write_bytes(b"")
    return root / "weights"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[EvaluationResults, Path]:
    root = tmp_path_factory.mktemp("per_image")
    data, out, out2 = write_fixture(root)
    inputs = EvaluationInputs(data, (out, out2), root / "report")
    results = evaluate(_config(), inputs, weights_root=_weights(root), device="cpu",
                       model_factories=Factories().as_kwargs())
    return results, inputs.out_dir


def _csv_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


def _index(rows: list[dict[str, str]]) -> dict[tuple[str, str, str], dict[str, str]]:
    return {(r["arm"], r["combination"], r["rel"]): r for r in rows}


def test_one_row_per_tree_combination_image_matching_the_tables(run: tuple[EvaluationResults, Path]) -> None:
    _, report = run
    header, rows = _csv_rows(report / "per_image.csv")
    assert tuple(header) == PER_IMAGE_COLUMNS
    assert len(rows) == 2 * 2 * 6
    assert Counter((r["arm"], r["combination"]) for r in rows) == {(a, c): 6 for a in ("out", "out2") for c in COMBOS}
    summary = json.loads((report / "summary.json").read_text())
    for (arm, combo), count in Counter((r["arm"], r["combination"]) for r in rows).items():
        entry = summary["results"][arm][combo]
        mine = [r for r in rows if (r["arm"], r["combination"]) == (arm, combo)]
        statuses = Counter(r["pair_status"] for r in mine)
        for key in ("paired", "angle_only", "frontal_only", "neither", "no_gt", "no_face_gt"):
            assert statuses[key] == entry[key], (arm, combo, key)
        gains = [float(r["gain"]) for r in mine if r["pair_status"] == "paired"]
        assert math.isclose(float(np.mean(gains)), entry["net_gain"], abs_tol=1e-6)
        assert math.isclose(float(np.mean([float(r["sim_frontal_gt"]) for r in mine if r["pair_status"] == "paired"])),
                            entry["mean_frontal_gt"], abs_tol=1e-6)
        assert count == entry["records"]


def test_outcomes_manifest_and_missing_values(run: tuple[EvaluationResults, Path]) -> None:
    _, report = run
    rows = _index(_csv_rows(report / "per_image.csv")[1])
    first = rows[("out", COMBOS[0], "s1/a.png")]
    assert (first["pair_status"], first["angle_detection"], first["frontal_detection"]) == ("paired", "found", "found")
    assert (first["pitch"], first["yaw"], first["roll"], first["pose_source"]) == ("-7.5", "33.0", "2.0", "annotation")
    assert (first["yaw_bin"], first["pitch_bin"]) == ("[30, 45)", "[-15, 0)")
    assert (first["pose_status"], first["synthetic"]) == ("known", "false")
    assert (first["inference_status"], first["residual_pitch"], first["residual_yaw"]) == ("ok", "1.25", "-3.5")
    assert (first["guard_candidate"], first["guard_fallback"]) == ("a0.70", "false")
    assert math.isclose(float(first["gain"]), float(first["sim_frontal_gt"]) - float(first["sim_angle_gt"]),
                        abs_tol=2e-6)
    assert first["angle_path"].endswith("data/s1/a.png") and first["gt_path"].endswith("data/gt/s1.png")
    no_face = rows[("out", COMBOS[0], "s1/b.png")]  # black angled image: frontal only, nothing is 0
    assert (no_face["pair_status"], no_face["angle_detection"]) == ("frontal_only", "no_face")
    assert no_face["sim_angle_gt"] == no_face["gain"] == no_face["yaw"] == no_face["pose_source"] == ""
    assert no_face["guard_fallback"] == "true" and no_face["residual_yaw"] == ""
    assert no_face["pose_status"] == "no_face"
    keypoints = rows[("out", COMBOS[0], "s2/a.png")]  # stand-in keypoints are frontal: yaw proxy 0, pitch unknown
    assert (keypoints["pose_source"], keypoints["pitch"], keypoints["pitch_bin"]) == ("keypoints", "", "")
    assert float(keypoints["yaw"]) == 0.0 and keypoints["yaw_bin"] == "[0, 15)"
    assert keypoints["pose_status"] == "estimated"
    assert (keypoints["pair_status"], keypoints["frontal_detection"], keypoints["sim_frontal_gt"]) == \
        ("angle_only", "no_face", "")
    failed = rows[("out", COMBOS[1], "s2/b.png")]
    assert (failed["frontal_detection"], failed["inference_status"], failed["inference_reason"]) == \
        ("no_output", "no_face", "no face detected")
    assert failed["frontal_path"] == "" and failed["sim_angle_gt"] != ""
    missing = rows[("out2", COMBOS[1], "s2/b.png")]  # no manifest: status unknown, not "ok"
    assert (missing["frontal_detection"], missing["inference_status"]) == ("no_output", "")
    assert rows[("out2", COMBOS[0], "s1/a.png")]["frontal_detection"] == "found_retry"
    assert rows[("out2", COMBOS[0], "s1/b.png")]["guard_candidate"] == ""
    no_gt, gt_no_face = rows[("out", COMBOS[0], "s3/a.png")], rows[("out", COMBOS[0], "s4/a.png")]
    assert (no_gt["pair_status"], no_gt["gt_path"], no_gt["sim_angle_gt"]) == ("no_gt", "", "")
    assert no_gt["inference_status"] == "skipped_existing"  # the last manifest row, though not an ok row
    assert no_gt["frontal_detection"] == "found" and no_gt["residual_yaw"] == ""
    assert (gt_no_face["pair_status"], gt_no_face["sim_frontal_gt"]) == ("no_face_gt", "")
    assert gt_no_face["angle_detection"] == "found" and gt_no_face["gt_path"].endswith("gt/s4.png")


def test_jsonl_holds_the_same_rows_with_nulls(run: tuple[EvaluationResults, Path]) -> None:
    _, report = run
    csv_rows = _csv_rows(report / "per_image.csv")[1]
    lines = (report / "per_image.jsonl").read_text(encoding="utf-8").splitlines()
    objects = [json.loads(line) for line in lines]
    assert len(objects) == len(csv_rows) and all(list(o) == list(PER_IMAGE_COLUMNS) for o in objects)
    for obj, row in zip(objects, csv_rows):
        for key, value in obj.items():
            expected = "" if value is None else ("true" if value is True else "false" if value is False else str(value))
            assert row[key] == expected, key
    assert all((o["gain"] is None) == (o["pair_status"] != "paired") for o in objects)
    assert all(isinstance(o["guard_fallback"], (bool, type(None))) for o in objects)


def test_gt_table(run: tuple[EvaluationResults, Path]) -> None:
    results, report = run
    header, rows = _csv_rows(report / "per_image_gt.csv")
    assert tuple(header) == GT_COLUMNS
    by_subject = {r["subject"]: r for r in rows}
    assert set(by_subject) == {"s1", "s2", "s4"}
    assert by_subject["s1"]["gt_rel"] == "gt/s1.png" and by_subject["s1"]["n_probes"] == "2"
    assert by_subject["s1"]["gt_rule"] == results.dataset.gt_rule
    assert (by_subject["s1"]["pose_source"], by_subject["s1"]["yaw"]) == ("keypoints", "0.0")
    assert by_subject["s4"]["pose_source"] == by_subject["s4"]["yaw"] == ""  # its GT has no face
    assert len((report / "per_image_gt.jsonl").read_text().splitlines()) == 3


def test_report_md_links_and_html_switch(tmp_path: Path) -> None:
    data, out, _ = write_fixture(tmp_path)
    inputs = EvaluationInputs(data, (out,), tmp_path / "report")
    evaluate(_config(html=False), inputs, weights_root=_weights(tmp_path), device="cpu",
             model_factories=Factories().as_kwargs())
    assert (inputs.out_dir / "per_image.csv").is_file() and (inputs.out_dir / "per_image_gt.jsonl").is_file()
    assert not (inputs.out_dir / "report.html").exists() and not (inputs.out_dir / "thumbs").exists()
    text = (inputs.out_dir / "report.md").read_text()
    assert "[per_image.csv](per_image.csv)" in text and "report.html" not in text


def test_pose_with_source_precedence() -> None:
    kps = np.array([[30.0, 40], [70, 40], [50, 55], [38, 72], [62, 72]])
    face = Detection(status="face", attempt="plain", kps=kps, box=np.array([10.0, 10, 90, 90]))
    assert pose_with_source(HeadPose(1.0, -20.0, 3.0), face, None) == (1.0, -20.0, 3.0, "annotation")
    estimated = Detection(status="face", attempt="plain", kps=kps, pose=(4.0, 12.0, float("nan")))
    assert pose_with_source(None, estimated, "1k3d68") == (4.0, 12.0, None, "1k3d68")
    pitch, yaw, roll, source = pose_with_source(None, face, "1k3d68")
    assert (pitch, source) == (None, "keypoints") and yaw == pytest.approx(0.0) and roll == pytest.approx(0.0)
    assert pose_with_source(None, Detection(status="no_face"), "1k3d68") == (None, None, None, None)
    unfit = Detection(status="face", attempt="plain", kps=kps, pose=(math.nan,) * 3, reason="landmarks_unfit: x")
    assert pose_with_source(None, unfit, "landmarks68") == (None, None, None, "landmarks68")  # no pose, never 0
    rendered = HeadPose(0.0, 30.0, 0.0, source="rendered")
    assert pose_with_source(rendered, unfit, "landmarks68") == (0.0, 30.0, 0.0, "rendered")
    assert pose_with_source(None, None, None) == (None, None, None, None)


def test_detection_outcome_labels() -> None:
    assert detection_outcome(Detection(status="face", attempt="plain")) == "found"
    assert detection_outcome(Detection(status="face", attempt="padded")) == "found_retry"
    assert detection_outcome(Detection(status="no_face")) == "no_face"
    assert detection_outcome(Detection(status="unreadable")) == "unreadable"
    assert detection_outcome(None) == "unreadable"


def test_csv_cells_missing_is_empty_never_zero() -> None:
    text = to_csv([{"a": None, "b": 0.0, "c": False, "d": "x,y"}], ("a", "b", "c", "d"))
    assert text == 'a,b,c,d\n,0.0,false,"x,y"\n'


def _readme_columns(title: str) -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    match = re.search(rf"<!-- {title} columns -->\n(.*?)<!-- /{title} columns -->", text, re.S)
    assert match, f"README has no '{title} columns' block"
    return re.findall(r"^\| `([a-z_]+)` \|", match.group(1), re.M)


def test_readme_documents_exactly_the_columns() -> None:
    assert _readme_columns("per_image") == list(PER_IMAGE_COLUMNS)
    assert _readme_columns("per_image_gt") == list(GT_COLUMNS)
