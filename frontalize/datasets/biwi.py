"""BIWI Kinect Head Pose layout (``hpdb/NN/frame_NNNNN_rgb.png`` or ``.jpg`` + ``frame_NNNNN_pose.txt``).

* Frames are PNG in the original release and JPEG in the common re-distributed copies: ``frame_NNNNN_rgb`` with
  ``.png``, ``.jpg`` or ``.jpeg`` in any letter case is accepted. When one frame exists in several formats the
  PNG is used (lossless; then JPG, then JPEG) and the duplicates are counted in the dataset notes.

* Identity is the *subject*, not the sequence: 24 sequences show 20 people, and sequences 15, 18, 21 and 22
  repeat subjects 03, 05, 02 and 07 (:data:`SEQUENCE_TO_SUBJECT`).
* Each ``frame_NNNNN_pose.txt`` holds a 3×3 rotation matrix (three lines), a blank line and the head centre in
  mm. The matrix is the head-to-camera rotation in a frame with x right, y down, z away from the camera — the
  project's head frame — so its ZYX decomposition ``M = Rz(roll)·Ry(yaw)·Rx(pitch)`` gives the angles in the
  project's convention directly (:func:`pose_from_matrix`; pitch > 0 = looking down, yaw > 0 = towards image left,
  roll > 0 = clockwise). The FSA-Net conversion that papers report BIWI numbers in (:func:`rotation_to_euler`) has
  pitch > 0 = looking UP and another Euler order; it is kept for comparison with published numbers only. The
  angles are those annotated, i.e. in the depth camera's frame (the RGB camera is rotated by a few degrees; we do
  not re-project, as the rest of the literature).
* GT per subject: its most frontal annotated frame over all of its sequences (lowest sqrt(yaw² + pitch²), see
  :func:`~frontalize.datasets.base.frontality_score`), removed from the probes; or, when ``gt_dir`` is given,
  ``gt_dir/<subject>.<ext>`` (subject as two digits, e.g. ``03.png``) and every frame is a probe.
* Frames without a pose file are skipped and counted in the dataset notes.
"""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path

import numpy as np

from frontalize.datasets.base import (
    IMAGE_EXTENSIONS,
    Dataset,
    GroundTruth,
    HeadPose,
    Record,
    frontality_score,
    image_ref,
    list_images,
    read_supplied_notes,
    require_dir,
    select_most_frontal,
)
from frontalize.errors import InputError

log = logging.getLogger(__name__)

SEQUENCE_TO_SUBJECT: dict[str, str] = {"15": "03", "18": "05", "21": "02", "22": "07"}
_FRAME_RE = re.compile(r"^frame_(\d+)_rgb\.(png|jpg|jpeg)$", re.IGNORECASE)
_FORMAT_PREFERENCE = ("png", "jpg", "jpeg")
_SEQ_RE = re.compile(r"^\d{2}$")
GT_RULE_FRONTAL = (
    "per subject (sequences 15/18/21/22 merged into subjects 03/05/02/07), the annotated frame with the lowest "
    "sqrt(yaw^2 + pitch^2) over all of the subject's sequences; that frame is removed from the probes"
)
GT_RULE_FOLDER = "the image <gt_dir>/<subject>.<ext> supplied by the user; every annotated frame is a probe"


def subject_of_sequence(sequence: str) -> str:
    """Subject id (two digits) shown in BIWI sequence ``sequence`` ("15" -> "03")."""
    return SEQUENCE_TO_SUBJECT.get(sequence, sequence)


def pose_from_matrix(matrix: np.ndarray) -> HeadPose:
    """BIWI rotation matrix (rows as stored in the pose file) -> pitch, yaw, roll in the project's convention.

    The ZYX decomposition ``M = Rz(roll)·Ry(yaw)·Rx(pitch)`` (column vectors) of the file matrix: the same as
    :func:`frontalize.faces.headpose.pose_from_biwi_matrix`, which this layer may not import (``datasets`` imports no
    ``faces``); a test keeps the two equal. Yaw lies in [−90°, 90°].

    Args:
        matrix: (3, 3) rotation matrix, rows as written in the file.
    """
    r = np.asarray(matrix, dtype=np.float64)
    yaw = math.asin(float(np.clip(-r[2, 0], -1.0, 1.0)))
    pitch = math.atan2(r[2, 1], r[2, 2])
    roll = math.atan2(r[1, 0], r[0, 0])
    return HeadPose(pitch=math.degrees(pitch), yaw=math.degrees(yaw), roll=math.degrees(roll))


def rotation_to_euler(matrix: np.ndarray) -> HeadPose:
    """BIWI rotation matrix (as stored in the pose file) -> FSA-Net's pitch, yaw, roll in degrees.

    Not the project's convention (pitch > 0 is looking UP here, and the Euler order differs; for one-axis rotations
    the result is ``(−pitch, yaw, roll)`` of :func:`pose_from_matrix`): kept to compare with published BIWI numbers,
    which use it. FSA-Net convention (``data/TYY_create_db_biwi.py``): with ``R = Mᵀ``,
    roll = −atan2(R10, R00), yaw = −atan2(−R20, √(R21² + R22²)), pitch = atan2(R21, R22).

    Args:
        matrix: (3, 3) rotation matrix, rows as written in the file.
    """
    r = np.asarray(matrix, dtype=np.float64).T
    roll = -math.atan2(r[1, 0], r[0, 0])
    yaw = -math.atan2(-r[2, 0], math.hypot(r[2, 1], r[2, 2]))
    pitch = math.atan2(r[2, 1], r[2, 2])
    return HeadPose(pitch=math.degrees(pitch), yaw=math.degrees(yaw), roll=math.degrees(roll))


