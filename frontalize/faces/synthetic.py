"""Tiny deterministic stand-ins for the face models, with the REAL input/output signatures (test weights).

Used by the tests and by ``scripts/make_test_weights.py``. Outputs are meaningless but geometrically sensible:

* :func:`write_scrfd_like` — InsightFace SCRFD signature (input ``input.1`` 1×3×H×W, 9 outputs: scores, boxes,
  keypoints for strides 8/16/32 with 2 anchors, as ``insightface.model_zoo.scrfd.SCRFD`` decodes them). The graph
  finds the non-padding extent of the letterboxed input and "detects" ONE face centred in it (box 0.4×0.5 of the
  shorter side) with 5 keypoints taken from the 106-point template below. A flat image (content std ≈ 0) gives no
  face, so "no face" can be tested too.
* :func:`write_arcface_like` — ArcFace signature (``input.1`` N×3×112×112 → N×dim): conv + ReLU + pool + linear.
* :func:`write_landmark106_like` / :func:`write_1k3d68_like` — InsightFace 2d106det (``data`` N×3×192×192 → 212) and
  1k3d68 (→ 3309) signatures: a fixed plausible layout plus a small image-dependent perturbation.
* :func:`write_lp_landmark_like` — LivePortrait ``landmark.onnx`` (``input`` 1×3×224×224, 3 outputs; the third is
  1×406 = 203 points in [0, 1] crop units; the first two are 1×1 and 1×2 placeholders).
* :func:`write_retinaface_r50_state_dict` — facexlib RetinaFace-R50 state dict with deterministic random values.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

logger = logging.getLogger(__name__)

OPSET = 18
IR_VERSION = 8  # readable by every onnxruntime we support
PathLike = str | os.PathLike[str]

# Face layout in the 2d106det crop frame: x, y in [-1, 1] over the 192 crop, which spans 1.5 × the box's longer
# side around the box centre, so the box edge sits at ±1/1.5. Index groups follow InsightFace's 106-point markup:
# 0 chin, 1–16 image-left contour (chin → temple), 17–32 image-right contour, 33–42 left eye, 43–51 left brow,
# 52–71 mouth (52 / 61 corners), 72–86 nose, 87–96 right eye, 97–105 right brow. LivePortrait's crop reads eye
# centres {33,35,40,39} / {87,89,94,93} and mouth corners 52, 61.
_FACE_CENTRE = (0.0, 0.05)
_FACE_HALF = (0.5, 0.6)
_EYE_CENTRES = ((-0.2, -0.1), (0.2, -0.1))
_EYE_HALF = (0.09, 0.035)
_MOUTH_CENTRE, _MOUTH_HALF_WIDTH = (0.0, 0.3), 0.17
_NOSE_TIP = (0.0, 0.12)


def _arc(centre: Sequence[float], half: Sequence[float], degrees: np.ndarray) -> np.ndarray:
    theta = np.deg2rad(degrees)
    return np.stack([centre[0] + half[0] * np.cos(theta), centre[1] + half[1] * np.sin(theta)], axis=1)


def _eye(centre: Sequence[float]) -> np.ndarray:
    """10 eye points: left corner, 3 top, upper/lower right, right corner, bottom mid, bottom left, pupil."""
    ring = _arc(centre, _EYE_HALF, np.array([180, 225, 270, 315, 340, 20, 0, 90, 135]))  # y grows downwards
    return np.vstack([ring, centre])


def template_106() -> np.ndarray:
    """(106, 2) float32 plausible InsightFace 2d106 layout in the [-1, 1] crop frame (see module comment)."""
    steps = np.arange(1, 17) * (100.0 / 16)
    contour = np.vstack([_arc(_FACE_CENTRE, _FACE_HALF, np.array([90.0])),
                         _arc(_FACE_CENTRE, _FACE_HALF, 90 + steps),
                         _arc(_FACE_CENTRE, _FACE_HALF, 90 - steps)])
    brows = [np.column_stack([np.linspace(c[0] - 0.13, c[0] + 0.13, 9),
                              c[1] - 0.14 - 0.03 * np.sin(np.linspace(0, np.pi, 9))]) for c in _EYE_CENTRES]
    mx, my = _MOUTH_CENTRE
    half = _MOUTH_HALF_WIDTH
    upper = np.column_stack([np.linspace(mx - half, mx + half, 10)[1:-1] * 0.95, np.full(8, my - 0.04)])
    lower = np.column_stack([np.linspace(mx + half, mx - half, 7)[1:-1] * 0.9, np.full(5, my + 0.05)])
    inner = np.column_stack([np.linspace(mx - 0.08, mx + 0.08, 5), np.full(5, my + 0.005)])
    mouth = np.vstack([[mx - half, my], upper, [mx + half, my], lower, inner])
    bridge = np.column_stack([np.zeros(6), np.linspace(-0.1, _NOSE_TIP[1] - 0.02, 6)])
    base = np.column_stack([np.linspace(-0.1, 0.1, 9), _NOSE_TIP[1] + 0.02 * np.cos(np.linspace(-1, 1, 9))])
    points = np.vstack([contour, _eye(_EYE_CENTRES[0]), brows[0], mouth, bridge, base,
                        _eye(_EYE_CENTRES[1]), brows[1]])
    return points.astype(np.float32)


def five_points_from_106(points: np.ndarray) -> np.ndarray:
    """(5, 2) InsightFace-order keypoints derived from a 106 layout (eye centres, nose tip, mouth corners)."""
    left_eye = points[[33, 35, 40, 39]].mean(axis=0)
    right_eye = points[[87, 89, 94, 93]].mean(axis=0)
    nose = points[80]  # middle of the nostril base row
    return np.stack([left_eye, right_eye, nose, points[52], points[61]]).astype(np.float32)


def template_lp_203() -> np.ndarray:
    """(203, 2) float32 points in [0, 1] of LivePortrait's 224 landmark crop.

    Eye rings of 24 points at 0–23 and 24–47 (corners 0/12 and 24/36, lids 6/18 and 30/42), outer lip ring of 36
    at 48–83 (corners 48/66), inner lip ring of 24 at 84–107 (lids 90/102), face contour 108–202 — the indices
    LivePortrait's eye/lip open ratios read.
    """
    def ring(centre: tuple[float, float], half: tuple[float, float], count: int) -> np.ndarray:
        return _arc(centre, half, 180 + np.arange(count) * (360.0 / count))  # corner first, upper lid next

    parts = [ring((0.38, 0.42), (0.06, 0.022), 24), ring((0.62, 0.42), (0.06, 0.022), 24),
             ring((0.5, 0.66), (0.11, 0.035), 36), ring((0.5, 0.66), (0.08, 0.01), 24),
             _arc((0.5, 0.5), (0.3, 0.36), np.linspace(0, 360, 95, endpoint=False))]
    return np.vstack(parts).astype(np.float32)


# ----------------------------------------------------------------------------------------------- graph helpers


class _Graph:
    """Minimal ONNX graph builder: constants, nodes with unique names, save."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._count = 0

    def const(self, value: object, dtype: type = np.float32) -> str:
        name = f"const_{len(self.inits)}"
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(self, op_type: str, *inputs: str, out: str | None = None, **attrs: Any) -> str:
        self._count += 1
        output = out or f"t{self._count}"
        self.nodes.append(helper.make_node(op_type, list(inputs), [output], name=f"n{self._count}_{op_type.lower()}",
                                           **attrs))
        return output

    def save(self, path: PathLike, inputs: list[onnx.ValueInfoProto], outputs: list[onnx.ValueInfoProto]) -> Path:
        graph = helper.make_graph(self.nodes, "frontalize_synthetic", inputs, outputs, self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                  producer_name="frontalize.faces.synthetic")
        model.ir_version = IR_VERSION
        onnx.checker.check_model(model)
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        onnx.save(model, str(target))
        return target


