"""LivePortraitFrontalizer: batched pose editing of 256×256 face crops with the LivePortrait networks.

Pipeline per source face (reference §4.7; the frontal default is exactly the recipe of ``frontalize_e2e.npz``):

1. ``f_s = F(I_s)``, motion ``M(I_s)`` → pose (degrees), x_c, δ, s, t; ``x_s = s·(x_c·R_s + δ) + (t_x, t_y, 0)``.
2. Target keypoints ``x_d = s·(x_c·R_target + δ') + (t_x, t_y, 0)`` (R_target = I for frontal; δ' = δ, or the
   neutralized expression).
3. Stitching: ``x_d ← x_d + S(x_s, x_d)`` (per-keypoint Δ plus a shared Δt_x, Δt_y).
4. ``image = G(W(f_s, kp_driving=x_d, kp_source=x_s).out)`` → B×3×512×512 in [0, 1].

:meth:`LivePortraitFrontalizer.extract` runs F and M once; :meth:`~LivePortraitFrontalizer.render` renders any
number of targets per source as one larger batch through W and G.
"""

from __future__ import annotations

import logging
import typing
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor, nn

from frontalize.config.targets import TargetPose
from frontalize.errors import ConfigError, DeviceError
from frontalize.liveportrait import geometry as geo

logger = logging.getLogger(__name__)

__all__ = ["LivePortraitFrontalizer", "PoseTarget", "Precision", "SourceState", "compile_network",
           "fold_inference_weights"]

Precision = Literal["fp32", "fp16", "bf16"]
_AUTOCAST_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}
_BASE_NETWORKS = ("appearance_feature_extractor", "motion_extractor", "warping_module", "spade_generator")
_STITCHING = "stitching"
# The convolutional networks; the stitching MLP (microseconds) and the keypoint geometry stay eager.
_COMPILED_NETWORKS = _BASE_NETWORKS


