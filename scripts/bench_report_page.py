#!/usr/bin/env python
"""Benchmark of report.html in headless Chromium: time to the first rendered rows and sort time at 32,000 rows.

The page is made by the project's own code (``html_report.build_payload`` + ``render_page``) from synthetic
per-image rows shaped like a BIWI study — ``--rows`` rows = ``--trees`` output trees × ``--combinations`` ×
the angled frames of 24 subjects, every image its own entry (so the image table is as large as a real one) — and a few
real face thumbnails (cut from the photos that insightface and scikit-image ship) reused by all rows.

Measured in the page with ``performance.mark`` (see ``assets/report.js``), over ``--loads`` fresh navigations:

* ``first_rows_ms``: navigation start → first page of rows in the DOM; ``first_paint_ms``: → after the frame that
  paints them (the figure the target applies to: < 2 s); ``data_parsed_ms``: → JSON parsed;
* ``sort_ms``: click on a column header → rows re-rendered and painted (``--sorts`` clicks per load, cycling
  gain, cos(F,GT), cos(A,GT), |yaw|, pitch and both directions; target < 300 ms), of which ``sort_script_ms`` is
  the click handler itself (sort + new rows in the DOM; the rest is style, layout, paint and the wait for the
  frame); ``filter_ms`` likewise for a subject filter.

Medians (and max) are printed with the machine's load. Usage::

    python scripts/bench_report_page.py                   # 32,000 rows, 7 loads × 10 sorts
    python scripts/bench_report_page.py --rows 128000 --combinations 4 --json bench.json   # BIWI, seed config
    python scripts/bench_report_page.py --thumb-images 400 --eval-frames 16000 --combinations 4  # + evaluation side
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
for folder in (REPO, REPO / "scripts"):
    if str(folder) not in sys.path:  # the script runs from a checkout
        sys.path.insert(0, str(folder))

from headless_browser import find_chromium, start_chromium, wait_ready  # noqa: E402

from frontalize.evaluation.html_report import PageMeta, build_payload, markdown_to_html, render_page  # noqa: E402
from frontalize.evaluation.per_image import PER_IMAGE_COLUMNS  # noqa: E402
from frontalize.evaluation.thumbs import ThumbRequest, write_thumbnails  # noqa: E402

log = logging.getLogger("bench_report_page")
SORT_KEYS = ("gain", "sim_frontal_gt", "sim_angle_gt", "abs_yaw", "pitch")
YAW_BINS = ["[0, 15)", "[15, 30)", "[30, 45)", "[45, 60)", "[60, 75)", ">= 75"]
PITCH_BINS = ["< -45", "[-45, -30)", "[-30, -15)", "[-15, 0)", "[0, 15)", "[15, 30)", "[30, 45)", ">= 45"]


def _sample_faces(folder: Path) -> list[Path]:
    """A few real face photos written as PNG (the sources of the reused thumbnails)."""
    import cv2
    import insightface
    from skimage import data

    group = cv2.imread(str(Path(insightface.__file__).parent / "data" / "images" / "t1.jpg"))
    crops = [group[:, i * group.shape[1] // 6:(i + 1) * group.shape[1] // 6] for i in range(6)]
    crops.append(cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, crop in enumerate(crops):
        path = folder / f"face{index}.png"
        cv2.imwrite(str(path), crop)
        paths.append(path)
    return paths


def _bin(value: float, edges: list[float], labels: list[str]) -> str:
    index = sum(value >= edge for edge in edges)
    return labels[index]


COMBINATIONS = ("retinaface_r50+arcface_r100", "scrfd_10g+arcface_r100", "retinaface_r50+arcface_r50",
                "scrfd_10g+arcface_r50")


def synthetic_rows(n_rows: int, n_trees: int, n_combinations: int = 1, seed: int = 0) -> list[dict[str, Any]]:
    """``n_rows`` per-image rows: trees × combinations × n_rows / (trees × combinations) frames of 24 subjects."""
    rng = random.Random(seed)
    frames = n_rows // (n_trees * n_combinations)
    base = []
    for index in range(frames):
        subject = f"{index % 24 + 1:02d}"
        rel = f"{subject}/frame_{index:05d}_rgb.png"
        yaw, pitch = rng.uniform(-80, 80), rng.uniform(-50, 50)
        found = rng.random() > 0.03
        base.append((subject, rel, yaw, pitch, found, rng.gauss(0.55, 0.12)))
    rows = []
    for tree, combination in ((t, c) for t in range(n_trees) for c in COMBINATIONS[:n_combinations]):
        for subject, rel, yaw, pitch, found, angle in base:
            frontal_found = rng.random() > 0.04
            row: dict[str, Any] = dict.fromkeys(PER_IMAGE_COLUMNS)
            frontal = angle + rng.gauss(-0.05 * (tree + 1), 0.08) if frontal_found else None
            row.update(
                arm=f"tree{tree}", combination=combination, subject=subject, rel=rel,
                pitch=round(pitch, 2), yaw=round(yaw, 2), roll=round(rng.uniform(-10, 10), 2),
                pose_source="annotation", yaw_bin=_bin(abs(yaw), [15, 30, 45, 60, 75], YAW_BINS),
                pitch_bin=_bin(pitch, [-45, -30, -15, 0, 15, 30, 45], PITCH_BINS),
                sim_angle_gt=round(angle, 6) if found else None,
                sim_frontal_gt=None if frontal is None else round(frontal, 6),
                gain=round(frontal - angle, 6) if found and frontal is not None else None,
                pair_status="paired" if found and frontal_found else ("angle_only" if found else
                                                                       "frontal_only" if frontal_found else "neither"),
                angle_detection="found" if found else "no_face",
                frontal_detection="found" if frontal_found else "no_face", inference_status="ok",
                residual_pitch=round(rng.gauss(0, 3), 2), residual_yaw=round(rng.gauss(0, 4), 2),
                residual_roll=round(rng.gauss(0, 1), 2),
                angle_path=f"/data/biwi/hpdb/{rel}", frontal_path=f"/out/tree{tree}/{rel}",
                gt_path=f"/data/biwi/gt/{subject}.png")
            rows.append(row)
    return rows


def build_page(out: Path, n_rows: int, n_trees: int, n_combinations: int = 1) -> Path:
    """Write ``out/report.html`` (+ the reused thumbnails) for ``n_rows`` synthetic rows; returns its path."""
    faces = _sample_faces(out / "faces")
    thumbs, _ = write_thumbnails({str(p): ThumbRequest(str(p), f"bench-{p.name}") for p in faces}, out, size=96)
    real = [thumbs[str(p)] for p in faces]
    rows = synthetic_rows(n_rows, n_trees, n_combinations)
    paths = dict.fromkeys(r[c] for r in rows for c in ("angle_path", "frontal_path", "gt_path"))
    thumb_of = {path: real[index % len(real)] for index, path in enumerate(paths)}
    meta = PageMeta("Benchmark report", [f"tree{t}" for t in range(n_trees)], list(COMBINATIONS[:n_combinations]),
                    YAW_BINS, PITCH_BINS)
    table = "| a | b | c |\n|---|---|---|\n" + "".join(f"| {i} | {i * 2} | {i * 3} |\n" for i in range(20))
    markdown = "# Identity-preservation report\n\n## Tables\n\n" + "\n".join(
        f"### Table {t}\n\n{table}" for t in range(1, 7))
    page = out / "report.html"
    started = time.perf_counter()
    page.write_text(render_page(build_payload(rows, thumb_of, out, meta), markdown_to_html(markdown)),
                    encoding="utf-8")
    log.info("payload + page written in %.2f s", time.perf_counter() - started)
    return page


def thumbnail_pass(out: Path, count: int, workers: int | None) -> dict[str, float]:
    """Seconds per image of :func:`write_thumbnails` on ``count`` BIWI-sized frames (640×480 PNG, a face box each):
    the first pass (decode + cut + encode + write) and a rerun (every thumbnail reused)."""
    import cv2
    import numpy as np

    faces = [cv2.imread(str(p)) for p in sorted((out / "faces").glob("*.png"))]
    rng = np.random.default_rng(0)
    requests = {}
    for index in range(count):
        frame = np.full((480, 640, 3), 90, np.uint8)
        face = cv2.resize(faces[index % len(faces)], (160, 200))
        x, y = int(rng.integers(0, 480)), int(rng.integers(0, 280))
        frame[y:y + 200, x:x + 160] = face
        path = out / "frames" / f"frame_{index:05d}_rgb.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), frame)
        requests[str(path)] = ThumbRequest(str(path), f"frame-{index}", (x + 20.0, y + 30.0, x + 140.0, y + 180.0))
    timings = {}
    for label in ("first_pass", "rerun"):
        started = time.perf_counter()
        write_thumbnails(requests, out / "thumb_bench", size=96, workers=workers)
        timings[f"thumbs_{label}_ms_per_image"] = round((time.perf_counter() - started) * 1000 / count, 3)
    return timings


def evaluation_side(frames: int, trees: int, combinations: int) -> dict[str, float]:
    """Seconds the evaluation spends on the per-image outputs (no thumbnails): rows from an in-memory run of
    ``frames`` angled images × ``trees`` × ``combinations`` (every face found, random 128-D embeddings), then
    per_image.csv + .jsonl text, then the page's payload + HTML text."""
    import numpy as np

    from frontalize.config.evaluation import CombinationConfig, EvalConfig
    from frontalize.datasets.base import Dataset, GroundTruth, HeadPose, ImageRef, Record
    from frontalize.evaluation.cache import Detection
    from frontalize.evaluation.embed import EmbeddingStore
    from frontalize.evaluation.pairing import Gallery
    from frontalize.evaluation.per_image import build_rows, to_csv, to_jsonl
    from frontalize.evaluation.results import CombinationResult, EvaluationResults
    from frontalize.evaluation.trees import FrontalArm

    rng = np.random.default_rng(0)
    records = [Record(f"{i % 24:02d}", ImageRef(Path(f"/d/{i % 24:02d}/f{i}.png"), f"{i % 24:02d}/f{i}.png"),
                      HeadPose(float(rng.uniform(-40, 40)), float(rng.uniform(-80, 80)), 0.0)) for i in range(frames)]
    gts = {f"{s:02d}": GroundTruth(f"{s:02d}", ImageRef(Path(f"/d/gt/{s:02d}.png"), f"gt/{s:02d}.png"))
           for s in range(24)}
    dataset = Dataset("biwi", Path("/d"), tuple(records), gts, "most frontal frame", "annotated")
    combos = tuple(CombinationConfig("retinaface_mnet", "dlib_resnet", f"combo{k}") for k in range(combinations))
    arms = [FrontalArm(f"tree{a}", Path(f"/o{a}"), "", {r.image.rel: Path(f"/o{a}/{r.image.rel}") for r in records})
            for a in range(trees)]
    store = EmbeddingStore()
    paths = [r.image.path for r in records] + [g.image.path for g in gts.values()] + \
        [p for arm in arms for p in arm.outputs.values()]
    for index, path in enumerate(paths):
        store.image_of[os.path.abspath(path)] = f"h{index}"
        store.detections[(f"h{index}", "retinaface_mnet")] = Detection("face", "plain", 1, 0.9, np.zeros(4),
                                                                       np.zeros((5, 2)))
        vector = rng.standard_normal(128).astype(np.float32)
        store.embeddings[(f"h{index}", "retinaface_mnet", "dlib_resnet")] = vector / np.linalg.norm(vector)
    subjects = sorted(gts)
    gallery = Gallery(np.asarray(subjects, dtype=object), np.stack(
        [store.embeddings[(store.image_of[str(gts[s].image.path)], "retinaface_mnet", "dlib_resnet")]
         for s in subjects]), {}, ())
    results = EvaluationResults(EvalConfig(combinations=combos), dataset, arms,
                                [CombinationResult(c, gallery, {}, []) for c in combos], store, "annotated")
    started = time.perf_counter()
    rows = build_rows(results)
    built = time.perf_counter()
    to_csv(rows, PER_IMAGE_COLUMNS), to_jsonl(rows, PER_IMAGE_COLUMNS)
    written = time.perf_counter()
    meta = PageMeta("x", [a.name for a in arms], [c.label for c in combos], YAW_BINS, PITCH_BINS)
    render_page(build_payload(rows, {}, Path("/r"), meta), "")
    return {"eval_rows": len(rows), "eval_build_rows_s": round(built - started, 2),
            "eval_csv_jsonl_s": round(written - built, 2), "eval_page_s": round(time.perf_counter() - written, 2)}


