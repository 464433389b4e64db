"""Configuration tree of ``inference.py`` (the batch frontalization pipeline).

Frozen dataclasses are the single source of defaults; ``configs/default.yaml`` mirrors :class:`InferenceConfig`
exactly (a test checks it). Load with :func:`frontalize.config.schema.load_config`. Precedence:
dataclass defaults < YAML < ``--set`` < explicit command-line flags.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Literal

from frontalize.config.ray_config import ExecutorChoice, RayConfig
from frontalize.config.stages import STAGE_NAMES, StagesConfig
from frontalize.errors import ConfigError

__all__ = [
    "HASH_EXCLUDE",
    "CropConfig",
    "DetectionConfig",
    "FrontalizerConfig",
    "GuardConfig",
    "InferenceConfig",
    "InputConfig",
    "OutputConfig",
    "RunConfig",
    "VariantConfig",
]

DetectorChoice = Literal["insightface", "retinaface_mnet", "scrfd_10g", "retinaface_r50"]
_DEVICE_RE = re.compile(r"^(auto|cpu|cuda|cuda:\d+)$")
_VARIANT_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

HASH_EXCLUDE: tuple[str, ...] = (
    "device",
    "weights_dir",
    "allow_unverified_weights",
    "input.pattern",
    "input.recursive",
    "input.limit",
    "input.list_file",
    "run",
    "frontalizer.batch_size",
    "frontalizer.compile",
    "executor",
    "ray",
    "guard.dump",
    "guard.render_chunk",
)
"""Dotted keys that do not change what an input's outputs look like, so they are left out of the run hash that
resume compares (changing the device, the worker count, the input selection or the executor keeps finished rows).
Every other key is in it, ``input.max_pixels`` included (it decides whether a huge image is decoded reduced or
refused). ``weights_dir`` and ``allow_unverified_weights`` are replaced by the checksum of every weight file loaded
(or ``unverified``), see :mod:`frontalize.pipeline.provenance`."""


@dataclass(frozen=True)
class InputConfig:
    """Which files of the source folder are processed."""

    pattern: str | None = field(default=None, metadata={
        "help": "glob matched against file names (e.g. '*.png'); null = every common image type "
                "(jpg, jpeg, png, bmp, tif, tiff, webp; case-insensitive)"})
    recursive: bool = field(default=False, metadata={"help": "also search sub-folders (the output tree mirrors them)"})
    limit: int | None = field(default=None, metadata={
        "help": "process at most this many inputs (after sorting by path); null = all", "min": 1})
    list_file: str | None = field(default=None, metadata={
        "help": "text file with one input path per line (relative to the source folder); replaces the glob"})
    max_pixels: int = field(default=64_000_000, metadata={
        "help": "decode limit in pixels: bigger JPEGs are decoded at 1/2, 1/4 or 1/8 size, other formats are "
                "refused with status too_large (bounds memory on huge files)", "min": 1})


@dataclass(frozen=True)
class DetectionConfig:
    """Face detection and landmarks that place the crop."""

    detector: DetectorChoice = field(default="insightface", metadata={
        "help": "insightface = LivePortrait's chain (SCRFD det_10g + 2d106det, 106 points drive the crop); "
                "retinaface_mnet (offline, no download), scrfd_10g, retinaface_r50 give 5 points and an "
                "approximate crop"})
    det_size: int = field(default=512, metadata={
        "help": "detector input size in pixels, a multiple of 32 (LivePortrait uses 512)", "min": 32, "max": 4096})
    threshold: float = field(default=0.1, metadata={
        "help": "minimum face score (LivePortrait uses 0.1 with det_10g)", "min": 0.0, "max": 1.0})
    nms_threshold: float = field(default=0.4, metadata={
        "help": "IoU above which overlapping boxes are merged", "min": 0.0, "max": 1.0})
    face_choice: Literal["largest", "all"] = field(default="largest", metadata={
        "help": "largest = one output per input (the biggest face); all = one output per detected face"})
    max_faces: int = field(default=16, metadata={
        "help": "with face_choice all: at most this many faces per image (largest first)", "min": 1})

    def __post_init__(self) -> None:
        if self.det_size % 32:
            raise ConfigError(f"detection.det_size: {self.det_size} is not a multiple of 32 (e.g. 512 or 640)")


@dataclass(frozen=True)
class CropConfig:
    """LivePortrait crop geometry (512×512 crop around the face)."""

    scale: float = field(default=2.3, metadata={
        "help": "crop side as a multiple of the landmark extent", "min": 0.5, "max": 10.0})
    vy_ratio: float = field(default=-0.125, metadata={
        "help": "vertical shift of the crop centre as a fraction of the side (negative = towards the forehead)",
        "min": -1.0, "max": 1.0})
    upright: bool = field(default=True, metadata={
        "help": "frontalized head upright in the source image: the target roll compensates the crop's in-plane "
                "rotation (the crop itself is always rotated so the eye→mouth axis is vertical); false = upright "
                "in the crop frame, keeping the source's tilt after paste-back"})
    fill: Literal["auto", "black", "reflect"] = field(default="auto", metadata={
        "help": "crop area beyond the image border: black (LivePortrait's own crop), reflect (the image mirrored at "
                "its border, blurred and faded with the distance, so the output has no black wedges); auto = "
                "black for liveportrait, reflect for the mesh and identity backends"})


@dataclass(frozen=True)
class FrontalizerConfig:
    """How the cropped face is frontalized."""

    backend: Literal["identity", "liveportrait", "mesh"] = field(default="identity", metadata={
        "help": "identity = crop/align only (no frontalization, no LivePortrait weights needed); "
                "liveportrait = rotate the head with LivePortrait (--frontalize); mesh = the geometric 3D-model "
                "frontalizer on dlib's 68 landmarks, offline (--frontalize mesh; pip install .[offline])"})
    target: Literal["frontal", "partial", "pose"] = field(default="frontal", metadata={
        "help": "frontal = pitch/yaw/roll 0; partial = rotate a fraction alpha of the way; "
                "pose = the explicit pitch/yaw/roll below"})
    alpha: float = field(default=1.0, metadata={
        "help": "with target partial: fraction of the rotation towards frontal (0 = unchanged, 1 = frontal)",
        "min": 0.0, "max": 1.0})
    pitch: float = field(default=0.0, metadata={"help": "with target pose: pitch in degrees", "min": -90.0,
                                                  "max": 90.0})
    yaw: float = field(default=0.0, metadata={"help": "with target pose: yaw in degrees", "min": -90.0, "max": 90.0})
    roll: float = field(default=0.0, metadata={"help": "with target pose: roll in degrees", "min": -90.0,
                                                "max": 90.0})
    expression: Literal["keep", "neutralize"] = field(default="keep", metadata={
        "help": "liveportrait: keep the source expression, or neutralize it (mesh always keeps it: it is a warp)"})
    stitching: bool = field(default=True, metadata={
        "help": "liveportrait: stitching network keeps the crop border aligned with the source (needed for a clean "
                "paste-back)"})
    symmetry: bool = field(default=True, metadata={
        "help": "mesh: fill self-occluded parts of the face from the symmetric side (soft blend); false = leave the "
                "stretched own texture there"})
    precision: Literal["fp32", "fp16", "bf16"] = field(default="fp32", metadata={
        "help": "network precision: fp32 exact; fp16 (CUDA) / bf16 (CUDA, or CPUs with native bf16: about 2x faster, "
                "less exact) autocast"})
    batch_size: int = field(default=8, metadata={"help": "faces per network batch", "min": 1, "max": 1024})
    compile: bool = field(default=False, metadata={
        "help": "torch.compile the LivePortrait networks F, M, W, G (inductor, fixed shapes): faster batches after "
                "the first, but the first batch of each size pays the compilation (about a minute or more)"})
    pose_estimation: Literal["auto", "always", "never"] = field(default="auto", metadata={
        "help": "whether source/output poses are measured (with pose_source): always (its model required, else exit "
                "3), never (poses null), or auto = when pose_source's model is available (else poses null)"})
    pose_source: Literal["auto", "motion_extractor", "landmarks68"] = field(default="auto", metadata={
        "help": "what measures them: motion_extractor = LivePortrait's M (weight lp_motion_extractor); landmarks68 "
                "= dlib's 68 landmarks + 3D mean shape (offline extra, no download); auto = the backend's own (M for "
                "liveportrait, landmarks68 for mesh; identity: M when its weight is present, else landmarks68)"})


GUARD_STAGES: tuple[str, ...] = ("gfpgan", "colour", "sharpen")
"""Stages that may form extra guard candidates (they keep the 512×512 RGB crop framing)."""


@dataclass(frozen=True)
class GuardConfig:
    """Identity guard (liveportrait and mesh backends): render K candidates per face from one source analysis,
    score each against the source with a face recognizer, keep the most similar one that is frontal enough."""

    enabled: bool = field(default=False, metadata={
        "help": "render every candidate below and keep the one most similar to the source whose residual pose "
                "is within max_residual_yaw/pitch (liveportrait: about K× the W+G time of a plain run)"})
    alphas: tuple[float, ...] = field(default=(1.0, 0.85, 0.7, 0.5), metadata={
        "help": "rotation fractions towards frontal tried (1 = fully frontal, 0.5 = half way); each in (0, 1]"})
    expressions: tuple[Literal["keep", "neutralize"], ...] = field(default=("keep", "neutralize"), metadata={
        "help": "liveportrait: expressions tried: keep the source expression and/or neutralize it"})
    stitching: tuple[bool, ...] = field(default=(True,), metadata={
        "help": "liveportrait: stitching settings tried ([true, false] doubles K; without stitching the crop border "
                "may not match the source after paste-back)"})
    symmetry: tuple[bool, ...] = field(default=(True, False), metadata={
        "help": "mesh: symmetric-fill settings tried (true = hidden parts filled from the mirrored side, false = "
                "own texture only)"})
    stages: tuple[str, ...] = field(default=(), metadata={
        "help": "post-processing stages that each add a candidate per rendered one (settings from 'stages'); "
                "names from " + ", ".join(GUARD_STAGES) + "; the output trees' own stages still run afterwards"})
    recognizer: Literal["arcface_r50", "arcface_r100", "dlib_resnet"] = field(default="arcface_r50", metadata={
        "help": "recognizer scoring cosine similarity to the source crop: arcface_r50 (buffalo_l), arcface_r100 "
                "(antelopev2), dlib_resnet (offline, no download)"})
    detector: Literal["scrfd_10g", "retinaface_r50", "retinaface_mnet"] = field(default="scrfd_10g", metadata={
        "help": "detector that finds the face to align in the source crop and in each candidate "
                "(retinaface_mnet is offline)"})
    det_size: int = field(default=640, metadata={
        "help": "detection size of that detector in pixels, a multiple of 32", "min": 32, "max": 4096})
    threshold: float = field(default=0.5, metadata={
        "help": "minimum face score; a candidate without a face gets similarity null", "min": 0.0, "max": 1.0})
    max_residual_yaw: float = field(default=10.0, metadata={
        "help": "a candidate qualifies when its residual |yaw| is at most this (degrees; measured by the backend's "
                "own estimator: the motion extractor for liveportrait, 68 landmarks for mesh)",
        "min": 0.0, "max": 90.0})
    max_residual_pitch: float = field(default=10.0, metadata={
        "help": "and |pitch| at most this (degrees); when no candidate qualifies, the most frontal one is kept "
                "and flagged fallback", "min": 0.0, "max": 90.0})
    render_chunk: int | None = field(default=None, metadata={
        "help": "at most this many (face, candidate) rows per W+G call; null = the whole batch × K at once "
                "(lower it on GPU out-of-memory)", "min": 1})
    dump: bool = field(default=False, metadata={
        "help": "also write every candidate crop to OUT/_guard/<input>/<candidate>.<format> (--guard-dump)"})

    def __post_init__(self) -> None:
        _check_unique("guard.alphas", self.alphas)
        if any(not 0.0 < alpha <= 1.0 for alpha in self.alphas):
            raise ConfigError(f"guard.alphas: every alpha must be in (0, 1], got {list(self.alphas)}")
        _check_unique("guard.expressions", self.expressions)
        _check_unique("guard.stitching", self.stitching)
        _check_unique("guard.symmetry", self.symmetry)
        if len(set(self.stages)) != len(self.stages):
            raise ConfigError(f"guard.stages: a stage is listed more than once: {list(self.stages)}")
        for position, name in enumerate(self.stages):
            if name not in GUARD_STAGES:
                close = difflib.get_close_matches(name, GUARD_STAGES, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise ConfigError(f"guard.stages[{position}]: {name!r} cannot form a guard candidate; {hint}"
                                  f"valid: {', '.join(GUARD_STAGES)}")
        if self.det_size % 32:
            raise ConfigError(f"guard.det_size: {self.det_size} is not a multiple of 32 (e.g. 640)")

    def candidate_count(self, backend: str) -> int:
        """K: candidates per face for ``backend`` (rendered ones × (1 + stage candidates)).

        liveportrait renders alphas × expressions × stitching, mesh alphas × symmetry.
        """
        rendered = len(self.alphas) * (len(self.symmetry) if backend == "mesh"
                                       else len(self.expressions) * len(self.stitching))
        return rendered * (1 + len(self.stages))


def _check_unique(key: str, values: tuple[object, ...]) -> None:
    if not values:
        raise ConfigError(f"{key}: at least one value is needed")
    if len(set(values)) != len(values):
        raise ConfigError(f"{key}: a value is listed more than once: {list(values)}")


@dataclass(frozen=True)
class OutputConfig:
    """What is written per face."""

    kind: Literal["crop", "full", "both"] = field(default="crop", metadata={
        "help": "crop = the 512×512 face crop; full = the source image with the face pasted back; both "
                "(then in crop/ and full/ sub-trees)"})
    format: Literal["png", "jpg"] = field(default="png", metadata={"help": "image format of the outputs"})
    jpeg_quality: int = field(default=95, metadata={"help": "JPEG quality (format jpg)", "min": 1, "max": 100})


@dataclass(frozen=True)
class VariantConfig:
    """One output tree: the frontalized face followed by ``stages`` (in that order)."""

    name: str = field(default="base", metadata={"help": "folder name of this tree under the output folder"})
    stages: tuple[str, ...] = field(default=(), metadata={
        "help": "stages applied in this order, with their settings from 'stages' (empty = no post-processing); "
                "names from " + ", ".join(STAGE_NAMES)})


@dataclass(frozen=True)
class RunConfig:
    """Execution of the batch (not part of the resume hash)."""

    workers: int = field(default=2, metadata={
        "help": "threads decoding/detecting ahead of the network and encoding behind it (0 = inline)",
        "min": 0, "max": 64})
    prefetch: int = field(default=16, metadata={
        "help": "inputs decoded ahead of the network at most (bounds memory on big sets)", "min": 1,
        "max": 4096})
    on_error: Literal["skip", "abort"] = field(default="skip", metadata={
        "help": "a failing input: skip = record it in the manifest and go on; abort = stop the run"})
    progress: bool = field(default=True, metadata={"help": "show a progress bar (images/s, ETA)"})


def _check_variants(variants: tuple[VariantConfig, ...], stages: StagesConfig) -> None:
    seen: set[str] = set()
    for index, variant in enumerate(variants):
        where = f"variants[{index}]"
        if not _VARIANT_NAME_RE.match(variant.name):
            raise ConfigError(f"{where}.name: {variant.name!r} is not a valid folder name (letters, digits, . _ -)")
        if variant.name in seen:
            raise ConfigError(f"{where}.name: {variant.name!r} used twice")
        seen.add(variant.name)
        for position, name in enumerate(variant.stages):
            if name not in STAGE_NAMES:
                close = difflib.get_close_matches(name, STAGE_NAMES, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise ConfigError(f"{where}.stages[{position}]: unknown stage {name!r}; {hint}"
                                  f"valid: {', '.join(STAGE_NAMES)}")
        if len(set(variant.stages)) != len(variant.stages):
            raise ConfigError(f"{where}.stages: a stage is listed more than once")
        if stages.background.alpha and "background" in variant.stages:
            after = variant.stages[variant.stages.index("background") + 1 :]
            if "gfpgan" in after:
                raise ConfigError(f"{where}.stages: gfpgan cannot run after background with alpha: true "
                                  "(it needs RGB input)")


@dataclass(frozen=True)
class InferenceConfig:
    """Root of the inference configuration."""

    device: str = field(default="auto", metadata={"help": "auto, cpu, cuda or cuda:N"})
    weights_dir: str | None = field(default=None, metadata={
        "help": "weights root; null = $FRONTALIZE_WEIGHTS, else ./pretrained_weights"})
    allow_unverified_weights: bool = field(default=False, metadata={
        "help": "only require weight files to exist (test weights); outputs may be meaningless"})
    input: InputConfig = field(default_factory=InputConfig, metadata={"help": "input selection"})
    detection: DetectionConfig = field(default_factory=DetectionConfig, metadata={"help": "face detection"})
    crop: CropConfig = field(default_factory=CropConfig, metadata={"help": "crop geometry"})
    frontalizer: FrontalizerConfig = field(default_factory=FrontalizerConfig, metadata={"help": "frontalizer"})
    guard: GuardConfig = field(default_factory=GuardConfig, metadata={
        "help": "identity guard: several candidate outputs per face, the one keeping the most identity wins"})
    output: OutputConfig = field(default_factory=OutputConfig, metadata={"help": "output images"})
    stages: StagesConfig = field(default_factory=StagesConfig, metadata={"help": "post-processing stages"})
    variants: tuple[VariantConfig, ...] = field(default=(), metadata={
        "help": "output trees written in one run from the same frontalized face (e.g. base, gfpgan, sharp, "
                "omit-bg); empty = one tree with the enabled stages in stages.order"})
    run: RunConfig = field(default_factory=RunConfig, metadata={"help": "execution"})
    executor: ExecutorChoice = field(default="local", metadata={
        "help": "local = this process (threads); ray = Ray Data tasks and actors, on a local Ray or a cluster "
                "(pip install .[ray]; same outputs and manifest)"})
    ray: RayConfig = field(default_factory=RayConfig, metadata={"help": "Ray execution (executor: ray)"})

    def __post_init__(self) -> None:
        if not _DEVICE_RE.match(self.device):
            raise ConfigError(f"device: {self.device!r} is not auto, cpu, cuda or cuda:N")
        _check_variants(self.variants, self.stages)
        if self.output.format == "jpg" and self.stages.background.alpha and "background" in self.used_stages():
            raise ConfigError("output.format: jpg cannot hold the alpha channel of stages.background.alpha; "
                              "use png or set stages.background.alpha: false")

    def variant_plan(self) -> tuple[tuple[str, tuple[str, ...]], ...]:
        """``(tree name, stage names in order)`` per output tree; the single tree of an empty
        ``variants`` list has the name ``""`` (written directly under the output folder)."""
        if not self.variants:
            return (("", self.stages.enabled_names()),)
        return tuple((variant.name, variant.stages) for variant in self.variants)

    def used_stages(self) -> tuple[str, ...]:
        """Every stage some output tree applies (each built once)."""
        names: dict[str, None] = {}
        for _, stages in self.variant_plan():
            names.update(dict.fromkeys(stages))
        return tuple(names)
