"""Helpers of the pipeline tests (importable as ``pipeline_helpers``; fixtures live in this folder's conftest)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]
OFFLINE_CONFIG = REPO_ROOT / "configs" / "offline.yaml"


def load_script(name: str) -> ModuleType:
    """Import ``scripts/<name>.py`` as a module (scripts are not a package); imported once per session.

    The module is registered in ``sys.modules`` before it runs, as a normal import would be: dataclasses defined
    in a script look their module up there to resolve string annotations.
    """
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def save(path: Path, rgb: np.ndarray, quality: int = 92) -> Path:
    """Write an RGB image with OpenCV (format from the suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.ascontiguousarray(rgb[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    return path


def unfit_face(rgb: np.ndarray) -> np.ndarray:
    """A real face blurred (σ 8 px) so that RetinaFace still finds it (score > 0.99) but dlib's HOG check sees no
    face where the 68 landmarks are: the mesh backend's ``landmarks_unfit`` case, measured on the astronaut."""
    return cv2.GaussianBlur(rgb, (0, 0), 8)
