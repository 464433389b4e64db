"""The per-batch work of the detection + embedding pass: decode → detect → align → embed, as a plain callable.

:class:`EmbedBatch` (``list[ImageTask] -> list[ImageResult]``) is built from a picklable :class:`ModelSpec`, so the
driver's loop (:mod:`frontalize.evaluation.embed`), its in-process runner (:mod:`~frontalize.evaluation.embed_local`,
which also builds it in a child process) and the Ray actors (:mod:`~frontalize.evaluation.embed_ray`) run the same
code. Models are placed by the face registry with :func:`frontalize.devices.model_device`: on a CUDA machine the
torch detector runs on the GPU, the ONNX models only with onnxruntime's CUDA provider, dlib on the CPU.

Head pose: with a pose model (``ModelSpec.pose_model``: ``1k3d68`` or ``landmarks68``,
:mod:`frontalize.evaluation.poses`) the used face's pose is estimated right after its detection, in the project's
convention, and stored with the detection; a face whose landmarks cannot be fitted gets
:data:`~frontalize.evaluation.poses.UNFIT_POSE` and the reason.

Tight crops: with ``retry`` on, a detector that finds nothing on the plain image is tried again on a padded copy
and at smaller detection sizes (:func:`frontalize.faces.align.detect_with_retry`). The attempt that found the
face is stored, so no-face counts *without* the retry are known too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from frontalize.errors import InputError
from frontalize.evaluation.cache import Detection
from frontalize.evaluation.poses import UNFIT_POSE, PoseModel, build_pose_model
from frontalize.faces import registry
from frontalize.faces.align import detect_with_retry
from frontalize.faces.headpose import LandmarkFitError
from frontalize.faces.types import Face, FaceDetector, FaceRecognizer
from frontalize.io.images import load_image

log = logging.getLogger(__name__)

__all__ = [
    "PLAIN_ATTEMPT",
    "EmbedBatch",
    "ImageResult",
    "ImageTask",
    "ModelSet",
    "ModelSpec",
    "PreparedBatch",
]

PLAIN_ATTEMPT = "plain"
"""Attempt label of a face found without padding or retry."""

@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to build the models in any process (picklable; no loaded state)."""

    detectors: tuple[str, ...]
    recognizers: tuple[str, ...]
    weights_root: str
    device: str = "cpu"
    det_size: int = 640
    threshold: float = 0.5
    nms_threshold: float = 0.4
    retry: bool = True
    pad_fraction: float = 0.15
    retry_sizes: tuple[int, ...] = (448,)
    batch_size: int = 32
    max_pixels: int = 64_000_000
    pose_model: str | None = None
    """Pose model run on each used face (``1k3d68`` / ``landmarks68``), None for none (keypoint proxy)."""


DetectorFactory = Callable[..., FaceDetector]
RecognizerFactory = Callable[..., FaceRecognizer]


@dataclass
class ModelSet:
    """Loaded detectors and recognizers with the cache keys of their outputs."""

    spec: ModelSpec
    detectors: dict[str, FaceDetector]
    recognizers: dict[str, FaceRecognizer]
    pose_estimator: PoseModel | None = None

    @classmethod
    def build(
        cls,
        spec: ModelSpec,
        *,
        detector_factory: DetectorFactory | None = None,
        recognizer_factory: RecognizerFactory | None = None,
        pose_factory: Callable[..., PoseModel] | None = None,
    ) -> ModelSet:
        """Build every model of ``spec`` (weights must have been verified by the caller).

        Args:
            spec: model recipe.
            detector_factory / recognizer_factory / pose_factory: replacements of
                :func:`frontalize.faces.registry.build_detector` / ``build_recognizer`` and
                :func:`frontalize.evaluation.poses.build_pose_model` (tests).
        """
        detector_factory = detector_factory or registry.build_detector
        recognizer_factory = recognizer_factory or registry.build_recognizer
        pose_factory = pose_factory or build_pose_model
        detectors = {
            name: detector_factory(name, weights_root=spec.weights_root, det_size=spec.det_size,
                                   threshold=spec.threshold, nms_threshold=spec.nms_threshold, device=spec.device)
            for name in spec.detectors
        }
        recognizers = {
            name: recognizer_factory(name, weights_root=spec.weights_root, device=spec.device,
                                     batch_size=spec.batch_size)
            for name in spec.recognizers
        }
        pose = (pose_factory(spec.pose_model, weights_root=spec.weights_root, device=spec.device)
                if spec.pose_model else None)
        return cls(spec, detectors, recognizers, pose)

    def detector_key(self, name: str) -> str:
        """Cache key of detections: the detector fingerprint plus the retry and pose settings."""
        s = self.spec
        retry = f"retry(pad={s.pad_fraction:g},sizes={','.join(map(str, s.retry_sizes))})" if s.retry else "plain"
        pose = f"|pose={self.pose_estimator.fingerprint}" if self.pose_estimator is not None else ""
        return f"{self.detectors[name].fingerprint}|{retry}{pose}"

    def recognizer_key(self, name: str) -> str:
        """Cache key of embeddings (together with the detector key): the recognizer fingerprint."""
        return self.recognizers[name].fingerprint


