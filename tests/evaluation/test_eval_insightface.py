"""The InsightFace path (SCRFD via insightface, ArcFace via insightface, 1k3d68 pose) on tiny synthetic ONNX models
with InsightFace's real input/output signatures (the real packs cannot be downloaded here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from eval_standins import colour_image

from frontalize.config.evaluation import CombinationConfig, EvalConfig, EvalRunConfig, FiguresConfig, StatsConfig
from frontalize.errors import WeightsMissingError
from frontalize.evaluation.runner import EvaluationInputs, evaluate, required_weight_keys
from frontalize.faces import synthetic
from frontalize.weights import weight_path


@pytest.fixture(scope="module")
def weights_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("weights")
    synthetic.write_scrfd_like(weight_path("insightface_det_10g", root), seed=0)
    synthetic.write_arcface_like(weight_path("insightface_w600k_r50", root), seed=1)
    synthetic.write_1k3d68_like(weight_path("insightface_1k3d68", root), seed=2, yaw_degrees=20.0)
    return root


def _data(root: Path) -> tuple[Path, Path]:
    data, out = root / "data", root / "out"
    for index, name in enumerate(("a", "b", "c")):
        base = (60 + 50 * index, 120, 200 - 40 * index)
        colour_image(data / "gt" / f"{name}.png", base, size=96)
        for j in (1, 2):
            shade = tuple(min(255, c + 7 * j) for c in base)
            colour_image(data / name / f"{j}.png", shade, size=96)
            colour_image(out / name / f"{j}.png", tuple(min(255, c + 4 * j) for c in base), size=96)
    return data, out


def _config(**changes: object) -> EvalConfig:
    base = EvalConfig(device="cpu", allow_unverified_weights=True,
                      combinations=(CombinationConfig("scrfd_10g", "arcface_r50"),),
                      stats=StatsConfig(bootstrap_resamples=30), figures=FiguresConfig(enabled=False),
                      run=EvalRunConfig(progress=False))
    return EvalConfig(**{**base.__dict__, **changes})


def test_weight_keys_and_missing_weights_first(tmp_path: Path) -> None:
    assert required_weight_keys(_config()) == ["insightface_det_10g", "insightface_w600k_r50"]
    assert required_weight_keys(EvalConfig()) == ["facexlib_retinaface_r50", "insightface_glintr100",
                                                  "insightface_det_10g", "insightface_w600k_r50"]
    inputs = EvaluationInputs(tmp_path / "no-such-data", (tmp_path / "no-such-out",), tmp_path / "report")
    with pytest.raises(WeightsMissingError) as error:  # raised before the (absent) dataset is looked at
        evaluate(EvalConfig(), inputs, weights_root=tmp_path / "empty", device="cpu")
    message = str(error.value)
    assert all(key in message for key in required_weight_keys(EvalConfig())) and "download" in message


def test_insightface_path_end_to_end(tmp_path: Path, weights_root: Path) -> None:
    data, out = _data(tmp_path)
    inputs = EvaluationInputs(data, (out,), tmp_path / "report")
    cfg = _config(cache=_config().cache.__class__(dir=str(tmp_path / "cache")))
    results = evaluate(cfg, inputs, weights_root=weights_root, device="cpu")
    combo = results.combinations[0]
    assert combo.gallery.embeddings.shape == (3, 512)
    summary = combo.arms[0].summary
    assert summary["n"] == 6 and summary["no_face_angle"] == 0 and summary["no_face_frontal"] == 0
    assert "1k3d68" in results.pose_source
    assert any(r["axis"] == "pitch" and r["n"] > 0 for r in combo.arms[0].pose_bins)  # 1k3d68 gives pitch
    assert results.store.computed["decoded"] == 15
    saved = json.loads((inputs.out_dir / "summary.json").read_text())
    entry = saved["results"]["out"]["scrfd_10g+arcface_r50"]
    for key in ("mean_angle_gt", "mean_frontal_gt", "net_gain", "n", "no_face_angle", "no_face_frontal",
                "net_gain_ci95", "verification"):
        assert key in entry
    assert saved["weights"]["insightface_det_10g"] is None  # unverified test weights have no checksum
    again = evaluate(cfg, inputs, weights_root=weights_root, device="cpu")
    assert again.store.computed == {"decoded": 0, "detections": 0, "embeddings": 0}  # all from the cache