@dataclass(frozen=True)
class PoseTarget(TargetPose):
    """One pose edit of the source keypoints: the target pose (:class:`~frontalize.config.targets.TargetPose`:
    ``mode``, ``alpha``, ``pitch``, ``yaw``, ``roll``) and LivePortrait's own switches.

    Attributes:
        expression: ``keep`` the source expression δ or ``neutralize`` it
            (:func:`frontalize.liveportrait.geometry.neutralize_expression`).
        stitching: apply the stitching network S (keeps the crop border aligned for paste-back).
    """

    expression: Literal["keep", "neutralize"] = field(
        default="keep", metadata={"help": "keep the source expression or neutralize eyes, brows and mouth"})
    stitching: bool = field(default=True, metadata={"help": "apply the stitching network S"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.expression not in ("keep", "neutralize"):
            raise ConfigError(f"PoseTarget.expression: expected keep or neutralize, got {self.expression!r}")


@dataclass(frozen=True)
class SourceState:
    """Everything F and M give for a batch of B source crops (computed once, reused by every render).

    Attributes:
        feature: f_s, B×32×16×64×64 appearance feature volume.
        motion: parsed motion (pose in degrees, x_c, δ, s, t).
        rotation: R_s, B×3×3.
        x_s: source keypoints B×K×3.
        raw_motion: the motion extractor's raw outputs (logits etc.).
    """

    feature: Tensor
    motion: geo.MotionInfo
    rotation: Tensor
    x_s: Tensor
    raw_motion: Mapping[str, Tensor]

    @property
    def batch_size(self) -> int:
        """Number of source faces B."""
        return int(self.x_s.shape[0])


@contextmanager
def _tf32_disabled() -> Iterator[None]:
    """Exact fp32 on CUDA: switch TF32 off for the duration (restored afterwards)."""
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    saved = (matmul.allow_tf32, cudnn.allow_tf32)
    matmul.allow_tf32, cudnn.allow_tf32 = False, False
    try:
        yield
    finally:
        matmul.allow_tf32, cudnn.allow_tf32 = saved


def fold_inference_weights(module: nn.Module) -> int:
    """Fold the derived inference weights of every submodule of ``module`` that has ``fold_inference_weights()``.

    The folded values are non-persistent buffers (``state_dict()`` keeps the official keys) that follow
    ``.to()``/``.half()`` and are re-folded by ``load_state_dict``; forward then reads them instead of deriving the
    weights per call, which also gives ``torch.compile`` a static graph.

    Args:
        module: a network (modified in place).

    Returns:
        The number of submodules folded.
    """
    folded = 0
    for submodule in module.modules():
        fold = getattr(submodule, "fold_inference_weights", None)
        if callable(fold):
            fold()
            folded += 1
    return folded


def compile_network(module: nn.Module) -> nn.Module:
    """``torch.compile`` a folded network for fixed input shapes (inductor, default mode).

    ``dynamic=False``: every batch shape gets its own specialised graph (a job sees at most two: the batch size and
    the last, smaller batch). The default mode is kept on CUDA too: "reduce-overhead" records CUDA graphs (memory
    per shape, and unsafe for outputs kept across calls), and "max-autotune" spends minutes benchmarking GEMM/conv
    choices per network for convolution-bound nets whose convolutions go to cuDNN/oneDNN either way.

    Args:
        module: a network whose derived weights are already folded.

    Returns:
        The compiled module (compilation happens on the first call).
    """
    logger.debug("torch.compile %s (dynamic=False)", type(module).__name__)
    return typing.cast(nn.Module, torch.compile(module, dynamic=False))


def _resolve_device(networks: Mapping[str, nn.Module], device: torch.device | str | None) -> torch.device:
    if device is None:
        first = next(iter(networks[_BASE_NETWORKS[0]].parameters()), None)
        return first.device if first is not None else torch.device("cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"device {str(device)!r} was requested but CUDA is not available")
    return resolved


class LivePortraitFrontalizer:
    """Batched LivePortrait frontalization / pose editing of 256×256 face crops.

    Args:
        networks: name → module for ``appearance_feature_extractor``, ``motion_extractor``, ``warping_module``,
            ``spade_generator`` and ``stitching`` (``retarget_lip``/``retarget_eye`` may be present; unused). The
            modules are moved to ``device`` and put in eval mode (in place).
        device: torch device; default: the device of the appearance network's parameters.
        precision: ``fp32`` (exact: TF32 off on CUDA), or ``fp16``/``bf16`` autocast of F, M, W, G (the
            stitching MLP and all geometry stay fp32). ``bf16`` also runs on the CPU, where it halves the forward
            on CPUs with native bf16 (measured 3.2-3.4 -> 1.7 s/img on 2 cores, docs/PERFORMANCE.md) at a
            visible accuracy cost; ``fp16`` needs CUDA.
        compile: ``torch.compile`` F, M, W and G (after folding their derived weights); the first call of each
            batch shape pays the compilation (tens of seconds to minutes).

    Raises:
        ValueError: a required network is missing.
        ConfigError: unknown precision, or fp16 on a non-CUDA device.
        DeviceError: CUDA requested but not available.
    """

    def __init__(self, networks: Mapping[str, nn.Module], *, device: torch.device | str | None = None,
                 precision: Precision = "fp32", compile: bool = False) -> None:
        missing = [name for name in (*_BASE_NETWORKS, _STITCHING) if name not in networks]
        if missing:
            raise ValueError(f"LivePortraitFrontalizer: missing networks {', '.join(missing)}")
        if precision not in ("fp32", "fp16", "bf16"):
            raise ConfigError(f"precision: expected fp32, fp16 or bf16, got {precision!r}")
        self.device = _resolve_device(networks, device)
        if precision == "fp16" and self.device.type != "cuda":
            raise ConfigError(f"precision 'fp16' needs a CUDA device (got {self.device}); use fp32 or bf16")
        self.precision: Precision = precision
        self.networks = {name: module.to(self.device).eval() for name, module in networks.items()}
        for module in self.networks.values():
            fold_inference_weights(module)
        self.compiled = bool(compile)
        if self.compiled:
            for name in _COMPILED_NETWORKS:
                self.networks[name] = compile_network(self.networks[name])
        logger.debug("LivePortraitFrontalizer on %s, precision %s, compiled %s", self.device, precision,
                     self.compiled)

    # ---- precision contexts ----------------------------------------------------------------------------------
    def _network_context(self) -> AbstractContextManager[object]:
        """Autocast for F, M, W, G (fp16/bf16), or exact fp32 (TF32 off on CUDA)."""
        if self.precision != "fp32":
            return torch.autocast(self.device.type, dtype=_AUTOCAST_DTYPES[self.precision])
        return _tf32_disabled() if self.device.type == "cuda" else nullcontext()

    def _exact_context(self) -> AbstractContextManager[object]:
        """fp32 without TF32 for the MLPs and geometry."""
        return _tf32_disabled() if self.device.type == "cuda" else nullcontext()

    def _prepare(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor) or x.ndim != 4 or x.shape[1] != 3 or not x.is_floating_point():
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"expected a B×3×H×W float tensor in [0, 1], got {shape}; "
                             "use frontalize.liveportrait.crop.images_to_tensor for uint8 images")
        return x.to(device=self.device, dtype=torch.float32, non_blocking=True)

    def _motion(self, x: Tensor) -> dict[str, Tensor]:
        with self._network_context():
            raw = self.networks["motion_extractor"](x)
        return {name: value.float() for name, value in raw.items()}

    # ---- public API -------------------------------------------------------------------------------------------
    @torch.inference_mode()
    def extract(self, x: Tensor) -> SourceState:
        """Run F and M once on a batch of source crops.

        Args:
            x: B×3×256×256 float RGB in [0, 1].

        Returns:
            The source state (f_s, motion, R_s, x_s) on this frontalizer's device.
        """
        x = self._prepare(x)
        with self._network_context():
            feature = self.networks["appearance_feature_extractor"](x).float()
        raw = self._motion(x)
        with self._exact_context():
            motion = geo.parse_motion(raw)
            rotation = geo.rotation_matrix(motion.pitch, motion.yaw, motion.roll)
            x_s = geo.transform_keypoints(motion.canonical, rotation, motion.expression, motion.scale,
                                          motion.translation)
        return SourceState(feature=feature, motion=motion, rotation=rotation, x_s=x_s, raw_motion=raw)

    @torch.inference_mode()
    def estimate_pose(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Head pose of a batch of crops (motion extractor only), e.g. the residual pose of outputs.

        Args:
            x: B×3×256×256 float RGB in [0, 1].

        Returns:
            (pitch, yaw, roll), each a B tensor in degrees.
        """
        motion = geo.parse_motion(self._motion(self._prepare(x)))
        return motion.pitch, motion.yaw, motion.roll

    @torch.inference_mode()
    def driving_keypoints(self, state: SourceState, targets: Sequence[PoseTarget],
                          roll_offset: Tensor | Sequence[float] | None = None) -> dict[str, Tensor]:
        """Target keypoints of K edits for every source (geometry and stitching only; no W/G).

        Args:
            state: source state of B faces.
            targets: K pose targets.
            roll_offset: optional B degrees added to the target roll (upright option, see
                :func:`frontalize.liveportrait.geometry.target_angles`).

        Returns:
            ``x_d_edit`` (B×K×N×3, before stitching), ``stitch_delta`` (B×K×(3N+2); zeros where stitching is off)
            and ``x_d`` (B×K×N×3, after stitching), N = number of keypoints.
        """
        if not targets:
            raise ValueError("render needs at least one PoseTarget")
        motion = state.motion
        offset = None if roll_offset is None else torch.as_tensor(roll_offset, dtype=torch.float32,
                                                                  device=self.device)
        edits = []
        with self._exact_context():
            for target in targets:
                angles = geo.target_angles(motion, target.mode, alpha=target.alpha, pitch=target.pitch,
                                           yaw=target.yaw, roll=target.roll, roll_offset=offset)
                expression = (geo.neutralize_expression(motion.expression) if target.expression == "neutralize"
                              else motion.expression)
                edits.append(geo.transform_keypoints(motion.canonical, geo.rotation_matrix(*angles), expression,
                                                     motion.scale, motion.translation))
            stitched = [k for k, target in enumerate(targets) if target.stitching]
            deltas = dict(zip(stitched, self._stitching_deltas(state.x_s, [edits[k] for k in stitched])))
            zero_delta = torch.zeros(state.batch_size, edits[0].shape[1] * 3 + 2, device=self.device)
            delta = [deltas.get(k, zero_delta) for k in range(len(targets))]
            x_d = [geo.apply_stitching(edit, deltas[k]) if k in deltas else edit for k, edit in enumerate(edits)]
        x_d_edit = torch.stack(edits, dim=1)  # B×K×N×3
        return {"x_d_edit": x_d_edit, "stitch_delta": torch.stack(delta, dim=1), "x_d": torch.stack(x_d, dim=1)}

    def _stitching_deltas(self, x_s: Tensor, edits: list[Tensor]) -> list[Tensor]:
        """S outputs (B×(3N+2) each) for J driving sets (B×N×3 each) against their sources, in one S call."""
        if not edits:
            return []
        x_s_rows = torch.cat([x_s] * len(edits))
        rows = geo.stitching_input(x_s_rows, torch.cat(edits))
        return list(self.networks[_STITCHING](rows).float().split(x_s.shape[0]))

    @torch.inference_mode()
    def render(self, state: SourceState, targets: Sequence[PoseTarget] | None = None, *,
               roll_offset: Tensor | Sequence[float] | None = None, chunk_size: int | None = None,
               return_intermediates: bool = False) -> dict[str, Tensor]:
        """Render K pose targets for each of the B sources, as one (B·K) batch through W and G.

        Args:
            state: source state from :meth:`extract`.
            targets: K pose targets (default: one full-frontal target).
            roll_offset: optional B degrees added to every target roll (upright option).
            chunk_size: at most this many (source, target) rows per W/G call (default: all at once).
            return_intermediates: also return ``occlusion_map`` (B×K×1×64×64), ``deformation``
                (B×K×16×64×64×3) and ``warped`` (W's output, B×K×256×64×64).

        Returns:
            ``image`` B×K×3×512×512 in [0, 1], plus the keypoints of :meth:`driving_keypoints` (B×K×…).
        """
        targets = list(targets) if targets is not None else [PoseTarget()]
        out = self.driving_keypoints(state, targets, roll_offset)
        batch, count = out["x_d"].shape[:2]
        rows = batch * count
        step = rows if chunk_size is None else max(1, int(chunk_size))
        x_d_rows = out["x_d"].reshape(rows, *out["x_d"].shape[2:])
        keep = ("occlusion_map", "deformation", "warped") if return_intermediates else ()
        pieces: dict[str, list[Tensor]] = {}
        for start in range(0, rows, step):
            stop = min(rows, start + step)
            if count == 1:
                feature, x_s = state.feature[start:stop], state.x_s[start:stop]
            else:
                source = torch.arange(start, stop, device=self.device) // count
                feature, x_s = state.feature.index_select(0, source), state.x_s.index_select(0, source)
            for name, value in self._warp_decode(feature, x_s, x_d_rows[start:stop], keep).items():
                pieces.setdefault(name, []).append(value)
        for name, parts in pieces.items():
            joined = parts[0] if len(parts) == 1 else torch.cat(parts)
            out[name] = joined.reshape(batch, count, *joined.shape[1:])
        return out

    def _warp_decode(self, feature: Tensor, x_s: Tensor, x_d: Tensor, keep: Sequence[str]) -> dict[str, Tensor]:
        """W then G on one chunk of rows; returns ``image`` and the W outputs named in ``keep`` (as fp32)."""
        with self._network_context():
            warp = self.networks["warping_module"](feature, kp_driving=x_d, kp_source=x_s)
            image = self.networks["spade_generator"](warp["out"])
        produced = {"image": image, "warped": warp["out"], "occlusion_map": warp.get("occlusion_map"),
                    "deformation": warp["deformation"]}
        return {name: produced[name].float() for name in ("image", *keep) if produced[name] is not None}

    @torch.inference_mode()
    def frontalize(self, x: Tensor, target: PoseTarget | None = None, *,
                   roll_offset: Tensor | Sequence[float] | None = None) -> dict[str, Tensor]:
        """Frontalize (or re-pose) a batch of crops.

        Args:
            x: B×3×256×256 float RGB in [0, 1].
            target: pose target (default: full frontal, R = I, keeping δ, s, t_x, t_y; t_z = 0).
            roll_offset: optional B degrees added to the target roll (upright option).

        Returns:
            ``image`` B×3×512×512 in [0, 1]; ``pitch``, ``yaw``, ``roll`` (source pose, B degrees); ``x_s`` and
            ``x_d`` (B×N×3, ``x_d`` after stitching).
        """
        state = self.extract(x)
        out = self.render(state, [target or PoseTarget()], roll_offset=roll_offset)
        motion = state.motion
        return {"image": out["image"][:, 0], "pitch": motion.pitch, "yaw": motion.yaw, "roll": motion.roll,
                "x_s": state.x_s, "x_d": out["x_d"][:, 0]}
