"""Real-photo fixtures of the evaluation tests: faces cut from insightface's t1.jpg (6 people) and scikit-image's
astronaut, each saved as re-scaled / flipped / re-encoded copies that stand in for angled and frontalized images,
plus one image with no face. Builders write generic and BIWI-shaped trees with known outcome counts.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import insightface
import numpy as np
from skimage import data

IDENTITIES = ("p0", "p1", "p2", "p3", "p4", "p5", "astro")


def _write(path: Path, rgb: np.ndarray, quality: int = 92) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if path.suffix == ".jpg" else []
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params):
        raise OSError(f"cannot write {path}")
    return path


def _scaled(rgb: np.ndarray, factor: float) -> np.ndarray:
    size = (max(1, round(rgb.shape[1] * factor)), max(1, round(rgb.shape[0] * factor)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_CUBIC)


def _reencoded(rgb: np.ndarray, quality: int) -> np.ndarray:
    ok, buffer = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return cv2.cvtColor(cv2.imdecode(buffer, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def _crop(rgb: np.ndarray, box: np.ndarray, margin: float, side: int) -> np.ndarray:
    x1, y1, x2, y2 = box
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    half = max(x2 - x1, y2 - y1) * margin / 2
    left, top = max(0, int(cx - half)), max(0, int(cy - half))
    right, bottom = min(rgb.shape[1], int(cx + half)), min(rgb.shape[0], int(cy + half))
    crop = rgb[top:bottom, left:right]
    return _scaled(crop, side / max(crop.shape[:2]))


def _sources() -> list[tuple[str, np.ndarray, object]]:
    """(identity, photo, detected face) for the 6 people of t1.jpg (left to right) and the astronaut."""
    from frontalize.faces.registry import build_detector

    t1_path = Path(insightface.__file__).parent / "data" / "images" / "t1.jpg"
    t1 = cv2.cvtColor(cv2.imread(str(t1_path)), cv2.COLOR_BGR2RGB)
    detector = build_detector("retinaface_mnet", weights_root="unused")
    faces = sorted(detector.detect(t1), key=lambda f: float(f.box[0]))  # left to right: stable identities
    astronaut = np.ascontiguousarray(data.astronaut())
    return [*((f"p{i}", t1, face) for i, face in enumerate(faces[:6])),
            ("astro", astronaut, detector.detect(astronaut)[0])]


def face_crops(side: int = 180) -> dict[str, np.ndarray]:
    """Identity -> RGB face crop (face about half the crop) for the 7 people of the fixtures."""
    return {name: _crop(photo, face.box, 2.2, side) for name, photo, face in _sources()}  # type: ignore[attr-defined]


def recoverable_tight_crop() -> tuple[str, np.ndarray] | None:
    """A face cropped inside its keypoints that the plain detector pass misses and the padded retry finds.

    Generated faces are often cropped this tightly; the evaluator's padding/retry option exists for them.
    """
    from frontalize.faces.align import detect_with_retry
    from frontalize.faces.registry import build_detector

    detector = build_detector("retinaface_mnet", weights_root="unused")
    for name, photo, face in _sources():
        kps = face.kps  # type: ignore[attr-defined]
        shrink = 0.1 * float(np.linalg.norm(kps[1] - kps[0]))
        x1, y1 = np.floor(kps.min(axis=0) + shrink).astype(int).clip(0)
        x2, y2 = np.ceil(kps.max(axis=0) - shrink).astype(int)
        crop = np.ascontiguousarray(photo[y1:y2, x1:x2])
        if not detector.detect(crop) and detect_with_retry(detector, crop)[0]:
            return name, crop
    return None


def no_face_image(side: int = 160) -> np.ndarray:
    """A smooth colour gradient with mild noise: nothing a face detector should fire on."""
    rng = np.random.default_rng(0)
    ramp = np.linspace(30, 220, side, dtype=np.float32)
    image = np.stack([np.tile(ramp, (side, 1)), np.tile(ramp[:, None], (1, side)), np.full((side, side), 120.0)], -1)
    return np.clip(image + rng.normal(0, 4, image.shape), 0, 255).astype(np.uint8)


def frontal_stand_in(rgb: np.ndarray) -> np.ndarray:
    """A 'frontalized' copy: up-scaled by 1.25 and re-encoded as JPEG quality 80."""
    return _reencoded(_scaled(rgb, 1.25), 80)


def write_generic(root: Path, crops: dict[str, np.ndarray],
                  tight: tuple[str, np.ndarray] | None = None) -> tuple[Path, Path, dict[str, int]]:
    """DATA (ID/a.jpg rescaled, ID/b.png flipped, gt/ID.png; p0/c.jpg has no face) and one output tree OUT.

    OUT mirrors the inputs as PNG; p0/c is no face in both arms, p1/b's output has no face, p2/b has no output
    and a manifest row with status no_face (an inference failure). With ``tight = (ID, crop)`` the output of
    ID/a is that tightly cropped face (found only by the padded detection retry).

    Returns:
        (DATA, OUT, expected counts of the single arm under a working detector).
    """
    data_dir, out_dir = root / "data", root / "out"
    blank = no_face_image()
    rows = []
    for name, crop in crops.items():
        _write(data_dir / "gt" / f"{name}.png", crop)
        angled = {"a.jpg": _reencoded(_scaled(crop, 0.8), 75), "b.png": np.ascontiguousarray(crop[:, ::-1])}
        for file, image in angled.items():
            _write(data_dir / name / file, image)
            rel = f"{name}/{file}"
            if rel == "p2/b.png":
                rows.append({"input": rel, "status": "no_face", "reason": "no face detected"})
                continue
            output = blank if rel == "p1/b.png" else frontal_stand_in(image)
            if tight is not None and rel == f"{tight[0]}/a.jpg":
                output = tight[1]
            _write(out_dir / name / (Path(file).stem + ".png"), output)
            rows.append({"input": rel, "status": "ok", "reason": None})
    _write(data_dir / "p0" / "c.jpg", blank)
    _write(out_dir / "p0" / "c.png", blank)
    rows.append({"input": "p0/c.jpg", "status": "ok", "reason": None})
    (out_dir / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    expected = {"records": 2 * len(crops) + 1, "no_face_angle": 1, "no_face_frontal": 2, "frontal_failed": 1,
                "frontal_missing": 0, "paired": 2 * len(crops) - 2, "angle_only": 2, "frontal_only": 0, "neither": 1,
                "found_by_retry": int(tight is not None)}
    return data_dir, out_dir, expected


def rotation_matrix(pitch: float, yaw: float, roll: float) -> np.ndarray:
    """Rotation matrix as written in a BIWI pose file for the given FSA-Net pitch/yaw/roll (degrees).

    With the ZYX product R = Rz(−roll)·Ry(−yaw)·Rx(pitch), the FSA-Net formulas applied to R give the angles
    back; the file holds Rᵀ (FSA-Net transposes what it reads).
    """
    p, y, r = (math.radians(v) for v in (pitch, yaw, roll))
    rx = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    rz = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    rotation = rz.T @ ry.T @ rx
    return rotation.T


def write_pose_file(path: Path, pitch: float, yaw: float, roll: float) -> None:
    """A BIWI ``frame_NNNNN_pose.txt``: 3 matrix rows, blank line, head centre (mm)."""
    matrix = rotation_matrix(pitch, yaw, roll)
    lines = [" ".join(f"{v:.6f}" for v in row) + " " for row in matrix]
    path.write_text("\n".join(lines) + "\n\n12.3 45.6 789.0 \n", encoding="utf-8")


BIWI_SEQUENCES = {"01": "p0", "02": "p1", "03": "p2", "15": "p2", "07": "astro"}
BIWI_POSES = ((2.0, 3.0, 1.0), (-10.0, 25.0, 0.0), (5.0, -40.0, 2.0))


def write_biwi(root: Path, crops: dict[str, np.ndarray], *, ext: str = "png",
               hpdb: bool = True) -> tuple[Path, Path]:
    """A BIWI-shaped tree ROOT/hpdb/NN/frame_NNNNN_rgb.<ext> + pose files and an output tree mirroring hpdb/.

    ``ext="jpg", hpdb=False`` gives the common re-distributed copies: ``NN/frame_NNNNN_rgb.jpg`` directly under the
    data folder. The output tree is always PNG (as inference writes it).

    Sequence 15 shows the same person as 03 (subject 03). Frame 00001 of each sequence is near frontal except in
    sequence 15 (so subject 03's GT is frame 00001 of sequence 03). The output tree is made from ``hpdb/`` (no
    ``hpdb`` level), as if inference ran on that folder.
    """
    data_dir, out_dir = root / "biwi", root / "biwi_out"
    frames_dir = data_dir / "hpdb" if hpdb else data_dir
    for seq, person in BIWI_SEQUENCES.items():
        crop = crops[person]
        poses = BIWI_POSES if seq != "15" else tuple((p, y + 12.0, r) for p, y, r in BIWI_POSES)
        copies = (crop, _reencoded(_scaled(crop, 0.8), 75), np.ascontiguousarray(crop[:, ::-1]))
        for index, (pose, image) in enumerate(zip(poses, copies), start=1):
            frame = frames_dir / seq / f"frame_{index:05d}_rgb.{ext}"
            _write(frame, image)
            write_pose_file(frame.with_name(f"frame_{index:05d}_pose.txt"), *pose)
            _write(out_dir / seq / f"frame_{index:05d}_rgb.png", frontal_stand_in(image))
    return data_dir, out_dir
