"""Smoke test of the benchmark harness (scripts/benchmark.py + scripts/bench_*.py) at a tiny size.

Runs the real harness functions with tiny-arch LivePortrait networks at 64 px, the identity-backend inference job
on 2 sample faces and the evaluator on a 2×2 BIWI-shaped fixture, then checks the structure of the JSON and
Markdown outputs and the ``name: value`` headline lines. It never asserts a timing.
"""

from __future__ import annotations

import io
import json
import re
import sys
from contextlib import redirect_stdout
from pathlib import Path

import pytest
import torch

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
if str(SCRIPTS) not in sys.path:
    sys.path.insert(0, str(SCRIPTS))

import bench_common  # noqa: E402
import bench_networks  # noqa: E402
import bench_report  # noqa: E402
import benchmark  # noqa: E402


def _number_or_not_measured(value: object) -> bool:
    return isinstance(value, (int, float)) or str(value).startswith(bench_report.NOT_MEASURED)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str, Path]:
    """One tiny quick run of the whole harness; returns (JSON results, stdout, out folder).

    The weights come from the golden fill.py when ../shared is there, else from the seeded fallback: the harness
    works either way, so this test needs no golden folder.
    """
    out = tmp_path_factory.mktemp("bench_out")
    work = tmp_path_factory.mktemp("bench_work")
    # the executor comparison (ray section) has its own tests; here only the sections of this harness
    argv = ["--quick", "--tiny", "--out", str(out), "--work-dir", str(work), "--device", "cpu", "--threads", "1",
            "--skip", "ray"]
    buffer = io.StringIO()
    threads = torch.get_num_threads()
    try:
        with redirect_stdout(buffer):
            assert benchmark.main(argv) == 0
    finally:
        torch.set_num_threads(threads)  # --threads changed the process-wide setting
    results = json.loads((out / "benchmark_quick_tiny_cpu.json").read_text())
    return results, buffer.getvalue(), out


def test_headline_lines(tiny_run: tuple[dict, str, Path]) -> None:
    results, stdout, _ = tiny_run
    lines = stdout.strip().splitlines()
    tail = lines[-len(bench_report.HEADLINE_NAMES):]
    names = [line.split(": ", 1)[0] for line in tail]
    assert names == list(bench_report.HEADLINE_NAMES)
    for line in tail:
        assert re.fullmatch(r"[a-z0-9_]+: \S.*", line), line
    values = dict(line.split(": ", 1) for line in tail)
    for name in ("frontal_forward_img_per_s", "evaluator_speedup_vs_per_pair", "inference_job_img_per_s",
                 "evaluator_img_per_s", "recognizer_raw_img_per_s", "evaluator_fraction_of_raw_recognizer",
                 "peak_rss_mb", "frontal_forward_s_per_img_cpu"):
        assert float(values[name]) > 0, (name, values[name])  # measured (a number), not "not measured"
    assert values["peak_gpu_mb"].startswith("not measured")
    assert values["measured_under_load"] in ("yes", "no")
    assert results["headlines"] == {k: v for k, v in results["headlines"].items() if k in values}


def test_json_structure(tiny_run: tuple[dict, str, Path]) -> None:
    results, _, _ = tiny_run
    env = results["environment"]
    assert env["device"] == "cpu" and env["torch_threads"] == 1 and "torch" in env["versions"]
    assert results["settings"]["mode"] == "quick" and results["settings"]["tiny"] is True
    net = results["networks"]
    assert net["weights"] in ("fill.py", "seeded torch init")
    labels = [c["label"] for c in net["configs"]]
    assert labels == ["b1 fp32", "b2 fp32", "b1 bf16"]
    for config in net["configs"]:
        assert [r["network"] for r in config["networks"]] == ["F", "M", "S", "W", "G"]
        for row in [*config["networks"], config["frontal_forward"]]:
            assert row["status"] == "ok" and row["ms_per_img"] > 0 and row["img_per_s"] > 0
            assert len(row["times_s"]) == row["repeats"] >= 1
            assert row["cpu_ms_per_img"] >= 0 and row["cpu_share"] >= 0  # CPU device: both recorded
        flops = {r["network"]: r.get("gflop_per_img") for r in config["networks"]}
        assert flops["W"] > 0 and flops["G"] > 0  # counted in b1 fp32, carried to the others
        assert all("achieved_tflops" in r for r in config["networks"] if r["network"] in ("W", "G"))
    skipped = {s["label"] for s in net["skipped"]}
    assert {"fp16 on cpu", "torch.compile", "channels_last"} <= skipped
    parts = [p["part"] for p in results["profile"]["parts"]]
    assert parts[-1] == "whole frontal forward" and len(parts) == 7
    job = results["inference_job"]
    assert job["backend"] == "identity" and job["images"] == 2 and job["statuses"] == {"ok": 2}
    assert {"decode", "detect"} <= set(job["steps"])
    ev = results["evaluator"]
    assert ev["fixture"]["unique_images"] == 6 and ev["evaluator"]["exit_code"] == 0
    assert set(ev["naive"]) == {"main", "angle_angle", "gt_gt", "impostor"}
    assert ev["naive_pairs"] == sum(g["pairs"] for g in ev["naive"].values()) == 9
    assert ev["recognizer_raw"]["status"] == "ok"
    assert results["load"]["samples"] and results["memory"]["peak_rss_mb"] > 0