def read_pose_file(path: Path) -> HeadPose:
    """Parse a ``frame_NNNNN_pose.txt`` file (3 matrix rows, blank line, head centre) into the project's convention.

    Raises:
        InputError: the file cannot be read or does not start with three rows of three numbers.
    """
    try:
        rows = [line.split() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()][:3]
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: unreadable BIWI pose file ({exc})") from exc
    if len(rows) != 3 or any(len(row) != 3 for row in rows):
        raise InputError(f"{path}: expected a 3x3 rotation matrix in the first three lines")
    try:
        matrix = np.array([[float(v) for v in row] for row in rows], dtype=np.float64)
    except ValueError as exc:
        raise InputError(f"{path}: unreadable BIWI pose file ({exc})") from exc
    return pose_from_matrix(matrix)


def find_sequence_root(root: Path) -> Path:
    """The folder holding the two-digit sequence folders: ``root``, ``root/hpdb`` or ``root/*/hpdb``."""
    for candidate in (root, root / "hpdb", *sorted(root.glob("*/hpdb"))):
        if candidate.is_dir() and any(p.is_dir() and _SEQ_RE.match(p.name) for p in candidate.iterdir()):
            return candidate
    raise InputError(f"{root}: no BIWI sequence folders (expected hpdb/NN/frame_NNNNN_rgb.png or .jpg)")


def frame_images(seq_dir: Path) -> tuple[list[tuple[str, Path]], int]:
    """The RGB frames of one sequence folder, one per frame number, in frame order.

    Returns:
        ``([(frame number as written, image path), ...], duplicates)``: PNG is preferred over JPG over JPEG when a
        frame exists in several formats; ``duplicates`` counts the files not used for that reason.
    """
    by_frame: dict[str, list[tuple[int, Path]]] = {}
    for path in seq_dir.iterdir():
        match = _FRAME_RE.match(path.name)
        if match and path.is_file():
            rank = _FORMAT_PREFERENCE.index(match.group(2).lower())
            by_frame.setdefault(match.group(1), []).append((rank, path))
    frames = [(number, min(found)[1]) for number, found in sorted(by_frame.items())]
    return frames, sum(len(found) - 1 for found in by_frame.values())


def _scan(seq_root: Path, data_root: Path) -> tuple[list[Record], int, int]:
    records: list[Record] = []
    skipped = duplicates = 0
    for seq_dir in sorted(p for p in seq_root.iterdir() if p.is_dir() and _SEQ_RE.match(p.name)):
        subject = subject_of_sequence(seq_dir.name)
        frames, extra = frame_images(seq_dir)
        duplicates += extra
        for number, image in frames:
            pose_file = image.with_name(f"frame_{number}_pose.txt")
            if not pose_file.is_file():
                skipped += 1
                continue
            pose = read_pose_file(pose_file)
            records.append(Record(subject, image_ref(image, data_root), pose=pose, group=seq_dir.name))
    return records, skipped, duplicates


def load_biwi(
    root: str | Path,
    *,
    gt_dir: str | Path | None = None,
    extensions: tuple[str, ...] = IMAGE_EXTENSIONS,
) -> Dataset:
    """Load BIWI Kinect Head Pose.

    Args:
        root: folder holding ``hpdb/`` (or the ``hpdb`` folder itself). Relative paths of the records are taken
            from this folder, so a frontalized tree made from the same folder mirrors them.
        gt_dir: optional folder of GT images named by subject (``03.png``); relative to ``root`` or absolute.
        extensions: accepted image suffixes for ``gt_dir``.

    Raises:
        InputError: no sequence folder or no annotated frame was found, or a pose file is malformed.
    """
    data_root = require_dir(Path(root).resolve(), "dataset folder")
    records, skipped, duplicates = _scan(find_sequence_root(data_root), data_root)
    if not records:
        raise InputError(f"{data_root}: no annotated BIWI frame (frame_NNNNN_rgb.png or .jpg + frame_NNNNN_pose.txt)")
    notes = [f"{skipped} frames without a pose file were skipped"] if skipped else []
    if duplicates:
        notes.append(f"{duplicates} frame files in a second format (e.g. .jpg beside .png) were ignored; the PNG "
                     "(else JPG) of each frame is used")
    if gt_dir is not None:
        folder = Path(gt_dir)
        folder = require_dir(folder if folder.is_absolute() else data_root / folder, "GT folder")
        gt = {p.stem: GroundTruth(p.stem, image_ref(p, data_root, outside_prefix="gt/"))
              for p in list_images(folder, extensions)}
        probes, rule = tuple(records), GT_RULE_FOLDER
    else:
        gt, probes = select_most_frontal(records, lambda r: frontality_score(r.pose) if r.pose else None)
        rule = GT_RULE_FRONTAL
    merged = sorted({r.group for r in records if r.group in SEQUENCE_TO_SUBJECT})
    if merged:
        notes.append("sequences " + ", ".join(merged) + " merged into their subjects (15->03, 18->05, 21->02, 22->07)")
    return Dataset(
        layout="biwi",
        root=data_root,
        records=probes,
        gt=gt,
        gt_rule=rule,
        pose_source="annotated",
        notes=tuple(notes),
        supplied_notes=read_supplied_notes(data_root),
    )
