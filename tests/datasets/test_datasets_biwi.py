"""BIWI layout: pose-file parsing (the project's convention; FSA-Net's for comparison), subject merging, GT rule, GT
folder."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from evaluation.eval_photos import rotation_matrix, write_pose_file  # tests/ is on sys.path (rootdir conftest)

from frontalize.datasets import load_dataset
from frontalize.datasets.biwi import read_pose_file, rotation_to_euler, subject_of_sequence
from frontalize.errors import InputError
from frontalize.faces.headpose import pose_from_biwi_matrix


def _frame(root: Path, seq: str, index: int, pose: tuple[float, float, float] | None, ext: str = "png",
           level: str = "hpdb") -> Path:
    path = root / level / seq / f"frame_{index:05d}_rgb.{ext}"
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, data = cv2.imencode(f".{ext.lower()}", np.full((8, 8, 3), index * 10, dtype=np.uint8))
    assert ok
    path.write_bytes(data.tobytes())
    if pose is not None:
        write_pose_file(path.with_name(f"frame_{index:05d}_pose.txt"), *pose)
    return path


def test_identity_matrix_is_frontal() -> None:
    pose = rotation_to_euler(np.eye(3))
    assert (pose.pitch, pose.yaw, pose.roll) == pytest.approx((0.0, 0.0, 0.0), abs=1e-9)


def test_fsa_net_formulas_by_hand() -> None:
    # A pure rotation about the vertical axis by 30 degrees written in the file: M = Ry(30), R = M^T = Ry(-30).
    angle = math.radians(30)
    file_matrix = np.array([[math.cos(angle), 0, math.sin(angle)], [0, 1, 0], [-math.sin(angle), 0, math.cos(angle)]])
    r = file_matrix.T
    expected_yaw = -math.degrees(math.atan2(-r[2, 0], math.hypot(r[2, 1], r[2, 2])))
    pose = rotation_to_euler(file_matrix)
    assert pose.yaw == pytest.approx(expected_yaw) and abs(pose.yaw) == pytest.approx(30.0)
    assert pose.pitch == pytest.approx(0.0, abs=1e-9) and pose.roll == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("angles", [(10.0, -35.0, 5.0), (-25.0, 60.0, -12.0), (0.0, 0.0, 40.0)])
def test_pose_file_round_trip(tmp_path: Path, angles: tuple[float, float, float]) -> None:
    # the fixture writes the matrix of FSA-Net angles; the layout reads it in the project's convention
    path = tmp_path / "frame_00001_pose.txt"
    write_pose_file(path, *angles)
    pose = read_pose_file(path)
    matrix = rotation_matrix(*angles)
    fsa = rotation_to_euler(matrix)
    assert (fsa.pitch, fsa.yaw, fsa.roll) == pytest.approx(angles, abs=1e-4)
    expected = pose_from_biwi_matrix(np.round(matrix, 6))
    assert (pose.pitch, pose.yaw, pose.roll) == pytest.approx(expected, abs=1e-3)
    assert pose.source == "annotation"
    assert np.allclose(matrix @ matrix.T, np.eye(3))


def test_malformed_pose_file(tmp_path: Path) -> None:
    path = tmp_path / "frame_00001_pose.txt"
    path.write_text("1 0 0\n0 1\n")
    with pytest.raises(InputError, match="3x3"):
        read_pose_file(path)
    path.write_text("a b c\n0 1 0\n0 0 1\n")
    with pytest.raises(InputError, match="unreadable"):
        read_pose_file(path)


def test_sequences_map_to_subjects() -> None:
    assert [subject_of_sequence(s) for s in ("15", "18", "21", "22", "01", "24")] == ["03", "05", "02", "07",
                                                                                       "01", "24"]


def test_biwi_subjects_gt_and_probes(tmp_path: Path) -> None:
    _frame(tmp_path, "03", 1, (0.0, 30.0, 0.0))
    _frame(tmp_path, "03", 2, (0.0, 50.0, 0.0))
    _frame(tmp_path, "15", 1, (2.0, -3.0, 20.0))  # same person as 03, most frontal (roll ignored)
    _frame(tmp_path, "01", 1, (10.0, 10.0, 0.0))
    _frame(tmp_path, "01", 2, (0.0, 5.0, 0.0))
    _frame(tmp_path, "01", 3, None)  # no pose file: skipped
    dataset = load_dataset("biwi", tmp_path)
    assert dataset.layout == "biwi" and dataset.pose_source == "annotated"
    assert set(dataset.gt) == {"01", "03"}
    assert dataset.gt["03"].image.rel == "hpdb/15/frame_00001_rgb.png"
    assert dataset.gt["01"].image.rel == "hpdb/01/frame_00002_rgb.png"
    probes = {r.image.rel: r for r in dataset.records}
    assert set(probes) == {"hpdb/03/frame_00001_rgb.png", "hpdb/03/frame_00002_rgb.png", "hpdb/01/frame_00001_rgb.png"}
    assert probes["hpdb/03/frame_00002_rgb.png"].subject == "03"
    assert probes["hpdb/03/frame_00002_rgb.png"].pose.yaw == pytest.approx(50.0, abs=1e-4)
    assert any("1 frames without a pose file" in n for n in dataset.notes)
    assert any("15" in n and "merged" in n for n in dataset.notes)


def test_biwi_accepts_hpdb_folder_itself_and_gt_folder(tmp_path: Path) -> None:
    _frame(tmp_path, "02", 1, (0.0, 10.0, 0.0))
    _frame(tmp_path, "02", 2, (0.0, 20.0, 0.0))
    gt_dir = tmp_path / "gts"
    gt_dir.mkdir()
    cv2.imwrite(str(gt_dir / "02.png"), np.zeros((8, 8, 3), np.uint8))
    dataset = load_dataset("biwi", tmp_path / "hpdb", gt_dir=gt_dir)
    assert [r.image.rel for r in dataset.records] == ["02/frame_00001_rgb.png", "02/frame_00002_rgb.png"]
    assert dataset.gt["02"].image.path == (gt_dir / "02.png").resolve()
    assert "supplied by the user" in dataset.gt_rule


def test_biwi_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a directory"):
        load_dataset("biwi", tmp_path / "absent")
    (tmp_path / "x").mkdir()
    with pytest.raises(InputError, match="no BIWI sequence"):
        load_dataset("biwi", tmp_path)


@pytest.mark.parametrize("ext", ["jpg", "JPG", "jpeg", "png", "PNG"])
def test_biwi_frames_as_the_common_copies_store_them(tmp_path: Path, ext: str) -> None:
    # NN/frame_NNNNN_rgb.<ext> directly under the data folder (no hpdb level), as the re-distributed copies have it
    _frame(tmp_path, "05", 1, (0.0, 40.0, 0.0), ext, level="")
    _frame(tmp_path, "05", 2, (0.0, 2.0, 0.0), ext, level="")
    _frame(tmp_path, "05", 3, None, ext, level="")
    (tmp_path / "05" / "frame_00004_depth.bin").write_bytes(b"depth")  # other BIWI files are ignored
    (tmp_path / "05" / "frame_00004_rgb.gif").write_bytes(b"GIF89a")
    dataset = load_dataset("biwi", tmp_path)
    assert [r.image.rel for r in dataset.records] == [f"05/frame_00001_rgb.{ext}"]
    assert dataset.gt["05"].image.rel == f"05/frame_00002_rgb.{ext}"
    assert dataset.records[0].pose is not None and dataset.records[0].pose.yaw == pytest.approx(40.0, abs=1e-4)
    assert any("1 frames without a pose file" in n for n in dataset.notes)


def test_biwi_frame_in_two_formats_is_read_once_png_first(tmp_path: Path) -> None:
    _frame(tmp_path, "01", 1, (0.0, 30.0, 0.0), "jpg")
    _frame(tmp_path, "01", 1, (0.0, 30.0, 0.0), "png")
    _frame(tmp_path, "01", 2, (0.0, 0.0, 0.0), "jpg")
    dataset = load_dataset("biwi", tmp_path)
    assert [r.image.rel for r in dataset.records] == ["hpdb/01/frame_00001_rgb.png"]
    assert dataset.gt["01"].image.rel == "hpdb/01/frame_00002_rgb.jpg"
    assert any("1 frame files in a second format" in n for n in dataset.notes)
