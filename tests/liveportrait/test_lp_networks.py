"""Tests of the LivePortrait networks F, M, W, G, S, R_lip, R_eye and their building blocks.

Full-size networks carry the implementation-independent ``fill.py`` weights (loaded with ``strict=True``) and are
compared with the numerical goldens in ``shared/golden/liveportrait`` using ``tolerances.json``; each is built and
run once per module (W and G at batch 1 only). Tiny architectures cover shapes and batching, and the efficiency
rewrites (polyphase SPADE convolution, GEMM occlusion convolution, instance norm) are checked against the plain
torch operations they replace. Loading from checkpoint files is tested in ``test_lp_loading.py``.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from frontalize.liveportrait.arch import AppearanceArch, DenseMotionArch, MlpArch, MotionArch, SpadeArch, WarpingArch
from frontalize.liveportrait.blocks import coordinate_grid, upsampled_conv3x3, upsampled_conv3x3_weights
from frontalize.liveportrait.networks import build_network
from frontalize.liveportrait.spade import SPADE, instance_norm_parts
from frontalize.liveportrait.warping import keypoint_gaussians, single_output_conv2d

NAMES = {
    "F": "appearance_feature_extractor",
    "M": "motion_extractor",
    "W": "warping_module",
    "G": "spade_generator",
    "S": "stitching",
    "R_lip": "retarget_lip",
    "R_eye": "retarget_eye",
}


@pytest.fixture(scope="module")
def fill_module(golden_dir):
    import fill

    return fill


@pytest.fixture(scope="module")
def tolerances(golden_dir) -> dict:
    return json.loads((golden_dir / "tolerances.json").read_text())


@pytest.fixture(scope="module")
def networks(golden_dir, fill_module):
    """Lazily built full-size networks with the fill weights, loaded strictly (one build per label)."""
    cache: dict[str, torch.nn.Module] = {}

    def get(label: str) -> torch.nn.Module:
        if label not in cache:
            table = fill_module.load_keys_tsv(str(golden_dir / "keys.tsv"), net=label)
            sd = fill_module.deterministic_state_dict(*fill_module.shapes_and_dtypes(table))
            net = build_network(NAMES[label])
            net.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()}, strict=True)
            cache[label] = net
        return cache[label]

    return get


def _golden(golden_dir: Path, label: str):
    from golden_check import Golden

    return Golden(str(golden_dir / f"{label}.npz"))


def _assert_golden(golden, tolerances: dict, label: str, name: str, value: torch.Tensor) -> None:
    res = golden.check(name, value.detach().numpy(), tolerances[label][name])
    assert res["ok"], res


def _golden_image(golden_dir: Path) -> torch.Tensor:
    u8 = _golden(golden_dir, "F").get("input_rgb_u8")
    return torch.from_numpy(np.ascontiguousarray(u8)).permute(2, 0, 1)[None].float() / 255.0


# ----------------------------------------------------------------------------------------------- goldens


def test_appearance_extractor_golden(golden_dir, tolerances, networks):
    with torch.no_grad():
        out = networks("F")(_golden_image(golden_dir))
    assert out.shape == (1, 32, 16, 64, 64)
    _assert_golden(_golden(golden_dir, "F"), tolerances, "F", "out", out)


def test_motion_extractor_golden(golden_dir, tolerances, networks):
    net = networks("M")
    image = _golden_image(golden_dir)
    with torch.no_grad():
        out = net(image)
        features = net.forward_features(image)
    golden = _golden(golden_dir, "M")
    assert set(out) == {"pitch", "yaw", "roll", "t", "exp", "scale", "kp"}
    for name, value in out.items():
        _assert_golden(golden, tolerances, "M", name, value)
    _assert_golden(golden, tolerances, "M", "debug_features", features)


def test_warping_module_golden(golden_dir, tolerances, fill_module, networks):
    golden = _golden(golden_dir, "W")
    feature = torch.from_numpy(fill_module.deterministic_input("golden_input/W/feature_3d", (1, 32, 16, 64, 64)))
    assert float(feature.double().sum()) == float(golden.get("in_feature_3d_sum"))
    kp_source = torch.from_numpy(golden.get("in_kp_source"))
    kp_driving = torch.from_numpy(golden.get("in_kp_driving"))
    with torch.no_grad():
        out = networks("W")(feature, kp_driving=kp_driving, kp_source=kp_source, return_mask=True)
    assert out["out"].shape == (1, 256, 64, 64)
    for name in ("out", "occlusion_map", "deformation"):
        _assert_golden(golden, tolerances, "W", name, out[name])
    _assert_golden(golden, tolerances, "W", "debug_mask", out["mask"])


def test_spade_generator_golden(golden_dir, tolerances, fill_module, networks):
    golden = _golden(golden_dir, "G")
    feature = torch.from_numpy(fill_module.deterministic_input("golden_input/G/feature", (1, 256, 64, 64)))
    assert float(feature.double().sum()) == float(golden.get("in_feature_sum"))
    with torch.no_grad():
        out = networks("G")(feature)
    assert out.shape == (1, 3, 512, 512)
    _assert_golden(golden, tolerances, "G", "out", out)


@pytest.mark.parametrize("label", ["S", "R_lip", "R_eye"])
def test_mlp_golden_and_batching(label, golden_dir, tolerances, networks):
    golden = _golden(golden_dir, label)
    x = torch.from_numpy(golden.get("x"))
    net = networks(label)
    with torch.no_grad():
        out = net(x)
        singles = torch.cat([net(x[i : i + 1]) for i in range(x.shape[0])])
    _assert_golden(golden, tolerances, label, "out", out)
    torch.testing.assert_close(out, singles, rtol=1e-6, atol=1e-6)


def test_full_size_batch_of_two_equals_single_calls(golden_dir, networks):
    image = _golden_image(golden_dir)
    batch = torch.cat([image, image.flip(-1)])
    net = networks("M")  # the cheap full-size network; tiny archs cover batching of the others
    with torch.no_grad():
        both = net(batch)
        first, second = net(batch[:1]), net(batch[1:])
    for key, value in both.items():
        torch.testing.assert_close(value, torch.cat([first[key], second[key]]), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(first["yaw"], second["yaw"])


@pytest.fixture
def exact_cuda():
    """CUDA with TF32 off (the goldens are fp32); restores the global flags afterwards."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield torch.device("cuda")
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@pytest.mark.gpu
def test_goldens_on_cuda(exact_cuda, golden_dir, tolerances, fill_module, networks):
    image = _golden_image(golden_dir).to(exact_cuda)
    w_golden = _golden(golden_dir, "W")
    w_feature = fill_module.deterministic_input("golden_input/W/feature_3d", (1, 32, 16, 64, 64))
    g_feature = fill_module.deterministic_input("golden_input/G/feature", (1, 256, 64, 64))
    cases = {
        "F": ((image,), {}, {"out": lambda out: out}),
        "M": ((image,), {}, {"kp": lambda out: out["kp"], "yaw": lambda out: out["yaw"]}),
        "W": ((torch.from_numpy(w_feature).to(exact_cuda),),
              {"kp_driving": torch.from_numpy(w_golden.get("in_kp_driving")).to(exact_cuda),
               "kp_source": torch.from_numpy(w_golden.get("in_kp_source")).to(exact_cuda)},
              {"out": lambda out: out["out"], "deformation": lambda out: out["deformation"]}),
        "G": ((torch.from_numpy(g_feature).to(exact_cuda),), {}, {"out": lambda out: out}),
    }
    for label, (args, kwargs, picks) in cases.items():
        net = copy.deepcopy(networks(label)).to(exact_cuda)
        with torch.no_grad():
            out = net(*args, **kwargs)
        golden = _golden(golden_dir, label)
        for name, pick in picks.items():
            _assert_golden(golden, tolerances, label, name, pick(out).cpu())


