"""Crash safety: ``kill -9`` at several points of a run, then a rerun → every input exactly once, no broken image.

Each kill is checked to have really happened (exit status −SIGKILL) before the tree is inspected: a run that had
already finished when its kill condition came true would prove nothing. The conditions count progress made by
the run being killed (rows or images added since it started), and the tree holds enough inputs (24) that every
killed run still has work left.
"""

from __future__ import annotations

import os
import shutil
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


def _run_and_kill(command: list[str], out: Path, condition: str, value: float) -> int:
    """Start the CLI and SIGKILL it when ``condition`` holds; return its exit status (−9 when the kill happened).

    Conditions: ``rows`` / ``images`` = that many manifest rows / images added by this run, ``seconds`` = time
    since the start.
    """
    rows_before, images_before = _complete_lines(out / "manifest.jsonl"), len(_images(out))
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=out.parent)
    start = time.monotonic()
    try:
        while process.poll() is None and time.monotonic() - start < 120:
            if ((condition == "rows" and _complete_lines(out / "manifest.jsonl") - rows_before >= value)
                    or (condition == "images" and len(_images(out)) - images_before >= value)
                    or (condition == "seconds" and time.monotonic() - start >= value)):
                os.kill(process.pid, signal.SIGKILL)
                break
            time.sleep(0.005)
    finally:
        process.wait(timeout=60)
    return process.returncode


@pytest.fixture
def large_tree(identity_tree: Path, tmp_path: Path) -> Path:
    """24 inputs: three copies of the 8-image identity tree, so that every killed run leaves work for the next."""
    root = tmp_path / "src"
    for copy in ("c1", "c2", "c3"):
        shutil.copytree(identity_tree, root / copy)
    return root


@pytest.mark.slow
def test_sigkill_then_rerun_leaves_every_input_exactly_once(large_tree: Path, tmp_path: Path) -> None:
    weights = tmp_path / "weights"
    weights.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    command = _command(large_tree, out, weights)
    inputs = sorted(p.relative_to(large_tree).as_posix() for p in large_tree.rglob("*") if p.is_file())
    assert len(inputs) == 24
    # during start-up, at the first image of a run, two rows in, mid-way through an input's images, one row in
    for condition, value in (("seconds", 1.0), ("images", 1), ("rows", 2), ("images", 3), ("rows", 1)):
        status = _run_and_kill(command, out, condition, value)
        assert status == -signal.SIGKILL, f"the run was not killed at {condition} {value} (exit status {status})"
        rows = read_manifest(out / "manifest.jsonl")
        assert max(Counter(r["input"] for r in rows).values(), default=1) == 1  # never a duplicate, even mid-way
        for image in _images(out):
            assert cv2.imread(str(image)) is not None, image  # atomic writes: no truncated image at any point
    assert len(read_manifest(out / "manifest.jsonl")) < len(inputs)  # the rerun below still has work to do
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