def _value(name: str, shape: Sequence[int | str]) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))


def _pool_linear(g: _Graph, x: str, pool: int, features: int, weight: np.ndarray, bias: np.ndarray) -> str:
    """AveragePool(pool) → Flatten → Gemm(weight (features, out), bias) on input ``x``."""
    pooled = g.op("AveragePool", x, kernel_shape=[pool, pool], strides=[pool, pool])
    flat = g.op("Flatten", pooled, axis=1)
    if weight.shape[0] != features:
        raise ValueError(f"weight rows {weight.shape[0]} != pooled features {features}")
    return g.op("Gemm", flat, g.const(weight), g.const(bias))


# ------------------------------------------------------------------------------------------------------ writers


def write_arcface_like(path: PathLike, seed: int = 0, dim: int = 512, input_size: int = 112) -> Path:
    """ArcFace-signature recognizer: ``input.1`` N×3×S×S (S = input_size) → ``embedding`` N×dim.

    Conv(3→16, 8×8, stride 8) → ReLU → AveragePool 2 → Flatten → Gemm: deterministic, different images give
    different vectors and nearby images nearby vectors.
    """
    if input_size < 112 or input_size % 16:
        raise ValueError("input_size must be ≥ 112 and divisible by 16 (InsightFace routes it to ArcFaceONNX)")
    rng = np.random.default_rng(seed)
    g = _Graph()
    conv_w = rng.normal(0.0, 0.1, size=(16, 3, 8, 8))
    conv = g.op("Conv", "input.1", g.const(conv_w), g.const(rng.normal(0, 0.1, 16)), strides=[8, 8])
    act = g.op("Relu", conv)
    side = input_size // 16
    weight = rng.normal(0.0, 1.0 / np.sqrt(16 * side * side), size=(16 * side * side, dim))
    _pool_linear_out = _pool_linear(g, act, 2, 16 * side * side, weight, rng.normal(0, 0.01, dim))
    g.op("Identity", _pool_linear_out, out="embedding")
    return g.save(path, [_value("input.1", ["N", 3, input_size, input_size])], [_value("embedding", ["N", dim])])


