"""Detection + embedding pass: each unique image decoded once, detected once per detector, embedded once per
(detector, recognizer), the recognizer batched; results go to the :class:`~.cache.EmbeddingCache`.

The per-batch work is the plain callable :class:`EmbedBatch` (``list[ImageTask] -> list[ImageResult]``), built
from a picklable :class:`ModelSpec`, so the local loop here and a distributed executor (Ray ``map_batches``
actors) drive the same code; only the driver touches the cache. Images are streamed in batches: nothing but
embeddings and detection records outlives a batch, so memory does not grow with the dataset.

Tight crops: with ``retry`` on, a detector that finds nothing on the plain image is tried again on a padded copy
and at smaller detection sizes (:func:`frontalize.faces.align.detect_with_retry`). The attempt that found the
face is stored, so no-face counts *without* the retry are known too.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
from tqdm.auto import tqdm

from frontalize.errors import InputError
from frontalize.evaluation.cache import Detection, EmbeddingCache
from frontalize.evaluation.embed_local import local_runner
from frontalize.faces.align import detect_with_retry
from frontalize.faces.types import Face, FaceDetector, FaceRecognizer
from frontalize.io.images import load_image

log = logging.getLogger(__name__)

__all__ = [
    "PLAIN_ATTEMPT",
    "EmbedBatch",
    "EmbeddingStore",
    "ImageResult",
    "ImageTask",
    "ModelSet",
    "ModelSpec",
    "run_embedding_pass",
]

PLAIN_ATTEMPT = "plain"
"""Attempt label of a face found without padding or retry."""

BatchRunner = Callable[["EmbedBatch", Sequence[Sequence["ImageTask"]]], Iterator[list["ImageResult"]]]


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
    estimate_pose: bool = False


class PoseEstimator(Protocol):
    """Head-pose model run on the used face (InsightFace 1k3d68, :mod:`frontalize.faces.landmarks`)."""

    @property
    def fingerprint(self) -> str:
        """Model bytes + preprocessing."""
        ...

    def pose(self, image: np.ndarray, face: Face) -> tuple[float, float, float]:
        """(pitch, yaw, roll) in degrees."""
        ...


DetectorFactory = Callable[..., FaceDetector]
RecognizerFactory = Callable[..., FaceRecognizer]


@dataclass
class ModelSet:
    """Loaded detectors and recognizers with the cache keys of their outputs."""

    spec: ModelSpec
    detectors: dict[str, FaceDetector]
    recognizers: dict[str, FaceRecognizer]
    pose_estimator: PoseEstimator | None = None

    @classmethod
    def build(
        cls,
        spec: ModelSpec,
        *,
        detector_factory: DetectorFactory | None = None,
        recognizer_factory: RecognizerFactory | None = None,
        pose_factory: Callable[..., PoseEstimator] | None = None,
    ) -> ModelSet:
        """Build every model of ``spec`` (weights must have been verified by the caller).

        Args:
            spec: model recipe.
            detector_factory / recognizer_factory / pose_factory: replacements of
                :func:`frontalize.faces.registry.build_detector` / ``build_recognizer`` /
                ``build_pose_estimator`` (tests).
        """
        from frontalize.faces import registry  # local: loads onnxruntime/torch-backed wrappers

        detector_factory = detector_factory or registry.build_detector
        recognizer_factory = recognizer_factory or registry.build_recognizer
        pose_factory = pose_factory or registry.build_pose_estimator
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
        pose = pose_factory(weights_root=spec.weights_root, device=spec.device) if spec.estimate_pose else None
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


def _to_detection(faces: Sequence[Face], attempt: str | None) -> tuple[Detection, Face | None]:
    if not faces:
        return Detection(status="no_face", attempt=None, n_faces=0), None
    face = faces[0]  # detectors return faces largest first: the evaluated face is the largest one
    detection = Detection(status="face", attempt=attempt, n_faces=len(faces), score=face.score,
                          box=np.asarray(face.box), kps=np.asarray(face.kps), pose=face.pose)
    return detection, face


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
        if faces and self.models.pose_estimator is not None:
            faces = [faces[0].with_pose(self.models.pose_estimator.pose(rgb, faces[0])), *faces[1:]]
        return _to_detection(faces, attempt if faces else None)

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
        """Decode, detect and align one batch (the part that :func:`local_runner` overlaps with embedding)."""
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


def _key(path: str | Path) -> str:
    """Lookup key of a file: its absolute path (no file-system calls; copies are merged by content hash)."""
    return os.path.abspath(path)


@dataclass
class EmbeddingStore:
    """In-memory view of the pass's results for the images of this run.

    Attributes:
        image_of: absolute path (:func:`os.path.abspath`) -> content hash.
        detections: (content hash, detector) -> Detection.
        embeddings: (content hash, detector, recognizer) -> (D,) float32 L2-normalised embedding.
        computed: counts of newly computed work: decoded images, detections, embeddings.
    """

    image_of: dict[str, str] = field(default_factory=dict)
    detections: dict[tuple[str, str], Detection] = field(default_factory=dict)
    embeddings: dict[tuple[str, str, str], np.ndarray] = field(default_factory=dict)
    computed: dict[str, int] = field(default_factory=lambda: {"decoded": 0, "detections": 0, "embeddings": 0})

    def detection(self, path: str | Path, detector: str) -> Detection | None:
        """Detection of the image at ``path`` (None when the file was not part of the pass)."""
        image = self.image_of.get(_key(path))
        return None if image is None else self.detections.get((image, detector))

    def embedding(self, path: str | Path, detector: str, recognizer: str) -> np.ndarray | None:
        """Embedding of the image at ``path`` (None when no face was found or the file is unknown)."""
        image = self.image_of.get(_key(path))
        return None if image is None else self.embeddings.get((image, detector, recognizer))


def _hash_all(paths: Sequence[str], cache: EmbeddingCache, store: EmbeddingStore, progress: bool) -> dict[str, str]:
    """Content hash of every path; returns hash -> first path (unreadable files map to a per-path key)."""
    unique: dict[str, str] = {}
    for path in tqdm(paths, desc="hashing images", unit="img", disable=not progress):
        try:
            image = cache.content_hash(path)
        except OSError as exc:
            image = f"unreadable:{path}"
            log.warning("cannot read %s (%s)", path, exc)
        store.image_of[path] = image
        unique.setdefault(image, path)
    cache.commit()
    return unique


def _plan(
    unique: Mapping[str, str],
    pairs: Sequence[tuple[str, str]],
    models: ModelSet,
    cache: EmbeddingCache,
    store: EmbeddingStore,
) -> list[ImageTask]:
    """Load cached results into ``store`` and list the work still missing."""
    images = [i for i in unique if not i.startswith("unreadable:")]
    for image in unique:
        if image.startswith("unreadable:"):
            for detector in models.detectors:
                store.detections[(image, detector)] = Detection(status="unreadable", reason="file not readable")
    for detector in models.detectors:
        for image, detection in cache.get_detections(images, models.detector_key(detector)).items():
            store.detections[(image, detector)] = detection
    for detector, recognizer in pairs:
        keys = (models.detector_key(detector), models.recognizer_key(recognizer))
        for image, vector in cache.get_embeddings(images, *keys).items():
            store.embeddings[(image, detector, recognizer)] = vector
    tasks = []
    for image in images:
        detect = tuple(d for d in models.detectors if (image, d) not in store.detections)
        embed = tuple(
            (d, r) for d, r in pairs
            if (image, d, r) not in store.embeddings
            and (d in detect or store.detections[(image, d)].found)
        )
        known = {d: store.detections[(image, d)] for d, _ in embed if d not in detect}
        if detect or embed:
            tasks.append(ImageTask(image, unique[image], detect, embed, known))
    return tasks


def _store_results(results: Sequence[ImageResult], models: ModelSet, cache: EmbeddingCache,
                   store: EmbeddingStore) -> None:
    by_detector: dict[str, dict[str, Detection]] = {}
    by_pair: dict[tuple[str, str], dict[str, np.ndarray]] = {}
    for result in results:
        store.computed["decoded"] += 1
        for detector, detection in result.detections.items():
            store.detections[(result.image, detector)] = detection
            by_detector.setdefault(detector, {})[result.image] = detection
            store.computed["detections"] += 1
        for (detector, recognizer), vector in result.embeddings.items():
            store.embeddings[(result.image, detector, recognizer)] = vector
            by_pair.setdefault((detector, recognizer), {})[result.image] = vector
            store.computed["embeddings"] += 1
    for detector, detections in by_detector.items():
        # unreadable files are not cached: the file may be repaired before the next run
        cache.put_detections(models.detector_key(detector),
                             {i: d for i, d in detections.items() if d.status != "unreadable"})
    for (detector, recognizer), vectors in by_pair.items():
        cache.put_embeddings(models.detector_key(detector), models.recognizer_key(recognizer), vectors)


def run_embedding_pass(
    paths: Sequence[str | Path],
    pairs: Sequence[tuple[str, str]],
    models: ModelSet,
    cache: EmbeddingCache,
    *,
    batch_size: int = 32,
    progress: bool = True,
    runner: BatchRunner = local_runner,
) -> EmbeddingStore:
    """Detect and embed every unique image of ``paths`` under each (detector, recognizer) pair.

    Args:
        paths: image files (duplicates and byte-identical copies are processed once).
        pairs: (detector name, recognizer name) combinations to embed.
        models: loaded models (their names must cover ``pairs``).
        cache: embedding cache; read first, then written batch by batch.
        batch_size: images per :class:`EmbedBatch` call.
        progress: show tqdm progress bars.
        runner: executes the batches (default: in this process, one after the other).

    Returns:
        The results for every path (cached and new).
    """
    store = EmbeddingStore()
    resolved = list(dict.fromkeys(_key(p) for p in paths))
    unique = _hash_all(resolved, cache, store, progress)
    tasks = _plan(unique, pairs, models, cache, store)
    log.info("%d unique images (%d files); %d need detection or embedding, %d fully cached",
             len(unique), len(resolved), len(tasks), len(unique) - len(tasks))
    batches = [tasks[i : i + batch_size] for i in range(0, len(tasks), batch_size)]
    worker = EmbedBatch(models)
    with tqdm(total=len(tasks), desc="detect + embed", unit="img", disable=not progress) as bar:
        for results in runner(worker, batches):
            _store_results(results, models, cache, store)
            bar.update(len(results))
    return store
