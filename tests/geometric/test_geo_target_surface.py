"""Render targets (same arithmetic as LivePortrait's), the reference surface and the views' ray casting."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from frontalize.errors import ConfigError
from frontalize.faces.headpose import rotation_from_euler
from frontalize.faces.meanshape68 import MIRROR_68, reference_shape, side_sections, silhouette_points
from frontalize.geometric import MeshTarget, face_surface, target_angles
from frontalize.geometric.camera import ViewCamera, cast_rays
from frontalize.liveportrait import geometry as lp_geometry


def _motion(pitch: float, yaw: float, roll: float) -> lp_geometry.MotionInfo:
    one = torch.ones(1)
    return lp_geometry.MotionInfo(pitch=one * pitch, yaw=one * yaw, roll=one * roll, translation=torch.zeros(1, 3),
                                  expression=torch.zeros(1, 21, 3), scale=one[:, None], canonical=torch.zeros(1, 21, 3))


@pytest.mark.parametrize("target", [MeshTarget(), MeshTarget("partial", alpha=0.5), MeshTarget("partial", alpha=0.0),
                                    MeshTarget("partial", alpha=0.8), MeshTarget("pose", pitch=5, yaw=-30, roll=2)])
@pytest.mark.parametrize("offset", [0.0, -12.0, 7.5])
def test_target_angles_equal_liveportraits(target: MeshTarget, offset: float) -> None:
    source = (11.0, -34.0, 6.0)
    expected = lp_geometry.target_angles(_motion(*source), target.mode, alpha=target.alpha, pitch=target.pitch,
                                         yaw=target.yaw, roll=target.roll, roll_offset=torch.tensor([offset]))
    assert target_angles(source, target, offset) == pytest.approx([float(v[0]) for v in expected], abs=1e-5)


def test_target_validation() -> None:
    with pytest.raises(ConfigError, match="mode"):
        MeshTarget("sideways")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="alpha"):
        MeshTarget("partial", alpha=1.5)
    with pytest.raises(ConfigError, match="range"):
        MeshTarget("pose", yaw=120.0)


def test_reference_surface_shape() -> None:
    surface = face_surface()
    assert surface is face_surface()  # built once
    np.testing.assert_allclose(surface.depth, surface.depth[:, ::-1], atol=1e-6)
    np.testing.assert_array_equal(surface.domain, surface.domain[:, ::-1])
    np.testing.assert_allclose(surface.xs, -surface.xs[::-1], atol=1e-12)
    shape = reference_shape()

    def depth_at(x: float, y: float) -> float:
        return float(surface.depth[np.argmin(np.abs(surface.ys - y)), np.argmin(np.abs(surface.xs - x))])

    assert depth_at(*shape[30, :2]) == pytest.approx(shape[30, 2], abs=0.05)  # the surface goes through the points
    assert depth_at(*shape[36, :2]) == pytest.approx(shape[36, 2], abs=0.05)
    assert depth_at(0.0, shape[30, 1]) < depth_at(0.5, shape[30, 1]) < depth_at(0.95, shape[30, 1])  # nose → cheek
    inner = surface.grid_coords(shape[17:, :2]).round().astype(int)
    assert surface.domain[inner[:, 1], inner[:, 0]].all()
    brow_top = shape[17:27, 1].min()
    column = np.argmin(np.abs(surface.xs))
    covered = surface.ys[surface.domain[:, column] > 0]
    assert covered.min() < brow_top - 0.8  # the forehead is covered up to the hairline
    assert np.allclose(np.linalg.norm(surface.normals, axis=-1), 1.0, atol=1e-5)
    assert (surface.normals[..., 2][surface.domain > 0] < 0).all()  # every face point faces the viewer
    assert surface.pivot[2] == pytest.approx(shape[0, 2]) and surface.pivot[0] == 0.0


def test_head_sections_and_silhouettes() -> None:
    shape = reference_shape()
    for section in side_sections():
        np.testing.assert_allclose(section.point(0.0), shape[section.index], atol=1e-9)
        front = section.point(section.front_angle)
        assert front[2] < shape[section.index, 2]  # the front point is nearer the viewer
    assert silhouette_points(np.eye(3)) == {}
    turned = silhouette_points(rotation_from_euler(0.0, 30.0, 0.0))
    assert sorted(turned) == [0, 1, 2, 3, 4]  # yaw > 0: the face turns to image left, hiding that side
    assert sorted(silhouette_points(rotation_from_euler(0.0, -30.0, 0.0))) == sorted(MIRROR_68[i] for i in range(5))
    for index, point in turned.items():
        assert point[2] < shape[index, 2] and abs(point[0]) < abs(shape[index, 0])


def test_ray_casting_sees_the_nearest_surface() -> None:
    surface = face_surface()
    frontal = ViewCamera(100.0, np.eye(3), surface.pivot, np.array([256.0, 256.0]))
    points = surface.points()[10:90:7, 10:80:7]
    coords, hit = cast_rays(frontal, surface, frontal.project(points).astype(np.float32))
    assert hit.all()
    rows, columns = np.mgrid[10:90:7, 10:80:7]
    np.testing.assert_allclose(coords, np.stack([columns, rows], axis=-1), atol=1e-3)
    turned = ViewCamera(100.0, rotation_from_euler(0.0, 45.0, 0.0), surface.pivot, np.array([256.0, 256.0]))
    shape = reference_shape()
    nose, hidden = shape[30], shape[39]  # at 45° the nose bridge hides the far eye's inner corner
    coords, hit = cast_rays(turned, surface, turned.project(np.stack([nose, hidden]))[None].astype(np.float32))
    assert hit.all()
    seen = np.c_[coords[0] * surface.spacing + [surface.xs[0], surface.ys[0]], [0.0, 0.0]]
    assert np.linalg.norm(seen[0, :2] - nose[:2]) < 0.05
    assert seen[1, 0] > hidden[0] + 0.1  # the ray met something nearer the midline (the nose), not the eye corner