def write_landmark106_like(path: PathLike, seed: int = 0) -> Path:
    """2d106det-signature landmarker: ``data`` N×3×192×192 → ``fc1`` N×212 (x, y pairs in [-1, 1])."""
    rng = np.random.default_rng(seed)
    g = _Graph()
    base = template_106().reshape(-1) + rng.normal(0.0, 0.003, 212)
    weight = rng.normal(0.0, 0.002, size=(48, 212))
    out = _pool_linear(g, "data", 48, 48, weight, base)
    g.op("Identity", out, out="fc1")
    return g.save(path, [_value("data", ["N", 3, 192, 192])], [_value("fc1", ["N", 212])])


def write_1k3d68_like(path: PathLike, seed: int = 0, yaw_degrees: float = 0.0) -> Path:
    """1k3d68-signature landmarker: ``data`` N×3×192×192 → ``fc1`` N×3309 (1103 x, y, z rows; the last 68 used).

    The 68 points are InsightFace's own mean shape rotated by ``yaw_degrees`` (so the pose insightface estimates is
    ≈ (0, yaw, 0)) plus a small image-dependent perturbation.
    """
    from insightface.data import get_object

    mean = np.asarray(get_object("meanshape_68.pkl"), dtype=np.float64)
    angle = np.deg2rad(yaw_degrees)
    rotation = np.array([[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]])
    shape68 = 0.9 * mean @ rotation.T
    rng = np.random.default_rng(seed)
    base = np.concatenate([np.zeros((1103 - 68) * 3), shape68.reshape(-1)])
    weight = rng.normal(0.0, 0.001, size=(48, 3309))
    g = _Graph()
    out = _pool_linear(g, "data", 48, 48, weight, base)
    g.op("Identity", out, out="fc1")
    return g.save(path, [_value("data", ["N", 3, 192, 192])], [_value("fc1", ["N", 3309])])


