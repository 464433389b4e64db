"""Finish step: paste-back → post-processing stages per output tree → encode → atomic write → manifest row.

Output layout (all paths relative to the output folder, POSIX separators)::

    [<variant>/][crop/|full/]<input path without extension>[_face<i>].<png|jpg>

* ``<variant>/`` only when ``variants`` is configured (one tree per variant, e.g. ``base/``, ``gfpgan/``);
* ``crop/`` and ``full/`` only when ``output.kind`` is ``both``;
* ``_face<i>`` only for the 2nd, 3rd, … face of an input with ``detection.face_choice: all`` (the largest
  face keeps the plain name, so the tree mirrors the input tree one-to-one).

With the identity guard's ``guard.dump``, every candidate crop also goes to
``_guard/<input path without extension>[_face<i>]/<candidate name>.<png|jpg>`` (row key ``guard_dumps``).

Files are written atomically and the manifest row is produced only after every file of the input exists.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from frontalize.errors import StageError
from frontalize.io.images import ImageFormat, write_image
from frontalize.liveportrait.crop import invert_transform, transform_points
from frontalize.liveportrait.pasteback import paste_back
from frontalize.pipeline.records import Rendered, RenderedFace
from frontalize.pipeline.steps import describe_error, timed
from frontalize.stages.base import Stage, StageContext

logger = logging.getLogger(__name__)

DEFAULT_TREE_KEY = "default"
"""Key of the single output tree in a row's ``outputs`` when no ``variants`` are configured."""

CANDIDATE_DIR = "_guard"
"""Folder (under the output folder) of the identity guard's dumped candidates (``guard.dump``)."""


@dataclass(frozen=True)
class OutputLayout:
    """Where the outputs of an input go (see module docstring).

    Attributes:
        out_dir: output folder.
        trees: ``(variant name, stage names)`` per output tree; name ``""`` = directly under ``out_dir``.
        kinds: ``("crop",)``, ``("full",)`` or ``("crop", "full")``.
        fmt: image format.
    """

    out_dir: Path
    trees: tuple[tuple[str, tuple[str, ...]], ...]
    kinds: tuple[str, ...]
    fmt: ImageFormat

    def relpath(self, output_stem: str, tree: str, kind: str, face_index: int = 0) -> str:
        """Relative POSIX path of one output file."""
        parts = [tree] if tree else []
        if len(self.kinds) > 1:
            parts.append(kind)
        suffix = f"_face{face_index}" if face_index else ""
        parts.append(f"{output_stem}{suffix}.{self.fmt}")
        return "/".join(parts)

    def candidate_relpath(self, output_stem: str, name: str, face_index: int = 0) -> str:
        """Relative POSIX path of one dumped guard candidate: ``_guard/<stem>[_face<i>]/<name>.<fmt>``."""
        suffix = f"_face{face_index}" if face_index else ""
        return f"{CANDIDATE_DIR}/{output_stem}{suffix}/{name}.{self.fmt}"

    def face_paths(self, output_stem: str, face_index: int = 0) -> list[Path]:
        """Every file one face produces (all trees × kinds)."""
        return [self.out_dir / self.relpath(output_stem, tree, kind, face_index)
                for tree, _ in self.trees for kind in self.kinds]


def crop_face_box(face_box: np.ndarray, crop_to_source: np.ndarray) -> np.ndarray:
    """Axis-aligned box (x1, y1, x2, y2) of a source-image face box after mapping it into the crop."""
    x1, y1, x2, y2 = (float(v) for v in face_box)
    corners = np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]])
    mapped = transform_points(corners, invert_transform(crop_to_source))
    return np.concatenate([mapped.min(axis=0), mapped.max(axis=0)]).astype(np.float32)


def pose_record(pose: Mapping[str, float] | None) -> dict[str, float] | None:
    """Manifest form of a pose (rounded degrees) or None."""
    if pose is None:
        return None
    return {axis: round(float(pose[axis]), 3) for axis in ("pitch", "yaw", "roll")}


