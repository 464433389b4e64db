"""Benchmark harness, report part: headline figures, the JSON file and the Markdown tables.

Input is the results dict built by ``scripts/benchmark.py`` (sections ``environment``, ``settings``,
``networks``, ``profile``, ``inference_job``, ``evaluator``, ``memory``, ``load``). A figure that was not
measured is reported as ``not measured (<reason>)``, never estimated.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

NOT_MEASURED = "not measured"
CONTENDED_BELOW = 0.8
"""A CPU row whose CPU share (CPU time ÷ wall time × threads) is below this was contended by other processes."""

HEADLINE_NAMES = (
    "frontal_forward_img_per_s",
    "frontal_forward_best_config",
    "frontal_forward_batch1_fp32_img_per_s",
    "frontal_forward_speedup_vs_batch1_fp32",
    "frontal_forward_s_per_img_cpu",
    "frontal_forward_s_per_img_cpu_best",
    "inference_job_img_per_s",
    "inference_job_s_per_img",
    "evaluator_img_per_s",
    "evaluator_speedup_vs_per_pair",
    "recognizer_raw_img_per_s",
    "evaluator_fraction_of_raw_recognizer",
    "peak_rss_mb",
    "peak_gpu_mb",
    "measured_under_load",
)


def _ok(rows: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [row for row in rows if row.get("status", "ok") == "ok"]


def _forward_rows(results: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Measured network configurations (their ``frontal_forward`` row is ok)."""
    return [r for r in results.get("networks", {}).get("configs", []) if r["frontal_forward"]["status"] == "ok"]


