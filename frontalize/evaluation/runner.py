"""Evaluation runner: weights check → dataset → output trees → detection/embedding pass → statistics → report.

Order matters for the user: every weight file the configured combinations need is verified *before* any image
is read (one error listing all missing files, exit code 3); the dataset and output trees are listed next
(cheap), then the single detection + embedding pass over all unique images; statistics, tables and figures
run on the stored embeddings only.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from frontalize.config.evaluation import CombinationConfig, EvalConfig
from frontalize.datasets import Dataset, assign_gt, frontality_score, load_dataset
from frontalize.datasets.base import HeadPose, Record
from frontalize.errors import ConfigError, InputError
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
from frontalize.evaluation.pairing import build_gallery, pair_arm
from frontalize.evaluation.pose_error import POSE_MODEL_TEXT, describe_pose_source, pose_error_rows
from frontalize.evaluation.poses import (
    POSE_1K3D68,
    POSE_KEYPOINTS,
    POSE_LANDMARKS68,
    digest_root,
    image_pose,
    landmarks68_installed,
)
from frontalize.evaluation.report import ReportSection, SectionImages, write_report
from frontalize.evaluation.results import ArmResult, CombinationResult, EvaluationResults
from frontalize.evaluation.trees import FrontalArm, discover_arms, unique_arm_names
from frontalize.faces.landmarks68 import PREDICTOR_KEY
from frontalize.faces.registry import POSE68_KEYS, detector_weight_keys, recognizer_weight_keys
from frontalize.weights import OFFLINE_INSTALL, verify_packaged, verify_weights, weight_path

log = logging.getLogger(__name__)

__all__ = ["EvaluationInputs", "evaluate", "required_weight_keys", "resolve_pose_model", "verify_evaluation_weights"]


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


def resolve_pose_model(cfg: EvalConfig, weights_root: Path) -> str | None:
    """The pose model of the detection pass for ``dataset.pose`` (None = the 5-keypoint proxy only).

    * ``1k3d68`` / ``landmarks68``: that model (a missing offline extra is a ConfigError naming the install command);
    * ``keypoints``: none;
    * ``auto`` on the generic and LFW layouts: 1k3d68 when its weight file is present, else the 68-point estimator
      when the offline extra is installed, else none;
    * ``auto`` on BIWI (annotated; the model only measures its own error against the annotations): the 68-point
      estimator when the offline extra is installed, else 1k3d68 when its file is present, else none.
    """
    choice = cfg.dataset.pose
    if choice == "keypoints":
        return None
    if choice == POSE_LANDMARKS68 and not landmarks68_installed():
        raise ConfigError(f"dataset.pose: landmarks68 needs the offline extra (dlib, face-recognition-models); "
                          f"install it with: {OFFLINE_INSTALL}")
    if choice != "auto":
        return choice
    has_1k3d68 = all(weight_path(key, weights_root).is_file() for key in POSE68_KEYS)
    order = ((POSE_LANDMARKS68, landmarks68_installed()), (POSE_1K3D68, has_1k3d68))
    if cfg.dataset.layout != "biwi":
        order = order[::-1]
    for name, available in order:
        if available:
            return name
    log.info("no pose model (1k3d68 file %s absent, offline extra not installed): poses are estimated from the 5 "
             "keypoints (yaw only)", weight_path(POSE68_KEYS[0], weights_root))
    return None


def verify_evaluation_weights(cfg: EvalConfig, weights_root: Path) -> tuple[dict[str, Any], str | None]:
    """Verify the weights (raises WeightsMissingError listing every problem) and choose the pose model.

    The pose model (:func:`resolve_pose_model`) is verified like every other weight: with ``dataset.pose: auto`` only
    an absent 1k3d68 file or a missing offline extra falls back; a present but corrupt file is an error (exit 3).

    Returns:
        (verified weights by key, the pose model's name or None).
    """
    verified = dict(verify_weights(required_weight_keys(cfg), weights_root,
                                   allow_unverified=cfg.allow_unverified_weights))
    pose_model = resolve_pose_model(cfg, weights_root)
    if pose_model == POSE_1K3D68:
        verified.update(verify_weights(POSE68_KEYS, weights_root, allow_unverified=cfg.allow_unverified_weights))
    elif pose_model == POSE_LANDMARKS68:
        verified[PREDICTOR_KEY] = verify_packaged(PREDICTOR_KEY, root=digest_root(weights_root))
    log.info("pose model of the detection pass: %s", pose_model or "none (5-keypoint yaw proxy)")
    return verified, pose_model


def _model_spec(cfg: EvalConfig, weights_root: Path, device: str, pose_model: str | None) -> ModelSpec:
    det = cfg.detection
    return ModelSpec(
        detectors=tuple(dict.fromkeys(c.detector for c in cfg.combinations)),
        recognizers=tuple(dict.fromkeys(c.recognizer for c in cfg.combinations)),
        weights_root=str(weights_root), device=device, det_size=det.det_size, threshold=det.threshold,
        nms_threshold=det.nms_threshold, retry=det.retry, pad_fraction=det.pad_fraction,
        retry_sizes=det.retry_sizes, batch_size=cfg.run.batch_size, max_pixels=cfg.run.max_pixels,
        pose_model=pose_model,
    )


def _image_paths(dataset: Dataset, arms: Sequence[FrontalArm]) -> list[Path]:
    paths = [r.image.path for r in dataset.records] + [g.image.path for g in dataset.gt.values()]
    for pair in dataset.pairs:
        paths += [pair.first.path, pair.second.path]
    rels = {r.image.rel for r in dataset.records}
    for arm in arms:
        paths += [p for rel, p in arm.outputs.items() if rel in rels]
    return paths


def _choose_lfw_gt(dataset: Dataset, store: EmbeddingStore, detector: str, pose_model: str | None) -> Dataset:
    def score(record: Record) -> float | None:
        pose = image_pose(None, store.detection(record.image.path, detector), pose_model)
        if pose.yaw is None:  # no face, or landmarks that could not be fitted: cannot be the GT
            return None
        return frontality_score(HeadPose(pose.pitch or 0.0, pose.yaw))

    how = f"{POSE_MODEL_TEXT.get(pose_model or POSE_KEYPOINTS)} of detector {detector}"
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


def evaluate(
    cfg: EvalConfig,
    inputs: EvaluationInputs,
    *,
    weights_root: Path,
    device: str,
    runner: BatchRunner = local_runner,
    sections: Sequence[ReportSection] = (),
    model_factories: dict[str, Any] | None = None,
    checked_weights: tuple[dict[str, Any], str | None] | None = None,
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
    verified, pose_model = checked_weights or verify_evaluation_weights(cfg, weights_root)
    ds = cfg.dataset
    dataset = load_dataset(ds.layout, inputs.data_dir, gt_dir=ds.gt_dir, pairs_file=ds.pairs_file,
                           min_images=ds.lfw_min_images)
    rels = [r.image.rel for r in dataset.records]
    arms = unique_arm_names([arm for folder in inputs.frontal_dirs for arm in
                             discover_arms(folder, rels, kind=cfg.frontal.kind, use_manifest=cfg.frontal.use_manifest)])
    models = ModelSet.build(_model_spec(cfg, weights_root, device, pose_model), **(model_factories or {}))
    pairs = [(c.detector, c.recognizer) for c in cfg.combinations]
    cache_dir = (Path(cfg.cache.dir).expanduser() if cfg.cache.dir else default_cache_dir()) if cfg.cache.enabled \
        else None
    with EmbeddingCache(cache_dir) as cache:
        extra = [p for section in sections if isinstance(section, SectionImages)
                 for p in section.image_paths(dataset, arms)]
        store = run_embedding_pass(_image_paths(dataset, arms) + extra, pairs, models, cache,
                                   batch_size=cfg.run.batch_size, progress=cfg.run.progress, runner=runner)
    if dataset.layout == "lfw":
        dataset = _choose_lfw_gt(dataset, store, cfg.combinations[0].detector, pose_model)
    if not dataset.gt:
        raise InputError(f"{inputs.data_dir}: no subject has a GT image, nothing to compare")
    combos = [_combination(cfg, combo, dataset, arms, store) for combo in cfg.combinations]
    detector = cfg.combinations[0].detector
    results = EvaluationResults(cfg, dataset, list(arms), combos, store,
                                describe_pose_source(dataset, store, detector, pose_model),
                                extras={"weights": {k: getattr(v, "sha256", None) for k, v in verified.items()},
                                        "cache": str(cache_dir) if cache_dir else None},
                                verified_weights=verified, pose_estimator=pose_model,
                                pose_error=pose_error_rows(dataset, store, [c.detector for c in cfg.combinations],
                                                           pose_model, cfg.stats))
    write_report(results, inputs.out_dir, sections=sections)
    write_per_image_outputs(results, inputs.out_dir)  # per_image.csv/.jsonl, thumbnails, report.html
    return results
