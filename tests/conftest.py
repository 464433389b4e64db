"""Shared pytest fixtures and the suite-wide rules: no network, and no silent skips under ``CI=true``.

* **No network.** From configuration to the end of the session every non-loopback connection of this process
  fails loudly (``RuntimeError``, which the code under test cannot mistake for a transient ``OSError``), and so
  does resolving a host name that is not local. Loopback (127.0.0.0/8, ``::1``, ``localhost``) and unix sockets
  keep working: Ray's local cluster and the headless-browser tests use them. Child processes get
  ``HF_HUB_OFFLINE=1`` and no proxy settings. The only network use of the project's tests is package installation
  in ``scripts/setup_env.sh``.
* **CI.** With ``CI=true`` (``.ci/run`` exports it) a skipped test is a failure unless it is marked ``gpu`` or
  ``weights`` (no CUDA device, no real weights: facts of the machine) or ``cpu_only`` (it checks what happens on a
  machine without CUDA): a missing golden, shipped model, test wheel or optional package of the ``dev`` extra
  must fail the run, not shrink it.
* **Goldens.** The LivePortrait goldens live in ``../shared/golden/liveportrait`` beside the checkout (or
  wherever ``$FRONTALIZE_GOLDEN_DIR`` points). They are never copied into the project.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest
from netguard import NETWORK_GUARD, NetworkGuard  # tests/ is on sys.path (rootdir conftest)

REPO_ROOT = Path(__file__).resolve().parents[1]
SKIP_ALLOWED_MARKERS = ("gpu", "weights", "cpu_only")
_OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
_PROXY_ENV = ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY")


def in_ci() -> bool:
    """True under ``CI=true``."""
    return os.environ.get("CI", "").lower() == "true"




def pytest_configure(config: pytest.Config) -> None:
    """Block the network for the whole session (collection included) and take proxies away from children."""
    for name, value in _OFFLINE_ENV.items():
        os.environ[name] = value
    for name in _PROXY_ENV:
        os.environ.pop(name, None)
    NETWORK_GUARD.install()


def pytest_unconfigure(config: pytest.Config) -> None:
    """Restore the socket module (pytest may run again in the same process, e.g. under pytester)."""
    NETWORK_GUARD.uninstall()


def _skip_allowed(item: pytest.Item) -> bool:
    return any(item.get_closest_marker(name) is not None for name in SKIP_ALLOWED_MARKERS)


def _skip_reason(report: pytest.CollectReport | pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    """Under ``CI=true`` turn a skip of a test not marked gpu/weights/cpu_only into a failure."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if in_ci() and report.skipped and not hasattr(report, "wasxfail") and not _skip_allowed(item):
        report.outcome = "failed"
        report.longrepr = (f"skipped under CI=true ({_skip_reason(report)}); in CI only tests marked "
                           f"{', '.join(SKIP_ALLOWED_MARKERS)} may skip")


_COLLECTION_SKIPS: list[str] = []


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Generator[None, Any, None]:
    """Under ``CI=true`` remember modules skipped at collection (e.g. ``importorskip``): they fail the session.

    The report itself stays a skip, so that the other modules still run (a collection error would stop them).
    """
    outcome = yield
    report: pytest.CollectReport = outcome.get_result()
    if in_ci() and report.skipped and isinstance(collector, pytest.Module):
        _COLLECTION_SKIPS.append(f"{collector.nodeid} skipped at collection under CI=true ({_skip_reason(report)})")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """List the modules skipped at collection under ``CI=true``."""
    for line in _COLLECTION_SKIPS:
        terminalreporter.write_line(f"FAILED (CI) {line}", red=True)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A module skipped at collection under ``CI=true`` fails the session."""
    if _COLLECTION_SKIPS and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _golden_candidates() -> list[Path]:
    env = os.environ.get("FRONTALIZE_GOLDEN_DIR")
    found = [Path(env)] if env else []
    found.append(REPO_ROOT.parent / "shared" / "golden" / "liveportrait")
    found.append(REPO_ROOT / "shared" / "golden" / "liveportrait")
    return found


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    """Folder of the LivePortrait goldens; ``fill`` and ``golden_check`` become importable."""
    for candidate in _golden_candidates():
        if (candidate / "fill.py").is_file():
            if str(candidate) not in sys.path:
                sys.path.insert(0, str(candidate))
            return candidate
    message = "LivePortrait goldens not found (looked in: " + ", ".join(map(str, _golden_candidates())) + ")"
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
def network_guard() -> Iterator[NetworkGuard]:
    """The session's :class:`NetworkGuard` (to inspect ``attempts``)."""
    yield NETWORK_GUARD
