"""Evaluation runner: weights check → dataset → output trees → detection/embedding pass → statistics → report.

Order matters for the user: every weight file the configured combinations need is verified *before* any image
is read (one error listing all missing files, exit code 3); the dataset and output trees are listed next
(cheap), then the single detection + embedding pass over all unique images; statistics, tables and figures
run on the stored embeddings only.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from frontalize.config.evaluation import CombinationConfig, EvalConfig
from frontalize.datasets import Dataset, assign_gt, frontality_score, load_dataset
from frontalize.datasets.base import HeadPose, Record
from frontalize.errors import InputError
from frontalize.evaluation import analysis
from frontalize.evaluation.cache import EmbeddingCache, default_cache_dir
from frontalize.evaluation.embed import (
    PLAIN_ATTEMPT,
    BatchRunner,
    EmbeddingStore,
    ModelSet,
    ModelSpec,
    local_runner,
    run_embedding_pass,
)
from frontalize.evaluation.html_report import write_per_image_outputs
from frontalize.evaluation.pairing import build_gallery, estimated_pose, pair_arm
from frontalize.evaluation.report import ReportSection, SectionImages, write_report
from frontalize.evaluation.results import ArmResult, CombinationResult, EvaluationResults
from frontalize.evaluation.trees import FrontalArm, discover_arms, unique_arm_names
from frontalize.faces.registry import POSE68_KEYS, detector_weight_keys, recognizer_weight_keys
from frontalize.weights import verify_weights, weight_path

log = logging.getLogger(__name__)

__all__ = ["EvaluationInputs", "evaluate", "required_weight_keys", "verify_evaluation_weights"]


@dataclass(frozen=True)
class EvaluationInputs:
    """Paths of one run: dataset folder, one or more output trees, report folder."""

    data_dir: Path
    frontal_dirs: tuple[Path, ...]
    out_dir: Path


def required_weight_keys(cfg: EvalConfig) -> list[str]:
    """Registry keys of every weight file the configured combinations need (offline models need none)."""
    keys: list[str] = []
    for combo in cfg.combinations:
        keys += [*detector_weight_keys(combo.detector), *recognizer_weight_keys(combo.recognizer)]
    if cfg.dataset.pose == "1k3d68":
        keys += list(POSE68_KEYS)
    return list(dict.fromkeys(keys))


def verify_evaluation_weights(cfg: EvalConfig, weights_root: Path) -> tuple[dict[str, Any], bool]:
    """Verify the weights (raises WeightsMissingError listing every problem); decide on 1k3d68 pose.

    With ``dataset.pose: auto`` the 1k3d68 model is used when its file is present, and must then pass
    verification like every other weight; only an absent file falls back to the 5-keypoint proxy.

    Returns:
        (verified weights by key, whether the 1k3d68 pose estimator is used).
    """
    verified = dict(verify_weights(required_weight_keys(cfg), weights_root,
                                   allow_unverified=cfg.allow_unverified_weights))
    use_pose = cfg.dataset.pose == "1k3d68" and cfg.dataset.layout != "biwi"
    if cfg.dataset.pose == "auto" and cfg.dataset.layout != "biwi":
        # Only an absent file falls back to the keypoint proxy; a present but corrupt one is an error (exit 3).
        if all(weight_path(key, weights_root).is_file() for key in POSE68_KEYS):
            verified.update(verify_weights(POSE68_KEYS, weights_root, allow_unverified=cfg.allow_unverified_weights))
            use_pose = True
        else:
            log.info("1k3d68 pose model not present (%s): poses are estimated from the 5 keypoints",
                     weight_path(POSE68_KEYS[0], weights_root))
    return verified, use_pose


def _model_spec(cfg: EvalConfig, weights_root: Path, device: str, use_pose: bool) -> ModelSpec:
    det = cfg.detection
    return ModelSpec(
        detectors=tuple(dict.fromkeys(c.detector for c in cfg.combinations)),
        recognizers=tuple(dict.fromkeys(c.recognizer for c in cfg.combinations)),
        weights_root=str(weights_root), device=device, det_size=det.det_size, threshold=det.threshold,
        nms_threshold=det.nms_threshold, retry=det.retry, pad_fraction=det.pad_fraction,
        retry_sizes=det.retry_sizes, batch_size=cfg.run.batch_size, max_pixels=cfg.run.max_pixels,
        estimate_pose=use_pose,
    )


def _image_paths(dataset: Dataset, arms: Sequence[FrontalArm]) -> list[Path]:
    paths = [r.image.path for r in dataset.records] + [g.image.path for g in dataset.gt.values()]
    for pair in dataset.pairs:
        paths += [pair.first.path, pair.second.path]
    rels = {r.image.rel for r in dataset.records}
    for arm in arms:
        paths += [p for rel, p in arm.outputs.items() if rel in rels]
    return paths


def _choose_lfw_gt(dataset: Dataset, store: EmbeddingStore, detector: str, use_pose: bool) -> Dataset:
    def score(record: Record) -> float | None:
        pitch, yaw = estimated_pose(store.detection(record.image.path, detector))
        if math.isnan(yaw):  # no face: cannot be the GT
            return None
        return frontality_score(HeadPose(0.0 if math.isnan(pitch) else pitch, yaw))

    how = ("InsightFace 1k3d68 pose" if use_pose else "|yaw| proxy from the 5 keypoints") + \
          f" of detector {detector}"
    chosen = assign_gt(dataset, score, how)
    log.info("LFW: GT chosen for %d identities (%s)", len(chosen.gt), how)
    return chosen


def _detection_rows(sets: dict[str, list[Path]], store: EmbeddingStore, detector: str) -> list[dict[str, Any]]:
    rows = []
    for name, paths in sets.items():
        detections = [store.detection(p, detector) for p in dict.fromkeys(paths)]
        faces = [d for d in detections if d is not None and d.found]
        unreadable = sum(d is None or d.status == "unreadable" for d in detections)
        by_retry = sum(d.attempt != PLAIN_ATTEMPT for d in faces)
        rows.append({"images": name, "total": len(detections), "faces": len(faces),
                     "no_face": len(detections) - len(faces) - unreadable,
                     "no_face_plain": len(detections) - len(faces) - unreadable + by_retry,
                     "found_by_retry": by_retry, "unreadable": unreadable})
    return rows


def _combination(cfg: EvalConfig, combo: CombinationConfig, dataset: Dataset, arms: Sequence[FrontalArm],
                 store: EmbeddingStore) -> CombinationResult:
    det, rec = combo.detector, combo.recognizer
    gallery = build_gallery(dataset, store, det, rec)
    rels = {r.image.rel for r in dataset.records}
    sets = {"angled": [r.image.path for r in dataset.records], "GT": [g.image.path for g in dataset.gt.values()]}
    sets.update({f"frontal: {a.name}": [p for rel, p in a.outputs.items() if rel in rels] for a in arms})
    result = CombinationResult(combo, gallery, analysis.similarity_model(dataset, store, gallery, det, rec),
                               _detection_rows(sets, store, det))
    if dataset.pairs:
        result.pairs_angle = analysis.pair_verification(
            dataset.pairs, lambda ref: store.embedding(ref.path, det, rec), cfg.stats)
    for arm in arms:
        scores = pair_arm(dataset, arm, store, gallery, det, rec, combo.label)
        numbers, curves = analysis.verification_summary(scores, gallery, cfg.stats)
        arm_result = ArmResult(arm, scores, analysis.paired_summary(scores, cfg.stats), numbers, curves,
                               analysis.pose_bin_rows(scores, cfg.stats))
        if result.arms:
            arm_result.vs_reference = analysis.arm_difference(scores, result.arms[0].scores, cfg.stats)
        if dataset.pairs:
            def frontal_of(ref: Any, arm: FrontalArm = arm) -> Any:
                output = arm.outputs.get(ref.rel)
                return None if output is None else store.embedding(output, det, rec)

            arm_result.pairs = analysis.pair_verification(dataset.pairs, frontal_of, cfg.stats)
        result.arms.append(arm_result)
    return result


def _pose_source(dataset: Dataset, use_pose: bool) -> str:
    if dataset.pose_source == "annotated":
        return "annotated in the dataset"
    if use_pose:
        return "estimated with InsightFace 1k3d68 on the angled image"
    return "yaw estimated from the 5 detected keypoints of the angled image (coarse proxy; pitch unknown)"


def evaluate(
    cfg: EvalConfig,
    inputs: EvaluationInputs,
    *,
    weights_root: Path,
    device: str,
    runner: BatchRunner = local_runner,
    sections: Sequence[ReportSection] = (),
    model_factories: dict[str, Any] | None = None,
    checked_weights: tuple[dict[str, Any], bool] | None = None,
) -> EvaluationResults:
    """Run a whole evaluation and write the report into ``inputs.out_dir``.

    Args:
        cfg: evaluation config.
        inputs: dataset folder, output trees, report folder.
        weights_root: weights folder.
        device: resolved device ("cpu", "cuda:0", ...).
        runner: executes the detection/embedding batches (local by default).
        sections: extra report sections (e.g. the identity guard's comparison).
        model_factories: optional ``detector_factory`` / ``recognizer_factory`` / ``pose_factory`` (tests).
        checked_weights: what :func:`verify_evaluation_weights` returned, when the caller verified already (the
            CLI does, before it creates the report folder); None verifies here.

    Raises:
        WeightsMissingError: before any image is read, listing every missing weight file.
        InputError: the dataset or an output tree cannot be read.
    """
    verified, use_pose = checked_weights or verify_evaluation_weights(cfg, weights_root)
    ds = cfg.dataset
    dataset = load_dataset(ds.layout, inputs.data_dir, gt_dir=ds.gt_dir, pairs_file=ds.pairs_file,
                           min_images=ds.lfw_min_images)
    rels = [r.image.rel for r in dataset.records]
    arms = unique_arm_names([arm for folder in inputs.frontal_dirs for arm in
                             discover_arms(folder, rels, kind=cfg.frontal.kind, use_manifest=cfg.frontal.use_manifest)])
    models = ModelSet.build(_model_spec(cfg, weights_root, device, use_pose), **(model_factories or {}))
    pairs = [(c.detector, c.recognizer) for c in cfg.combinations]
    cache_dir = (Path(cfg.cache.dir).expanduser() if cfg.cache.dir else default_cache_dir()) if cfg.cache.enabled \
        else None
    with EmbeddingCache(cache_dir) as cache:
        extra = [p for section in sections if isinstance(section, SectionImages)
                 for p in section.image_paths(dataset, arms)]
        store = run_embedding_pass(_image_paths(dataset, arms) + extra, pairs, models, cache,
                                   batch_size=cfg.run.batch_size, progress=cfg.run.progress, runner=runner)
    if dataset.layout == "lfw":
        dataset = _choose_lfw_gt(dataset, store, cfg.combinations[0].detector, use_pose)
    if not dataset.gt:
        raise InputError(f"{inputs.data_dir}: no subject has a GT image, nothing to compare")
    combos = [_combination(cfg, combo, dataset, arms, store) for combo in cfg.combinations]
    results = EvaluationResults(cfg, dataset, list(arms), combos, store, _pose_source(dataset, use_pose),
                                extras={"weights": {k: getattr(v, "sha256", None) for k, v in verified.items()},
                                        "cache": str(cache_dir) if cache_dir else None},
                                verified_weights=verified, pose_estimator="1k3d68" if use_pose else None)
    write_report(results, inputs.out_dir, sections=sections)
    write_per_image_outputs(results, inputs.out_dir)  # per_image.csv/.jsonl, thumbnails, report.html
    return results
