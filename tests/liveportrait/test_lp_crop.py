"""Tests of the LivePortrait crop (frontalize.liveportrait.crop) and paste-back (frontalize.liveportrait.pasteback)."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest
import torch

from frontalize.liveportrait import crop as lpcrop
from frontalize.liveportrait import geometry as geo
from frontalize.liveportrait.pasteback import feather_mask, paste_back, tensor_to_images, warp_mask


@pytest.fixture(scope="module")
def golden(golden_dir):
    from golden_check import Golden

    tol = json.loads((golden_dir / "tolerances.json").read_text())["geometry"]
    return Golden(str(golden_dir / "geometry.npz")), tol


def _check(golden, name: str, actual: np.ndarray) -> None:
    g, tol = golden
    res = g.check(name, actual, tol[name])
    assert res["ok"], res


def _rgb(path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def test_crop_rect_golden(golden):
    g, _ = golden
    rects = [lpcrop.crop_rect_from_landmarks106(p) for p in g.get("crop_pts106")]
    _check(golden, "crop_center", np.stack([r.center for r in rects]))
    _check(golden, "crop_size", np.array([[r.size, r.size] for r in rects]))
    _check(golden, "crop_angle_rad", np.array([r.angle for r in rects]))


def test_crop_matrices_golden(golden):
    g, _ = golden
    pts = g.get("crop_pts106")
    image = np.zeros((64, 64, 3), np.uint8)
    crops = [lpcrop.crop_face(image, p) for p in pts]
    assert all(c.M_o2c.dtype == np.float32 and c.M_o2c.shape == (3, 3) for c in crops)
    assert all(c.image.shape == (512, 512, 3) for c in crops)
    _check(golden, "crop_M_o2c", np.stack([c.M_o2c for c in crops]))
    _check(golden, "crop_M_c2o", np.stack([c.M_c2o for c in crops]))
    _check(golden, "crop_pt_crop", np.stack([lpcrop.transform_points(p, c.M_o2c) for p, c in zip(pts, crops)]))
    norot = [lpcrop.crop_face(image, p, rotate=False) for p in pts]
    _check(golden, "crop_norot_M_o2c", np.stack([c.M_o2c for c in norot]))
    assert all(c.angle == 0.0 and c.roll_offset == 0.0 for c in norot)
    assert [c.angle for c in crops] == pytest.approx(list(g.get("crop_angle_rad")), abs=1e-4)


def test_inverse_transform_round_trip(golden):
    g, _ = golden
    rect = lpcrop.crop_rect_from_landmarks106(g.get("crop_pts106")[3])
    m_o2c, m_c2o = lpcrop.crop_transform(rect)
    np.testing.assert_allclose(lpcrop.invert_transform(m_o2c), m_c2o, rtol=1e-5, atol=1e-3)
    pts = g.get("crop_pts106")[3]
    back = lpcrop.transform_points(lpcrop.transform_points(pts, m_o2c), m_c2o)
    np.testing.assert_allclose(back, pts, atol=1e-2)


def test_mask_equals_template(golden_dir):
    template = cv2.imread(str(golden_dir / "mask_template.png"), cv2.IMREAD_UNCHANGED)
    mask = feather_mask(512, 16)
    assert mask.shape == (512, 512) and mask.dtype == np.uint8
    assert np.array_equal(mask, template)
    assert list(mask[256, :17]) == [0, 15, 31, 47, 63, 79, 95, 111, 127, 143, 159, 175, 191, 207, 223, 239, 255]
    with pytest.raises(ValueError):
        feather_mask(16, 9)


def test_paste_back_golden(golden):
    g, _ = golden
    src, m_c2o = g.get("pb_source_u8"), g.get("pb_M_c2o")
    crop = lpcrop.crop_face(src, g.get("pb_pts106"))
    _check(golden, "pb_M_c2o", crop.M_c2o)
    _check(golden, "pb_mask_ori", warp_mask(feather_mask(), m_c2o, *src.shape[:2]))
    _check(golden, "pb_result_u8", paste_back(g.get("pb_crop_u8"), m_c2o, src))
    # the recipe through our own matrix as well
    _check(golden, "pb_result_u8", paste_back(g.get("pb_crop_u8"), crop.M_c2o, src))


def test_paste_back_rejects_bad_input():
    src = np.zeros((10, 10, 3), np.uint8)
    with pytest.raises(ValueError, match="crop"):
        paste_back(np.zeros((512, 512), np.uint8), np.eye(3), src)
    with pytest.raises(ValueError, match="mask"):
        paste_back(np.zeros((512, 512, 3), np.uint8), np.eye(3), src, mask=np.zeros((256, 256), np.uint8))


def test_network_input_matches_golden(golden_dir):
    crop512 = _rgb(golden_dir / "s0_crop512.png")
    expected = _rgb(golden_dir / "input_256.png")
    net_in = lpcrop.network_input(crop512)
    assert np.array_equal(net_in, expected)
    tensor = lpcrop.images_to_tensor([net_in, net_in[::-1]])
    assert tensor.shape == (2, 3, 256, 256) and tensor.dtype == torch.float32
    ref = torch.from_numpy(expected.astype(np.float32) / 255.0).permute(2, 0, 1)
    assert torch.equal(tensor[0], ref)
    with pytest.raises(ValueError, match="uint8"):
        lpcrop.images_to_tensor(np.zeros((1, 8, 8, 3), np.float32))


def test_tensor_to_images_truncates():
    t = torch.tensor([0.0, 0.5, 1.0, 1.5, -0.2, 0.999]).reshape(1, 3, 1, 2)
    out = tensor_to_images(t)
    assert out.shape == (1, 1, 2, 3) and out.dtype == np.uint8
    assert out[0, 0].T.flatten().tolist() == [0, 127, 255, 255, 0, 254]


def test_five_point_crop_approximation(golden):
    g, _ = golden
    for pts in g.get("crop_pts106"):
        exact = lpcrop.crop_rect_from_landmarks106(pts)
        approx = lpcrop.crop_rect_from_landmarks5(lpcrop.landmarks5_from_106(pts))
        assert abs(approx.size / exact.size - 1) < 0.03
        assert np.linalg.norm(approx.center - exact.center) < 0.03 * exact.size
        assert abs(approx.angle - exact.angle) < 1e-9
        # the 106 points land within 3 % (mean 2 %) of the crop side of where the exact crop puts them
        m_exact, _ = lpcrop.crop_transform(exact)
        m_approx, _ = lpcrop.crop_transform(approx)
        err = np.linalg.norm(lpcrop.transform_points(pts, m_exact) - lpcrop.transform_points(pts, m_approx), axis=1)
        assert err.max() < 0.03 * 512 and err.mean() < 0.02 * 512
    crop5 = lpcrop.crop_face(np.zeros((32, 32, 3), np.uint8), lpcrop.landmarks5_from_106(pts))
    assert crop5.image.shape == (512, 512, 3)


def test_crop_face_rejects_bad_input():
    with pytest.raises(ValueError, match="landmarks"):
        lpcrop.crop_face(np.zeros((32, 32, 3), np.uint8), np.zeros((68, 2)))
    with pytest.raises(ValueError, match="uint8"):
        lpcrop.crop_face(np.zeros((32, 32), np.uint8), np.zeros((5, 2)))


# --- upright option: a rotated synthetic face comes back upright -----------------------------------------------

_COLOURS = {"left_eye": (255, 0, 0), "right_eye": (0, 255, 0), "mouth": (0, 0, 255)}


def _synthetic_face(pts106: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Black canvas with coloured discs at the eye centres and a bar between the mouth corners."""
    img = np.zeros((*shape, 3), np.uint8)
    five = lpcrop.landmarks5_from_106(pts106)
    for centre, name in ((five[0], "left_eye"), (five[1], "right_eye")):
        cv2.circle(img, tuple(round(v) for v in centre), 5, _COLOURS[name], -1)
    cv2.line(img, tuple(round(v) for v in five[3]), tuple(round(v) for v in five[4]), _COLOURS["mouth"], 4)
    return img


