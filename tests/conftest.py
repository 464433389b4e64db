"""Shared pytest fixtures.

The LivePortrait goldens live in ``../shared/golden/liveportrait`` beside the checkout (or wherever
``$FRONTALIZE_GOLDEN_DIR`` points). They are never copied into the project. With ``CI=true`` a missing
golden folder is a failure; elsewhere the tests that need it are skipped with a reason.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


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
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)