def _baseline(configs: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The batch-1, fp32, eager, contiguous configuration (the official code's setting)."""
    want = {"batch": 1, "precision": "fp32", "compiled": False, "channels_last": False}
    return next((c for c in configs if c["config"] == want), None)


def _forward_headlines(results: Mapping[str, Any], reason: str) -> dict[str, Any]:
    configs = _forward_rows(results)
    if not configs:
        return {name: f"{NOT_MEASURED} ({reason})" for name in HEADLINE_NAMES[:6]}
    best = max(configs, key=lambda c: c["frontal_forward"]["img_per_s"])
    base = _baseline(configs)
    on_cpu = results["environment"]["device"] == "cpu"
    base_rate = base["frontal_forward"]["img_per_s"] if base else None
    cpu_note = f"{NOT_MEASURED} (device {results['environment']['device']})"
    return {
        "frontal_forward_img_per_s": best["frontal_forward"]["img_per_s"],
        "frontal_forward_best_config": best["label"],
        "frontal_forward_batch1_fp32_img_per_s": base_rate if base_rate else f"{NOT_MEASURED} (not in the plan)",
        "frontal_forward_speedup_vs_batch1_fp32": round(best["frontal_forward"]["img_per_s"] / base_rate, 3)
        if base_rate else f"{NOT_MEASURED} (no batch-1 fp32 row)",
        "frontal_forward_s_per_img_cpu": round(1.0 / base_rate, 3) if on_cpu and base_rate else cpu_note,
        "frontal_forward_s_per_img_cpu_best": round(1.0 / best["frontal_forward"]["img_per_s"], 3)
        if on_cpu else cpu_note,
    }


def headline_figures(results: Mapping[str, Any]) -> dict[str, Any]:
    """One value per name of :data:`HEADLINE_NAMES` (numbers, or a ``not measured (...)`` string)."""
    skipped = results.get("skipped_sections", {})
    figures = _forward_headlines(results, skipped.get("networks", "skipped"))
    job = results.get("inference_job")
    job_reason = f"{NOT_MEASURED} ({(job or {}).get('error') or skipped.get('inference_job', 'skipped')})"
    figures["inference_job_img_per_s"] = job["img_per_s"] if job and job.get("img_per_s") else job_reason
    figures["inference_job_s_per_img"] = job["s_per_img"] if job and job.get("s_per_img") else job_reason
    ev = results.get("evaluator")
    ev_reason = f"{NOT_MEASURED} ({(ev or {}).get('error') or skipped.get('evaluator', 'skipped')})"
    ev = None if ev and ev.get("error") else ev
    raw = (ev or {}).get("recognizer_raw", {})
    figures["evaluator_img_per_s"] = ev["evaluator"]["img_per_s"] if ev else ev_reason
    figures["evaluator_speedup_vs_per_pair"] = ev["speedup_vs_per_pair"] if ev else ev_reason
    figures["recognizer_raw_img_per_s"] = raw["img_per_s"] if raw.get("status") == "ok" else ev_reason
    figures["evaluator_fraction_of_raw_recognizer"] = (ev or {}).get("fraction_of_raw_recognizer", ev_reason)
    memory = results.get("memory", {})
    figures["peak_rss_mb"] = memory.get("peak_rss_mb")
    gpu = memory.get("peak_gpu_mb")
    figures["peak_gpu_mb"] = gpu if gpu is not None else f"{NOT_MEASURED} (no CUDA device)"
    figures["measured_under_load"] = "yes" if results.get("load", {}).get("under_load") or contended_rows(results) \
        else "no"
    return {name: figures[name] for name in HEADLINE_NAMES}


def contended_rows(results: Mapping[str, Any]) -> list[str]:
    """Labels of the CPU network configurations whose whole-forward CPU share shows contention."""
    return [c["label"] for c in _forward_rows(results)
            if (c["frontal_forward"].get("cpu_share") or 1.0) < CONTENDED_BELOW]


def headline_lines(figures: Mapping[str, Any]) -> list[str]:
    """``name: value`` lines, one per headline figure."""
    return [f"{name}: {value}" for name, value in figures.items()]


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    def cell(value: Any) -> str:
        if value is None:
            return "–"
        if isinstance(value, float):
            return f"{value:.4g}" if abs(value) < 1000 else f"{value:.0f}"
        return str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return [*lines, ""]


def _network_sections(results: Mapping[str, Any]) -> list[str]:
    section = results.get("networks")
    if not section:
        return []
    configs = section.get("configs", [])
    base = _baseline(configs)
    base_rate = base["frontal_forward"]["img_per_s"] if base else None
    out = ["## Frontal forward (`LivePortraitFrontalizer.frontalize`, F+M+S+W+G and geometry)", ""]
    out += _table(["config", "ms/img", "img/s", "× batch-1 fp32", "Σ networks ms/img", "CPU ms/img (all threads)",
                   "CPU share", "peak GPU MiB", "repeats"],
                  [(c["label"], c["frontal_forward"].get("ms_per_img"), c["frontal_forward"].get("img_per_s"),
                    round(c["frontal_forward"]["img_per_s"] / base_rate, 3)
                    if base_rate and c["frontal_forward"].get("img_per_s") else None,
                    c["frontal_forward"].get("sum_of_networks_ms_per_img"), c["frontal_forward"].get("cpu_ms_per_img"),
                    c["frontal_forward"].get("cpu_share"), c.get("peak_gpu_mb"),
                    c["frontal_forward"].get("repeats", c["frontal_forward"].get("reason")))
                   for c in configs])
    out += [f"CPU share = CPU time ÷ (wall time × threads); below {CONTENDED_BELOW} the threads waited for cores "
            "taken by other processes and the row's wall time is inflated.", ""]
    out += ["## Per network, ms per image", ""]
    names = ("F", "M", "S", "W", "G")
    out += _table(["config", *names], [(c["label"], *[next((r["ms_per_img"] for r in c["networks"]
                                                            if r["network"] == n), None) for n in names])
                                       for c in configs])
    out += ["## Achieved TFLOP/s of W and G (FLOPs counted with torch.utils.flop_counter)", ""]
    rows = []
    for c in configs:
        for r in c["networks"]:
            if r["network"] in ("W", "G"):
                rows.append((c["label"], r["network"], r.get("gflop_per_img"), r.get("achieved_tflops"),
                             r.get("peak_tflops", "n/a (no known peak)"), r.get("fraction_of_peak")))
    out += _table(["config", "net", "GFLOP/img", "achieved TFLOP/s", "device peak TFLOP/s", "fraction"], rows)
    if section.get("skipped"):
        out += ["## Not measured", ""]
        out += _table(["config", "reason"], [(s["label"], s["reason"]) for s in section["skipped"]])
    return out


def _profile_section(results: Mapping[str, Any]) -> list[str]:
    profile = results.get("profile")
    if not profile:
        return []
    out = [f"## Where the time goes: {profile['label']}", ""]
    out += _table(["part", "ms/img", "share of the forward"],
                  [(row["part"], row["ms_per_img"], row["share"]) for row in profile["parts"]])
    ops_by_net = profile.get("ops") or {}
    if "error" in ops_by_net:
        return [*out, f"Operator profile: {NOT_MEASURED} ({ops_by_net['error']})", ""]
    for net, ops in ops_by_net.items():
        out += [f"Top operators of {net} (torch.profiler, self CPU time):", ""]
        out += _table(["op", "calls", "self ms", "share"], [(o["op"], o["calls"], o["self_ms"], o["share"])
                                                             for o in ops])
    return out


def _job_section(results: Mapping[str, Any]) -> list[str]:
    job = results.get("inference_job")
    if not job:
        return []
    if not job.get("img_per_s"):
        command = f"Command: `{job['command']}`" if job.get("command") else ""
        return [f"## Whole inference.py job: {NOT_MEASURED} ({job.get('error')})", "", command, ""]
    out = ["## Whole inference.py job", "", f"Command: `{job['command']}`", ""]
    out += _table(["images", "backend", "batch", "precision", "loop s", "img/s (loop)", "s/img (loop)",
                   "model load s", "wall s (incl. start-up)", "CPU share", "statuses"],
                  [(job["images"], job.get("backend", "liveportrait"), job["batch_size"], job["precision"],
                    job["loop_s"], job["img_per_s"], job["s_per_img"], job["model_load_s"], job["wall_s"],
                    job.get("cpu_share"), ", ".join(f"{k} {v}" for k, v in job["statuses"].items()))])
    out += ["Where the time goes (manifest per-step timings; with workers the steps overlap):", ""]
    out += _table(["step", "ms/img", "share of step time"],
                  [(step, v["ms_per_img"], v["share"]) for step, v in job["steps"].items()])
    return out


def _eval_section(results: Mapping[str, Any]) -> list[str]:
    ev = results.get("evaluator")
    if not ev or ev.get("error"):
        return [f"## Evaluator: {NOT_MEASURED} ({ev['error']})", ""] if ev else []
    fx, e = ev["fixture"], ev["evaluator"]
    out = ["## Evaluator vs naive per-pair loop (same run, same models: " + ev["combination"] + ")", "",
           f"Fixture: BIWI layout, {fx['subjects']} subjects × {fx['frames_per_subject']} frames "
           f"({fx['probes']} probes, {fx['unique_images']} unique images). Command: `{e['command']}`", ""]
    rows = [(f"evaluate.py (cold cache; {e.get('decoded')} distinct images decoded, faces embedded →)",
             e.get("embedded"), None, e["wall_s"], e["img_per_s"])]
    rows += [(f"naive loop: {name} pairs", g["images_processed"], g["pairs"], g["seconds"], g["img_per_s"])
             for name, g in ev.get("naive", {}).items()]
    if "naive_pairs" in ev:
        rows.append(("naive loop: all report pairs", 2 * ev["naive_pairs"], ev["naive_pairs"],
                     ev["naive_all_pairs_s"], None))
    out += _table(["what", "images processed", "pairs", "seconds", "img/s"], rows)
    raw = ev["recognizer_raw"]
    out += _table(["figure", "value"], [
        ("evaluator speed-up vs per-pair loop (all report pairs)", ev["speedup_vs_per_pair"]),
        ("evaluator speed-up vs per-pair loop (main table pairs only)", ev["speedup_vs_per_pair_main_table"]),
        ("evaluator embedding pass, s", e["embedding_pass_s"]),
        ("recognizer alone, batched, img/s", raw.get("img_per_s", raw.get("reason"))),
        ("evaluator img/s ÷ recognizer img/s", ev.get("fraction_of_raw_recognizer")),
        ("embedding pass img/s ÷ recognizer img/s", ev.get("embedding_pass_fraction_of_raw_recognizer")),
    ])
    return out


def _header(results: Mapping[str, Any]) -> list[str]:
    env, settings, load = results["environment"], results["settings"], results.get("load", {})
    versions = ", ".join(f"{k} {v}" for k, v in env.get("versions", {}).items())
    loaded = (f"yes — the 1-minute load average exceeded the {load.get('threads')} threads of this run by more "
              f"than {load.get('margin')} during: {', '.join(load.get('loaded_sections', []))}"
              if load.get("under_load") else "no")
    contended = contended_rows(results)
    if contended:
        loaded += f"; contended network rows (CPU share < {CONTENDED_BELOW}): {', '.join(contended)}"
    return [f"# frontalize benchmark — {settings['mode']} — {env['device_name']}", "",
            f"- date: {results['date']}; command: `{results['command']}`; whole run "
            f"{results.get('elapsed_s', '?')} s (the executor comparison section, if any, included)",
            f"- device: {env['device']} ({env['device_name']}), {env['cpu_count']} CPU cores, torch threads "
            f"{env['torch_threads']} (interop {env['torch_interop_threads']})",
            f"- versions: python {env['python']}, {versions}",
            f"- settings: {json.dumps(settings, sort_keys=True)}",
            f"- measured under load (other processes on the machine): {loaded}",
            "- timings: median of the timed repeats after the warm-up calls; never estimated", ""]


def markdown_report(results: Mapping[str, Any]) -> str:
    """The whole Markdown report."""
    figures = results.get("headlines") or headline_figures(results)
    lines = [*_header(results), "## Headline figures", ""]
    lines += _table(["name", "value"], figures.items())
    for part in (_network_sections, _profile_section, _job_section, _eval_section):
        lines += part(results)
    memory = results.get("memory", {})
    samples = results.get("load", {}).get("samples", [])
    if samples:
        lines += ["## Sections: duration and 1-minute load average", "",
                  *_table(["section", "seconds", "load before", "load after"],
                          [(x["section"], x.get("seconds"), x["load_before"], x["load_after"]) for x in samples])]
    rows = [("peak RSS MiB (getrusage)", memory.get("peak_rss_mb")),
            ("peak GPU MiB (max_memory_allocated)", memory.get("peak_gpu_mb"))]
    lines += ["## Memory", "", *_table(["figure", "value"], rows)]
    return "\n".join(lines)


def write_reports(results: Mapping[str, Any], out_dir: Path, stem: str) -> tuple[Path, Path]:
    """Write ``<stem>.json`` and ``<stem>.md`` into ``out_dir`` (created); return both paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / f"{stem}.json", out_dir / f"{stem}.md"
    json_path.write_text(json.dumps(results, indent=2, sort_keys=False, default=str) + "\n")
    md_path.write_text(markdown_report(results) + "\n")
    return json_path, md_path
