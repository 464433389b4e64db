"""Benchmark harness, executor part: the same ``inference.py`` job with ``--executor local`` and ``--executor ray``.

Both runs go through the real command line (``frontalize.cli.inference.main``) on the same images, weights and
machine, one after the other in the same benchmark run. The Ray run starts a local Ray on this machine (as a user
without a cluster would) and stops it at the end, so its wall time includes the Ray start-up, the worker
processes and the model loading inside them. Two rates are reported per executor:

* ``img_per_s``: images / wall time of the whole command (what a user waits for);
* ``processing_img_per_s``: images / the executor's own processing time (the run summary's ``elapsed_s``: the
  local loop after model loading; for Ray, the dataset execution including Ray start-up and worker model loads).

``ray_overhead_ratio`` = local rate / Ray rate (wall-based): above 1 means Ray is slower on one machine — the
price of the scheduler, process start-up and record serialisation that a cluster pays back with more GPUs.
"""

from __future__ import annotations

import importlib.util
import logging
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench_jobs import OFFLINE_CONFIG, clocked, ensure_test_weights, make_image_folder, preserved_logging, sample_faces

from frontalize.io.manifest import read_manifest

log = logging.getLogger("benchmark")

NOT_MEASURED = "not measured"
HEADLINE_NAMES = ("inference_local_img_per_s", "inference_ray_img_per_s", "ray_overhead_ratio")


def _job_argv(images_dir: Path, out_dir: Path, weights_dir: Path | None, *, device: str, batch_size: int,
              precision: str) -> list[str]:
    argv = ["--config", str(OFFLINE_CONFIG), "--source_dir", str(images_dir), "-o", str(out_dir), "--batch-size",
            str(batch_size), "--device", device, "--no-progress", "-q", "--set", f"frontalizer.precision={precision}"]
    if weights_dir is not None:
        return [*argv, "--frontalize", "--allow-unverified-weights", "--weights-dir", str(weights_dir)]
    return [*argv, "--set", "frontalizer.pose_estimation=never"]


def run_executor(executor: str, images_dir: Path, out_dir: Path, weights_dir: Path | None, *, device: str,
                 batch_size: int, precision: str = "fp32", ray_cpus: int | None = None) -> dict[str, Any]:
    """Run the job once with ``executor`` and time it.

    Returns:
        Images, exit code, statuses, wall and processing seconds and the two rates (see module docstring).
    """
    from frontalize.cli import inference as cli
    from frontalize.pipeline import executor_ray

    shutil.rmtree(out_dir, ignore_errors=True)
    count = sum(1 for p in images_dir.iterdir() if p.is_file())
    argv = [*_job_argv(images_dir, out_dir, weights_dir, device=device, batch_size=batch_size, precision=precision),
            "--executor", executor]
    if executor == "ray" and ray_cpus:
        argv += ["--set", f"ray.num_cpus={ray_cpus}"]
    clocks: dict[str, Any] = {}
    start = time.perf_counter()
    with preserved_logging(), clocked(cli, "execute_run", clocks), clocked(executor_ray, "execute_run_ray", clocks):
        code = cli.main(argv)
    wall = time.perf_counter() - start
    summary = clocks.get("execute_run_result") or clocks.get("execute_run_ray_result")
    processing = float(summary.elapsed_s) if summary is not None else None
    statuses = Counter(str(row.get("status")) for row in read_manifest(out_dir / "manifest.jsonl"))
    result: dict[str, Any] = {
        "executor": executor, "images": count, "exit_code": code, "statuses": dict(statuses),
        "wall_s": round(wall, 3), "processing_s": round(processing, 3) if processing else None,
        "img_per_s": round(count / wall, 4),
        "processing_img_per_s": round(count / processing, 4) if processing else None,
        "command": "python inference.py " + " ".join(argv),
    }
    if code != 0 or statuses.get("ok", 0) != count:
        result["error"] = f"exit code {code}, statuses {dict(statuses) or 'none'}"
        log.warning("%s executor: %s", executor, result["error"])
    log.info("%s executor: %d images in %.2f s wall (%.3f img/s)", executor, count, wall, result["img_per_s"])
    return result


