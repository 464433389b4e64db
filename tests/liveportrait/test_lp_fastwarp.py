"""Tests of the exact fast forms of W's and F's layers (``frontalize/liveportrait/fusion.py``) and their folding.

Each restructured layer is compared with the official formulation in float64 on small random inputs; the folded
full-size W and F are compared with the numerical goldens; the folding mechanism keeps the official state_dict
keys, re-folds after ``load_state_dict``, follows ``.to()`` and falls back to the official formulation while
autograd needs the parameters.
"""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from frontalize.liveportrait.arch import AppearanceArch, DenseMotionArch, WarpingArch
from frontalize.liveportrait.blocks import (
    DownBlock2d,
    DownBlock3d,
    ResBlock3d,
    SameBlock2d,
    UpBlock3d,
    coordinate_grid,
)
from frontalize.liveportrait.fusion import (
    InferenceFolding,
    depth_stacked_conv3d,
    depth_stacked_weight,
    fold_batch_norm,
    upsampled_conv3d,
    upsampled_conv3d_weights,
)
from frontalize.liveportrait.networks import build_network
from frontalize.liveportrait.warping import keypoint_gaussians

TINY_F = AppearanceArch(block_expansion=8, num_down_blocks=2, max_features=32, reshape_channel=4, reshape_depth=8,
                        num_resblocks=2)
TINY_W = WarpingArch(num_kp=4, block_expansion=8, max_features=32, num_down_blocks=1, reshape_channel=4,
                     dense_motion=DenseMotionArch(block_expansion=4, max_features=16, num_blocks=4, reshape_depth=8,
                                                  compress=2))


