"""Face records and the protocols every detector, landmarker and recognizer of ``frontalize.faces`` follows.

Conventions (shared by all callers):
    * images are H×W×3 uint8 RGB numpy arrays;
    * a :class:`Face` holds float32 pixel coordinates in that image;
    * the 5 keypoints use InsightFace's order: left eye, right eye, nose tip, left mouth corner, right mouth
      corner, where "left" is the image-left side (the subject's right), as in ``arcface_dst``;
    * ``fingerprint`` is a stable string naming the model bytes (sha256) plus every pre/post-processing parameter
      that changes the output; caches key on it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from frontalize.errors import InputError

logger = logging.getLogger(__name__)

Pose = tuple[float, float, float]


def _frozen_array(values: object, shape: tuple[int, ...], field: str) -> np.ndarray:
    array = np.array(values, dtype=np.float32)
    if array.shape != shape:
        raise ValueError(f"Face.{field}: expected shape {shape}, got {array.shape}")
    array.setflags(write=False)
    return array


@dataclass(frozen=True, eq=False)
class Face:
    """One detected face.

    Attributes:
        box: (4,) float32 ``x1, y1, x2, y2`` in pixels.
        score: detector confidence in [0, 1].
        kps: (5, 2) float32 keypoints ``(x, y)`` in InsightFace order (see module docstring).
        landmarks106: (106, 2) float32 InsightFace 2d106det points, or None when not computed.
        pose: ``(pitch, yaw, roll)`` in degrees, or None when not computed. The evaluator's pose models
            (:mod:`frontalize.evaluation.poses`) store the project's convention (LivePortrait's: pitch > 0 looking
            down, yaw > 0 face turned toward image left, roll > 0 clockwise); ``InsightFacePose68.with_pose`` stores
            InsightFace's own (pitch and yaw negated).
    """

    box: np.ndarray
    score: float
    kps: np.ndarray
    landmarks106: np.ndarray | None = None
    pose: Pose | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "box", _frozen_array(self.box, (4,), "box"))
        object.__setattr__(self, "kps", _frozen_array(self.kps, (5, 2), "kps"))
        object.__setattr__(self, "score", float(self.score))
        if self.landmarks106 is not None:
            object.__setattr__(self, "landmarks106", _frozen_array(self.landmarks106, (106, 2), "landmarks106"))
        if self.pose is not None:
            pitch, yaw, roll = (float(v) for v in self.pose)
            object.__setattr__(self, "pose", (pitch, yaw, roll))

    @property
    def area(self) -> float:
        """Box area in square pixels (0 for a degenerate box)."""
        width = max(float(self.box[2] - self.box[0]), 0.0)
        height = max(float(self.box[3] - self.box[1]), 0.0)
        return width * height

    def with_landmarks(self, landmarks106: np.ndarray) -> Face:
        """Return a copy carrying ``landmarks106`` (106, 2)."""
        return dataclasses.replace(self, landmarks106=landmarks106)

    def with_pose(self, pose: Sequence[float]) -> Face:
        """Return a copy carrying ``pose`` = (pitch, yaw, roll) in degrees."""
        pitch, yaw, roll = (float(v) for v in pose)
        return dataclasses.replace(self, pose=(pitch, yaw, roll))

    def transformed(self, scale: float, offset: tuple[float, float] = (0.0, 0.0)) -> Face:
        """Return a copy with every coordinate mapped by ``p * scale + offset``.

        Args:
            scale: isotropic scale factor.
            offset: ``(dx, dy)`` added after scaling, in pixels.
        """
        shift = np.asarray(offset, dtype=np.float32)
        landmarks = None if self.landmarks106 is None else self.landmarks106 * scale + shift
        return dataclasses.replace(
            self,
            box=self.box * scale + np.tile(shift, 2),
            kps=self.kps * scale + shift,
            landmarks106=landmarks,
        )


def sort_by_area(faces: Sequence[Face]) -> list[Face]:
    """Faces sorted by box area, largest first (stable for equal areas)."""
    return sorted(faces, key=lambda face: -face.area)


def check_image(image: np.ndarray, what: str = "image") -> np.ndarray:
    """Validate the H×W×3 uint8 RGB boundary convention and return a C-contiguous view.

    Raises:
        InputError: when the array is not H×W×3 uint8 with H, W ≥ 1.
    """
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        dtype = getattr(image, "dtype", type(image).__name__)
        raise InputError(f"{what} must be an H×W×3 uint8 RGB array, got shape {shape} dtype {dtype}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise InputError(f"{what} is empty (shape {image.shape})")
    return np.ascontiguousarray(image)


def rgb_to_bgr(image: np.ndarray) -> np.ndarray:
    """Swap channel order for libraries that expect OpenCV's BGR (InsightFace, facexlib)."""
    return np.ascontiguousarray(image[..., ::-1])


