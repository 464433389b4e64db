"""The Ray executor on a local 2-CPU Ray (started once for the module): same outputs and manifest as the local
executor, an actor killed mid-run, an interrupted run that returns only once its tasks stopped writing and its resume,
weights checked inside the workers."""

from __future__ import annotations

import logging
import os
import shutil
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from pipeline_helpers import OFFLINE_CONFIG, REPO_ROOT, load_script, save
from test_ray_executor_shards import flag_when_logged

from frontalize.config.inference import InferenceConfig
from frontalize.config.schema import load_config
from frontalize.errors import ConfigError, WeightsMissingError
from frontalize.io.manifest import read_manifest
from frontalize.pipeline import executor_ray
from frontalize.pipeline.executor_ray import FrontalizeActor, execute_run_ray
from frontalize.pipeline.runner import plan_run
from frontalize.pipeline.shards import SHARD_DIR_NAME, gate_pass, shard_dir, shard_files

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


def _assert_complete(out: Path, expected: dict[str, str] = EXPECTED) -> list[dict[str, Any]]:
    """Every input exactly once with its expected status, images decodable, no shard or temp file left."""
    rows = read_manifest(out / "manifest.jsonl")
    assert sorted(row["input"] for row in rows) == sorted(expected)  # every input exactly once
    assert {row["input"]: row["status"] for row in rows} == expected
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


def _interrupted(batches: Iterator[Any], bar: Any, abort_on_error: bool) -> None:
    """Stands in for ``_drain``: Ctrl-C after the first finished batch."""
    for _ in batches:
        raise KeyboardInterrupt


def _kept_without_row(out: Path, done: set[str]) -> set[str]:
    """Inputs whose output image exists without a row: written by a task killed in the middle of its batch."""
    return {rel for rel in EXPECTED if rel not in done and (out / rel).with_suffix(".png").is_file()}


def test_resume_after_an_interrupted_ray_run(ray_local: Any, tree: Path, tmp_path: Path, weights: Path,
                                             monkeypatch: pytest.MonkeyPatch, run_cli: Callable[..., int]) -> None:
    out = tmp_path / "out"
    with monkeypatch.context() as patch:  # a driver killed hard: no merge at the end either
        patch.setattr(executor_ray, "_drain", _interrupted)
        patch.setattr(executor_ray, "merge_shards", lambda *args, **kwargs: 0)
        with pytest.raises(KeyboardInterrupt):
            execute_run_ray(_plan(tree, out, weights, "ray.batch_size=2", "ray.task_batch_size=2"))
    assert not read_manifest(out / "manifest.jsonl") and shard_files(out)
    assert not list(shard_dir(out).glob(".gate-*"))  # the driver closed its write gate
    resumed = _plan(tree, out, weights)
    assert len(resumed.resume.done) >= 2  # rows of the leftover shards count as done
    done = {row["input"] for row in resumed.resume.done}
    kept = _kept_without_row(out, done)  # fixed now: the interrupted run's tasks stopped before it returned
    assert run_cli(*_args(tree, out, weights, "--executor", "ray")) == 1
    rows = _assert_complete(out, {**EXPECTED, **dict.fromkeys(kept, "skipped_existing")})
    assert [row["input"] for row in rows[: len(done)]] == sorted(done)  # leftover rows merged first


def _finish_hanging_after(rel: str, pipe: Path) -> Callable[[Any, Any], Any]:
    """``finish_batch`` whose step, once it has written the outputs of ``rel``, writes its process id into the
    FIFO ``pipe`` (blocking until the test reads it) and hangs: a task caught by a Ctrl-C in the middle of a batch.

    The step is swapped inside the worker process (a monkeypatch in the test process does not reach the workers)
    and restored when the batch returns; a task that Ray does not kill goes on after 120 s (the test then fails).
    """

    def finish(batch: Any, job: Any) -> Any:
        from frontalize.pipeline import executor_ray as worker_module  # this worker process's module

        build = worker_module.build_finish_step

        def build_hanging(plan: Any) -> Callable[[Any], dict[str, Any]]:
            step = build(plan)

            def hanging(record: Any) -> dict[str, Any]:
                row = step(record)
                if row["input"] == rel:
                    pipe.write_text(str(os.getpid()))
                    threading.Event().wait(120)
                return row

            return hanging

        worker_module.build_finish_step = build_hanging
        try:
            return worker_module.finish_batch(batch, job)  # the worker's own, unpatched finish_batch
        finally:
            worker_module.build_finish_step = build

    return finish


def _running(pid: int) -> bool:
    """Whether process ``pid`` can still run code: it exists, is no zombie and has not begun to exit
    (``PF_EXITING``, set before the kernel closes the files of a killed process and so drops its locks)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    fields = stat[stat.rindex(")") + 2:].split()  # state ppid pgrp session tty_nr tpgid flags ...
    return fields[0] not in ("Z", "X", "x") and not int(fields[6]) & 0x4


@pytest.mark.timeout(300)
def test_an_interrupted_ray_run_returns_once_its_tasks_stopped_writing(
        ray_local: Any, tree: Path, tmp_path: Path, weights: Path, monkeypatch: pytest.MonkeyPatch,
        run_cli: Callable[..., int], caplog: pytest.LogCaptureFixture) -> None:
    """Ctrl-C while the task of t1/c.jpg hangs after writing its image: Ray kills that task, but does not wait for
    it; a slow writer (a thread holding the run's gate, as a task whose kill comes late) shows that the driver
    does, however long it takes."""
    out, pipe = tmp_path / "out", tmp_path / "hung-task"
    os.mkfifo(pipe)
    hung: list[int] = []

    def slow_writer(gate: Path, holding: threading.Event, waiting: threading.Event) -> None:
        with gate_pass(gate) as admitted:
            assert admitted
            holding.set()
            if waiting.wait(120):  # the driver waits for the run's writers
                (out / "late.txt").write_text("written before the driver returned")

    with flag_when_logged("frontalize.pipeline.shards", "waiting for the tasks still writing", caplog) as waiting:

        def interrupted(batches: Iterator[Any], bar: Any, abort_on_error: bool) -> None:
            for _ in batches:  # a first batch is finished and the task of t1/c.jpg hangs after writing its image
                hung.append(int(pipe.read_text()))
                holding = threading.Event()
                (gate,) = shard_dir(out).glob(".gate-*")
                threading.Thread(target=slow_writer, args=(gate, holding, waiting), daemon=True).start()
                assert holding.wait(60)
                raise KeyboardInterrupt

        with monkeypatch.context() as patch:
            patch.setattr(executor_ray, "finish_batch", _finish_hanging_after("t1/c.jpg", pipe))
            patch.setattr(executor_ray, "_drain", interrupted)
            with pytest.raises(KeyboardInterrupt):  # two task slots next to the actor: the hung task blocks no other
                execute_run_ray(_plan(tree, out, weights, "ray.batch_size=2", "ray.task_batch_size=2",
                                      "ray.cpus_per_task=0.5"))
    assert (out / "late.txt").is_file()  # the driver waited for the slow writer ...
    assert not _running(hung[0])  # ... and for the task Ray killed
    rows = read_manifest(out / "manifest.jsonl")  # merged once no task could add a shard
    assert rows and not shard_files(out) and not shard_dir(out).exists()
    kept = _kept_without_row(out, {row["input"] for row in rows})
    assert "t1/c.jpg" in kept  # its image, written before the kill, has no row
    assert run_cli(*_args(tree, out, weights, "--executor", "ray")) == 1  # resume keeps it (README rules)
    _assert_complete(out, {**EXPECTED, **dict.fromkeys(kept, "skipped_existing")})


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
