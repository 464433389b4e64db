"""Generic dataset layout: one folder of angled images per identity plus one GT image per identity.

::

    DATA/
      alice/001.jpg, alice/002.png, ...     angled probes of identity "alice"
      bob/...
      gt/alice.jpg, gt/bob.png              the GT (reference) image of each identity
      poses.csv                             optional: rel,pitch,yaw,roll (degrees) per angled image

The GT folder may live elsewhere (``gt_dir``). Without ``poses.csv`` the evaluator estimates the pose for the
pose-bin table (InsightFace 1k3d68 when available, else a |yaw| proxy from the detector's five keypoints).
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

from frontalize.datasets.base import (
    IMAGE_EXTENSIONS,
    Dataset,
    GroundTruth,
    HeadPose,
    Record,
    image_ref,
    list_images,
    require_dir,
)
from frontalize.errors import InputError

log = logging.getLogger(__name__)

GT_RULE = "the image gt/<ID>.<ext> supplied with the dataset (one per identity)"


def _read_poses(path: Path) -> dict[str, HeadPose]:
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
        InputError: ``root`` or the GT folder is missing, or no identity folder holds an image.
    """
    root_path = require_dir(Path(root).resolve(), "dataset folder")
    gt_path = Path(gt_dir) if gt_dir is not None else Path("gt")
    gt_path = require_dir(gt_path if gt_path.is_absolute() else root_path / gt_path, "GT folder")
    gt_images: dict[str, Path] = {}
    for image in list_images(gt_path, extensions):
        if image.stem in gt_images:
            raise InputError(f"GT folder {gt_path} has two images for identity {image.stem!r}")
        gt_images[image.stem] = image
    poses_file = root_path / "poses.csv"
    poses = _read_poses(poses_file) if poses_file.is_file() else {}
    records: list[Record] = []
    for folder in sorted(p for p in root_path.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if folder.resolve() == gt_path.resolve():
            continue
        for image in list_images(folder, extensions):
            ref = image_ref(image, root_path)
            records.append(Record(subject=folder.name, image=ref, pose=poses.get(ref.rel)))
    if not records:
        raise InputError(f"{root_path}: no identity folder with images (expected ID/*.jpg and gt/ID.jpg)")
    gt = {s: GroundTruth(s, image_ref(p, root_path, outside_prefix="gt/")) for s, p in gt_images.items()}
    missing = sorted({r.subject for r in records} - set(gt))
    notes = (f"{len(missing)} identities have no GT image: {', '.join(missing[:10])}",) if missing else ()
    with_pose = sum(r.pose is not None for r in records)
    return Dataset(
        layout="generic",
        root=root_path,
        records=tuple(records),
        gt=gt,
        gt_rule=GT_RULE,
        pose_source="annotated" if with_pose == len(records) else "none",
        notes=notes,
    )
