"""Tests of the weights registry (frontalize.weights.registry) and root resolution."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import pytest

from frontalize.errors import ConfigError
from frontalize.weights import (
    GROUPS,
    REGISTRY,
    facexlib_dir,
    fetch_groups,
    get_weight,
    group_keys,
    insightface_root,
    rembg_home,
    resolve_weights_root,
    weight_path,
)

# Transcribed from /work/shared/reference/weights.md (LFS pointers of the KwaiVGI/LivePortrait HF repo).
REFERENCE = {
    "liveportrait/base_models/appearance_feature_extractor.pth": (
        3_387_959,
        "5279bb8654293dbdf327030b397f107237dd9212fb11dd75b83dfb635211ceb5",
    ),
    "liveportrait/base_models/motion_extractor.pth": (
        112_545_506,
        "251e6a94ad667a1d0c69526d292677165110ef7f0cf0f6d199f0e414e8aa0ca5",
    ),
    "liveportrait/base_models/warping_module.pth": (
        182_180_086,
        "2f61a6f265fe344f14132364859a78bdbbc2068577170693da57fb96d636e282",
    ),
    "liveportrait/base_models/spade_generator.pth": (
        221_813_590,
        "4780afc7909a9f84e24c01d73b31a555ef651521a1fe3b2429bd04534d992aee",
    ),
    "liveportrait/retargeting_models/stitching_retargeting_module.pth": (
        2_393_098,
        "3652d5a3f95099141a56986aaddec92fadf0a73c87a20fac9a2c07c32b28b611",
    ),
    "liveportrait/landmark.onnx": (114_666_491, "31d22a5041326c31f19b78886939a634a5aedcaa5ab8b9b951a1167595d147db"),
    "insightface/models/buffalo_l/det_10g.onnx": (
        16_923_827,
        "5838f7fe053675b1c7a08b633df49e7af5495cee0493c7dcf6697200b85b5b91",
    ),
    "insightface/models/buffalo_l/2d106det.onnx": (
        5_030_888,
        "f001b856447c413801ef5c42091ed0cd516fcd21f2d6b79635b1e733a7109dbf",
    ),
}

# The keys and paths other parts code against (common brief).
EXPECTED_PATHS = {
    "lp_appearance_feature_extractor": "liveportrait/base_models/appearance_feature_extractor.pth",
    "lp_motion_extractor": "liveportrait/base_models/motion_extractor.pth",
    "lp_warping_module": "liveportrait/base_models/warping_module.pth",
    "lp_spade_generator": "liveportrait/base_models/spade_generator.pth",
    "lp_stitching_retargeting": "liveportrait/retargeting_models/stitching_retargeting_module.pth",
    "lp_landmark": "liveportrait/landmark.onnx",
    "insightface_det_10g": "insightface/models/buffalo_l/det_10g.onnx",
    "insightface_2d106det": "insightface/models/buffalo_l/2d106det.onnx",
    "insightface_1k3d68": "insightface/models/buffalo_l/1k3d68.onnx",
    "insightface_w600k_r50": "insightface/models/buffalo_l/w600k_r50.onnx",
    "insightface_scrfd_10g_bnkps": "insightface/models/antelopev2/scrfd_10g_bnkps.onnx",
    "insightface_glintr100": "insightface/models/antelopev2/glintr100.onnx",
    "gfpgan_v1.3": "gfpgan/GFPGANv1.3.pth",
    "gfpgan_v1.4": "gfpgan/GFPGANv1.4.pth",
    "facexlib_retinaface_r50": "facexlib/detection_Resnet50_Final.pth",
    "rembg_u2net": "rembg/u2net.onnx",
    "rembg_u2netp": "rembg/u2netp.onnx",
    "rembg_u2net_human_seg": "rembg/u2net_human_seg.onnx",
    "rembg_isnet_general_use": "rembg/isnet-general-use.onnx",
    "rembg_silueta": "rembg/silueta.onnx",
}

WEIGHTS_MD = Path(__file__).resolve().parents[3] / "shared" / "reference" / "weights.md"


def test_keys_and_paths_are_the_agreed_ones() -> None:
    assert {key: entry.relpath for key, entry in REGISTRY.items()} == EXPECTED_PATHS
    assert all(entry.key == key for key, entry in REGISTRY.items())


def test_relpaths_are_unique_relative_posix_paths() -> None:
    relpaths = [entry.relpath for entry in REGISTRY.values()]
    assert len(set(relpaths)) == len(relpaths)
    for relpath in relpaths:
        posix = PurePosixPath(relpath)
        assert not posix.is_absolute() and ".." not in posix.parts and "\\" not in relpath
        assert str(posix) == relpath


def test_only_liveportrait_repo_files_carry_checksums_and_they_match_the_reference() -> None:
    with_checksum = {entry.relpath: (entry.size, entry.sha256) for entry in REGISTRY.values() if entry.sha256}
    assert with_checksum == REFERENCE


@pytest.mark.skipif(not WEIGHTS_MD.is_file(), reason=f"reference table not found at {WEIGHTS_MD}")
def test_checksums_match_the_shared_weights_md() -> None:
    rows = re.findall(r"^\| (\S+) \| ([\d,]+) \| ([0-9a-f]{64}) \|", WEIGHTS_MD.read_text(), flags=re.M)
    assert len(rows) == 8
    for relpath, size, sha256 in rows:
        entry = next(e for e in REGISTRY.values() if e.relpath == relpath)
        assert (entry.size, entry.sha256) == (int(size.replace(",", "")), sha256)


def test_checksum_fields_are_well_formed() -> None:
    for entry in REGISTRY.values():
        assert entry.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", entry.sha256), entry.key
        assert entry.md5 is None or re.fullmatch(r"[0-9a-f]{32}", entry.md5), entry.key
        assert entry.size is None or (isinstance(entry.size, int) and entry.size > 0), entry.key
        assert entry.licence.strip(), entry.key


def test_every_group_is_known_and_non_empty() -> None:
    for entry in REGISTRY.values():
        assert entry.group in GROUPS and set(entry.also_in) <= set(GROUPS)
    for group in GROUPS:
        assert any(REGISTRY[key].group == group for key in group_keys(group)), group


def test_huggingface_sources_point_at_the_liveportrait_repo() -> None:
    hf = [entry for entry in REGISTRY.values() if entry.is_huggingface]
    assert {entry.relpath for entry in hf} == set(REFERENCE)
    for entry in hf:
        assert entry.hf_repo_and_filename == ("KwaiVGI/LivePortrait", entry.relpath)
        assert entry.archive_member is None


def test_url_sources_are_github_release_assets() -> None:
    for entry in REGISTRY.values():
        if entry.is_huggingface:
            continue
        url = urlsplit(entry.source)
        assert (url.scheme, url.netloc) == ("https", "github.com"), entry.key
        assert "/releases/download/" in url.path and not url.query, entry.key
        asset = PurePosixPath(url.path).name
        if entry.archive_member is None:
            assert asset == PurePosixPath(entry.relpath).name, entry.key
        else:
            assert (
                asset.endswith(".zip") and PurePosixPath(entry.archive_member).name == PurePosixPath(entry.relpath).name
            ), entry.key


def test_insightface_zip_layouts() -> None:
    assert get_weight("insightface_w600k_r50").archive_member == "w600k_r50.onnx"
    assert get_weight("insightface_w600k_r50").source.endswith("/v0.7/buffalo_l.zip")
    assert get_weight("insightface_glintr100").archive_member == "antelopev2/glintr100.onnx"
    assert get_weight("insightface_scrfd_10g_bnkps").source.endswith("/v0.7/antelopev2.zip")


def test_release_tags() -> None:
    assert "/v1.3.0/GFPGANv1.3.pth" in get_weight("gfpgan_v1.3").source
    assert "/v1.3.4/GFPGANv1.4.pth" in get_weight("gfpgan_v1.4").source
    assert "/v0.1.0/detection_Resnet50_Final.pth" in get_weight("facexlib_retinaface_r50").source
    assert get_weight("rembg_silueta").source.startswith(
        "https://github.com/danielgatis/rembg/releases/download/v0.0.0/"
    )


def test_group_keys_include_shared_files() -> None:
    liveportrait = group_keys("liveportrait")
    assert {"insightface_det_10g", "insightface_2d106det", "lp_landmark"} <= set(liveportrait)
    assert "insightface_w600k_r50" not in liveportrait
    assert {"insightface_det_10g", "insightface_w600k_r50"} <= set(group_keys("insightface_buffalo_l"))
    assert fetch_groups(["insightface_det_10g", "lp_landmark", "rembg_u2netp"]) == (
        "liveportrait",
        "insightface_buffalo_l",
        "rembg",
    )


def test_unknown_key_and_group_suggest_the_closest_name() -> None:
    with pytest.raises(ConfigError, match="did you mean 'lp_motion_extractor'"):
        get_weight("lp_motion_extracter")
    with pytest.raises(ConfigError, match="did you mean 'gfpgan'"):
        group_keys("gfpgann")
    assert ConfigError("x").exit_code == 2


def test_registry_and_entries_are_immutable() -> None:
    with pytest.raises(TypeError):
        REGISTRY["x"] = REGISTRY["lp_landmark"]  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        REGISTRY["lp_landmark"].sha256 = None  # type: ignore[misc]


def test_weights_root_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert resolve_weights_root(None) == Path("pretrained_weights")
    monkeypatch.setenv("FRONTALIZE_WEIGHTS", str(tmp_path / "env"))
    assert resolve_weights_root(None) == tmp_path / "env"
    assert resolve_weights_root(tmp_path / "cli") == tmp_path / "cli"
    monkeypatch.setenv("FRONTALIZE_WEIGHTS", "")
    assert resolve_weights_root("") == Path("pretrained_weights")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_weights_root("~/w") == tmp_path / "w"


def test_paths_for_third_party_wrappers(tmp_path: Path) -> None:
    assert weight_path("gfpgan_v1.4", tmp_path) == tmp_path / "gfpgan" / "GFPGANv1.4.pth"
    assert weight_path("insightface_w600k_r50", tmp_path).parent.parent.parent == insightface_root(tmp_path)
    assert weight_path("rembg_u2netp", tmp_path).parent == rembg_home(tmp_path)
    assert weight_path("facexlib_retinaface_r50", tmp_path).parent == facexlib_dir(tmp_path)
