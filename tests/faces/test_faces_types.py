"""Face record, sorting, image checks and fingerprints."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from frontalize.errors import InputError
from frontalize.faces.types import Face, check_image, make_fingerprint, sha256_file, sort_by_area

KPS = [[10, 10], [20, 10], [15, 15], [11, 20], [19, 20]]


def test_face_coerces_to_frozen_float32() -> None:
    face = Face(box=[0, 0, 30, 40], score=np.float64(0.9), kps=KPS)
    assert face.box.dtype == np.float32 and face.kps.shape == (5, 2)
    assert isinstance(face.score, float)
    assert face.area == 1200.0
    with pytest.raises(ValueError):
        face.box[0] = 5  # arrays are read-only
    with pytest.raises(dataclasses.FrozenInstanceError):
        face.score = 0.1  # type: ignore[misc]


def test_face_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="kps"):
        Face(box=[0, 0, 1, 1], score=1.0, kps=[[0, 0]] * 4)
    with pytest.raises(ValueError, match="landmarks106"):
        Face(box=[0, 0, 1, 1], score=1.0, kps=KPS, landmarks106=np.zeros((68, 2)))


def test_with_landmarks_pose_and_transform() -> None:
    face = Face(box=[0, 0, 30, 40], score=0.5, kps=KPS)
    rich = face.with_landmarks(np.ones((106, 2))).with_pose([1, -2, 3])
    assert rich.pose == (1.0, -2.0, 3.0) and rich.landmarks106 is not None
    assert face.landmarks106 is None  # the original is unchanged
    moved = rich.transformed(2.0, (5.0, -1.0))
    np.testing.assert_allclose(moved.box, [5, -1, 65, 79])
    np.testing.assert_allclose(moved.kps[0], [25, 19])
    np.testing.assert_allclose(moved.landmarks106[0], [7, 1])


def test_sort_by_area_largest_first() -> None:
    small = Face(box=[0, 0, 10, 10], score=0.99, kps=KPS)
    large = Face(box=[0, 0, 50, 50], score=0.6, kps=KPS)
    degenerate = Face(box=[5, 5, 1, 1], score=0.7, kps=KPS)
    assert sort_by_area([small, degenerate, large]) == [large, small, degenerate]


@pytest.mark.parametrize(
    "bad",
    [np.zeros((4, 4), np.uint8), np.zeros((4, 4, 4), np.uint8), np.zeros((4, 4, 3), np.float32),
     np.zeros((0, 4, 3), np.uint8), [[1, 2, 3]]],
)
def test_check_image_rejects_non_rgb_uint8(bad: object) -> None:
    with pytest.raises(InputError):
        check_image(bad)  # type: ignore[arg-type]


def test_fingerprint_is_stable_and_parameter_sensitive(tmp_path) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(b"abc")
    digest = sha256_file(path)
    assert digest == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    first = make_fingerprint("m", [digest], {"a": 1, "b": 2})
    assert first == make_fingerprint("m", [digest], {"b": 2, "a": 1})
    assert first != make_fingerprint("m", [digest], {"a": 1, "b": 3})
    assert first.startswith("m:")
