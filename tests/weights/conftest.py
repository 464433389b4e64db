"""Fixtures of the weights tests: a network guard and a small stand-in registry.

Every test of the suite runs with sockets limited to loopback (tests/conftest.py); here the fixture also checks
that guard and clears the proxy, mirror and weights-root variables. ``fake_registry`` swaps the real registry
(whose files are hundreds of MB) for a few tiny entries with known content; ``kit`` hands the tests the helpers
below (test modules cannot import a conftest that shares its name with the root one).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from frontalize.weights import registry, store
from frontalize.weights.registry import WeightFile


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch, network_guard: Any) -> None:
    """The session-wide network guard (tests/conftest.py) plus a clean environment: no proxy, mirror or root."""
    assert network_guard.active, "the session-wide network guard of tests/conftest.py is off"
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("FRONTALIZE_DOWNLOAD_MIRROR", raising=False)
    monkeypatch.delenv("FRONTALIZE_WEIGHTS", raising=False)
    monkeypatch.setattr(store, "_warned_unrecorded", set())


CONTENT: dict[str, bytes] = {
    "t_alpha": b"alpha-weights-" * 300,
    "t_beta": b"beta" * 1000,
    "t_gamma": b"gamma weights, md5 only",
    "t_delta": b"delta, nothing recorded",
}

FakeRegistry = Callable[..., dict[str, WeightFile]]


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def md5_of(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def default_entries(base_url: str = "https://github.com/owner/repo/releases/download/v1") -> list[WeightFile]:
    """Four entries in different groups: size+sha256 (alpha, beta), md5 only (gamma), nothing (delta)."""
    alpha, beta, gamma = CONTENT["t_alpha"], CONTENT["t_beta"], CONTENT["t_gamma"]
    return [
        WeightFile(
            "t_alpha", "lp/alpha.pth", "liveportrait", f"{base_url}/alpha.pth", len(alpha), sha256_of(alpha), "MIT"
        ),
        WeightFile("t_beta", "gf/beta.pth", "gfpgan", f"{base_url}/beta.pth", len(beta), sha256_of(beta), "MIT"),
        WeightFile("t_gamma", "rb/gamma.onnx", "rembg", f"{base_url}/gamma.onnx", None, None, "MIT", md5=md5_of(gamma)),
        WeightFile("t_delta", "fx/delta.pth", "facexlib", f"{base_url}/delta.pth", None, None, "MIT"),
    ]


@pytest.fixture
def fake_registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeRegistry]:
    """Callable installing the given entries (default: :func:`default_entries`) as the registry."""

    def install(entries: list[WeightFile] | None = None) -> dict[str, WeightFile]:
        table = {entry.key: entry for entry in (entries if entries is not None else default_entries())}
        monkeypatch.setattr(registry, "REGISTRY", MappingProxyType(table))
        return table

    yield install


def write_weight(root: Path, entry: WeightFile, data: bytes | None = None) -> Path:
    """Write ``data`` (default: the entry's known content) at the entry's registry path."""
    path = root / entry.relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(CONTENT[entry.key] if data is None else data)
    return path


@dataclass(frozen=True)
class WeightsKit:
    """Helpers of the weights tests, handed out by the ``kit`` fixture."""

    content: dict[str, bytes] = field(default_factory=lambda: dict(CONTENT))
    sha256_of: Callable[[bytes], str] = sha256_of
    md5_of: Callable[[bytes], str] = md5_of
    default_entries: Callable[..., list[WeightFile]] = default_entries
    write_weight: Callable[..., Path] = write_weight


@pytest.fixture
def kit() -> WeightsKit:
    """The helpers of this folder's tests."""
    return WeightsKit()
