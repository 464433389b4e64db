"""Benchmark harness, whole-job part: sample faces, test weights and the ``inference.py`` job on a folder.

The job runs in-process through ``frontalize.cli.inference.main`` (the real command line) with the offline
detector, ``make_test_weights.py`` weights and ``--allow-unverified-weights``. Two functions of the pipeline are
wrapped for the duration of the call, only to read clocks: model loading (``build_steps``) and the processing
loop (``execute_run``, whose summary carries the wall time of the loop). Where the time goes comes from the
per-step timings of the manifest rows.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from bench_common import REPO_ROOT, peak_rss_mb

from frontalize.io.manifest import read_manifest
from frontalize.liveportrait.loading import LP_WEIGHT_KEYS
from frontalize.weights import weight_path

log = logging.getLogger("benchmark")

OFFLINE_CONFIG = REPO_ROOT / "configs" / "offline.yaml"


@contextlib.contextmanager
def preserved_logging() -> Iterator[None]:
    """Restore the root logger (handlers, level) after an in-process CLI call reconfigured it."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)


@contextlib.contextmanager
def clocked(owner: object, name: str, record: dict[str, Any]) -> Iterator[None]:
    """Wrap ``owner.name`` for the duration: add its wall time to ``record[name]`` and keep its last result.

    Instrumentation only (no behaviour change): the benchmark needs the model-loading and loop times of a
    real CLI run without duplicating the CLI's code.
    """
    original: Callable[..., Any] = getattr(owner, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            result = original(*args, **kwargs)
        finally:
            record[name] = record.get(name, 0.0) + time.perf_counter() - start
        record[f"{name}_result"] = result
        return result

    setattr(owner, name, wrapper)
    try:
        yield
    finally:
        setattr(owner, name, original)


def sample_faces(work_dir: Path) -> tuple[list[Path], dict[str, Path]]:
    """Face photos from ``scripts/make_samples.py`` (insightface's t1.jpg group photo and skimage's astronaut).

    Made once per work folder and reused.

    Returns:
        (angled images, identity → GT image).
    """
    folder = work_dir / "samples"
    listing = folder / "angled.txt"
    if not listing.is_file():
        sys.path.insert(0, str(REPO_ROOT / "scripts"))
        from make_samples import build_samples

        log.info("making sample faces in %s", folder)
        build_samples(folder)
    angled = [folder / line for line in listing.read_text().split()]
    gt = {path.stem: path for path in sorted((folder / "gt").glob("*.jpg"))}
    return angled, gt


def ensure_test_weights(weights_dir: Path) -> tuple[Path, float]:
    """LivePortrait test weights from ``scripts/make_test_weights.py --only liveportrait`` (made once).

    Returns:
        (weights root, seconds spent writing them; 0 when they were already there).
    """
    if all(weight_path(key, weights_dir).is_file() for key in LP_WEIGHT_KEYS):
        return weights_dir, 0.0
    start = time.perf_counter()
    command = [sys.executable, str(REPO_ROOT / "scripts" / "make_test_weights.py"), str(weights_dir),
               "--only", "liveportrait"]
    log.info("writing LivePortrait test weights: %s", " ".join(command))
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return weights_dir, time.perf_counter() - start


def make_image_folder(folder: Path, count: int, faces: Sequence[Path]) -> list[Path]:
    """``count`` face images in a fresh ``folder`` (copies of ``faces``, cycling)."""
    if not faces:
        raise ValueError("no sample face to copy")
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    paths = []
    for index in range(count):
        source = faces[index % len(faces)]
        target = folder / f"face_{index:04d}{source.suffix}"
        shutil.copyfile(source, target)
        paths.append(target)
    return paths


def _step_breakdown(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per step: total ms over the rows, mean ms per image and share of all step time."""
    totals: dict[str, float] = defaultdict(float)
    for row in rows:
        for step, ms in (row.get("timings_ms") or row.get("timings") or {}).items():
            totals[step] += float(ms)
    grand = sum(totals.values()) or 1.0
    count = max(1, len(rows))
    return {step: {"total_ms": round(ms, 1), "ms_per_img": round(ms / count, 1), "share": round(ms / grand, 4)}
            for step, ms in sorted(totals.items(), key=lambda item: -item[1])}


def bench_inference_job(images_dir: Path, weights_dir: Path | None, out_dir: Path, *, device: str, batch_size: int,
                        workers: int | None = None, precision: str = "fp32") -> dict[str, Any]:
    """Run the whole ``inference.py --frontalize`` job on ``images_dir`` and time it.

    Args:
        images_dir: folder of face images.
        weights_dir: weights root with the LivePortrait (test) weights; None runs the identity backend instead
            (crop/align only, no LivePortrait: used by the smoke test).
        out_dir: output folder (emptied first).
        device: ``cpu`` or ``cuda[:N]``.
        batch_size: faces per network batch.
        workers: decode/detect/encode threads (None = the config default).
        precision: network precision (``fp16``/``bf16`` only on CUDA).

    Returns:
        Images, exit code, wall / model-load / loop seconds, images per second of the loop (steady state) and
        of the whole call, statuses and the per-step breakdown from the manifest.
    """
    from frontalize.cli import inference as cli
    from frontalize.pipeline import runner

    shutil.rmtree(out_dir, ignore_errors=True)
    count = sum(1 for p in images_dir.iterdir() if p.is_file())
    argv = ["--config", str(OFFLINE_CONFIG), "--source_dir", str(images_dir), "-o", str(out_dir), "--batch-size",
            str(batch_size), "--device", device, "--no-progress", "--set", f"frontalizer.precision={precision}"]
    if weights_dir is not None:
        argv += ["--frontalize", "--allow-unverified-weights", "--weights-dir", str(weights_dir)]
    else:
        argv += ["--set", "frontalizer.pose_estimation=never"]  # crop-only run: no pose network
    if workers is not None:
        argv += ["--workers", str(workers)]
    clocks: dict[str, Any] = {}
    start, cpu_start = time.perf_counter(), time.process_time()
    with preserved_logging(), clocked(runner, "build_steps", clocks), clocked(cli, "execute_run", clocks):
        code = cli.main(argv)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    rows = read_manifest(out_dir / "manifest.jsonl")
    summary = clocks.get("execute_run_result")
    loop_s = float(summary.elapsed_s) if summary is not None else None
    statuses = Counter(str(row.get("status")) for row in rows)
    result: dict[str, Any] = {
        "images": count, "exit_code": code, "backend": "identity" if weights_dir is None else "liveportrait",
        "batch_size": batch_size, "precision": precision,
        "workers": workers, "wall_s": round(wall, 3), "model_load_s": round(clocks.get("build_steps", 0.0), 3),
        "loop_s": round(loop_s, 3) if loop_s else None, "statuses": dict(statuses),
        "img_per_s": round(count / loop_s, 4) if loop_s else None,
        "s_per_img": round(loop_s / count, 4) if loop_s else None,
        "img_per_s_incl_startup": round(count / wall, 4), "cpu_s": round(cpu, 2),
        "cpu_share": round(cpu / (wall * torch.get_num_threads()), 3), "steps": _step_breakdown(rows),
        "command": "python inference.py " + " ".join(argv), "peak_rss_mb_after": round(peak_rss_mb(), 1),
    }
    if code != 0 or statuses.get("ok", 0) != count:
        result["error"] = f"exit code {code}, statuses {dict(statuses) or 'none'}"
        log.warning("inference job: %s", result["error"])
    log.info("inference job: %d images, loop %.2f s (%.3f img/s), model load %.2f s, wall %.2f s", count,
             loop_s or 0.0, result["img_per_s"] or 0.0, result["model_load_s"], wall)
    return result
