"""Known poses in the dataset records, all in the project's convention: BIWI matrices, the generic layout's pose
files (poses.csv, poses.json, posed_views.json), synthetic images, and the dataset notes file."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from evaluation.eval_photos import rotation_matrix as fsa_matrix  # tests/ is on sys.path (rootdir conftest)

from frontalize.datasets import load_dataset
from frontalize.datasets.biwi import pose_from_matrix, read_pose_file, rotation_to_euler
from frontalize.errors import InputError
from frontalize.faces.headpose import pose_from_biwi_matrix, rotation_from_euler

FACING = np.array([0.0, 0.0, -1.0])
"""The face looks along −z (towards the camera) in the head frame (x right, y down, z into the screen)."""


def test_biwi_conversion_is_the_estimators() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        pitch, yaw, roll = rng.uniform(-80, 80, 3)
        matrix = rotation_from_euler(pitch, yaw, roll)
        mine = pose_from_matrix(matrix)
        assert (mine.pitch, mine.yaw, mine.roll) == pytest.approx(pose_from_biwi_matrix(matrix), abs=1e-9)
        assert (mine.pitch, mine.yaw, mine.roll) == pytest.approx((pitch, yaw, roll), abs=1e-6)


def test_biwi_head_turned_to_image_left_has_positive_yaw_and_looking_up_negative_pitch() -> None:
    # FSA-Net's BIWI angles share 300W-LP's signs: yaw > 0 = towards image left, pitch > 0 = looking UP
    turned = fsa_matrix(0.0, 30.0, 0.0)
    assert (turned @ FACING)[0] < -0.4  # the face really looks towards image left (x < 0)
    pose = pose_from_matrix(turned)
    assert pose.yaw == pytest.approx(30.0, abs=1e-6) and abs(pose.pitch) < 1e-6
    up = fsa_matrix(10.0, 0.0, 0.0)
    assert (up @ FACING)[1] < -0.1  # looking up: y < 0 (y points down)
    assert rotation_to_euler(up).pitch == pytest.approx(10.0)
    assert pose_from_matrix(up).pitch == pytest.approx(-10.0)  # the project's pitch > 0 is looking down
    clockwise = pose_from_matrix(fsa_matrix(0.0, 0.0, 15.0))
    assert clockwise.roll == pytest.approx(15.0)
    combined = fsa_matrix(10.0, -25.0, 6.0)  # Euler orders differ: the matrix is converted, not the angles
    converted = pose_from_matrix(combined)
    assert (converted.pitch, converted.yaw, converted.roll) == pytest.approx((-13.6, -23.3, 11.0), abs=0.1)


def test_biwi_records_carry_the_project_pose(tmp_path: Path) -> None:
    seq = tmp_path / "hpdb" / "01"
    seq.mkdir(parents=True)
    for index, angles in enumerate([(0.0, 2.0, 0.0), (-12.0, 35.0, 4.0)], start=1):
        cv2.imwrite(str(seq / f"frame_{index:05d}_rgb.png"), np.full((8, 8, 3), 50 * index, np.uint8))
        rows = rotation_from_euler(*angles)
        (seq / f"frame_{index:05d}_pose.txt").write_text(
            "\n".join(" ".join(f"{v:.8f}" for v in row) for row in rows) + "\n\n1 2 3\n")
    (tmp_path / "dataset_notes.txt").write_text("  recorded with a Kinect  \n")
    dataset = load_dataset("biwi", tmp_path)
    (record,) = dataset.records
    assert record.pose is not None and record.pose.source == "annotation" and not record.synthetic
    assert (record.pose.pitch, record.pose.yaw, record.pose.roll) == pytest.approx((-12.0, 35.0, 4.0), abs=1e-5)
    assert read_pose_file(seq / "frame_00002_pose.txt") == record.pose
    assert dataset.supplied_notes == "recorded with a Kinect"


def _image(path: Path, value: int = 90) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((8, 8, 3), value, np.uint8))


def _generic(root: Path) -> Path:
    for rel in ("a/1.jpg", "a/2.jpg", "a/3.jpg", "b/1.jpg", "gt/a.jpg", "gt/b.jpg"):
        _image(root / rel)
    return root


def test_generic_known_poses_from_all_three_files(tmp_path: Path) -> None:
    root = _generic(tmp_path)
    (root / "poses.csv").write_text("rel,pitch,yaw,roll\na/1.jpg,1,2,3\na/2.jpg,4,5,6\n")
    (root / "poses.json").write_text(json.dumps({"images": [
        {"rel": "a/2.jpg", "pitch": -4, "yaw": -5},  # overrides poses.csv
        {"rel": "b/1.jpg", "pose": {"pitch": 0, "yaw": 20, "roll": 1}, "synthetic": True},
        {"rel": "c/9.jpg", "pitch": 0, "yaw": 0}]}))
    (root / "posed_views.json").write_text(json.dumps({"synthetic": True, "views": [
        {"path": "a/3.jpg", "identity": "a", "pose": {"pitch": 0.0, "yaw": -45.0, "roll": 0.0}}]}))
    (root / "dataset_notes.txt").write_text("Views a/3 and b/1 are renders.\n")
    dataset = load_dataset("generic", root)
    by_rel = {r.image.rel: r for r in dataset.records}
    one, two, three, bee = (by_rel[k] for k in ("a/1.jpg", "a/2.jpg", "a/3.jpg", "b/1.jpg"))
    assert (one.pose.pitch, one.pose.yaw, one.pose.roll, one.pose.source) == (1, 2, 3, "annotation")  # type: ignore[union-attr]
    assert (two.pose.pitch, two.pose.yaw, two.pose.roll) == (-4, -5, 0)  # type: ignore[union-attr]
    assert (three.pose.yaw, three.pose.source, three.synthetic) == (-45.0, "rendered", True)  # type: ignore[union-attr]
    assert (bee.pose.yaw, bee.pose.source, bee.synthetic) == (20, "rendered", True)  # type: ignore[union-attr]
    assert not one.synthetic and dataset.pose_source == "annotated"
    assert any("2 of the 4 angled images are SYNTHETIC" in note and "posed_views.json" in note
               for note in dataset.notes)
    assert any("1 entries of" in note and "c/9.jpg" in note for note in dataset.notes)
    assert dataset.supplied_notes == "Views a/3 and b/1 are renders."


def test_generic_without_pose_files_has_no_known_pose(tmp_path: Path) -> None:
    dataset = load_dataset("generic", _generic(tmp_path))
    assert all(r.pose is None and not r.synthetic for r in dataset.records)
    assert dataset.pose_source == "none" and dataset.supplied_notes == "" and not dataset.notes


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", "cannot read pose file"),
    (json.dumps({"views": "x"}), "'images' \\(or 'views'\\) list"),
    (json.dumps({"images": [{"rel": "a/1.jpg", "pose": {"yaw": 3}}]}), "entry 0: expected a path and a pose"),
    (json.dumps({"images": [{"pitch": 0, "yaw": 3}]}), "entry 0"),
    (json.dumps({"images": [{"rel": "a/1.jpg", "pitch": "up", "yaw": 3}]}), "entry 0"),
    (json.dumps({"images": [7]}), "entry 0 is not an object"),
])
def test_malformed_pose_json_names_the_file_and_entry(tmp_path: Path, content: str, message: str) -> None:
    root = _generic(tmp_path)
    (root / "poses.json").write_text(content)
    with pytest.raises(InputError, match=message) as caught:
        load_dataset("generic", root)
    assert "poses.json" in str(caught.value)


def test_lfw_reads_the_notes_file(tmp_path: Path) -> None:
    for rel in ("Ann/Ann_0001.jpg", "Ann/Ann_0002.jpg"):
        _image(tmp_path / rel)
    (tmp_path / "dataset_notes.txt").write_bytes("café\n".encode())
    assert load_dataset("lfw", tmp_path).supplied_notes == "café"
    (tmp_path / "dataset_notes.txt").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(InputError, match="cannot read the dataset notes"):
        load_dataset("lfw", tmp_path)
