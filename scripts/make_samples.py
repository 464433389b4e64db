#!/usr/bin/env python
"""Build a small generic-layout sample dataset from photos that installed packages already ship.

No photo of a person is committed to the repository: the faces come from the group photo inside the insightface
package (``insightface/data/images/t1.jpg``, 6 people) and scikit-image's public-domain astronaut (Eileen
Collins, NASA). Each detected face becomes one identity:

* ``DATA/gt/<id>.jpg``: the face with a generous margin (the reference photo);
* ``DATA/<id>/*.jpg``: "angled" stand-ins made from the same photo — mirrored, in-plane rotated, rescaled and
  re-encoded copies. They are not real head-pose changes (no such data set ships in any package); they let the
  whole pipeline run end to end on real faces.
* ``DATA/<id>/yaw±15.jpg``, ``yaw±30.jpg``, ``yaw±45.jpg``: SYNTHETIC posed views of the same real face at known
  head pose (pitch 0, the named yaw, roll 0, the project's convention), rendered by the geometric frontalizer
  (:mod:`frontalize.geometric`: the face's 68 landmarks, the 3D reference surface, explicit-pose target, soft
  symmetric fill) from a 512 crop of the photo. They are renders, not photographs: hidden parts are filled from the
  mirrored side, and the identity's depth is the mean shape's. ``DATA/posed_views.json`` lists each with its pose,
  the exact image positions of its 68 landmarks (``landmarks68``: the face's own 3D landmarks projected at that
  pose, far-side upper contour on the model's silhouette) and its scale (``px_per_iod``), so a landmarker and a pose
  estimator can be checked against them; ``DATA/dataset_notes.txt`` says so in plain text (reports quote it);
* ``DATA/angled.txt``: the list of every angled image (input of ``inference.py --list-file``).

Usage: ``python scripts/make_samples.py OUT_DIR [--no-posed]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

if __package__ in (None, ""):
    # Run as `python scripts/make_samples.py` from a checkout: this checkout's package, not another install.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

log = logging.getLogger("make_samples")

POSED_YAWS = (-45.0, -30.0, -15.0, 15.0, 30.0, 45.0)
"""Yaw (degrees, project convention: > 0 turns the face towards image left) of the synthetic posed views."""
NOTES = """Dataset notes (written by scripts/make_samples.py)

Faces: cut from photos that installed packages ship (insightface's t1.jpg group photo, scikit-image's public-domain
astronaut). gt/<id>.jpg is the reference photo of each identity.

Angled images per identity:
- mirror.jpg, rot-12.jpg, rot+12.jpg, small.jpg: the same photo mirrored, rotated in-plane, rescaled (stand-ins,
  not head-pose changes);
- yaw-45.jpg ... yaw+45.jpg: SYNTHETIC posed views. They are renders by the geometric frontalizer (a 3D mean-shape
  surface fitted to the face's 68 landmarks, explicit target pose pitch 0 / yaw as named / roll 0, hidden parts
  filled from the mirrored side), not photographs of a turned head. posed_views.json lists their poses.