_CLICK = """
const done = arguments[arguments.length - 1];
const selector = arguments[0];
const t0 = performance.now();
document.querySelector(selector).click();
const script = performance.now() - t0;
requestAnimationFrame(() => setTimeout(() => done([performance.now() - t0, script]), 0));
"""
_FILTER = """
const done = arguments[arguments.length - 1];
const select = document.getElementById('filter-subject');
select.value = arguments[0];
const t0 = performance.now();
select.dispatchEvent(new Event('change'));
requestAnimationFrame(() => setTimeout(() => done(performance.now() - t0), 0));
"""
_MARKS = ("report:data-parsed", "report:first-rows", "report:first-paint")


def measure(page: Path, loads: int, sorts: int) -> dict[str, list[float]]:
    """Timings in milliseconds over ``loads`` navigations (see module docstring)."""
    driver = start_chromium()
    timings: dict[str, list[float]] = {"data_parsed_ms": [], "first_rows_ms": [], "first_paint_ms": [],
                                       "get_wall_ms": [], "sort_ms": [], "sort_script_ms": [], "filter_ms": []}
    try:
        for load in range(loads):
            start = time.perf_counter()
            driver.get(page.as_uri() + f"?load={load}")
            wait_ready(driver, timeout=120)
            timings["get_wall_ms"].append((time.perf_counter() - start) * 1000)
            marks = driver.execute_script(
                "return arguments[0].map(n => performance.getEntriesByName(n)[0].startTime)", list(_MARKS))
            for name, value in zip(("data_parsed_ms", "first_rows_ms", "first_paint_ms"), marks):
                timings[name].append(float(value))
            for index in range(sorts):
                key = SORT_KEYS[index % len(SORT_KEYS)]
                total, script = driver.execute_async_script(_CLICK, f"th[data-sort='{key}']")
                timings["sort_ms"].append(float(total))
                timings["sort_script_ms"].append(float(script))
            for value in ("3", "7", ""):
                timings["filter_ms"].append(float(driver.execute_async_script(_FILTER, value)))
            assert driver.execute_script("return document.querySelectorAll('#rows-body tr[data-row]').length") > 0
    finally:
        driver.quit()
    return timings