def _centroid(img: np.ndarray, name: str) -> np.ndarray:
    colour = np.array(_COLOURS[name])
    hit = np.all(np.abs(img.astype(int) - colour) < 60, axis=2)
    ys, xs = np.nonzero(hit)
    assert xs.size > 10, name
    return np.array([xs.mean(), ys.mean()])


def _render_roll(crop_img: np.ndarray, roll_deg: float) -> np.ndarray:
    """Ideal renderer: re-pose the crop's content by a network roll, using the keypoint convention p' = p·R."""
    zero = torch.zeros(1)
    rot = geo.rotation_matrix(zero, zero, torch.tensor([roll_deg]))[0, :2, :2].double().numpy()
    c = np.array([256.0, 256.0])  # crop pixels map to the keypoint volume with a positive scale about the centre
    forward = np.hstack([rot.T, (c - rot.T @ c)[:, None]])
    return cv2.warpAffine(crop_img, forward.astype(np.float32), (512, 512), flags=cv2.INTER_LINEAR)


def _eye_tilt_deg(img: np.ndarray) -> float:
    left, right = _centroid(img, "left_eye"), _centroid(img, "right_eye")
    return math.degrees(math.atan2(right[1] - left[1], right[0] - left[0]))


@pytest.mark.parametrize("phi", [25.0, -35.0])
def test_upright_round_trip(golden, phi):
    g, _ = golden
    pts = g.get("crop_pts106")[0]  # upright hand-fitted face on a 600×704 image
    face = _synthetic_face(pts, (704, 600))
    assert abs(_eye_tilt_deg(face)) < 2.0
    # rotate the picture by phi degrees counter-clockwise on screen (OpenCV's positive sense)
    rot = cv2.getRotationMatrix2D((300.0, 352.0), phi, 1.0)
    tilted = cv2.warpAffine(face, rot, (600, 704), flags=cv2.INTER_LINEAR)
    tilted_pts = lpcrop.transform_points(pts, rot)
    assert _eye_tilt_deg(tilted) == pytest.approx(-phi, abs=2.0)
    crop = lpcrop.crop_face(tilted, tilted_pts)
    # counter-clockwise phi is θ = −phi (θ positive = clockwise); the crop itself is upright
    assert crop.angle == pytest.approx(-math.radians(phi), abs=0.02)
    assert abs(_eye_tilt_deg(crop.image)) < 2.0
    assert crop.roll_offset == pytest.approx(phi, abs=1.5)
    # roll 0 in the crop keeps the source tilt after paste-back; the upright offset removes it
    kept = paste_back(_render_roll(crop.image, 0.0), crop.M_c2o, tilted)
    assert _eye_tilt_deg(kept) == pytest.approx(-phi, abs=2.0)
    upright = paste_back(_render_roll(crop.image, crop.roll_offset), crop.M_c2o, tilted)
    assert abs(_eye_tilt_deg(upright)) < 2.0
    # mouth below the eyes: upright, not upside down
    assert _centroid(upright, "mouth")[1] > _centroid(upright, "left_eye")[1]


def test_halve_u8_equals_opencv_area_resize_then_tensor():
    from frontalize.liveportrait.crop import halve_u8, images_to_tensor, network_input

    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    expected = images_to_tensor([network_input(img, size=32) for img in images])
    actual = halve_u8(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous())
    assert torch.equal(actual, expected)
    with pytest.raises(ValueError, match="even sides"):
        halve_u8(torch.zeros(1, 3, 5, 4, dtype=torch.uint8))
