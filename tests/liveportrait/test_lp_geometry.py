"""Tests of frontalize.liveportrait.geometry: goldens from geometry.npz plus pure-function properties."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from frontalize.liveportrait import build_network
from frontalize.liveportrait import geometry as geo


@pytest.fixture(scope="module")
def golden(golden_dir):
    from golden_check import Golden

    tol = json.loads((golden_dir / "tolerances.json").read_text())["geometry"]
    return Golden(str(golden_dir / "geometry.npz")), tol


def _t(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array))


def _check(golden, name: str, actual: torch.Tensor | np.ndarray) -> None:
    g, tol = golden
    value = actual.detach().numpy() if isinstance(actual, torch.Tensor) else actual
    res = g.check(name, value, tol[name])
    assert res["ok"], res


def test_headpose_degrees_golden(golden):
    g, _ = golden
    _check(golden, "headpose_deg", geo.headpose_to_degrees(_t(g.get("headpose_logits"))))


def test_rotation_matrix_golden(golden):
    g, _ = golden
    rot = geo.rotation_matrix(_t(g.get("rot_pitch")), _t(g.get("rot_yaw")), _t(g.get("rot_roll")))
    _check(golden, "rot_R", rot)


def test_keypoint_transform_golden(golden):
    g, _ = golden
    rot = geo.rotation_matrix(_t(g.get("kpt_pitch")), _t(g.get("kpt_yaw")), _t(g.get("kpt_roll")))
    _check(golden, "kpt_R", rot)
    x = geo.transform_keypoints(_t(g.get("kpt_kp")), rot, _t(g.get("kpt_exp")), _t(g.get("kpt_scale")),
                                _t(g.get("kpt_t")))
    _check(golden, "kpt_x", x)


def _motion_from_logits(g) -> geo.MotionInfo:
    raw = {"pitch": _t(g.get("kpt_logit_pitch")), "yaw": _t(g.get("kpt_logit_yaw")),
           "roll": _t(g.get("kpt_logit_roll")), "t": _t(g.get("kpt_t")),
           "exp": _t(g.get("kpt_exp")).reshape(3, 63), "scale": _t(g.get("kpt_scale")),
           "kp": _t(g.get("kpt_kp")).reshape(3, 63)}
    return geo.parse_motion(raw)


def test_keypoint_transform_from_logits_golden(golden):
    g, _ = golden
    m = _motion_from_logits(g)
    assert m.pitch.shape == (3,) and m.canonical.shape == (3, 21, 3) and m.scale.shape == (3, 1)
    rot = geo.rotation_matrix(m.pitch, m.yaw, m.roll)
    _check(golden, "kpt_logit_x", geo.transform_keypoints(m.canonical, rot, m.expression, m.scale, m.translation))


def test_frontal_edit_golden(golden):
    g, _ = golden
    m = _motion_from_logits(g)
    pitch, yaw, roll = geo.target_angles(m, "frontal")
    rot = geo.rotation_matrix(pitch, yaw, roll)
    assert torch.equal(rot, torch.eye(3).expand(3, 3, 3))
    _check(golden, "frontal_x_d", geo.transform_keypoints(m.canonical, rot, m.expression, m.scale, m.translation))


def test_stitching_application_golden(golden):
    g, _ = golden
    x_d = geo.apply_stitching(_t(g.get("stitch_x_d")), _t(g.get("stitch_delta")))
    _check(golden, "stitch_x_d_new", x_d)


def test_stitching_network_golden(golden, golden_dir):
    import fill

    g, _ = golden
    table = fill.load_keys_tsv(str(golden_dir / "keys.tsv"), net="S")
    sd = fill.deterministic_state_dict(*fill.shapes_and_dtypes(table))
    mlp = build_network("stitching")
    mlp.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()}, strict=True)
    x_s, x_d = _t(g.get("stitch_x_s")), _t(g.get("stitch_x_d"))
    with torch.no_grad():
        delta = mlp(geo.stitching_input(x_s, x_d))
    _check(golden, "stitch_delta", delta)
    _check(golden, "stitch_x_d_new", geo.apply_stitching(x_d, delta))


def test_rotation_properties():
    gen = torch.Generator().manual_seed(0)
    angles = [torch.rand(32, generator=gen) * 180 - 90 for _ in range(3)]
    rot = geo.rotation_matrix(*angles)
    eye = torch.eye(3).expand(32, 3, 3)
    assert torch.allclose(rot @ rot.transpose(1, 2), eye, atol=1e-6)
    assert torch.allclose(torch.linalg.det(rot), torch.ones(32), atol=1e-6)
    zero = torch.zeros(4)
    assert torch.equal(geo.rotation_matrix(zero, zero, zero), torch.eye(3).expand(4, 3, 3))
    # positive roll turns the x axis towards +y (down): clockwise on screen
    r90 = geo.rotation_matrix(zero[:1], zero[:1], torch.tensor([90.0]))
    assert torch.allclose(torch.tensor([[1.0, 0.0, 0.0]]) @ r90[0], torch.tensor([[0.0, 1.0, 0.0]]), atol=1e-6)
    # B×1 angles are accepted like B
    assert torch.equal(geo.rotation_matrix(*(a[:, None] for a in angles)), rot)


def test_headpose_uniform_and_peaked():
    logits = torch.zeros(2, 66)
    logits[1, 40] = 100.0
    deg = geo.headpose_to_degrees(logits)
    assert deg[0].item() == pytest.approx(0.0, abs=1e-4)
    assert deg[1].item() == pytest.approx(3 * 40 - 97.5, abs=1e-4)


def test_transform_drops_tz_and_identity_pose():
    kp = torch.randn(2, 21, 3, generator=torch.Generator().manual_seed(1))
    exp = torch.zeros_like(kp)
    t = torch.tensor([[0.1, -0.2, 5.0], [0.0, 0.3, -7.0]])
    x = geo.transform_keypoints(kp, torch.eye(3).expand(2, 3, 3), exp, torch.ones(2, 1), t)
    assert torch.equal(x[..., 2], kp[..., 2])
    assert torch.allclose(x[..., :2], kp[..., :2] + t[:, None, :2])


def _motion(batch: int = 3, seed: int = 2) -> geo.MotionInfo:
    gen = torch.Generator().manual_seed(seed)
    return geo.MotionInfo(pitch=torch.rand(batch, generator=gen) * 40 - 20,
                          yaw=torch.rand(batch, generator=gen) * 40 - 20,
                          roll=torch.rand(batch, generator=gen) * 40 - 20,
                          translation=torch.randn(batch, 3, generator=gen),
                          expression=torch.randn(batch, 21, 3, generator=gen) * 0.05,
                          scale=torch.rand(batch, 1, generator=gen) + 0.5,
                          canonical=torch.randn(batch, 21, 3, generator=gen) * 0.3)


def test_target_angles_modes():
    m = _motion()
    offset = torch.tensor([5.0, -10.0, 0.0])
    p, y, r = geo.target_angles(m, "frontal")
    assert torch.equal(p, torch.zeros(3)) and torch.equal(y, torch.zeros(3)) and torch.equal(r, torch.zeros(3))
    assert torch.equal(geo.target_angles(m, "frontal", roll_offset=offset)[2], offset)
    p, y, r = geo.target_angles(m, "partial", alpha=0.0)
    assert torch.equal(p, m.pitch) and torch.equal(y, m.yaw) and torch.equal(r, m.roll)
    p, y, r = geo.target_angles(m, "partial", alpha=0.25, roll_offset=offset)
    assert torch.allclose(p, 0.75 * m.pitch) and torch.allclose(y, 0.75 * m.yaw)
    assert torch.allclose(r, 0.75 * m.roll + 0.25 * offset)
    p, y, r = geo.target_angles(m, "pose", pitch=1.0, yaw=-2.0, roll=3.0, roll_offset=offset)
    assert torch.equal(p, torch.ones(3)) and torch.equal(y, torch.full((3,), -2.0))
    assert torch.allclose(r, 3.0 + offset)
    with pytest.raises(ValueError, match="unknown pose-target mode"):
        geo.target_angles(m, "sideways")


def test_partial_alpha_zero_reproduces_source_keypoints():
    m = _motion()
    rot_s = geo.rotation_matrix(m.pitch, m.yaw, m.roll)
    x_s = geo.transform_keypoints(m.canonical, rot_s, m.expression, m.scale, m.translation)
    rot_t = geo.rotation_matrix(*geo.target_angles(m, "partial", alpha=0.0))
    assert torch.equal(geo.transform_keypoints(m.canonical, rot_t, m.expression, m.scale, m.translation), x_s)


def test_neutralize_expression_components():
    exp = torch.ones(2, 21, 3)
    out = geo.neutralize_expression(exp)
    mask = geo.expression_mask(21)
    assert torch.equal(out, 1 - mask.expand(2, 21, 3))
    assert mask[1].tolist() == [1, 1, 1] and mask[3].tolist() == [0, 1, 0] and mask[9].tolist() == [0, 1, 1]
    assert mask[0].tolist() == [0, 0, 0] and mask[10].tolist() == [0, 0, 0] and mask[5].tolist() == [0, 0, 1]
    assert int(mask.sum()) == 13 * 3 + 2 + 2 + 2
    with pytest.raises(ValueError, match="21 keypoints"):
        geo.expression_mask(4)


def test_stitching_input_and_shift():
    x_s = torch.arange(63.0).reshape(1, 21, 3)
    x_d = -x_s
    inp = geo.stitching_input(x_s, x_d)
    assert inp.shape == (1, 126) and torch.equal(inp[0, :63], x_s.flatten()) and torch.equal(inp[0, 63:], x_d.flatten())
    delta = torch.zeros(1, 65)
    delta[0, 63:] = torch.tensor([0.5, -0.25])
    delta[0, 5] = 1.0  # keypoint 1, z
    out = geo.apply_stitching(x_d, delta)
    expected = x_d.clone()
    expected[..., 0] += 0.5
    expected[..., 1] -= 0.25
    expected[0, 1, 2] += 1.0
    assert torch.equal(out, expected)


def test_retargeting_inputs_and_ratios():
    x_s = torch.randn(2, 21, 3, generator=torch.Generator().manual_seed(3))
    lip = geo.lip_retarget_input(x_s, torch.tensor([0.2, 0.3]), torch.zeros(2))
    assert lip.shape == (2, 65) and lip[1, 63].item() == pytest.approx(0.3) and lip[1, 64].item() == 0.0
    eye = geo.eye_retarget_input(x_s, torch.tensor([[0.3, 0.35], [0.1, 0.2]]), torch.tensor([0.4, 0.5]))
    assert eye.shape == (2, 66) and eye[1, 63:].tolist() == pytest.approx([0.1, 0.2, 0.5])
    assert torch.equal(geo.apply_retarget_delta(x_s, torch.ones(2, 63)), x_s + 1)
    lmk = torch.zeros(1, 203, 2)
    lmk[0, 0], lmk[0, 12] = torch.tensor([0.0, 0.0]), torch.tensor([10.0, 0.0])
    lmk[0, 6], lmk[0, 18] = torch.tensor([5.0, -2.0]), torch.tensor([5.0, 2.0])
    lmk[0, 24], lmk[0, 36] = torch.tensor([20.0, 0.0]), torch.tensor([30.0, 0.0])
    lmk[0, 30], lmk[0, 42] = torch.tensor([25.0, -1.0]), torch.tensor([25.0, 1.0])
    lmk[0, 48], lmk[0, 66] = torch.tensor([0.0, 20.0]), torch.tensor([20.0, 20.0])
    lmk[0, 90], lmk[0, 102] = torch.tensor([10.0, 18.0]), torch.tensor([10.0, 23.0])
    assert geo.eye_open_ratios(lmk)[0].tolist() == pytest.approx([0.4, 0.2], rel=1e-5)
    assert geo.lip_open_ratio(lmk)[0].item() == pytest.approx(0.25, rel=1e-5)
