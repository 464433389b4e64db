"""Trust on first use (frontalize.weights.lock): files without a published sha256 are recorded when first seen
and every later verification or download is checked against that record; README's table matches the registry."""

from __future__ import annotations

import json
import logging
import re
import tempfile
from pathlib import Path
from typing import Any

import pytest
from test_weights_download import RELEASES, LocalServer, server  # noqa: F401  (the local HTTP server fixture)

from frontalize.errors import WeightsMissingError
from frontalize.weights import (
    LOCK_FILENAME,
    REGISTRY,
    WeightsLock,
    download_weights,
    verification_of,
    verification_table,
    verify_weights,
)
from frontalize.weights.registry import VERIFY_MD5_TOFU, VERIFY_PUBLISHED, VERIFY_TOFU, WeightFile

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture
def entries(fake_registry: Any, kit: Any) -> dict[str, WeightFile]:
    return fake_registry(kit.default_entries())


def _lock(root: Path) -> dict[str, Any]:
    files: dict[str, Any] = json.loads((root / LOCK_FILENAME).read_text())["files"]
    return files


def test_first_verification_records_only_files_without_a_published_sha256(
    tmp_path: Path, entries: dict[str, WeightFile], kit: Any
) -> None:
    for entry in entries.values():
        kit.write_weight(tmp_path, entry)
    verify_weights(list(entries), tmp_path)
    recorded = _lock(tmp_path)
    assert set(recorded) == {"rb/gamma.onnx", "fx/delta.pth"}  # alpha and beta have published checksums
    delta = recorded["fx/delta.pth"]
    assert delta["key"] == "t_delta" and delta["how"] == "first verification"
    assert (delta["size"], delta["sha256"]) == (len(kit.content["t_delta"]), kit.sha256_of(kit.content["t_delta"]))


@pytest.mark.parametrize("change", ["same size", "truncated", "appended"])
def test_a_file_changed_after_first_use_is_a_weights_error(
    tmp_path: Path, entries: dict[str, WeightFile], kit: Any, change: str
) -> None:
    path = kit.write_weight(tmp_path, entries["t_delta"])
    verify_weights(["t_delta"], tmp_path)
    verify_weights(["t_delta"], tmp_path)  # unchanged: still fine
    data = kit.content["t_delta"]
    path.write_bytes({"same size": b"X" * len(data), "truncated": data[:5], "appended": data + b"!"}[change])
    with pytest.raises(WeightsMissingError) as caught:
        verify_weights(["t_delta"], tmp_path)
    message = str(caught.value)
    assert caught.value.exit_code == 3
    assert f"t_delta: fx/delta.pth: changed since it was first recorded in {LOCK_FILENAME}" in message
    assert "first verification" in message and "--only facexlib" in message and "--force" in message
    assert _lock(tmp_path)["fx/delta.pth"]["sha256"] == kit.sha256_of(data)  # the record is never overwritten


def test_md5_files_are_locked_too(tmp_path: Path, entries: dict[str, WeightFile], kit: Any) -> None:
    path = kit.write_weight(tmp_path, entries["t_gamma"])
    verify_weights(["t_gamma"], tmp_path)
    lock = json.loads((tmp_path / LOCK_FILENAME).read_text())
    lock["files"]["rb/gamma.onnx"]["sha256"] = "0" * 64  # as if another file had been seen first
    (tmp_path / LOCK_FILENAME).write_text(json.dumps(lock))
    with pytest.raises(WeightsMissingError, match="changed since it was first recorded"):
        verify_weights(["t_gamma"], tmp_path)
    assert path.is_file()


def test_test_weights_are_never_recorded(tmp_path: Path, entries: dict[str, WeightFile], kit: Any) -> None:
    kit.write_weight(tmp_path, entries["t_delta"], b"random test weights")
    verify_weights(["t_delta"], tmp_path, allow_unverified=True)
    assert not (tmp_path / LOCK_FILENAME).exists()


