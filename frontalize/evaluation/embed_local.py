"""In-process runner of the embedding pass: detection streams ahead of the recognizer in small chunks.

Why a runner of our own: the recognizer is the bottleneck of the pass (dlib's ResNet ≈ 55 ms per chip on one CPU
core, against ≈ 15 ms to decode + detect + align an image), so the pass can only reach the recognizer's raw
throughput if the recognizer never waits. With whole batches handed over (prepare batch k+1 while batch k is
embedded) it waits for the first whole batch — 0.5–1 s of idle recognizer per run, a quarter of a BIWI-sized
fixture's pass. Here one worker thread decodes, detects and aligns images a few at a time (``chunk``) and stays at
most two batches ahead (bounded memory); the caller's thread embeds whatever is prepared, at least one chunk and
at most ``batch_size`` images per recognizer call. So the recognizer starts after one chunk, and in the steady
state (recognizer slower than detection) its batches fill up to ``batch_size``.

Each model is used by one thread only: detectors and aligners in the worker, recognizers' ``embed`` in the caller.
onnxruntime and OpenCV release the GIL, so a worker thread runs in parallel with an onnxruntime recognizer. dlib's
``compute_face_descriptor`` holds the GIL for the whole call (measured: a pure-Python thread ran 100× slower during
it), so with a GIL-holding recognizer (``holds_gil = True``) the preparation runs in a spawned child process with
its own copy of the models instead; while that child starts (≈ 1–2 s of imports and model loading) the caller
prepares and embeds chunks itself, so small runs lose nothing to the start-up.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import BrokenExecutor, Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor

import numpy as np

from frontalize.evaluation.embed_batch import EmbedBatch, ImageResult, ImageTask, ModelSpec, PreparedBatch
from frontalize.faces.registry import set_onnx_cpu_threads

log = logging.getLogger(__name__)

__all__ = ["PREPARE_CHUNK", "PROCESS_MIN_IMAGES", "local_runner", "merge_prepared", "wants_process"]

PREPARE_CHUNK = 4
"""Images the worker thread prepares per step: the recognizer's start-up latency is one chunk."""

PROCESS_MIN_IMAGES = 48
"""Fewest images for which a preparation child process pays off: its start-up (≈ 1 s here) made a 28-image pass
no faster than the thread (2.2 s both), while 63 images took 4.4 s instead of 4.9 s (dlib, 2 cores)."""


def merge_prepared(parts: Sequence[PreparedBatch]) -> PreparedBatch:
    """Concatenate prepared chunks into one prepared batch (chip indices shifted to the merged result list).

    Args:
        parts: prepared chunks, in order.

    Returns:
        (all results in order, chips per recognizer with indices into the merged results).
    """
    results: list[ImageResult] = []
    chips: dict[str, list[tuple[int, str, np.ndarray]]] = {}
    for part_results, part_chips in parts:
        offset = len(results)
        results.extend(part_results)
        for recognizer, items in part_chips.items():
            chips.setdefault(recognizer, []).extend((offset + index, det, chip) for index, det, chip in items)
    return results, chips


def _chunk_list(batches: Sequence[Sequence[ImageTask]], chunk: int) -> list[list[ImageTask]]:
    tasks = [task for batch in batches for task in batch]
    return [tasks[i : i + chunk] for i in range(0, len(tasks), chunk)]


_CHILD_WORKER: EmbedBatch | None = None


def _init_child(spec: ModelSpec) -> None:
    """Child-process initializer: build this process's own models from the picklable spec."""
    global _CHILD_WORKER
    # the recognizer keeps one core busy in the parent: detect on the others, without spin-waiting
    set_onnx_cpu_threads(max(1, (os.cpu_count() or 2) - 1))
    _CHILD_WORKER = EmbedBatch.from_spec(spec)


def _prepare_in_child(tasks: list[ImageTask]) -> PreparedBatch:
    if _CHILD_WORKER is None:
        raise RuntimeError("embedding child process was not initialised")
    return _CHILD_WORKER.prepare(tasks)


def wants_process(worker: EmbedBatch) -> bool:
    """True when a recognizer holds the GIL while embedding and a second core exists to prepare on."""
    holds = any(getattr(rec, "holds_gil", False) for rec in worker.models.recognizers.values())
    return holds and (os.cpu_count() or 1) >= 2


