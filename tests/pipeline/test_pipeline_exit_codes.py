"""``inference.py`` exit codes a script can rely on (0, 1, 2, 3, 70), the run's log file, and a faked CUDA machine."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch
from pipeline_helpers import OFFLINE_CONFIG, REPO_ROOT, save

from frontalize import devices
from frontalize.io.manifest import read_manifest


@pytest.fixture()
def source(tmp_path: Path, face_photos: dict[str, np.ndarray]) -> Path:
    root = tmp_path / "src"
    save(root / "face.jpg", face_photos["astronaut"][::2, ::2])
    return root


@pytest.fixture()
def weights(tmp_path: Path) -> Path:
    empty = tmp_path / "weights"
    empty.mkdir()
    return empty


def test_nothing_matched_is_exit_2_also_in_a_dry_run(source: Path, tmp_path: Path, run_cli: Callable[..., int],
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    for extra in ((), ("--dry-run",), ("--recursive",)):
        assert run_cli("--config", OFFLINE_CONFIG, "--source_dir", source, "--source_pattern", "*.nomatch", "-o", out,
                       *extra) == 2
        assert "nothing matched" in capsys.readouterr().err
    listing = tmp_path / "empty.txt"
    listing.write_text("# nothing here\n\n")
    for extra in ((), ("--dry-run",)):
        assert run_cli("--config", OFFLINE_CONFIG, "--source_dir", source, "--list-file", listing, "-o", out,
                       *extra) == 2
        assert "nothing matched" in capsys.readouterr().err
    assert not out.exists()


def test_nothing_matched_in_a_subprocess(source: Path, tmp_path: Path) -> None:
    """The interface the checks use: exit 2 and 'nothing matched' on stderr."""
    result = subprocess.run([sys.executable, str(REPO_ROOT / "inference.py"), "--source_dir", str(source),
                             "--source_pattern", "*.nomatch", "-o", str(tmp_path / "o")],
                            capture_output=True, text=True, timeout=120, cwd=tmp_path, check=False)
    assert result.returncode == 2, result.stderr
    assert "nothing matched" in result.stderr and "Traceback" not in result.stderr


def test_unusable_output_folder_is_exit_2_also_in_a_dry_run(source: Path, tmp_path: Path,
                                                            run_cli: Callable[..., int],
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    in_the_way = tmp_path / "file.txt"
    in_the_way.write_text("x")
    for out, message in ((in_the_way, "a file is in the way"), (in_the_way / "sub", "is a file, not a folder")):
        for extra in ((), ("--dry-run",)):
            assert run_cli("--config", OFFLINE_CONFIG, "--source_dir", source, "-o", out, *extra) == 2
            err = capsys.readouterr().err
            assert message in err and "internal error" not in err


def test_success_failures_and_missing_weights(source: Path, tmp_path: Path, weights: Path,
                                              run_cli: Callable[..., int]) -> None:
    out = tmp_path / "out"
    base = ("--config", OFFLINE_CONFIG, "--source_dir", source, "-o", out, "--weights-dir", weights)
    assert run_cli(*base) == 0
    log = (out / "inference.log").read_text()
    assert "config hash" in log and "device cpu (torch cpu, onnx cpu, dlib cpu)" in log
    (source / "broken.png").write_bytes(b"\x89PNG not really")
    assert run_cli(*base) == 1  # the new input failed, the done one was kept
    assert {r["input"]: r["status"] for r in read_manifest(out / "manifest.jsonl")} == {
        "face.jpg": "ok", "broken.png": "decode_error"}
    assert run_cli(*base, "--frontalize", "-o", tmp_path / "lp") == 3  # no LivePortrait weights
    assert (out / "inference.log").read_text().count("==== ") == 2  # one header per run into this folder


def test_internal_error_is_exit_70_with_the_traceback_in_the_run_log(source: Path, tmp_path: Path, weights: Path,
                                                                     run_cli: Callable[..., int],
                                                                     monkeypatch: pytest.MonkeyPatch,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    def broken(plan: object) -> None:
        raise KeyError("a bug while building the steps")

    monkeypatch.setattr("frontalize.pipeline.runner.build_steps", broken)
    out = tmp_path / "out"
    assert run_cli("--config", OFFLINE_CONFIG, "--source_dir", source, "-o", out, "--weights-dir", weights) == 70
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("ERROR")]
    assert len(errors) == 1 and "internal error" in errors[0] and str(out / "inference.log") in errors[0], err
    assert "Traceback" not in err
    log = (out / "inference.log").read_text()
    assert "Traceback" in log and "KeyError: 'a bug while building the steps'" in log and "config hash" in log


def test_internal_error_in_a_dry_run_goes_to_a_temp_log(source: Path, tmp_path: Path, run_cli: Callable[..., int],
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    def broken(plan: object) -> None:
        raise RuntimeError("listing failed")

    monkeypatch.setattr("frontalize.cli.inference._print_dry_run", broken)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    out = tmp_path / "out"
    assert run_cli("--config", OFFLINE_CONFIG, "--source_dir", source, "-o", out, "--dry-run") == 70
    (log,) = tmp_path.glob("frontalize-inference-*.log")
    assert str(log) in capsys.readouterr().err and "RuntimeError: listing failed" in log.read_text()
    assert not out.exists()  # a dry run writes nothing into the output folder


def test_offline_run_on_a_cuda_machine_without_onnxruntime_gpu(source: Path, tmp_path: Path, weights: Path,
                                                               run_cli: Callable[..., int],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    monkeypatch.setattr(devices, "_announced", set())
    out = tmp_path / "out"
    assert run_cli("--config", OFFLINE_CONFIG, "--source_dir", source, "-o", out, "--weights-dir", weights) == 0
    info = json.loads((out / "run_info.json").read_text())
    assert info["device"] == "cuda:0" and info["model_devices"] == {"torch": "cuda:0", "onnx": "cpu", "dlib": "cpu"}
    assert (out / "inference.log").read_text().count("onnxruntime has no CUDAExecutionProvider") == 1
