"""The device mapping (frontalize.devices) on faked CUDA machines: torch follows the request, ONNX only with
onnxruntime's CUDA provider (else the CPU, announced once per process), dlib always on the CPU."""

from __future__ import annotations

import logging

import onnxruntime
import pytest
import torch

from frontalize import devices
from frontalize.devices import model_device, model_devices, onnx_providers, resolve_device, torch_device
from frontalize.errors import ConfigError, DeviceError
from frontalize.faces.registry import build_detector, build_recognizer
from frontalize.stages.background import _providers as rembg_providers

CPU_ONLY = ["CPUExecutionProvider"]
WITH_CUDA = ["CUDAExecutionProvider", "CPUExecutionProvider"]


def fake_machine(monkeypatch: pytest.MonkeyPatch, *, gpus: int, ort_providers: list[str]) -> None:
    """Pretend torch sees ``gpus`` CUDA devices and onnxruntime offers ``ort_providers``."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpus > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: list(ort_providers))
    monkeypatch.setattr(devices, "_announced", set())


def test_resolve_device_on_a_cuda_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_machine(monkeypatch, gpus=2, ort_providers=CPU_ONLY)
    assert resolve_device("auto") == "cuda:0"
    assert resolve_device("cuda") == "cuda:0"
    assert resolve_device("cuda:1") == "cuda:1"
    assert resolve_device("cpu") == "cpu"
    with pytest.raises(DeviceError, match="only 2 CUDA device"):
        resolve_device("cuda:2")


def test_resolve_device_without_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_machine(monkeypatch, gpus=0, ort_providers=CPU_ONLY)
    assert resolve_device("auto") == "cpu"
    for explicit in ("cuda", "cuda:1"):
        with pytest.raises(DeviceError, match="CUDA is not available"):
            resolve_device(explicit)
    with pytest.raises(ConfigError):
        resolve_device("gpu")


def test_cuda_machine_without_onnxruntime_gpu(monkeypatch: pytest.MonkeyPatch,
                                              caplog: pytest.LogCaptureFixture) -> None:
    fake_machine(monkeypatch, gpus=2, ort_providers=CPU_ONLY)
    with caplog.at_level(logging.INFO, logger="frontalize.devices"):
        assert model_devices("cuda:1") == {"torch": "cuda:1", "onnx": "cpu", "dlib": "cpu"}
        assert model_device("cuda:1", "onnx") == "cpu"
        assert onnx_providers("cuda:1") == (CPU_ONLY, None)
        assert rembg_providers("cuda:1") == CPU_ONLY
    announcements = [r for r in caplog.records if "onnxruntime has no CUDAExecutionProvider" in r.getMessage()]
    assert len(announcements) == 1  # one info line per process, not one per model
    assert announcements[0].levelno == logging.INFO


def test_cuda_machine_with_onnxruntime_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_machine(monkeypatch, gpus=2, ort_providers=WITH_CUDA)
    assert model_devices("cuda:1") == {"torch": "cuda:1", "onnx": "cuda:1", "dlib": "cpu"}
    assert onnx_providers("cuda:1") == (WITH_CUDA, [{"device_id": 1}, {}])
    assert onnx_providers("cuda") == (WITH_CUDA, [{"device_id": 0}, {}])
    assert rembg_providers("cuda:1") == [("CUDAExecutionProvider", {"device_id": 1}), "CPUExecutionProvider"]
    assert model_devices("cpu") == {"torch": "cpu", "onnx": "cpu", "dlib": "cpu"}


def test_torch_models_never_fall_back(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_machine(monkeypatch, gpus=1, ort_providers=WITH_CUDA)
    assert torch_device("cuda") == "cuda:0"
    with pytest.raises(DeviceError, match="1 CUDA device"):
        model_device("cuda:1", "torch")
    fake_machine(monkeypatch, gpus=0, ort_providers=WITH_CUDA)
    with pytest.raises(DeviceError):
        model_device("cuda:0", "torch")


def test_bad_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_machine(monkeypatch, gpus=1, ort_providers=CPU_ONLY)
    for bad in ("gpu", "cuda:x", "CPU", "auto"):
        with pytest.raises(ConfigError, match="expected cpu, cuda or cuda:N"):
            model_device(bad, "onnx")
    with pytest.raises(ConfigError, match="model kind"):
        model_device("cpu", "tensorflow")  # type: ignore[arg-type]


def test_face_registry_places_models_by_kind_on_a_fake_cuda_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    """The offline detector (ONNX) and dlib build on the CPU where the old code raised "no CUDA support"."""
    fake_machine(monkeypatch, gpus=1, ort_providers=CPU_ONLY)
    detector = build_detector("retinaface_mnet", weights_root=".", device="cuda:0")
    assert detector._session.get_providers() == CPU_ONLY
    assert build_recognizer("dlib_resnet", weights_root=".", device="cuda:0").name == "dlib_resnet"
