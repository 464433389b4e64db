"""Architecture hyper-parameters of the LivePortrait networks (F, M, W, G, S, R_lip, R_eye).

Every network is built from one frozen dataclass. The defaults equal the released human model
(``src/config/models.yaml`` of the official repository); smaller values build the same topology at a tiny size
for fast shape tests. The dataclasses follow the project's config convention (per-field ``metadata`` with
``help``/``min``; tuples for lists) so they can be loaded from YAML by :mod:`frontalize.config.schema`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from frontalize.errors import ConfigError

__all__ = [
    "AppearanceArch",
    "DenseMotionArch",
    "MlpArch",
    "MotionArch",
    "SpadeArch",
    "WarpingArch",
    "retarget_eye_arch",
    "retarget_lip_arch",
    "stitching_arch",
]


def _check_positive(owner: object, names: tuple[str, ...]) -> None:
    """Raise ConfigError if any of the named integer fields of ``owner`` is < 1."""
    for name in names:
        value = getattr(owner, name)
        if value < 1:
            raise ConfigError(f"{type(owner).__name__}.{name} must be >= 1, got {value}")


@dataclass(frozen=True)
class AppearanceArch:
    """Appearance feature extractor F: image B×3×H×W → feature volume B×C×D×(H/4)×(W/4)."""

    image_channel: int = field(default=3, metadata={"help": "input image channels", "min": 1})
    block_expansion: int = field(default=64, metadata={"help": "channels of the first 2-D block", "min": 1})
    num_down_blocks: int = field(default=2, metadata={"help": "number of 2× down-sampling blocks", "min": 0})
    max_features: int = field(default=512, metadata={"help": "channel cap; also channels before the 3-D reshape",
                                                     "min": 1})
    reshape_channel: int = field(default=32, metadata={"help": "feature channels C of the 3-D volume", "min": 1})
    reshape_depth: int = field(default=16, metadata={"help": "depth D of the 3-D volume", "min": 1})
    num_resblocks: int = field(default=6, metadata={"help": "number of 3-D residual blocks", "min": 0})

    def __post_init__(self) -> None:
        _check_positive(self, ("image_channel", "block_expansion", "max_features", "reshape_channel",
                               "reshape_depth"))
        if self.reshape_channel * self.reshape_depth != self.max_features:
            raise ConfigError(
                f"AppearanceArch: reshape_channel*reshape_depth ({self.reshape_channel}*{self.reshape_depth}) "
                f"must equal max_features ({self.max_features})"
            )


@dataclass(frozen=True)
class MotionArch:
    """Motion extractor M: a ConvNeXt-V2 backbone with seven linear heads (defaults = convnextv2_tiny)."""

    image_channel: int = field(default=3, metadata={"help": "input image channels", "min": 1})
    num_kp: int = field(default=21, metadata={"help": "number of implicit keypoints K", "min": 1})
    num_bins: int = field(default=66, metadata={"help": "head-pose bins per angle", "min": 1})
    depths: tuple[int, ...] = field(default=(3, 3, 9, 3), metadata={"help": "ConvNeXt blocks per stage"})
    dims: tuple[int, ...] = field(default=(96, 192, 384, 768), metadata={"help": "ConvNeXt channels per stage"})

    def __post_init__(self) -> None:
        _check_positive(self, ("image_channel", "num_kp", "num_bins"))
        if len(self.depths) != len(self.dims) or not self.depths:
            raise ConfigError(f"MotionArch: depths {self.depths} and dims {self.dims} must be non-empty and "
                              "of equal length")
        if min(self.depths) < 1 or min(self.dims) < 1:
            raise ConfigError(f"MotionArch: depths {self.depths} and dims {self.dims} must be >= 1")


@dataclass(frozen=True)
class DenseMotionArch:
    """Dense motion network inside W: a 3-D hourglass predicting the 22-way motion mask and occlusion."""

    block_expansion: int = field(default=32, metadata={"help": "hourglass base channels", "min": 1})
    max_features: int = field(default=1024, metadata={"help": "hourglass channel cap", "min": 1})
    num_blocks: int = field(default=5, metadata={"help": "hourglass levels", "min": 1})
    reshape_depth: int = field(default=16, metadata={"help": "depth of the feature volume", "min": 1})
    compress: int = field(default=4, metadata={"help": "channels after the 1×1×1 compression", "min": 1})

    def __post_init__(self) -> None:
        _check_positive(self, ("block_expansion", "max_features", "num_blocks", "reshape_depth", "compress"))


@dataclass(frozen=True)
class WarpingArch:
    """Warping module W: dense motion + 3-D warp of the appearance volume + 2-D projection."""

    num_kp: int = field(default=21, metadata={"help": "number of implicit keypoints K", "min": 1})
    block_expansion: int = field(default=64, metadata={"help": "base channels of the 2-D part", "min": 1})
    max_features: int = field(default=512, metadata={"help": "channels of the flattened warped volume", "min": 1})
    num_down_blocks: int = field(default=2, metadata={"help": "sets the output channels "
                                                      "block_expansion·2^num_down_blocks", "min": 0})
    reshape_channel: int = field(default=32, metadata={"help": "feature channels C of the input volume", "min": 1})
    estimate_occlusion_map: bool = field(default=True, metadata={"help": "predict and apply the occlusion map"})
    dense_motion: DenseMotionArch = field(default_factory=DenseMotionArch,
                                          metadata={"help": "dense motion network"})

    def __post_init__(self) -> None:
        _check_positive(self, ("num_kp", "block_expansion", "max_features", "reshape_channel"))
        if self.reshape_channel * self.dense_motion.reshape_depth != self.max_features:
            raise ConfigError(
                f"WarpingArch: reshape_channel*dense_motion.reshape_depth ({self.reshape_channel}*"
                f"{self.dense_motion.reshape_depth}) must equal max_features ({self.max_features})"
            )

    @property
    def out_channels(self) -> int:
        """Channels of W's ``out`` (= G's input)."""
        return self.block_expansion * 2**self.num_down_blocks


@dataclass(frozen=True)
class SpadeArch:
    """SPADE decoder G: feature B×C×h×w → image B×3×(4·upscale·h)×(4·upscale·w) (defaults: 64² → 512²)."""

    upscale: int = field(default=2, metadata={"help": "final pixel-shuffle factor", "min": 1})
    block_expansion: int = field(default=64, metadata={"help": "base channels", "min": 1})
    max_features: int = field(default=512, metadata={"help": "cap of the input channels", "min": 1})
    num_down_blocks: int = field(default=2, metadata={"help": "input channels = min(max_features, "
                                                      "block_expansion·2^this); middle blocks use twice that",
                                                      "min": 0})
    out_channels: int = field(default=64, metadata={"help": "channels before the output convolution", "min": 1})
    num_middle_blocks: int = field(default=6, metadata={"help": "SPADE residual blocks at input resolution",
                                                        "min": 0})
    hidden_channels: int = field(default=128, metadata={"help": "hidden channels of each SPADE", "min": 1})
    image_channel: int = field(default=3, metadata={"help": "output image channels", "min": 1})

    def __post_init__(self) -> None:
        _check_positive(self, ("upscale", "block_expansion", "max_features", "out_channels", "hidden_channels",
                               "image_channel"))

    @property
    def input_channels(self) -> int:
        """Channels of the input feature (= SPADE label channels); the middle blocks use twice as many."""
        return min(self.max_features, self.block_expansion * 2**self.num_down_blocks)


@dataclass(frozen=True)
class MlpArch:
    """A stitching / retargeting MLP: Linear–ReLU–…–Linear (defaults = the stitching network S)."""

    in_features: int = field(default=126, metadata={"help": "input width", "min": 1})
    hidden_features: tuple[int, ...] = field(default=(128, 128, 64), metadata={"help": "hidden layer widths"})
    out_features: int = field(default=65, metadata={"help": "output width", "min": 1})

    def __post_init__(self) -> None:
        _check_positive(self, ("in_features", "out_features"))
        if any(h < 1 for h in self.hidden_features):
            raise ConfigError(f"MlpArch.hidden_features must all be >= 1, got {self.hidden_features}")


def stitching_arch() -> MlpArch:
    """S: concat(x_s, x_d) (126) → 63 keypoint deltas + (Δt_x, Δt_y) (65)."""
    return MlpArch(in_features=126, hidden_features=(128, 128, 64), out_features=65)


def retarget_lip_arch() -> MlpArch:
    """R_lip: concat(x_s, c_lip_src, c_lip_target) (65) → 63 keypoint deltas."""
    return MlpArch(in_features=65, hidden_features=(128, 128, 64), out_features=63)


def retarget_eye_arch() -> MlpArch:
    """R_eye: concat(x_s, c_eye_left, c_eye_right, c_eye_target) (66) → 63 keypoint deltas."""
    return MlpArch(in_features=66, hidden_features=(256, 256, 128, 128, 64), out_features=63)