def test_download_records_the_file_and_checks_a_redownload_against_the_record(
    tmp_path: Path, entries: dict[str, WeightFile], kit: Any, server: LocalServer  # noqa: F811
) -> None:
    server.state.files[f"{RELEASES}/delta.pth"] = kit.content["t_delta"]
    download_weights(["facexlib"], tmp_path, progress=False, mirror=server.url)
    first = _lock(tmp_path)["fx/delta.pth"]
    assert first["how"] == "download" and first["sha256"] == kit.sha256_of(kit.content["t_delta"])
    # the file is lost and the release now serves something else: the re-download is refused and deleted
    (tmp_path / "fx" / "delta.pth").unlink()
    server.state.files[f"{RELEASES}/delta.pth"] = b"a different release"
    with pytest.raises(WeightsMissingError, match=r"differs from the copy first recorded .* rerun with --force"):
        download_weights(["facexlib"], tmp_path, progress=False, mirror=server.url)
    assert not (tmp_path / "fx" / "delta.pth").exists()
    # --force is the explicit decision to trust the new file: downloaded, installed and recorded
    download_weights(["facexlib"], tmp_path, progress=False, mirror=server.url, force=True)
    assert (tmp_path / "fx" / "delta.pth").read_bytes() == b"a different release"
    assert _lock(tmp_path)["fx/delta.pth"]["sha256"] == kit.sha256_of(b"a different release")
    verify_weights(["t_delta"], tmp_path)


def test_download_repairs_a_corrupted_file_from_the_same_release(
    tmp_path: Path, entries: dict[str, WeightFile], kit: Any, server: LocalServer  # noqa: F811
) -> None:
    server.state.files[f"{RELEASES}/delta.pth"] = kit.content["t_delta"]
    download_weights(["facexlib"], tmp_path, progress=False, mirror=server.url)
    (tmp_path / "fx" / "delta.pth").write_bytes(b"corrupt")
    with pytest.raises(WeightsMissingError):
        verify_weights(["t_delta"], tmp_path)
    fetched = download_weights(["facexlib"], tmp_path, progress=False, mirror=server.url)
    assert fetched == [tmp_path / "fx" / "delta.pth"]
    verify_weights(["t_delta"], tmp_path)
    assert _lock(tmp_path)["fx/delta.pth"]["how"] == "download"


def test_concurrent_writers_merge_and_never_replace_a_record(
    tmp_path: Path, entries: dict[str, WeightFile]
) -> None:
    first, second = WeightsLock(tmp_path), WeightsLock(tmp_path)  # two workers that read an empty lock
    first.record(entries["t_delta"], 3, "a" * 64, how="first verification")
    second.record(entries["t_gamma"], 4, "b" * 64, how="first verification")
    second.record(entries["t_delta"], 5, "c" * 64, how="first verification")
    assert first.save() and second.save()
    merged = _lock(tmp_path)
    assert merged["fx/delta.pth"]["sha256"] == "a" * 64 and merged["rb/gamma.onnx"]["size"] == 4
    third = WeightsLock(tmp_path)
    third.record(entries["t_delta"], 6, "d" * 64, how="download", replace=True)
    assert third.save() and _lock(tmp_path)["fx/delta.pth"]["sha256"] == "d" * 64


def test_unreadable_lock_and_unwritable_root_are_warnings(
    tmp_path: Path, entries: dict[str, WeightFile], kit: Any, caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / LOCK_FILENAME).write_text("{not json")
    with caplog.at_level(logging.WARNING, logger="frontalize.weights.lock"):
        assert WeightsLock(tmp_path).get(entries["t_delta"]) is None
    assert "ignoring unreadable weights lock" in caplog.text

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise PermissionError("read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    kit.write_weight(tmp_path, entries["t_delta"])
    with caplog.at_level(logging.WARNING, logger="frontalize.weights.lock"):
        verify_weights(["t_delta"], tmp_path)
    assert "cannot write the weights lock" in caplog.text and "t_delta" in caplog.text


def test_registry_verification_kinds() -> None:
    kinds = {key: verification_of(entry) for key, entry in REGISTRY.items()}
    assert {key for key, kind in kinds.items() if kind == VERIFY_TOFU} == {
        "insightface_1k3d68", "insightface_w600k_r50", "insightface_scrfd_10g_bnkps", "insightface_glintr100",
        "gfpgan_v1.3", "gfpgan_v1.4", "facexlib_retinaface_r50"}
    assert {key for key, kind in kinds.items() if kind == VERIFY_MD5_TOFU} == {k for k in REGISTRY if "rembg" in k}
    assert sum(kind == VERIFY_PUBLISHED for kind in kinds.values()) == 8
    assert "facexlib_parsenet" not in REGISTRY  # never loaded by anything: not downloaded either


def test_readme_table_is_the_registry_table() -> None:
    text = README.read_text(encoding="utf-8")
    match = re.search(r"<!-- verification-table:start -->\n(.*?)<!-- verification-table:end -->", text, re.S)
    assert match is not None, "README has no generated verification table"
    assert match.group(1) == verification_table()
    assert "parsing_parsenet.pth" not in verification_table()