class FinishStep:
    """Turn a :class:`Rendered` input into files and its manifest row."""

    def __init__(
        self,
        layout: OutputLayout,
        stages: Mapping[str, Stage],
        *,
        config_hash: str,
        jpeg_quality: int = 95,
    ) -> None:
        """Args:
        layout: output layout (trees, kinds, format).
        stages: built stages by name (every stage some tree uses).
        config_hash: written into each row (resume compares it).
        jpeg_quality: JPEG quality for ``jpg`` outputs.
        """
        self.layout = layout
        self.stages = dict(stages)
        self.config_hash = config_hash
        self.jpeg_quality = jpeg_quality

    def __call__(self, rendered: Rendered) -> dict[str, Any]:
        """Write the outputs of one input and return its manifest row (never raises for a bad input)."""
        status, reason = rendered.status, rendered.reason
        written: list[dict[str, Any]] = []
        timings = rendered.timings
        if status == "ok":
            try:
                written = [self._finish_face(rendered, face, timings) for face in rendered.faces]
            except StageError as exc:
                status, reason = exc.status, str(exc)
            except OSError as exc:
                status, reason = "write_error", describe_error(exc)
            except Exception as exc:  # a per-input boundary: report, keep the batch going
                logger.debug("finish failed on %s", rendered.prepared.item.rel, exc_info=True)
                status, reason = "internal_error", describe_error(exc)
        return self._row(rendered, status, reason, written if status == "ok" else [], timings)

    def _finish_face(self, rendered: Rendered, face: RenderedFace, timings: dict[str, float]) -> dict[str, Any]:
        prepared = rendered.prepared
        bases: dict[str, tuple[np.ndarray, StageContext]] = {}
        if "crop" in self.layout.kinds:
            context = StageContext(input_id=prepared.item.rel, source_rgb=face.face.crop,
                                   face_box=crop_face_box(face.face.box, face.face.crop_to_source))
            bases["crop"] = (face.image, context)
        if "full" in self.layout.kinds:
            if prepared.source is None:
                raise RuntimeError("full-image output requested but the source image was not kept")
            with timed(timings, "paste_back"):
                full = paste_back(face.image, face.face.crop_to_source, prepared.source)
            bases["full"] = (full, StageContext(input_id=prepared.item.rel, source_rgb=prepared.source,
                                                face_box=face.face.box))
        outputs: dict[str, dict[str, str]] = {}
        for kind, (image, context) in bases.items():
            cache: dict[tuple[str, ...], np.ndarray] = {(): image}
            for tree, stage_names in self.layout.trees:
                result = self._apply(cache, stage_names, context, timings)
                rel = self.layout.relpath(prepared.item.output_stem, tree, kind, face.face.index)
                with timed(timings, "encode_write"):
                    write_image(self.layout.out_dir / rel, result, self.layout.fmt, jpeg_quality=self.jpeg_quality)
                outputs.setdefault(tree or DEFAULT_TREE_KEY, {})[kind] = rel
        dumps = self._write_candidates(rendered, face, timings)
        return {
            "face_index": face.face.index,
            "box": [round(float(v), 2) for v in face.face.box],
            "score": round(face.face.score, 4),
            "landmarks": face.face.landmark_kind,
            "source_pose": pose_record(face.source_pose),
            "output_pose": pose_record(face.output_pose),
            "pose_source": face.pose_source,
            "roll_offset": round(float(face.face.roll_offset), 3),
            "outputs": outputs,
            **face.extra,
            **({"guard_dumps": dumps} if dumps else {}),
        }

    def _write_candidates(self, rendered: Rendered, face: RenderedFace, timings: dict[str, float]) -> dict[str, str]:
        """Write the dumped guard candidates of one face; returns candidate name → relative path."""
        written: dict[str, str] = {}
        for name, image in face.candidate_images.items():
            rel = self.layout.candidate_relpath(rendered.prepared.item.output_stem, name, face.face.index)
            with timed(timings, "encode_write"):
                write_image(self.layout.out_dir / rel, image, self.layout.fmt, jpeg_quality=self.jpeg_quality)
            written[name] = rel
        return written

    def _apply(self, cache: dict[tuple[str, ...], np.ndarray], names: Sequence[str], context: StageContext,
               timings: dict[str, float]) -> np.ndarray:
        """Apply ``names`` in order, reusing results of shared prefixes (trees with common first stages)."""
        done = 0
        while done < len(names) and tuple(names[: done + 1]) in cache:
            done += 1
        image = cache[tuple(names[:done])]
        for position in range(done, len(names)):
            name = names[position]
            with timed(timings, f"stage_{name}"):
                image = self.stages[name](image, context)
            cache[tuple(names[: position + 1])] = image
        return image

    def _row(self, rendered: Rendered, status: str, reason: str, faces: list[dict[str, Any]],
             timings: dict[str, float]) -> dict[str, Any]:
        prepared = rendered.prepared
        first = faces[0] if faces else {}
        row: dict[str, Any] = {
            "input": prepared.item.rel,
            "status": status,
            "reason": reason,
            "face_index": first.get("face_index"),
            "face_count": prepared.face_count,
            "box": first.get("box"),
            "score": first.get("score"),
            "landmarks": first.get("landmarks"),
            "source_pose": first.get("source_pose"),
            "output_pose": first.get("output_pose"),
            "pose_source": first.get("pose_source"),
            "outputs": first.get("outputs", {}),
        }
        row.update({key: value for key, value in first.items() if key not in row})
        if len(faces) > 1:
            row["other_faces"] = faces[1:]
        if rendered.failed_faces:
            row["failed_faces"] = [dict(face) for face in rendered.failed_faces]
        if prepared.info:
            row["image"] = dict(prepared.info)
        row["timings_ms"] = {step: round(ms, 2) for step, ms in timings.items()}
        row["config_hash"] = self.config_hash
        return row
