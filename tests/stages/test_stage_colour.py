"""Tests of the colour-statistics transfer (pure functions) and the colour stage."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from frontalize.config.stages import ColourConfig
from frontalize.errors import StageError
from frontalize.stages.base import StageContext
from frontalize.stages.colour import (
    ColourStage,
    box_mask,
    channel_statistics,
    match_colour_statistics,
    transfer_statistics,
)


def _lab_stats(image: np.ndarray, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    lab = cv2.cvtColor(image.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab).astype(np.float64)
    samples = lab[mask] if mask is not None else lab.reshape(-1, 3)
    return samples.mean(axis=0), samples.std(axis=0)


def _noisy(mean_rgb: tuple[int, int, int], spread: float, seed: int, shape: tuple[int, int] = (48, 48)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    pixels = np.asarray(mean_rgb, dtype=np.float64) + rng.normal(0.0, spread, (*shape, 3))
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def test_transfer_statistics_hand_numbers() -> None:
    values = np.array([[1.0], [3.0]])  # mean 2, std 1
    mean, std = channel_statistics(values)
    assert mean.tolist() == [2.0] and std.tolist() == [1.0]
    full = transfer_statistics(values, mean, std, np.array([10.0]), np.array([2.0]), strength=1.0)
    assert full.ravel().tolist() == [8.0, 12.0]
    half = transfer_statistics(values, mean, std, np.array([10.0]), np.array([2.0]), strength=0.5)
    assert half.ravel().tolist() == [4.5, 7.5]  # mean 6 = 2 + 0.5·(10 − 2), std 1.5 = 0.5·1 + 0.5·2
    flat = transfer_statistics(np.array([[5.0], [5.0]]), np.array([5.0]), np.array([0.0]),
                               np.array([7.0]), np.array([3.0]), strength=1.0)
    assert flat.ravel().tolist() == [7.0, 7.0]  # a constant channel is only shifted


def test_match_moves_lab_statistics_to_the_reference() -> None:
    image = _noisy((120, 120, 120), 10.0, seed=0)
    reference = _noisy((170, 110, 90), 20.0, seed=1)
    ref_mean, ref_std = _lab_stats(reference)
    img_mean, img_std = _lab_stats(image)
    full_mean, full_std = _lab_stats(match_colour_statistics(image, reference, 1.0))
    assert np.allclose(full_mean, ref_mean, atol=0.6)
    assert np.allclose(full_std, ref_std, rtol=0.08, atol=0.3)
    half_mean, half_std = _lab_stats(match_colour_statistics(image, reference, 0.5))
    assert np.allclose(half_mean, (img_mean + ref_mean) / 2, atol=0.6)
    assert np.allclose(half_std, (img_std + ref_std) / 2, rtol=0.08, atol=0.3)
    assert np.array_equal(match_colour_statistics(image, reference, 0.0), image)


def test_box_mask_clips_and_rounds_outwards() -> None:
    mask = box_mask(10, 10, np.array([2.5, -3.0, 4.2, 3.0]))
    assert mask.sum() == 3 * 3 and mask[0:3, 2:5].all()
    assert box_mask(4, 4, np.array([9.0, 9.0, 12.0, 12.0])).sum() == 1


def test_stage_uses_face_box_statistics_scaled_to_the_reference() -> None:
    image = np.zeros((40, 40, 3), dtype=np.uint8)  # black background, grey face box [10, 30)
    image[10:30, 10:30] = _noisy((100, 100, 100), 8.0, seed=2, shape=(20, 20))
    reference = np.full((80, 80, 3), 255, dtype=np.uint8)  # white background, reddish face box [20, 60)
    reference[20:60, 20:60] = _noisy((180, 120, 100), 8.0, seed=3, shape=(40, 40))
    box = np.array([10.0, 10.0, 30.0, 30.0])
    out = ColourStage(ColourConfig(enabled=True))(image, StageContext("x", source_rgb=reference, face_box=box))
    inner = np.zeros((40, 40), bool)
    inner[10:30, 10:30] = True
    ref_inner = np.zeros((80, 80), bool)
    ref_inner[20:60, 20:60] = True
    assert np.allclose(_lab_stats(out, inner)[0], _lab_stats(reference, ref_inner)[0], atol=1.0)
    whole = ColourStage(ColourConfig(enabled=True, region="full"))
    out_full = whole(image, StageContext("x", source_rgb=reference, face_box=box))
    assert not np.allclose(_lab_stats(out_full, inner)[0], _lab_stats(reference, ref_inner)[0], atol=1.0)


def test_stage_keeps_alpha_and_needs_the_source() -> None:
    image = _noisy((90, 90, 90), 5.0, seed=4, shape=(8, 8))
    alpha = np.full((8, 8), 7, dtype=np.uint8)
    stage = ColourStage(ColourConfig(enabled=True, strength=0.5))
    out = stage(np.dstack([image, alpha]), StageContext("x", source_rgb=_noisy((10, 200, 10), 5.0, seed=5)))
    assert out.shape == (8, 8, 4) and np.array_equal(out[..., 3], alpha)
    with pytest.raises(StageError, match="source"):
        stage(image, StageContext("x"))
    with pytest.raises(StageError, match="uint8"):
        stage(image, StageContext("x", source_rgb=image.astype(np.float32)))
