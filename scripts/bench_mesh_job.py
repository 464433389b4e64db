#!/usr/bin/env python
"""Cost of the mesh backend as a user runs it: ``inference.py`` on the sample data, per face and per step.

Runs, one after the other on the same inputs (``scripts/make_samples.py`` output: real faces of t1.jpg and the
astronaut plus the synthetic posed views), each in its own output folder:

* ``identity`` — crop/align only, poses by the offline 68-point estimator (the baseline arm);
* ``mesh`` — ``--frontalize mesh`` (landmarks + fit + render + the output's re-fit);
* ``mesh+guard`` — the identity guard with the mesh backend (K = alphas × symmetry candidates, default 4 × 2 = 8),
  scored by the offline detector + dlib recognizer.

For each: wall time of the whole command (start-up and model loading included), inputs per second, and the median
per-input milliseconds of every step from the manifest's ``timings_ms`` (``frontalize`` is the backend's step;
for the guard also its own render / pose / score split). Residual pose medians from the manifest (68 landmarks).
The 1-minute load average is recorded before and after each run (the numbers are only comparable on a quiet
machine).

Usage::

    python scripts/bench_mesh_job.py                    # builds the sample data in a temp folder
    python scripts/bench_mesh_job.py --data outputs/sample/data --out benchmarks --stem mesh_job_cpu
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_samples import build_samples  # scripts/ is not a package

from frontalize.cli.inference import main as inference_main
from frontalize.io.manifest import read_manifest

log = logging.getLogger("bench_mesh_job")

REPO_ROOT = Path(__file__).resolve().parents[1]
ARMS: dict[str, list[str]] = {
    "identity": [],
    "mesh": ["--frontalize", "mesh"],
    "mesh+guard": ["--frontalize", "mesh", "--set", "guard.enabled=true"],
}


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 2) if values else None


def summarise(out: Path, wall_s: float, load: tuple[float, float]) -> dict[str, Any]:
    """Per-arm numbers from the manifest of a finished run."""
    rows = read_manifest(out / "manifest.jsonl")
    ok = [row for row in rows if row["status"] == "ok"]
    steps = sorted({step for row in ok for step in row.get("timings_ms", {})})
    per_step = {step: _median([row["timings_ms"][step] for row in ok if step in row["timings_ms"]]) for step in steps}
    guard = {step: _median([row["guard"]["timings_ms"][step] for row in ok
                            if step in row.get("guard", {}).get("timings_ms", {})])
             for step in ("render", "stages", "pose", "score")}
    residual = {axis: _median([abs(row["output_pose"][axis] - (row.get("roll_offset", 0.0) if axis == "roll" else 0))
                               for row in ok if row.get("output_pose")])
                for axis in ("yaw", "pitch", "roll")}
    candidates = len(ok[0]["guard"]["candidates"]) if ok and "guard" in ok[0] else None
    statuses = {status: sum(row["status"] == status for row in rows) for status in sorted({r["status"] for r in rows})}
    return {"inputs": len(rows), "ok": len(ok), "statuses": statuses,
            "wall_s": round(wall_s, 2), "inputs_per_s": round(len(rows) / wall_s, 3),
            "median_step_ms": {step: value for step, value in per_step.items() if value is not None},
            "guard_candidates": candidates, "guard_step_ms": {k: v for k, v in guard.items() if v is not None},
            "median_abs_residual": residual, "load_1min_before_after": load}


def run_arm(name: str, data: Path, out: Path, extra: list[str]) -> dict[str, Any]:
    """One ``inference.py`` run; returns its summary."""
    argv = ["--config", str(REPO_ROOT / "configs" / "offline.yaml"), "--source_dir", str(data), "--list-file",
            str(data / "angled.txt"), "-o", str(out), "--no-progress", "-q", "--overwrite", *extra]
    before = os.getloadavg()[0]
    start, cpu_start = time.perf_counter(), time.process_time()
    code = inference_main(argv)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    summary = summarise(out, wall, (round(before, 2), round(os.getloadavg()[0], 2)))
    summary["cpu_s_per_input"] = round(cpu / max(summary["inputs"], 1), 3)  # all threads; less load-sensitive
    summary["exit_code"] = code
    summary["command"] = "python inference.py " + " ".join(argv)
    log.info("%s: %s", name, json.dumps(summary))
    return summary


def markdown(results: dict[str, dict[str, Any]]) -> str:
    """The results as a Markdown page (command, machine, one row per arm)."""
    lines = ["# Mesh backend: inference.py on the sample data", "",
             f"Command: `python scripts/bench_mesh_job.py` · {os.cpu_count()} CPUs · wall times include start-up "
             "and model loading; step times are medians per input from the manifests' `timings_ms`; the 1-minute "
             "load average is given per run (other jobs on the machine inflate every time).", "",
             "| arm | inputs | ok | wall s | inputs/s | CPU s/input | frontalize ms/input (median) | K | guard "
             "render / pose / score ms | residual \\|yaw\\| / \\|pitch\\| / \\|roll\\| | load before→after |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        guard = r["guard_step_ms"]
        split = " / ".join(str(guard.get(k, "–")) for k in ("render", "pose", "score")) if guard else "–"
        res = r["median_abs_residual"]
        lines.append(f"| {name} | {r['inputs']} | {r['ok']} | {r['wall_s']} | {r['inputs_per_s']} | "
                     f"{r['cpu_s_per_input']} | "
                     f"{r['median_step_ms'].get('frontalize')} | {r['guard_candidates'] or '–'} | {split} | "
                     f"{res['yaw']} / {res['pitch']} / {res['roll']} | {r['load_1min_before_after'][0]}→"
                     f"{r['load_1min_before_after'][1]} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, help="make_samples.py output to reuse (default: built in a temp folder)")
    parser.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS), help="runs to time")
    parser.add_argument("--out", type=Path, help="write <out>/<stem>.json and .md")
    parser.add_argument("--stem", default="mesh_job_cpu")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    with tempfile.TemporaryDirectory(prefix="bench_mesh_job_") as tmp:
        data = args.data or Path(tmp) / "data"
        if args.data is None:
            build_samples(data)
        results = {name: run_arm(name, data, Path(tmp) / "runs" / name.replace("+", "_"), ARMS[name])
                   for name in args.arms}
    table = markdown(results)
    sys.stdout.write(table)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / f"{args.stem}.json").write_text(json.dumps({"cpus": os.cpu_count(), "arms": results}, indent=1)
                                                    + "\n")
        (args.out / f"{args.stem}.md").write_text(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
