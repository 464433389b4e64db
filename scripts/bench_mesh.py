#!/usr/bin/env python
"""Benchmark of the geometric (3D-model) frontalizer: residual pose, faces found, pose-estimator accuracy, speed.

Inputs are real photographs and synthetic posed views: the faces of insightface's ``t1.jpg`` and scikit-image's
astronaut, and the posed views ``scripts/make_samples.py`` renders at known yaw (±15°, ±30°, ±45°). Each input is
detected with the offline RetinaFace-MobileNet, cropped like the pipeline (LivePortrait's 5-point crop, rotated
upright, 512 px) and frontalized (frontal target, soft symmetry, the crop's roll offset for an upright result).
On the outputs:

* residual pose from re-detected 68 landmarks (median |yaw|, |pitch|, |roll|; roll after undoing the crop's offset,
  i.e. as pasted back), over the inputs whose estimated |yaw| ≤ 45° and over all;
* the RetinaFace 5-keypoint yaw proxy (``frontalize.evaluation.posecues.keypoint_pose``) as a second opinion;
* faces found by the offline detector in the outputs (%);
* the pose estimator's error on the posed views of known pose (median |yaw error|, per |yaw|);
* the frontalization step's speed (landmarks + fit + render; detection excluded), 1 and 2 worker threads;
* one row per input.

Usage::

    python scripts/bench_mesh.py                         # builds the sample data in a temp folder
    python scripts/bench_mesh.py --data outputs/sample/data --out benchmarks --stem mesh_cpu

Writes ``<out>/<stem>.json`` and ``<out>/<stem>.md`` and prints the summary. Numbers, not a test: the load average is
recorded next to the timings (rerun on a quiet machine for speed).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import LoadMonitor, environment  # scripts/ is not a package
from make_samples import _sample_photos, build_samples

from frontalize.errors import InputError
from frontalize.evaluation.posecues import keypoint_pose
from frontalize.faces.headpose import fit_head_pose
from frontalize.faces.meanshape68 import MIRROR_68
from frontalize.faces.registry import build_detector, build_landmarker68
from frontalize.faces.types import Face, FaceDetector
from frontalize.geometric import GeometricFrontalizer, MeshTarget, transform_face
from frontalize.liveportrait.crop import crop_face

log = logging.getLogger("bench_mesh")

TARGETS = {"residual_abs_yaw": 3.0, "residual_abs_pitch": 5.0, "residual_abs_roll": 2.0, "faces_found_pct": 99.0,
           "estimator_abs_yaw_error": 3.0, "faces_per_s_2_threads": 15.0}


@dataclass
class Case:
    """One input face: where it came from, its pipeline-style crop, its face in crop pixels, the known pose."""

    name: str
    kind: str  # "photo" or "posed"
    crop: np.ndarray
    face: Face
    roll_offset: float
    known: dict[str, float] | None = None
    view: np.ndarray | None = None  # the posed view itself (the estimator is measured on it)
    exact: np.ndarray | None = None  # (68, 2) exact landmarks of the posed view (FaceFit.target_landmarks)
    px_per_iod: float | None = None


def best_face(detector: FaceDetector, image: np.ndarray) -> Face | None:
    """The most confident detection (a loose false box can be larger than the face)."""
    found = detector.detect(image)
    return max(found, key=lambda face: face.score) if found else None


def _case(name: str, kind: str, image: np.ndarray, face: Face, **extra: Any) -> Case:
    crop = crop_face(image, face.kps)  # exactly the pipeline's crop of a 5-point detection
    return Case(name, kind, crop.image, transform_face(face, crop.M_o2c), crop.roll_offset, **extra)


def load_cases(detector: FaceDetector, data: Path) -> list[Case]:
    """The photographs' faces and the posed views listed in ``data/posed_views.json``."""
    cases = []
    for photo_name, image in _sample_photos():
        for index, face in enumerate(sorted(detector.detect(image), key=lambda f: float(f.box[0]))):
            cases.append(_case(f"{photo_name}_{index:02d}", "photo", image, face))
    listing = json.loads((data / "posed_views.json").read_text())
    for view in listing["views"]:
        image = cv2.cvtColor(cv2.imread(str(data / view["path"])), cv2.COLOR_BGR2RGB)
        face = best_face(detector, image)
        if face is None:
            log.warning("%s: no face detected in the posed view", view["path"])
            continue
        exact = np.asarray(view["landmarks68"], dtype=np.float64) if "landmarks68" in view else None
        cases.append(_case(view["path"], "posed", image, face, known=view["pose"], view=image, exact=exact,
                           px_per_iod=view.get("px_per_iod")))
    return cases


