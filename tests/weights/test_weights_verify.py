"""Tests of weight verification and the checksum cache (frontalize.weights.store), on tmp_path files."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import pytest

from frontalize.errors import ConfigError, WeightsMissingError
from frontalize.weights import (
    file_status,
    get_weight,
    group_keys,
    resolve_weights_root,
    store,
    verify_weights,
    weight_path,
)
from frontalize.weights.registry import WeightFile
from frontalize.weights.store import CACHE_FILENAME, FileDigests

# Read at import, before the autouse fixture clears $FRONTALIZE_WEIGHTS for the other tests.
REAL_ROOT = resolve_weights_root(None)


@pytest.fixture
def entries(fake_registry: Any, kit: Any) -> dict[str, WeightFile]:
    return fake_registry(kit.default_entries())


def _write_all(root: Path, entries: dict[str, WeightFile], kit: Any) -> None:
    for entry in entries.values():
        kit.write_weight(root, entry)


def _count_hashing(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    calls: list[Path] = []
    real = store.file_digests

    def counting(path: Path) -> FileDigests:
        calls.append(Path(path))
        return real(path)

    monkeypatch.setattr(store, "file_digests", counting)
    return calls


def test_intact_files_verify_with_computed_sha256(tmp_path: Path, entries: dict[str, WeightFile], kit: Any) -> None:
    _write_all(tmp_path, entries, kit)
    found = verify_weights(list(entries), tmp_path)
    assert set(found) == set(entries)
    for key, weight in found.items():
        assert weight.key == key and weight.path.is_absolute() and weight.path.is_file()
        assert weight.size == len(kit.content[key])
        assert weight.sha256 == kit.sha256_of(kit.content[key])


def test_all_missing_files_are_listed_with_the_fix_command(
    tmp_path: Path, entries: dict[str, WeightFile], kit: Any
) -> None:
    kit.write_weight(tmp_path, entries["t_gamma"])
    with pytest.raises(WeightsMissingError) as caught:
        verify_weights(["t_beta", "t_alpha", "t_gamma", "t_delta"], tmp_path)
    message = str(caught.value)
    assert caught.value.exit_code == 3
    assert message.startswith(f"3 weight file(s) missing or corrupt under {tmp_path}")
    for key in ("t_alpha", "t_beta", "t_delta"):
        assert f"{key}: {entries[key].relpath}: missing" in message
    assert "t_gamma" not in message
    assert f"python scripts/download_weights.py --weights-dir {tmp_path} --only liveportrait gfpgan facexlib" in message


def test_size_sha256_and_md5_problems_are_reported_together(
    tmp_path: Path, entries: dict[str, WeightFile], kit: Any
) -> None:
    kit.write_weight(tmp_path, entries["t_alpha"], b"short")
    beta = kit.content["t_beta"]
    kit.write_weight(tmp_path, entries["t_beta"], beta[:-1] + b"X")  # same size, other bytes
    kit.write_weight(tmp_path, entries["t_gamma"], b"not gamma")
    kit.write_weight(tmp_path, entries["t_delta"])
    with pytest.raises(WeightsMissingError) as caught:
        verify_weights(list(entries), tmp_path)
    message = str(caught.value)
    assert f"t_alpha: lp/alpha.pth: size 5 ≠ {len(kit.content['t_alpha']):,} bytes" in message
    assert f"t_beta: gf/beta.pth: sha256 mismatch (got {kit.sha256_of(beta[:-1] + b'X')[:12]}…" in message
    assert "t_gamma: rb/gamma.onnx: md5 mismatch" in message
    assert "t_delta" not in message.split("fix:")[0]
    assert "--only liveportrait gfpgan rembg" in message


def test_second_verify_uses_the_cache_and_touching_invalidates(
    tmp_path: Path, entries: dict[str, WeightFile], kit: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = kit.write_weight(tmp_path, entries["t_beta"])
    calls = _count_hashing(monkeypatch)
    verify_weights(["t_beta"], tmp_path)
    verify_weights(["t_beta"], tmp_path)
    assert len(calls) == 1
    cache = json.loads((tmp_path / CACHE_FILENAME).read_text())
    entry = cache["entries"][str(path.resolve())]
    assert entry["sha256"] == kit.sha256_of(kit.content["t_beta"]) and entry["size"] == path.stat().st_size

    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))
    verify_weights(["t_beta"], tmp_path)
    assert len(calls) == 2


def test_same_size_edit_is_caught_after_a_cached_verify(
    tmp_path: Path, entries: dict[str, WeightFile], kit: Any
) -> None:
    path = kit.write_weight(tmp_path, entries["t_beta"])
    verify_weights(["t_beta"], tmp_path)
    stat = path.stat()
    path.write_bytes(b"X" * stat.st_size)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))
    with pytest.raises(WeightsMissingError, match="sha256 mismatch"):
        verify_weights(["t_beta"], tmp_path)


def test_corrupt_cache_is_ignored_and_rewritten(
    tmp_path: Path, entries: dict[str, WeightFile], kit: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    kit.write_weight(tmp_path, entries["t_alpha"])
    (tmp_path / CACHE_FILENAME).write_text("{not json")
    calls = _count_hashing(monkeypatch)
    assert verify_weights(["t_alpha"], tmp_path)["t_alpha"].sha256 == kit.sha256_of(kit.content["t_alpha"])
    assert len(calls) == 1
    assert json.loads((tmp_path / CACHE_FILENAME).read_text())["version"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [CACHE_FILENAME, "lp"]  # no temp file left behind


def test_cache_with_wrong_shape_is_ignored(tmp_path: Path, entries: dict[str, WeightFile], kit: Any) -> None:
    path = kit.write_weight(tmp_path, entries["t_beta"])
    stat = path.stat()
    forged = {
        "version": 1,
        "entries": {
            str(path.resolve()): {"mtime_ns": stat.st_mtime_ns, "size": stat.st_size, "sha256": 5, "md5": None}
        },
    }
    (tmp_path / CACHE_FILENAME).write_text(json.dumps(forged))
    assert verify_weights(["t_beta"], tmp_path)["t_beta"].sha256 == kit.sha256_of(kit.content["t_beta"])


def test_allow_unverified_only_requires_presence(
    tmp_path: Path,
    entries: dict[str, WeightFile],
    kit: Any,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kit.write_weight(tmp_path, entries["t_alpha"], b"random test weights")
    calls = _count_hashing(monkeypatch)
    with caplog.at_level(logging.WARNING, logger="frontalize.weights.store"):
        found = verify_weights(["t_alpha"], tmp_path, allow_unverified=True)
    assert found["t_alpha"].sha256 is None and found["t_alpha"].size == len(b"random test weights")
    assert calls == []
    assert "NOT VERIFIED" in caplog.text
    with pytest.raises(WeightsMissingError, match=r"t_beta: gf/beta\.pth: missing"):
        verify_weights(["t_alpha", "t_beta"], tmp_path, allow_unverified=True)


def test_file_without_published_checksum_is_trusted_on_first_use_and_logged_once(
    tmp_path: Path, entries: dict[str, WeightFile], kit: Any, caplog: pytest.LogCaptureFixture
) -> None:
    kit.write_weight(tmp_path, entries["t_delta"])
    with caplog.at_level(logging.INFO, logger="frontalize.weights.store"):
        first = verify_weights(["t_delta"], tmp_path)
        verify_weights(["t_delta", "t_delta"], tmp_path)
    assert first["t_delta"].sha256 == kit.sha256_of(kit.content["t_delta"])
    lines = [r for r in caplog.records if "trusting fx/delta.pth on first use" in r.getMessage()]
    assert len(lines) == 1 and first["t_delta"].sha256 in lines[0].getMessage()


def test_unknown_key_is_a_config_error(tmp_path: Path, entries: dict[str, WeightFile]) -> None:
    with pytest.raises(ConfigError, match="did you mean 't_alpha'"):
        verify_weights(["t_alpah"], tmp_path)


def test_file_status_without_hashing(tmp_path: Path, entries: dict[str, WeightFile], kit: Any) -> None:
    kit.write_weight(tmp_path, entries["t_alpha"])
    kit.write_weight(tmp_path, entries["t_beta"], b"xx")
    kit.write_weight(tmp_path, entries["t_gamma"])
    assert file_status("t_alpha", tmp_path) == "ok"
    assert file_status("t_beta", tmp_path) == "size 2≠4,000"
    assert file_status("t_gamma", tmp_path) == "present"
    assert file_status("t_delta", tmp_path) == "missing"


def test_real_registry_message_names_liveportrait_group(tmp_path: Path) -> None:
    with pytest.raises(WeightsMissingError) as caught:
        verify_weights(["lp_landmark", "insightface_det_10g", "insightface_w600k_r50"], tmp_path)
    message = str(caught.value)
    assert "liveportrait/landmark.onnx: missing" in message
    assert message.endswith(
        f"--weights-dir {tmp_path} --only liveportrait insightface_buffalo_l"
        " (or copy the files by hand to the paths above)"
    )


@pytest.mark.weights
def test_real_liveportrait_weights_verify_when_present() -> None:
    keys = group_keys("liveportrait")
    absent = [key for key in keys if not weight_path(key, REAL_ROOT).is_file()]
    if absent:
        pytest.skip(f"real LivePortrait weights not under {REAL_ROOT} (missing: {', '.join(absent)})")
    found = verify_weights(keys, REAL_ROOT)
    assert all(found[key].sha256 == get_weight(key).sha256 for key in keys)