# ----------------------------------------------------------------------------------------------- tiny archs

TINY_F = AppearanceArch(block_expansion=8, num_down_blocks=2, max_features=32, reshape_channel=4, reshape_depth=8,
                        num_resblocks=2)
TINY_M = MotionArch(num_kp=4, num_bins=6, depths=(1, 1, 2, 1), dims=(8, 16, 24, 32))
TINY_W = WarpingArch(num_kp=4, block_expansion=8, max_features=32, num_down_blocks=1, reshape_channel=4,
                     dense_motion=DenseMotionArch(block_expansion=4, max_features=16, num_blocks=2, reshape_depth=8,
                                                  compress=2))
TINY_G = SpadeArch(upscale=2, block_expansion=4, max_features=64, num_down_blocks=2, out_channels=8,
                   num_middle_blocks=2, hidden_channels=8)


def _randomised(name: str, arch, seed: int = 0) -> torch.nn.Module:
    """A tiny network with random (non-default) BatchNorm statistics so that eval mode matters."""
    torch.manual_seed(seed)
    net = build_network(name, arch)
    for key, value in net.state_dict().items():
        if key.endswith("running_var"):
            value.uniform_(0.5, 1.5)
        elif key.endswith("running_mean"):
            value.normal_(0.0, 0.1)
    return net


