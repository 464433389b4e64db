"""Tests of the GFPGAN stage: the narrow torchvision shim, the official network on random weights, loading."""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch

from frontalize.config.stages import GfpganConfig
from frontalize.errors import DeviceError, StageError, WeightsMissingError
from frontalize.stages.base import StageContext
from frontalize.stages.gfpgan import GfpganStage, blend, from_network_output, to_network_input
from frontalize.stages.gfpgan_compat import (
    FUNCTIONAL_TENSOR_MODULE,
    GfpganArch,
    build_gfpgan_network,
    gfpgan_checkpoint_dict,
    install_functional_tensor_shim,
    load_gfpgan_network,
)

CONTEXT = StageContext(input_id="face.png")
SMALL_ARCH = GfpganArch(out_size=32, num_style_feat=32, channel_multiplier=1, narrow=0.25)


@pytest.fixture(scope="module")
def official(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, torch.nn.Module]]:
    """Weights root with a v1.4-format checkpoint of deterministic random weights, and that network."""
    torch.manual_seed(0)
    network = build_gfpgan_network().eval()  # released v1.3/v1.4 architecture
    root = tmp_path_factory.mktemp("weights")
    checkpoint = root / "gfpgan" / "GFPGANv1.4.pth"
    checkpoint.parent.mkdir()
    torch.save(gfpgan_checkpoint_dict(network), checkpoint)
    yield root, network
    checkpoint.unlink()  # 350 MB: do not leave it in pytest's kept temp folders


@pytest.fixture(scope="module")
def face() -> np.ndarray:
    return np.ascontiguousarray(skimage.data.astronaut())  # 512×512×3 uint8 RGB


def test_shim_is_narrow_and_only_installed_when_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    from torchvision.transforms import functional

    monkeypatch.delitem(sys.modules, FUNCTIONAL_TENSOR_MODULE, raising=False)
    assert install_functional_tensor_shim() is True  # torchvision 0.29 has no functional_tensor
    shim = sys.modules[FUNCTIONAL_TENSOR_MODULE]
    assert [name for name in vars(shim) if not name.startswith("__")] == ["rgb_to_grayscale"]
    assert shim.rgb_to_grayscale is functional.rgb_to_grayscale
    assert install_functional_tensor_shim() is False  # already there: not replaced
    assert sys.modules[FUNCTIONAL_TENSOR_MODULE] is shim
    real = types.ModuleType(FUNCTIONAL_TENSOR_MODULE)  # what an older torchvision would have imported
    monkeypatch.setitem(sys.modules, FUNCTIONAL_TENSOR_MODULE, real)
    assert install_functional_tensor_shim() is False
    assert sys.modules[FUNCTIONAL_TENSOR_MODULE] is real


def test_basicsr_and_gfpgan_import_after_the_shim() -> None:
    install_functional_tensor_shim()
    import basicsr.data.degradations
    import gfpgan
    from gfpgan.archs.gfpganv1_clean_arch import GFPGANv1Clean

    assert callable(basicsr.data.degradations.rgb_to_grayscale)
    assert hasattr(gfpgan, "GFPGANer") and GFPGANv1Clean.__name__ == "GFPGANv1Clean"


def test_tensor_conversions_and_blend_hand_numbers() -> None:
    image = np.array([[[0, 127, 255]]], dtype=np.uint8)
    tensor = to_network_input(image, torch.device("cpu"))
    assert tensor.shape == (1, 3, 1, 1)
    assert torch.allclose(tensor.flatten(), torch.tensor([-1.0, 127 / 127.5 - 1, 1.0]))
    assert from_network_output(torch.tensor([-3.0, 0.0, 1.0]).reshape(1, 3, 1, 1)).tolist() == [[[0, 128, 255]]]
    restored = np.array([[[100, 0, 255]]], dtype=np.uint8)
    original = np.array([[[0, 200, 255]]], dtype=np.uint8)
    assert blend(restored, original, 0.25).tolist() == [[[25, 150, 255]]]
    assert np.array_equal(blend(restored, original, 0.0), original)
    assert np.array_equal(blend(restored, original, 1.0), restored)


@pytest.mark.slow  # two 512×512 forward passes of the full network on the CPU
def test_weight_one_returns_the_network_output(official: tuple[Path, torch.nn.Module], face: np.ndarray) -> None:
    root, network = official
    stage = GfpganStage(GfpganConfig(enabled=True, version="1.4", weight=1.0), root)
    assert stage.required_weights == ("gfpgan_v1.4",)
    out = stage(face, CONTEXT)
    assert out.shape == (512, 512, 3) and out.dtype == np.uint8
    with torch.inference_mode():
        expected, _ = network(to_network_input(face, torch.device("cpu")), return_rgb=False, randomize_noise=False)
    assert np.array_equal(out, from_network_output(expected))
    assert not np.array_equal(out, face)


