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
onnxruntime, OpenCV and dlib release the GIL, so the two threads run in parallel.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

    from frontalize.evaluation.embed import EmbedBatch, ImageResult, ImageTask, PreparedBatch

__all__ = ["PREPARE_CHUNK", "local_runner", "merge_prepared"]

PREPARE_CHUNK = 4
"""Images the worker thread prepares per step: the recognizer's start-up latency is one chunk."""


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


def _chunks(batches: Sequence[Sequence[ImageTask]], chunk: int) -> list[list[ImageTask]]:
    tasks = [task for batch in batches for task in batch]
    return [tasks[i : i + chunk] for i in range(0, len(tasks), chunk)]


def local_runner(worker: EmbedBatch, batches: Sequence[Sequence[ImageTask]], *,
                 chunk: int = PREPARE_CHUNK) -> Iterator[list[ImageResult]]:
    """Run the pass in this process; results come in input order, grouped as they were embedded.

    Args:
        worker: the per-batch work (models loaded in this process).
        batches: the planned batches; the largest one sets the recognizer's maximum batch size.
        chunk: images prepared per worker step.

    Yields:
        Results of consecutive groups of images (a group is ≤ the largest batch); every task exactly once.
    """
    batch_size = max((len(batch) for batch in batches), default=0)
    parts = _chunks(batches, max(1, min(chunk, batch_size or 1)))
    if len(parts) < 2:
        for part in parts:
            yield worker(part)
        return
    ahead = max(2, 2 * batch_size // len(parts[0]))
    queue: deque[tuple[int, Future[PreparedBatch]]] = deque()
    remaining = iter(parts)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="embed-prepare") as pool:

        def top_up() -> None:
            while len(queue) < ahead:
                part = next(remaining, None)
                if part is None:
                    return
                queue.append((len(part), pool.submit(worker.prepare, part)))

        top_up()
        while queue:
            size, future = queue.popleft()
            group = [future.result()]
            while queue and queue[0][1].done() and size + queue[0][0] <= batch_size:
                next_size, next_future = queue.popleft()
                group.append(next_future.result())
                size += next_size
            top_up()
            yield worker.embed_prepared(merge_prepared(group))
