"""Pieces of the Ray executor that need no Ray: manifest shards and their merge, the write gate of a run, the
executor config and flags, the message when Ray is missing, and how our errors are found inside Ray's exception
wrappers."""

from __future__ import annotations

import fcntl
import logging
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml
from pipeline_helpers import OFFLINE_CONFIG, save

from frontalize.cli.evaluate import main as evaluate_main
from frontalize.config.evaluation import EvalConfig
from frontalize.config.inference import HASH_EXCLUDE, InferenceConfig
from frontalize.config.ray_config import RayConfig
from frontalize.config.schema import config_hash, load_config, with_value
from frontalize.errors import ConfigError, WeightsMissingError
from frontalize.io.atomic import TEMP_MARKER
from frontalize.io.manifest import ManifestWriter, read_manifest
from frontalize.pipeline import executor_ray
from frontalize.pipeline.shards import (
    GATE_CLOSED,
    SHARD_DIR_NAME,
    close_gate,
    gate_pass,
    gate_path,
    merge_shards,
    open_gate,
    read_shard_rows,
    shard_dir,
    shard_files,
    write_shard,
)
from frontalize.ray_support import frontalize_cause, import_ray, verify_worker_weights


def _row(rel: str, status: str = "ok", note: str = "") -> dict[str, object]:
    return {"input": rel, "status": status, "reason": note, "config_hash": "h"}


def test_write_shard_is_one_complete_file(tmp_path: Path) -> None:
    folder = tmp_path / SHARD_DIR_NAME
    assert write_shard(folder, []) is None and not folder.exists()
    path = write_shard(folder, [_row("a.jpg"), _row("b.jpg", "no_face", "no face detected")])
    assert path is not None and path.parent == folder and path.suffix == ".jsonl"
    assert [row["input"] for row in read_manifest(path)] == ["a.jpg", "b.jpg"]
    assert path.read_bytes().endswith(b"\n") and not [p for p in folder.iterdir() if TEMP_MARKER in p.name]


