"""Loading tests of the LivePortrait networks: names, official key sets, fill-weight digests and strict loading.

The fill weights (``shared/golden/liveportrait/fill.py``) travel through checkpoint-shaped files written here
(``torch.save`` → ``torch.load(weights_only=True)`` → ``strict=True``), laid out like the official release: one
file per base model (M keys start with ``detector.``) and a stitching file with ``retarget_shoulder`` /
``retarget_mouth`` / ``retarget_eye`` sub-dicts whose keys carry the DDP ``module.`` prefix.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import pytest
import torch

from frontalize.errors import ConfigError
from frontalize.liveportrait.arch import AppearanceArch, MlpArch, MotionArch, WarpingArch
from frontalize.liveportrait.blocks import SpectralNormConv2d
from frontalize.liveportrait.networks import NETWORK_NAMES, build_network, default_arch

LABELS = {
    "appearance_feature_extractor": "F",
    "motion_extractor": "M",
    "warping_module": "W",
    "spade_generator": "G",
    "stitching": "S",
    "retarget_lip": "R_lip",
    "retarget_eye": "R_eye",
}
NAMES = {label: name for name, label in LABELS.items()}
EXPECTED_SHA256 = {
    "F": "f9629ed8734819aa3710eec0db6eae4f3a330cbdd9d900283318b4bfe23446cc",
    "M": "ae6e69b5b4b7342fa200cf512244a05c1be28ee3361fbf09f9015053d76234c8",
    "W": "a859d341999e28503d4668cfc1c78a9f9ee1b9a112191023bc301f829a15c131",
    "G": "a3646520bfc45ed79c280fe18574d4ce24702f528e1fbf86beeb50654abae057",
    "S": "2abd5206de6a5c7acbba839565b12b7fef5721a5cc6b0f94d4296c9e285c343d",
    "R_lip": "af03dba0f5802cfff12a2f58a52c5a61627b0eda9c44bfdef6c2fc5ab25aa347",
    "R_eye": "0dd9502c0f65bb91a4c268d4cf3858b98263617992ff14337cbe93af1efbd4f6",
}
EXPECTED_KEY_COUNTS = {"F": 107, "M": 212, "W": 97, "G": 182, "S": 8, "R_lip": 8, "R_eye": 12}
BASE_FILES = {"F": "appearance_feature_extractor.pth", "M": "motion_extractor.pth",
              "W": "warping_module.pth", "G": "spade_generator.pth"}
STITCHING_FILE = "stitching_retargeting_module.pth"
STITCHING_SUBDICTS = {"S": "retarget_shoulder", "R_lip": "retarget_mouth", "R_eye": "retarget_eye"}


@pytest.fixture(scope="module")
def fill_module(golden_dir):
    import fill

    return fill


@pytest.fixture(scope="module")
def key_tables(golden_dir, fill_module) -> dict[str, OrderedDict]:
    """label → OrderedDict key → (shape, dtype) from keys.tsv."""
    return {label: fill_module.load_keys_tsv(str(golden_dir / "keys.tsv"), net=label) for label in EXPECTED_SHA256}


@pytest.fixture(scope="module")
def fill_state_dicts(fill_module, key_tables) -> dict[str, OrderedDict]:
    """label → deterministic numpy state_dict (official keys, keys.tsv order)."""
    return {label: fill_module.deterministic_state_dict(*fill_module.shapes_and_dtypes(table))
            for label, table in key_tables.items()}


@pytest.fixture(scope="module")
def checkpoint_dir(tmp_path_factory, fill_state_dicts) -> Path:
    """Checkpoint-shaped files holding the fill weights, laid out like the official release."""
    root = tmp_path_factory.mktemp("lp_checkpoints")
    for label, filename in BASE_FILES.items():
        torch.save({k: torch.from_numpy(v) for k, v in fill_state_dicts[label].items()}, root / filename)
    stitching = {sub: {f"module.{k}": torch.from_numpy(v) for k, v in fill_state_dicts[label].items()}
                 for label, sub in STITCHING_SUBDICTS.items()}
    torch.save(stitching, root / STITCHING_FILE)
    return root


def _checkpoint_state_dict(root: Path, label: str) -> dict[str, torch.Tensor]:
    """Read one network's tensors back from the checkpoint files (weights_only, ``module.`` stripped)."""
    if label in BASE_FILES:
        return torch.load(root / BASE_FILES[label], map_location="cpu", weights_only=True)
    whole = torch.load(root / STITCHING_FILE, map_location="cpu", weights_only=True)
    return {k.removeprefix("module."): v for k, v in whole[STITCHING_SUBDICTS[label]].items()}


def test_network_names_and_defaults():
    assert set(NETWORK_NAMES) == set(LABELS)
    assert isinstance(default_arch("warping_module"), WarpingArch)
    assert default_arch("retarget_eye").hidden_features == (256, 256, 128, 128, 64)
    assert default_arch("retarget_lip").in_features == 65


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match=r"appearance_feature_extractor.*retarget_eye"):
        build_network("appearance")
    with pytest.raises(ValueError, match="valid names"):
        default_arch("G")


def test_wrong_arch_type_is_rejected():
    with pytest.raises(TypeError, match="AppearanceArch"):
        build_network("appearance_feature_extractor", MlpArch())


def test_inconsistent_arch_raises_config_error():
    with pytest.raises(ConfigError, match="reshape_channel"):
        AppearanceArch(max_features=256)
    with pytest.raises(ConfigError, match="depths"):
        MotionArch(depths=(1, 1), dims=(8, 16, 32))
    with pytest.raises(ConfigError, match="hidden_features"):
        MlpArch(hidden_features=(4, 0))


