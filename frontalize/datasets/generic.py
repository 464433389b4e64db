"""Generic dataset layout: one folder of angled images per identity plus one GT image per identity.

::

    DATA/
      alice/001.jpg, alice/002.png, ...     angled probes of identity "alice"
      bob/...
      gt/alice.jpg, gt/bob.png              the GT (reference) image of each identity
      poses.csv                             optional known poses: rel,pitch,yaw,roll (degrees) per angled image
      poses.json                            optional known poses (same meaning; can mark synthetic images)
      posed_views.json                      optional: the synthetic posed views scripts/make_samples.py writes
      dataset_notes.txt                     optional notes quoted in the report

All angles are degrees in the project's convention (``frontalize.datasets.base.POSE_CONVENTION``: pitch > 0 looks
down, yaw > 0 turns the face towards image left, roll > 0 is clockwise). ``poses.json`` and ``posed_views.json``
share one format (:func:`read_pose_json`)::

    {"synthetic": false,                         # default of the entries (optional)
     "images": [                                 # or "views"
       {"rel": "alice/001.jpg",                  # or "path"; relative to DATA
        "pose": {"pitch": 0, "yaw": 30, "roll": 0},   # or pitch / yaw / roll beside "rel"
        "synthetic": true}]}                     # optional

A known pose of a synthetic image is its *rendered* pose (pose source ``rendered``), any other one an annotation
(``annotation``). Images with a known pose are binned by it, and the report compares the evaluator's pose estimate
with it; the others get the estimated pose (InsightFace 1k3d68, the 68-point estimator or the keypoint proxy, see
``dataset.pose``). When a file names an image twice, or two files name the same image, the later one wins, in the
order poses.csv, poses.json, posed_views.json.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from frontalize.datasets.base import (
    IMAGE_EXTENSIONS,
    POSE_ANNOTATION,
    POSE_RENDERED,
    Dataset,
    GroundTruth,
    HeadPose,
    Record,
    image_ref,
    list_images,
    read_supplied_notes,
    require_dir,
)
from frontalize.errors import InputError

log = logging.getLogger(__name__)

GT_RULE = "the image gt/<ID>.<ext> supplied with the dataset (one per identity)"
POSE_CSV = "poses.csv"
POSE_JSON_FILES = ("poses.json", "posed_views.json")


def _read_poses_csv(path: Path) -> dict[str, HeadPose]:
    poses: dict[str, HeadPose] = {}
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            for line_no, row in enumerate(csv.DictReader(handle), start=2):
                try:
                    poses[row["rel"]] = HeadPose(float(row["pitch"]), float(row["yaw"]), float(row.get("roll") or 0))
                except (KeyError, TypeError, ValueError) as exc:
                    raise InputError(f"{path}:{line_no}: expected columns rel,pitch,yaw[,roll] ({exc})") from exc
    except OSError as exc:
        raise InputError(f"{path}: cannot read pose file ({exc})") from exc
    return poses


def _entries(path: Path) -> Iterator[tuple[int, Mapping[str, Any], bool]]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{path}: cannot read pose file ({exc})") from exc
    entries = document.get("images", document.get("views")) if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise InputError(f"{path}: expected an object with an 'images' (or 'views') list")
    default_synthetic = bool(document.get("synthetic", False))
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise InputError(f"{path}: entry {index} is not an object")
        yield index, entry, default_synthetic


def read_pose_json(path: Path) -> dict[str, tuple[HeadPose, bool]]:
    """Known poses of a ``poses.json`` / ``posed_views.json`` file (format in the module docstring).

    Returns:
        rel -> (pose, synthetic); the pose's source is ``rendered`` for synthetic images, else ``annotation``.

    Raises:
        InputError: unreadable JSON, or an entry without a path or with a non-numeric angle (index named).
    """
    poses: dict[str, tuple[HeadPose, bool]] = {}
    for index, entry, default_synthetic in _entries(path):
        rel = entry.get("rel", entry.get("path"))
        angles = entry.get("pose", entry)
        synthetic = bool(entry.get("synthetic", default_synthetic))
        try:
            if not isinstance(rel, str) or not isinstance(angles, dict):
                raise TypeError("missing 'rel' / 'path' or 'pose'")
            pose = HeadPose(float(angles["pitch"]), float(angles["yaw"]), float(angles.get("roll") or 0.0),
                            source=POSE_RENDERED if synthetic else POSE_ANNOTATION)
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{path}: entry {index}: expected a path and a pose with pitch, yaw[, roll] ({exc})"
                             ) from exc
        poses[rel] = (pose, synthetic)
    return poses


def read_known_poses(root: Path) -> tuple[dict[str, tuple[HeadPose, bool]], list[str]]:
    """Every known pose of a generic dataset folder, from whichever of the pose files it has.

    Returns:
        (rel -> (pose, synthetic), names of the files read).
    """
    known: dict[str, tuple[HeadPose, bool]] = {}
    files = []
    if (root / POSE_CSV).is_file():
        known.update({rel: (pose, False) for rel, pose in _read_poses_csv(root / POSE_CSV).items()})
        files.append(POSE_CSV)
    for name in POSE_JSON_FILES:
        if (root / name).is_file():
            known.update(read_pose_json(root / name))
            files.append(name)
    return known, files


def _pose_notes(records: list[Record], known: Mapping[str, tuple[HeadPose, bool]], files: list[str]) -> list[str]:
    notes = []
    rels = {r.image.rel for r in records}
    unknown = sorted(set(known) - rels)
    if unknown:
        notes.append(f"{len(unknown)} entries of {', '.join(files)} name no angled image (e.g. {unknown[0]}); "
                     "they were ignored")
    synthetic = sum(r.synthetic for r in records)
    if synthetic:
        notes.append(f"{synthetic} of the {len(records)} angled images are SYNTHETIC renders, not photographs "
                     f"(declared in {', '.join(f for f in files if f.endswith('.json'))}); they are marked "
                     "synthetic = true in per_image.csv and binned by the pose they were rendered at (pose source "
                     "'rendered')")
    return notes


def load_generic(
    root: str | Path,
    *,
    gt_dir: str | Path | None = None,
    extensions: tuple[str, ...] = IMAGE_EXTENSIONS,
) -> Dataset:
    """Load a generic ``ID/*.ext`` + ``gt/ID.ext`` dataset.

    Args:
        root: dataset folder.
        gt_dir: GT folder (absolute, or relative to ``root``); default ``root/gt``.
        extensions: accepted image suffixes (lower case).

    Returns:
        The dataset (GT images keep their own relative path, ``gt/ID.ext``).

    Raises:
        InputError: ``root`` or the GT folder is missing, no identity folder holds an image, or a pose file is
            malformed.
    """
    root_path = require_dir(Path(root).resolve(), "dataset folder")
    gt_path = Path(gt_dir) if gt_dir is not None else Path("gt")
    gt_path = require_dir(gt_path if gt_path.is_absolute() else root_path / gt_path, "GT folder")
    gt_images: dict[str, Path] = {}
    for image in list_images(gt_path, extensions):
        if image.stem in gt_images:
            raise InputError(f"GT folder {gt_path} has two images for identity {image.stem!r}")
        gt_images[image.stem] = image
    known, files = read_known_poses(root_path)
    records: list[Record] = []
    for folder in sorted(p for p in root_path.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if folder.resolve() == gt_path.resolve():
            continue
        for image in list_images(folder, extensions):
            ref = image_ref(image, root_path)
            pose, synthetic = known.get(ref.rel, (None, False))
            records.append(Record(subject=folder.name, image=ref, pose=pose, synthetic=synthetic))
    if not records:
        raise InputError(f"{root_path}: no identity folder with images (expected ID/*.jpg and gt/ID.jpg)")
    gt = {s: GroundTruth(s, image_ref(p, root_path, outside_prefix="gt/")) for s, p in gt_images.items()}
    missing = sorted({r.subject for r in records} - set(gt))
    notes = [f"{len(missing)} identities have no GT image: {', '.join(missing[:10])}"] if missing else []
    notes += _pose_notes(records, known, files)
    with_pose = sum(r.pose is not None for r in records)
    return Dataset(
        layout="generic",
        root=root_path,
        records=tuple(records),
        gt=gt,
        gt_rule=GT_RULE,
        pose_source="annotated" if with_pose == len(records) else "none",
        notes=tuple(notes),
        supplied_notes=read_supplied_notes(root_path),
    )
