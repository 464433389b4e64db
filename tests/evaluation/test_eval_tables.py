"""Table rendering: Markdown cells, CSV (CI split in two columns), JSON."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from frontalize.evaluation.tables import Column, Table


def _table() -> Table:
    columns = [Column("arm", "Tree", "s"), Column("gain", "Gain", "+3"), Column("ci", "CI", "ci"),
               Column("rate", "Rate", "pct"), Column("p", "p", "e2"), Column("n", "N", "d"), Column("m", "Mean")]
    rows = [{"arm": "a|b", "gain": -0.0123, "ci": [-0.02, 0.001], "rate": 0.25, "p": 0.000123, "n": 7, "m": 0.5},
            {"arm": "c", "gain": None, "ci": [None, None], "rate": float("nan"), "p": None, "n": 0, "m": None}]
    return Table("t", "Title", columns, rows, ["a note"])


def test_markdown() -> None:
    text = _table().to_markdown()
    lines = text.splitlines()
    assert lines[0] == "### Title" and lines[2] == "| Tree | Gain | CI | Rate | p | N | Mean |"
    assert lines[4] == "| a\\|b | -0.012 | [-0.020, +0.001] | 25.0% | 1.23e-04 | 7 | 0.500 |"
    assert lines[5] == "| c | – | – | – | – | 0 | – |"
    assert "*a note*" in text
    assert Table("e", "Empty", [Column("x", "X")]).to_markdown().splitlines()[-1] == "| – |"


def test_csv_and_json(tmp_path: Path) -> None:
    files = _table().write(tmp_path)
    assert files == {"csv": "t.csv", "json": "t.json"}
    with (tmp_path / "t.csv").open() as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["arm", "gain", "ci_low", "ci_high", "rate", "p", "n", "m"]
    assert rows[1] == ["a|b", "-0.0123", "-0.02", "0.001", "0.25", "0.000123", "7", "0.5"]
    assert rows[2][:4] == ["c", "", "", ""]
    data = json.loads((tmp_path / "t.json").read_text())
    assert data["columns"][0] == "arm" and data["rows"][0]["ci"] == [-0.02, 0.001] and data["notes"] == ["a note"]
    assert data["rows"][1]["rate"] is None and "NaN" not in (tmp_path / "t.json").read_text()
