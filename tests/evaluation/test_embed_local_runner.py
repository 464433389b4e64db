"""The in-process runner of the embedding pass: order, completeness, bounded groups, early start, errors."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from frontalize.evaluation.embed import ImageResult, ImageTask
from frontalize.evaluation.embed_local import local_runner, merge_prepared


def _tasks(count: int) -> list[ImageTask]:
    return [ImageTask(f"img{i}", f"/x/{i}.png", ("det",), (("det", "rec"),)) for i in range(count)]


class FakeWorker:
    """Stand-in for EmbedBatch: ``prepare`` makes one chip per task (value = task number), ``embed_prepared``
    writes the chip back as the embedding; both record what they saw and from which thread."""

    def __init__(self, gate: threading.Event | None = None, fail_on: str | None = None) -> None:
        self.gate = gate
        self.fail_on = fail_on
        self.prepared: list[list[str]] = []
        self.embedded: list[list[str]] = []
        self.prepare_threads: set[str] = set()
        self.embed_threads: set[str] = set()

    def prepare(self, tasks):
        self.prepare_threads.add(threading.current_thread().name)
        if self.gate is not None and self.prepared:  # every chunk after the first waits for the first embedding
            assert self.gate.wait(timeout=10), "the recognizer did not start after the first chunk"
        if self.fail_on in {t.image for t in tasks}:
            raise RuntimeError(f"decode failed on {self.fail_on}")
        self.prepared.append([t.image for t in tasks])
        results = [ImageResult(t.image) for t in tasks]
        chips = {"rec": [(i, "det", np.full(2, float(t.image[3:]))) for i, t in enumerate(tasks)]}
        return results, chips

    def embed_prepared(self, prepared):
        self.embed_threads.add(threading.current_thread().name)
        results, chips = prepared
        self.embedded.append([r.image for r in results])
        for index, detector, chip in chips["rec"]:
            results[index].embeddings[(detector, "rec")] = chip
        if self.gate is not None:
            self.gate.set()
        return results

    def __call__(self, tasks):
        return self.embed_prepared(self.prepare(tasks))


@pytest.mark.parametrize(("count", "batch", "chunk"), [(1, 32, 4), (7, 3, 2), (63, 32, 4), (10, 4, 8)])
def test_every_task_once_in_order_with_its_own_embedding(count, batch, chunk):
    tasks = _tasks(count)
    batches = [tasks[i : i + batch] for i in range(0, count, batch)]
    worker = FakeWorker()
    groups = list(local_runner(worker, batches, chunk=chunk))
    flat = [r for group in groups for r in group]
    assert [r.image for r in flat] == [t.image for t in tasks]
    for result in flat:  # chip indices were remapped correctly when chunks were merged
        assert result.embeddings[("det", "rec")][0] == float(result.image[3:])
    assert all(len(group) <= batch for group in groups)


def test_recognizer_starts_after_one_chunk_and_models_stay_on_their_threads():
    tasks = _tasks(24)
    worker = FakeWorker(gate=threading.Event())
    groups = list(local_runner(worker, [tasks[:12], tasks[12:]], chunk=3))
    assert worker.embedded[0] == ["img0", "img1", "img2"]  # embedded before chunk 2 could be prepared
    assert sum(len(g) for g in groups) == 24
    assert worker.prepare_threads and all(name.startswith("embed-prepare") for name in worker.prepare_threads)
    assert worker.embed_threads == {threading.current_thread().name}


def test_prepare_error_reaches_the_caller():
    worker = FakeWorker(fail_on="img9")
    with pytest.raises(RuntimeError, match="img9"):
        list(local_runner(worker, [_tasks(16)], chunk=4))


def test_merge_prepared_shifts_chip_indices():
    first = ([ImageResult("a"), ImageResult("b")], {"rec": [(1, "det", np.zeros(1))]})
    second = ([ImageResult("c")], {"rec": [(0, "det", np.ones(1))], "other": [(0, "d2", np.ones(1))]})
    results, chips = merge_prepared([first, second])
    assert [r.image for r in results] == ["a", "b", "c"]
    assert [index for index, _, _ in chips["rec"]] == [1, 2]
    assert [index for index, _, _ in chips["other"]] == [2]
