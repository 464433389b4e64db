"""The bad-input corpus: every broken or unusual file gets its own manifest row, and the batch goes on."""

from __future__ import annotations

import io
import os
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data
from PIL import Image
from pipeline_helpers import OFFLINE_CONFIG, save

from frontalize.io.manifest import latest_rows, read_manifest


def write_huge_png(path: Path, width: int, height: int) -> None:
    """A real (all-black) RGB PNG of width×height, written by streaming rows (never held in memory)."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    compressor = zlib.compressobj(1)
    row = b"\x00" * (1 + 3 * width)
    with open(path, "wb") as handle:
        handle.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)))
        for _ in range(height // 500):
            handle.write(chunk(b"IDAT", b"".join(compressor.compress(row) for _ in range(500))))
        handle.write(chunk(b"IDAT", compressor.flush()) + chunk(b"IEND", b""))


def _pil_bytes(image: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory, group_photo: np.ndarray) -> tuple[Path, dict[str, tuple]]:
    """Folder of bad/unusual inputs → {name: (status, reason substring)}."""
    root = tmp_path_factory.mktemp("corpus")
    face = np.ascontiguousarray(skimage.data.astronaut()[:, 40:440])  # 512×400, one face
    expected: dict[str, tuple] = {}

    def add(name: str, data: bytes, status: str, reason: str) -> None:
        (root / name).write_bytes(data)
        expected[name] = (status, reason)

    jpeg = cv2.imencode(".jpg", face[:, :, ::-1])[1].tobytes()
    add("good.jpg", jpeg, "ok", "")
    save(root / "several_faces.jpg", group_photo)
    expected["several_faces.jpg"] = ("ok", "")
    save(root / "no_face.jpg", skimage.data.coffee())
    expected["no_face.jpg"] = ("no_face", "no face detected")
    add("corrupt.jpg", jpeg[:2] + bytes(range(256)) * 16 + b"\xff\xd9", "decode_error", "")
    add("truncated.jpg", jpeg[: len(jpeg) // 2], "decode_error", "truncated JPEG")
    add("empty.png", b"", "decode_error", "empty file")
    add("not_an_image.jpg", b"Dear diary, today I saved a text file as .jpg\n" * 20, "decode_error", "not an image")
    add("cmyk.jpg", _pil_bytes(Image.fromarray(face).convert("CMYK"), "JPEG", quality=95), "ok", "")
    add("deep16.png", cv2.imencode(".png", face[:, :, ::-1].astype(np.uint16) * 257)[1].tobytes(), "ok", "")
    add("rgba.png", cv2.imencode(".png", np.dstack([face[:, :, ::-1], np.full(face.shape[:2], 255, np.uint8)]))[
        1].tobytes(), "ok", "")
    sideways = Image.fromarray(np.ascontiguousarray(np.rot90(face, 1)))  # stored lying on its side
    exif = sideways.getexif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    add("exif_rotated.jpg", _pil_bytes(sideways, "JPEG", exif=exif, quality=95), "ok", "")
    add("tiny.png", cv2.imencode(".png", np.zeros((1, 1, 3), np.uint8))[1].tobytes(), "no_face", "too small")
    write_huge_png(root / "huge.png", 20000, 20000)
    expected["huge.png"] = ("too_large", "20000×20000")
    (root / "folder.jpg").mkdir()
    expected["folder.jpg"] = ("unreadable", "is a directory")
    if os.geteuid() != 0:  # root reads a chmod-000 file anyway; the folder above covers "unreadable" then
        add("locked.jpg", jpeg, "unreadable", "permission denied")
        (root / "locked.jpg").chmod(0)
    return root, expected


def test_bad_input_corpus(corpus: tuple[Path, dict[str, tuple]], tmp_path: Path,
                          run_cli: Callable[..., int]) -> None:
    root, expected = corpus
    out = tmp_path / "out"
    code = run_cli("--config", OFFLINE_CONFIG, "--source_dir", root, "-o", out, "--weights-dir", tmp_path,
                   "--workers", "2")
    assert code == 1  # some inputs failed, all others processed
    rows = read_manifest(out / "manifest.jsonl")
    latest = latest_rows(rows)
    assert len(rows) == len(latest) == len(expected)
    for name, (status, reason) in expected.items():
        row = latest[name]
        assert row["status"] == status, (name, row)
        assert reason in row["reason"], (name, row)
        if status == "ok":
            assert cv2.imread(str(out / row["outputs"]["default"]["crop"])) is not None
        else:
            assert row["reason"] and row["outputs"] == {}
    assert latest["several_faces.jpg"]["face_count"] == 6
    rotated = latest["exif_rotated.jpg"]["image"]
    assert (rotated["width"], rotated["height"]) == (400, 512) and "EXIF orientation 6 applied" in rotated["notes"]
    assert "16-bit→8-bit" in latest["deep16.png"]["image"]["notes"]
    # a rerun skips the final outcomes (same config) and retries only the possibly transient "unreadable" ones
    assert run_cli("--config", OFFLINE_CONFIG, "--source_dir", root, "-o", out, "--weights-dir", tmp_path) == 1
    again = read_manifest(out / "manifest.jsonl")
    retried = [name for name, (status, _) in expected.items() if status == "unreadable"]
    assert sorted(row["input"] for row in again[len(rows):]) == sorted(retried)
    assert {k: r["status"] for k, r in latest_rows(again).items()} == {k: r["status"] for k, r in latest.items()}


def test_on_error_abort_stops_the_run(tmp_path: Path, run_cli: Callable[..., int],
                                      capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "a_bad.jpg").write_text("not an image")
    save(source / "b_good.jpg", skimage.data.astronaut())
    out = tmp_path / "out"
    code = run_cli("--config", OFFLINE_CONFIG, "--source_dir", source, "-o", out, "--weights-dir", tmp_path,
                   "--workers", "0", "--on-error", "abort")
    assert code == 1
    assert "aborted on a_bad.jpg: decode_error" in capsys.readouterr().err
    assert [row["input"] for row in read_manifest(out / "manifest.jsonl")] == ["a_bad.jpg"]


def test_half_precision_on_cpu_is_refused_before_work(tmp_path: Path, run_cli: Callable[..., int],
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "src").mkdir()
    code = run_cli("--config", OFFLINE_CONFIG, "--source_dir", tmp_path / "src", "-o", tmp_path / "out",
                   "--frontalize", "--device", "cpu", "--set", "frontalizer.precision=fp16")
    assert code == 2 and "needs a CUDA device" in capsys.readouterr().err
