"""Posed views of real faces at known head pose for the pose tests: faces of insightface's t1.jpg and the astronaut,
rendered by the geometric engine at an explicit target pose (project convention), as scripts/make_samples.py does.

They are synthetic renders, but their pose is known exactly (it is the renderer's target), so they pin the sign and
size of every pose source on real face texture. Writers put them into generic and BIWI-shaped trees.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import cv2
import numpy as np
from eval_photos import _sources

from frontalize.faces.headpose import rotation_from_euler

IDENTITIES = ("p0", "p5", "astro")
"""Faces used: three people whose photo is near frontal (|yaw| < 15°), so a view at ±30° is a modest re-pose."""


def _write(path: Path, rgb: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    params = [cv2.IMWRITE_JPEG_QUALITY, 92] if path.suffix == ".jpg" else []
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params):
        raise OSError(f"cannot write {path}")
    return path


@functools.lru_cache(maxsize=4)
def posed_views(yaws: tuple[float, ...], pitch: float = 0.0, side: int = 256) -> dict[str, dict[float, np.ndarray]]:
    """identity -> {yaw: side×side RGB view rendered at (pitch, yaw, 0)} (cached per argument set)."""
    from frontalize.faces.registry import build_landmarker68
    from frontalize.geometric import GeometricFrontalizer, MeshTarget, transform_face
    from frontalize.liveportrait.crop import crop_face

    engine = GeometricFrontalizer(build_landmarker68())
    views: dict[str, dict[float, np.ndarray]] = {}
    for name, photo, face in _sources():
        if name not in IDENTITIES:
            continue
        pad = 256  # reflect-pad so the crop never leaves the photo
        padded = cv2.copyMakeBorder(photo, pad, pad, pad, pad, cv2.BORDER_REFLECT_101)
        shifted = face.transformed(1.0, (float(pad), float(pad)))  # type: ignore[attr-defined]
        crop = crop_face(padded, shifted.kps)
        fit = engine.fit(crop.image, transform_face(shifted, crop.M_o2c))
        targets = [MeshTarget("pose", pitch=pitch, yaw=yaw, roll=0.0) for yaw in yaws]
        rendered = engine.render(fit, targets)
        views[name] = {yaw: cv2.resize(image, (side, side), interpolation=cv2.INTER_AREA)
                       for yaw, image in zip(yaws, rendered)}
    return views


def write_posed_generic(root: Path, yaws: tuple[float, ...] = (-30.0, 30.0)) -> tuple[Path, Path]:
    """A generic tree: per identity its posed views (``yaw+30.jpg``...), one mirrored photo crop ``mirror.jpg`` with no
    known pose, ``gt/<id>.jpg`` = the frontal render; ``posed_views.json`` (make_samples' format) and
    ``dataset_notes.txt``. The output tree holds the frontal render for every angled image.

    Returns:
        (DATA, OUT).
    """
    from eval_photos import face_crops

    data, out = root / "data", root / "out"
    views = posed_views((0.0, *yaws))
    crops = face_crops()
    entries = []
    for name, by_yaw in views.items():
        _write(data / "gt" / f"{name}.jpg", by_yaw[0.0])
        for yaw in yaws:
            rel = f"{name}/yaw{yaw:+.0f}.jpg"
            _write(data / rel, by_yaw[yaw])
            _write(out / f"{name}/yaw{yaw:+.0f}.png", by_yaw[0.0])
            entries.append({"path": rel, "identity": name, "pose": {"pitch": 0.0, "yaw": yaw, "roll": 0.0},
                            "synthetic": True})
        _write(data / name / "mirror.jpg", np.ascontiguousarray(crops[name][:, ::-1]))
        _write(out / name / "mirror.png", by_yaw[0.0])
    payload = {"convention": "project", "synthetic": True, "views": entries}
    (data / "posed_views.json").write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
    (data / "dataset_notes.txt").write_text("Test notes\n\nThe yaw*.jpg views are SYNTHETIC renders.\n",
                                            encoding="utf-8")
    return data, out


def write_pose_matrix(path: Path, pitch: float, yaw: float, roll: float) -> None:
    """A BIWI pose file whose matrix is the head rotation of the given project-convention angles."""
    matrix = rotation_from_euler(pitch, yaw, roll)
    lines = [" ".join(f"{v:.6f}" for v in row) for row in matrix]
    path.write_text("\n".join(lines) + "\n\n10.0 20.0 900.0\n", encoding="utf-8")


def write_posed_biwi(root: Path, yaws: tuple[float, ...] = (0.0, -30.0, 30.0)) -> tuple[Path, Path]:
    """A BIWI-shaped tree ``hpdb/NN/frame_NNNNN_rgb.jpg`` + pose files (one sequence per identity, one frame per yaw;
    the yaw-0 frame is each subject's GT) and an output tree mirroring ``hpdb/``.

    Returns:
        (DATA, OUT).
    """
    data, out = root / "biwi", root / "biwi_out"
    views = posed_views(tuple(sorted(set(yaws) | {0.0})))
    for seq, (name, by_yaw) in enumerate(views.items(), start=1):
        for index, yaw in enumerate(yaws, start=1):
            frame = data / "hpdb" / f"{seq:02d}" / f"frame_{index:05d}_rgb.jpg"
            _write(frame, by_yaw[yaw])
            write_pose_matrix(frame.with_name(f"frame_{index:05d}_pose.txt"), 0.0, yaw, 0.0)
            _write(out / f"{seq:02d}" / f"frame_{index:05d}_rgb.png", by_yaw[0.0])
        del name
    return data, out


def write_posed_lfw(root: Path, yaws: tuple[float, ...] = (30.0, 0.0, -30.0)) -> tuple[Path, Path]:
    """An LFW-shaped tree ``Name/Name_000k.jpg`` (k-th yaw of ``yaws``, so the frontal render is not the first
    file) and an output tree with the frontal render for each image.

    Returns:
        (DATA, OUT).
    """
    data, out = root / "lfw", root / "lfw_out"
    for name, by_yaw in posed_views(tuple(sorted(set(yaws)))).items():
        person = f"Person_{name}"
        for index, yaw in enumerate(yaws, start=1):
            _write(data / person / f"{person}_{index:04d}.jpg", by_yaw[yaw])
            _write(out / person / f"{person}_{index:04d}.png", by_yaw[0.0])
    return data, out
