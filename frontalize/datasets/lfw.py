"""LFW layout: one folder per identity (``Name/Name_0001.jpg``), optional official ``pairs.txt``.

LFW has no pose annotation and no designated frontal image, so the GT rule is ours (documented in every
report): per identity, the image whose *estimated* pose is most frontal (lowest sqrt(yaw² + pitch²)) is the GT
and is removed from the probes; the other images of that identity are the angled probes. Pose estimates come
from the evaluator's detection pass (``dataset.pose``): InsightFace 1k3d68 or the 68-point landmark estimator (yaw
and pitch), or the yaw proxy from the five keypoints (:mod:`frontalize.evaluation.posecues`; pitch then counts as
0). An image without a pose (no face, or landmarks that could not be fitted) cannot be the GT. Ties are broken by
file name. Identities with fewer than
``min_images`` images (default 2: a GT and at least one probe) are dropped and counted.

``pairs.txt`` (View 2: a header ``folds pairs_per_fold`` then per fold the matched ``name i j`` lines followed
by the mismatched ``name1 i name2 j`` lines) gives an additional pair-verification table.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from frontalize.datasets.base import (
    IMAGE_EXTENSIONS,
    Dataset,
    ImageRef,
    Record,
    VerificationPair,
    image_ref,
    list_images,
    read_supplied_notes,
    require_dir,
    select_most_frontal,
)
from frontalize.errors import InputError

log = logging.getLogger(__name__)

GT_RULE = (
    "per identity, the image with the lowest estimated sqrt(yaw^2 + pitch^2) ({pose}); images with no "
    "detected face cannot be GT; the chosen image is removed from the probes"
)


def load_lfw(
    root: str | Path,
    *,
    pairs_file: str | Path | None = None,
    min_images: int = 2,
    extensions: tuple[str, ...] = IMAGE_EXTENSIONS,
) -> Dataset:
    """List an LFW-style tree. GT selection needs pose estimates: call :func:`assign_gt` afterwards.

    Args:
        root: folder of identity folders.
        pairs_file: optional ``pairs.txt`` (absolute or relative to ``root``).
        min_images: identities with fewer images are dropped (≥ 2: one GT plus one probe).
        extensions: accepted image suffixes.

    Returns:
        A dataset whose ``records`` hold every image of the kept identities and whose ``gt`` is empty.

    Raises:
        InputError: no identity folder has ``min_images`` images, or ``pairs_file`` is malformed.
    """
    data_root = require_dir(Path(root).resolve(), "dataset folder")
    records: list[Record] = []
    dropped = 0
    for folder in sorted(p for p in data_root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        images = list_images(folder, extensions)
        if len(images) < min_images:
            dropped += bool(images)
            continue
        records.extend(Record(folder.name, image_ref(p, data_root)) for p in images)
    if not records:
        raise InputError(f"{data_root}: no identity folder with at least {min_images} images")
    notes = [f"{dropped} identities with fewer than {min_images} images were dropped"] if dropped else []
    pairs: tuple[VerificationPair, ...] = ()
    if pairs_file is not None:
        path = Path(pairs_file)
        pairs, missing = read_pairs(path if path.is_absolute() else data_root / path, data_root, extensions)
        if missing:
            notes.append(f"{missing} pairs of {path.name} refer to images not in the tree and were skipped")
    return Dataset(
        layout="lfw",
        root=data_root,
        records=tuple(records),
        gt={},
        gt_rule=GT_RULE,
        pose_source="estimated",
        pairs=pairs,
        notes=tuple(notes),
        supplied_notes=read_supplied_notes(data_root),
    )


def assign_gt(dataset: Dataset, score_of: Callable[[Record], float | None], pose_description: str) -> Dataset:
    """Choose each identity's GT as its most frontal image (lowest score) and remove it from the probes.

    Args:
        dataset: result of :func:`load_lfw`.
        score_of: estimated frontality per record (lower = more frontal); None when no face was found.
        pose_description: how the poses were estimated (copied into the GT rule text of the report).
    """
    gt, probes = select_most_frontal(dataset.records, score_of)
    return replace(dataset, gt=gt, records=probes, gt_rule=GT_RULE.format(pose=pose_description))


def _find_image(root: Path, name: str, number: int, extensions: tuple[str, ...]) -> ImageRef | None:
    for ext in extensions:
        candidate = root / name / f"{name}_{number:04d}{ext}"
        if candidate.is_file():
            return image_ref(candidate, root)
    return None


def _parse_pair_line(parts: list[str]) -> tuple[str, int, str, int, bool]:
    if len(parts) == 3:
        return parts[0], int(parts[1]), parts[0], int(parts[2]), True
    if len(parts) == 4:
        return parts[0], int(parts[1]), parts[2], int(parts[3]), False
    raise ValueError(f"expected 3 or 4 fields, got {len(parts)}")


def read_pairs(
    path: Path, root: Path, extensions: tuple[str, ...] = IMAGE_EXTENSIONS
) -> tuple[tuple[VerificationPair, ...], int]:
    """Parse an LFW ``pairs.txt`` file.

    Returns:
        (pairs whose two images exist under ``root``, number of pairs skipped because an image is absent).

    Raises:
        InputError: unreadable file or a malformed line (with its line number).
    """
    try:
        lines = [line.split() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read pairs file ({exc})") from exc
    header = lines[0] if lines else []
    if not header or not all(h.isdigit() for h in header) or len(header) > 2:
        raise InputError(f"{path}:1: expected a header 'folds pairs_per_fold' (or 'pairs')")
    per_fold = 2 * int(header[1]) if len(header) == 2 else max(len(lines) - 1, 1)
    pairs: list[VerificationPair] = []
    missing = 0
    for index, parts in enumerate(lines[1:]):
        try:
            name1, n1, name2, n2, same = _parse_pair_line(parts)
        except ValueError as exc:
            raise InputError(f"{path}:{index + 2}: malformed pair line ({exc})") from exc
        first, second = _find_image(root, name1, n1, extensions), _find_image(root, name2, n2, extensions)
        if first is None or second is None:
            missing += 1
            continue
        pairs.append(VerificationPair(first, second, same, fold=index // per_fold))
    return tuple(pairs), missing
