"""Folded inference weights, the polyphase interleave of G's SPADE, and torch.compile of the networks.

Folding (``fold_inference_weights``) must keep the official state_dict keys, give the same outputs as the
per-call derivation, follow ``load_state_dict``/``.to()``, stay fp32 when done under autocast, and step aside
while autograd needs the weights. Compiled networks (dynamo with the ``aot_eager`` backend, which needs no C++
compiler; one real inductor test is marked slow) must equal eager ones, in one graph, without recompiling on a
second call of the same shape.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch._dynamo
import torch.nn.functional as F
from test_lp_networks import TINY_F, TINY_G, TINY_M, TINY_W, _randomised
from torch import nn
from torch._dynamo.testing import CompileCounterWithBackend

from frontalize.liveportrait import LivePortraitFrontalizer, build_network
from frontalize.liveportrait import frontalizer as frontalizer_module
from frontalize.liveportrait.blocks import (
    SpectralNormConv2d,
    _phase_groups,
    upsampled_conv3x3,
    upsampled_conv3x3_weights,
)
from frontalize.liveportrait.frontalizer import fold_inference_weights
from frontalize.liveportrait.spade import SPADE

# name → (tiny arch, example positional inputs, keyword inputs)
_TINY_CASES = {
    "spade_generator": (TINY_G, lambda: (torch.randn(1, 16, 8, 8),), dict),
    "warping_module": (TINY_W, lambda: (torch.randn(1, 4, 8, 16, 16),),
                       lambda: {"kp_driving": torch.rand(1, 4, 3) - 0.5, "kp_source": torch.rand(1, 4, 3) - 0.5}),
}


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _folded_tiny(name: str, seed: int = 0) -> nn.Module:
    arch = {"spade_generator": TINY_G, "warping_module": TINY_W, "appearance_feature_extractor": TINY_F,
            "motion_extractor": TINY_M}[name]
    net = _randomised(name, arch, seed=seed).eval()
    fold_inference_weights(net)
    return net


def _outputs(net: nn.Module, args: tuple, kwargs: dict) -> list[torch.Tensor]:
    out = net(*args, **kwargs)
    return list(out.values()) if isinstance(out, dict) else [out]


# ----------------------------------------------------------------------------------------------- folding


def test_fold_keeps_official_keys_and_outputs():
    net = _randomised("spade_generator", TINY_G).eval()
    keys = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    feature = torch.randn(2, 16, 8, 8)
    with torch.no_grad():
        live = net(feature)
        assert fold_inference_weights(net) == 20  # 12 spectral-norm convolutions + 8 SPADEs of TINY_G
        folded = net(feature)
    assert {k: tuple(v.shape) for k, v in net.state_dict().items()} == keys
    assert net.up_1.norm_0.shared_polyphase_weight is not None and net.G_middle_0.norm_0.shared_polyphase_weight is None
    torch.testing.assert_close(folded, live, rtol=0, atol=0)


def test_folded_buffers_follow_load_state_dict_and_dtype():
    net, other = _folded_tiny("spade_generator", seed=0), _randomised("spade_generator", TINY_G, seed=1).eval()
    feature = torch.randn(1, 16, 8, 8)
    with torch.no_grad():
        net.load_state_dict(other.state_dict())
        torch.testing.assert_close(net(feature), other(feature), rtol=0, atol=0)
        assert net.up_0.conv_0.is_folded and net.up_0.norm_s.is_folded  # re-folded, not dropped
        net.double()
        assert net.up_0.norm_0.shared_polyphase_weight.dtype == torch.float64
        # folded in fp32 then cast, vs derived in fp64: equal up to fp32 rounding of the derived weights
        torch.testing.assert_close(net(feature.double()), other.double()(feature.double()), rtol=1e-5, atol=1e-5)


def test_unfolded_module_stays_unfolded_after_load():
    net = _randomised("spade_generator", TINY_G).eval()
    net.load_state_dict(_randomised("spade_generator", TINY_G, seed=1).state_dict())
    assert not any(getattr(m, "is_folded", False) for m in net.modules())


def test_fold_under_autocast_stores_fp32():
    net = _randomised("spade_generator", TINY_G).eval()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fold_inference_weights(net)
    assert net.up_1.norm_1.shared_polyphase_weight.dtype == torch.float32
    assert net.up_1.conv_1.weight_folded.dtype == torch.float32
    assert net.G_middle_0.norm_0.gamma_bias_plus_one.dtype == torch.float32


def test_folded_module_still_trains():
    """With grad enabled and trainable sources, forward derives the weights live so gradients reach them."""
    net = _folded_tiny("spade_generator").requires_grad_(True)  # build_network freezes the parameters
    net(torch.randn(1, 16, 8, 8)).mean().backward()
    sources = (net.up_1.conv_0.weight_orig, net.up_1.norm_0.mlp_shared[0].weight, net.G_middle_0.norm_1.mlp_gamma.bias)
    for param in sources:
        assert param.grad is not None and float(param.grad.abs().sum()) > 0


def test_spectral_norm_fold_refolds_after_load():
    torch.manual_seed(0)
    conv = SpectralNormConv2d(4, 3, kernel_size=3, padding=1)
    weight, u, v = torch.randn(3, 4, 3, 3), torch.randn(3), torch.randn(36)
    u, v = u / u.norm(), v / v.norm()
    conv.load_state_dict({"bias": torch.zeros(3), "weight_orig": weight, "weight_u": u, "weight_v": v})
    conv.fold_inference_weights()
    x = torch.randn(1, 4, 5, 5)
    with torch.no_grad():
        first = conv(x)
        torch.testing.assert_close(conv.effective_weight(), weight / float(u @ (weight.reshape(3, -1) @ v)))
        conv.load_state_dict({"bias": torch.zeros(3), "weight_orig": weight, "weight_u": -u, "weight_v": v})
        flipped = conv(x)  # a new u flips σ's sign: the folded weight must follow
    torch.testing.assert_close(flipped, -first)
    assert set(conv.state_dict()) == {"bias", "weight_orig", "weight_u", "weight_v"}


def test_spade_off_factor_sizes_still_exact_when_folded():
    """A SPADE folded for factor 4 but called at another size derives the kernels it needs on the fly."""
    torch.manual_seed(2)
    norm = SPADE(norm_channels=6, label_channels=5, hidden_channels=4, upsample_factor=4).eval()
    x, segmap = torch.randn(1, 6, 10, 10), torch.randn(1, 5, 5, 5)
    with torch.no_grad():
        live = norm(x, segmap)
        norm.fold_inference_weights()
        torch.testing.assert_close(norm(x, segmap), live, rtol=0, atol=0)


# ----------------------------------------------------------------------------------------------- polyphase


def _indexed_interleave(low: torch.Tensor, factor: int, height: int, width: int) -> torch.Tensor:
    """Reference: output phase (a, b) = the low-res map of its (row kind, column kind) shifted by its offsets."""
    groups = _phase_groups(factor)
    kinds = [(kind, offset) for kind, offset, repeat in groups for _ in range(repeat)]
    count = len(groups)
    low6 = low.reshape(low.shape[0], count, count, -1, height + 1, width + 1)
    out = low.new_empty(low.shape[0], low6.shape[3], factor * height, factor * width)
    for a, (row_kind, row_offset) in enumerate(kinds):
        for b, (col_kind, col_offset) in enumerate(kinds):
            out[:, :, a::factor, b::factor] = low6[:, row_kind, col_kind, :, row_offset:row_offset + height,
                                                   col_offset:col_offset + width]
    return out


@pytest.mark.parametrize("factor", [2, 3, 4])
@pytest.mark.parametrize("channels_last", [False, True])
def test_polyphase_interleave_is_exact(factor, channels_last):
    torch.manual_seed(factor)
    x, weight, bias = torch.randn(2, 6, 5, 7), torch.randn(4, 6, 3, 3), torch.randn(4)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    kernels, stacked_bias = upsampled_conv3x3_weights(weight, bias, factor)
    low = F.relu(F.conv2d(x, kernels, stacked_bias, padding=1))
    out = upsampled_conv3x3(x, (kernels, stacked_bias), factor, relu=True)
    assert out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, _indexed_interleave(low, factor, 5, 7), rtol=0, atol=0)
    expected = F.relu(F.conv2d(F.interpolate(x, scale_factor=factor, mode="nearest"), weight, bias, padding=1))
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------------------------- torch.compile


@pytest.mark.parametrize("name", sorted(_TINY_CASES))
def test_compiled_equals_eager_in_one_graph_without_recompiling(name):
    _, make_args, make_kwargs = _TINY_CASES[name]
    net = _folded_tiny(name)
    args, kwargs = make_args(), make_kwargs()
    shifted = tuple(a + 0.01 for a in args)  # same shapes, new values (made outside inference mode, like args)
    counter = CompileCounterWithBackend("aot_eager")
    compiled = torch.compile(net, backend=counter, dynamic=False, fullgraph=True)
    with torch.inference_mode():
        eager = _outputs(net, args, kwargs)
        first = _outputs(compiled, args, kwargs)
        again = _outputs(compiled, shifted, kwargs)
    assert counter.frame_count == 1  # one graph, compiled once: the second call reused it
    for got, want in zip(first, eager, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert not torch.equal(again[0], first[0])


def test_frontalizer_compiles_the_four_networks_after_folding(monkeypatch):
    compiled_names = []

    def fake_compile(module: nn.Module) -> nn.Module:
        compiled_names.append(type(module).__name__)
        return torch.compile(module, backend="aot_eager", dynamic=False)

    monkeypatch.setattr(frontalizer_module, "compile_network", fake_compile)
    networks = {name: _randomised(name, arch) for name, arch in (
        ("appearance_feature_extractor", TINY_F), ("motion_extractor", TINY_M), ("warping_module", TINY_W),
        ("spade_generator", TINY_G))}
    networks["stitching"] = build_network("stitching")
    eager_g = copy.deepcopy(networks["spade_generator"]).eval()
    frontalizer = LivePortraitFrontalizer(networks, device="cpu", compile=True)
    assert frontalizer.compiled and len(compiled_names) == 4
    assert frontalizer.networks["stitching"] is networks["stitching"]
    assert networks["spade_generator"].up_1.norm_0.is_folded  # folded before compiling
    feature = torch.randn(1, 16, 8, 8)
    with torch.inference_mode():
        torch.testing.assert_close(frontalizer.networks["spade_generator"](feature), eager_g(feature), rtol=1e-5,
                                   atol=1e-5)


@pytest.mark.slow
def test_inductor_compiled_spade_equals_eager():
    """The real backend (inductor, C++ codegen): a tiny folded G, compiled once, equals eager."""
    net = _folded_tiny("spade_generator")
    counter = CompileCounterWithBackend("inductor")
    compiled = torch.compile(net, backend=counter, dynamic=False)
    feature = torch.randn(2, 16, 8, 8)
    halved = feature * 0.5
    with torch.inference_mode():
        eager = net(feature)
        first = compiled(feature)
        compiled(halved)
    assert counter.frame_count == 1
    torch.testing.assert_close(first, eager, rtol=1e-5, atol=1e-5)


def test_compile_default_is_off():
    frontalizer = LivePortraitFrontalizer({name: _randomised(name, arch) for name, arch in (
        ("appearance_feature_extractor", TINY_F), ("motion_extractor", TINY_M), ("warping_module", TINY_W),
        ("spade_generator", TINY_G), ("stitching", None))})
    assert not frontalizer.compiled
    assert not isinstance(frontalizer.networks["spade_generator"], torch._dynamo.eval_frame.OptimizedModule)
    assert frontalizer.networks["spade_generator"].up_1.norm_s.is_folded

