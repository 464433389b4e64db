"""``evaluate.py`` on a faked CUDA machine (configs/eval-offline.yaml end to end) and its exit codes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import onnxruntime
import pytest
import torch
from eval_photos import face_crops, write_generic

from frontalize import devices
from frontalize.cli.evaluate import main
from frontalize.faces import registry

REPO = Path(__file__).resolve().parents[2]
OFFLINE = str(REPO / "configs" / "eval-offline.yaml")


@pytest.fixture(scope="module")
def generic(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(DATA, OUT) of the generic layout with 7 real faces (fewer than 48 images: no preparation child process)."""
    data, out, _ = write_generic(tmp_path_factory.mktemp("generic"), face_crops())
    return data, out


def _run(data: Path, out: Path, report: Path, *extra: str) -> int:
    return main(["--config", OFFLINE, "--layout", "generic", "--data", str(data), "--frontal-dir", str(out),
                 "-o", str(report), "--no-cache", "--no-figures", "--bootstrap-resamples", "200", "--no-progress",
                 *extra])


def test_offline_evaluation_runs_on_a_cuda_machine_without_onnxruntime_gpu(
        generic: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """device auto → cuda:0; dlib and the ONNX detector are built for the CPU instead of raising."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    monkeypatch.setattr(devices, "_announced", set())
    built: list[tuple[str, str, Any]] = []
    real_detector, real_recognizer = registry.build_detector, registry.build_recognizer

    def detector(name: str, **kwargs: Any) -> Any:
        model = real_detector(name, **kwargs)
        built.append((name, kwargs["device"], model))
        return model

    def recognizer(name: str, **kwargs: Any) -> Any:
        model = real_recognizer(name, **kwargs)
        built.append((name, kwargs["device"], model))
        return model

    monkeypatch.setattr(registry, "build_detector", detector)
    monkeypatch.setattr(registry, "build_recognizer", recognizer)
    data, out = generic
    report = tmp_path / "report"
    assert _run(data, out, report) == 0
    info = json.loads((report / "run_info.json").read_text())
    assert info["device"] == "cuda:0"
    assert info["model_devices"] == {"torch": "cuda:0", "onnx": "cpu", "dlib": "cpu"}
    (mnet_name, mnet_device, mnet), (dlib_name, _, _) = built
    assert (mnet_name, mnet_device, dlib_name) == ("retinaface_mnet", "cuda:0", "dlib_resnet")
    assert mnet._session.get_providers() == ["CPUExecutionProvider"]  # asked for cuda:0, placed on the CPU
    summary = json.loads((report / "summary.json").read_text())
    assert summary["results"]["out"]["retinaface_mnet+dlib_resnet"]["n"] > 0
    assert "onnxruntime has no CUDAExecutionProvider" in (report / "evaluate.log").read_text()


def test_exit_2_for_an_empty_dataset_and_an_unusable_report_folder(
        generic: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, out = generic
    empty = tmp_path / "empty"
    (empty / "gt").mkdir(parents=True)
    assert _run(empty, out, tmp_path / "r1") == 2
    assert "no identity folder with images" in capsys.readouterr().err
    in_the_way = tmp_path / "report.txt"
    in_the_way.write_text("x")
    assert _run(data, out, in_the_way) == 2
    assert "a file is in the way" in capsys.readouterr().err
    assert _run(data, out, in_the_way / "sub") == 2
    assert "is a file, not a folder" in capsys.readouterr().err


def test_internal_error_is_exit_70_with_the_traceback_in_the_report_log(
        generic: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise ZeroDivisionError("a bug in the statistics")

    monkeypatch.setattr("frontalize.cli.evaluate.evaluate", broken)
    data, out = generic
    report = tmp_path / "report"
    assert _run(data, out, report) == 70
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("ERROR")]
    assert len(errors) == 1 and "internal error" in errors[0] and str(report / "evaluate.log") in errors[0]
    assert "Traceback" not in err
    log = (report / "evaluate.log").read_text()
    assert "Traceback" in log and "ZeroDivisionError: a bug in the statistics" in log
