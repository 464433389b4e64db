"""Tests of the weights downloader (frontalize.weights.download) and scripts/download_weights.py.

HTTP downloads run against a small server on 127.0.0.1 started inside the test (with Range support written
here); the Hugging Face path runs against a stand-in ``hf_hub_download``. Sockets to anything but loopback
fail (see conftest.py).
"""

from __future__ import annotations

import importlib.util
import io
import logging
import re
import socket
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import huggingface_hub
import pytest
from huggingface_hub.errors import LocalEntryNotFoundError

from frontalize.errors import WeightsMissingError
from frontalize.weights import DownloadError, download, download_weights, group_keys
from frontalize.weights.registry import WeightFile
from frontalize.weights.store import CACHE_FILENAME

RELEASES = "/owner/repo/releases/download/v1"
SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "download_weights.py"


@dataclass
class ServerState:
    """What the test server serves and what it saw."""

    files: dict[str, bytes] = field(default_factory=dict)
    truncate_after: dict[str, int] = field(default_factory=dict)  # one-shot: close after N body bytes
    ignore_range: bool = False
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range header)
    sent: list[int] = field(default_factory=list)  # body bytes sent per request


class _Handler(BaseHTTPRequestHandler):
    state: ServerState

    def log_message(self, format: str, *args: Any) -> None:
        """Keep the test output quiet."""

    def do_GET(self) -> None:
        state = self.server.state  # type: ignore[attr-defined]
        range_header = self.headers.get("Range")
        state.requests.append((self.path, range_header))
        data = state.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", range_header or "")
        if match and not state.ignore_range:
            start = int(match.group(1))
            if start >= len(data):
                state.sent.append(0)  # recorded before replying: the client may check as soon as it has the reply
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        limit = state.truncate_after.pop(self.path, None)
        sent = body if limit is None else body[:limit]
        state.sent.append(len(sent))
        self.send_header("Content-Length", str(len(body)))  # the full length even when truncating
        self.end_headers()
        self.wfile.write(sent)
        self.wfile.flush()


@dataclass
class LocalServer:
    url: str
    state: ServerState


@pytest.fixture
def server() -> Iterator[LocalServer]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.state = ServerState()  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield LocalServer(f"http://127.0.0.1:{httpd.server_address[1]}", httpd.state)  # type: ignore[attr-defined]
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def entries(fake_registry: Any, kit: Any, server: LocalServer) -> dict[str, WeightFile]:
    """Default fake entries, each served by the local server at its release path."""
    table: dict[str, WeightFile] = fake_registry(kit.default_entries())
    for key, entry in table.items():
        server.state.files[f"{RELEASES}/{Path(entry.relpath).name}"] = kit.content[key]
    return table


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_success_installs_verified_file_and_caches_digests(
    tmp_path: Path, entries: dict[str, WeightFile], kit: Any, server: LocalServer
) -> None:
    fetched = download_weights(["gfpgan"], tmp_path, progress=False, mirror=server.url)
    dest = tmp_path / "gf" / "beta.pth"
    assert fetched == [dest]
    assert dest.read_bytes() == kit.content["t_beta"]
    assert not dest.with_name("beta.pth.part").exists() and not (tmp_path / ".downloads").exists()
    assert kit.sha256_of(kit.content["t_beta"]) in (tmp_path / CACHE_FILENAME).read_text()
    assert server.state.requests == [(f"{RELEASES}/beta.pth", None)]
    assert download_weights(["gfpgan"], tmp_path, progress=False, mirror=server.url) == []
    assert len(server.state.requests) == 1


