"""Weights: the registry of every weight file, its resolution on disk, verification and download.

Public API::

    from frontalize.weights import get_weight, weight_path, verify_weights, resolve_weights_root, REGISTRY

Only :func:`download_weights` (used by ``scripts/download_weights.py``) touches the network.
"""

from __future__ import annotations

from frontalize.weights.download import DownloadError, download_weights
from frontalize.weights.lock import LOCK_FILENAME, WeightsLock
from frontalize.weights.registry import (
    GROUPS,
    REGISTRY,
    WeightFile,
    check_group,
    fetch_groups,
    get_weight,
    group_keys,
    verification_of,
    verification_table,
)
from frontalize.weights.store import (
    VerifiedWeight,
    download_command,
    facexlib_dir,
    file_status,
    insightface_root,
    rembg_home,
    resolve_weights_root,
    verify_weights,
    weight_path,
)

__all__ = [
    "GROUPS",
    "LOCK_FILENAME",
    "REGISTRY",
    "DownloadError",
    "VerifiedWeight",
    "WeightFile",
    "WeightsLock",
    "check_group",
    "download_command",
    "download_weights",
    "facexlib_dir",
    "fetch_groups",
    "file_status",
    "get_weight",
    "group_keys",
    "insightface_root",
    "rembg_home",
    "resolve_weights_root",
    "verification_of",
    "verification_table",
    "verify_weights",
    "weight_path",
]
