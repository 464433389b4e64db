"""Tests of the unsharp-mask core and the sharpen stage."""

from __future__ import annotations

import math

import numpy as np
import pytest

from frontalize.config.stages import SharpenConfig
from frontalize.errors import ConfigError
from frontalize.stages.base import StageContext
from frontalize.stages.sharpen import SharpenStage, unsharp_mask

CONTEXT = StageContext(input_id="img.png")


def _gauss_taps(sigma: float) -> list[float]:
    """Normalised 1-D Gaussian taps for offsets -4σ..4σ (σ = 1 → 9 taps)."""
    raw = [math.exp(-(k * k) / (2 * sigma * sigma)) for k in range(-4, 5)]
    return [r / sum(raw) for r in raw]


def _spike(background: int = 100, peak: int = 200) -> np.ndarray:
    image = np.full((9, 9, 3), background, dtype=np.uint8)
    image[4, 4] = peak
    return image


def test_unsharp_mask_matches_hand_computation() -> None:
    taps = _gauss_taps(1.0)
    w0, w1 = taps[4], taps[5]
    # A 100-high spike on a 9×9 plate: the ±4σ kernel fits exactly, so no border handling is involved.
    blurred_centre = 100 + 100 * w0 * w0
    blurred_right = 100 + 100 * w0 * w1
    amount = 0.5
    expected_centre = round(200 + amount * (200 - blurred_centre))
    expected_right = round(100 + amount * (100 - blurred_right))
    out = unsharp_mask(_spike(), amount=amount, radius=1.0, threshold=0)
    assert out.dtype == np.uint8 and out.shape == (9, 9, 3)
    assert out[4, 4].tolist() == [expected_centre] * 3
    assert out[4, 5].tolist() == [expected_right] * 3
    assert expected_centre == 242 and expected_right == 95  # the hand numbers themselves


def test_threshold_leaves_small_differences_alone() -> None:
    # |detail| is ~84.1 at the spike and ~9.7 next to it.
    out = unsharp_mask(_spike(), amount=0.5, radius=1.0, threshold=10)
    assert out[4, 4, 0] == 242
    assert out[4, 5, 0] == 100 and out[0, 0, 0] == 100
    untouched = unsharp_mask(_spike(), amount=0.5, radius=1.0, threshold=85)
    assert np.array_equal(untouched, _spike())


def test_amount_zero_is_identity_and_large_amount_clips() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (16, 20, 3), dtype=np.uint8)
    assert np.array_equal(unsharp_mask(image, amount=0.0, radius=2.0), image)
    clipped = unsharp_mask(_spike(peak=250), amount=50.0, radius=1.0)
    assert clipped[4, 4, 0] == 255 and clipped[4, 5, 0] == 0


def test_invalid_parameters_raise() -> None:
    with pytest.raises(ValueError):
        unsharp_mask(_spike(), amount=-1.0, radius=1.0)
    with pytest.raises(ValueError):
        unsharp_mask(_spike(), amount=1.0, radius=0.0)
    with pytest.raises(ConfigError, match="sharpen"):
        SharpenStage(SharpenConfig(radius=0.0))


def test_stage_sharpens_rgb_and_keeps_alpha() -> None:
    stage = SharpenStage(SharpenConfig(enabled=True, amount=0.5, radius=1.0, threshold=0))
    out = stage(_spike(), CONTEXT)
    assert out.shape == (9, 9, 3) and out[4, 4, 0] == 242
    alpha = np.arange(81, dtype=np.uint8).reshape(9, 9)
    rgba = np.dstack([_spike(), alpha])
    out_rgba = stage(rgba, CONTEXT)
    assert out_rgba.shape == (9, 9, 4)
    assert np.array_equal(out_rgba[..., 3], alpha)
    assert np.array_equal(out_rgba[..., :3], out)
