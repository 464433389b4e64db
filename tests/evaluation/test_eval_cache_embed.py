"""Embedding cache and the detection/embedding pass: cost grows with unique images, not with pairs."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from eval_standins import CountingDetector, Factories, colour_image

from frontalize.evaluation.cache import Detection, EmbeddingCache, default_cache_dir
from frontalize.evaluation.embed import PLAIN_ATTEMPT, EmbedBatch, ImageTask, ModelSet, ModelSpec, run_embedding_pass


def _models(factories: Factories, *, retry: bool = True, recognizers: tuple[str, ...] = ("r1",)) -> ModelSet:
    spec = ModelSpec(detectors=("d1", "d2"), recognizers=recognizers, weights_root="unused", retry=retry,
                     retry_sizes=(448,), batch_size=4)
    return ModelSet.build(spec, **factories.as_kwargs())


def test_cache_round_trip(tmp_path: Path) -> None:
    with EmbeddingCache(tmp_path / "c") as cache:
        det = Detection("face", "plain", 2, 0.9, np.arange(4, dtype=np.float32), np.ones((5, 2), np.float32),
                        (1.0, 2.0, 3.0))
        cache.put_detections("D", {"h1": det, "h2": Detection("no_face")})
        cache.put_embeddings("D", "R", {"h1": np.array([0.6, 0.8], np.float32)})
    with EmbeddingCache(tmp_path / "c") as cache:
        got = cache.get_detections(["h1", "h2", "h3"], "D")
        assert set(got) == {"h1", "h2"} and got["h1"].found and not got["h2"].found
        assert got["h1"].box.tolist() == [0, 1, 2, 3] and got["h1"].pose == (1.0, 2.0, 3.0)
        assert cache.get_detections(["h1"], "other") == {}
        assert cache.get_embeddings(["h1"], "D", "R")["h1"].tolist() == pytest.approx([0.6, 0.8])
        assert cache.get_embeddings(["h1"], "D", "R2") == {}


def test_content_hash_memo_follows_file_changes(tmp_path: Path) -> None:
    path = colour_image(tmp_path / "a.png", (10, 20, 30))
    copy = tmp_path / "b.png"
    shutil.copyfile(path, copy)
    with EmbeddingCache(None) as cache:
        first = cache.content_hash(path)
        assert cache.content_hash(copy) == first
        colour_image(path, (90, 20, 30))
        assert cache.content_hash(path) != first


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FRONTALIZE_CACHE", str(tmp_path / "x"))
    assert default_cache_dir() == tmp_path / "x"
    monkeypatch.delenv("FRONTALIZE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "frontalize"


def _tree(root: Path, count: int, offset: int = 0) -> list[Path]:
    return [colour_image(root / f"{i}.png", (40 + 10 * (i + offset), 60, 90)) for i in range(count)]


def test_cost_grows_with_unique_images(tmp_path: Path) -> None:
    factories = Factories()
    models = _models(factories)
    images = _tree(tmp_path / "a", 6)
    duplicate = tmp_path / "dup.png"
    shutil.copyfile(images[0], duplicate)  # byte-identical copy: computed once
    pairs = [("d1", "r1"), ("d2", "r1")]
    with EmbeddingCache(tmp_path / "cache") as cache:
        store = run_embedding_pass([*images, duplicate, images[1]], pairs, models, cache, batch_size=4,
                                   progress=False)
    assert store.computed == {"decoded": 6, "detections": 12, "embeddings": 12}
    assert sum(factories.detectors["d1"].calls.values()) == 6 and sum(factories.detectors["d2"].calls.values()) == 6
    recognizer = factories.recognizers["r1"]
    assert recognizer.chips == 12 and recognizer.embed_calls == 2  # one batched call per batch of 4 images
    assert np.allclose(store.embedding(duplicate, "d1", "r1"), store.embedding(images[0], "d1", "r1"))
    # A second tree: only its new images are computed; the first tree comes from the on-disk cache.
    new = _tree(tmp_path / "b", 3, offset=10)
    factories2 = Factories()
    with EmbeddingCache(tmp_path / "cache") as cache:
        store2 = run_embedding_pass([*images, *new], pairs, _models(factories2), cache, batch_size=4,
                                    progress=False)
    assert store2.computed == {"decoded": 3, "detections": 6, "embeddings": 6}
    assert factories2.recognizers["r1"].chips == 6
    assert np.allclose(store2.embedding(images[2], "d2", "r1"), store.embedding(images[2], "d2", "r1"))


def test_new_recognizer_reuses_cached_detections(tmp_path: Path) -> None:
    images = _tree(tmp_path, 3)
    with EmbeddingCache(tmp_path / "cache") as cache:
        run_embedding_pass(images, [("d1", "r1")], _models(Factories()), cache, progress=False)
        factories = Factories()
        store = run_embedding_pass(images, [("d1", "r1"), ("d1", "r2")],
                                   _models(factories, recognizers=("r1", "r2")), cache, progress=False)
    assert sum(factories.detectors["d1"].calls.values()) == 0  # detections came from the cache
    assert factories.recognizers["r2"].chips == 3 and factories.recognizers["r1"].chips == 0
    assert store.computed == {"decoded": 3, "detections": 0, "embeddings": 3}


def test_retry_counts_and_no_face(tmp_path: Path) -> None:
    tight = colour_image(tmp_path / "tight.png", (120, 80, 60), tight=True)
    dark = colour_image(tmp_path / "dark.png", (2, 2, 2))
    normal = colour_image(tmp_path / "normal.png", (120, 80, 60))
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    with EmbeddingCache(None) as cache:
        store = run_embedding_pass([tight, dark, normal, broken], [("d1", "r1")], _models(Factories()), cache,
                                   progress=False)
        plain = run_embedding_pass([tight], [("d1", "r1")], _models(Factories(), retry=False), cache,
                                   progress=False)
    assert store.detection(tight, "d1").attempt == "padded" and store.embedding(tight, "d1", "r1") is not None
    assert store.detection(normal, "d1").attempt == PLAIN_ATTEMPT
    assert store.detection(dark, "d1").status == "no_face" and store.embedding(dark, "d1", "r1") is None
    assert store.detection(broken, "d1").status == "unreadable"
    assert plain.detection(tight, "d1").status == "no_face"  # retry off: a separate cache key, no face


def test_embed_batch_is_a_plain_callable() -> None:
    factories = Factories()
    worker = EmbedBatch(_models(factories))
    assert worker([]) == []
    assert isinstance(factories.detectors["d1"], CountingDetector)


def test_image_task_with_known_detection(tmp_path: Path) -> None:
    path = colour_image(tmp_path / "x.png", (100, 100, 100))
    factories = Factories()
    worker = EmbedBatch(_models(factories))
    known = Detection("face", "plain", 1, 0.9, np.array([2, 2, 20, 20], np.float32), np.full((5, 2), 10, np.float32))
    result = worker([ImageTask("h", str(path), (), (("d1", "r1"),), {"d1": known})])[0]
    assert result.detections == {} and set(result.embeddings) == {("d1", "r1")}
    assert sum(factories.detectors["d1"].calls.values()) == 0
