#!/usr/bin/env python
"""Build a small generic-layout sample dataset from photos that installed packages already ship.

No photo of a person is committed to the repository: the faces come from the group photo inside the insightface
package (``insightface/data/images/t1.jpg``, 6 people) and scikit-image's public-domain astronaut (Eileen
Collins, NASA). Each detected face becomes one identity:

* ``DATA/gt/<id>.jpg``: the face with a generous margin (the reference photo);
* ``DATA/<id>/*.jpg``: "angled" stand-ins made from the same photo — mirrored, in-plane rotated, rescaled and
  re-encoded copies. They are not real head-pose changes (no such data set ships in any package); they let the
  whole pipeline run end to end on real faces.
* ``DATA/angled.txt``: the list of angled images (input of ``inference.py --list-file``).

Usage: ``python scripts/make_samples.py OUT_DIR``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import cv2
import numpy as np

log = logging.getLogger("make_samples")


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


def build_samples(out_dir: Path) -> list[Path]:
    """Write the sample dataset into ``out_dir``; return the angled image paths."""
    from frontalize.faces.registry import build_detector

    detector = build_detector("retinaface_mnet", weights_root=out_dir, det_size=640, threshold=0.6)
    angled: list[Path] = []
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
    (out_dir / "angled.txt").write_text("".join(f"{p.relative_to(out_dir).as_posix()}\n" for p in angled))
    return angled


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path, help="dataset folder to create")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    angled = build_samples(args.out_dir)
    log.info("wrote %d angled images and their GT references under %s", len(angled), args.out_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