def _assert_batch_matches_singles(outputs, singles) -> None:
    if isinstance(outputs, dict):
        assert set(outputs) == set(singles[0])
        for key, value in outputs.items():
            torch.testing.assert_close(value, torch.cat([s[key] for s in singles]), rtol=1e-5, atol=1e-5)
    else:
        torch.testing.assert_close(outputs, torch.cat(singles), rtol=1e-5, atol=1e-5)


def test_tiny_appearance_shapes_and_batching():
    net = _randomised("appearance_feature_extractor", TINY_F)
    image = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        out = net(image)
        singles = [net(image[i : i + 1]) for i in range(2)]
    assert out.shape == (2, 4, 8, 8, 8)
    _assert_batch_matches_singles(out, singles)


def test_tiny_motion_shapes_and_batching():
    net = _randomised("motion_extractor", TINY_M)
    image = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        out = net(image)
        singles = [net(image[i : i + 1]) for i in range(2)]
    shapes = {k: tuple(v.shape) for k, v in out.items()}
    assert shapes == {"pitch": (2, 6), "yaw": (2, 6), "roll": (2, 6), "t": (2, 3), "exp": (2, 12), "scale": (2, 1),
                      "kp": (2, 12)}
    assert net.forward_features(image).shape == (2, 32)
    _assert_batch_matches_singles(out, singles)


def test_tiny_warping_shapes_batching_and_roles():
    net = _randomised("warping_module", TINY_W)
    feature = torch.randn(2, 4, 8, 16, 16)
    kp_source = torch.rand(2, 4, 3) - 0.5
    kp_driving = kp_source + 0.1 * torch.randn(2, 4, 3)
    with torch.no_grad():
        out = net(feature, kp_driving=kp_driving, kp_source=kp_source, return_mask=True)
        singles = [net(feature[i : i + 1], kp_driving=kp_driving[i : i + 1], kp_source=kp_source[i : i + 1],
                       return_mask=True) for i in range(2)]
        swapped = net(feature, kp_driving=kp_source, kp_source=kp_driving)
    assert out["out"].shape == (2, 16, 16, 16)
    assert out["occlusion_map"].shape == (2, 1, 16, 16)
    assert out["deformation"].shape == (2, 8, 16, 16, 3)
    assert out["mask"].shape == (2, 5, 8, 16, 16)
    torch.testing.assert_close(out["mask"].sum(dim=1), torch.ones(2, 8, 16, 16))
    _assert_batch_matches_singles(out, singles)
    assert not torch.allclose(out["deformation"], swapped["deformation"])


def test_tiny_warping_without_occlusion():
    arch = WarpingArch(num_kp=2, block_expansion=4, max_features=8, num_down_blocks=1, reshape_channel=2,
                       estimate_occlusion_map=False,
                       dense_motion=DenseMotionArch(block_expansion=2, max_features=8, num_blocks=1, reshape_depth=4,
                                                    compress=1))
    net = _randomised("warping_module", arch)
    with torch.no_grad():
        out = net(torch.randn(1, 2, 4, 8, 8), kp_driving=torch.zeros(1, 2, 3), kp_source=torch.zeros(1, 2, 3))
    assert set(out) == {"out", "deformation"}
    assert not any(k.startswith("dense_motion_network.occlusion") for k in net.state_dict())


def test_tiny_spade_shapes_range_and_batching():
    net = _randomised("spade_generator", TINY_G)
    feature = torch.randn(2, 16, 8, 8)
    with torch.no_grad():
        out = net(feature)
        singles = [net(feature[i : i + 1]) for i in range(2)]
    assert out.shape == (2, 3, 64, 64)
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    _assert_batch_matches_singles(out, singles)


def test_spade_after_bf16_autocast_still_runs_exact_fp32():
    """Folded weights cached inside a bf16 autocast region must not leak bf16 into a later fp32 call."""
    net = _randomised("spade_generator", TINY_G)
    fresh = _randomised("spade_generator", TINY_G)
    feature = torch.randn(1, 16, 8, 8)
    with torch.no_grad():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            net(feature)
        after = net(feature)
        reference = fresh(feature)
    assert after.dtype == torch.float32
    torch.testing.assert_close(after, reference, rtol=0, atol=0)


@pytest.mark.parametrize("name", ["stitching", "retarget_lip", "retarget_eye"])
def test_tiny_mlp_shapes(name):
    net = _randomised(name, MlpArch(in_features=7, hidden_features=(5, 3), out_features=2))
    assert [k for k in net.state_dict()] == ["mlp.0.weight", "mlp.0.bias", "mlp.2.weight", "mlp.2.bias",
                                             "mlp.4.weight", "mlp.4.bias"]
    with torch.no_grad():
        assert net(torch.randn(3, 7)).shape == (3, 2)


