"""Image decode / encode at the toolkit's boundary (the only place that knows about BGR).

Decoding turns whatever a dataset contains into an H×W×3 uint8 RGB array: EXIF orientation applied; grayscale,
palette, RGBA (composited on white), 16-bit and CMYK JPEG converted. Memory is bounded: an image above
``max_pixels`` is decoded at 1/2, 1/4 or 1/8 size when it is a JPEG (libjpeg scales while decoding, so the full
image never exists in memory) and refused with a clear reason otherwise. Every failure is an
:class:`~frontalize.errors.InputError` whose ``status`` is the manifest status (``unreadable``,
``decode_error``, ``too_large``).
"""

from __future__ import annotations

import io
import logging
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from frontalize.errors import InputError
from frontalize.io.atomic import atomic_write_bytes

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
DEFAULT_MAX_PIXELS = 64_000_000
EXIF_ORIENTATION_TAG = 0x0112
ImageFormat = Literal["png", "jpg"]

_SIGNATURES: tuple[tuple[bytes, int, str], ...] = (
    (b"\xff\xd8\xff", 0, "jpeg"),
    (b"\x89PNG\r\n\x1a\n", 0, "png"),
    (b"BM", 0, "bmp"),
    (b"II*\x00", 0, "tiff"),
    (b"MM\x00*", 0, "tiff"),
    (b"WEBP", 8, "webp"),
)
_REDUCED_FLAGS = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}


@dataclass(frozen=True)
class DecodedImage:
    """A decoded input image.

    Attributes:
        rgb: H×W×3 uint8 RGB pixels, upright (EXIF orientation applied).
        kind: container format sniffed from the bytes (``jpeg``, ``png``, ...).
        stored_size: (width, height) as stored in the file, before orientation and reduction.
        reduction: 1, or the factor (2/4/8) by which a huge JPEG was shrunk while decoding.
        notes: conversions that happened (e.g. ``16-bit→8-bit``), for the manifest.
    """

    rgb: np.ndarray
    kind: str
    stored_size: tuple[int, int]
    reduction: int = 1
    notes: tuple[str, ...] = ()


def read_file_bytes(path: str | Path) -> bytes:
    """Read a whole input file.

    Raises:
        InputError: status ``unreadable`` (missing, a folder, no permission, I/O error).
    """
    try:
        return Path(path).read_bytes()
    except IsADirectoryError as exc:
        raise InputError("cannot read: is a directory", status="unreadable") from exc
    except PermissionError as exc:
        raise InputError("cannot read: permission denied", status="unreadable") from exc
    except FileNotFoundError as exc:
        raise InputError("cannot read: file not found", status="unreadable") from exc
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", status="unreadable") from exc


def sniff_format(data: bytes) -> str | None:
    """Container format from the file signature, or ``None`` when it is not a supported image."""
    for magic, offset, kind in _SIGNATURES:
        if data[offset : offset + len(magic)] == magic:
            if kind == "webp" and data[:4] != b"RIFF":
                continue
            return kind
    return None


def _check_complete(data: bytes, kind: str) -> None:
    """Detect truncated JPEG/PNG files by their missing end marker (decoders may otherwise fill in grey)."""
    if kind == "jpeg" and b"\xff\xd9" not in data[-4096:]:
        raise InputError("truncated JPEG (no end-of-image marker)", status="decode_error")
    if kind == "png" and b"IEND" not in data[-64:]:
        raise InputError("truncated PNG (no IEND chunk)", status="decode_error")


def _probe(data: bytes, kind: str) -> tuple[tuple[int, int] | None, int]:
    """Stored (width, height) and EXIF orientation (1 = none) without decoding pixels.

    The size is ``None`` when PIL refuses the header as a decompression bomb (> ~179 MP); the caller then
    treats the image as over the limit.
    """
    try:
        with Image.open(io.BytesIO(data)) as header:
            size = (int(header.size[0]), int(header.size[1]))
            orientation = int(header.getexif().get(EXIF_ORIENTATION_TAG, 1) or 1)
    except Image.DecompressionBombError:
        return (_png_size(data) if kind == "png" else None), 1
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, struct.error) as exc:
        raise InputError(f"unreadable {kind} header ({exc})", status="decode_error") from exc
    return size, orientation if 1 <= orientation <= 8 else 1


