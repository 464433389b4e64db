"""Fixtures of the report-page tests: headless Chromium (Debian's package, started through Selenium by
``scripts/headless_browser.py``) and one small REAL evaluation to open.

Without chromium, chromedriver or selenium the tests are skipped with the reason; under ``CI=true`` that is a
failure (``scripts/test.sh`` installs the browser first with ``scripts/install_browser.sh``).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
for folder in (REPO / "scripts", REPO / "tests" / "evaluation"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

import headless_browser  # noqa: E402


def _skip_or_fail(message: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message + " (CI=true: the browser tests must run; bash scripts/install_browser.sh)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """A headless Chromium WebDriver shared by the browser tests."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        _skip_or_fail("selenium is not installed (pip install -e .[dev])")
    if headless_browser.find_chromium() is None:
        _skip_or_fail("chromium / chromedriver not installed")
    driver = headless_browser.start_chromium()
    yield driver
    driver.quit()


@pytest.fixture(scope="session")
def sample_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """REPORT folder of ``evaluate.py --config configs/eval-offline.yaml`` (RetinaFace-mnet × dlib, real models) on
    a tiny generic dataset of real faces (tests/evaluation/eval_photos.py) with two output trees; two angled images
    are declared synthetic (posed_views.json)."""
    from eval_photos import face_crops, write_generic

    from frontalize.cli.evaluate import main

    root = tmp_path_factory.mktemp("browser_report")
    data, out, _ = write_generic(root, face_crops())
    views = [{"path": rel, "pose": {"pitch": 0.0, "yaw": 20.0, "roll": 0.0}} for rel in ("p1/a.jpg", "p4/a.jpg")]
    (data / "posed_views.json").write_text(json.dumps({"synthetic": True, "views": views}), encoding="utf-8")
    second = root / "copy"
    shutil.copytree(out, second, ignore=shutil.ignore_patterns("manifest.jsonl"))
    report = root / "report"
    code = main(["--config", str(REPO / "configs" / "eval-offline.yaml"), "--layout", "generic", "--data", str(data),
                 "--frontal-dir", str(out), "--frontal-dir", str(second), "--bootstrap-resamples", "50",
                 "--no-progress", "-q", "--cache-dir", str(root / "cache"), "-o", str(report)])
    assert code == 0
    return report
