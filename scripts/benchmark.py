#!/usr/bin/env python
"""Benchmark the toolkit: LivePortrait networks and frontal forward, the whole inference job, the evaluator.

    python scripts/benchmark.py --quick            # 2-core CPU: a few minutes at most; ends with name: value lines
    python scripts/benchmark.py                    # full grid (batch 1…64 on a GPU, compile, channels_last, …)
    python scripts/benchmark.py --device cuda --out benchmarks/h100

Sections (each skippable with ``--skip``):

* ``networks``: per network (F, M, S, W, G) and the whole ``LivePortraitFrontalizer.frontalize`` call, ms/img and
  img/s per batch size × precision (fp32 exact, fp16/bf16 autocast) × torch.compile × channels_last; achieved
  TFLOP/s of W and G (FLOPs from ``torch.utils.flop_counter``) against the device's published peak; where the
  time of the batch-1 fp32 forward goes (per network, and per operator with ``--profile``).
* ``job``: the whole ``inference.py --frontalize`` job on a folder of face photos with test weights.
* ``eval``: ``evaluate.py`` on a BIWI-shaped fixture vs a naive per-pair loop and vs the recognizer alone.
* ``ray``: the ``job`` with ``--executor local`` then ``--executor ray`` (a local Ray) on the same machine
  (``scripts/bench_ray.py``): ``inference_local_img_per_s``, ``inference_ray_img_per_s``, ``ray_overhead_ratio``.

Weights: the official LivePortrait checkpoints when they are in the weights folder, else the golden
``fill.py`` values (timings do not depend on weight values). Outputs ``<out>/benchmark_<mode>_<device>.json``
and ``.md``; the last lines on stdout are ``name: value`` headline figures. Figures that were not measured say
so; nothing is estimated.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import logging
import os
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from bench_common import REPO_ROOT, LoadMonitor, environment, peak_rss_mb, skipped
from bench_networks import RunConfig, bench_config, gflop_table, load_networks, profile_networks, tiny_archs
from bench_ray import ray_headlines, ray_markdown
from bench_ray import run_section as run_executors
from bench_report import headline_figures, headline_lines, write_reports

from frontalize.weights import resolve_weights_root

log = logging.getLogger("benchmark")

SECTIONS = ("networks", "job", "eval", "ray")
FULL_GPU_BATCHES = (1, 2, 4, 8, 16, 32, 64)
# A 2-core CPU needs seconds per image: batches past 4 take minutes per call and do not raise img/s there.
FULL_CPU_BATCHES = (1, 2, 4)


def _csv(kind: type) -> Any:
    def parse(text: str) -> tuple[Any, ...]:
        return tuple(kind(part) for part in text.split(",") if part.strip())

    return parse


def build_parser() -> argparse.ArgumentParser:
    """The benchmark's command line."""
    parser = argparse.ArgumentParser(prog="benchmark.py", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small plan for a 2-core CPU (batch 1 and 2, fp32 "
                        "and CPU bf16, no compile/channels_last, 2 job images, small evaluator fixture)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks", help="folder for the JSON and "
                        "Markdown results (default: benchmarks/)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")
    parser.add_argument("--batch-sizes", type=_csv(int), default=None, help="comma list, e.g. 1,2,4")
    parser.add_argument("--precisions", type=_csv(str), default=None, help="comma list of fp32,fp16,bf16")
    parser.add_argument("--warmup", type=int, default=None, help="untimed calls per measurement")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per measurement (median)")
    parser.add_argument("--no-compile", dest="compile", action="store_false", help="no torch.compile rows")
    parser.add_argument("--profile", action=argparse.BooleanOptionalAction, default=None,
                        help="operator-level profile of each network at batch 1 fp32 (default: on in full mode)")
    parser.add_argument("--skip", type=_csv(str), default=(), help=f"sections to skip: {','.join(SECTIONS)}")
    parser.add_argument("--weights-dir", type=Path, default=None, help="official LivePortrait weights root "
                        "(default $FRONTALIZE_WEIGHTS or ./pretrained_weights; fill.py values when absent)")
    parser.add_argument("--allow-unverified-weights", action="store_true",
                        help="use official-layout weight files without checking their checksums")
    parser.add_argument("--work-dir", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "frontalize-bench",
                        help="scratch folder (sample faces, test weights and fixtures are made once and reused)")
    parser.add_argument("--job-images", type=int, default=None, help="images of the inference job")
    parser.add_argument("--job-batch-size", type=int, default=None, help="network batch of the inference job")
    parser.add_argument("--eval-subjects", type=int, default=None, help="subjects of the evaluator fixture (≤ 7)")
    parser.add_argument("--eval-frames", type=int, default=None, help="frames per subject (GT + probes)")
    parser.add_argument("--eval-no-naive", action="store_true",
                        help="leave out the naive per-pair loop (for large fixtures: evaluator vs raw recognizer only)")
    parser.add_argument("--tiny", action="store_true", help="smoke-test size: tiny networks at 64 px, identity "
                        "backend for the job (numbers are meaningless; exercises the harness)")
    return parser


def resolve_settings(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """Mode defaults, overridden by explicit flags."""
    cuda, quick = device.type == "cuda", args.quick
    batches: tuple[int, ...]
    if quick:
        batches = (1, 4) if cuda else (1, 2)
    else:
        batches = FULL_GPU_BATCHES if cuda else FULL_CPU_BATCHES
    settings = {
        "mode": "quick" if quick else "full", "tiny": args.tiny,
        "batch_sizes": list(args.batch_sizes or batches),
        "precisions": list(args.precisions or ("fp32", "fp16", "bf16")),
        "warmup": args.warmup if args.warmup is not None else (1 if quick and not cuda else 2),
        "repeats": args.repeats if args.repeats is not None else (1 if quick and not cuda else 5 if cuda else 3),
        "compile": bool(args.compile) and not quick, "channels_last": not quick,
        "profile_ops": args.profile if args.profile is not None else not quick,
        "job_images": args.job_images or (2 if quick else 64 if cuda else 8),
        "job_batch_size": args.job_batch_size or (2 if quick else 32 if cuda else 4),
        "eval_subjects": args.eval_subjects or (4 if quick else 7),
        "eval_frames": args.eval_frames or (4 if quick else 5),
        "raw_recognizer_batch": 16 if quick else 32,
        "image_size": 64 if args.tiny else 256,
        "threads": torch.get_num_threads(),
    }
    if args.tiny:
        settings.update(job_images=min(settings["job_images"], 2), eval_subjects=min(settings["eval_subjects"], 2),
                        eval_frames=2, raw_recognizer_batch=4)
    return settings


def network_plan(settings: dict[str, Any], device: torch.device) -> tuple[list[RunConfig], list[dict[str, Any]]]:
    """Configurations to measure (fp32 eager batch 1 first: it counts the FLOPs) and the ones skipped, with why."""
    batches, cuda = settings["batch_sizes"], device.type == "cuda"
    plan: list[RunConfig] = []
    skips: list[dict[str, Any]] = []
    for precision in sorted(settings["precisions"], key=lambda p: p != "fp32"):
        if precision == "fp16" and not cuda:
            skips.append(skipped("fp16 autocast is only meaningful on CUDA (CPU fp16 kernels are slow and "
                                 "partial)", label=f"fp16 on {device.type}"))
            continue
        chosen = batches
        if precision != "fp32" and not cuda and settings["mode"] == "quick":
            chosen = batches[:1]  # quick CPU run: bf16 at batch 1 only (time budget)
        plan += [RunConfig(batch, precision) for batch in chosen]
        ends = sorted({min(chosen), max(chosen)})
        if settings["channels_last"]:
            plan += [RunConfig(batch, precision, channels_last=True) for batch in ends]
        if settings["compile"]:
            plan += [RunConfig(batch, precision, compiled=True) for batch in ends]
    if not settings["compile"]:
        skips.append(skipped("torch.compile rows are measured in full mode only" if settings["mode"] == "quick"
                             else "--no-compile", label="torch.compile"))
    if not settings["channels_last"]:
        skips.append(skipped("channels_last rows are measured in full mode only", label="channels_last"))
    return plan, skips


def _measure_config(networks: Any, cfg: RunConfig, device: torch.device, settings: dict[str, Any],
                    gflop: dict[str, float] | None) -> dict[str, Any]:
    warmup = settings["warmup"] + (1 if cfg.compiled else 0)  # compilation happens in the first call
    try:
        return bench_config(networks, cfg, device, warmup=max(1, warmup), repeats=settings["repeats"],
                            gflop_per_img=gflop, image_size=settings["image_size"])
    except torch.cuda.OutOfMemoryError as exc:
        torch.cuda.empty_cache()
        return {"config": cfg.as_dict(), "label": cfg.label, "networks": [],
                "frontal_forward": skipped(f"out of GPU memory: {str(exc).splitlines()[0]}")}
    except Exception as exc:  # compile/backend failures must not lose the rows already measured
        if not cfg.compiled:
            raise
        log.warning("%s failed: %s", cfg.label, exc)
        return {"config": cfg.as_dict(), "label": cfg.label, "networks": [],
                "frontal_forward": skipped(f"torch.compile failed: {type(exc).__name__}: {str(exc)[:200]}")}


def _profile_parts(config: dict[str, Any]) -> list[dict[str, Any]]:
    whole = config["frontal_forward"]["ms_per_img"]
    parts = [{"part": f"{r['network']} ({r['name']})", "ms_per_img": r["ms_per_img"],
              "share": round(r["ms_per_img"] / whole, 4)} for r in config["networks"]]
    other = whole - sum(r["ms_per_img"] for r in config["networks"])
    parts.append({"part": "geometry, glue, allocation (whole − Σ networks)", "ms_per_img": round(other, 3),
                  "share": round(other / whole, 4)})
    parts.append({"part": "whole frontal forward", "ms_per_img": whole, "share": 1.0})
    return parts


def run_networks(settings: dict[str, Any], device: torch.device, args: argparse.Namespace,
                 monitor: LoadMonitor) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The network grid and the batch-1 fp32 profile."""
    weights_dir = args.weights_dir or resolve_weights_root(None)
    networks, source = load_networks(weights_dir, archs=tiny_archs() if settings["tiny"] else None,
                                     allow_unverified=args.allow_unverified_weights)
    plan, skips = network_plan(settings, device)
    configs: list[dict[str, Any]] = []
    gflop: dict[str, float] | None = None
    profile: dict[str, Any] | None = None
    for cfg in plan:
        with monitor.section(f"networks {cfg.label}"):
            result = _measure_config(networks, cfg, device, settings, gflop)
        configs.append(result)
        gflop = gflop or (gflop_table(result) if result["networks"] else None)
        if cfg == RunConfig(1) and result["networks"]:
            # right after the batch-1 fp32 row, before any autocast/compiled run has touched the modules
            profile = {"label": f"batch 1, fp32, {settings['threads']} threads, {device}",
                       "parts": _profile_parts(result)}
            if settings["profile_ops"]:
                with monitor.section("profile"):
                    profile["ops"] = _guarded("operator profile", lambda: profile_networks(
                        networks, device, image_size=settings["image_size"]))
    networks.clear()  # free the weights before the inference job loads its own
    gc.collect()
    return {"weights": source, "configs": configs, "skipped": skips}, profile


def run_job(settings: dict[str, Any], device: torch.device, args: argparse.Namespace) -> dict[str, Any]:
    """The inference.py job on generated face images."""
    from bench_jobs import bench_inference_job, ensure_test_weights, make_image_folder, sample_faces

    angled, _ = sample_faces(args.work_dir)
    weights, write_s = (None, 0.0) if settings["tiny"] else ensure_test_weights(args.work_dir / "test_weights")
    images = args.work_dir / "job_images"
    make_image_folder(images, settings["job_images"], angled)
    precision = "fp16" if device.type == "cuda" and "fp16" in settings["precisions"] else "fp32"
    result = bench_inference_job(images, weights, args.work_dir / "job_out", device=str(device),
                                 batch_size=settings["job_batch_size"], precision=precision)
    result["test_weights_written_s"] = round(write_s, 2)
    return result


def run_eval(settings: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """evaluate.py vs the naive per-pair loop vs the raw recognizer (offline models, CPU)."""
    from bench_eval import bench_evaluation
    from bench_jobs import sample_faces

    angled, gt = sample_faces(args.work_dir)
    return bench_evaluation(args.work_dir, gt, angled, subjects=settings["eval_subjects"],
                            frames=settings["eval_frames"], raw_batch=settings["raw_recognizer_batch"],
                            repeats=max(1, settings["repeats"]), naive=not args.eval_no_naive)


def _guarded(section: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run one section; a failure becomes an ``error`` entry so the sections already measured are still written."""
    try:
        return fn()
    except Exception as exc:  # any failure of the code under test; the report says what broke
        log.exception("%s failed", section)
        return {"error": f"{section} failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}


def _device(spec: str) -> torch.device:
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(spec)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"device {spec!r} requested but CUDA is not available")
    return device


def run(args: argparse.Namespace, argv: Sequence[str]) -> dict[str, Any]:
    """Run every section that is not skipped; return the results dict (also written to ``--out``)."""
    started = time.perf_counter()
    device = _device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = resolve_settings(args, device)
    monitor = LoadMonitor(threads=settings["threads"])
    args.work_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                               "command": "python scripts/benchmark.py " + shlex.join(argv),
                               "environment": environment(device), "settings": settings, "skipped_sections": {}}
    unknown = set(args.skip) - set(SECTIONS)
    if unknown:
        raise SystemExit(f"--skip: unknown section(s) {', '.join(sorted(unknown))}; choose from {', '.join(SECTIONS)}")
    for name in SECTIONS:
        if name in args.skip:
            results["skipped_sections"][{"job": "inference_job", "eval": "evaluator"}.get(name, name)] = "--skip"
    if "networks" not in args.skip:
        results["networks"], results["profile"] = run_networks(settings, device, args, monitor)
    if "job" not in args.skip:
        with monitor.section("inference job"):
            results["inference_job"] = _guarded("inference job", lambda: run_job(settings, device, args))
    if "eval" not in args.skip:
        with monitor.section("evaluator"):
            results["evaluator"] = _guarded("evaluator", lambda: run_eval(settings, args))
    if "ray" not in args.skip:
        with monitor.section("local vs ray executor"):
            results["executors"] = _guarded("executors", lambda: run_executors(settings, str(device), args.work_dir))
    gpu_peaks = [c.get("peak_gpu_mb") or 0.0 for c in results.get("networks", {}).get("configs", [])]
    results["memory"] = {"peak_rss_mb": round(peak_rss_mb(), 1),
                         "peak_gpu_mb": round(max([*gpu_peaks, torch.cuda.max_memory_allocated(device) / 2**20]), 1)
                         if device.type == "cuda" else None}
    results["load"] = monitor.as_dict()
    results["elapsed_s"] = round(time.perf_counter() - started, 1)
    results["headlines"] = headline_figures(results)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print one ``name: value`` line per headline figure at the end."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    results = run(args, argv)
    device = results["environment"]["device"].split(":")[0]
    stem = f"benchmark_{results['settings']['mode']}{'_tiny' if args.tiny else ''}_{device}"
    json_path, md_path = write_reports(results, args.out, stem)
    md_path.write_text(md_path.read_text() + "\n" + "\n".join(ray_markdown(results.get("executors"))))
    log.info("wrote %s and %s", json_path, md_path)
    executor_lines = headline_lines(ray_headlines(results.get("executors")))
    sys.stdout.write("\n".join([*executor_lines, *headline_lines(results["headlines"])]) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
