"""Datasets: BIWI, LFW and generic layouts -> (subject, angled image, GT image, pose) records."""

from __future__ import annotations

from pathlib import Path

from frontalize.datasets.base import (
    POSE_ANNOTATION,
    POSE_CONVENTION,
    POSE_RENDERED,
    Dataset,
    GroundTruth,
    HeadPose,
    ImageRef,
    Record,
    VerificationPair,
    frontality_score,
    rel_stem,
    select_most_frontal,
)
from frontalize.datasets.biwi import load_biwi
from frontalize.datasets.generic import load_generic
from frontalize.datasets.lfw import assign_gt, load_lfw
from frontalize.errors import ConfigError

LAYOUTS: tuple[str, ...] = ("generic", "biwi", "lfw")

__all__ = [
    "LAYOUTS",
    "POSE_ANNOTATION",
    "POSE_CONVENTION",
    "POSE_RENDERED",
    "Dataset",
    "GroundTruth",
    "HeadPose",
    "ImageRef",
    "Record",
    "VerificationPair",
    "assign_gt",
    "frontality_score",
    "load_biwi",
    "load_dataset",
    "load_generic",
    "load_lfw",
    "rel_stem",
    "select_most_frontal",
]


def load_dataset(
    layout: str,
    root: str | Path,
    *,
    gt_dir: str | Path | None = None,
    pairs_file: str | Path | None = None,
    min_images: int = 2,
) -> Dataset:
    """Load ``root`` with the named layout ("generic", "biwi" or "lfw").

    LFW datasets come back without GT (see :func:`frontalize.datasets.lfw.assign_gt`); a ``gt_dir`` given for
    LFW is not supported (its GT rule is by estimated pose).

    Raises:
        ConfigError: unknown layout, or an option the layout does not take.
        InputError: the folder does not have the layout's structure.
    """
    if pairs_file is not None and layout != "lfw":
        raise ConfigError(f"dataset.pairs_file is only used by the lfw layout, not {layout!r}")
    if layout == "generic":
        return load_generic(root, gt_dir=gt_dir)
    if layout == "biwi":
        return load_biwi(root, gt_dir=gt_dir)
    if layout == "lfw":
        if gt_dir is not None:
            raise ConfigError("dataset.gt_dir is not used by the lfw layout (GT = most frontal image per identity)")
        return load_lfw(root, pairs_file=pairs_file, min_images=min_images)
    raise ConfigError(f"unknown dataset layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