@dataclass(frozen=True)
class ImageTask:
    """Work on one unique image: the detectors to run and the (detector, recognizer) pairs to embed.

    ``known`` holds cached detections of detectors that need not run again but whose face must be embedded
    with a new recognizer.
    """

    image: str
    path: str
    detect: tuple[str, ...]
    embed: tuple[tuple[str, str], ...]
    known: Mapping[str, Detection] = field(default_factory=dict)


@dataclass
class ImageResult:
    """Newly computed detections (by detector) and embeddings (by (detector, recognizer)) of one image."""

    image: str
    detections: dict[str, Detection] = field(default_factory=dict)
    embeddings: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)


def _to_detection(faces: Sequence[Face], attempt: str | None, reason: str | None = None
                  ) -> tuple[Detection, Face | None]:
    if not faces:
        return Detection(status="no_face", attempt=None, n_faces=0), None
    face = faces[0]  # detectors return faces largest first: the evaluated face is the largest one
    detection = Detection(status="face", attempt=attempt, n_faces=len(faces), score=face.score,
                          box=np.asarray(face.box), kps=np.asarray(face.kps), pose=face.pose, reason=reason)
    return detection, face


def estimate_pose(model: PoseModel, image: np.ndarray, face: Face) -> tuple[tuple[float, float, float], str | None]:
    """(pose, None) of ``face``, or (:data:`UNFIT_POSE`, reason) when its landmarks cannot be fitted."""
    try:
        return model.pose(image, face), None
    except LandmarkFitError as error:
        return UNFIT_POSE, f"{error.status}: {error}"


def _face_of(detection: Detection) -> Face | None:
    if not detection.found or detection.box is None or detection.kps is None:
        return None
    return Face(box=detection.box, score=detection.score or 0.0, kps=detection.kps, pose=detection.pose)


PreparedBatch = tuple[list[ImageResult], dict[str, list[tuple[int, str, np.ndarray]]]]
"""A batch after decode + detect + align: its results so far and the chips per recognizer."""


class EmbedBatch:
    """The per-batch work: decode → detect (per detector) → align → embed (per recognizer, batched).

    Args:
        models: loaded models; build one per worker process/actor.
    """

    def __init__(self, models: ModelSet) -> None:
        self.models = models

    @classmethod
    def from_spec(cls, spec: ModelSpec) -> EmbedBatch:
        """Build the models of ``spec`` in this process (e.g. in a Ray ``map_batches`` actor constructor)."""
        return cls(ModelSet.build(spec))

    def _detect(self, name: str, rgb: np.ndarray) -> tuple[Detection, Face | None]:
        spec = self.models.spec
        detector = self.models.detectors[name]
        if spec.retry:
            faces, attempt = detect_with_retry(detector, rgb, pad_fraction=spec.pad_fraction,
                                               retry_sizes=spec.retry_sizes)
        else:
            faces, attempt = detector.detect(rgb), PLAIN_ATTEMPT
        reason = None
        if faces and self.models.pose_estimator is not None:
            pose, reason = estimate_pose(self.models.pose_estimator, rgb, faces[0])
            faces = [faces[0].with_pose(pose), *faces[1:]]
        return _to_detection(faces, attempt if faces else None, reason)

    def _process(self, task: ImageTask, result: ImageResult,
                 chips: dict[str, list[tuple[int, str, np.ndarray]]], index: int) -> None:
        try:
            rgb = load_image(task.path, max_pixels=self.models.spec.max_pixels).rgb
        except InputError as exc:
            for name in task.detect:
                result.detections[name] = Detection(status="unreadable", reason=str(exc))
            return
        faces: dict[str, Face | None] = {}
        for name in task.detect:
            result.detections[name], faces[name] = self._detect(name, rgb)
        for name, detection in task.known.items():
            faces[name] = _face_of(detection)
        for detector, recognizer in task.embed:
            face = faces.get(detector)
            if face is not None:
                chip = self.models.recognizers[recognizer].align(rgb, face)
                chips.setdefault(recognizer, []).append((index, detector, chip))

    def prepare(self, tasks: Sequence[ImageTask]) -> PreparedBatch:
        """Decode, detect and align one batch (the part that the local runner overlaps with embedding)."""
        results = [ImageResult(task.image) for task in tasks]
        chips: dict[str, list[tuple[int, str, np.ndarray]]] = {}
        for index, task in enumerate(tasks):
            self._process(task, results[index], chips, index)
        return results, chips

    def embed_prepared(self, prepared: PreparedBatch) -> list[ImageResult]:
        """Embed the chips of a prepared batch; every recognizer embeds all of its chips in one call."""
        results, chips = prepared
        for recognizer, items in chips.items():
            vectors = self.models.recognizers[recognizer].embed([chip for _, _, chip in items])
            for (index, detector, _), vector in zip(items, vectors):
                results[index].embeddings[(detector, recognizer)] = np.asarray(vector, dtype=np.float32)
        return results

    def __call__(self, tasks: Sequence[ImageTask]) -> list[ImageResult]:
        """Run one batch: :meth:`prepare` then :meth:`embed_prepared`."""
        return self.embed_prepared(self.prepare(tasks))