def write_lp_landmark_like(path: PathLike, seed: int = 0) -> Path:
    """LivePortrait ``landmark.onnx`` signature: ``input`` 1×3×224×224 (RGB in [0, 1]) → 3 outputs; the third,
    1×406, is the 203-point layout of :func:`template_lp_203` (x, y in [0, 1]) plus a small perturbation."""
    rng = np.random.default_rng(seed)
    g = _Graph()
    pooled = g.op("Flatten", g.op("AveragePool", "input", kernel_shape=[56, 56], strides=[56, 56]), axis=1)
    heads = {"landmarks_coarse": 1, "landmarks_aux": 2}
    for name, width in heads.items():
        g.op("Gemm", pooled, g.const(rng.normal(0, 0.01, (48, width))), g.const(np.zeros(width)), out=name)
    base = template_lp_203().reshape(-1) + rng.normal(0.0, 0.002, 406)
    g.op("Gemm", pooled, g.const(rng.normal(0.0, 0.002, (48, 406))), g.const(base), out="landmarks")
    outputs = [_value("landmarks_coarse", [1, 1]), _value("landmarks_aux", [1, 2]), _value("landmarks", [1, 406])]
    return g.save(path, [_value("input", [1, 3, 224, 224])], outputs)


def _content_extent(g: _Graph, x: str) -> tuple[str, str, str, str]:
    """Right/bottom extent (pixels) of the non-padding content of a letterboxed 1×3×H×W input, and H, W (float)."""
    shape = g.op("Shape", x)
    height = g.op("Cast", g.op("Gather", shape, g.const(2, np.int64), axis=0), to=TensorProto.FLOAT)
    width = g.op("Cast", g.op("Gather", shape, g.const(3, np.int64), axis=0), to=TensorProto.FLOAT)
    # zero padding normalises to (0 - 127.5) / 128 ≈ -0.996; any channel above -0.98 counts as content
    content = g.op("Cast", g.op("Greater", g.op("ReduceMax", x, g.const([1], np.int64), keepdims=0),
                                g.const(-0.98)), to=TensorProto.FLOAT)  # 1×H×W
    one = g.const(1.0)
    columns = g.op("Range", one, g.op("Add", width, one), one)  # 1..W
    rows = g.op("Range", one, g.op("Add", height, one), one)  # 1..H
    col_any = g.op("ReduceMax", content, g.const([1], np.int64), keepdims=0)  # 1×W
    row_any = g.op("ReduceMax", content, g.const([2], np.int64), keepdims=0)  # 1×H
    right = g.op("ReduceMax", g.op("Mul", col_any, columns), keepdims=0)
    bottom = g.op("ReduceMax", g.op("Mul", row_any, rows), keepdims=0)
    return right, bottom, height, width


def _content_std(g: _Graph, x: str, right: str, bottom: str, height: str, width: str) -> str:
    """Pixel standard deviation of ``x`` inside the content rectangle [0, right) × [0, bottom)."""
    zero, one, half = g.const(0.0), g.const(1.0), g.const(0.5)
    cols = g.op("Cast", g.op("Less", g.op("Range", zero, width, one), g.op("Sub", right, half)), to=TensorProto.FLOAT)
    rows = g.op("Cast", g.op("Less", g.op("Range", zero, height, one), g.op("Sub", bottom, half)),
                to=TensorProto.FLOAT)
    rect = g.op("Mul", g.op("Unsqueeze", rows, g.const([1], np.int64)), g.op("Unsqueeze", cols, g.const([0], np.int64)))
    count = g.op("Add", g.op("Mul", g.op("ReduceSum", rect, keepdims=0), g.const(3.0)), one)
    mean = g.op("Div", g.op("ReduceSum", g.op("Mul", x, rect), keepdims=0), count)
    centred = g.op("Mul", g.op("Sub", x, mean), rect)
    return g.op("Sqrt", g.op("Div", g.op("ReduceSum", g.op("Mul", centred, centred), keepdims=0), count))


