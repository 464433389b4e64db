"""Pairing: per (output tree, combination), the Angle↔GT and Frontal↔GT similarities of every angled image.

Each angled record is compared with its subject's GT in two *arms*: the angled image itself and its frontalized
output. Outcomes per record (never a similarity of 0 for a missing face):

* ``no_gt``: the subject has no GT image; ``no_face_gt``: its GT has no detected face — record excluded;
* angle arm: face, ``no_face_angle``, ``unreadable_angle``;
* frontal arm: face, ``no_face_frontal``, ``unreadable_frontal``, ``frontal_failed`` (inference reported a
  failure in its manifest), ``frontal_missing`` (no output file);
* *paired* records have a face in both arms and enter the paired statistics; records with a face in only one
  arm are kept apart (``angle_only`` / ``frontal_only`` similarities) and reported separately; ``neither``
  counts records with a face in no arm.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from frontalize.datasets.base import Dataset, Record
from frontalize.evaluation.cache import Detection
from frontalize.evaluation.embed import PLAIN_ATTEMPT, EmbeddingStore
from frontalize.evaluation.poses import image_pose
from frontalize.evaluation.trees import FrontalArm

log = logging.getLogger(__name__)

__all__ = ["ArmScores", "Gallery", "build_gallery", "estimated_pose", "pair_arm", "probe_pose"]


@dataclass(frozen=True)
class Gallery:
    """GT embeddings of one combination (subjects whose GT has a face)."""

    labels: np.ndarray
    embeddings: np.ndarray
    paths: dict[str, str]
    no_face: tuple[str, ...]

    def index(self) -> dict[str, int]:
        """Subject -> row of ``embeddings``."""
        return {str(label): i for i, label in enumerate(self.labels)}


@dataclass
class ArmScores:
    """Scores of one arm under one combination.

    Paired arrays (length N, same order): ``rels``, ``subjects``, ``angle_gt``, ``frontal_gt``, ``yaw``,
    ``pitch`` (NaN when unknown), ``angle_emb`` / ``frontal_emb`` (N, D). ``frontal_by_rel`` maps every record
    with a frontal face to (subject, cos(F, GT)) whatever the angle arm did (for arm-vs-arm comparisons);
    ``outcomes`` lists (pitch, yaw, angle outcome, frontal outcome) of every eligible record (pose-bin failure
    rates; the pose is NaN when unknown). ``counts`` holds the outcome tallies
    of the module docstring plus ``records``, ``paired`` and the ``*_plain`` no-face counts that a detector
    without padding/retry would have given; ``failure_reasons`` tallies inference statuses.
    """

    arm: str
    combination: str
    rels: list[str] = field(default_factory=list)
    subjects: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=object))
    angle_gt: np.ndarray = field(default_factory=lambda: np.zeros(0))
    frontal_gt: np.ndarray = field(default_factory=lambda: np.zeros(0))
    yaw: np.ndarray = field(default_factory=lambda: np.zeros(0))
    pitch: np.ndarray = field(default_factory=lambda: np.zeros(0))
    angle_emb: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))
    frontal_emb: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))
    angle_only: np.ndarray = field(default_factory=lambda: np.zeros(0))
    frontal_only: np.ndarray = field(default_factory=lambda: np.zeros(0))
    frontal_by_rel: dict[str, tuple[str, float]] = field(default_factory=dict)
    outcomes: list[tuple[float, float, str, str]] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    failure_reasons: Counter[str] = field(default_factory=Counter)

    @property
    def differences(self) -> np.ndarray:
        """Paired differences cos(F, GT) − cos(A, GT), (N,)."""
        return self.frontal_gt - self.angle_gt

    @property
    def n(self) -> int:
        """Number of paired records."""
        return int(self.angle_gt.size)


def build_gallery(dataset: Dataset, store: EmbeddingStore, detector: str, recognizer: str) -> Gallery:
    """GT embeddings of every subject whose GT image has a face under (detector, recognizer)."""
    labels, vectors, no_face = [], [], []
    paths = {}
    for subject in sorted(dataset.gt):
        gt = dataset.gt[subject]
        paths[subject] = str(gt.image.path)
        vector = store.embedding(gt.image.path, detector, recognizer)
        if vector is None:
            no_face.append(subject)
        else:
            labels.append(subject)
            vectors.append(vector)
    dim = vectors[0].shape[0] if vectors else 0
    matrix = np.stack(vectors) if vectors else np.zeros((0, dim), dtype=np.float32)
    return Gallery(np.asarray(labels, dtype=object), matrix, paths, tuple(no_face))


def estimated_pose(detection: Detection | None) -> tuple[float, float]:
    """(pitch, yaw) of a detection (NaN when unknown): the pose model's estimate when it ran, else the keypoint
    proxy; project convention (:func:`frontalize.evaluation.poses.image_pose`)."""
    pose = image_pose(None, detection, None)
    return pose.pitch_or_nan, pose.yaw_or_nan


def probe_pose(record: Record, detection: Detection | None) -> tuple[float, float]:
    """(pitch, yaw) of a probe (NaN when unknown): its known pose (annotated or rendered) when the dataset has it,
    else estimated from its detection."""
    pose = image_pose(record.pose, detection, None)
    return pose.pitch_or_nan, pose.yaw_or_nan


def _frontal_outcome(arm: FrontalArm, rel: str, store: EmbeddingStore, detector: str) -> str:
    status = arm.status(rel)
    if status != "ok":
        return "frontal_failed" if status == "failed" else "frontal_missing"
    detection = store.detection(arm.outputs[rel], detector)
    if detection is None or detection.status == "unreadable":
        return "unreadable_frontal"
    return "face" if detection.found else "no_face_frontal"


def _angle_outcome(detection: Detection | None) -> str:
    if detection is None or detection.status == "unreadable":
        return "unreadable_angle"
    return "face" if detection.found else "no_face_angle"


def _count_plain(counts: Counter[str], prefix: str, detection: Detection | None) -> None:
    """Count a no-face as a detector without padding/retry would have given it."""
    if detection is not None and detection.status != "unreadable":
        if not detection.found or detection.attempt != PLAIN_ATTEMPT:
            counts[f"no_face_{prefix}_plain"] += 1


@dataclass(frozen=True)
class _Lookup:
    """Where one arm × combination finds its detections and embeddings."""

    arm: FrontalArm
    store: EmbeddingStore
    detector: str
    recognizer: str


def _record_outcomes(record: Record, look: _Lookup, scores: ArmScores) -> tuple[str, str, Detection | None]:
    """Angle and frontal outcomes of one record; tallies them (and the no-retry counts) in ``scores``."""
    rel = record.image.rel
    a_det = look.store.detection(record.image.path, look.detector)
    a_out, f_out = _angle_outcome(a_det), _frontal_outcome(look.arm, rel, look.store, look.detector)
    _count_plain(scores.counts, "angle", a_det)
    if f_out in ("face", "no_face_frontal"):
        _count_plain(scores.counts, "frontal", look.store.detection(look.arm.outputs[rel], look.detector))
    if f_out == "frontal_failed":
        scores.failure_reasons[look.arm.failures[rel][0]] += 1
    for outcome in {a_out, f_out} - {"face"}:
        scores.counts[outcome] += 1
    return a_out, f_out, a_det


def pair_arm(
    dataset: Dataset,
    arm: FrontalArm,
    store: EmbeddingStore,
    gallery: Gallery,
    detector: str,
    recognizer: str,
    combination: str,
) -> ArmScores:
    """Score every angled record of ``dataset`` against its GT in the angle and frontal arms."""
    scores = ArmScores(arm=arm.name, combination=combination)
    look = _Lookup(arm, store, detector, recognizer)
    row_of = gallery.index()
    paired: dict[str, list] = {k: [] for k in ("rels", "subjects", "a", "f", "yaw", "pitch", "ae", "fe")}
    angle_only, frontal_only = [], []
    for record in dataset.records:
        scores.counts["records"] += 1
        if record.subject not in dataset.gt or record.subject in gallery.no_face:
            scores.counts["no_gt" if record.subject not in dataset.gt else "no_face_gt"] += 1
            continue
        gt = gallery.embeddings[row_of[record.subject]]
        rel = record.image.rel
        a_out, f_out, a_det = _record_outcomes(record, look, scores)
        a_emb = store.embedding(record.image.path, detector, recognizer) if a_out == "face" else None
        f_emb = store.embedding(arm.outputs[rel], detector, recognizer) if f_out == "face" else None
        pitch, yaw = probe_pose(record, a_det)
        scores.outcomes.append((pitch, yaw, a_out, f_out))
        if f_emb is not None:
            scores.frontal_by_rel[rel] = (record.subject, float(f_emb @ gt))
        if a_emb is not None and f_emb is not None:
            for key, value in (("rels", rel), ("subjects", record.subject), ("a", float(a_emb @ gt)),
                               ("f", float(f_emb @ gt)), ("yaw", yaw), ("pitch", pitch), ("ae", a_emb),
                               ("fe", f_emb)):
                paired[key].append(value)
        elif a_emb is not None:
            angle_only.append(float(a_emb @ gt))
        elif f_emb is not None:
            frontal_only.append(float(f_emb @ gt))
        else:
            scores.counts["neither"] += 1
    scores.counts.update(paired=len(paired["rels"]), angle_only=len(angle_only), frontal_only=len(frontal_only))
    _fill(scores, paired, angle_only, frontal_only, gallery.embeddings.shape[1])
    return scores


def _fill(scores: ArmScores, paired: Mapping[str, Sequence], angle_only: list[float], frontal_only: list[float],
          dim: int) -> None:
    scores.rels = list(paired["rels"])
    scores.subjects = np.asarray(paired["subjects"], dtype=object)
    scores.angle_gt = np.asarray(paired["a"], dtype=np.float64)
    scores.frontal_gt = np.asarray(paired["f"], dtype=np.float64)
    scores.yaw = np.asarray(paired["yaw"], dtype=np.float64)
    scores.pitch = np.asarray(paired["pitch"], dtype=np.float64)
    scores.angle_emb = np.stack(paired["ae"]) if paired["ae"] else np.zeros((0, dim), dtype=np.float32)
    scores.frontal_emb = np.stack(paired["fe"]) if paired["fe"] else np.zeros((0, dim), dtype=np.float32)
    scores.angle_only = np.asarray(angle_only, dtype=np.float64)
    scores.frontal_only = np.asarray(frontal_only, dtype=np.float64)