def _randomise_norms(module: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial eval-mode BatchNorm statistics and affine parameters (so folding is actually exercised)."""
    generator = torch.Generator().manual_seed(seed)
    for sub in module.modules():
        if isinstance(sub, nn.modules.batchnorm._BatchNorm):
            channels = sub.num_features
            with torch.no_grad():
                sub.running_mean.copy_(torch.randn(channels, generator=generator) * 0.3)
                sub.running_var.copy_(torch.rand(channels, generator=generator) + 0.5)
                sub.weight.copy_(torch.rand(channels, generator=generator) + 0.5)
                sub.bias.copy_(torch.randn(channels, generator=generator) * 0.2)
    return module.eval()


def _fold_all(module: nn.Module) -> None:
    for sub in module.modules():
        if isinstance(sub, InferenceFolding):
            sub.fold_inference_weights()


# ------------------------------------------------------------------------------------------- pure functions


@pytest.mark.parametrize("dims", [2, 3])
def test_fold_batch_norm_equals_conv_then_norm(dims):
    torch.manual_seed(0)
    conv = (nn.Conv2d(5, 7, 3, padding=1) if dims == 2 else nn.Conv3d(5, 7, 3, padding=1)).double()
    norm = _randomise_norms((nn.BatchNorm2d(7) if dims == 2 else nn.BatchNorm3d(7)).double())
    x = torch.randn((2, 5) + (6,) * dims, dtype=torch.float64)
    weight, bias = fold_batch_norm(conv.weight, conv.bias, norm)
    convolve = F.conv2d if dims == 2 else F.conv3d
    torch.testing.assert_close(convolve(x, weight, bias, padding=1), norm(conv(x)), rtol=1e-12, atol=1e-12)
    no_bias_weight, no_bias = fold_batch_norm(conv.weight, None, norm)
    expected = norm(convolve(x, conv.weight, None, padding=1))
    torch.testing.assert_close(convolve(x, no_bias_weight, no_bias, padding=1), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape", [(1, 3, 4, 5), (2, 2, 3, 7)])
def test_upsampled_conv3d_equals_upsample_then_conv(shape):
    batch, depth, height, width = shape
    torch.manual_seed(1)
    x = torch.randn(batch, 6, depth, height, width, dtype=torch.float64)
    weight = torch.randn(4, 6, 3, 3, 3, dtype=torch.float64)
    bias = torch.randn(4, dtype=torch.float64)
    upsampled = F.interpolate(x, scale_factor=(1.0, 2.0, 2.0), mode="nearest")
    expected = F.relu(F.conv3d(upsampled, weight, bias, padding=1))
    kernels, phase_bias = upsampled_conv3d_weights(weight, bias)
    torch.testing.assert_close(upsampled_conv3d(x, kernels, phase_bias), expected, rtol=1e-12, atol=1e-12)
    # written into a channel slice of a larger (concatenation) buffer, the rest untouched
    buffer = torch.full((batch, 9, depth, 2 * height, 2 * width), 7.0, dtype=torch.float64)
    result = upsampled_conv3d(x, kernels, phase_bias, out=buffer[:, :4])
    assert result.data_ptr() == buffer.data_ptr()
    torch.testing.assert_close(buffer[:, :4], expected, rtol=1e-12, atol=1e-12)
    assert bool((buffer[:, 4:] == 7.0).all())


@pytest.mark.parametrize("depth", [1, 2, 5, 9])
@pytest.mark.parametrize("use_bias", [True, False])
def test_depth_stacked_conv3d_equals_conv3d(depth, use_bias):
    torch.manual_seed(2)
    x = torch.randn(2, 5, depth, 6, 7, dtype=torch.float64)
    weight = torch.randn(3, 5, 7, 7, 7, dtype=torch.float64)
    bias = torch.randn(3, dtype=torch.float64) if use_bias else None
    expected = F.conv3d(x, weight, bias, padding=3)
    result = depth_stacked_conv3d(x, depth_stacked_weight(weight), bias)
    torch.testing.assert_close(result, expected, rtol=1e-12, atol=1e-12)


def test_depth_stacked_conv3d_accumulates_in_float32_under_bf16_autocast():
    torch.manual_seed(3)
    x = torch.randn(1, 8, 6, 8, 8)
    weight = torch.randn(3, 8, 3, 3, 3) * 0.1
    bias = torch.randn(3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        result = depth_stacked_conv3d(x, depth_stacked_weight(weight), bias)
    assert result.dtype == torch.float32
    torch.testing.assert_close(result, F.conv3d(x, weight, bias, padding=1), rtol=0.05, atol=0.05)


# ------------------------------------------------------------------------------------------------- blocks


BLOCKS = {
    "same2d": (lambda: SameBlock2d(5, 8), (2, 5, 6, 6)),
    "same2d_leaky": (lambda: SameBlock2d(5, 8, leaky=True), (2, 5, 6, 6)),
    "down2d": (lambda: DownBlock2d(5, 8), (2, 5, 6, 6)),
    "res3d": (lambda: ResBlock3d(6), (2, 6, 3, 4, 4)),
    "down3d": (lambda: DownBlock3d(5, 8), (2, 5, 3, 4, 6)),
    "up3d": (lambda: UpBlock3d(5, 8), (2, 5, 3, 3, 4)),
    "up3d_polyphase": (lambda: UpBlock3d(5, 8, polyphase=True), (2, 5, 3, 3, 4)),
}


@pytest.mark.parametrize("name", sorted(BLOCKS))
def test_folded_block_equals_official_formulation(name):
    factory, shape = BLOCKS[name]
    torch.manual_seed(4)
    block = _randomise_norms(factory().double())
    keys = set(block.state_dict())
    x = torch.randn(shape, dtype=torch.float64)
    with torch.no_grad():
        expected = block(x.clone())
        assert isinstance(block, InferenceFolding) and not block.is_folded
        block.fold_inference_weights()
        assert block.is_folded
        folded = block(x.clone())
    torch.testing.assert_close(folded, expected, rtol=1e-12, atol=1e-12)
    assert set(block.state_dict()) == keys  # folded buffers are not persistent


def test_load_state_dict_refolds_and_to_moves_folded_buffers():
    torch.manual_seed(5)
    block = _randomise_norms(UpBlock3d(4, 6, polyphase=True))
    block.fold_inference_weights()
    other = _randomise_norms(UpBlock3d(4, 6, polyphase=True), seed=9)
    nn.init.normal_(other.conv.weight)
    block.load_state_dict(other.state_dict())
    x = torch.randn(1, 4, 2, 3, 3)
    with torch.no_grad():
        torch.testing.assert_close(block(x), other(x), rtol=1e-5, atol=1e-5)  # other is not folded
    block.double()
    assert block.folded_weight is not None and block.folded_weight.dtype == torch.float64
    with torch.no_grad():  # folded in fp32, then cast: fp32-level agreement
        torch.testing.assert_close(block(x.double()), other.double()(x.double()), rtol=1e-5, atol=1e-5)


def test_folded_block_still_trains_through_the_official_parameters():
    torch.manual_seed(6)
    block = _randomise_norms(DownBlock3d(3, 4))
    block.fold_inference_weights()
    block(torch.randn(1, 3, 2, 4, 4)).sum().backward()  # grad mode on and parameters require grad
    assert block.conv.weight.grad is not None and block.norm.weight.grad is not None


# --------------------------------------------------------------------------------------------- networks


def _warping_inputs(batch: int, arch: WarpingArch, size: int, seed: int = 7):
    generator = torch.Generator().manual_seed(seed)
    depth = arch.dense_motion.reshape_depth
    feature = torch.randn(batch, arch.reshape_channel, depth, size, size, generator=generator)
    kp_driving = torch.rand(batch, arch.num_kp, 3, generator=generator) * 1.2 - 0.6
    kp_source = kp_driving + 0.1 * torch.randn(batch, arch.num_kp, 3, generator=generator)
    return feature, kp_driving, kp_source


def test_tiny_warping_folded_equals_unfolded():
    net = _randomise_norms(build_network("warping_module", TINY_W))
    feature, kp_driving, kp_source = _warping_inputs(2, TINY_W, 32)
    keys = set(net.state_dict())
    with torch.no_grad():
        expected = net(feature, kp_driving=kp_driving, kp_source=kp_source, return_mask=True)
        _fold_all(net)
        folded = net(feature, kp_driving=kp_driving, kp_source=kp_source, return_mask=True)
    assert set(net.state_dict()) == keys
    assert set(folded) == set(expected)
    for name, value in expected.items():
        torch.testing.assert_close(folded[name], value, rtol=1e-5, atol=1e-5)


def test_tiny_appearance_folded_equals_unfolded():
    net = _randomise_norms(build_network("appearance_feature_extractor", TINY_F))
    image = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        expected = net(image)
        _fold_all(net)
        torch.testing.assert_close(net(image), expected, rtol=1e-5, atol=1e-5)


def test_folded_warping_after_bf16_autocast_still_runs_exact_fp32():
    net = _randomise_norms(build_network("warping_module", TINY_W))
    _fold_all(net)
    feature, kp_driving, kp_source = _warping_inputs(1, TINY_W, 32)
    with torch.no_grad():
        before = net(feature, kp_driving=kp_driving, kp_source=kp_source)["out"]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            net(feature, kp_driving=kp_driving, kp_source=kp_source)
        after = net(feature, kp_driving=kp_driving, kp_source=kp_source)["out"]
    assert after.dtype == torch.float32
    assert torch.equal(before, after)


@pytest.fixture(scope="module")
def golden_networks(golden_dir):
    """Full-size F and W with fill.py weights, folded."""
    import fill

    nets = {}
    for label, name in (("F", "appearance_feature_extractor"), ("W", "warping_module")):
        table = fill.load_keys_tsv(str(golden_dir / "keys.tsv"), net=label)
        state = fill.deterministic_state_dict(*fill.shapes_and_dtypes(table))
        net = build_network(name)
        _fold_all(net)  # folded before loading: the post-hook must re-fold with the loaded weights
        net.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=True)
        nets[label] = net.eval()
    return nets


def _check_golden(golden_dir, label: str, name: str, value: torch.Tensor) -> None:
    from golden_check import Golden

    tolerance = json.loads((golden_dir / "tolerances.json").read_text())[label][name]
    result = Golden(str(golden_dir / f"{label}.npz")).check(name, value.detach().numpy(), tolerance)
    assert result["ok"], result


def test_folded_appearance_extractor_golden(golden_dir, golden_networks):
    from golden_check import Golden

    u8 = Golden(str(golden_dir / "F.npz")).get("input_rgb_u8")
    image = torch.from_numpy(u8.copy()).permute(2, 0, 1)[None].float() / 255.0
    with torch.no_grad():
        _check_golden(golden_dir, "F", "out", golden_networks["F"](image))


def test_folded_warping_module_golden(golden_dir, golden_networks):
    import fill
    from golden_check import Golden

    golden = Golden(str(golden_dir / "W.npz"))
    feature = torch.from_numpy(fill.deterministic_input("golden_input/W/feature_3d", (1, 32, 16, 64, 64)))
    kp_source = torch.from_numpy(golden.get("in_kp_source"))
    kp_driving = torch.from_numpy(golden.get("in_kp_driving"))
    with torch.no_grad():
        out = golden_networks["W"](feature, kp_driving=kp_driving, kp_source=kp_source, return_mask=True)
    for name in ("out", "occlusion_map", "deformation"):
        _check_golden(golden_dir, "W", name, out[name])
    _check_golden(golden_dir, "W", "debug_mask", out["mask"])


def test_separable_keypoint_gaussians_equal_the_direct_formula():
    grid = coordinate_grid(5, 6, 7, torch.float64)
    keypoints = torch.rand(2, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(10)) * 2 - 1
    diff = grid[None, None] - keypoints[:, :, None, None, None, :]
    expected = torch.exp(-0.5 * diff.square().sum(dim=-1) / 0.01)
    torch.testing.assert_close(keypoint_gaussians(grid, keypoints), expected, rtol=1e-12, atol=1e-300)