def _anchor_centres(g: _Graph, height: str, width: str, stride: int) -> tuple[str, str]:
    """(2·h·w, 1) anchor x and y for one stride, in SCRFD's order (row-major, 2 anchors per location)."""
    zero, one, step = g.const(0.0), g.const(1.0), g.const(float(stride))
    rows = g.op("Floor", g.op("Div", height, step))
    cols = g.op("Floor", g.op("Div", width, step))
    ys = g.op("Unsqueeze", g.op("Mul", g.op("Range", zero, rows, one), step), g.const([1], np.int64))  # h×1
    xs = g.op("Unsqueeze", g.op("Mul", g.op("Range", zero, cols, one), step), g.const([0], np.int64))  # 1×w
    grid_x = g.op("Add", g.op("Mul", ys, zero), xs)  # h×w
    grid_y = g.op("Add", ys, g.op("Mul", xs, zero))
    column = g.const([-1, 1], np.int64)
    result = []
    for grid in (grid_x, grid_y):
        flat = g.op("Reshape", grid, column)
        result.append(g.op("Reshape", g.op("Concat", flat, flat, axis=1), column))
    return result[0], result[1]


@dataclass(frozen=True)
class _SyntheticFace:
    """Graph tensors describing the one synthetic face: peak score, centre, box corners, 5 keypoints."""

    peak: str
    centre: tuple[str, str]
    two_sigma2: str
    corners: tuple[tuple[str, str], tuple[str, str]]
    keypoints: list[tuple[str, str]]


def _synthetic_face(g: _Graph, right: str, bottom: str, std: str, jitter: np.ndarray) -> _SyntheticFace:
    """Face centred in the content (box 0.8 × 1.0 of face_h = half the shorter side), keypoints from the 106
    template (one crop-frame unit = 0.75 face_h); the score fades with the content's flatness."""
    peak = g.op("Mul", g.const(0.97), g.op("Sigmoid", g.op("Mul", g.op("Sub", std, g.const(0.03)), g.const(300.0))))
    centre_x = g.op("Mul", right, g.const(0.5 + jitter[0]))
    centre_y = g.op("Mul", bottom, g.const(0.5 + jitter[1]))
    face_h = g.op("Mul", g.op("Min", right, bottom), g.const(0.5 + jitter[2]))
    sigma = g.op("Add", g.op("Mul", face_h, g.const(0.25)), g.const(1.0))  # score fall-off, pixels

    def point(dx: float, dy: float) -> tuple[str, str]:
        return (g.op("Add", centre_x, g.op("Mul", face_h, g.const(dx))),
                g.op("Add", centre_y, g.op("Mul", face_h, g.const(dy))))

    offsets = [tuple(p * 0.75) for p in five_points_from_106(template_106())]
    return _SyntheticFace(peak=peak, centre=(centre_x, centre_y),
                          two_sigma2=g.op("Mul", g.op("Mul", sigma, sigma), g.const(2.0)),
                          corners=(point(-0.4, -0.5), point(0.4, 0.5)), keypoints=[point(*o) for o in offsets])


def _stride_heads(g: _Graph, face: _SyntheticFace, height: str, width: str, stride: int) -> tuple[str, str, str]:
    """(scores N×1, box distances N×4, keypoint offsets N×10) for one stride, divided by the stride as SCRFD
    multiplies them back; every anchor decodes to the same box, so NMS keeps exactly one."""
    ax, ay = _anchor_centres(g, height, width, stride)
    inv = g.const(1.0 / stride)
    (x1, y1), (x2, y2) = face.corners
    dist2 = g.op("Add", g.op("Pow", g.op("Sub", ax, face.centre[0]), g.const(2.0)),
                 g.op("Pow", g.op("Sub", ay, face.centre[1]), g.const(2.0)))
    scores = g.op("Mul", face.peak, g.op("Exp", g.op("Neg", g.op("Div", dist2, face.two_sigma2))))
    sides = [g.op("Sub", ax, x1), g.op("Sub", ay, y1), g.op("Sub", x2, ax), g.op("Sub", y2, ay)]
    deltas = [g.op("Sub", coord, anchor) for kx, ky in face.keypoints for coord, anchor in ((kx, ax), (ky, ay))]
    return (scores, g.op("Mul", g.op("Concat", *sides, axis=1), inv),
            g.op("Mul", g.op("Concat", *deltas, axis=1), inv))


