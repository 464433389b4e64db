"""Measure how far CPU bf16 autocast moves LivePortraitFrontalizer's outputs from exact fp32.

The tolerances of ``test_bf16_*`` in ``test_lp_frontalizer.py`` come from these numbers (recorded there with the
date, machine and command). Rerun after a change to the precision path, or on another CPU::

    PYTHONPATH=. python tests/liveportrait/measure_bf16_drift.py            # stand-ins (20 seeds) + real networks
    PYTHONPATH=. python tests/liveportrait/measure_bf16_drift.py --no-real  # stand-ins only (seconds)

Real networks: the released architecture with the golden ``fill.py`` weights (``../shared/golden/liveportrait``) on
the golden input, its mirror and four photometric variants of it (6 faces). Drift statistics of the 512² output
(values in [0, 1]): mean |Δ|, 99th percentile |Δ| and max |Δ|; and of the driving keypoints ``x_d``: max |Δ|.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def drift(reference: dict[str, torch.Tensor], other: dict[str, torch.Tensor]) -> dict[str, float]:
    """Per-batch drift statistics between two ``frontalize`` results (fp32 reference, bf16 other)."""
    image = (other["image"].float() - reference["image"]).abs().flatten()
    keypoints = (other["x_d"].float() - reference["x_d"]).abs()
    return {"image_mean": float(image.mean()), "image_p99": float(torch.quantile(image[::7], 0.99)),
            "image_max": float(image.max()), "x_d_max": float(keypoints.max())}


def stand_in_drifts(seeds: range) -> list[dict[str, float]]:
    """Drift of the stand-in networks of the tests (batch 2, inputs ``_inputs(2, seed)``) for each seed."""
    from test_lp_frontalizer import _inputs, _stand_ins

    from frontalize.liveportrait import LivePortraitFrontalizer

    exact = LivePortraitFrontalizer(_stand_ins(), device="cpu")
    half = LivePortraitFrontalizer(_stand_ins(), device="cpu", precision="bf16")
    return [drift(exact.frontalize(_inputs(2, seed=seed)), half.frontalize(_inputs(2, seed=seed))) for seed in seeds]


def golden_faces(golden_dir: Path) -> torch.Tensor:
    """6×3×256×256: the golden input, its mirror and four photometric variants (brightness, contrast, tint)."""
    from golden_check import Golden

    from frontalize.liveportrait.crop import images_to_tensor

    face = Golden(str(golden_dir / "frontalize_e2e.npz")).get("input_rgb_u8").astype(np.float32)
    variants = [face, face[:, ::-1], face * 0.8, np.clip(face * 1.15 + 10, 0, 255),
                (face - face.mean()) * 1.3 + face.mean(), face * np.array([1.05, 0.97, 0.9], np.float32)]
    return images_to_tensor([np.ascontiguousarray(np.clip(v, 0, 255).astype(np.uint8)) for v in variants])


def real_drifts(golden_dir: Path) -> list[dict[str, float]]:
    """Drift of the real networks (fill.py weights) for each of the golden faces, one face per call."""
    sys.path.insert(0, str(golden_dir))
    from test_lp_frontalizer import build_fill_networks

    from frontalize.liveportrait import LivePortraitFrontalizer

    networks = build_fill_networks(golden_dir)
    exact = LivePortraitFrontalizer(networks, device="cpu")
    half = LivePortraitFrontalizer(networks, device="cpu", precision="bf16")
    faces = golden_faces(golden_dir)
    return [drift(exact.frontalize(faces[i : i + 1]), half.frontalize(faces[i : i + 1])) for i in range(len(faces))]


def summary(rows: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Min and max of every statistic over the rows."""
    return {key: {"min": min(r[key] for r in rows), "max": max(r[key] for r in rows)} for key in rows[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-real", action="store_true", help="skip the real networks (about a minute on 2 cores)")
    parser.add_argument("--golden-dir", type=Path, default=HERE.parents[2] / "shared" / "golden" / "liveportrait")
    args = parser.parse_args()
    torch.manual_seed(0)
    result = {"torch": torch.__version__, "threads": torch.get_num_threads(),
              "stand_ins_20_seeds": summary(stand_in_drifts(range(20)))}
    if not args.no_real:
        rows = real_drifts(args.golden_dir)
        result["real_fill_6_faces"] = summary(rows)
        result["real_fill_per_face"] = rows
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
