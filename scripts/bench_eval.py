"""Benchmark harness, evaluator part: ``evaluate.py`` on a BIWI-shaped fixture against a naive per-pair loop.

The fixture has the BIWI layout (``hpdb/NN/frame_XXXXX_rgb.png`` + ``frame_XXXXX_pose.txt``), one sequence per
identity of the sample faces: frame 1 is the identity's reference photo with an identity rotation (so it is the
most frontal frame, i.e. the subject's GT), the other frames are its "angled" stand-ins with yaw annotations. The
"frontalized" tree mirrors the probes with re-scaled copies of the GT photo (distinct bytes per frame).

The naive loop is what a script without the evaluator would do: for every pair the evaluator's report scores,
decode, detect and embed both images (same detector, recognizer and detection settings), then take the cosine.
The pairs (see :func:`report_pairs`) follow the report's definitions: Angle↔GT and Frontal↔GT per probe (the main
table), Angled↔Angled within a subject, GT↔GT of different subjects, and every probe against every other
subject's GT (identification and verification impostors).
"""

from __future__ import annotations

import itertools
import json
import logging
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from bench_common import REPO_ROOT, time_call

from frontalize.config.evaluation import EvalConfig
from frontalize.config.schema import load_config
from frontalize.faces.registry import build_detector, build_recognizer
from frontalize.faces.types import FaceDetector, FaceRecognizer
from frontalize.io.images import load_image
from frontalize.weights import resolve_weights_root

log = logging.getLogger("benchmark")

OFFLINE_EVAL_CONFIG = REPO_ROOT / "configs" / "eval-offline.yaml"
_YAWS = (20.0, -30.0, 40.0, -50.0, 60.0, -15.0, 35.0, -45.0)


@dataclass(frozen=True)
class Probe:
    """One annotated non-GT frame and its frontalized stand-in."""

    subject: str
    angled: Path
    frontal: Path


@dataclass(frozen=True)
class Fixture:
    """A BIWI-shaped data set on disk.

    Attributes:
        data_dir: dataset root (holds ``hpdb/``).
        frontal_dir: output tree mirroring the probes' relative paths.
        probes: the non-GT frames.
        gt: subject → its GT frame.
    """

    data_dir: Path
    frontal_dir: Path
    probes: tuple[Probe, ...]
    gt: Mapping[str, Path]

    @property
    def unique_images(self) -> int:
        """Distinct images the evaluator reads: angled + frontalized probes + one GT per subject."""
        return 2 * len(self.probes) + len(self.gt)