def test_merge_keeps_one_row_per_input_in_input_order(tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.jsonl"
    folder = tmp_path / SHARD_DIR_NAME
    write_shard(folder, [_row("c.jpg"), _row("a.jpg", "frontalize_error", "first attempt")])
    write_shard(folder, [_row("a.jpg")])  # a retried task wrote a.jpg again: the newest shard wins
    (folder / f".x.jsonl{TEMP_MARKER}1").write_text('{"input": "torn.jpg"')  # a shard being written: ignored
    assert [row["input"] for row in read_shard_rows(tmp_path)] == ["c.jpg", "a.jpg", "a.jpg"]
    assert merge_shards(tmp_path, manifest, order=["a.jpg", "b.jpg", "c.jpg"]) == 2
    rows = read_manifest(manifest)
    assert [(row["input"], row["status"]) for row in rows] == [("a.jpg", "ok"), ("c.jpg", "ok")]
    assert not shard_files(tmp_path)
    assert merge_shards(tmp_path, manifest) == 0  # nothing left


def test_merge_interrupted_before_deleting_the_shards_is_not_repeated(tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.jsonl"
    folder = tmp_path / SHARD_DIR_NAME
    rows = [_row("a.jpg"), _row("b.jpg")]
    write_shard(folder, rows)
    with ManifestWriter(manifest) as writer:  # the merge appended the rows, then the driver was killed
        for row in rows:
            writer.append(row)
    assert merge_shards(tmp_path, manifest) == 0
    assert [row["input"] for row in read_manifest(manifest)] == ["a.jpg", "b.jpg"]
    assert not (tmp_path / SHARD_DIR_NAME).exists()


class _Flag(logging.Handler):
    """Sets ``event`` when a record containing ``text`` is logged (how a test learns that the driver waits)."""

    def __init__(self, text: str, event: threading.Event) -> None:
        super().__init__(logging.INFO)
        self.text, self.event = text, event

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.event.set()


@contextmanager
def flag_when_logged(logger: str, text: str, caplog: pytest.LogCaptureFixture) -> Iterator[threading.Event]:
    """An event set once ``logger`` logs a message containing ``text``."""
    event = threading.Event()
    handler = _Flag(text, event)
    caplog.set_level(logging.INFO, logger=logger)
    logging.getLogger(logger).addHandler(handler)
    try:
        yield event
    finally:
        logging.getLogger(logger).removeHandler(handler)


def test_write_gate_admits_until_closed_and_close_waits_for_the_writers(tmp_path: Path,
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    gate = gate_path(tmp_path, "run1")
    with gate_pass(gate) as admitted:  # no shard folder (an output folder this worker does not see)
        assert not admitted
    open_gate(gate)
    events: list[str] = []
    writing = threading.Event()

    def writer(waiting: threading.Event) -> None:
        with gate_pass(gate) as admitted:
            assert admitted
            writing.set()
            assert waiting.wait(60)  # the driver is blocked in close_gate
            events.append("writer done")

    with flag_when_logged("frontalize.pipeline.shards", "waiting for the tasks still writing", caplog) as waiting:
        thread = threading.Thread(target=writer, args=(waiting,))
        thread.start()
        assert writing.wait(60)
        close_gate(gate)
        events.append("gate closed")
        thread.join()
    assert events == ["writer done", "gate closed"] and waiting.is_set()
    assert not gate.exists()
    with gate_pass(gate) as admitted:  # removed: a task that starts now writes nothing (and leaves no file)
        assert not admitted
    assert not gate.exists()
    open_gate(gate)
    with open(gate, "rb") as early:  # a task that opened the gate before the driver closed and removed it
        close_gate(gate)
        assert early.read() == GATE_CLOSED  # reads "closed" once it gets the lock
    open_gate(gate)
    gate.write_bytes(GATE_CLOSED)
    with gate_pass(gate) as admitted:
        assert not admitted


def test_finish_tasks_write_only_through_an_open_gate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    job = SimpleNamespace(shard_dir=shard_dir(tmp_path), gate=gate_path(tmp_path, "run"))

    def step(rel: str) -> dict[str, str]:
        with open(job.gate, "r+b") as other, pytest.raises(BlockingIOError):  # the task holds the gate
            fcntl.flock(other.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        return _row(rel)

    monkeypatch.setattr(executor_ray, "_worker_step", lambda *args: step)
    batch = {"record": [executor_ray._dump("a.jpg"), executor_ray._dump("b.jpg")]}
    with pytest.raises(ConfigError, match=r"(?s)Ray worker on .*not open here.*same path"):
        executor_ray.finish_batch(batch, job)
    open_gate(job.gate)
    assert executor_ray.finish_batch(batch, job)["status"] == ["ok", "ok"]
    close_gate(job.gate)
    with pytest.raises(ConfigError, match="the run was stopped"):
        executor_ray.finish_batch(batch, job)
    assert [row["input"] for row in read_shard_rows(tmp_path)] == ["a.jpg", "b.jpg"]  # one shard, while open


@pytest.fixture()
def small_tree(tmp_path: Path, face_photos: dict[str, np.ndarray]) -> Path:
    root = tmp_path / "inputs"
    for index, name in enumerate(("astronaut", "t1_0", "t1_2")):
        save(root / name / f"{index}.jpg", face_photos[name])
    return root


def test_local_executor_merges_shards_an_interrupted_ray_run_left(small_tree: Path, tmp_path: Path,
                                                                  run_cli: Callable[..., int]) -> None:
    out, weights = tmp_path / "out", tmp_path / "weights"
    weights.mkdir()
    base = ("--config", OFFLINE_CONFIG, "--source_dir", small_tree, "--recursive", "-o", out, "--weights-dir", weights)
    assert run_cli(*base, "--limit", "1") == 0
    (done,) = read_manifest(out / "manifest.jsonl")
    (out / "manifest.jsonl").write_bytes(b"")  # as if a Ray driver was killed: the row only in a shard
    write_shard(out / SHARD_DIR_NAME, [done])
    image = out / done["outputs"]["default"]["crop"]
    stamp = image.stat().st_mtime_ns
    assert run_cli(*base, "--dry-run") == 0 and shard_files(out)  # --dry-run reads the shards, changes nothing
    assert run_cli(*base) == 0
    rows = read_manifest(out / "manifest.jsonl")
    assert [row["input"] for row in rows] == [done["input"], "t1_0/1.jpg", "t1_2/2.jpg"]
    assert rows[0] == done and image.stat().st_mtime_ns == stamp  # resumed from the shard, not redone
    assert not shard_files(out)


def test_executor_and_ray_section_do_not_change_the_config_hash() -> None:
    base = InferenceConfig()
    ray = with_value(with_value(base, "executor", "ray"), "ray.actors", 4)
    assert {"executor", "ray"} <= set(HASH_EXCLUDE)
    assert config_hash(ray, exclude=HASH_EXCLUDE) == config_hash(base, exclude=HASH_EXCLUDE)
    assert EvalConfig().executor == "local" and EvalConfig().ray == RayConfig()


def test_ray_config_values() -> None:
    assert RayConfig().actor_gpus("cuda:0") == 1.0 and RayConfig().actor_gpus("cpu") == 0.0
    assert RayConfig(gpus_per_actor=0.5).actor_gpus("cpu") == 0.5
    with pytest.raises(ConfigError, match=r"ray\.address: empty"):
        RayConfig(address=" ")
    with pytest.raises(ConfigError, match=r"ray.max_restarts: -2 is below the minimum"):
        load_config(InferenceConfig, None, ("ray.max_restarts=-2",))


def test_flags_set_the_executor_and_address(run_cli: Callable[..., int], capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli("--print-config", "--executor", "ray", "--ray-address", "auto") == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["executor"] == "ray" and printed["ray"]["address"] == "auto"
    assert evaluate_main(["--print-config", "--executor", "ray", "--ray-address", "10.0.0.1:6379"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["executor"] == "ray" and printed["ray"]["address"] == "10.0.0.1:6379"


def test_missing_ray_is_a_usage_error_with_the_install_command(
        monkeypatch: pytest.MonkeyPatch, small_tree: Path, tmp_path: Path, run_cli: Callable[..., int],
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray → ImportError
    with pytest.raises(ConfigError, match=r"pip install \"\.\[ray\]\""):
        import_ray()
    assert run_cli("--config", OFFLINE_CONFIG, "--source_dir", small_tree, "-o", tmp_path / "out",
                   "--executor", "ray") == 2
    assert 'pip install ".[ray]"' in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    assert evaluate_main(["--data", str(small_tree), "--frontal-dir", str(small_tree), "-o", str(tmp_path / "r"),
                          "--executor", "ray"]) == 2
    assert 'pip install ".[ray]"' in capsys.readouterr().err


def test_worker_weight_check_names_the_host_and_the_shared_folder(tmp_path: Path) -> None:
    assert verify_worker_weights([], tmp_path, allow_unverified=False, role="finish") == {}
    with pytest.raises(WeightsMissingError, match=r"(?s)Ray worker on .*\(prepare\).*det_10g.onnx.*shared file"):
        verify_worker_weights(["insightface_det_10g"], tmp_path, allow_unverified=False, role="prepare")


class _Wrapper(Exception):
    """Stands in for Ray's RayTaskError: the worker's exception in ``cause``."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__("wrapped")
        self.cause = cause


def test_frontalize_cause_finds_our_error_inside_wrappers() -> None:
    missing = WeightsMissingError("gone")
    assert frontalize_cause(_Wrapper(missing)) is missing
    try:
        try:
            raise _Wrapper(RuntimeError("system"))
        except _Wrapper as inner:
            raise RuntimeError("outer") from inner
    except RuntimeError as outer:
        assert frontalize_cause(outer) is None
    chained = RuntimeError("outer")
    chained.__cause__ = _Wrapper(missing)
    assert frontalize_cause(chained) is missing
    assert frontalize_cause(missing) is missing
