"""Weights: the registry of every weight file, its resolution on disk, verification and download.

Public API::

    from frontalize.weights import get_weight, weight_path, verify_weights, resolve_weights_root, REGISTRY
    from frontalize.weights import PACKAGED, packaged_path, verify_packaged   # files shipped inside packages

Only :func:`download_weights` (used by ``scripts/download_weights.py``) touches the network.
"""

from __future__ import annotations

from frontalize.weights.download import DownloadError, download_weights
from frontalize.weights.lock import LOCK_FILENAME, WeightsLock
from frontalize.weights.packaged import packaged_path, verify_packaged
from frontalize.weights.registry import (
    GROUPS,
    OFFLINE_INSTALL,
    PACKAGED,
    REGISTRY,
    PackagedFile,
    WeightFile,
    check_group,
    fetch_groups,
    get_packaged,
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
    "OFFLINE_INSTALL",
    "PACKAGED",
    "REGISTRY",
    "DownloadError",
    "PackagedFile",
    "VerifiedWeight",
    "WeightFile",
    "WeightsLock",
    "check_group",
    "download_command",
    "download_weights",
    "facexlib_dir",
    "fetch_groups",
    "file_status",
    "get_packaged",
    "get_weight",
    "group_keys",
    "insightface_root",
    "packaged_path",
    "rembg_home",
    "resolve_weights_root",
    "verification_of",
    "verification_table",
    "verify_packaged",
    "verify_weights",
    "weight_path",
]
