"""Benchmark harness, shared part: timing (median of N after warm-up), device peaks, memory, load, versions.

Used by ``scripts/benchmark.py`` and the other ``scripts/bench_*.py`` modules. Nothing here knows about
LivePortrait; it only times callables and describes the machine they ran on.
"""

from __future__ import annotations

import contextlib
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # the scripts run from a checkout, not an installed package
    sys.path.insert(0, str(REPO_ROOT))

# Dense (no sparsity) peak throughput in TFLOP/s from NVIDIA's data sheets. "fp32" is the non-tensor-core
# figure: our fp32 path switches TF32 off, so that is the bound that applies to it.
PEAK_TFLOPS: dict[str, dict[str, float]] = {
    "H100 SXM": {"fp32": 67.0, "bf16": 989.4, "fp16": 989.4},
    "H100 PCIe": {"fp32": 51.2, "bf16": 756.0, "fp16": 756.0},
    "H100 NVL": {"fp32": 60.0, "bf16": 835.0, "fp16": 835.0},
    "H200 SXM": {"fp32": 67.0, "bf16": 989.4, "fp16": 989.4},
    "H200 NVL": {"fp32": 60.0, "bf16": 835.0, "fp16": 835.0},
}

_PACKAGES = ("torch", "torchvision", "numpy", "onnxruntime", "insightface", "opencv-python-headless",
             "opencv-python", "dlib-bin", "scipy", "scikit-learn")


@dataclass(frozen=True)
class Timing:
    """Wall-clock times of one benchmarked call (one batch), after the warm-up calls.

    Attributes:
        batch: images per call.
        times_s: seconds of every timed call, in order.
        warmup: number of untimed warm-up calls made before them.
        cpu_times_s: CPU seconds of this process (all threads) during each timed call. On a shared machine the
            wall time grows with the competition for the cores, the CPU time much less.
    """

    batch: int
    times_s: tuple[float, ...]
    warmup: int
    cpu_times_s: tuple[float, ...] = ()

    @property
    def median_s(self) -> float:
        """Median seconds per call."""
        return float(statistics.median(self.times_s))

    @property
    def ms_per_img(self) -> float:
        """Median milliseconds per image."""
        return 1000.0 * self.median_s / self.batch

    @property
    def img_per_s(self) -> float:
        """Images per second at the median."""
        return self.batch / self.median_s if self.median_s > 0 else float("inf")

    @property
    def cpu_ms_per_img(self) -> float | None:
        """Median CPU milliseconds (all threads of this process) per image."""
        return 1000.0 * statistics.median(self.cpu_times_s) / self.batch if self.cpu_times_s else None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary (times rounded to µs)."""
        cpu = self.cpu_ms_per_img
        return {"batch": self.batch, "warmup": self.warmup, "repeats": len(self.times_s),
                "median_s": round(self.median_s, 6), "ms_per_img": round(self.ms_per_img, 3),
                "img_per_s": round(self.img_per_s, 4), "cpu_ms_per_img": None if cpu is None else round(cpu, 3),
                "times_s": [round(t, 6) for t in self.times_s]}


def synchronize(device: torch.device) -> None:
    """Wait for queued CUDA work (no-op on CPU); called once per timed batch, never per image."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], object], *, batch: int, warmup: int, repeats: int, device: torch.device) -> Timing:
    """Time ``fn`` ``repeats`` times after ``warmup`` untimed calls.

    Args:
        fn: the work of one batch; its result is dropped.
        batch: images per call (for the per-image figures).
        warmup: untimed calls first (oneDNN/cuDNN primitive creation, allocator growth, compilation).
        repeats: timed calls (≥ 1); the median is reported.
        device: where ``fn`` runs (CUDA is synchronised around each timed call).

    Returns:
        The timing.
    """
    for _ in range(max(0, warmup)):
        fn()
    synchronize(device)
    times, cpu_times = [], []
    for _ in range(max(1, repeats)):
        start, cpu_start = time.perf_counter(), time.process_time()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
    return Timing(batch=batch, times_s=tuple(times), warmup=max(0, warmup), cpu_times_s=tuple(cpu_times))


def peak_tflops(device: torch.device, precision: str) -> float | None:
    """Published dense peak TFLOP/s of ``device`` for ``precision`` (None for CPUs and unknown GPUs)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for family in ("H200", "H100"):
        if family not in name:
            continue
        variant = "NVL" if "NVL" in name else "PCIe" if "PCIe" in name else "SXM"
        return PEAK_TFLOPS[f"{family} {variant}"].get(precision)
    return None


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, MiB (``resource.getrusage``; Linux reports KiB)."""
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 1024.0 if sys.platform != "darwin" else kib / (1024.0 * 1024.0)


def reset_gpu_peak(device: torch.device) -> None:
    """Start a new peak-memory window on CUDA (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_gpu_mb(device: torch.device) -> float | None:
    """``torch.cuda.max_memory_allocated`` since the last reset, MiB (None on CPU)."""
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**20


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def environment(device: torch.device) -> dict[str, Any]:
    """Device, versions and thread settings of this run (for the JSON/Markdown header)."""
    info: dict[str, Any] = {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_model(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "mkldnn": torch.backends.mkldnn.is_available(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": {name: v for name in _PACKAGES if (v := _version(name)) is not None},
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version(),
                    gpu_memory_gib=round(props.total_memory / 2**30, 1))
    return info


@dataclass
class LoadMonitor:
    """Samples the 1-minute load average around each benchmark section to flag interference.

    The machine may be shared: when the load average exceeds the threads this process uses by more than
    ``margin``, the section is marked as measured under load (other processes competed for the cores).

    Attributes:
        threads: CPU threads this benchmark uses.
        margin: tolerated excess load.
        samples: (section, load before, load after, wall seconds of the section).
    """

    threads: int
    margin: float = 0.75
    samples: list[tuple[str, float, float, float]] = field(default_factory=list)

    @contextlib.contextmanager
    def section(self, name: str) -> Iterator[None]:
        """Record the load average before and after the ``with`` body, and its duration."""
        before, start = os.getloadavg()[0], time.perf_counter()
        try:
            yield
        finally:
            self.samples.append((name, round(before, 2), round(os.getloadavg()[0], 2),
                                 round(time.perf_counter() - start, 1)))

    def loaded_sections(self) -> list[str]:
        """Sections during which the load exceeded our own threads + margin."""
        limit = self.threads + self.margin
        return [name for name, before, after, _ in self.samples if max(before, after) > limit]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready record of the samples and the verdict."""
        loaded = self.loaded_sections()
        return {"threads": self.threads, "margin": self.margin, "under_load": bool(loaded),
                "loaded_sections": loaded,
                "samples": [{"section": s, "load_before": b, "load_after": a, "seconds": t}
                            for s, b, a, t in self.samples]}


def skipped(reason: str, **fields: Any) -> dict[str, Any]:
    """A result row for a benchmark that was not run, with its reason."""
    return {**fields, "status": "skipped", "reason": reason}