def test_mirror_from_environment_and_force(
    tmp_path: Path, entries: dict[str, WeightFile], server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FRONTALIZE_DOWNLOAD_MIRROR", server.url + "/")
    download_weights(["rembg", "facexlib"], tmp_path, progress=False)
    assert download_weights(["rembg"], tmp_path, progress=False, force=True) == [tmp_path / "rb" / "gamma.onnx"]
    assert [path for path, _ in server.state.requests].count(f"{RELEASES}/gamma.onnx") == 2


def test_hash_mismatch_deletes_the_download_and_raises(
    tmp_path: Path, entries: dict[str, WeightFile], kit: Any, server: LocalServer
) -> None:
    server.state.files[f"{RELEASES}/beta.pth"] = b"X" * len(kit.content["t_beta"])
    with pytest.raises(
        WeightsMissingError,
        match="t_beta: the file fetched from .* failed verification "
        r"\(sha256 mismatch",
    ):
        download_weights(["gfpgan"], tmp_path, progress=False, mirror=server.url)
    assert list((tmp_path / "gf").iterdir()) == []


def test_md5_mismatch_is_caught_too(tmp_path: Path, entries: dict[str, WeightFile], server: LocalServer) -> None:
    server.state.files[f"{RELEASES}/gamma.onnx"] = b"something else"
    with pytest.raises(WeightsMissingError, match="md5 mismatch"):
        download_weights(["rembg"], tmp_path, progress=False, mirror=server.url)
    assert not (tmp_path / "rb" / "gamma.onnx").exists()


def test_truncated_transfer_keeps_part_and_rerun_resumes(
    tmp_path: Path, entries: dict[str, WeightFile], kit: Any, server: LocalServer
) -> None:
    path = f"{RELEASES}/alpha.pth"
    full = kit.content["t_alpha"]
    server.state.truncate_after[path] = 1000
    with pytest.raises(DownloadError, match=f"stopped early at 1,000 of {len(full):,} bytes.*rerun to resume"):
        download_weights(["liveportrait"], tmp_path, progress=False, mirror=server.url)
    part = tmp_path / "lp" / "alpha.pth.part"
    assert part.read_bytes() == full[:1000] and not (tmp_path / "lp" / "alpha.pth").exists()

    download_weights(["liveportrait"], tmp_path, progress=False, mirror=server.url)
    assert (tmp_path / "lp" / "alpha.pth").read_bytes() == full and not part.exists()
    assert server.state.requests[-1] == (path, "bytes=1000-")
    assert server.state.sent == [1000, len(full) - 1000]


def test_server_ignoring_range_restarts_from_zero(
    tmp_path: Path, entries: dict[str, WeightFile], kit: Any, server: LocalServer
) -> None:
    full = kit.content["t_alpha"]
    part = tmp_path / "lp" / "alpha.pth.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"GARBAGE!" * 10)  # a stale part that must not survive
    server.state.ignore_range = True
    download_weights(["liveportrait"], tmp_path, progress=False, mirror=server.url)
    assert (tmp_path / "lp" / "alpha.pth").read_bytes() == full
    assert server.state.requests == [(f"{RELEASES}/alpha.pth", "bytes=80-")]
    assert server.state.sent == [len(full)]


def test_complete_part_is_finished_without_transfer(
    tmp_path: Path, entries: dict[str, WeightFile], kit: Any, server: LocalServer
) -> None:
    part = kit.write_weight(tmp_path, entries["t_alpha"]).rename(tmp_path / "lp" / "alpha.pth.part")
    download_weights(["liveportrait"], tmp_path, progress=False, mirror=server.url)
    assert not part.exists() and (tmp_path / "lp" / "alpha.pth").read_bytes() == kit.content["t_alpha"]
    assert server.state.sent == [0]


def test_server_down_gives_one_clear_line(tmp_path: Path, entries: dict[str, WeightFile]) -> None:
    port = _closed_port()
    with pytest.raises(DownloadError) as caught:
        download_weights(["gfpgan"], tmp_path, progress=False, mirror=f"http://127.0.0.1:{port}")
    message = str(caught.value)
    assert caught.value.exit_code == 1 and "\n" not in message
    assert message.startswith(f"cannot reach 127.0.0.1:{port}: ")
    assert message.endswith(f"are you offline? copy the files by hand to {tmp_path / 'gf' / 'beta.pth'}")


def test_http_error_is_reported(tmp_path: Path, entries: dict[str, WeightFile], server: LocalServer) -> None:
    del server.state.files[f"{RELEASES}/delta.pth"]
    with pytest.raises(DownloadError, match="HTTP 404"):
        download_weights(["facexlib"], tmp_path, progress=False, mirror=server.url)


def _zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _pack_entries(kit: Any) -> list[WeightFile]:
    one = b"first member" * 50
    pack = "https://github.com/owner/repo/releases/download/v1/pack.zip"
    return [
        WeightFile(
            "t_one",
            "if/pack/one.onnx",
            "insightface_antelopev2",
            pack,
            len(one),
            kit.sha256_of(one),
            "x",
            archive_member="pack/one.onnx",
        ),
        WeightFile(
            "t_two", "if/pack/two.onnx", "insightface_antelopev2", pack, None, None, "x", archive_member="pack/two.onnx"
        ),
    ]


def test_zip_members_are_extracted_verified_and_the_zip_removed(
    tmp_path: Path, fake_registry: Any, kit: Any, server: LocalServer
) -> None:
    fake_registry(_pack_entries(kit))
    members = {"pack/one.onnx": b"first member" * 50, "pack/two.onnx": b"second member" * 70, "pack/x.onnx": b"x"}
    server.state.files[f"{RELEASES}/pack.zip"] = _zip_bytes(members)
    fetched = download_weights(["insightface_antelopev2"], tmp_path, progress=False, mirror=server.url)
    assert fetched == [tmp_path / "if/pack/one.onnx", tmp_path / "if/pack/two.onnx"]
    assert fetched[1].read_bytes() == members["pack/two.onnx"]
    assert not (tmp_path / "if/pack/x.onnx").exists() and not (tmp_path / ".downloads").exists()
    assert len(server.state.requests) == 1


def test_bad_zip_and_bad_member_are_verification_errors(
    tmp_path: Path, fake_registry: Any, kit: Any, server: LocalServer
) -> None:
    fake_registry(_pack_entries(kit))
    server.state.files[f"{RELEASES}/pack.zip"] = b"this is not a zip"
    with pytest.raises(WeightsMissingError, match="not a valid zip"):
        download_weights(["insightface_antelopev2"], tmp_path, progress=False, mirror=server.url)
    assert list((tmp_path / ".downloads").iterdir()) == []
    server.state.files[f"{RELEASES}/pack.zip"] = _zip_bytes({"pack/one.onnx": b"wrong", "pack/two.onnx": b"2"})
    with pytest.raises(WeightsMissingError, match=r"t_one: .*size 5"):
        download_weights(["insightface_antelopev2"], tmp_path, progress=False, mirror=server.url)
    assert not (tmp_path / "if/pack/one.onnx").exists() and not (tmp_path / "if/pack/one.onnx.part").exists()


class FakeHub:
    """Stand-in for ``huggingface_hub.hf_hub_download``: records calls, writes the given content."""

    def __init__(self, content: dict[str, bytes]) -> None:
        self.content = content
        self.calls: list[dict[str, Any]] = []

    def __call__(self, **kwargs: Any) -> str:
        self.calls.append(kwargs)
        target = Path(kwargs["local_dir"]) / kwargs["filename"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(self.content[kwargs["filename"]])
        return str(target)


def _hf_entry(kit: Any) -> WeightFile:
    data = kit.content["t_alpha"]
    return WeightFile(
        "t_alpha",
        "liveportrait/alpha.pth",
        "liveportrait",
        "hf://KwaiVGI/LivePortrait/liveportrait/alpha.pth",
        len(data),
        kit.sha256_of(data),
        "MIT",
    )


def test_huggingface_download_is_verified_then_moved(
    tmp_path: Path, fake_registry: Any, kit: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_registry([_hf_entry(kit)])
    hub = FakeHub({"liveportrait/alpha.pth": kit.content["t_alpha"]})
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hub)
    assert download_weights(["liveportrait"], tmp_path, progress=False) == [tmp_path / "liveportrait/alpha.pth"]
    (call,) = hub.calls
    assert (call["repo_id"], call["filename"]) == ("KwaiVGI/LivePortrait", "liveportrait/alpha.pth")
    assert Path(call["local_dir"]).is_relative_to(tmp_path / ".downloads") and call["tqdm_class"] is not None
    assert (tmp_path / "liveportrait/alpha.pth").read_bytes() == kit.content["t_alpha"]
    assert not (tmp_path / ".downloads").exists()


def test_huggingface_corrupt_download_is_deleted(
    tmp_path: Path, fake_registry: Any, kit: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_registry([_hf_entry(kit)])
    hub = FakeHub({"liveportrait/alpha.pth": b"Y" * len(kit.content["t_alpha"])})
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hub)
    with pytest.raises(WeightsMissingError, match=r"huggingface\.co/KwaiVGI/LivePortrait/liveportrait/alpha\.pth"):
        download_weights(["liveportrait"], tmp_path, progress=False)
    assert not (tmp_path / "liveportrait/alpha.pth").exists()
    assert not any(path.is_file() and path.name == "alpha.pth" for path in tmp_path.rglob("*"))


def test_huggingface_offline_is_a_clear_download_error(
    tmp_path: Path, fake_registry: Any, kit: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_registry([_hf_entry(kit)])

    def offline(**kwargs: Any) -> str:
        raise LocalEntryNotFoundError("cannot find the requested files in the local cache\nmore detail")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    with pytest.raises(
        DownloadError,
        match=r"^cannot reach huggingface\.co: cannot find the requested files in the local cache; are you offline",
    ):
        download_weights(["liveportrait"], tmp_path, progress=False)


def test_real_liveportrait_group_fetches_every_file_from_the_official_repo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[str, str]] = []

    def record(spec: WeightFile, root: Path, *, progress: bool, force: bool) -> Path:
        seen.append(spec.hf_repo_and_filename)
        return root / spec.relpath

    monkeypatch.setattr(download, "_fetch_hf", record)
    monkeypatch.setattr(download, "verify_weights", lambda keys, root: {})
    download_weights(["liveportrait"], tmp_path, progress=False)
    assert len(seen) == len(group_keys("liveportrait")) == 8
    assert {repo for repo, _ in seen} == {"KwaiVGI/LivePortrait"}
    assert ("KwaiVGI/LivePortrait", "insightface/models/buffalo_l/det_10g.onnx") in seen


# --- scripts/download_weights.py -------------------------------------------------------------------------


@pytest.fixture
def script(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """The download script as a module; the root logger is restored afterwards (main configures it)."""
    spec = importlib.util.spec_from_file_location("download_weights_script", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    root_logger = logging.getLogger()
    handlers, level = root_logger.handlers[:], root_logger.level
    yield module
    for handler in root_logger.handlers[:]:
        root_logger.removeHandler(handler)
    for handler in handlers:
        root_logger.addHandler(handler)
    root_logger.setLevel(level)


def test_script_downloads_and_exits_zero(
    tmp_path: Path,
    entries: dict[str, WeightFile],
    server: LocalServer,
    script: ModuleType,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FRONTALIZE_DOWNLOAD_MIRROR", server.url)
    assert script.main(["--weights-dir", str(tmp_path), "--only", "gfpgan,rembg", "-q"]) == 0
    assert (tmp_path / "gf" / "beta.pth").is_file() and (tmp_path / "rb" / "gamma.onnx").is_file()


def test_script_exit_codes(
    tmp_path: Path,
    entries: dict[str, WeightFile],
    server: LocalServer,
    script: ModuleType,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("FRONTALIZE_DOWNLOAD_MIRROR", f"http://127.0.0.1:{_closed_port()}")
    assert script.main(["--weights-dir", str(tmp_path), "--only", "gfpgan", "-q"]) == 1
    err = capsys.readouterr().err
    assert "ERROR: cannot reach 127.0.0.1" in err and "Traceback" not in err

    monkeypatch.setenv("FRONTALIZE_DOWNLOAD_MIRROR", server.url)
    server.state.files[f"{RELEASES}/beta.pth"] = b"corrupt"
    assert script.main(["--weights-dir", str(tmp_path), "--only", "gfpgan", "--debug"]) == 3
    assert "Traceback" in capsys.readouterr().err

    with pytest.raises(SystemExit) as caught:
        script.main(["--only", "gfpgann"])
    assert caught.value.code == 2 and "did you mean 'gfpgan'" in capsys.readouterr().err


def test_script_list_shows_status_without_downloading(
    tmp_path: Path,
    entries: dict[str, WeightFile],
    kit: Any,
    server: LocalServer,
    script: ModuleType,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    kit.write_weight(tmp_path, entries["t_alpha"])
    monkeypatch.setenv("FRONTALIZE_WEIGHTS", str(tmp_path))
    assert script.main(["--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["key", "group", "size", "status", "path"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert set(rows) == set(entries)
    assert " ok " in rows["t_alpha"] and " missing " in rows["t_beta"]
    assert rows["t_beta"].endswith(str(tmp_path / "gf" / "beta.pth"))
    assert server.state.requests == []


def test_script_runs_from_a_checkout_without_install(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--weights-dir", str(tmp_path), "--list", "--only", "gfpgan"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert [line.split()[0] for line in result.stdout.splitlines()] == ["key", "gfpgan_v1.3", "gfpgan_v1.4"]
    assert " missing " in result.stdout