def test_markdown_structure(tiny_run: tuple[dict, str, Path]) -> None:
    results, _, out = tiny_run
    text = (out / "benchmark_quick_tiny_cpu.md").read_text()
    for heading in ("# frontalize benchmark", "## Headline figures", "## Frontal forward", "## Per network",
                    "## Achieved TFLOP/s", "## Not measured", "## Where the time goes", "## Whole inference.py job",
                    "## Evaluator vs naive per-pair loop", "## Memory"):
        assert heading in text, heading
    for name in bench_report.HEADLINE_NAMES:
        assert f"| {name} |" in text
    assert results["command"] in text
    tables = [line for line in text.splitlines() if line.startswith("|")]
    assert all(line.endswith("|") for line in tables)


def test_plan_full_and_quick_cpu() -> None:
    parser = benchmark.build_parser()
    cpu = torch.device("cpu")
    settings = benchmark.resolve_settings(parser.parse_args([]), cpu)
    plan, skips = benchmark.network_plan(settings, cpu)
    labels = [c.label for c in plan]
    assert labels[0] == "b1 fp32"  # counts the FLOPs for every later row
    assert "b4 bf16 compiled" in labels and "b1 fp32 channels_last" in labels
    assert [s["label"] for s in skips] == ["fp16 on cpu"]
    quick = benchmark.resolve_settings(parser.parse_args(["--quick"]), cpu)
    labels = [c.label for c in benchmark.network_plan(quick, cpu)[0]]
    assert labels == ["b1 fp32", "b2 fp32", "b1 bf16"]


def test_not_measured_headlines_and_peaks() -> None:
    results = {"environment": {"device": "cpu"}, "skipped_sections": {"networks": "--skip",
                                                                      "inference_job": "--skip"},
               "evaluator": {"error": "evaluate.py exit code 2"}, "memory": {"peak_rss_mb": 10.0}, "load": {}}
    figures = bench_report.headline_figures(results)
    assert figures["frontal_forward_img_per_s"] == "not measured (--skip)"
    assert figures["inference_job_img_per_s"] == "not measured (--skip)"
    assert figures["evaluator_speedup_vs_per_pair"] == "not measured (evaluate.py exit code 2)"
    assert all(_number_or_not_measured(v) or v in ("yes", "no") for v in figures.values())
    assert bench_common.peak_tflops(torch.device("cpu"), "bf16") is None
    assert bench_common.PEAK_TFLOPS["H100 SXM"]["bf16"] > bench_common.PEAK_TFLOPS["H100 SXM"]["fp32"]


def test_time_call_counts_and_median() -> None:
    calls = []
    timing = bench_common.time_call(lambda: calls.append(1), batch=4, warmup=2, repeats=3,
                                    device=torch.device("cpu"))
    assert len(calls) == 5 and len(timing.times_s) == 3 and timing.warmup == 2
    assert timing.ms_per_img == pytest.approx(1000 * timing.median_s / 4)
    assert bench_networks.RunConfig(8, "bf16", compiled=True).label == "b8 bf16 compiled"


def test_channels_last_config_restores_weights() -> None:
    networks, source = bench_networks.load_networks(None, archs=bench_networks.tiny_archs())
    cfg = bench_networks.RunConfig(batch=2, channels_last=True)
    result = bench_networks.bench_config(networks, cfg, torch.device("cpu"), warmup=1, repeats=1,
                                         gflop_per_img={"warping_module": 1.0}, image_size=64)
    assert result["label"] == "b2 fp32 channels_last" and result["frontal_forward"]["status"] == "ok"
    assert next(r for r in result["networks"] if r["network"] == "W")["gflop_per_img"] == 1.0  # carried, not counted
    assert all(p.is_contiguous() for m in networks.values() for p in m.parameters())  # layout restored
    assert source in ("fill.py", "seeded torch init")