def frontalize(engine: GeometricFrontalizer, case: Case) -> tuple[np.ndarray | None, dict[str, Any]]:
    """Frontal render of one case and its source pose (or the reason it could not be fitted)."""
    try:
        fit = engine.fit(case.crop, case.face, roll_offset=case.roll_offset)
    except InputError as error:
        return None, {"status": error.status if hasattr(error, "status") else "error", "reason": str(error)}
    return engine.render(fit, [MeshTarget()])[0], {"status": "ok", "source_pose": fit.source_pose}


def measure_output(detector: FaceDetector, landmarker: Any, image: np.ndarray, roll_offset: float) -> dict[str, Any]:
    """Faces found, residual pose from 68 landmarks (roll as pasted back) and the 5-keypoint yaw proxy."""
    face = best_face(detector, image)
    if face is None:
        return {"found": False}
    row: dict[str, Any] = {"found": True, "score": round(face.score, 3),
                           "proxy_yaw": round(keypoint_pose(face.kps)[1], 2)}
    try:
        pitch, yaw, roll = fit_head_pose(landmarker.landmarks(image, face)).angles
    except InputError as error:
        row["residual_error"] = str(error)
        return row
    row["residual"] = {"pitch": round(pitch, 2), "yaw": round(yaw, 2), "roll": round(roll - roll_offset, 2)}
    return row


LANDMARK_GROUPS = {"far_contour": (0, 1, 2, 3, 4), "near_contour": (9, 10, 11, 12, 13, 14, 15, 16),
                   "far_brow_eye": (*range(17, 22), *range(36, 42)), "near_brow_eye": (*range(22, 27), *range(42, 48)),
                   "nose": tuple(range(27, 36)), "mouth": tuple(range(48, 68))}
"""Landmark groups of a view turned to image left (yaw > 0; mirrored through MIRROR_68 for yaw < 0). The far
contour is compared with the model's silhouette (FaceFit.target_landmarks); its lower part (5–7) is hidden and
left out."""


def landmark_shifts(points: np.ndarray, exact: np.ndarray, yaw: float, px_per_iod: float) -> dict[str, float]:
    """Mean horizontal landmark error per group, in IOD, positive towards the side the face turns to.

    A far contour or far eye shifted that way (outwards) and a near contour shifted that way (inwards) read as less
    turn than the view has.
    """
    turn = -1.0 if yaw > 0 else 1.0  # yaw > 0 turns the face towards image left (−x)
    error = turn * (np.asarray(points, dtype=np.float64)[:, 0] - exact[:, 0]) / px_per_iod
    mirror = list(MIRROR_68)
    return {name: round(float(np.mean([error[i if yaw > 0 else mirror[i]] for i in group])), 3)
            for name, group in LANDMARK_GROUPS.items()}


def estimator_error(detector: FaceDetector, landmarker: Any, case: Case) -> dict[str, Any] | None:
    """The estimator on a posed view vs its known pose (None for photographs); with the view's exact landmarks, also
    the estimator on those and the landmarker's error per group."""
    if case.view is None or case.known is None:
        return None
    result: dict[str, Any] = {}
    if case.exact is not None:
        result["exact_yaw_error"] = round(fit_head_pose(case.exact).angles[1] - case.known["yaw"], 2)
    face = best_face(detector, case.view)
    if face is None:
        return {**result, "error": "no face"}
    try:
        points = landmarker.landmarks(case.view, face)
        pitch, yaw, roll = fit_head_pose(points).angles
    except InputError as error:
        return {**result, "error": str(error)}
    if case.exact is not None and case.px_per_iod:
        result["landmark_shift"] = landmark_shifts(points, case.exact, case.known["yaw"], case.px_per_iod)
    return {**result, "estimate": {"pitch": round(pitch, 2), "yaw": round(yaw, 2), "roll": round(roll, 2)},
            "yaw_error": round(yaw - case.known["yaw"], 2), "pitch_error": round(pitch - case.known["pitch"], 2),
            "roll_error": round(roll - case.known["roll"], 2)}


def speed(engine: GeometricFrontalizer, cases: Sequence[Case], threads: int, repeats: int) -> dict[str, Any]:
    """Faces per second of the frontalization step (landmarks + fit + render; detection excluded)."""
    work = [case for case in cases for _ in range(repeats)]

    def one(case: Case) -> None:
        try:
            engine.frontalize(case.crop, case.face, roll_offset=case.roll_offset)
        except InputError:
            pass

    one(cases[0])  # warm-up (surface and spline operator are built once per process)
    start, cpu = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(one, work))
    wall, cpu_used = time.perf_counter() - start, time.process_time() - cpu
    return {"threads": threads, "faces": len(work), "seconds": round(wall, 2),
            "faces_per_s": round(len(work) / wall, 2), "cpu_seconds": round(cpu_used, 2)}


