"""Image decoding / encoding at the boundary: formats, EXIF, bit depths, memory bound, clear failures."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from frontalize.errors import InputError
from frontalize.io.images import (
    apply_exif_orientation,
    decode_image,
    encode_image,
    load_image,
    sniff_format,
    write_image,
)


def _png(array: np.ndarray) -> bytes:
    ok, buffer = cv2.imencode(".png", array)
    assert ok
    return buffer.tobytes()


def _pil(image: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def rgb() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)


def test_png_roundtrip_is_exact_and_rgb_ordered(rgb: np.ndarray) -> None:
    decoded = decode_image(encode_image(rgb, "png"))
    np.testing.assert_array_equal(decoded.rgb, rgb)
    assert decoded.kind == "png" and decoded.stored_size == (40, 30) and decoded.notes == ()
    red = np.zeros((2, 2, 3), np.uint8)
    red[..., 0] = 255
    assert decode_image(encode_image(red, "png")).rgb[0, 0].tolist() == [255, 0, 0]


def test_jpeg_quality_changes_size_and_alpha_needs_png(rgb: np.ndarray) -> None:
    big = np.ascontiguousarray(np.tile(rgb, (8, 8, 1)))
    assert len(encode_image(big, "jpg", jpeg_quality=95)) > len(encode_image(big, "jpg", jpeg_quality=30))
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)])
    with pytest.raises(ValueError, match="PNG"):
        encode_image(rgba, "jpg")
    back = cv2.imdecode(np.frombuffer(encode_image(rgba, "png"), np.uint8), cv2.IMREAD_UNCHANGED)
    assert back.shape == (30, 40, 4) and int(back[0, 0, 3]) == 7


def test_gray_palette_rgba_and_16_bit_are_converted(rgb: np.ndarray) -> None:
    gray = decode_image(_png(rgb[:, :, 0]))
    assert gray.rgb.shape == (30, 40, 3) and np.array_equal(gray.rgb[..., 0], gray.rgb[..., 2])
    assert "gray→RGB" in gray.notes
    palette = Image.new("P", (5, 4))
    palette.putpalette([10, 20, 30] * 256)
    assert decode_image(_pil(palette, "PNG")).rgb[0, 0].tolist() == [10, 20, 30]
    bgra = np.zeros((4, 4, 4), np.uint8)
    bgra[..., 2] = 200  # red
    bgra[:2, :, 3] = 255  # top half opaque, bottom half transparent
    composited = decode_image(_png(bgra)).rgb
    assert composited[0, 0].tolist() == [200, 0, 0] and composited[3, 0].tolist() == [255, 255, 255]
    deep = (rgb[:, :, ::-1].astype(np.uint16) * 257)  # exact 8→16-bit scaling
    decoded = decode_image(_png(deep))
    np.testing.assert_array_equal(decoded.rgb, rgb)
    assert "16-bit→8-bit" in decoded.notes


def test_cmyk_jpeg_is_converted_to_rgb() -> None:
    cmyk = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # pure red in CMYK
    decoded = decode_image(_pil(cmyk, "JPEG", quality=95))
    red, green, blue = decoded.rgb[8, 8].tolist()
    assert red > 230 and green < 30 and blue < 30


@pytest.mark.parametrize("orientation", [1, 2, 3, 4, 5, 6, 7, 8])
def test_exif_orientation_matches_pil_exif_transpose(orientation: int, rgb: np.ndarray) -> None:
    image = Image.fromarray(rgb)
    exif = image.getexif()
    exif[0x0112] = orientation
    data = _pil(image, "PNG", exif=exif)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))
    decoded = decode_image(data)
    np.testing.assert_array_equal(decoded.rgb, expected)
    np.testing.assert_array_equal(apply_exif_orientation(rgb, orientation), expected)


def test_jpeg_exif_rotation_and_tiny_images() -> None:
    sideways = np.zeros((40, 20, 3), np.uint8)
    image = Image.fromarray(sideways)
    exif = image.getexif()
    exif[0x0112] = 6
    decoded = decode_image(_pil(image, "JPEG", exif=exif))
    assert decoded.rgb.shape == (20, 40, 3) and "EXIF orientation 6 applied" in decoded.notes
    assert decode_image(_png(np.full((1, 1, 3), 9, np.uint8))).rgb.shape == (1, 1, 3)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty file"),
        (b"hello, I am text with an image extension", "not an image"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "truncated PNG"),
    ],
)
def test_bad_bytes_are_decode_errors(data: bytes, reason: str) -> None:
    with pytest.raises(InputError, match=reason) as info:
        decode_image(data)
    assert info.value.status == "decode_error"


def test_truncated_and_corrupt_jpeg(rgb: np.ndarray) -> None:
    jpeg = encode_image(np.ascontiguousarray(np.tile(rgb, (4, 4, 1))), "jpg")
    with pytest.raises(InputError, match="truncated JPEG") as info:
        decode_image(jpeg[: len(jpeg) // 2])
    assert info.value.status == "decode_error"
    garbage = jpeg[:2] + bytes(range(256)) * 8 + b"\xff\xd9"
    with pytest.raises(InputError) as info:
        decode_image(garbage)
    assert info.value.status == "decode_error"


def test_unreadable_paths(tmp_path: Path) -> None:
    folder = tmp_path / "looks_like.jpg"
    folder.mkdir()
    for path, reason in ((folder, "is a directory"), (tmp_path / "missing.png", "file not found")):
        with pytest.raises(InputError, match=reason) as info:
            load_image(path)
        assert info.value.status == "unreadable"


def test_big_jpeg_is_decoded_reduced_and_big_png_refused() -> None:
    big = np.zeros((1200, 1600, 3), np.uint8)
    big[:, 800:] = 255
    decoded = decode_image(encode_image(big, "jpg"), max_pixels=150_000)  # 1.92 MP → 1/4 = 0.12 MP
    assert decoded.reduction == 4 and decoded.rgb.shape == (300, 400, 3)
    assert decoded.stored_size == (1600, 1200) and any("1/4" in note for note in decoded.notes)
    assert decoded.rgb[150, 100].max() < 30 and decoded.rgb[150, 300].min() > 225
    with pytest.raises(InputError, match="over the decode limit") as info:
        decode_image(encode_image(big, "png"), max_pixels=150_000)
    assert info.value.status == "too_large"


def test_write_image_is_atomic_and_sniffable(tmp_path: Path, rgb: np.ndarray) -> None:
    target = tmp_path / "a" / "b.jpg"
    write_image(target, rgb, "jpg", jpeg_quality=90)
    assert sniff_format(target.read_bytes()) == "jpeg"
    assert [p.name for p in target.parent.iterdir()] == ["b.jpg"]
