"""Atomic writes: complete file or nothing; temporary files of killed runs are recognisable and removable."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from frontalize.io.atomic import TEMP_MARKER, atomic_write_bytes, atomic_write_text, remove_stale_temp_files


def test_write_creates_folders_and_replaces(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "c.bin"
    atomic_write_bytes(target, b"first")
    atomic_write_text(target, "second")
    assert target.read_bytes() == b"second"
    assert sorted(p.name for p in target.parent.iterdir()) == ["c.bin"]


def test_failed_replace_keeps_old_content_and_removes_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "c.bin"
    atomic_write_bytes(target, b"old")

    def broken_replace(src: object, dst: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["c.bin"]


def test_remove_stale_temp_files_only_touches_marked_files(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    stale = tmp_path / "sub" / f".x.png{TEMP_MARKER}abc123"
    stale.write_bytes(b"partial")
    keep = tmp_path / "sub" / "x.png"
    keep.write_bytes(b"image")
    assert remove_stale_temp_files(tmp_path) == 1
    assert not stale.exists() and keep.exists()
    assert remove_stale_temp_files(tmp_path / "missing") == 0