def local_runner(worker: EmbedBatch, batches: Sequence[Sequence[ImageTask]], *, chunk: int = PREPARE_CHUNK,
                 processes: bool | None = None) -> Iterator[list[ImageResult]]:
    """Run the pass in this process (plus one preparing thread or child process).

    Args:
        worker: the per-batch work (models loaded in this process).
        batches: the planned batches; the largest one sets the recognizer's maximum batch size.
        chunk: images prepared per step.
        processes: prepare in a child process (True), a thread (False) or decide (None: a child when
            :func:`wants_process` and the run has at least :data:`PROCESS_MIN_IMAGES` images).

    Yields:
        Results of groups of at most the largest batch's size; every task exactly once. With a child process
        the groups the caller prepared while the child started come out of input order.
    """
    batch_size = max((len(batch) for batch in batches), default=0)
    parts = _chunk_list(batches, max(1, min(chunk, batch_size or 1)))
    if len(parts) < 2:
        for part in parts:
            yield worker(part)
        return
    ahead = max(2, 2 * batch_size // len(parts[0]))
    images = sum(len(part) for part in parts)
    use_process = wants_process(worker) and images >= PROCESS_MIN_IMAGES if processes is None else processes
    if not use_process:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="embed-prepare") as threads:
            yield from _pipeline(worker, parts, threads, worker.prepare, batch_size, ahead, steal=False)
        return
    log.debug("preparing images in a child process (a recognizer holds the GIL)")
    context = multiprocessing.get_context("spawn")  # fork would copy onnxruntime/torch thread pools
    with ProcessPoolExecutor(max_workers=1, mp_context=context, initializer=_init_child,
                             initargs=(worker.models.spec,)) as children:
        yield from _pipeline(worker, parts, children, _prepare_in_child, batch_size, ahead, steal=True)


class _Pipeline:
    """Embeds prepared chunks as they arrive from ``pool``, in groups of at most ``batch_size`` images.

    With ``steal``, the caller prepares + embeds chunks from the end of the list itself until the pool delivers its
    first chunk (a child process is still starting). If the pool breaks (a child that cannot start, e.g. a script
    without an ``if __name__ == "__main__"`` guard under the spawn start method), the rest runs in the caller.
    """

    def __init__(self, worker: EmbedBatch, pool: Executor, prepare: Callable[[list[ImageTask]], PreparedBatch],
                 batch_size: int, ahead: int) -> None:
        self.worker, self.pool, self.prepare = worker, pool, prepare
        self.batch_size, self.ahead = batch_size, ahead
        self.queue: deque[tuple[list[ImageTask], Future[PreparedBatch]]] = deque()
        self.broken = False
        self.delivered = True

    def _top_up(self, remaining: deque[list[ImageTask]]) -> None:
        # while the pool starts, hand it one chunk only: the caller takes the others from the end meanwhile
        limit = self.ahead if self.delivered else 1
        while not self.broken and len(self.queue) < limit and remaining:
            part = remaining.popleft()
            try:
                self.queue.append((part, self.pool.submit(self.prepare, part)))
            except BrokenExecutor:
                remaining.appendleft(part)
                self._mark_broken()

    def _mark_broken(self) -> None:
        if not self.broken:
            log.warning("the image-preparation process failed; preparing the remaining images in this process")
        self.broken = True

    def _result(self, part: list[ImageTask], future: Future[PreparedBatch]) -> PreparedBatch:
        try:
            return future.result()
        except BrokenExecutor:
            self._mark_broken()
            return self.worker.prepare(part)

    def run(self, parts: list[list[ImageTask]], *, steal: bool) -> Iterator[list[ImageResult]]:
        remaining = deque(parts)
        self.delivered = not steal
        self._top_up(remaining)
        while self.queue or remaining:
            if not self.queue or (not self.delivered and remaining and not self.queue[0][1].done()):
                # the pool is still starting (or broke): prepare + embed a chunk here, from the end
                yield self.worker(remaining.pop())
                continue
            self.delivered = True
            part, future = self.queue.popleft()
            group, size = [self._result(part, future)], len(part)
            while self.queue and self.queue[0][1].done() and size + len(self.queue[0][0]) <= self.batch_size:
                part, future = self.queue.popleft()
                group.append(self._result(part, future))
                size += len(part)
            self._top_up(remaining)
            yield self.worker.embed_prepared(merge_prepared(group))


def _pipeline(worker: EmbedBatch, parts: list[list[ImageTask]], pool: Executor,
              prepare: Callable[[list[ImageTask]], PreparedBatch], batch_size: int, ahead: int, *,
              steal: bool) -> Iterator[list[ImageResult]]:
    """See :class:`_Pipeline`."""
    return _Pipeline(worker, pool, prepare, batch_size, ahead).run(parts, steal=steal)
