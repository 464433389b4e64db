"""Local executor helpers: bounded, order-preserving prefetch over a thread pool, and face-count batching.

Threads (not processes) are enough here: decoding (OpenCV), detection (onnxruntime) and encoding release the
GIL, and the models are loaded once and shared. The number of tasks in flight is capped, so memory stays bounded
however many inputs a run has.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def bounded_map(
    function: Callable[[T], R],
    items: Iterable[T],
    executor: Executor | None,
    max_in_flight: int,
) -> Iterator[R]:
    """Like ``map(function, items)`` but computed ahead on ``executor``, in input order.

    At most ``max_in_flight`` calls are submitted and not yet consumed; without an executor the calls run
    inline when consumed.

    Args:
        function: the per-item work.
        items: inputs (consumed lazily).
        executor: thread pool, or None for inline execution.
        max_in_flight: prefetch depth (≥ 1).

    Yields:
        ``function(item)`` for each item, in order. An exception of a call is re-raised when its result is
        reached.
    """
    if executor is None:
        for item in items:
            yield function(item)
        return
    pending: deque[Future[R]] = deque()
    iterator = iter(items)
    try:
        for item in iterator:
            pending.append(executor.submit(function, item))
            if len(pending) >= max(1, max_in_flight):
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for future in pending:
            future.cancel()


def batch_by_weight(
    items: Iterable[T], capacity: int, weight: Callable[[T], int], max_items: int | None = None
) -> Iterator[list[T]]:
    """Group consecutive items until their total weight reaches ``capacity`` (e.g. faces per network batch).

    An item of weight 0 (a failed input with no face) joins the current group without filling it; ``max_items``
    caps the group length so a long run of such items is still emitted promptly.

    Args:
        items: the stream.
        capacity: weight at which a group is emitted (≥ 1).
        weight: weight of one item.
        max_items: emit a group once it holds this many items (default ``4 × capacity``).

    Yields:
        Non-empty lists, in order; the last one may be lighter.
    """
    limit = max_items if max_items is not None else 4 * max(1, capacity)
    group: list[T] = []
    total = 0
    for item in items:
        group.append(item)
        total += weight(item)
        if total >= max(1, capacity) or len(group) >= limit:
            yield group
            group, total = [], 0
    if group:
        yield group
