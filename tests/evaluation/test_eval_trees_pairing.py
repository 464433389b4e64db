"""Output-tree discovery (variants, crop/full, extensions, manifest) and per-record pairing outcomes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from eval_standins import Factories, colour_image

from frontalize.config.evaluation import StatsConfig
from frontalize.datasets import load_dataset
from frontalize.errors import InputError
from frontalize.evaluation import analysis
from frontalize.evaluation.cache import EmbeddingCache
from frontalize.evaluation.embed import ModelSet, ModelSpec, run_embedding_pass
from frontalize.evaluation.pairing import build_gallery, pair_arm
from frontalize.evaluation.trees import discover_arms, unique_arm_names

RELS = ["alice/1.jpg", "alice/2.jpg", "bob/1.png"]


def _touch(path: Path) -> Path:
    return colour_image(path, (50, 50, 50), size=4)


def test_plain_tree_with_changed_extension(tmp_path: Path) -> None:
    for rel in ("alice/1.png", "alice/2.webp", "extra/x.png"):
        _touch(tmp_path / rel)
    (arm,) = discover_arms(tmp_path, RELS)
    assert arm.prefix == "" and arm.name == tmp_path.name
    assert set(arm.outputs) == {"alice/1.jpg", "alice/2.jpg"}
    assert arm.status("bob/1.png") == "missing" and not arm.manifest


def test_variant_and_kind_subtrees(tmp_path: Path) -> None:
    for variant in ("base", "gfpgan"):
        for kind in ("crop", "full"):
            for rel in RELS:
                _touch(tmp_path / variant / kind / rel.replace(".jpg", ".png"))
    arms = discover_arms(tmp_path, RELS, name="run")
    assert [(a.name, a.prefix) for a in arms] == [("run/base", "base"), ("run/gfpgan", "gfpgan")]
    assert all(p.parent.parent.name == "full" or p.parent.parent.parent.name == "full"
               for p in arms[0].outputs.values())
    crops = discover_arms(tmp_path, RELS, kind="crop")
    assert all("/crop/" in str(p) for p in crops[0].outputs.values())


def test_suffix_kept_on_collision_and_missing_dataset_level(tmp_path: Path) -> None:
    _touch(tmp_path / "out" / "alice" / "1.jpg.png")  # inference kept the suffix: alice/1.jpg and alice/1.png
    (arm,) = discover_arms(tmp_path / "out", ["alice/1.jpg", "alice/1.png"])
    assert set(arm.outputs) == {"alice/1.jpg"}
    _touch(tmp_path / "out2" / "01" / "frame_00001_rgb.png")  # dataset rels carry hpdb/, the tree does not
    (arm2,) = discover_arms(tmp_path / "out2", ["hpdb/01/frame_00001_rgb.png"])
    assert set(arm2.outputs) == {"hpdb/01/frame_00001_rgb.png"}


def test_manifest_failures_and_errors(tmp_path: Path) -> None:
    _touch(tmp_path / "alice" / "1.png")
    rows = [{"input": "alice/1.jpg", "status": "ok"}, {"input": "alice/2.jpg", "status": "no_face", "reason": "x"},
            {"input": "bob/1.png", "status": "decode_error", "reason": "bad"},
            {"input": "bob/1.png", "status": "frontalize_error", "reason": "later row wins"}]
    (tmp_path / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"torn')
    (arm,) = discover_arms(tmp_path, RELS)
    assert arm.manifest and arm.failures == {"alice/2.jpg": ("no_face", "x"),
                                             "bob/1.png": ("frontalize_error", "later row wins")}
    assert arm.status("alice/2.jpg") == "failed" and arm.status("alice/1.jpg") == "ok"
    assert discover_arms(tmp_path, RELS, use_manifest=False)[0].failures == {}
    with pytest.raises(InputError, match="not a directory"):
        discover_arms(tmp_path / "nope", RELS)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no image matches"):
        discover_arms(tmp_path / "empty", RELS)
    twice = unique_arm_names(discover_arms(tmp_path, RELS) * 2)
    assert [a.name for a in twice] == [tmp_path.name, f"{tmp_path.name}#2"]


def _dataset(tmp_path: Path) -> tuple[Path, Path]:
    data, out = tmp_path / "data", tmp_path / "out"
    colours = {"alice": (200, 40, 40), "bob": (40, 200, 40), "carol": (40, 40, 200)}
    for name, colour in colours.items():
        colour_image(data / "gt" / f"{name}.png", colour)
        for i in (1, 2):
            colour_image(data / name / f"{i}.png", tuple(int(c * (1 - 0.1 * i)) for c in colour))
            colour_image(out / name / f"{i}.png", tuple(int(c * (1 - 0.05 * i)) for c in colour))
    colour_image(data / "alice" / "3.png", (3, 3, 3))          # angled: no face
    colour_image(out / "alice" / "3.png", (150, 40, 40))       # ... but its output has one
    colour_image(out / "bob" / "2.png", (3, 3, 3))             # output without face
    (out / "carol" / "2.png").unlink()                          # missing output
    colour_image(data / "dave" / "1.png", (90, 90, 90))         # no GT for dave
    return data, out


def test_pairing_outcomes_and_summary(tmp_path: Path) -> None:
    data, out = _dataset(tmp_path)
    dataset = load_dataset("generic", data)
    (arm,) = discover_arms(out, [r.image.rel for r in dataset.records])
    paths = [r.image.path for r in dataset.records] + [g.image.path for g in dataset.gt.values()]
    paths += list(arm.outputs.values())
    spec = ModelSpec(detectors=("d",), recognizers=("r",), weights_root="unused")
    with EmbeddingCache(None) as cache:
        store = run_embedding_pass(paths, [("d", "r")], ModelSet.build(spec, **Factories().as_kwargs()), cache,
                                   progress=False)
    gallery = build_gallery(dataset, store, "d", "r")
    scores = pair_arm(dataset, arm, store, gallery, "d", "r", "combo")
    counts = {k: scores.counts[k] for k in ("records", "no_gt", "no_face_angle", "no_face_frontal",
                                             "frontal_missing", "paired", "angle_only", "frontal_only", "neither")}
    assert counts == {"records": 8, "no_gt": 1, "no_face_angle": 1, "no_face_frontal": 1, "frontal_missing": 1,
                      "paired": 4, "angle_only": 2, "frontal_only": 1, "neither": 0}
    assert sorted(scores.rels) == ["alice/1.png", "alice/2.png", "bob/1.png", "carol/1.png"]
    assert np.all(np.isfinite(scores.angle_gt)) and scores.angle_emb.shape == (4, 4)
    assert set(scores.frontal_by_rel) == {"alice/1.png", "alice/2.png", "alice/3.png", "bob/1.png", "carol/1.png"}
    summary = analysis.paired_summary(scores, StatsConfig(bootstrap_resamples=50))
    assert summary["n"] == 4 and summary["no_face_angle"] == 1 and summary["no_face_frontal"] == 1
    assert summary["net_gain"] == pytest.approx(float(np.mean(scores.frontal_gt - scores.angle_gt)))
    assert len(summary["net_gain_ci95"]) == 2
    numbers, curves = analysis.verification_summary(scores, gallery, StatsConfig())
    assert numbers["angle"]["rank1"] == 1.0 and numbers["frontal"]["n_impostor"] == 8
    assert curves["frontal"].auc == numbers["frontal"]["auc"] and curves["angle"].fpr.size > 1
    similarity = analysis.similarity_model(dataset, store, gallery, "d", "r")
    assert similarity["n_gt_gt"] == 3 and similarity["angle_gt"] > similarity["gt_gt"]
    difference = analysis.arm_difference(scores, scores, StatsConfig(bootstrap_resamples=50))
    assert difference["mean_difference"] == 0.0 and difference["n"] == 5
