"""Dataset records shared by every layout (BIWI, LFW, generic).

A dataset is a list of *angled* probe images, each tagged with the identity (subject) it shows and, when the
layout annotates it, its head pose; plus one *GT* (reference, ideally frontal) image per subject. Frontalized
outputs are matched to their angled source by relative path (see :mod:`frontalize.evaluation.pairing`), so every
image carries its POSIX path relative to the dataset root.

Angles are in degrees, in the project's head-pose convention (LivePortrait's, see
:data:`POSE_CONVENTION`) whatever the source: every layout converts its annotation when it reads it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from frontalize.errors import InputError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")

POSE_CONVENTION = ("degrees; pitch > 0 = looking down, yaw > 0 = face turned towards image left (the subject's "
                   "right), roll > 0 = clockwise on screen (LivePortrait's convention)")
"""The one head-pose convention of every record, table, figure and per-image column."""

POSE_ANNOTATION = "annotation"
"""Source label of a pose annotated in the dataset (BIWI pose files, ``poses.csv`` / ``poses.json``)."""
POSE_RENDERED = "rendered"
"""Source label of the known pose of a synthetic render (e.g. the posed views of ``scripts/make_samples.py``)."""


@dataclass(frozen=True)
class HeadPose:
    """A known head pose in degrees (:data:`POSE_CONVENTION`).

    Attributes:
        pitch, yaw, roll: the angles.
        source: where the pose comes from: :data:`POSE_ANNOTATION` or :data:`POSE_RENDERED`.
    """

    pitch: float
    yaw: float
    roll: float = 0.0
    source: str = POSE_ANNOTATION


@dataclass(frozen=True)
class ImageRef:
    """One image file: absolute ``path`` and its POSIX path ``rel`` relative to the dataset root."""

    path: Path
    rel: str

    @property
    def rel_stem(self) -> str:
        """Relative path without the file extension (the key that output trees are matched by)."""
        return rel_stem(self.rel)


@dataclass(frozen=True)
class Record:
    """One angled probe image of ``subject``.

    Attributes:
        subject: identity.
        image: the file.
        pose: its known pose (annotated, or the pose a synthetic view was rendered at), else None.
        group: e.g. the BIWI sequence.
        synthetic: the image is a synthetic render (not a photograph), as the dataset declares it.
    """

    subject: str
    image: ImageRef
    pose: HeadPose | None = None
    group: str | None = None
    synthetic: bool = False


@dataclass(frozen=True)
class GroundTruth:
    """The reference image of one subject, against which angled and frontalized probes are compared."""

    subject: str
    image: ImageRef
    pose: HeadPose | None = None


@dataclass(frozen=True)
class VerificationPair:
    """One pair of an official verification list (e.g. LFW ``pairs.txt``); ``same`` = same identity."""

    first: ImageRef
    second: ImageRef
    same: bool
    fold: int = 0


@dataclass(frozen=True)
class Dataset:
    """A loaded dataset.

    Attributes:
        layout: "generic", "biwi" or "lfw".
        root: dataset root (the folder relative paths refer to).
        records: angled probes (never containing a subject's GT image).
        gt: subject -> its GT image. Empty while a GT rule still needs pose estimates (LFW).
        gt_rule: one sentence, copied into the report, that says how each GT was chosen.
        pose_source: "annotated" (from the dataset), "estimated" (filled later) or "none".
        pairs: optional official verification pairs.
        notes: counts of skipped files and similar facts for the report.
        supplied_notes: text of the optional ``DATA/dataset_notes.txt`` the dataset ships (quoted in the report).
    """

    layout: str
    root: Path
    records: tuple[Record, ...]
    gt: Mapping[str, GroundTruth]
    gt_rule: str
    pose_source: str = "none"
    pairs: tuple[VerificationPair, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)
    supplied_notes: str = ""

    @property
    def subjects(self) -> tuple[str, ...]:
        """Sorted subject ids that have at least one record or a GT."""
        return tuple(sorted({r.subject for r in self.records} | set(self.gt)))


def rel_stem(rel: str) -> str:
    """``"a/b/x.jpg" -> "a/b/x"`` (POSIX relative path without its last suffix)."""
    head, _, name = rel.rpartition("/")
    stem = name.rsplit(".", 1)[0] if "." in name.lstrip(".") else name
    return f"{head}/{stem}" if head else stem


def is_image_file(path: Path, extensions: Iterable[str] = IMAGE_EXTENSIONS) -> bool:
    """True for a regular file whose suffix (case-insensitive) is an image extension."""
    return path.is_file() and path.suffix.lower() in tuple(extensions)


def list_images(folder: Path, extensions: Iterable[str] = IMAGE_EXTENSIONS) -> list[Path]:
    """Image files directly inside ``folder`` (sorted, hidden files skipped)."""
    exts = tuple(extensions)
    return sorted(p for p in folder.iterdir() if not p.name.startswith(".") and is_image_file(p, exts))


def image_ref(path: Path, root: Path, *, outside_prefix: str = "") -> ImageRef:
    """ImageRef of ``path`` relative to ``root``.

    A file outside ``root`` (e.g. a GT folder given elsewhere) gets ``outside_prefix + file name`` as its
    relative path.
    """
    resolved = path.resolve()
    try:
        rel = resolved.relative_to(root.resolve()).as_posix()
    except ValueError:
        rel = outside_prefix + resolved.name
    return ImageRef(path=resolved, rel=rel)


NOTES_FILE = "dataset_notes.txt"
"""Optional plain-text notes a dataset folder may ship (e.g. "these images are synthetic renders")."""
_NOTES_MAX_CHARS = 20_000


def read_supplied_notes(root: Path) -> str:
    """Text of ``root/dataset_notes.txt`` (stripped; cut after 20,000 characters), or "" when there is none.

    Raises:
        InputError: the file exists but cannot be read as UTF-8 text.
    """
    path = root / NOTES_FILE
    if not path.is_file():
        return ""
    try:
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the dataset notes ({exc})") from exc
    return text if len(text) <= _NOTES_MAX_CHARS else text[:_NOTES_MAX_CHARS] + " [...]"


def require_dir(path: Path, what: str) -> Path:
    """Return ``path`` if it is a directory, else raise InputError naming ``what``."""
    if not path.is_dir():
        raise InputError(f"{what} {path} is not a directory", status="missing_dataset")
    return path


def frontality_score(pose: HeadPose) -> float:
    """How far from frontal a pose is: sqrt(yaw² + pitch²) in degrees.

    Roll is left out on purpose: every recognizer aligns the face in-plane first (similarity transform on
    the eye/mouth keypoints), so in-plane rotation does not cost identity; out-of-plane rotation does.
    """
    return math.hypot(pose.yaw, pose.pitch)


def select_most_frontal(
    records: Iterable[Record],
    score_of: Callable[[Record], float | None],
) -> tuple[dict[str, GroundTruth], tuple[Record, ...]]:
    """Pick, per subject, the record with the lowest frontality score as its GT.

    Args:
        records: candidate images (all images of each subject).
        score_of: frontality score per record (lower = more frontal); None = unusable as GT (e.g. no face).

    Returns:
        (subject -> GT, remaining records). The chosen GT image is removed from the probes, so no probe is
        ever compared with itself. Ties are broken by relative path for determinism. Subjects with no usable
        candidate get no GT (their records stay; the evaluator reports them as "no GT").
    """
    best: dict[str, tuple[float, str, Record]] = {}
    all_records = list(records)
    for record in all_records:
        score = score_of(record)
        if score is None or math.isnan(score):
            continue
        key = (score, record.image.rel)
        current = best.get(record.subject)
        if current is None or key < current[:2]:
            best[record.subject] = (score, record.image.rel, record)
    gt = {s: GroundTruth(s, r.image, r.pose) for s, (_, _, r) in best.items()}
    chosen = {r.image.rel for _, _, r in best.values()}
    remaining = tuple(r for r in all_records if r.image.rel not in chosen)
    return gt, remaining
