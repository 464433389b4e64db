"""Detection + embedding pass: each unique image decoded once, detected once per detector, embedded once per
(detector, recognizer), the recognizer batched; results go to the :class:`~.cache.EmbeddingCache`.

The per-batch work is the plain callable :class:`~frontalize.evaluation.embed_batch.EmbedBatch` (re-exported here
with its types), so the local runner (:mod:`~frontalize.evaluation.embed_local`, the default) and a distributed
executor (Ray ``map_batches`` actors) drive the same code; only the driver touches the cache. Images are streamed
in batches: nothing but embeddings and detection records outlives a batch, so memory does not grow with the
dataset.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from frontalize.evaluation.cache import Detection, EmbeddingCache
from frontalize.evaluation.embed_batch import (
    PLAIN_ATTEMPT,
    EmbedBatch,
    ImageResult,
    ImageTask,
    ModelSet,
    ModelSpec,
    PreparedBatch,
)
from frontalize.evaluation.embed_local import local_runner

log = logging.getLogger(__name__)

__all__ = [
    "PLAIN_ATTEMPT",
    "BatchRunner",
    "EmbedBatch",
    "EmbeddingStore",
    "ImageResult",
    "ImageTask",
    "ModelSet",
    "ModelSpec",
    "PreparedBatch",
    "local_runner",
    "run_embedding_pass",
]

BatchRunner = Callable[[EmbedBatch, Sequence[Sequence[ImageTask]]], Iterator[list[ImageResult]]]
"""Executes the planned batches and yields their results (the local runner, or Ray actors)."""


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
