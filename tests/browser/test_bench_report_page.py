"""Smoke test of scripts/bench_report_page.py at a tiny size: the page it builds holds the synthetic rows, and the
measurement JSON has every figure (never asserts a timing)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import bench_report_page
import pytest

pytestmark = pytest.mark.slow


def test_synthetic_rows_are_shaped_like_a_study() -> None:
    rows = bench_report_page.synthetic_rows(400, 2)
    assert len(rows) == 400 and {r["arm"] for r in rows} == {"tree0", "tree1"}
    assert len({r["subject"] for r in rows}) == 24
    assert all((r["gain"] is None) == (r["pair_status"] != "paired") for r in rows)


def test_benchmark_runs_and_reports_every_figure(browser: Any, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    assert bench_report_page.main(["--rows", "400", "--loads", "2", "--sorts", "3", "--thumb-images", "4",
                                   "--eval-frames", "30", "--out", str(tmp_path / "page"), "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    page = (tmp_path / "page" / "report.html").read_text()
    data = json.loads(re.search(r'type="application/json">(.*?)</script>', page, re.S).group(1))  # type: ignore[union-attr]
    assert data["rows"]["n"] == result["rows"] == 400 and len(data["images"]["thumb"]) == 200 + 400 + 24
    assert len(set(data["images"]["thumb"])) == 7  # a few real thumbnails reused by every row
    samples = result["samples_ms"]
    assert [len(samples[k]) for k in ("first_rows_ms", "first_paint_ms", "sort_ms", "sort_script_ms", "filter_ms")] \
        == [2, 2, 6, 6, 6]
    assert all(v > 0 for key, values in samples.items() for v in values if key != "sort_script_ms")
    assert all(0 <= s <= t for s, t in zip(samples["sort_script_ms"], samples["sort_ms"]))
    assert result["median_ms"]["first_paint_ms"] >= result["median_ms"]["first_rows_ms"]
    assert result["environment"]["cpus"] >= 1 and "load_average" in result["environment"]
    assert result["eval_rows"] == 30 * 2 and result["thumbs_first_pass_ms_per_image"] > 0
    assert len(list((tmp_path / "page" / "thumb_bench" / "thumbs").glob("*/*.jpg"))) == 4