def _median_abs(values: Sequence[float]) -> float | None:
    return round(float(statistics.median(abs(v) for v in values)), 2) if values else None


def summarise(rows: Sequence[dict[str, Any]], speeds: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The headline numbers of the rows."""
    done = [row for row in rows if row.get("output")]
    within = [row for row in done if abs(row["source_pose"]["yaw"]) <= 45.0]
    summary: dict[str, Any] = {"inputs": len(rows), "frontalized": len(done), "within_45": len(within)}
    photos = [row for row in done if row["kind"] == "photo"]
    for label, subset in (("", within), ("_all", done), ("_photos", photos)):
        residual = [row["output"]["residual"] for row in subset if "residual" in row["output"]]
        for angle in ("yaw", "pitch", "roll"):
            summary[f"residual_abs_{angle}{label}"] = _median_abs([r[angle] for r in residual])
        summary[f"proxy_abs_yaw{label}"] = _median_abs([row["output"]["proxy_yaw"] for row in subset
                                                        if "proxy_yaw" in row["output"]])
    summary["faces_found_pct"] = round(100.0 * sum(row["output"]["found"] for row in done) / max(len(done), 1), 1)
    posed = [row["estimator"] for row in rows if row.get("estimator") and "yaw_error" in row["estimator"]]
    summary["estimator_abs_yaw_error"] = _median_abs([e["yaw_error"] for e in posed])
    summary["estimator_abs_pitch_error"] = _median_abs([e["pitch_error"] for e in posed])
    for magnitude in (15, 30, 45):
        errors = [row["estimator"]["yaw_error"] for row in rows if row.get("estimator")
                  and "yaw_error" in row["estimator"] and abs(row["known"]["yaw"]) == magnitude]
        summary[f"estimator_abs_yaw_error_{magnitude}"] = _median_abs(errors)
    exact = [row["estimator"]["exact_yaw_error"] for row in rows if row.get("estimator")
             and "exact_yaw_error" in row["estimator"]]
    summary["estimator_exact_abs_yaw_error"] = _median_abs(exact)
    for result in speeds:
        summary[f"faces_per_s_{result['threads']}_thread{'s' if result['threads'] > 1 else ''}"] = result["faces_per_s"]
    return summary


def landmark_table(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """Median per-group landmark shift (IOD, towards the turn) and median |yaw error| on exact points, per |yaw|."""
    table: dict[str, dict[str, float | None]] = {}
    for magnitude in (15, 30, 45):
        found = [row["estimator"] for row in rows if row.get("estimator") and abs(row["known"]["yaw"]) == magnitude]
        shifts = [e["landmark_shift"] for e in found if "landmark_shift" in e]
        entry: dict[str, float | None] = {
            name: round(float(statistics.median(s[name] for s in shifts)), 3) if shifts else None
            for name in LANDMARK_GROUPS}
        entry["exact_abs_yaw_error"] = _median_abs([e["exact_yaw_error"] for e in found if "exact_yaw_error" in e])
        entry["abs_yaw_error"] = _median_abs([e["yaw_error"] for e in found if "yaw_error" in e])
        table[f"yaw_{magnitude}"] = entry
    return table


def _landmark_lines(table: dict[str, dict[str, float | None]]) -> list[str]:
    names = list(LANDMARK_GROUPS)
    lines = ["", "Where the estimator's error comes from, per |yaw| of the posed views (medians): the estimator on the "
             "views' exact landmarks (`landmarks68` of posed_views.json: the face's 3D landmarks projected at the "
             "stated pose, far upper contour on the model silhouette) and on dlib's; dlib's horizontal shift from the "
             "exact points per group, IOD, positive towards the side the face turns to (far contour/eye outwards, "
             "near contour inwards: both read as less turn).", "",
             "| ±yaw | yaw error, exact points | yaw error, dlib's points | " + " | ".join(names) + " |",
             "|---|---|---|" + "---|" * len(names)]
    for key, entry in table.items():
        lines.append(f"| ±{key[4:]} | {entry['exact_abs_yaw_error']} | {entry['abs_yaw_error']} | "
                     + " | ".join(f"{entry[name]:+.3f}" if entry[name] is not None else "–" for name in names) + " |")
    return lines


def markdown(results: dict[str, Any]) -> str:
    """The Markdown report: targets, settings, per-input rows."""
    summary, env = results["summary"], results["environment"]
    lines = ["# Geometric frontalizer benchmark", "",
             f"Command: `{results['command']}`  ", f"Machine: {env['cpu_model']}, {env['cpu_count']} CPUs; "
             "1-minute load average per section: " + ", ".join(
                 f"{s['section']} {s['load_before']}→{s['load_after']}" for s in results["load"]["samples"]), "",
             "Residual pose: on the frontalized outputs, 68 landmarks re-detected (roll as pasted back), inputs with "
             "estimated |yaw| ≤ 45°; `_all`: every input; `_photos`: the 7 real photographs only; proxy: RetinaFace "
             "5-keypoint yaw. Estimator: on the posed views, against their known pose.", "",
             "| measure | target | measured | met |", "|---|---|---|---|"]
    for key, target in TARGETS.items():
        value = summary.get(key)
        higher = key in ("faces_found_pct", "faces_per_s_2_threads")
        met = value is not None and (value >= target if higher else value <= target)
        lines.append(f"| {key} | {'≥' if higher else '≤'} {target:g} | {value} | {'yes' if met else 'no'} |")
    lines += ["", "Other numbers: " + ", ".join(f"{k} = {v}" for k, v in summary.items() if k not in TARGETS)]
    lines += _landmark_lines(results.get("landmark_shift") or {})
    lines += ["", "| input | kind | source pose (p, y, r) | output face | residual (p, y, r) | proxy yaw "
              "| estimator on the posed view (p, y, r) | yaw error on exact points | ms |",
              "|---|---|---|---|---|---|---|---|---|"]
    for row in results["rows"]:
        source = row.get("source_pose")
        output = row.get("output", {})
        residual = output.get("residual")
        estimate = (row.get("estimator") or {}).get("estimate")
        exact = (row.get("estimator") or {}).get("exact_yaw_error")
        exact_text = "–" if exact is None else f"{exact:+.1f}"

        def fmt(pose: dict[str, float] | None) -> str:
            return "–" if not pose else f"{pose['pitch']:+.1f}, {pose['yaw']:+.1f}, {pose['roll']:+.1f}"

        lines.append(f"| {row['name']} | {row['kind']} | {fmt(source) if source else row.get('reason', '–')} | "
                     f"{'found' if output.get('found') else 'NOT FOUND' if output else '–'} | {fmt(residual)} | "
                     f"{output.get('proxy_yaw', '–')} | {fmt(estimate)} | {exact_text} | "
                     f"{row.get('ms', '–')} |")
    return "\n".join(lines) + "\n"


def run(data: Path, threads: Sequence[int], repeats: int) -> dict[str, Any]:
    """Build the engine, measure every case, time the step."""
    cv2.setNumThreads(1)  # the step's parallelism is the worker threads, as in the pipeline
    monitor = LoadMonitor(threads=max(threads))
    detector = build_detector("retinaface_mnet", weights_root=data, det_size=640, threshold=0.5)
    landmarker = build_landmarker68()
    engine = GeometricFrontalizer(landmarker)
    cases = load_cases(detector, data)
    rows = []
    with monitor.section("quality"):
        for case in cases:
            start = time.perf_counter()
            image, row = frontalize(engine, case)
            row.update(name=case.name, kind=case.kind, known=case.known,
                       ms=round((time.perf_counter() - start) * 1000, 1))
            if image is not None:
                row["output"] = measure_output(detector, landmarker, image, case.roll_offset)
            row["estimator"] = estimator_error(detector, landmarker, case)
            rows.append(row)
    speeds = []
    for count in threads:
        with monitor.section(f"speed_{count}_threads"):
            speeds.append(speed(engine, cases, count, repeats))
    return {"rows": rows, "speed": speeds, "summary": summarise(rows, speeds), "landmark_shift": landmark_table(rows),
            "load": monitor.as_dict(), "targets": TARGETS}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None, help="sample data of make_samples.py (default: built in "
                        "a temporary folder)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks"), help="folder of the JSON and Markdown")
    parser.add_argument("--stem", default="mesh_cpu", help="file name stem of the reports")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="worker threads to time")
    parser.add_argument("--repeats", type=int, default=3, help="passes over the inputs when timing")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    import torch

    with tempfile.TemporaryDirectory() as scratch:
        data = args.data
        if data is None:
            data = Path(scratch) / "data"
            build_samples(data)
        results = run(data, args.threads, args.repeats)
    results["command"] = " ".join(["python scripts/bench_mesh.py", *(argv if argv is not None else sys.argv[1:])])
    results["environment"] = environment(torch.device("cpu"))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.stem}.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    (args.out / f"{args.stem}.md").write_text(markdown(results))
    print(json.dumps(results["summary"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
