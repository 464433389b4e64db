"""The evaluator's detection + embedding pass on Ray (2 CPUs) with the real offline models (RetinaFace-mnet +
dlib ResNet): the same detections, embeddings, cache and report numbers as the local pass, and a killed actor."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from eval_photos import _write, face_crops, no_face_image, write_generic

from frontalize.cli.evaluate import main
from frontalize.config.ray_config import RayConfig
from frontalize.errors import WeightsMissingError
from frontalize.evaluation.cache import EmbeddingCache
from frontalize.evaluation.embed import (
    EmbedBatch,
    EmbeddingStore,
    ImageTask,
    ModelSet,
    ModelSpec,
    local_runner,
    run_embedding_pass,
)
from frontalize.evaluation.embed_ray import EmbedActor, RayEmbedRunner, spec_weight_keys

ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install .[ray])")

REPO = Path(__file__).resolve().parents[2]
OFFLINE = str(REPO / "configs" / "eval-offline.yaml")
PAIR = ("retinaface_mnet", "dlib_resnet")


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Four face crops and one image without a face."""
    root = tmp_path_factory.mktemp("ray_embed")
    crops = list(face_crops().values())[:4]
    paths = [_write(root / f"face{i}.png", crop) for i, crop in enumerate(crops)]
    return [*paths, _write(root / "blank.png", no_face_image())]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> ModelSet:
    spec = ModelSpec(detectors=(PAIR[0],), recognizers=(PAIR[1],), weights_root=str(tmp_path_factory.mktemp("w")),
                     det_size=640, threshold=0.5, batch_size=2)
    return ModelSet.build(spec)


def _pass(paths: list[Path], models: ModelSet, cache_dir: Path, runner: Any) -> EmbeddingStore:
    with EmbeddingCache(cache_dir) as cache:
        return run_embedding_pass(paths, [PAIR], models, cache, batch_size=2, progress=False, runner=runner)


def _assert_same(first: EmbeddingStore, second: EmbeddingStore, paths: list[Path]) -> None:
    for path in paths:
        a, b = first.detection(path, PAIR[0]), second.detection(path, PAIR[0])
        assert a is not None and b is not None and (a.status, a.attempt, a.n_faces) == (b.status, b.attempt, b.n_faces)
        if a.found:
            assert np.allclose(a.box, b.box, atol=1e-3) and np.allclose(a.kps, b.kps, atol=1e-3)
            assert np.allclose(first.embedding(path, *PAIR), second.embedding(path, *PAIR), atol=1e-5)
        else:
            assert first.embedding(path, *PAIR) is None and second.embedding(path, *PAIR) is None


def test_ray_pass_starts_a_local_ray_and_equals_the_local_pass(images: list[Path], models: ModelSet,
                                                               tmp_path: Path) -> None:
    assert not ray.is_initialized()
    local = _pass(images, models, tmp_path / "local", local_runner)
    runner = RayEmbedRunner(RayConfig(num_cpus=2, batch_size=2))
    distributed = _pass(images, models, tmp_path / "ray", runner)
    assert not ray.is_initialized()  # the runner stopped the Ray it started
    assert distributed.computed == local.computed == {"decoded": 5, "detections": 5, "embeddings": 4}
    _assert_same(local, distributed, images)
    again = _pass(images, models, tmp_path / "ray", runner)  # the driver wrote the cache: nothing left to do
    assert again.computed == {"decoded": 0, "detections": 0, "embeddings": 0}
    _assert_same(local, again, images)


@pytest.fixture(scope="module")
def ray_local() -> Iterator[Any]:
    """A local Ray with 2 CPUs for the remaining tests of the module."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING, namespace="frontalize-tests")
    yield ray
    ray.shutdown()


def _dying_actor(marker: Path) -> type[EmbedActor]:
    class DiesOnce(EmbedActor):
        def __call__(self, batch: Any) -> dict[str, list[bytes]]:
            if not marker.exists():
                marker.write_text(str(os.getpid()))
                os._exit(1)
            return super().__call__(batch)

    return DiesOnce


def test_killed_embedding_actor_is_restarted(ray_local: Any, images: list[Path], models: ModelSet,
                                             tmp_path: Path) -> None:
    marker = tmp_path / "died"
    local = _pass(images, models, tmp_path / "local", local_runner)
    runner = RayEmbedRunner(RayConfig(batch_size=2), actor_class=_dying_actor(marker))
    distributed = _pass(images, models, tmp_path / "ray", runner)
    assert marker.is_file() and int(marker.read_text()) != os.getpid()
    assert distributed.computed == local.computed  # every image once, none lost with the dead actor
    _assert_same(local, distributed, images)


def test_embedding_actors_verify_their_weights(ray_local: Any, images: list[Path], tmp_path: Path) -> None:
    spec = ModelSpec(detectors=("scrfd_10g",), recognizers=(PAIR[1],), weights_root=str(tmp_path))
    assert spec_weight_keys(spec) == ("insightface_det_10g",)
    pose = ModelSpec(detectors=(PAIR[0],), recognizers=("arcface_r50",), weights_root="w", pose_model="1k3d68")
    assert spec_weight_keys(pose) == ("insightface_w600k_r50", "insightface_1k3d68")
    dlib68 = ModelSpec(detectors=(PAIR[0],), recognizers=("arcface_r50",), weights_root="w", pose_model="landmarks68")
    assert spec_weight_keys(dlib68) == ("insightface_w600k_r50",)  # a package file, verified where it is built
    driver_worker = EmbedBatch(ModelSet(spec, {}, {}))  # the Ray runner reads only its spec
    tasks = [[ImageTask("h", str(images[0]), ("scrfd_10g",), ())]]
    with pytest.raises(WeightsMissingError, match=r"(?s)Ray worker on .*det_10g.onnx: missing.*shared file system"):
        list(RayEmbedRunner(RayConfig())(driver_worker, tasks))


def test_evaluate_cli_with_ray_reports_the_same_numbers(ray_local: Any, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    original = RayEmbedRunner.__call__

    def counted(self: RayEmbedRunner, worker: EmbedBatch, batches: Any) -> Iterator[Any]:
        calls.append(sum(len(batch) for batch in batches))
        return original(self, worker, batches)

    monkeypatch.setattr(RayEmbedRunner, "__call__", counted)
    crops = dict(list(face_crops().items())[:3])
    data, out, _ = write_generic(tmp_path / "corpus", crops)
    summaries = {}
    for executor in ("local", "ray"):
        report = tmp_path / executor
        code = main(["--config", OFFLINE, "--layout", "generic", "--data", str(data), "--frontal-dir", str(out),
                     "--cache-dir", str(tmp_path / f"cache_{executor}"), "-o", str(report), "--executor", executor,
                     "--bootstrap-resamples", "50", "--no-figures", "--no-progress", "-q"])
        assert code == 0
        summaries[executor] = json.loads((report / "summary.json").read_text())
    assert len(calls) == 1 and calls[0] == summaries["ray"]["computed"]["decoded"] > 10  # the ray run used Ray
    assert summaries["ray"]["results"] == summaries["local"]["results"]
    assert summaries["ray"]["detection"] == summaries["local"]["detection"]
    assert summaries["ray"]["computed"] == summaries["local"]["computed"]
