"""scripts/make_test_weights.py: fill rules and the small stand-ins (the big LivePortrait files are exercised by
test_pipeline_liveportrait_run.py)."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import skimage.data
from pipeline_helpers import load_script

from frontalize.config.stages import BackgroundConfig
from frontalize.stages.background import BackgroundStage
from frontalize.stages.base import StageContext


@pytest.fixture(scope="module")
def script() -> ModuleType:
    return load_script("make_test_weights")


def test_fill_rules(script: ModuleType) -> None:
    assert script.fill_tensor("a.norm.num_batches_tracked", ()).dtype == np.int64
    var = script.fill_tensor("a.norm.running_var", (1000,))
    assert var.min() >= 1.0 and abs(var.mean() - 1.08) < 0.02
    conv = script.fill_tensor("a.conv.weight", (64, 32, 3, 3))
    assert abs(conv.std() * np.sqrt(32 * 9) - 1.0) < 0.05  # N(0, 1/fan_in)
    assert abs(script.fill_tensor("a.conv.bias", (5000,)).std() - 0.01) < 0.002
    assert abs(script.fill_tensor("first.norm.bias", (5000,)).std() - 0.1) < 0.01
    weight = script.fill_tensor("up.conv_0.weight_orig", (64, 32, 3, 3)).astype(np.float64).reshape(64, -1)
    u = script.fill_tensor("up.conv_0.weight_u", (64,)).astype(np.float64)
    v = script.fill_tensor("up.conv_0.weight_v", (32 * 9,)).astype(np.float64)
    assert abs(np.linalg.norm(u) - 1) < 1e-5 and 1.7 < float(u @ weight @ v) < 2.3  # stored-vector σ ≈ 2
    assert not np.array_equal(script.fill_tensor("k.weight", (8, 8), seed=1), script.fill_tensor("k.weight", (8, 8)))


def test_rembg_stand_ins_load_through_rembg(script: ModuleType, tmp_path: Path) -> None:
    written = script.write_rembg(tmp_path, 0)
    assert sorted(p.name for p in written) == sorted(
        ["u2net.onnx", "u2netp.onnx", "u2net_human_seg.onnx", "silueta.onnx", "isnet-general-use.onnx"])
    image = np.ascontiguousarray(skimage.data.astronaut()[::4, ::4])
    for model in ("u2net", "isnet-general-use"):
        stage = BackgroundStage(BackgroundConfig(enabled=True, model=model), tmp_path)
        assert stage(image, StageContext("x")).shape == image.shape


def test_cli_warns_and_writes_groups(script: ModuleType, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("INFO"):
        assert script.main([str(tmp_path), "--only", "insightface", "rembg"]) == 0
    assert "MEANINGLESS" in caplog.text
    assert (tmp_path / "insightface" / "models" / "buffalo_l" / "det_10g.onnx").is_file()
    assert (tmp_path / "insightface" / "models" / "antelopev2" / "glintr100.onnx").is_file()
    assert not (tmp_path / "liveportrait").exists()