@lru_cache(maxsize=64)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    del size, mtime_ns  # part of the cache key only: a rewritten file is hashed again
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_file(path: str | os.PathLike[str]) -> str:
    """sha256 hex digest of a file, cached per (path, size, mtime)."""
    resolved = Path(path).resolve()
    stat = resolved.stat()
    return _sha256_cached(str(resolved), stat.st_size, stat.st_mtime_ns)


def make_fingerprint(name: str, digests: Sequence[str], params: Mapping[str, object]) -> str:
    """Stable fingerprint string: ``name:sha256(model digests + sorted params)``.

    Args:
        name: model name (``scrfd_10g``, ``arcface_r50``...), kept readable at the front.
        digests: sha256 hex digests of the model bytes, in a fixed order.
        params: every parameter that changes the output (sizes, thresholds, normalisation).
    """
    payload = json.dumps({"digests": list(digests), "params": dict(params)}, sort_keys=True, default=str)
    return f"{name}:{hashlib.sha256(payload.encode()).hexdigest()[:32]}"


@runtime_checkable
class FaceDetector(Protocol):
    """Finds faces in an RGB image."""

    name: str
    weight_keys: tuple[str, ...]
    det_size: int

    @property
    def fingerprint(self) -> str:
        """Model bytes + det_size + thresholds."""
        ...

    def detect(self, image: np.ndarray) -> list[Face]:
        """Detect faces in an H×W×3 uint8 RGB image; returns faces sorted by area, largest first."""
        ...

    def with_det_size(self, det_size: int) -> FaceDetector:
        """A detector sharing the loaded model but running at another detection size."""
        ...


@runtime_checkable
class Landmarker106(Protocol):
    """InsightFace-style 106-point landmarker."""

    name: str
    weight_keys: tuple[str, ...]

    @property
    def fingerprint(self) -> str:
        """Model bytes + preprocessing."""
        ...

    def landmarks(self, image: np.ndarray, face: Face) -> np.ndarray:
        """(106, 2) float32 points in image pixels for ``face`` of the RGB ``image``."""
        ...

    def with_landmarks(self, image: np.ndarray, faces: Sequence[Face]) -> list[Face]:
        """Copies of ``faces`` carrying ``landmarks106``."""
        ...


@runtime_checkable
class FaceRecognizer(Protocol):
    """Aligns faces to chips and embeds chips to L2-normalised vectors (compare with cosine = dot product)."""

    name: str
    weight_keys: tuple[str, ...]
    embedding_dim: int
    batch_size: int

    @property
    def fingerprint(self) -> str:
        """Model bytes + alignment + preprocessing."""
        ...

    def align(self, image: np.ndarray, face: Face) -> np.ndarray:
        """Aligned uint8 RGB chip for ``face`` of the RGB ``image``."""
        ...

    def embed(self, chips: Sequence[np.ndarray]) -> np.ndarray:
        """(N, embedding_dim) float32 L2-normalised embeddings of N chips (batched internally)."""
        ...


def get_insightface_model(model_path: str | os.PathLike[str], *, providers: Sequence[str],
                          provider_options: Sequence[dict[str, object]] | None,
                          sess_options: object | None = None) -> object:
    """``insightface.model_zoo.get_model`` on an ONNX file with our onnxruntime providers and session options.

    The loaders of the SCRFD, ArcFace and landmark wrappers share it and then check what insightface routed the
    file to. ``sess_options`` (an ``onnxruntime.SessionOptions``) is only passed when given, so insightface keeps
    its own defaults otherwise.
    """
    from insightface.model_zoo import get_model  # local: heavy import, only where a model is loaded

    extra = {} if sess_options is None else {"sess_options": sess_options}
    return get_model(str(model_path), providers=list(providers), provider_options=provider_options, **extra)