def _environment() -> dict[str, Any]:
    found = find_chromium()
    version = subprocess.run([found[0], "--version"], capture_output=True, text=True, check=False).stdout.strip() \
        if found else "?"
    return {"chromium": version, "cpus": os.cpu_count(), "machine": platform.machine(),
            "load_average": [round(v, 2) for v in os.getloadavg()]}


def main(argv: list[str] | None = None) -> int:
    """Build the page, measure it, print and optionally save the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=32_000, help="per-image rows (default 32000)")
    parser.add_argument("--trees", type=int, default=2, help="output trees (default 2)")
    parser.add_argument("--combinations", type=int, default=1, choices=range(1, 5),
                        help="detector × recognizer combinations (default 1; the seed config has 4)")
    parser.add_argument("--loads", type=int, default=7, help="page loads (default 7)")
    parser.add_argument("--sorts", type=int, default=10, help="sort clicks per load (default 10)")
    parser.add_argument("--thumb-images", type=int, default=0, metavar="N",
                        help="also time the thumbnail pass on N 640×480 frames (default 0 = skip)")
    parser.add_argument("--eval-frames", type=int, default=0, metavar="N",
                        help="also time the evaluation's per-image outputs for N frames × trees × combinations")
    parser.add_argument("--out", type=Path, help="folder for the page (default: a temporary folder)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    out = args.out or Path(tempfile.mkdtemp(prefix="bench-report-"))
    started = time.perf_counter()
    page = build_page(out, args.rows, args.trees, args.combinations)
    build_s = time.perf_counter() - started
    before = _environment()
    timings = measure(page, args.loads, args.sorts)
    thumbs = thumbnail_pass(out, args.thumb_images, None) if args.thumb_images else {}
    if args.eval_frames:
        thumbs.update(evaluation_side(args.eval_frames, args.trees, args.combinations))
    result: dict[str, Any] = {
        "rows": args.rows, "trees": args.trees, "combinations": args.combinations, "loads": args.loads,
        "sorts_per_load": args.sorts,
        "page_bytes": page.stat().st_size, "build_s": round(build_s, 2), "environment": before,
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
        "median_ms": {k: round(statistics.median(v), 1) for k, v in timings.items()},
        "max_ms": {k: round(max(v), 1) for k, v in timings.items()}, "samples_ms": timings, **thumbs,
    }
    log.info("report.html: %d rows, %.1f MB, built in %.1f s (%s)", args.rows, result["page_bytes"] / 1e6, build_s,
             page)
    for key in timings:
        log.info("%-15s median %7.1f ms   max %7.1f ms   (n=%d)", key, result["median_ms"][key],
                 result["max_ms"][key], len(timings[key]))
    for key, value in thumbs.items():
        log.info("%s: %s", key, value)
    log.info("machine: %s; load average before %s, after %s", before, before["load_average"],
             result["load_average_after"])
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
