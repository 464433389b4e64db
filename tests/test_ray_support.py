"""frontalize.ray_support: the local Ray it starts (usage statistics off, no process left after a SIGKILL of the
driver) and the install hint (the pin of the ``ray`` extra)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import tomllib
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from frontalize import ray_support
from frontalize.config.ray_config import RayConfig

REPO = Path(__file__).resolve().parents[1]


def test_install_hint_is_the_pin_of_the_ray_extra() -> None:
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert extras["ray"] == [ray_support.RAY_REQUIREMENT]
    assert ray_support.RAY_REQUIREMENT in extras["dev"]
    assert f'pip install "{ray_support.RAY_REQUIREMENT}"' in ray_support.INSTALL_HINT
    assert 'pip install ".[ray]"' in (REPO / "README.md").read_text()


class _FakeRay:
    """Just enough of ``ray`` for ray_session: records the options and the usage-stats variable at init."""

    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, Any], str | None]] = []
        self.shutdowns = 0
        context = SimpleNamespace(enable_progress_bars=True, raise_original_map_exception=False)
        self.data = SimpleNamespace(DataContext=SimpleNamespace(get_current=lambda: context))

    def is_initialized(self) -> bool:
        return False

    def init(self, **options: Any) -> None:
        self.calls.append((options, os.environ.get(ray_support.USAGE_STATS_ENV)))

    def shutdown(self) -> None:
        self.shutdowns += 1


def test_local_ray_starts_with_usage_statistics_off(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _FakeRay()
    monkeypatch.setattr(ray_support, "import_ray", lambda: fake)
    monkeypatch.setenv(ray_support.USAGE_STATS_ENV, "1")  # even a user's opt-in does not reach our local Ray
    with ray_support.ray_session(RayConfig(num_cpus=2)):
        pass
    (options, usage), = fake.calls
    assert usage == "0" and options["num_cpus"] == 2 and "address" not in options
    assert options["include_dashboard"] is False and fake.shutdowns == 1
    monkeypatch.delenv(ray_support.USAGE_STATS_ENV)
    with ray_support.ray_session(RayConfig(address="auto")):
        pass
    options, usage = fake.calls[1]
    assert options["address"] == "auto" and usage is None  # a joined cluster keeps its own setting


_DRIVER = """
import os, sys, time
sys.path.insert(0, {repo!r})
from frontalize.config.ray_config import RayConfig
from frontalize.ray_support import ray_session
with ray_session(RayConfig(num_cpus=1)) as ray:
    @ray.remote
    def plus_one(x):
        return x + 1
    assert ray.get(plus_one.remote(1)) == 2
    print("READY", flush=True)
    time.sleep(600)
"""


def _marked_processes(marker: str) -> dict[int, dict[str, str]]:
    """pid -> environment of every live process whose environment holds ``marker`` (Linux /proc)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "environ").read_bytes()
        except OSError:
            continue
        if marker.encode() in raw:
            pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
            found[int(entry.name)] = {k.decode(errors="replace"): v.decode(errors="replace") for k, v in pairs}
    return found


def _cmdline(pid: int) -> bytes:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes()
    except OSError:
        return b""


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/environ").is_file(), reason="needs Linux /proc")
def test_sigkilled_driver_leaves_no_ray_process_behind(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    marker = f"FRONTALIZE_TEST_RAY_DRIVER={uuid.uuid4().hex}"
    key, value = marker.split("=")
    env = {k: v for k, v in os.environ.items() if k != ray_support.USAGE_STATS_ENV} | {key: value}
    script = tmp_path / "driver.py"
    script.write_text(textwrap.dedent(_DRIVER.format(repo=str(REPO))))
    driver = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              env=env, text=True, cwd=tmp_path)
    try:
        assert driver.stdout is not None and driver.stdout.readline().strip() == "READY"
        started = _marked_processes(marker)
        # /proc/PID/environ is the environment a process was exec'd with: a child forked by the driver that has not
        # exec'd yet still shows the driver's own start-up environment (without the variable ray_session sets), so
        # only processes running another program than the driver count as Ray's
        driver_cmdline = _cmdline(driver.pid)
        helpers = {pid: env for pid, env in started.items() if pid != driver.pid and _cmdline(pid) != driver_cmdline}
        assert len(helpers) >= 3, f"expected the local Ray's processes, found {sorted(helpers)}"
        # Ray's Python processes retitle themselves ("ray::IDLE", "ray::DashboardAgent") by overwriting the memory
        # of their argv and environment, so their /proc/PID/environ is partly overwritten (seen: the agents without
        # the variable, at random, depending on the length of their original command line). The GCS, the raylet and
        # the dashboard head (which is what reports usage) keep theirs intact: those are checked.
        intact = {pid: env for pid, env in helpers.items() if not _cmdline(pid).startswith(b"ray::")}
        assert len(intact) >= 3, f"expected the GCS, raylet and dashboard, found {sorted(intact)}"
        unset = {pid: _cmdline(pid)[:80] for pid, env in intact.items() if env.get(ray_support.USAGE_STATS_ENV) != "0"}
        assert not unset, f"Ray processes started without {ray_support.USAGE_STATS_ENV}=0: {unset}"
        driver.send_signal(signal.SIGKILL)
        assert driver.wait(timeout=30) == -signal.SIGKILL
        # GCS, raylet and workers exit at once; Ray's two agents notice at once too but then spend about a minute
        # trying to report the raylet's death to the dead GCS before they exit (measured: 62 s on 2 cores)
        deadline = time.monotonic() + 150
        while _marked_processes(marker) and time.monotonic() < deadline:
            time.sleep(1.0)
        left = _marked_processes(marker)
        assert not left, f"Ray processes left {150} s after the driver's SIGKILL: {sorted(left)}"
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait(timeout=30)
