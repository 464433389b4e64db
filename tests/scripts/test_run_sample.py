"""The main job (``scripts/run_sample.sh``, README command 1) end to end, offline.

Runs the script as a user would, minus the environment set-up (``--no-setup``: the test's own interpreter is put
first on PATH): sample data → identity baseline + geometric backend → offline evaluation → report. Checks that
nothing needs a download, that the report has both arms, and that the synthetic posed views are labelled.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_offline_main_job_ends_with_a_report_of_both_arms(tmp_path: Path) -> None:
    out = tmp_path / "sample"
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
               HF_HUB_OFFLINE="1", FRONTALIZE_WEIGHTS=str(tmp_path / "no-weights"),  # an empty weights root
               FRONTALIZE_CACHE=str(tmp_path / "cache"))
    done = subprocess.run(["bash", str(REPO / "scripts" / "run_sample.sh"), "--no-setup", str(out)], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert not (tmp_path / "no-weights").exists() or not any((tmp_path / "no-weights").iterdir())  # nothing fetched

    summary = json.loads((out / "report" / "summary.json").read_text())
    assert summary["dataset"]["layout"] == "generic"
    assert set(summary["results"]) == {"identity", "mesh"}, summary["results"].keys()
    report = (out / "report" / "report.md").read_text()
    assert "| identity |" in report and "| mesh |" in report
    assert "synthetic" in report.lower() and "Dataset notes" in report
    assert (out / "report" / "report.html").is_file()

    with (out / "report" / "per_image.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    angled = (out / "data" / "angled.txt").read_text().split()
    assert len(rows) == 2 * len(angled)  # one row per (tree, combination, angled image); one combination
    assert {row["arm"] for row in rows} == {"identity", "mesh"}
    posed = {row["rel"] for row in rows if row["synthetic"] == "true"}
    assert posed and all("/yaw" in name for name in posed)
    mesh_rows = [json.loads(line) for line in (out / "frontal" / "mesh" / "manifest.jsonl").read_text().splitlines()]
    ok = [row for row in mesh_rows if row["status"] == "ok"]
    assert len(ok) >= 0.9 * len(angled)
    assert all(isinstance(row["output_pose"][angle], float) for row in ok for angle in ("pitch", "yaw", "roll"))
