"""Runner on an LFW-shaped tree with stand-in models: GT chosen by estimated pose, official pairs, report
sections (the extension point the identity guard uses)."""

from __future__ import annotations

import json
from pathlib import Path

from eval_standins import Factories, colour_image

from frontalize.config.evaluation import (
    CacheConfig,
    CombinationConfig,
    EvalConfig,
    EvalDatasetConfig,
    EvalRunConfig,
    StatsConfig,
)
from frontalize.evaluation.report import SectionOutput
from frontalize.evaluation.results import EvaluationResults
from frontalize.evaluation.runner import EvaluationInputs, evaluate


class ExtraSection:
    name = "extra"

    def build(self, results: EvaluationResults, out_dir: Path) -> SectionOutput:
        arms = [arm.arm.name for arm in results.combinations[0].arms]
        return SectionOutput("Extra comparison", f"arms seen: {', '.join(arms)}", summary={"arms": arms})


def _lfw(root: Path) -> tuple[Path, Path]:
    data, out = root / "lfw", root / "out"
    for index, name in enumerate(("Ann_Lee", "Bo_Chan", "Cy_Dee")):
        for j in (1, 2, 3):
            colour = (50 + 60 * index, 100 + 10 * j, 120)
            colour_image(data / name / f"{name}_{j:04d}.jpg", colour)
            colour_image(out / name / f"{name}_{j:04d}.png", tuple(c + 3 for c in colour))
    colour_image(data / "Solo_One" / "Solo_One_0001.jpg", (10, 200, 10))
    (data / "pairs.txt").write_text("1\t2\nAnn_Lee\t2\t3\nBo_Chan\t1\t2\nAnn_Lee\t2\tBo_Chan\t3\n"
                                    "Cy_Dee\t1\tAnn_Lee\t3\n")
    return data, out


def test_lfw_run_with_pairs_and_section(tmp_path: Path) -> None:
    data, out = _lfw(tmp_path)
    cfg = EvalConfig(device="cpu", combinations=(CombinationConfig("retinaface_mnet", "dlib_resnet"),),
                     dataset=EvalDatasetConfig(layout="lfw", pairs_file="pairs.txt", pose="keypoints"),
                     cache=CacheConfig(enabled=False), stats=StatsConfig(bootstrap_resamples=20),
                     run=EvalRunConfig(progress=False, batch_size=4))
    factories = Factories()
    inputs = EvaluationInputs(data, (out,), tmp_path / "report")
    results = evaluate(cfg, inputs, weights_root=tmp_path, device="cpu", sections=[ExtraSection()],
                       model_factories=factories.as_kwargs())
    dataset = results.dataset
    # the stand-in detector gives every image the same frontal keypoints: ties go to the first file name
    assert {s: g.image.path.name for s, g in dataset.gt.items()} == {
        "Ann_Lee": "Ann_Lee_0001.jpg", "Bo_Chan": "Bo_Chan_0001.jpg", "Cy_Dee": "Cy_Dee_0001.jpg"}
    assert len(dataset.records) == 6 and "keypoints" in dataset.gt_rule
    summary = json.loads((inputs.out_dir / "summary.json").read_text())
    pairs = summary["pairs_verification_original"]["retinaface_mnet+dlib_resnet"]
    assert (pairs["n_genuine"], pairs["n_impostor"], pairs["skipped"]) == (2, 2, 0)
    assert summary["results"]["out"]["retinaface_mnet+dlib_resnet"]["pairs_verification"]["n_genuine"] == 2
    assert summary["sections"]["extra"] == {"arms": ["out"]}
    report = (inputs.out_dir / "report.md").read_text()
    assert "Table 5b" in report and "## Extra comparison" in report and "arms seen: out" in report
    assert (inputs.out_dir / "tables" / "table5b_pairs.csv").is_file()
    # 9 images (Solo_One is dropped: a single image) + 9 outputs, each decoded once although pairs reuse them
    assert results.store.computed["decoded"] == 18