@pytest.mark.slow  # one 512×512 forward pass of the full network on the CPU
def test_weight_zero_returns_the_input_exactly_at_any_size(official: tuple[Path, torch.nn.Module],
                                                            face: np.ndarray) -> None:
    root, _ = official
    stage = GfpganStage(GfpganConfig(enabled=True, weight=0.0), root)
    crop = np.ascontiguousarray(face[40:340, 100:360])  # 300×260: resized to 512 for the network and back
    out = stage(crop, CONTEXT)
    assert out.shape == crop.shape and np.array_equal(out, crop)
    with pytest.raises(StageError, match="gfpgan"):
        stage(np.dstack([crop, crop[..., :1]]), CONTEXT)  # RGBA refused
    with pytest.raises(StageError, match="uint8"):
        stage(crop.astype(np.float32), CONTEXT)


def test_small_arch_prefers_params_ema_and_falls_back_to_params(tmp_path: Path) -> None:
    torch.manual_seed(1)
    ema = build_gfpgan_network(SMALL_ARCH)
    plain = build_gfpgan_network(SMALL_ARCH)
    both = {"params_ema": ema.state_dict(), "params": plain.state_dict()}
    torch.save(both, tmp_path / "both.pth")
    torch.save({"params": plain.state_dict()}, tmp_path / "params.pth")
    loaded = load_gfpgan_network(tmp_path / "both.pth", arch=SMALL_ARCH)
    assert not loaded.training
    assert all(torch.equal(v, ema.state_dict()[k]) for k, v in loaded.state_dict().items())
    fallback = load_gfpgan_network(tmp_path / "params.pth", arch=SMALL_ARCH)
    assert all(torch.equal(v, plain.state_dict()[k]) for k, v in fallback.state_dict().items())


def test_bad_checkpoints_give_clear_errors(tmp_path: Path) -> None:
    (tmp_path / "garbage.pth").write_bytes(b"definitely not a torch checkpoint")
    with pytest.raises(WeightsMissingError, match=r"cannot be read.*corrupt"):
        load_gfpgan_network(tmp_path / "garbage.pth", arch=SMALL_ARCH)
    torch.save({"params_ema": build_gfpgan_network(SMALL_ARCH).state_dict()}, tmp_path / "good.pth")
    data = (tmp_path / "good.pth").read_bytes()
    (tmp_path / "truncated.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsMissingError, match="cannot be read"):
        load_gfpgan_network(tmp_path / "truncated.pth", arch=SMALL_ARCH)
    torch.save({"state_dict": {}}, tmp_path / "other.pth")
    with pytest.raises(WeightsMissingError, match="neither 'params_ema' nor 'params'"):
        load_gfpgan_network(tmp_path / "other.pth", arch=SMALL_ARCH)
    torch.save({"params_ema": {"conv.weight": torch.zeros(1)}}, tmp_path / "keys.pth")
    with pytest.raises(WeightsMissingError, match=r"missing key\(s\).*unexpected key\(s\) \['conv.weight'\]"):
        load_gfpgan_network(tmp_path / "keys.pth", arch=SMALL_ARCH)


def test_missing_checkpoint_and_unavailable_device(tmp_path: Path) -> None:
    with pytest.raises(WeightsMissingError, match=r"GFPGANv1\.3\.pth.*download_weights\.py.*--only gfpgan"):
        GfpganStage(GfpganConfig(enabled=True, version="1.3"), tmp_path)
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="CUDA"):
            GfpganStage(GfpganConfig(enabled=True), tmp_path, device="cuda:0")
    with pytest.raises(DeviceError, match="invalid device"):
        GfpganStage(GfpganConfig(enabled=True), tmp_path, device="gpu7")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu(official: tuple[Path, torch.nn.Module], face: np.ndarray) -> None:
    root, _ = official
    cpu = GfpganStage(GfpganConfig(enabled=True, weight=1.0), root)(face, CONTEXT)
    cuda = GfpganStage(GfpganConfig(enabled=True, weight=1.0), root, device="cuda")(face, CONTEXT)
    assert np.abs(cpu.astype(int) - cuda.astype(int)).max() <= 3
