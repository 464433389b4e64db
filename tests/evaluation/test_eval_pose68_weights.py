"""``dataset.pose: auto`` falls back from 1k3d68 only when its file is absent (to the 68-point estimator when the
offline extra is installed, else to the 5-keypoint proxy); a corrupt or changed 1k3d68 file is a weights error
(exit code 3), never silently replaced."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from eval_standins import colour_image

from frontalize.config.evaluation import (
    CombinationConfig,
    EvalConfig,
    EvalDatasetConfig,
    EvalRunConfig,
    FiguresConfig,
    StatsConfig,
)
from frontalize.errors import ConfigError, WeightsMissingError
from frontalize.evaluation import runner
from frontalize.evaluation.runner import EvaluationInputs, evaluate, verify_evaluation_weights
from frontalize.faces import synthetic
from frontalize.faces.registry import build_pose_estimator
from frontalize.weights import weight_path


def _weights(root: Path) -> Path:
    synthetic.write_scrfd_like(weight_path("insightface_det_10g", root), seed=0)
    synthetic.write_arcface_like(weight_path("insightface_w600k_r50", root), seed=1)
    return root


def _config(allow_unverified: bool, cache: Path, combination: tuple[str, str] = ("scrfd_10g", "arcface_r50"),
            layout: str = "generic", pose: str = "auto") -> EvalConfig:
    base = EvalConfig()
    return EvalConfig(**{**base.__dict__, "device": "cpu", "allow_unverified_weights": allow_unverified,
                         "combinations": (CombinationConfig(*combination),),
                         "stats": StatsConfig(bootstrap_resamples=20), "figures": FiguresConfig(enabled=False),
                         "run": EvalRunConfig(progress=False),
                         "dataset": EvalDatasetConfig(layout=layout, pose=pose),  # type: ignore[arg-type]
                         "cache": base.cache.__class__(dir=str(cache))})


def _data(root: Path) -> EvaluationInputs:
    data, out = root / "data", root / "out"
    for index, name in enumerate(("a", "b")):
        base = (60 + 60 * index, 120, 200 - 50 * index)
        colour_image(data / "gt" / f"{name}.png", base, size=96)
        colour_image(data / name / "1.png", tuple(c + 9 for c in base), size=96)
        colour_image(out / name / "1.png", tuple(c + 4 for c in base), size=96)
    return EvaluationInputs(data, (out,), root / "report")


OFFLINE = ("retinaface_mnet", "dlib_resnet")  # package-shipped models: the pose model is the only weight file


def test_absent_file_falls_back_to_the_68_point_estimator_then_the_proxy(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "w"
    verified, pose_model = verify_evaluation_weights(_config(False, tmp_path / "c", OFFLINE), root)
    assert pose_model == "landmarks68" and "insightface_1k3d68" not in verified
    assert verified["dlib_shape_predictor_68"].sha256 is not None  # the packaged predictor, verified
    monkeypatch.setattr(runner, "landmarks68_installed", lambda: False)  # a machine without the offline extra
    with caplog.at_level(logging.INFO, logger="frontalize.evaluation.runner"):
        verified, pose_model = verify_evaluation_weights(_config(False, tmp_path / "c", OFFLINE), root)
    assert pose_model is None and "dlib_shape_predictor_68" not in verified
    assert "no pose model" in caplog.text and "5 keypoints" in caplog.text
    with pytest.raises(ConfigError, match=r'landmarks68 needs the offline extra.*pip install "\.\[offline\]"'):
        verify_evaluation_weights(_config(False, tmp_path / "c", OFFLINE, pose="landmarks68"), root)


def test_intact_file_is_verified_and_used(tmp_path: Path) -> None:
    root = tmp_path / "w"
    synthetic.write_1k3d68_like(weight_path("insightface_1k3d68", root), seed=2)
    verified, pose_model = verify_evaluation_weights(_config(False, tmp_path / "c", OFFLINE), root)
    assert pose_model == "1k3d68" and verified["insightface_1k3d68"].sha256 is not None
    # BIWI (annotated): the 68-point estimator first, whose error against the annotations the report states
    assert verify_evaluation_weights(_config(False, tmp_path / "c", OFFLINE, layout="biwi"), root)[1] == "landmarks68"
    assert verify_evaluation_weights(_config(False, tmp_path / "c", OFFLINE, pose="keypoints"), root)[1] is None


def test_file_changed_after_first_use_is_an_error_not_a_fallback(tmp_path: Path) -> None:
    root = tmp_path / "w"
    path = synthetic.write_1k3d68_like(weight_path("insightface_1k3d68", root), seed=2)
    verify_evaluation_weights(_config(False, tmp_path / "c", OFFLINE), root)  # trusted on first use
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # truncated later
    with pytest.raises(WeightsMissingError, match=r"insightface_1k3d68: .*1k3d68\.onnx: changed since") as caught:
        verify_evaluation_weights(_config(False, tmp_path / "c", OFFLINE), root)
    assert caught.value.exit_code == 3


@pytest.mark.parametrize("content", [b"", b"not an onnx model" * 50])
def test_unloadable_file_is_reported_when_the_run_builds_the_model(tmp_path: Path, content: bytes) -> None:
    root = _weights(tmp_path / "w")
    weight_path("insightface_1k3d68", root).write_bytes(content)
    with pytest.raises(WeightsMissingError, match="cannot load the landmark_3d_68 model") as caught:
        evaluate(_config(True, tmp_path / "c"), _data(tmp_path), weights_root=root, device="cpu")
    message = str(caught.value)
    assert caught.value.exit_code == 3 and "1k3d68.onnx" in message
    assert "python scripts/download_weights.py" in message and "--only insightface_buffalo_l" in message
    with pytest.raises(WeightsMissingError, match="corrupt or not an ONNX model"):
        build_pose_estimator(weights_root=root)