def write_scrfd_like(path: PathLike, seed: int = 0, batched: bool = False) -> Path:
    """SCRFD-signature detector that finds one face centred in the letterboxed content (see module docstring).

    Outputs in insightface's order: ``score_8/16/32`` (N×1), ``bbox_8/16/32`` (N×4), ``kps_8/16/32`` (N×10),
    N = (H/stride)·(W/stride)·2.

    Args:
        path: output ``.onnx`` path.
        seed: jitters the face position/size by a few percent (and changes the file bytes).
        batched: outputs ``1×N×C`` (True) instead of ``N×C`` (False, like ``det_10g.onnx``).

    Returns:
        The written path.
    """
    g = _Graph()
    right, bottom, height, width = _content_extent(g, "input.1")
    std = _content_std(g, "input.1", right, bottom, height, width)
    face = _synthetic_face(g, right, bottom, std, np.random.default_rng(seed).uniform(-0.02, 0.02, 3))
    heads = [_stride_heads(g, face, height, width, stride) for stride in (8, 16, 32)]
    outputs = []
    for component, (prefix, channels) in enumerate((("score", 1), ("bbox", 4), ("kps", 10))):
        for stride, tensors in zip((8, 16, 32), heads):
            name = f"{prefix}_{stride}"
            if batched:
                g.op("Unsqueeze", tensors[component], g.const([0], np.int64), out=name)
                outputs.append(_value(name, [1, f"n{stride}", channels]))
            else:
                g.op("Identity", tensors[component], out=name)
                outputs.append(_value(name, [f"n{stride}", channels]))
    return g.save(path, [_value("input.1", [1, 3, "height", "width"])], outputs)


_R50_HEADS = ("ClassHead", "BboxHead", "LandmarkHead")


def write_retinaface_r50_state_dict(path: PathLike, seed: int = 0) -> Path:
    """facexlib RetinaFace-ResNet50 state dict with deterministic random values, saved with ``torch.save``.

    Weights ~ N(0, 2/fan_in); BatchNorm weight 1, bias/mean small, var ≈ 1; biases small. The classification
    head's bias favours "background" so a random network yields a handful of detections, not thousands.
    """
    import torch

    from frontalize.faces.retinaface_r50 import build_facexlib_r50

    template = build_facexlib_r50("cpu").state_dict()
    rng = np.random.default_rng(seed)
    state = {}
    for key, tensor in template.items():
        shape = tuple(tensor.shape)
        if tensor.dtype == torch.int64:
            values = np.zeros(shape, dtype=np.int64)
        elif key.endswith("running_var"):
            values = rng.uniform(0.9, 1.1, shape)
        elif tensor.dim() > 1:  # variance-preserving without the ReLU gain, so 50 layers stay finite
            gain = 0.05 if key.split(".")[0] in _R50_HEADS else 1.0
            values = rng.normal(0.0, gain / np.sqrt(int(np.prod(shape[1:]))), shape)
        elif key.endswith("weight"):
            values = np.ones(shape)
        else:
            values = rng.normal(0.0, 0.01, shape)
        if key.startswith("ClassHead") and key.endswith("bias"):
            values = np.tile([3.0, -3.0], shape[0] // 2)
        state[key] = torch.from_numpy(np.array(values, dtype=tensor.numpy().dtype))  # keeps 0-d shapes
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, target)
    return target

