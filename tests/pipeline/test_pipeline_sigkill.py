"""Crash safety: ``kill -9`` at several points of a run, then a rerun → every input exactly once, no broken image."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import cv2
import pytest
from pipeline_helpers import OFFLINE_CONFIG, REPO_ROOT

from frontalize.io.atomic import TEMP_MARKER
from frontalize.io.manifest import read_manifest


def _command(source: Path, out: Path, weights: Path) -> list[str]:
    return [sys.executable, str(REPO_ROOT / "inference.py"), "--config", str(OFFLINE_CONFIG), "--source_dir",
            str(source), "--recursive", "-o", str(out), "--weights-dir", str(weights), "--workers", "2",
            "--no-progress", "-q", "--set", "output.kind=both", "--set", "variants=[{name: a}, {name: b}]"]


def _complete_lines(manifest: Path) -> int:
    try:
        return manifest.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def _images(out: Path) -> list[Path]:
    return [p for p in out.rglob("*") if p.is_file() and p.suffix == ".png"]


def _run_and_kill(command: list[str], out: Path, condition: str, value: float) -> None:
    """Start the CLI and SIGKILL it when ``condition`` holds (rows written / first image / seconds elapsed)."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=out.parent)
    start = time.monotonic()
    try:
        while process.poll() is None and time.monotonic() - start < 120:
            if ((condition == "rows" and _complete_lines(out / "manifest.jsonl") >= value)
                    or (condition == "images" and len(_images(out)) >= value)
                    or (condition == "seconds" and time.monotonic() - start >= value)):
                os.kill(process.pid, signal.SIGKILL)
                break
            time.sleep(0.005)
    finally:
        process.wait(timeout=60)


@pytest.mark.slow
def test_sigkill_then_rerun_leaves_every_input_exactly_once(identity_tree: Path, tmp_path: Path) -> None:
    weights = tmp_path / "weights"
    weights.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    command = _command(identity_tree, out, weights)
    inputs = sorted(p.relative_to(identity_tree).as_posix() for p in identity_tree.rglob("*") if p.is_file())
    for condition, value in (("images", 1), ("rows", 2), ("images", 15), ("rows", 5), ("seconds", 4.0)):
        _run_and_kill(command, out, condition, value)
        rows = read_manifest(out / "manifest.jsonl")
        assert max(Counter(r["input"] for r in rows).values(), default=1) == 1  # never a duplicate, even mid-way
        for image in _images(out):
            assert cv2.imread(str(image)) is not None, image  # atomic writes: no truncated image at any point
    final = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path, check=False)
    assert final.returncode == 0, final.stderr
    rows = read_manifest(out / "manifest.jsonl")
    assert sorted(r["input"] for r in rows) == inputs  # every input exactly once
    assert {r["status"] for r in rows} <= {"ok", "skipped_existing"}
    assert out.joinpath("manifest.jsonl").read_bytes().endswith(b"\n")
    assert not [p for p in out.rglob(f"*{TEMP_MARKER}*")]
    images = _images(out)
    assert len(images) == len(inputs) * 4  # 2 trees × crop/full
    for image in images:
        assert cv2.imread(str(image)) is not None, image
