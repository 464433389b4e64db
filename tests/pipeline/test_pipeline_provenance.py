"""The run hash (pixel-changing config keys + the weights actually loaded) and the guard against mixed trees."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from pipeline_helpers import OFFLINE_CONFIG

from frontalize.config.inference import InferenceConfig
from frontalize.config.schema import load_config, with_value
from frontalize.errors import OutputConflictError
from frontalize.io.manifest import read_manifest
from frontalize.pipeline.provenance import (
    HASHES_NAME,
    UNVERIFIED,
    check_no_foreign_results,
    describe_differences,
    hash_inputs,
    run_hash,
    write_hash_record,
)
from frontalize.pipeline.requirements import RunRequirements
from frontalize.pipeline.runner import plan_run
from frontalize.pipeline.shards import shard_dir, write_shard
from frontalize.weights import VerifiedWeight

WEIGHT = "facexlib_retinaface_r50"


def _weights(sha256: str | None) -> dict[str, VerifiedWeight]:
    return {WEIGHT: VerifiedWeight(WEIGHT, Path("/w/r50.pth"), 10, sha256)}


def test_hash_inputs_cover_pixels_and_weights_not_execution() -> None:
    base = InferenceConfig()
    inputs = hash_inputs(base, _weights(None))
    assert inputs["input.max_pixels"] == 64_000_000 and inputs["crop.scale"] == 2.3
    assert inputs[f"weights.{WEIGHT}"] == UNVERIFIED
    assert not [key for key in inputs if key.startswith(("run.", "ray.", "input.pattern", "input.limit"))]
    assert not {"device", "executor", "weights_dir", "allow_unverified_weights", "guard.dump"} & set(inputs)
    digest = run_hash(inputs)
    for key, value in (("run.workers", 7), ("frontalizer.batch_size", 3), ("device", "cpu"), ("input.limit", 5),
                       ("input.pattern", "*.png"), ("executor", "ray"), ("ray.actors", 4), ("weights_dir", "/x"),
                       ("allow_unverified_weights", True), ("guard.render_chunk", 2)):
        assert run_hash(hash_inputs(with_value(base, key, value), _weights(None))) == digest, key
    for key, value in (("input.max_pixels", 1000), ("crop.scale", 2.0), ("variants", ({"name": "a"},)),
                       ("frontalizer.precision", "bf16"), ("stages.sharpen.amount", 0.3)):
        assert run_hash(hash_inputs(with_value(base, key, value), _weights(None))) != digest, key
    verified = run_hash(hash_inputs(base, _weights("ab" * 32)))
    assert verified != digest and verified != run_hash(hash_inputs(base, _weights("cd" * 32)))
    assert run_hash(hash_inputs(base, {})) != digest  # a weight file more or less changes the hash too


def test_differences_name_the_keys() -> None:
    old = {"input.max_pixels": 64_000_000, "weights.x": UNVERIFIED, "a": 1}
    new = {"input.max_pixels": 1000, "weights.x": "f" * 64, "b": [1, 2]}
    assert describe_differences(old, new) == [
        "a: 1 → (absent)", "b: (absent) → [1, 2]", "input.max_pixels: 64000000 → 1000",
        f"weights.x: unverified → {'f' * 37}…"]
    assert describe_differences(old, old) == []


def test_conflicts_from_rows_from_the_record_and_from_unknown_hashes(tmp_path: Path) -> None:
    old, new = {"crop.scale": 2.3}, {"crop.scale": 2.0}
    rows = {"a.jpg": {"input": "a.jpg", "config_hash": "old"}, "b.jpg": {"input": "b.jpg", "config_hash": "new"}}
    check_no_foreign_results(tmp_path, "new", new, {"b.jpg": rows["b.jpg"]})  # same hash: fine
    with pytest.raises(OutputConflictError, match="hash old \\(1 input\\(s\\); its settings were not recorded\\)"):
        check_no_foreign_results(tmp_path, "new", new, rows)
    write_hash_record(tmp_path, "old", old, keep=())
    with pytest.raises(OutputConflictError, match=r"crop\.scale: 2\.3 → 2\.0.*--overwrite.*new output folder"):
        check_no_foreign_results(tmp_path, "new", new, rows)
    with pytest.raises(OutputConflictError, match="a run that started there"):  # killed before its first row
        check_no_foreign_results(tmp_path, "new", new, {})
    write_hash_record(tmp_path, "new", new, keep=())  # an --overwrite run of every input forgets "old"
    assert json.loads((tmp_path / HASHES_NAME).read_text()) == {"new": new}
    check_no_foreign_results(tmp_path, "new", new, {"b.jpg": rows["b.jpg"]})


@pytest.fixture()
def source(tmp_path: Path) -> Path:
    root = tmp_path / "src"
    root.mkdir()
    for name in ("a.jpg", "b.jpg"):
        (root / name).write_bytes(b"never decoded while planning")
    return root


def test_ray_shards_of_another_hash_stop_the_plan(source: Path, tmp_path: Path) -> None:
    cfg = load_config(InferenceConfig, OFFLINE_CONFIG)
    out = tmp_path / "out"
    plan = plan_run(cfg, source_dir=source, out_dir=out, device="cpu")
    write_shard(shard_dir(out), [{"input": "a.jpg", "status": "ok", "config_hash": plan.config_hash}])
    assert plan_run(cfg, source_dir=source, out_dir=out, device="cpu").resume.done  # same hash: resumes
    write_shard(shard_dir(out), [{"input": "b.jpg", "status": "ok", "config_hash": "0" * 16}])
    with pytest.raises(OutputConflictError, match="0000000000000000"):
        plan_run(cfg, source_dir=source, out_dir=out, device="cpu")
    again = plan_run(cfg, source_dir=source, out_dir=out, device="cpu", overwrite=True)
    assert [item.rel for item in again.resume.todo] == ["a.jpg", "b.jpg"]


def test_the_weights_actually_loaded_are_part_of_the_hash(source: Path, tmp_path: Path, run_cli: Callable[..., int],
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """Test weights (unverified) then verified weights into the same folder: stop, naming the weight file."""
    sha = {"value": None}
    monkeypatch.setattr("frontalize.pipeline.runner.weight_requirements",
                        lambda cfg, root: RunRequirements((WEIGHT,), (), None))
    monkeypatch.setattr("frontalize.pipeline.runner.verify_weights",
                        lambda keys, root, allow_unverified: _weights(sha["value"]))
    out = tmp_path / "out"
    base = ("--config", OFFLINE_CONFIG, "--source_dir", source, "-o", out, "--weights-dir", tmp_path, "-q")
    assert run_cli(*base, "--allow-unverified-weights") == 1  # the two files are not images: decode_error rows
    hashed = json.loads((out / "run_info.json").read_text())["hashed"]
    assert hashed[f"weights.{WEIGHT}"] == UNVERIFIED
    sha["value"] = "9f" * 32
    capsys.readouterr()
    assert run_cli(*base) == 2
    assert f"weights.{WEIGHT}: unverified → 9f9f" in capsys.readouterr().err
    assert len(read_manifest(out / "manifest.jsonl")) == 2
    assert run_cli(*base, "--overwrite") == 1
    assert len(read_manifest(out / "manifest.jsonl")) == 4