# ----------------------------------------------------------------------------------------------- blocks


@pytest.mark.parametrize("factor", [2, 3, 4])
def test_polyphase_conv_equals_upsample_then_conv(factor):
    torch.manual_seed(factor)
    x, weight, bias = torch.randn(2, 6, 5, 7), torch.randn(4, 6, 3, 3), torch.randn(4)
    expected = F.relu(F.conv2d(F.interpolate(x.double(), scale_factor=factor, mode="nearest"), weight.double(),
                               bias.double(), padding=1))
    out = upsampled_conv3x3(x, upsampled_conv3x3_weights(weight, bias, factor), factor, relu=True)
    assert out.shape == (2, 4, 5 * factor, 7 * factor)
    torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=1e-5)


def test_single_output_conv_equals_conv2d():
    torch.manual_seed(0)
    x, weight, bias = torch.randn(2, 9, 6, 8), torch.randn(1, 9, 7, 7), torch.randn(1)
    expected = F.conv2d(x.double(), weight.double(), bias.double(), padding=3)
    torch.testing.assert_close(single_output_conv2d(x, weight, bias).double(), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(single_output_conv2d(x, weight, None).double(), expected - float(bias), rtol=1e-5,
                               atol=1e-5)


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_instance_norm_parts(memory_format):
    torch.manual_seed(0)
    x = (3 * torch.randn(2, 5, 6, 7) + 20).contiguous(memory_format=memory_format)
    centred, rstd = instance_norm_parts(x)
    expected = F.instance_norm(x.double(), eps=1e-5)
    torch.testing.assert_close((centred * rstd).double(), expected, rtol=1e-5, atol=1e-5)


def test_coordinate_grid_traced_under_compile_without_cache_warning():
    import warnings

    def shifted(x):
        return coordinate_grid(2, 3, 4) + x

    compiled = torch.compile(shifted, backend="eager", fullgraph=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = compiled(torch.ones(1))
    assert torch.equal(out, coordinate_grid(2, 3, 4) + 1)
    assert not [w for w in caught if "lru_cache" in str(w.message)]


def test_coordinate_grid_is_corner_aligned_xyz():
    grid = coordinate_grid(3, 4, 5)
    assert grid.shape == (3, 4, 5, 3)
    torch.testing.assert_close(grid[0, 0, 0], torch.tensor([-1.0, -1.0, -1.0]))
    torch.testing.assert_close(grid[2, 3, 4], torch.tensor([1.0, 1.0, 1.0]))
    torch.testing.assert_close(grid[1, 0, 2], torch.tensor([0.0, -1.0, 0.0]))  # x = 2·2/4 − 1, z = 2·1/2 − 1
    assert coordinate_grid(3, 4, 5) is grid  # built once per shape


def test_keypoint_gaussians_peak_at_keypoints():
    grid = coordinate_grid(3, 5, 5)
    keypoints = torch.tensor([[[0.0, 0.0, 0.0], [1.0, -1.0, -1.0]]])
    heat = keypoint_gaussians(grid, keypoints)
    assert heat.shape == (1, 2, 3, 5, 5)
    assert float(heat[0, 0, 1, 2, 2]) == 1.0 and float(heat[0, 1, 0, 0, 4]) == 1.0
    torch.testing.assert_close(heat[0, 0, 1, 2, 3], torch.tensor(float(np.exp(-0.5 * 0.25 / 0.01))))


@pytest.mark.parametrize("segmap_size", [(4, 4), (5, 5), (3, 4), (10, 10)])
def test_spade_matches_reference_formula(segmap_size):
    torch.manual_seed(1)
    norm = SPADE(norm_channels=6, label_channels=5, hidden_channels=4).eval()
    x, segmap = torch.randn(2, 6, 10, 10), torch.randn(2, 5, *segmap_size)
    resized = F.interpolate(segmap.double(), size=(10, 10), mode="nearest")
    conv = norm.mlp_shared[0]
    hidden = F.relu(F.conv2d(resized, conv.weight.double(), conv.bias.double(), padding=1))
    gamma = F.conv2d(hidden, norm.mlp_gamma.weight.double(), norm.mlp_gamma.bias.double(), padding=1)
    beta = F.conv2d(hidden, norm.mlp_beta.weight.double(), norm.mlp_beta.bias.double(), padding=1)
    expected = F.instance_norm(x.double(), eps=1e-5) * (1 + gamma) + beta
    with torch.no_grad():
        torch.testing.assert_close(norm(x, segmap).double(), expected, rtol=1e-5, atol=1e-5)