def _png_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from a PNG IHDR chunk (fixed offsets 16..24)."""
    if len(data) < 24:
        return None
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


def _choose_reduction(size: tuple[int, int] | None, kind: str, max_pixels: int) -> int:
    """Decode-time reduction factor keeping the image under ``max_pixels`` (1 when already small)."""
    pixels = None if size is None else size[0] * size[1]
    if pixels is not None and pixels <= max_pixels:
        return 1
    if kind != "jpeg":
        described = "over 179 MP" if size is None or pixels is None else f"{size[0]}×{size[1]} ({pixels / 1e6:.4g} MP)"
        raise InputError(
            f"image is {described}, over the decode limit of {max_pixels / 1e6:.4g} MP "
            "(input.max_pixels); only JPEG can be decoded at reduced size",
            status="too_large",
        )
    for factor in (2, 4, 8):
        if pixels is not None and pixels / factor**2 <= max_pixels:
            return factor
    return 8


def _to_rgb_uint8(pixels: np.ndarray, notes: list[str]) -> np.ndarray:
    """Convert a decoded OpenCV array (gray / BGR / BGRA, 8/16-bit or float) to H×W×3 uint8 RGB."""
    if pixels.dtype == np.uint16:
        pixels = ((pixels.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
        notes.append("16-bit→8-bit")
    elif pixels.dtype != np.uint8:
        # Float TIFF/EXR-like data is taken as [0, 1]; other integer depths are scaled by their maximum.
        source_dtype = pixels.dtype
        scale = 255.0 if np.issubdtype(source_dtype, np.floating) else 255.0 / max(float(pixels.max()), 1.0)
        pixels = np.clip(pixels.astype(np.float64) * scale, 0, 255).round().astype(np.uint8)
        notes.append(f"{source_dtype}→8-bit")
    if pixels.ndim == 2:
        notes.append("gray→RGB")
        return np.ascontiguousarray(np.repeat(pixels[:, :, None], 3, axis=2))
    if pixels.shape[2] == 4:
        # Faces on transparent backgrounds: composite over white, a neutral backdrop for detection and
        # generation (dropping alpha would expose whatever colour the transparent pixels happen to hold).
        alpha = pixels[:, :, 3:4].astype(np.float32) / 255.0
        blended = pixels[:, :, :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
        pixels = np.clip(blended + 0.5, 0, 255).astype(np.uint8)
        notes.append("alpha composited on white")
    elif pixels.shape[2] == 2:
        notes.append("gray+alpha→RGB")
        return np.ascontiguousarray(np.repeat(pixels[:, :, :1], 3, axis=2))
    return np.ascontiguousarray(cv2.cvtColor(pixels[:, :, :3], cv2.COLOR_BGR2RGB))


def apply_exif_orientation(rgb: np.ndarray, orientation: int) -> np.ndarray:
    """Rotate/flip an H×W×C array so that EXIF ``orientation`` (1..8) becomes 1 (upright)."""
    transforms = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1, :],
        5: lambda a: np.swapaxes(a, 0, 1),
        6: lambda a: np.rot90(a, k=-1),
        7: lambda a: np.swapaxes(a[::-1, ::-1], 0, 1),
        8: lambda a: np.rot90(a, k=1),
    }
    transform = transforms.get(orientation)
    return rgb if transform is None else np.ascontiguousarray(transform(rgb))


def decode_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> DecodedImage:
    """Decode image bytes to upright H×W×3 uint8 RGB.

    Args:
        data: the complete file content.
        max_pixels: decode limit; bigger JPEGs are shrunk by 2/4/8 while decoding, other formats refused.

    Returns:
        The decoded image with provenance notes.

    Raises:
        InputError: status ``decode_error`` (empty, not an image, truncated, corrupt) or ``too_large``.
    """
    if not data:
        raise InputError("empty file (0 bytes)", status="decode_error")
    kind = sniff_format(data)
    if kind is None:
        raise InputError(
            f"not an image (unrecognised file signature {data[:8].hex()})", status="decode_error"
        )
    _check_complete(data, kind)
    size, orientation = _probe(data, kind)
    reduction = _choose_reduction(size, kind, max_pixels)
    flags = (_REDUCED_FLAGS[reduction] if reduction > 1 else cv2.IMREAD_UNCHANGED) | cv2.IMREAD_IGNORE_ORIENTATION
    pixels = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags)
    if pixels is None or pixels.size == 0:
        raise InputError(f"corrupt {kind} data (decoder returned nothing)", status="decode_error")
    notes: list[str] = [] if reduction == 1 else [f"decoded at 1/{reduction} size (over input.max_pixels)"]
    rgb = _to_rgb_uint8(pixels, notes)
    if rgb.shape[0] * rgb.shape[1] > max_pixels:
        factor = (max_pixels / (rgb.shape[0] * rgb.shape[1])) ** 0.5
        new_size = (max(1, int(rgb.shape[1] * factor)), max(1, int(rgb.shape[0] * factor)))
        rgb = cv2.resize(rgb, new_size, interpolation=cv2.INTER_AREA)
        notes.append(f"resized to {new_size[0]}×{new_size[1]} (over input.max_pixels)")
    if orientation != 1:
        rgb = apply_exif_orientation(rgb, orientation)
        notes.append(f"EXIF orientation {orientation} applied")
    stored = size if size is not None else (pixels.shape[1] * reduction, pixels.shape[0] * reduction)
    return DecodedImage(rgb=rgb, kind=kind, stored_size=stored, reduction=reduction, notes=tuple(notes))


def load_image(path: str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> DecodedImage:
    """Read and decode an image file (see :func:`decode_image`).

    Raises:
        InputError: status ``unreadable``, ``decode_error`` or ``too_large``.
    """
    return decode_image(read_file_bytes(path), max_pixels=max_pixels)


def encode_image(image: np.ndarray, fmt: ImageFormat, *, jpeg_quality: int = 95, png_compression: int = 3) -> bytes:
    """Encode an H×W×3 RGB (or H×W×4 RGBA, PNG only) uint8 image.

    Args:
        image: pixels to encode.
        fmt: ``png`` or ``jpg``.
        jpeg_quality: 1..100, used for ``jpg``.
        png_compression: zlib level 0..9, used for ``png``.

    Returns:
        The encoded file content.

    Raises:
        ValueError: wrong dtype/shape, or alpha with ``jpg`` (the config validation prevents both).
    """
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"expected H×W×3/4 uint8, got {image.dtype} {image.shape}")
    if image.shape[2] == 4 and fmt != "png":
        raise ValueError("an image with alpha can only be written as PNG")
    code = cv2.COLOR_RGBA2BGRA if image.shape[2] == 4 else cv2.COLOR_RGB2BGR
    bgr = cv2.cvtColor(np.ascontiguousarray(image), code)
    if fmt == "png":
        ok, buffer = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, int(png_compression)])
    else:
        ok, buffer = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
    if not ok:
        raise ValueError(f"OpenCV could not encode a {image.shape} image as {fmt}")
    return buffer.tobytes()


def write_image(path: str | Path, image: np.ndarray, fmt: ImageFormat, *, jpeg_quality: int = 95) -> None:
    """Encode ``image`` and write it atomically to ``path`` (see :func:`encode_image`)."""
    atomic_write_bytes(path, encode_image(image, fmt, jpeg_quality=jpeg_quality))