"""


def _sample_photos() -> list[tuple[str, np.ndarray]]:
    import insightface
    from skimage import data as skdata

    group = Path(insightface.__file__).parent / "data" / "images" / "t1.jpg"
    bgr = cv2.imread(str(group), cv2.IMREAD_COLOR)
    if bgr is None:
        raise SystemExit(f"cannot read the insightface sample photo {group}")
    return [("t1", cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)), ("astronaut", np.ascontiguousarray(skdata.astronaut()))]


def _crop(image: np.ndarray, box: np.ndarray, margin: float) -> np.ndarray:
    x1, y1, x2, y2 = box.astype(float)
    side = max(x2 - x1, y2 - y1) * (1.0 + 2.0 * margin)
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    h, w = image.shape[:2]
    left, top = int(max(0, cx - side / 2)), int(max(0, cy - side / 2))
    right, bottom = int(min(w, cx + side / 2)), int(min(h, cy + side / 2))
    return image[top:bottom, left:right].copy()


def _variants(face: np.ndarray) -> dict[str, np.ndarray]:
    h, w = face.shape[:2]
    out = {"mirror": face[:, ::-1].copy()}
    for angle in (-12, 12):
        matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
        out[f"rot{angle:+d}"] = cv2.warpAffine(face, matrix, (w, h), borderMode=cv2.BORDER_REFLECT)
    out["small"] = cv2.resize(face, (max(48, w // 2), max(48, h // 2)), interpolation=cv2.INTER_AREA)
    return out


def _save(path: Path, rgb: np.ndarray, quality: int = 92) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ok = cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise SystemExit(f"cannot write {path}")


@dataclass(frozen=True)
class PosedRender:
    """The posed views of one face.

    Attributes:
        views: {yaw: 512×512 RGB view}.
        source_pose: the source face's measured pose (degrees).
        landmarks: {yaw: (68, 2) exact landmarks of the view} (``FaceFit.target_landmarks``: the face's 3D landmarks
            at that pose, far upper contour on the model's silhouette).
        scale: pixels per inter-ocular distance of the face in the views.
    """

    views: dict[float, np.ndarray]
    source_pose: dict[str, float]
    landmarks: dict[float, np.ndarray]
    scale: float


class PosedViews:
    """Renders the synthetic posed views of a face (geometric engine on a pipeline-style 512 crop)."""

    def __init__(self) -> None:
        from frontalize.faces.registry import build_landmarker68
        from frontalize.geometric import GeometricFrontalizer

        self.engine = GeometricFrontalizer(build_landmarker68())

    def render(self, image: np.ndarray, face: object) -> PosedRender:
        """The posed views of ``face`` in ``image`` (one per :data:`POSED_YAWS`)."""
        from frontalize.geometric import MeshTarget, transform_face
        from frontalize.liveportrait.crop import crop_face

        pad = 256  # reflect-pad so the crop never leaves the photo (no black wedges in the renders)
        padded = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REFLECT_101)
        shifted = face.transformed(1.0, (float(pad), float(pad)))  # type: ignore[attr-defined]
        crop = crop_face(padded, shifted.kps)
        fit = self.engine.fit(crop.image, transform_face(shifted, crop.M_o2c))
        targets = [MeshTarget("pose", pitch=0.0, yaw=yaw, roll=0.0) for yaw in POSED_YAWS]
        views = dict(zip(POSED_YAWS, self.engine.render(fit, targets)))
        return PosedRender(views, fit.source_pose, {t.yaw: fit.target_landmarks(t) for t in targets},
                           float(fit.source.scale))


def _posed_views(posed: PosedViews, image: np.ndarray, face: object, identity: str, out_dir: Path,
                 records: list[dict[str, object]]) -> list[Path]:
    from frontalize.errors import InputError

    try:
        rendered = posed.render(image, face)
    except InputError as error:  # a face whose landmarks cannot be fitted gets no posed views
        log.warning("%s: no posed views (%s)", identity, error)
        return []
    paths = []
    for yaw, view in rendered.views.items():
        path = out_dir / identity / f"yaw{yaw:+.0f}.jpg"
        _save(path, view, quality=92)
        paths.append(path)
        records.append({"path": path.relative_to(out_dir).as_posix(), "identity": identity,
                        "pose": {"pitch": 0.0, "yaw": yaw, "roll": 0.0},
                        "source_pose": {k: round(v, 2) for k, v in rendered.source_pose.items()}, "synthetic": True,
                        "landmarks68": np.round(rendered.landmarks[yaw], 2).tolist(),
                        "px_per_iod": round(rendered.scale, 2)})
    return paths


def build_samples(out_dir: Path, *, posed: bool = True) -> list[Path]:
    """Write the sample dataset into ``out_dir``; return the angled image paths."""
    from frontalize.faces.registry import build_detector

    detector = build_detector("retinaface_mnet", weights_root=out_dir, det_size=640, threshold=0.6)
    renderer = PosedViews() if posed else None
    angled: list[Path] = []
    records: list[dict[str, object]] = []
    for photo_name, image in _sample_photos():
        faces = sorted(detector.detect(image), key=lambda f: float(f.box[0]))
        for index, face in enumerate(faces):
            identity = f"{photo_name}_{index:02d}"
            _save(out_dir / "gt" / f"{identity}.jpg", _crop(image, face.box, 0.6))
            base = _crop(image, face.box, 0.8)
            for name, variant in _variants(base).items():
                path = out_dir / identity / f"{name}.jpg"
                _save(path, variant, quality=85)
                angled.append(path)
            if renderer is not None:
                angled += _posed_views(renderer, image, face, identity, out_dir, records)
    (out_dir / "angled.txt").write_text("".join(f"{p.relative_to(out_dir).as_posix()}\n" for p in angled))
    if posed:
        payload = {"convention": "degrees; pitch > 0 down, yaw > 0 towards image left, roll > 0 clockwise "
                                 "(LivePortrait's)", "renderer": "frontalize.geometric (explicit pose, symmetry on)",
                   "synthetic": True, "views": records}
        (out_dir / "posed_views.json").write_text(json.dumps(payload, indent=1) + "\n")
        (out_dir / "dataset_notes.txt").write_text(NOTES)
    return angled


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path, help="dataset folder to create")
    parser.add_argument("--no-posed", action="store_true", help="skip the synthetic posed views (no dlib needed)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    angled = build_samples(args.out_dir, posed=not args.no_posed)
    log.info("wrote %d angled images and their GT references under %s", len(angled), args.out_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