def _yaw_matrix(yaw_deg: float) -> np.ndarray:
    """Pose-file matrix M with FSA-Net yaw = ``yaw_deg`` (R = Mᵀ, yaw = −atan2(−R20, √(R21² + R22²)))."""
    angle = np.deg2rad(yaw_deg)
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _write_frame(folder: Path, index: int, rgb: np.ndarray, yaw_deg: float) -> Path:
    image = folder / f"frame_{index:05d}_rgb.png"
    if not cv2.imwrite(str(image), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise OSError(f"cannot write {image}")
    rows = "\n".join(" ".join(f"{v:.6f}" for v in row) for row in _yaw_matrix(yaw_deg))
    (folder / f"frame_{index:05d}_pose.txt").write_text(f"{rows}\n\n0.0 0.0 1000.0\n")
    return image


def _rescaled(rgb: np.ndarray, factor: float) -> np.ndarray:
    height, width = rgb.shape[:2]
    size = (max(32, round(width * factor)), max(32, round(height * factor)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def build_biwi_fixture(root: Path, gt_faces: Mapping[str, Path], angled: Sequence[Path], *, subjects: int,
                       frames: int) -> Fixture:
    """Write a BIWI-shaped fixture of ``subjects`` sequences with ``frames`` annotated frames each (fresh).

    Args:
        root: folder to create (emptied first); data in ``root/data``, frontalized tree in ``root/frontal``.
        gt_faces: identity → reference photo (from :func:`bench_jobs.sample_faces`).
        angled: angled stand-ins; those in the folder named after an identity belong to it.
        subjects: sequences to write (at most the number of identities).
        frames: frames per sequence (≥ 2: the GT + at least one probe); the probes cycle over the identity's
            angled images.
    """
    shutil.rmtree(root, ignore_errors=True)
    data, frontal = root / "data", root / "frontal"
    probes: list[Probe] = []
    gt: dict[str, Path] = {}
    for number, identity in enumerate(sorted(gt_faces)[:subjects], start=1):
        sequence = f"{number:02d}"
        folder, out_folder = data / "hpdb" / sequence, frontal / "hpdb" / sequence
        folder.mkdir(parents=True)
        out_folder.mkdir(parents=True)
        reference = load_image(gt_faces[identity]).rgb
        gt[sequence] = _write_frame(folder, 1, reference, 0.0)
        own = [p for p in angled if p.parent.name == identity]
        for index in range(2, frames + 1):
            source = load_image(own[(index - 2) % len(own)]).rgb
            image = _write_frame(folder, index, source, _YAWS[(index - 2) % len(_YAWS)])
            stand_in = out_folder / image.name
            cv2.imwrite(str(stand_in), cv2.cvtColor(_rescaled(reference, 0.8 + 0.03 * index), cv2.COLOR_RGB2BGR))
            probes.append(Probe(sequence, image, stand_in))
    return Fixture(data, frontal, tuple(probes), gt)


def report_pairs(fixture: Fixture) -> dict[str, list[tuple[Path, Path]]]:
    """Every image pair the evaluator's report scores, grouped by table (see the module docstring)."""
    gt = fixture.gt
    by_subject: dict[str, list[Path]] = {}
    for probe in fixture.probes:
        by_subject.setdefault(probe.subject, []).append(probe.angled)
    return {
        "main": [(p.angled, gt[p.subject]) for p in fixture.probes] + [(p.frontal, gt[p.subject])
                                                                        for p in fixture.probes],
        "angle_angle": [pair for images in by_subject.values() for pair in itertools.combinations(images, 2)],
        "gt_gt": list(itertools.combinations([gt[s] for s in sorted(gt)], 2)),
        "impostor": [(image, gt[other]) for p in fixture.probes for image in (p.angled, p.frontal)
                     for other in sorted(gt) if other != p.subject],
    }


def _embed_one(path: Path, detector: FaceDetector, recognizer: FaceRecognizer) -> np.ndarray | None:
    """Decode, detect (largest face), align and embed one image; None when no face is found."""
    rgb = load_image(path).rgb
    faces = detector.detect(rgb)
    if not faces:
        return None
    return recognizer.embed([recognizer.align(rgb, faces[0])])[0]


def naive_pair_loop(pairs: Sequence[tuple[Path, Path]], detector: FaceDetector,
                    recognizer: FaceRecognizer) -> dict[str, Any]:
    """Score ``pairs`` one by one, detecting and embedding both images of every pair (nothing reused)."""
    start = time.perf_counter()
    missing = 0
    for first, second in pairs:
        a, b = _embed_one(first, detector, recognizer), _embed_one(second, detector, recognizer)
        if a is None or b is None:
            missing += 1
            continue
        float(np.dot(a, b))
    seconds = time.perf_counter() - start
    return {"pairs": len(pairs), "images_processed": 2 * len(pairs), "seconds": round(seconds, 3),
            "pairs_with_no_face": missing, "img_per_s": round(2 * len(pairs) / seconds, 3) if seconds else None}


def offline_models(config_path: Path, device: str) -> tuple[EvalConfig, FaceDetector, FaceRecognizer]:
    """The first detector × recognizer combination of an evaluation config, with its detection settings."""
    cfg = load_config(EvalConfig, config_path)
    combo, det = cfg.combinations[0], cfg.detection
    weights_root = resolve_weights_root(cfg.weights_dir)
    detector = build_detector(combo.detector, weights_root=weights_root, det_size=det.det_size,
                              threshold=det.threshold, nms_threshold=det.nms_threshold, device=device)
    recognizer = build_recognizer(combo.recognizer, weights_root=weights_root, device=device,
                                  batch_size=cfg.run.batch_size)
    return cfg, detector, recognizer


def recognizer_raw(images: Sequence[Path], detector: FaceDetector, recognizer: FaceRecognizer, *, batch: int,
                   warmup: int, repeats: int) -> dict[str, Any]:
    """The recognizer alone on pre-aligned chips, batched: the ceiling of the evaluator's throughput."""
    chips = []
    for path in images:
        rgb = load_image(path).rgb
        faces = detector.detect(rgb)
        if faces:
            chips.append(recognizer.align(rgb, faces[0]))
    if not chips:
        return {"status": "skipped", "reason": "no face found in the fixture"}
    tiled = [chips[i % len(chips)] for i in range(batch)]
    timing = time_call(lambda: recognizer.embed(tiled), batch=batch, warmup=warmup, repeats=repeats,
                       device=torch.device("cpu"))  # dlib / onnxruntime: host clocks are exact
    return {"status": "ok", "recognizer": recognizer.name, **timing.as_dict()}


def run_evaluator(fixture: Fixture, out_dir: Path, *, config_path: Path, device: str, figures: bool,
                  bootstrap_resamples: int | None = None) -> dict[str, Any]:
    """``evaluate.py`` on the fixture with a cold embedding cache; wall time and the embedding-pass time.

    Runs in a fresh process through ``bench_eval_cli.py`` (see its docstring: a spawned preparation child would
    otherwise re-import this heavy benchmark module); the clocks are inside that process, around ``main``.
    """
    shutil.rmtree(out_dir, ignore_errors=True)
    argv = ["--config", str(config_path), "--layout", "biwi", "--data", str(fixture.data_dir), "--frontal-dir",
            str(fixture.frontal_dir), "-o", str(out_dir / "report"), "--cache-dir", str(out_dir / "cache"),
            "--device", device, "--no-progress"]
    argv += [] if figures else ["--no-figures"]
    argv += [] if bootstrap_resamples is None else ["--bootstrap-resamples", str(bootstrap_resamples)]
    done = subprocess.run([sys.executable, str(Path(__file__).with_name("bench_eval_cli.py")), *argv],
                          capture_output=True, text=True, check=False, cwd=REPO_ROOT)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        log.warning("evaluate.py run failed (exit %s): %s", done.returncode, done.stderr.strip()[-2000:])
        return {"exit_code": done.returncode or 1, "wall_s": None, "embedding_pass_s": None,
                "command": "python evaluate.py " + " ".join(argv)}
    timing = json.loads(lines[-1])
    # rates count the faces the recognizer embedded: the pass reads byte-identical files of the fixture once
    wall, embed_s, embedded = timing["wall_s"], timing["embedding_pass_s"], timing["embedded"]
    return {"exit_code": timing["exit_code"], "wall_s": wall, "embedding_pass_s": embed_s,
            "unique_images": fixture.unique_images, "decoded": timing["decoded"], "embedded": embedded,
            "img_per_s": round(embedded / wall, 3),
            "embedding_pass_img_per_s": round(embedded / embed_s, 3) if embed_s else None,
            "figures": figures, "command": "python evaluate.py " + " ".join(argv)}


def bench_evaluation(work_dir: Path, gt_faces: Mapping[str, Path], angled: Sequence[Path], *, subjects: int,
                     frames: int, device: str = "cpu", figures: bool = False, raw_batch: int = 32,
                     repeats: int = 3, naive: bool = True) -> dict[str, Any]:
    """Evaluator vs naive per-pair loop vs raw recognizer, all on the same fixture and models, in one run.

    ``naive=False`` leaves the per-pair loop out (its pairs grow with frames² and probes × subjects), for fixtures
    large enough to measure the evaluator against the recognizer's raw rate without fixed start-up costs.
    """

    fixture = build_biwi_fixture(work_dir / "biwi", gt_faces, angled, subjects=subjects, frames=frames)
    cfg, detector, recognizer = offline_models(OFFLINE_EVAL_CONFIG, device)
    evaluator = run_evaluator(fixture, work_dir / "eval_out", config_path=OFFLINE_EVAL_CONFIG, device=device,
                              figures=figures)
    summary = {"fixture": {"layout": "biwi", "subjects": len(fixture.gt), "frames_per_subject": frames,
                           "probes": len(fixture.probes), "unique_images": fixture.unique_images},
               "combination": f"{cfg.combinations[0].detector} + {cfg.combinations[0].recognizer}",
               "evaluator": evaluator}
    if evaluator["exit_code"] != 0:
        log.warning("evaluate.py failed with exit code %s: no comparison", evaluator["exit_code"])
        return {**summary, "error": f"evaluate.py exit code {evaluator['exit_code']}"}
    images = [p.angled for p in fixture.probes] + [p.frontal for p in fixture.probes] + list(fixture.gt.values())
    raw = recognizer_raw(images, detector, recognizer, batch=raw_batch, warmup=1, repeats=repeats)
    result: dict[str, Any] = {**summary, "recognizer_raw": raw}
    if raw.get("status") == "ok":
        result["fraction_of_raw_recognizer"] = round(evaluator["img_per_s"] / raw["img_per_s"], 4)
        if evaluator["embedding_pass_img_per_s"]:
            result["embedding_pass_fraction_of_raw_recognizer"] = round(
                evaluator["embedding_pass_img_per_s"] / raw["img_per_s"], 4)
    if not naive:
        result["speedup_vs_per_pair"] = result["speedup_vs_per_pair_main_table"] = "not measured (--eval-no-naive)"
        return result
    loops = {name: naive_pair_loop(pairs, detector, recognizer) for name, pairs in report_pairs(fixture).items()}
    naive_all = sum(group["seconds"] for group in loops.values())
    result.update({
        "naive": loops, "naive_all_pairs_s": round(naive_all, 3),
        "naive_pairs": sum(group["pairs"] for group in loops.values()),
        "speedup_vs_per_pair": round(naive_all / evaluator["wall_s"], 3),
        "speedup_vs_per_pair_main_table": round(loops["main"]["seconds"] / evaluator["wall_s"], 3),
    })
    log.info("evaluator %.2f s vs naive per-pair loop %.2f s (%d pairs): %.2fx", evaluator["wall_s"], naive_all,
             result["naive_pairs"], result["speedup_vs_per_pair"])
    return result