@pytest.mark.parametrize("name", NETWORK_NAMES)
def test_state_dict_matches_keys_tsv(name, key_tables):
    label = LABELS[name]
    table = key_tables[label]
    net = build_network(name)
    mine = OrderedDict((k, (tuple(v.shape), str(v.dtype).removeprefix("torch."))) for k, v in net.state_dict().items())
    assert len(mine) == EXPECTED_KEY_COUNTS[label]
    assert set(mine) ^ set(table) == set()
    assert dict(mine) == dict(table)
    assert list(mine) == list(table), "state_dict order differs from the official one"
    assert not net.training
    assert all(p.dtype == torch.float32 and not p.requires_grad for p in net.parameters())


@pytest.mark.parametrize("label", list(EXPECTED_SHA256))
def test_checkpoint_file_loads_strictly_into_the_fill_weights(label, fill_module, fill_state_dicts, checkpoint_dir):
    sd = fill_state_dicts[label]
    assert fill_module.state_dict_sha256(sd) == EXPECTED_SHA256[label]
    direct = build_network(NAMES[label])
    direct.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()}, strict=True)
    from_file = build_network(NAMES[label])
    result = from_file.load_state_dict(_checkpoint_state_dict(checkpoint_dir, label), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    reference = direct.state_dict()
    for key, value in from_file.state_dict().items():
        assert torch.equal(value, reference[key]), key
        assert torch.equal(value, torch.from_numpy(sd[key])), key


@pytest.mark.parametrize("label", ["F", "M", "S", "R_lip", "R_eye"])
def test_checkpoint_loaded_network_gives_the_same_outputs(label, fill_state_dicts, checkpoint_dir):
    # W and G are covered by the bit-identical state above and their goldens in test_lp_networks.py.
    direct = build_network(NAMES[label])
    direct.load_state_dict({k: torch.from_numpy(v) for k, v in fill_state_dicts[label].items()}, strict=True)
    from_file = build_network(NAMES[label])
    from_file.load_state_dict(_checkpoint_state_dict(checkpoint_dir, label), strict=True)
    torch.manual_seed(0)
    # Both image networks are fully convolutional; a 64×64 input keeps the test fast.
    x = torch.rand(1, 3, 64, 64) if label in ("F", "M") else torch.randn(2, default_arch(NAMES[label]).in_features)
    with torch.no_grad():
        a, b = direct(x), from_file(x)
    pairs = [(a[k], b[k]) for k in a] if isinstance(a, dict) else [(a, b)]
    for left, right in pairs:
        assert torch.equal(left, right)


def test_renamed_key_fails_with_missing_and_unexpected_names(checkpoint_dir):
    sd = dict(_checkpoint_state_dict(checkpoint_dir, "F"))
    sd["second.weight_renamed"] = sd.pop("second.weight")
    net = build_network("appearance_feature_extractor")
    with pytest.raises(RuntimeError) as info:
        net.load_state_dict(sd, strict=True)
    message = str(info.value)
    assert "Missing key(s)" in message and '"second.weight"' in message
    assert "Unexpected key(s)" in message and '"second.weight_renamed"' in message


def test_motion_keys_without_detector_prefix_fail(checkpoint_dir):
    sd = {k.removeprefix("detector."): v for k, v in _checkpoint_state_dict(checkpoint_dir, "M").items()}
    with pytest.raises(RuntimeError, match=r"detector\.fc_kp\.weight"):
        build_network("motion_extractor").load_state_dict(sd, strict=True)


def test_stitching_sub_dict_with_module_prefix_fails(checkpoint_dir):
    whole = torch.load(checkpoint_dir / STITCHING_FILE, map_location="cpu", weights_only=True)
    net = build_network("stitching")
    with pytest.raises(RuntimeError, match=r"module\.mlp\.0\.weight"):
        net.load_state_dict(whole["retarget_shoulder"], strict=True)


def test_wrong_shape_fails_with_key_name():
    net = build_network("retarget_lip")
    sd = net.state_dict()
    sd["mlp.6.weight"] = torch.zeros(64, 64)
    with pytest.raises(RuntimeError, match=r"mlp\.6\.weight"):
        net.load_state_dict(sd, strict=True)


def test_spectral_norm_uses_stored_vectors_and_refolds_after_load():
    torch.manual_seed(0)
    conv = SpectralNormConv2d(4, 3, kernel_size=3, padding=1)
    weight, u, v = torch.randn(3, 4, 3, 3), torch.randn(3), torch.randn(36)
    u, v = u / u.norm(), v / v.norm()
    conv.load_state_dict({"bias": torch.zeros(3), "weight_orig": weight, "weight_u": u, "weight_v": v}, strict=True)
    sigma_stored = float(u @ (weight.reshape(3, -1) @ v))
    sigma_true = float(torch.linalg.matrix_norm(weight.reshape(3, -1), ord=2))
    assert abs(sigma_stored - sigma_true) > 0.1  # the test can tell the two apart
    torch.testing.assert_close(conv.effective_weight(), weight / sigma_stored)
    x = torch.randn(1, 4, 5, 5)
    with torch.no_grad():
        first = conv(x)
        conv.load_state_dict({"bias": torch.zeros(3), "weight_orig": 2 * weight, "weight_u": u, "weight_v": v})
        same = conv(x)  # doubling weight_orig doubles σ: the folded weight is unchanged
        conv.load_state_dict({"bias": torch.zeros(3), "weight_orig": weight, "weight_u": -u, "weight_v": v})
        flipped = conv(x)  # a new u flips σ's sign: the cache must be invalidated
    torch.testing.assert_close(same, first)
    torch.testing.assert_close(flipped, -first)
    assert set(conv.state_dict()) == {"bias", "weight_orig", "weight_u", "weight_v"}
