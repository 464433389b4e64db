"""Which texture the geometric engine shows where: the mirror rule (own texture unless the mirror partner is clearly
better seen; eyes mirrored only where poorly seen), on the rule itself and on real faces, and exact warp maps along
occlusion edges of turned views (no coarse-grid staircase)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from frontalize.geometric import MeshTarget, face_surface
from frontalize.geometric.camera import cast_rays, target_view
from frontalize.geometric.target import target_angles
from frontalize.geometric.visibility import mirror_weights


def _share(own: np.ndarray, mirror: np.ndarray) -> np.ndarray:
    return mirror / (own + mirror)


def test_equally_seen_halves_keep_their_own_texture() -> None:
    surface = face_surface()
    for level in (0.2, 0.5, 0.9):
        visibility = np.full(surface.shape, level, dtype=np.float32)
        own, mirror = mirror_weights(surface, visibility)
        assert float(_share(own, mirror).max()) < 1e-6, level


def test_hidden_points_take_the_better_seen_partner() -> None:
    surface = face_surface()
    columns = np.broadcast_to(surface.xs[None, :], surface.shape)
    # The image-left half hidden (0.05), the other half well seen (1.0).
    visibility = np.where(columns < -0.1, 0.05, 1.0).astype(np.float32)
    share = _share(*mirror_weights(surface, visibility))
    away_from_eyes = surface.eyes < 0.01
    assert float(np.median(share[(columns < -0.2) & away_from_eyes])) > 0.9
    assert float(share[columns > 0.2].max()) < 1e-6  # the well-seen half is never overwritten


def test_an_eye_is_mirrored_only_where_it_is_poorly_seen() -> None:
    surface = face_surface()
    columns = np.broadcast_to(surface.xs[None, :], surface.shape)
    eye = (surface.eyes > 0.99) & (columns < 0)
    assert eye.any()
    for level, mirrored in ((0.1, True), (0.8, False)):
        visibility = np.where(columns < 0, level, 1.0).astype(np.float32)
        share = _share(*mirror_weights(surface, visibility))
        if mirrored:
            assert float(np.median(share[eye])) > 0.8, level
        else:
            assert float(share[eye].max()) < 0.02, level


def test_far_eye_of_a_strongly_turned_face_is_mirrored(engine, crops) -> None:  # type: ignore[no-untyped-def]
    """t1.jpg's face turned about 54°: its far eye, barely seen, takes the near eye (it was a smear when kept)."""
    fits = [(case, engine.fit(case.crop, case.face, roll_offset=case.roll_offset)) for case in crops]
    case, fit = max(fits, key=lambda item: abs(item[1].head.angles[1]))
    assert abs(fit.head.angles[1]) > 45
    layers = engine.render_layers(fit, MeshTarget())
    points = fit.target_landmarks(MeshTarget())
    far = range(36, 42) if fit.head.angles[1] > 0 else range(42, 48)  # yaw > 0 hides the image-left side
    x, y = np.round(points[list(far)].mean(axis=0)).astype(int)
    assert float(layers.mirror_share[y - 3:y + 4, x - 3:x + 4].mean()) > 0.5, case.name
    frontal = next(item for item in fits if item[0].name.startswith("astronaut"))
    frontal_layers = engine.render_layers(frontal[1], MeshTarget())
    assert float(frontal_layers.mirror_share.mean()) < 0.02  # a frontal face keeps its own texture


@pytest.mark.parametrize("yaw", [30.0, -45.0])
def test_maps_are_exact_along_occlusion_edges(engine, astronaut_case, yaw: float) -> None:  # type: ignore[no-untyped-def]
    fit = engine.fit(astronaut_case.crop, astronaut_case.face)
    target = MeshTarget("pose", yaw=yaw)
    layers = engine.render_layers(fit, target)
    # Every pixel traced on its own (what the coarse map approximates): cast_rays at full resolution.
    view = target_view(fit.source, target_angles(fit.head.angles, target, fit.roll_offset))
    height, width = fit.crop.shape[:2]
    columns, rows = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    coords, hit = cast_rays(view, fit.surface, np.stack([columns, rows], axis=-1))
    exact = cv2.remap(fit.sampling.positions, coords[..., 0], coords[..., 1], cv2.INTER_LINEAR,
                      borderMode=cv2.BORDER_REPLICATE)
    error = np.linalg.norm(layers.face_positions - exact, axis=-1)
    face = hit & (layers.face_alpha > 0.99)
    # Occlusion edges: where the exact map jumps by more than 3 px between neighbouring pixels (the nose's side;
    # elsewhere neighbours are about 1 px apart).
    jump = np.zeros_like(face)
    jump[:, 1:] |= np.linalg.norm(np.diff(exact, axis=1), axis=-1) > 3.0
    jump[1:] |= np.linalg.norm(np.diff(exact, axis=0), axis=-1) > 3.0
    band = cv2.dilate(jump.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
    assert (band & face).sum() > 200, "no occlusion edge in this view"
    assert float(np.percentile(error[band & face], 90)) < 2.0  # within 2 px where a 4-px cell would be off by up to 8
    assert float(np.median(error[face])) < 1.0  # and the smooth maps elsewhere
