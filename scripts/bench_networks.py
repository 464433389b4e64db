"""Benchmark harness, LivePortrait part: per-network (F, M, S, W, G) and whole frontal-forward timings.

For one :class:`RunConfig` (batch size, precision, torch.compile on/off, channels_last on/off) it times each
network on realistic inputs (produced by running the chain once, which is also the warm-up), then the whole
``LivePortraitFrontalizer.frontalize`` call, and counts the FLOPs of every network with
``torch.utils.flop_counter.FlopCounterMode`` during that first, untimed pass. Timings do not depend on the weight
values, so the official checkpoints are used when present and deterministic values otherwise.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from bench_common import REPO_ROOT, Timing, peak_gpu_mb, peak_tflops, reset_gpu_peak, time_call
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from frontalize.liveportrait import LivePortraitFrontalizer, build_network, load_official
from frontalize.liveportrait.arch import (
    AppearanceArch,
    DenseMotionArch,
    MlpArch,
    MotionArch,
    SpadeArch,
    WarpingArch,
)
from frontalize.liveportrait.frontalizer import compile_network, fold_inference_weights
from frontalize.liveportrait.loading import LP_WEIGHT_KEYS
from frontalize.weights import weight_path

log = logging.getLogger("benchmark")

SHORT_NAMES: dict[str, str] = {"appearance_feature_extractor": "F", "motion_extractor": "M", "stitching": "S",
                               "warping_module": "W", "spade_generator": "G"}
NETWORKS = tuple(SHORT_NAMES)
_COMPILED = ("appearance_feature_extractor", "motion_extractor", "warping_module", "spade_generator")
# channels_last (4-D) / channels_last_3d (5-D) weights and activations for the convolutional networks
_CHANNELS_LAST = ("appearance_feature_extractor", "motion_extractor", "warping_module", "spade_generator")


@dataclass(frozen=True)
class RunConfig:
    """One point of the benchmark grid.

    Attributes:
        batch: images per call.
        precision: ``fp32`` (exact), ``fp16`` or ``bf16`` (autocast of the networks).
        compiled: wrap F, M, W, G in ``torch.compile``.
        channels_last: channels-last (2-D) / channels-last-3d (3-D) weights and activations of F, M, W, G.
    """

    batch: int
    precision: str = "fp32"
    compiled: bool = False
    channels_last: bool = False

    @property
    def label(self) -> str:
        """Short human-readable name, e.g. ``b4 bf16 compiled``."""
        extras = [name for name, on in (("compiled", self.compiled), ("channels_last", self.channels_last)) if on]
        return " ".join([f"b{self.batch}", self.precision, *extras])

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {"batch": self.batch, "precision": self.precision, "compiled": self.compiled,
                "channels_last": self.channels_last}


def tiny_archs() -> dict[str, Any]:
    """Small hyper-parameters of every network (same topology, 4 keypoints) for fast smoke tests."""
    return {
        "appearance_feature_extractor": AppearanceArch(block_expansion=4, max_features=16, reshape_channel=4,
                                                       reshape_depth=4, num_resblocks=1),
        "motion_extractor": MotionArch(num_kp=4, depths=(1, 1, 1, 1), dims=(8, 8, 16, 16)),
        "warping_module": WarpingArch(num_kp=4, block_expansion=4, max_features=16, reshape_channel=4,
                                      dense_motion=DenseMotionArch(block_expansion=4, max_features=16,
                                                                   num_blocks=2, reshape_depth=4, compress=1)),
        "spade_generator": SpadeArch(block_expansion=4, max_features=16, out_channels=8, num_middle_blocks=1,
                                     hidden_channels=8),
        "stitching": MlpArch(in_features=24, hidden_features=(16,), out_features=14),
    }


def golden_dir() -> Path | None:
    """The LivePortrait golden folder (``$FRONTALIZE_GOLDEN_DIR`` or ``../shared/golden/liveportrait``)."""
    candidates = [Path(p) for p in (os.environ.get("FRONTALIZE_GOLDEN_DIR"),) if p]
    candidates += [REPO_ROOT.parent / "shared" / "golden" / "liveportrait",
                   REPO_ROOT / "shared" / "golden" / "liveportrait"]
    return next((c for c in candidates if (c / "fill.py").is_file()), None)


def _import_fill() -> ModuleType | None:
    """Import ``fill.py`` from the golden folder by path (it is not part of the package)."""
    folder = golden_dir()
    if folder is None:
        return None
    spec = importlib.util.spec_from_file_location("lp_golden_fill", folder / "fill.py")
    if spec is None or spec.loader is None:
        return None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fill_weights(module: nn.Module, fill: ModuleType) -> None:
    """Load fill.py's deterministic values for ``module``'s own key names and shapes (strict)."""
    shapes = {key: tuple(value.shape) for key, value in module.state_dict().items()}
    values = fill.deterministic_state_dict(shapes)
    module.load_state_dict({key: torch.from_numpy(value) for key, value in values.items()}, strict=True)


def official_weights_present(weights_dir: Path | None) -> bool:
    """Whether every LivePortrait checkpoint file exists under ``weights_dir``."""
    return weights_dir is not None and all(weight_path(key, weights_dir).is_file() for key in LP_WEIGHT_KEYS)


def load_networks(weights_dir: Path | None, *, archs: Mapping[str, Any] | None = None,
                  allow_unverified: bool = False) -> tuple[dict[str, nn.Module], str]:
    """The five networks of the frontal forward, on CPU, eval mode, fp32.

    Args:
        weights_dir: weights root; the official checkpoints are used when all of them are there
            (and ``archs`` is None).
        archs: hyper-parameters per network (tiny ones for tests); None = the released models.
        allow_unverified: accept official files without checking their sizes and checksums.

    Returns:
        (networks, weight source): source is ``official``, ``fill.py`` or ``seeded torch init``.
    """
    if archs is None and official_weights_present(weights_dir):
        loaded = load_official(weights_dir, allow_unverified=allow_unverified)  # type: ignore[arg-type]
        return {name: loaded[name] for name in NETWORKS}, "official"
    archs = dict(archs or {})
    fill = _import_fill()
    torch.manual_seed(0)  # the fallback: torch's default init, seeded (timings do not depend on values)
    networks = {name: build_network(name, archs.get(name)) for name in NETWORKS}
    if fill is None:
        log.warning("golden fill.py not found: using seeded torch init weights")
        return networks, "seeded torch init"
    for module in networks.values():
        _fill_weights(module, fill)
    return networks, "fill.py"


def _channels_last(module: nn.Module, enable: bool) -> None:
    """Switch 4-D / 5-D conv weights to channels-last(-3d), or back to contiguous (in place)."""
    for param in module.parameters():
        if param.dim() in (4, 5):
            param.data = param.data.contiguous(memory_format=_format(param.dim(), enable))


def _format(ndim: int, channels_last: bool) -> torch.memory_format:
    if not channels_last:
        return torch.contiguous_format
    return torch.channels_last if ndim == 4 else torch.channels_last_3d


def _layout(x: Tensor, enable: bool) -> Tensor:
    """``x`` in channels-last(-3d) layout when asked (4-D and 5-D tensors)."""
    return x.contiguous(memory_format=_format(x.dim(), True)) if enable and x.dim() in (4, 5) else x


def autocast_context(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    """Autocast to fp16/bf16 on ``device`` (no-op for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.float16 if precision == "fp16" else torch.bfloat16
    return torch.autocast(device.type, dtype=dtype)


@contextlib.contextmanager
def prepared_networks(networks: Mapping[str, nn.Module], cfg: RunConfig,
                      device: torch.device) -> Iterator[dict[str, nn.Module]]:
    """The networks on ``device`` in the memory format of ``cfg``, compiled if asked (restored afterwards).

    Derived weights are folded after the layout change (as ``LivePortraitFrontalizer`` does), so the per-network
    timings and the compiled graphs use the folded buffers.
    """
    for name, module in networks.items():
        module.to(device)
        _channels_last(module, cfg.channels_last and name in _CHANNELS_LAST)
        fold_inference_weights(module)
    try:
        yield {name: compile_network(module) if cfg.compiled and name in _COMPILED else module
               for name, module in networks.items()}
    finally:
        for module in networks.values():
            _channels_last(module, False)


def _counted(flops: dict[str, int] | None, name: str, fn: Callable[[], Any]) -> Any:
    """Run ``fn``; when ``flops`` is given, count its FLOPs into ``flops[name]``."""
    if flops is None:
        return fn()
    with FlopCounterMode(display=False) as counter:
        result = fn()
    flops[name] = int(counter.get_total_flops())
    return result


def network_calls(networks: Mapping[str, nn.Module], x: Tensor, cfg: RunConfig,
                  flops: dict[str, int] | None = None) -> dict[str, Callable[[], Any]]:
    """One zero-argument call per network, on inputs made by running the chain once (F, M, S, W, G).

    Args:
        networks: prepared networks.
        x: B×3×256×256 input in [0, 1].
        cfg: its memory format is applied to the inputs.
        flops: filled with the FLOPs of each network's first call when given.

    Returns:
        name → callable running that network on its input (under the caller's autocast/inference mode).
    """
    net = networks
    x = _layout(x, cfg.channels_last)
    feature = _counted(flops, "appearance_feature_extractor", lambda: net["appearance_feature_extractor"](x))
    feature = _layout(feature.float(), cfg.channels_last)
    motion = _counted(flops, "motion_extractor", lambda: net["motion_extractor"](x))
    x_s = motion["kp"].float().reshape(x.shape[0], -1, 3)
    x_d = x_s + 0.02  # a small edit; W's cost does not depend on the keypoint values
    rows = torch.cat([x_s.flatten(1), x_d.flatten(1)], dim=1)
    _counted(flops, "stitching", lambda: net["stitching"](rows))
    warped = _counted(flops, "warping_module",
                      lambda: net["warping_module"](feature, kp_driving=x_d, kp_source=x_s))["out"]
    warped = _layout(warped.float(), cfg.channels_last)
    _counted(flops, "spade_generator", lambda: net["spade_generator"](warped))
    return {
        "appearance_feature_extractor": lambda: net["appearance_feature_extractor"](x),
        "motion_extractor": lambda: net["motion_extractor"](x),
        "stitching": lambda: net["stitching"](rows),
        "warping_module": lambda: net["warping_module"](feature, kp_driving=x_d, kp_source=x_s),
        "spade_generator": lambda: net["spade_generator"](warped),
    }


def cpu_share(timing: Timing, device: torch.device) -> float | None:
    """CPU time ÷ (wall time × torch threads) on CPU: ≈ 1 when the run had its cores to itself.

    A clearly lower value means the threads waited for cores taken by other processes (a contended row).
    """
    cpu = timing.cpu_ms_per_img
    if device.type != "cpu" or cpu is None or timing.ms_per_img <= 0:
        return None
    return round(cpu / (timing.ms_per_img * torch.get_num_threads()), 3)


def _network_row(name: str, timing: Timing, gflop: float | None, peak: float | None,
                 device: torch.device) -> dict[str, Any]:
    row: dict[str, Any] = {"network": SHORT_NAMES[name], "name": name, "status": "ok", **timing.as_dict(),
                           "cpu_share": cpu_share(timing, device)}
    if gflop:
        achieved = gflop * timing.img_per_s / 1000.0
        row.update(gflop_per_img=round(gflop, 6), achieved_tflops=round(achieved, 4))
        if peak:
            row.update(peak_tflops=peak, fraction_of_peak=round(achieved / peak, 4))
    return row


def _total_gflop(rows: list[dict[str, Any]]) -> float | None:
    values = [row.get("gflop_per_img") for row in rows]
    return round(sum(v for v in values if v), 3) if any(values) else None


def gflop_table(result: Mapping[str, Any]) -> dict[str, float]:
    """network name → GFLOP per image, from a :func:`bench_config` result (empty when none were counted)."""
    return {row["name"]: row["gflop_per_img"] for row in result["networks"] if row.get("gflop_per_img")}


def _frontal_forward(networks: Mapping[str, nn.Module], x: Tensor, cfg: RunConfig,
                     device: torch.device) -> Callable[[], Any]:
    """The whole ``LivePortraitFrontalizer.frontalize`` call for ``cfg``.

    The frontalizer autocasts only on CUDA; on CPU, bf16 is measured by wrapping its fp32 path in CPU autocast
    (which then also covers the small stitching MLP and the keypoint geometry).
    """
    on_cuda = device.type == "cuda"
    frontalizer = LivePortraitFrontalizer(networks, device=device, precision=cfg.precision if on_cuda else "fp32")
    outer = contextlib.nullcontext() if on_cuda else autocast_context(device, cfg.precision)

    def run() -> Tensor:
        with outer:
            return frontalizer.frontalize(x)["image"]

    return run


def bench_config(networks: Mapping[str, nn.Module], cfg: RunConfig, device: torch.device, *, warmup: int,
                 repeats: int, gflop_per_img: Mapping[str, float] | None = None, image_size: int = 256,
                 seed: int = 0) -> dict[str, Any]:
    """Per-network and whole-forward timings of one configuration.

    Args:
        networks: the five networks (any device; moved to ``device``).
        cfg: batch, precision, compile, memory format.
        device: where to run.
        warmup: untimed calls per network and for the whole forward (the first pass that makes the inputs
            counts as one).
        repeats: timed calls; the median is reported.
        gflop_per_img: known GFLOP per image of each network; when None they are counted during the first pass
            (only for eager fp32: the counter cannot see through autocast decompositions or compiled graphs).
        image_size: side of the square input (256 for the real networks; smaller only for smoke tests).
        seed: seed of the random input batch.

    Returns:
        ``{"config", "networks": [rows], "frontal_forward": row, "peak_gpu_mb"}``; every row has ms/img, img/s
        and the raw times; W and G rows add GFLOP/img and achieved TFLOP/s (and the device peak on known GPUs).
    """
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(cfg.batch, 3, image_size, image_size, generator=generator).to(device)
    reset_gpu_peak(device)
    peak = peak_tflops(device, cfg.precision)
    count = gflop_per_img is None and cfg.precision == "fp32" and not cfg.compiled
    flops: dict[str, int] | None = {} if count else None
    rows = []
    with prepared_networks(networks, cfg, device) as nets, torch.inference_mode():
        with autocast_context(device, cfg.precision):
            calls = network_calls(nets, x, cfg, flops)
            for name in NETWORKS:
                timing = time_call(calls[name], batch=cfg.batch, warmup=warmup - 1, repeats=repeats, device=device)
                gflop = flops[name] / cfg.batch / 1e9 if flops else (gflop_per_img or {}).get(name)
                rows.append(_network_row(name, timing, gflop, peak, device))
        whole = time_call(_frontal_forward(nets, x, cfg, device), batch=cfg.batch, warmup=max(0, warmup - 1),
                          repeats=repeats, device=device)
    network_ms = sum(row["ms_per_img"] for row in rows)
    forward = {"status": "ok", **whole.as_dict(), "cpu_share": cpu_share(whole, device),
               "sum_of_networks_ms_per_img": round(network_ms, 3),
               "other_ms_per_img": round(whole.ms_per_img - network_ms, 3),
               "gflop_per_img": _total_gflop(rows)}
    log.info("%-28s frontal forward %.1f ms/img (%.3f img/s)", cfg.label, whole.ms_per_img, whole.img_per_s)
    return {"config": cfg.as_dict(), "label": cfg.label, "networks": rows, "frontal_forward": forward,
            "peak_gpu_mb": peak_gpu_mb(device)}


def profile_networks(networks: Mapping[str, nn.Module], device: torch.device, *, batch: int = 1,
                     top: int = 6, image_size: int = 256) -> dict[str, list[dict[str, Any]]]:
    """Operator-level profile of one fp32 call of each network (``torch.profiler``), top ops by self time.

    Returns:
        short network name → rows ``{op, calls, self_ms, share}`` (share of that network's total self time).
    """
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    cfg = RunConfig(batch=batch)
    x = torch.rand(batch, 3, image_size, image_size, generator=torch.Generator().manual_seed(0)).to(device)
    result: dict[str, list[dict[str, Any]]] = {}
    with prepared_networks(networks, cfg, device) as nets, torch.inference_mode():
        calls = network_calls(nets, x, cfg)
        for name in NETWORKS:
            with profile(activities=activities) as prof:
                calls[name]()
            events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
            total = sum(e.self_cpu_time_total for e in events) or 1.0
            events.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
            result[SHORT_NAMES[name]] = [
                {"op": e.key, "calls": e.count, "self_ms": round(e.self_cpu_time_total / 1000.0, 2),
                 "share": round(e.self_cpu_time_total / total, 4)} for e in events[:top]]
    return result