def _same_outputs(local_out: Path, ray_out: Path) -> bool:
    """Whether both runs wrote the same set of output files (names; the values are compared by the tests)."""
    def names(root: Path) -> set[str]:
        return {p.relative_to(root).as_posix() for p in root.rglob("*.png")}

    return names(local_out) == names(ray_out)


def bench_local_vs_ray(images_dir: Path, weights_dir: Path | None, work_dir: Path, *, device: str, batch_size: int,
                       precision: str = "fp32", ray_cpus: int | None = None) -> dict[str, Any]:
    """The job with the local executor, then with Ray, on the same machine in the same run.

    Returns:
        ``{"local": ..., "ray": ..., "same_output_files": bool, "ray_overhead_ratio": float}``, or an entry with
        ``skipped`` when Ray is not installed.
    """
    if importlib.util.find_spec("ray") is None:
        return {"skipped": 'ray is not installed (pip install ".[ray]")'}
    local = run_executor("local", images_dir, work_dir / "executor_local", weights_dir, device=device,
                         batch_size=batch_size, precision=precision)
    distributed = run_executor("ray", images_dir, work_dir / "executor_ray", weights_dir, device=device,
                               batch_size=batch_size, precision=precision, ray_cpus=ray_cpus)
    result: dict[str, Any] = {"local": local, "ray": distributed,
                              "same_output_files": _same_outputs(work_dir / "executor_local",
                                                                 work_dir / "executor_ray")}
    if "error" not in local and "error" not in distributed:
        result["ray_overhead_ratio"] = round(local["img_per_s"] / distributed["img_per_s"], 3)
    return result


def run_section(settings: dict[str, Any], device: str, work_dir: Path) -> dict[str, Any]:
    """The benchmark section: the inference job's images, weights and batch size, local vs Ray.

    Same job as the benchmark's ``job`` section (LivePortrait with test weights; the identity backend with
    ``--tiny``), in its own output folders.
    """
    angled, _ = sample_faces(work_dir)
    weights = None if settings["tiny"] else ensure_test_weights(work_dir / "test_weights")[0]
    images = work_dir / "executor_images"
    make_image_folder(images, settings["job_images"], angled)
    precision = "fp16" if device.startswith("cuda") and "fp16" in settings["precisions"] else "fp32"
    return bench_local_vs_ray(images, weights, work_dir, device=device, batch_size=settings["job_batch_size"],
                              precision=precision)


def ray_headlines(section: dict[str, Any] | None) -> dict[str, Any]:
    """Headline figures of the executor comparison (numbers, or ``not measured (...)``)."""
    if not section:
        return dict.fromkeys(HEADLINE_NAMES, f"{NOT_MEASURED} (skipped)")
    reason = section.get("skipped") or section.get("error")
    if reason:
        return dict.fromkeys(HEADLINE_NAMES, f"{NOT_MEASURED} ({reason})")
    figures: dict[str, Any] = {}
    for executor, name in (("local", "inference_local_img_per_s"), ("ray", "inference_ray_img_per_s")):
        run = section[executor]
        figures[name] = run["img_per_s"] if "error" not in run else f"{NOT_MEASURED} ({run['error']})"
    figures["ray_overhead_ratio"] = section.get("ray_overhead_ratio", f"{NOT_MEASURED} (a run failed)")
    return figures


def ray_markdown(section: dict[str, Any] | None) -> list[str]:
    """Markdown lines of the executor comparison (for the benchmark report)."""
    if not section or section.get("skipped") or section.get("error"):
        reason = (section or {}).get("skipped") or (section or {}).get("error") or "skipped"
        return ["## Executors: local vs Ray", "", f"{NOT_MEASURED} ({reason})", ""]
    lines = ["## Executors: local vs Ray (same machine, same run)", "",
             "| executor | images | wall s | img/s (wall) | processing s | img/s (processing) |",
             "|---|---|---|---|---|---|"]
    for executor in ("local", "ray"):
        run = section[executor]
        lines.append(f"| {executor} | {run['images']} | {run['wall_s']} | {run['img_per_s']} | "
                     f"{run['processing_s']} | {run['processing_img_per_s']} |")
    lines += ["", f"ray_overhead_ratio (local img/s ÷ Ray img/s, wall): {section.get('ray_overhead_ratio')}; "
              f"same output files: {section['same_output_files']}", ""]
    return lines
