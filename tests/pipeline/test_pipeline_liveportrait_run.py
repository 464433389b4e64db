"""LivePortrait end to end on deterministic test weights (scripts/make_test_weights.py), and weight checks."""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from pipeline_helpers import OFFLINE_CONFIG, load_script, save

from frontalize.io.manifest import read_manifest


@pytest.fixture(scope="module")
def test_weights(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("test_weights")
    assert load_script("make_test_weights").main([str(root), "--only", "liveportrait", "insightface"]) == 0
    yield root
    shutil.rmtree(root)  # ~500 MB: not left in pytest's kept temp folders


@pytest.fixture(scope="module")
def two_faces(tmp_path_factory: pytest.TempPathFactory, face_photos: dict[str, np.ndarray]) -> Path:
    root = tmp_path_factory.mktemp("two")
    save(root / "astronaut" / "a.jpg", face_photos["astronaut"])
    save(root / "t1" / "b.png", face_photos["t1_2"])
    return root


def _pose_ok(pose: dict | None) -> bool:
    return pose is not None and all(math.isfinite(pose[axis]) for axis in ("pitch", "yaw", "roll"))


def test_make_test_weights_layout(test_weights: Path) -> None:
    from frontalize.liveportrait.loading import LP_WEIGHT_KEYS, load_official
    from frontalize.weights import weight_path

    for key in (*LP_WEIGHT_KEYS, "lp_landmark", "insightface_det_10g", "insightface_2d106det",
                "insightface_w600k_r50", "insightface_glintr100", "insightface_scrfd_10g_bnkps"):
        assert weight_path(key, test_weights).is_file(), key
    networks = load_official(test_weights, allow_unverified=True)  # strict key/shape load of every file
    assert len(networks) == 7
    script = load_script("make_test_weights")
    value = script.fill_tensor("spade.conv_0.weight_orig", (4, 3, 1, 1))
    again = script.fill_tensor("spade.conv_0.weight_orig", (4, 3, 1, 1))
    assert np.array_equal(value, again) and value.dtype == np.float32


@pytest.mark.slow
def test_liveportrait_offline_interface(two_faces: Path, test_weights: Path, tmp_path: Path,
                                        run_cli: Callable[..., int]) -> None:
    out = tmp_path / "out"
    code = run_cli("--config", OFFLINE_CONFIG, "--source_dir", two_faces, "--recursive", "-o", out, "--frontalize",
                   "--weights-dir", test_weights, "--allow-unverified-weights", "--set", "output.kind=both")
    assert code == 0
    rows = {row["input"]: row for row in read_manifest(out / "manifest.jsonl")}
    assert sorted(rows) == ["astronaut/a.jpg", "t1/b.png"]
    for rel, row in rows.items():
        assert row["status"] == "ok", row
        assert _pose_ok(row["source_pose"]) and _pose_ok(row["output_pose"])
        crop = cv2.imread(str(out / row["outputs"]["default"]["crop"]))
        full = cv2.imread(str(out / row["outputs"]["default"]["full"]))
        source = cv2.imread(str(two_faces / rel))
        assert crop.shape == (512, 512, 3) and full.shape == source.shape
        assert row["timings_ms"]["frontalize"] > 0
    info = (out / "run_info.json").read_text()
    assert "lp_spade_generator" in info


def test_identity_with_insightface_chain_measures_poses(two_faces: Path, test_weights: Path, tmp_path: Path,
                                                        run_cli: Callable[..., int]) -> None:
    out = tmp_path / "out"
    code = run_cli("--source_dir", two_faces, "--recursive", "-o", out, "--weights-dir", test_weights,
                   "--allow-unverified-weights")
    assert code == 0
    for row in read_manifest(out / "manifest.jsonl"):
        assert row["status"] == "ok" and row["landmarks"] == "106"  # det_10g + 2d106det stand-ins
        assert _pose_ok(row["source_pose"]) and row["output_pose"] == row["source_pose"]
        assert row["pose_source"] == "motion_extractor"  # auto: M's weight file is present


def test_missing_weights_exit_3_before_any_image_is_read(two_faces: Path, tmp_path: Path,
                                                         run_cli: Callable[..., int],
                                                         capsys: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    def no_reading(*args: object, **kwargs: object) -> None:
        raise AssertionError("an image was read before the weights were checked")

    monkeypatch.setattr("frontalize.pipeline.steps.load_image", no_reading)
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "out"
    code = run_cli("--source_dir", two_faces / "t1", "--source_pattern", "*.png", "-o", out, "--frontalize",
                   "--weights-dir", empty)
    assert code == 3
    message = capsys.readouterr().err
    for relpath in ("liveportrait/base_models/appearance_feature_extractor.pth",
                    "liveportrait/base_models/motion_extractor.pth", "liveportrait/base_models/warping_module.pth",
                    "liveportrait/base_models/spade_generator.pth",
                    "liveportrait/retargeting_models/stitching_retargeting_module.pth",
                    "insightface/models/buffalo_l/det_10g.onnx", "insightface/models/buffalo_l/2d106det.onnx"):
        assert relpath in message
    assert "scripts/download_weights.py" in message
    assert not (out / "manifest.jsonl").exists()


def test_test_weights_fail_checksums_without_the_flag(two_faces: Path, test_weights: Path, tmp_path: Path,
                                                      run_cli: Callable[..., int]) -> None:
    code = run_cli("--config", OFFLINE_CONFIG, "--source_dir", two_faces, "--recursive", "-o", tmp_path / "out",
                   "--frontalize", "--weights-dir", test_weights, "--dry-run")
    assert code == 3


def test_pose_estimation_never_and_always(two_faces: Path, test_weights: Path, tmp_path: Path,
                                          run_cli: Callable[..., int]) -> None:
    out = tmp_path / "never"
    assert run_cli("--config", OFFLINE_CONFIG, "--source_dir", two_faces / "t1", "-o", out, "--weights-dir",
                   test_weights, "--allow-unverified-weights", "--set", "frontalizer.pose_estimation=never") == 0
    (row,) = read_manifest(out / "manifest.jsonl")
    assert row["source_pose"] is None and row["output_pose"] is None
    assert row["pose_source"] is None
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run_cli("--config", OFFLINE_CONFIG, "--source_dir", two_faces / "t1", "-o", tmp_path / "always",
                   "--weights-dir", empty, "--set", "frontalizer.pose_estimation=always",
                   "--set", "frontalizer.pose_source=motion_extractor") == 3


@pytest.mark.slow
def test_liveportrait_with_the_68_point_pose_source(two_faces: Path, test_weights: Path, tmp_path: Path,
                                                    run_cli: Callable[..., int]) -> None:
    """The offline estimator measures the source crop (real face); the test weights' output is noise, in which it
    finds no face it can fit: the output pose is null, never a made-up number, and the row is still ok."""
    out = tmp_path / "out"
    assert run_cli("--config", OFFLINE_CONFIG, "--source_dir", two_faces / "astronaut", "-o", out, "--frontalize",
                   "--weights-dir", test_weights, "--allow-unverified-weights",
                   "--set", "frontalizer.pose_source=landmarks68") == 0
    (row,) = read_manifest(out / "manifest.jsonl")
    assert row["status"] == "ok" and row["pose_source"] == "landmarks68"
    assert _pose_ok(row["source_pose"]) and abs(row["source_pose"]["yaw"]) < 30
    assert row["output_pose"] is None
