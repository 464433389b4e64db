"""Tests of the margins geometry (pure functions) and the margins stage."""

from __future__ import annotations

import numpy as np
import pytest

from frontalize.config.stages import MarginsConfig
from frontalize.errors import StageError
from frontalize.stages.base import StageContext
from frontalize.stages.margins import MarginsStage, apply_margins, margins_transform, transform_box


def test_transform_hand_numbers() -> None:
    # Box 100×200 (longer side 200) centred at (150, 150); target: 0.5 of 512 = 256 px, centre (256, 320).
    matrix = margins_transform(np.array([100.0, 50.0, 200.0, 250.0]), 512, 0.5, 0.5, 0.625)
    assert np.allclose(matrix, [[1.28, 0.0, 64.0], [0.0, 1.28, 128.0]])
    assert np.allclose(transform_box(np.array([100, 50, 200, 250]), matrix), [192, 192, 320, 448])


@pytest.mark.parametrize("box", [(10.0, 20.0, 40.0, 35.0), (300.0, 0.0, 900.0, 800.0)])
def test_transform_puts_face_at_reference_framing(box: tuple[float, ...]) -> None:
    cfg = MarginsConfig()
    mapped = transform_box(np.array(box), margins_transform(np.array(box), cfg.output_size, cfg.face_fraction,
                                                            cfg.center_x, cfg.center_y))
    side = max(mapped[2] - mapped[0], mapped[3] - mapped[1])
    assert side == pytest.approx(cfg.face_fraction * cfg.output_size)
    assert (mapped[0] + mapped[2]) / 2 == pytest.approx(cfg.center_x * cfg.output_size)
    assert (mapped[1] + mapped[3]) / 2 == pytest.approx(cfg.center_y * cfg.output_size)


def _box_image(height: int, width: int, box: tuple[int, int, int, int]) -> np.ndarray:
    image = np.zeros((height, width, 3), dtype=np.uint8)
    image[..., 2] = 255  # blue everywhere, white face box
    x1, y1, x2, y2 = box
    image[y1:y2, x1:x2] = 255
    return image


@pytest.mark.parametrize(("size", "box"), [((120, 160), (60, 30, 100, 70)), ((1600, 2000), (900, 500, 1300, 900))])
def test_stage_enlarges_or_shrinks_face_box_into_place(size: tuple[int, int], box: tuple[int, int, int, int]) -> None:
    cfg = MarginsConfig(enabled=True, output_size=200, face_fraction=0.5, center_x=0.5, center_y=0.5)
    out = MarginsStage(cfg)(_box_image(*size, box), StageContext("x", face_box=np.array(box, dtype=float)))
    assert out.shape == (200, 200, 3) and out.dtype == np.uint8
    white = np.all(out > 200, axis=2)
    rows, cols = np.nonzero(white)
    # The face box becomes the central 100×100 square (±1 px for interpolation at the edges).
    assert abs(rows.min() - 50) <= 1 and abs(rows.max() - 149) <= 1
    assert abs(cols.min() - 50) <= 1 and abs(cols.max() - 149) <= 1


def test_constant_padding_uses_fill_and_transparent_alpha() -> None:
    image = np.full((100, 100, 3), 128, dtype=np.uint8)
    box = np.array([0.0, 0.0, 50.0, 50.0])  # face in the top-left corner → padding above and left
    cfg = MarginsConfig(enabled=True, output_size=100, face_fraction=0.5, center_x=0.5, center_y=0.5,
                        fill=(10, 20, 30))
    out = MarginsStage(cfg)(image, StageContext("x", face_box=box))
    assert out[0, 0].tolist() == [10, 20, 30] and out[99, 99].tolist() == [128, 128, 128]
    rgba = np.dstack([image, np.full((100, 100), 255, np.uint8)])
    out_rgba = MarginsStage(cfg)(rgba, StageContext("x", face_box=box))
    assert out_rgba.shape == (100, 100, 4)
    assert out_rgba[0, 0].tolist() == [10, 20, 30, 0] and out_rgba[99, 99, 3] == 255


def test_replicate_padding_repeats_the_edge() -> None:
    image = np.zeros((100, 100, 3), dtype=np.uint8)
    image[0, :] = 200  # top row
    matrix = margins_transform(np.array([0.0, 0.0, 50.0, 50.0]), 100, 0.5, 0.5, 0.5)
    out = apply_margins(image, matrix, 100, "replicate", (0, 0, 0))
    assert out[0, 60, 0] == 200 and out[10, 60, 0] == 200


def test_stage_needs_a_valid_face_box() -> None:
    stage = MarginsStage(MarginsConfig(enabled=True))
    image = np.zeros((10, 10, 3), dtype=np.uint8)
    with pytest.raises(StageError, match="face box"):
        stage(image, StageContext("x"))
    with pytest.raises(StageError, match="invalid face box"):
        stage(image, StageContext("x", face_box=np.array([5.0, 5.0, 5.0, 9.0])))
