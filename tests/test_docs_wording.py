"""Docs and messages speak of the project only: no wording about the sessions, helpers or lent machines of its
development (README, docs/, benchmarks/*.md, and every string of the package and scripts)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FORBIDDEN = re.compile(
    r"\b(this|that|either|first|second|performance|development|later) sessions?\b"
    r"|\bsessions? (has|had|have) (one|a GPU)\b|\b(was|were|is|are|been|no GPU) lent\b|\blent to\b"
    r"|\bother helpers\b|\bhelpers' tests\b|\bdevice tool\b|\bcan_start_another\b|\bdevelopment (CPU|machine)\b",
    re.IGNORECASE,
)


def _documents() -> list[Path]:
    files = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), *sorted((REPO / "benchmarks").glob("*.md"))]
    files += sorted((REPO / "frontalize").rglob("*.py")) + sorted((REPO / "scripts").glob("*.py"))
    return [path for path in files if path.is_file()]


@pytest.mark.parametrize("path", _documents(), ids=lambda p: str(p.relative_to(REPO)))
def test_no_development_process_wording(path: Path) -> None:
    hits = [f"{path.relative_to(REPO)}:{number}: {line.strip()}"
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
            if FORBIDDEN.search(line)]
    assert not hits, "\n".join(hits)


@pytest.mark.parametrize("text", ["not measured (no GPU lent to this session)", "other helpers' tests",
                                  "State after the second performance session", "the shared 2-core development CPU",
                                  "as soon as a session has one"])
def test_the_pattern_catches_the_old_wording(text: str) -> None:
    assert FORBIDDEN.search(text)


@pytest.mark.parametrize("text", ["ray_session(cfg)", "onnxruntime.InferenceSession", "GFPGAN's face helper",
                                  "a rembg session", "shares the session", "## Development"])
def test_the_pattern_leaves_project_words_alone(text: str) -> None:
    assert not FORBIDDEN.search(text)
