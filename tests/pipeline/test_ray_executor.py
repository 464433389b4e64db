"""The Ray executor on a local 2-CPU Ray (started once for the module): same outputs and manifest as the local
executor, an actor killed mid-run, resume after an interrupted run, weights checked inside the workers."""

from __future__ import annotations

import logging
import os
import shutil
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from pipeline_helpers import OFFLINE_CONFIG, REPO_ROOT, load_script, save

from frontalize.config.inference import InferenceConfig
from frontalize.config.schema import load_config
from frontalize.errors import ConfigError, WeightsMissingError
from frontalize.io.manifest import read_manifest
from frontalize.pipeline import executor_ray
from frontalize.pipeline.executor_ray import FrontalizeActor, execute_run_ray
from frontalize.pipeline.runner import plan_run
from frontalize.pipeline.shards import SHARD_DIR_NAME, shard_files

ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install .[ray])")

EXPECTED = {"astronaut/a.jpg": "ok", "bad/blank.jpg": "no_face", "bad/corrupt.jpg": "decode_error",
            "t1/b.jpg": "ok", "t1/c.jpg": "ok", "t1/deep/d.jpg": "ok"}


@pytest.fixture(scope="module")
def ray_local() -> Iterator[Any]:
    """A local Ray with 2 CPUs for the whole module (the executor reuses a running Ray)."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING, namespace="frontalize-tests")
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory, face_photos: dict[str, np.ndarray]) -> Path:
    """Six ``*.jpg`` inputs in nested folders: four faces, a blank image (no face) and a corrupt file; one PNG
    that the pattern leaves out."""
    root = tmp_path_factory.mktemp("ray_inputs")
    save(root / "astronaut" / "a.jpg", face_photos["astronaut"])
    save(root / "t1" / "b.jpg", face_photos["t1_0"])
    save(root / "t1" / "c.jpg", face_photos["t1_2"])
    save(root / "t1" / "deep" / "d.jpg", face_photos["t1_4"])
    save(root / "t1" / "ignored.png", face_photos["t1_4"])
    save(root / "bad" / "blank.jpg", np.full((200, 200, 3), 128, np.uint8))
    (root / "bad" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8)
    return root


@pytest.fixture()
def weights(tmp_path: Path) -> Path:
    empty = tmp_path / "weights"
    empty.mkdir()
    return empty


def _args(tree: Path, out: Path, weights: Path, *extra: str | Path) -> tuple[str | Path, ...]:
    return ("--config", OFFLINE_CONFIG, "--source_dir", tree, "--source_pattern", "*.jpg", "--recursive", "-o", out,
            "--weights-dir", weights, *extra)


def _plan(tree: Path, out: Path, weights: Path, *overrides: str) -> Any:
    cfg = load_config(InferenceConfig, OFFLINE_CONFIG, ("executor=ray", "input.pattern='*.jpg'",
                                                        "input.recursive=true", f"weights_dir={weights}",
                                                        "run.progress=false", *overrides))
    return plan_run(cfg, source_dir=tree, out_dir=out, device="cpu")


def _comparable(row: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in row.items() if key != "timings_ms"}


def _files(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*.png")}


def _assert_complete(out: Path) -> list[dict[str, Any]]:
    """Every input exactly once with its expected status, images decodable, no shard or temp file left."""
    rows = read_manifest(out / "manifest.jsonl")
    assert sorted(row["input"] for row in rows) == sorted(EXPECTED)  # every input exactly once
    assert {row["input"]: row["status"] for row in rows} == EXPECTED
    for row in rows:
        for rel in row["outputs"].get("default", {}).values():
            image = cv2.imread(str(out / rel))
            assert image is not None and image.shape == (512, 512, 3), rel
    assert not shard_files(out) and not (out / SHARD_DIR_NAME).exists()
    assert not [p for p in out.rglob("*frontalize-tmp*")]
    return rows


def test_ray_executor_equals_local(ray_local: Any, tree: Path, tmp_path: Path, weights: Path,
                                   run_cli: Callable[..., int]) -> None:
    local, distributed = tmp_path / "local", tmp_path / "ray"
    assert run_cli(*_args(tree, local, weights, "--executor", "local")) == 1  # no_face / decode_error → exit 1
    assert run_cli(*_args(tree, distributed, weights, "--executor", "ray")) == 1
    local_rows, ray_rows = _assert_complete(local), _assert_complete(distributed)
    assert [_comparable(r) for r in ray_rows] == [_comparable(r) for r in local_rows]  # same rows, same order
    local_files = _files(local)
    assert len(local_files) == 4 and _files(distributed) == local_files  # bit-identical identity outputs
    assert (distributed / "manifest.csv").read_text().splitlines()[0] == \
        (local / "manifest.csv").read_text().splitlines()[0]
    assert "executor: ray" in (distributed / "run_config.yaml").read_text()


def test_resume_across_executors_skips_done_inputs(ray_local: Any, tree: Path, tmp_path: Path, weights: Path,
                                                   run_cli: Callable[..., int]) -> None:
    out = tmp_path / "out"
    assert run_cli(*_args(tree, out, weights, "--limit", "2")) == 1  # local: astronaut (ok) and blank (no_face)
    first = out / read_manifest(out / "manifest.jsonl")[0]["outputs"]["default"]["crop"]
    stamp = first.stat().st_mtime_ns
    plan = _plan(tree, out, weights)
    assert len(plan.resume.done) == 2 and len(plan.resume.todo) == 4  # the config hash ignores the executor
    assert execute_run_ray(plan).exit_code == 1
    _assert_complete(out)
    assert first.stat().st_mtime_ns == stamp
    assert len(_plan(tree, out, weights).resume.todo) == 0


def _dying_actor(marker: Path) -> type[FrontalizeActor]:
    """An actor class whose process exits hard on its first batch — once (the marker file remembers)."""

    class DiesOnce(FrontalizeActor):
        def __call__(self, batch: Any) -> dict[str, list[Any]]:
            if not marker.exists():
                marker.write_text(str(os.getpid()))
                os._exit(1)
            return super().__call__(batch)

    return DiesOnce


def test_killed_actor_is_restarted_and_the_manifest_stays_exact(ray_local: Any, tree: Path, tmp_path: Path,
                                                                weights: Path) -> None:
    marker = tmp_path / "died"
    out = tmp_path / "out"
    plan = _plan(tree, out, weights, "ray.batch_size=2", "ray.task_batch_size=2")
    summary = execute_run_ray(plan, actor_class=_dying_actor(marker))
    assert marker.is_file() and int(marker.read_text()) != os.getpid()  # a worker process really died
    assert summary.counts == Counter(EXPECTED.values())
    _assert_complete(out)


def test_resume_after_an_interrupted_ray_run(ray_local: Any, tree: Path, tmp_path: Path, weights: Path,
                                             monkeypatch: pytest.MonkeyPatch, run_cli: Callable[..., int]) -> None:
    out = tmp_path / "out"

    def interrupted(dataset: Any, bar: Any, abort_on_error: bool) -> None:
        for _ in dataset.iter_batches(batch_size=None, batch_format="numpy"):
            raise KeyboardInterrupt  # Ctrl-C after the first finished batch

    with monkeypatch.context() as patch:  # a driver killed hard: no merge at the end either
        patch.setattr(executor_ray, "_drain", interrupted)
        patch.setattr(executor_ray, "merge_shards", lambda *args, **kwargs: 0)
        with pytest.raises(KeyboardInterrupt):
            execute_run_ray(_plan(tree, out, weights, "ray.batch_size=2", "ray.task_batch_size=2"))
    assert not read_manifest(out / "manifest.jsonl") and shard_files(out)
    resumed = _plan(tree, out, weights)
    assert len(resumed.resume.done) >= 2  # rows of the leftover shards count as done
    done = {row["input"] for row in resumed.resume.done}
    assert run_cli(*_args(tree, out, weights, "--executor", "ray")) == 1
    rows = _assert_complete(out)
    assert [row["input"] for row in rows[: len(done)]] == sorted(done)  # leftover rows merged first


def test_on_error_abort_stops_the_ray_run_like_the_local_one(ray_local: Any, tree: Path, tmp_path: Path,
                                                             weights: Path, run_cli: Callable[..., int],
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert run_cli(*_args(tree, out, weights, "--executor", "ray", "--on-error", "abort")) == 1
    assert "(run.on_error: abort)" in capsys.readouterr().err
    rows = read_manifest(out / "manifest.jsonl")  # the rows finished so far, merged from the shards, once each
    assert len({row["input"] for row in rows}) == len(rows) and not shard_files(out)
    assert {row["input"]: row["status"] for row in rows}.items() <= EXPECTED.items()
    assert {"no_face", "decode_error"} & {row["status"] for row in rows}


def test_workers_verify_their_weights(ray_local: Any, tree: Path, tmp_path: Path) -> None:
    weights = tmp_path / "weights"
    motion = weights / "liveportrait" / "base_models" / "motion_extractor.pth"
    motion.parent.mkdir(parents=True)
    motion.write_bytes(b"placeholder")
    plan = _plan(tree, tmp_path / "out", weights, "frontalizer.pose_estimation=always",
                 "allow_unverified_weights=true")
    assert "lp_motion_extractor" in plan.verified_weights
    motion.unlink()  # gone between the driver's check and the workers' (a folder not shared with the workers)
    message = r"(?s)Ray worker on .*motion_extractor.pth: missing.*shared file system"
    with pytest.raises(WeightsMissingError, match=message):
        execute_run_ray(plan)


def test_actor_pool_too_big_for_the_local_ray_is_a_config_error(ray_local: Any, tree: Path, tmp_path: Path,
                                                                  weights: Path) -> None:
    plan = _plan(tree, tmp_path / "out", weights, "ray.actors=2")  # 2 actors × 1 CPU leave none for the tasks
    with pytest.raises(ConfigError, match=r"ray: 2 actor\(s\).*lower ray.actors"):
        execute_run_ray(plan)


@pytest.fixture(scope="module")
def lp_weights(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("ray_test_weights")
    assert load_script("make_test_weights").main([str(root), "--only", "liveportrait"]) == 0
    yield root
    shutil.rmtree(root)  # ~500 MB


@pytest.mark.slow
def test_liveportrait_on_ray_matches_local_within_engine_tolerance(ray_local: Any, tree: Path, tmp_path: Path,
                                                                   lp_weights: Path,
                                                                   run_cli: Callable[..., int]) -> None:
    source = tmp_path / "one"
    shutil.copytree(tree / "astronaut", source / "astronaut")
    outputs = {}
    for executor in ("local", "ray"):
        out = tmp_path / executor
        assert run_cli(*_args(source, out, lp_weights, "--frontalize", "--allow-unverified-weights",
                              "--executor", executor)) == 0
        (row,) = read_manifest(out / "manifest.jsonl")
        assert row["status"] == "ok"
        outputs[executor] = (row, cv2.imread(str(out / row["outputs"]["default"]["crop"])).astype(np.int16))
    (local_row, local_image), (ray_row, ray_image) = outputs["local"], outputs["ray"]
    # Ray gives each actor 1 CPU thread (OMP_NUM_THREADS): float sums differ in the last bits, ≤ 1 grey level
    assert np.abs(local_image - ray_image).max() <= 1
    for key in ("source_pose", "output_pose"):
        for axis in ("pitch", "yaw", "roll"):
            assert abs(local_row[key][axis] - ray_row[key][axis]) < 0.05, (key, axis)


def test_benchmark_measures_local_and_ray_in_the_same_run(ray_local: Any, tmp_path: Path,
                                                          face_photos: dict[str, np.ndarray],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(REPO_ROOT / "scripts"))
    bench_ray = load_script("bench_ray")
    images = tmp_path / "images"
    for name in ("astronaut", "t1_2"):
        save(images / f"{name}.jpg", face_photos[name])
    section = bench_ray.bench_local_vs_ray(images, None, tmp_path / "work", device="cpu", batch_size=2)
    assert section["same_output_files"] is True
    for executor in ("local", "ray"):
        run = section[executor]
        assert "error" not in run and run["statuses"] == {"ok": 2} and run["img_per_s"] > 0
        assert f"--executor {executor}" in run["command"]
    headlines = bench_ray.ray_headlines(section)
    assert list(headlines) == ["inference_local_img_per_s", "inference_ray_img_per_s", "ray_overhead_ratio"]
    assert headlines["ray_overhead_ratio"] == pytest.approx(section["local"]["img_per_s"] / section["ray"]["img_per_s"],
                                                            rel=1e-2)
    assert any("| ray |" in line for line in bench_ray.ray_markdown(section))
    assert bench_ray.ray_headlines({"skipped": "ray is not installed"})["inference_ray_img_per_s"].startswith(
        "not measured (ray is not installed")
