"""Finish step and frontalize batch on hand-made records: layout, stage trees, prefix reuse, failures."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import pytest

from frontalize.errors import StageError
from frontalize.pipeline.backends.base import FaceInput, FrontalizedFace
from frontalize.pipeline.inputs import InputItem
from frontalize.pipeline.outputs import FinishStep, OutputLayout, crop_face_box
from frontalize.pipeline.records import Prepared, PreparedFace, Rendered, RenderedFace
from frontalize.pipeline.steps import FrontalizeBatch
from frontalize.stages.base import StageContext


class AddStage:
    """Adds a constant (counts calls); optionally fails."""

    required_weights: tuple[str, ...] = ()

    def __init__(self, name: str, amount: int, fail: bool = False) -> None:
        self.name, self.amount, self.fail, self.calls = name, amount, fail, 0

    def __call__(self, image: np.ndarray, context: StageContext) -> np.ndarray:
        self.calls += 1
        if self.fail:
            raise StageError(self.name, context.input_id, "boom")
        assert context.face_box is not None and context.source_rgb is not None
        return np.clip(image.astype(int) + self.amount, 0, 255).astype(np.uint8)


def _prepared(rel: str = "id/x.jpg", faces: int = 1) -> Prepared:
    crop = np.full((512, 512, 3), 100, np.uint8)
    m_c2o = np.array([[0.5, 0, 10], [0, 0.5, 20], [0, 0, 1]], np.float32)
    prepared = Prepared(item=InputItem(Path("/src") / rel, rel, rel.rsplit(".", 1)[0]),
                        source=np.full((300, 400, 3), 50, np.uint8), face_count=faces)
    prepared.faces = [PreparedFace(index=i, box=np.array([60, 70, 200, 230], np.float32), score=0.9,
                                   landmark_kind="5", crop=crop, crop_to_source=m_c2o) for i in range(faces)]
    return prepared


def _rendered(prepared: Prepared) -> Rendered:
    faces = [RenderedFace(face=f, image=f.crop, source_pose={"pitch": 1.0, "yaw": 2.0, "roll": 3.0})
             for f in prepared.faces]
    return Rendered(prepared=prepared, faces=faces, timings={"decode": 1.0})


def test_layout_paths(tmp_path: Path) -> None:
    layout = OutputLayout(tmp_path, (("base", ()), ("g", ("gfpgan",))), ("crop", "full"), "jpg")
    assert layout.relpath("id/x", "base", "full", 0) == "base/full/id/x.jpg"
    assert layout.relpath("id/x", "g", "crop", 2) == "g/crop/id/x_face2.jpg"
    plain = OutputLayout(tmp_path, (("", ()),), ("crop",), "png")
    assert plain.face_paths("id/x") == [tmp_path / "id" / "x.png"]


def test_crop_face_box_maps_into_crop() -> None:
    m_c2o = np.array([[0.5, 0, 10], [0, 0.5, 20], [0, 0, 1]], np.float32)
    np.testing.assert_allclose(crop_face_box(np.array([60, 70, 200, 230]), m_c2o), [100, 100, 380, 420])


def test_trees_share_stage_prefixes_and_write_every_file(tmp_path: Path) -> None:
    first, second = AddStage("gfpgan", 10), AddStage("sharpen", 1)
    trees = (("base", ()), ("g", ("gfpgan",)), ("gs", ("gfpgan", "sharpen")))
    layout = OutputLayout(tmp_path, trees, ("crop", "full"), "png")
    finish = FinishStep(layout, {"gfpgan": first, "sharpen": second}, config_hash="h" * 16)
    row = finish(_rendered(_prepared(faces=2)))
    assert row["status"] == "ok" and row["reason"] == ""
    assert first.calls == 4 and second.calls == 4  # 2 faces × 2 kinds; gfpgan reused by the gs tree
    assert row["outputs"]["gs"] == {"crop": "gs/crop/id/x.png", "full": "gs/full/id/x.png"}
    assert row["other_faces"][0]["outputs"]["base"]["crop"] == "base/crop/id/x_face1.png"
    assert row["source_pose"] == {"pitch": 1.0, "yaw": 2.0, "roll": 3.0} and row["output_pose"] is None
    assert int(cv2.imread(str(tmp_path / "gs/crop/id/x.png"))[0, 0, 0]) == 111
    assert int(cv2.imread(str(tmp_path / "base/crop/id/x.png"))[0, 0, 0]) == 100
    assert cv2.imread(str(tmp_path / "g/full/id/x.png")).shape == (300, 400, 3)
    assert len(list(tmp_path.rglob("*.png"))) == 12
    assert row["timings_ms"]["stage_gfpgan"] >= 0 and row["config_hash"] == "h" * 16


def test_stage_error_becomes_the_row_status(tmp_path: Path) -> None:
    layout = OutputLayout(tmp_path, (("", ("sharpen",)),), ("crop",), "png")
    row = FinishStep(layout, {"sharpen": AddStage("sharpen", 1, fail=True)}, config_hash="h")(_rendered(_prepared()))
    assert row["status"] == "stage_error" and "boom" in row["reason"] and row["outputs"] == {}


def test_failed_prepare_passes_through(tmp_path: Path) -> None:
    prepared = Prepared(item=InputItem(Path("/src/a.jpg"), "a.jpg", "a"), status="no_face", reason="no face detected")
    rendered = FrontalizeBatch(_Echo())([prepared])
    row = FinishStep(OutputLayout(tmp_path, (("", ()),), ("crop",), "png"), {}, config_hash="h")(rendered[0])
    assert (row["status"], row["reason"], row["face_count"]) == ("no_face", "no face detected", 0)


class _Echo:
    name = "echo"

    def __init__(self, fail_on: int | None = None) -> None:
        self.fail_on, self.batches = fail_on, []

    def frontalize(self, faces: Sequence[FaceInput]) -> list[FrontalizedFace]:
        self.batches.append(len(faces))
        if self.fail_on is not None and any(int(f.crop[0, 0, 0]) == self.fail_on for f in faces):
            raise RuntimeError("CUDA out of memory")
        return [FrontalizedFace(image=255 - f.crop) for f in faces]


@pytest.mark.parametrize("batch_size", [1, 2, 8])
def test_frontalize_batch_chunks_and_isolates_failures(batch_size: int) -> None:
    prepared = []
    for value in (10, 20, 30):
        item = _prepared(f"{value}.jpg", faces=1)
        item.faces[0].crop = np.full((512, 512, 3), value, np.uint8)
        prepared.append(item)
    backend = _Echo(fail_on=20)
    rendered = FrontalizeBatch(backend, batch_size)(prepared)
    assert [r.status for r in rendered] == ["ok", "frontalize_error", "ok"]
    assert "out of memory" in rendered[1].reason and rendered[1].faces == []
    assert int(rendered[2].faces[0].image[0, 0, 0]) == 225
    assert max(backend.batches) <= batch_size
