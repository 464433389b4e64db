"""The in-process runner of the embedding pass: order, completeness, bounded groups, early start, errors, and the
child-process variant used with GIL-holding recognizers (dlib)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from eval_photos import _write, face_crops, no_face_image

from frontalize.evaluation.cache import EmbeddingCache
from frontalize.evaluation.embed import EmbedBatch, ImageResult, ImageTask, ModelSet, ModelSpec, run_embedding_pass
from frontalize.evaluation.embed_local import _pipeline, local_runner, merge_prepared, wants_process

PAIR = ("retinaface_mnet", "dlib_resnet")


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
    groups = list(local_runner(worker, batches, chunk=chunk, processes=False))
    flat = [r for group in groups for r in group]
    assert [r.image for r in flat] == [t.image for t in tasks]
    for result in flat:  # chip indices were remapped correctly when chunks were merged
        assert result.embeddings[("det", "rec")][0] == float(result.image[3:])
    assert all(len(group) <= batch for group in groups)


def test_recognizer_starts_after_one_chunk_and_models_stay_on_their_threads():
    tasks = _tasks(24)
    worker = FakeWorker(gate=threading.Event())
    groups = list(local_runner(worker, [tasks[:12], tasks[12:]], chunk=3, processes=False))
    assert worker.embedded[0] == ["img0", "img1", "img2"]  # embedded before chunk 2 could be prepared
    assert sum(len(g) for g in groups) == 24
    assert worker.prepare_threads and all(name.startswith("embed-prepare") for name in worker.prepare_threads)
    assert worker.embed_threads == {threading.current_thread().name}


def test_prepare_error_reaches_the_caller():
    worker = FakeWorker(fail_on="img9")
    with pytest.raises(RuntimeError, match="img9"):
        list(local_runner(worker, [_tasks(16)], chunk=4, processes=False))


def test_merge_prepared_shifts_chip_indices():
    first = ([ImageResult("a"), ImageResult("b")], {"rec": [(1, "det", np.zeros(1))]})
    second = ([ImageResult("c")], {"rec": [(0, "det", np.ones(1))], "other": [(0, "d2", np.ones(1))]})
    results, chips = merge_prepared([first, second])
    assert [r.image for r in results] == ["a", "b", "c"]
    assert [index for index, _, _ in chips["rec"]] == [1, 2]
    assert [index for index, _, _ in chips["other"]] == [2]


def test_caller_prepares_chunks_itself_while_the_pool_starts():
    tasks = _tasks(20)
    worker = FakeWorker()
    booted = threading.Event()
    calls = []

    def local_call(part):
        calls.append([t.image for t in part])
        if len(calls) == 2:
            booted.set()  # the "child" finishes starting only after the caller did two chunks itself
        return worker.embed_prepared(worker.prepare(part))


    def slow_prepare(part):
        assert booted.wait(timeout=10), "the caller sat idle while the pool started"
        return worker.prepare(part)

    parts = [tasks[i : i + 4] for i in range(0, 20, 4)]
    with ThreadPoolExecutor(max_workers=1) as pool:
        groups = list(_pipeline(_Caller(worker, local_call), parts, pool, slow_prepare, 8, 2, steal=True))
    assert calls[:2] == [[f"img{i}" for i in range(16, 20)], [f"img{i}" for i in range(12, 16)]]
    assert sorted(r.image for g in groups for r in g) == sorted(t.image for t in tasks)


class _Caller:
    """Routes ``worker(part)`` (the caller's own chunks) to a recording function, the rest to the worker."""

    def __init__(self, worker: FakeWorker, call) -> None:
        self._worker, self._call = worker, call

    def __call__(self, part):
        return self._call(part)

    def embed_prepared(self, prepared):
        return self._worker.embed_prepared(prepared)


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("embed_local")
    paths = [_write(root / f"face{i}.png", crop) for i, crop in enumerate(list(face_crops().values())[:5])]
    return [*paths, _write(root / "blank.png", no_face_image())]


def test_child_process_pass_equals_thread_pass_with_real_models(photos, tmp_path):
    spec = ModelSpec(detectors=(PAIR[0],), recognizers=(PAIR[1],), weights_root=str(tmp_path / "w"), batch_size=4)
    models = ModelSet.build(spec)
    assert wants_process(EmbedBatch(models))
    stores = {}
    for name, processes in (("thread", False), ("process", True)):
        with EmbeddingCache(tmp_path / name) as cache:
            runner = partial(local_runner, chunk=2, processes=processes)
            stores[name] = run_embedding_pass(photos, [PAIR], models, cache, batch_size=4, progress=False,
                                              runner=runner)
    assert stores["thread"].computed == stores["process"].computed == {"decoded": 6, "detections": 6, "embeddings": 5}
    for path in photos:
        a, b = stores["thread"].embedding(path, *PAIR), stores["process"].embedding(path, *PAIR)
        assert (a is None) == (b is None)
        if a is not None:
            assert np.allclose(a, b, atol=1e-6)


class _DeadPool:
    """An executor whose worker died: the first future fails with BrokenProcessPool, later submits raise it."""

    def __init__(self) -> None:
        self.submitted = 0

    def submit(self, fn, *args):
        from concurrent.futures import Future
        from concurrent.futures.process import BrokenProcessPool

        self.submitted += 1
        if self.submitted > 1:
            raise BrokenProcessPool("child died")
        future: Future = Future()
        future.set_exception(BrokenProcessPool("child died"))
        return future


def test_a_broken_preparation_process_falls_back_to_the_caller(caplog):
    tasks = _tasks(10)
    worker = FakeWorker()
    parts = [tasks[i : i + 2] for i in range(0, 10, 2)]
    groups = list(_pipeline(worker, parts, _DeadPool(), worker.prepare, 4, 3, steal=False))
    assert sorted(r.image for g in groups for r in g) == sorted(t.image for t in tasks)
    assert all(("det", "rec") in r.embeddings for g in groups for r in g)
    assert "preparation process failed" in caplog.text
