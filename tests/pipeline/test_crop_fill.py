"""``crop.fill``: the part of a crop beyond the image border (``frontalize/pipeline/crop_fill.py``), in the pure
function and in the crop step, and ``--frontalize mesh`` on a face at the image border (no black wedge)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from pipeline_helpers import OFFLINE_CONFIG, save

from frontalize.config.inference import CropConfig
from frontalize.faces.types import Face
from frontalize.liveportrait.crop import crop_face
from frontalize.pipeline.crop_fill import outside_mask, reflect_crop, resolve_crop_fill
from frontalize.pipeline.inputs import InputItem
from frontalize.pipeline.steps import PrepareStep

KPS = np.array([[60.0, 80.0], [110.0, 78.0], [85.0, 105.0], [65.0, 130.0], [108.0, 128.0]], dtype=np.float32)
"""Five keypoints of a face 50 px from the left image border: its crop reaches well past it."""


def _textured(height: int = 240, width: int = 320) -> np.ndarray:
    rng = np.random.default_rng(7)
    noise = cv2.GaussianBlur(rng.uniform(0, 255, (height, width, 3)).astype(np.float32), (0, 0), 3.0)
    ramp = np.linspace(60, 200, width, dtype=np.float32)[None, :, None]
    return np.clip(0.5 * noise + ramp, 0, 255).astype(np.uint8)


def test_a_crop_inside_the_image_is_untouched() -> None:
    image = _textured(800, 800)
    crop = crop_face(image, KPS + 300.0, dsize=256)
    assert outside_mask(image.shape, crop.M_o2c, 256) is None
    assert reflect_crop(image, crop.M_o2c, crop.image) is crop.image


def test_the_part_beyond_the_border_is_filled_and_the_rest_kept() -> None:
    image = _textured()
    crop = crop_face(image, KPS, dsize=256)
    outside = outside_mask(image.shape, crop.M_o2c, 256)
    assert outside is not None and 0.1 < (outside > 0).mean() < 0.6
    filled = reflect_crop(image, crop.M_o2c, crop.image)
    inside = outside == 0
    assert np.array_equal(filled[inside], crop.image[inside])  # what the image shows is bit-identical
    beyond = outside > 0
    assert crop.image[beyond].max(axis=-1).mean() < 10  # the plain crop is black there...
    assert filled[beyond].max(axis=-1).min() > 40  # ...the filled one nowhere
    # Next to the border it continues the photograph: the 2-px band on either side has the same mean colour.
    near = cv2.dilate(outside, np.ones((5, 5), np.uint8)) > 0
    band_out, band_in = near & beyond & (cv2.erode(outside, np.ones((9, 9), np.uint8)) == 0), near & inside
    assert np.abs(filled[band_out].mean(axis=0) - filled[band_in].mean(axis=0)).max() < 12
    # Far out it is featureless: the blur leaves little detail there (the photograph's own detail is ~10× more).
    distance = cv2.distanceTransform(beyond.astype(np.uint8), cv2.DIST_L2, 5)
    far = distance > 0.15 * 256
    assert far.any()
    gradient = np.abs(np.diff(filled.astype(np.float32), axis=1)).sum(axis=-1)
    assert gradient[far[:, 1:]].mean() < 0.25 * gradient[inside[:, 1:]].mean()


def test_auto_is_black_for_liveportrait_and_reflect_otherwise() -> None:
    assert resolve_crop_fill("auto", "liveportrait") == "black"
    assert resolve_crop_fill("auto", "mesh") == resolve_crop_fill("auto", "identity") == "reflect"
    assert resolve_crop_fill("black", "mesh") == "black"
    assert resolve_crop_fill("reflect", "liveportrait") == "reflect"


class _OneFace:
    def locate(self, image: np.ndarray) -> list[Face]:
        return [Face(box=np.array([40.0, 50.0, 130.0, 160.0]), score=0.99, kps=KPS)]


@pytest.mark.parametrize("fill", ["black", "reflect"])
def test_the_crop_step_applies_the_fill(tmp_path: Path, fill: str) -> None:
    path = save(tmp_path / "edge.png", _textured())
    step = PrepareStep(_OneFace(), CropConfig(fill=fill))  # type: ignore[arg-type]
    prepared = step(InputItem(path=path, rel="edge.png", output_stem="edge"))
    assert prepared.status == "ok", prepared.reason
    crop = prepared.faces[0].crop
    black = crop.max(axis=-1) < 10
    assert (black.mean() > 0.1) == (fill == "black")


@pytest.mark.slow
def test_mesh_output_of_a_face_at_the_border_has_no_black_wedge(face_photos: dict[str, np.ndarray], tmp_path: Path,
                                                                 run_cli: Callable[..., int],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRONTALIZE_WEIGHTS", str(tmp_path / "weights"))
    # The astronaut cut 20 px left of her face and 10 px above her hair: the crop reaches past both borders.
    source = tmp_path / "src"
    save(source / "edge.png", np.ascontiguousarray(face_photos["astronaut"][10:, 150:]))
    strips = {}
    for fill in ("black", "reflect"):
        out = tmp_path / fill
        assert run_cli("--config", OFFLINE_CONFIG, "--source_dir", source, "-o", out, "--frontalize", "mesh",
                       "--set", f"crop.fill={fill}") == 0
        image = cv2.imread(str(out / "edge.png"))
        assert image is not None and image.shape == (512, 512, 3)
        black = image.max(axis=-1) < 12
        strips[fill] = float(np.concatenate([black[:16].ravel(), black[:, :16].ravel()]).mean())
    assert strips["black"] > 0.3  # the wedges this is about...
    assert strips["reflect"] < 0.01, strips  # ...are gone
