"""End to end: a folder-per-identity tree of real photos through the identity frontalizer and the offline detector."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path

import cv2
import pytest
from pipeline_helpers import OFFLINE_CONFIG, save

from frontalize.io.manifest import read_manifest


def _rows(out: Path) -> list[dict]:
    return read_manifest(out / "manifest.jsonl")


@pytest.fixture()
def weights(tmp_path: Path) -> Path:
    empty = tmp_path / "weights"
    empty.mkdir()
    return empty


def test_identity_run_mirrors_tree_and_writes_manifest(identity_tree: Path, tmp_path: Path, weights: Path,
                                                       run_cli: Callable[..., int]) -> None:
    out = tmp_path / "out"
    code = run_cli("--config", OFFLINE_CONFIG, "--source_dir", identity_tree, "--recursive", "-o", out,
                   "--weights-dir", weights, "--workers", "2")
    assert code == 0
    inputs = sorted(p.relative_to(identity_tree).as_posix() for p in identity_tree.rglob("*") if p.is_file())
    assert len(inputs) == 8
    rows = _rows(out)
    assert sorted(row["input"] for row in rows) == inputs
    for row in rows:
        assert row["status"] == "ok", row
        assert row["reason"] == ""
        assert row["face_count"] >= 1 and row["face_index"] == 0
        assert row["landmarks"] == "5"  # retinaface_mnet gives 5 points → approximate crop
        # no LivePortrait weights: the offline 68-point estimator measures the pose (the image is unchanged)
        assert row["pose_source"] == "landmarks68"
        assert row["source_pose"] is not None and row["output_pose"] == row["source_pose"]
        assert abs(row["source_pose"]["yaw"]) <= 75 and abs(row["source_pose"]["pitch"]) < 30  # t1_0 reads 53°
        stem = row["input"].rsplit(".", 1)[0]
        assert row["outputs"] == {"default": {"crop": f"{stem}.png"}}
        image = cv2.imread(str(out / row["outputs"]["default"]["crop"]))
        assert image is not None and image.shape == (512, 512, 3)
        assert set(row["timings_ms"]) >= {"decode", "detect", "crop", "frontalize", "encode_write"}
        assert len(row["config_hash"]) == 16
    # output tree mirrors the identity folders
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == sorted({i.split("/")[0] for i in inputs})
    with open(out / "manifest.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    assert [r["input"] for r in table] == [r["input"] for r in rows]
    assert "outputs.default.crop" in table[0] and "timings_ms.decode" in table[0]
    info = json.loads((out / "run_info.json").read_text())
    assert info["config_hash"] == rows[0]["config_hash"]
    assert (out / "run_config.yaml").is_file()


def test_resume_skips_done_inputs_and_overwrite_redoes_them(identity_tree: Path, tmp_path: Path, weights: Path,
                                                            run_cli: Callable[..., int]) -> None:
    out = tmp_path / "out"
    base = ("--config", OFFLINE_CONFIG, "--source_dir", identity_tree, "--recursive", "-o", out,
            "--weights-dir", weights, "--workers", "0")
    assert run_cli(*base, "--limit", "3") == 0
    assert len(_rows(out)) == 3
    first = out / _rows(out)[0]["outputs"]["default"]["crop"]
    stamp = first.stat().st_mtime_ns
    assert run_cli(*base) == 0  # the 3 done inputs are skipped, the 5 others processed
    rows = _rows(out)
    assert len(rows) == 8 and len({r["input"] for r in rows}) == 8
    assert first.stat().st_mtime_ns == stamp
    assert run_cli(*base) == 0  # nothing left to do
    assert len(_rows(out)) == 8
    assert run_cli(*base, "--overwrite") == 0
    rows = _rows(out)
    assert len(rows) == 16 and {r["status"] for r in rows} == {"ok"}
    assert first.stat().st_mtime_ns != stamp


def _stamps(out: Path) -> dict[str, int]:
    return {p.relative_to(out).as_posix(): p.stat().st_mtime_ns for p in out.rglob("*.png")}


@pytest.mark.parametrize(("key", "value"), [("crop.scale", "2.0"), ("input.max_pixels", "1000000")])
def test_changed_config_stops_before_any_image_unless_overwrite(identity_tree: Path, tmp_path: Path, weights: Path,
                                                                 run_cli: Callable[..., int],
                                                                 capsys: pytest.CaptureFixture[str],
                                                                 key: str, value: str) -> None:
    out = tmp_path / "out"
    base = ("--config", OFFLINE_CONFIG, "--source_dir", identity_tree / "astronaut", "-o", out,
            "--weights-dir", weights, "--workers", "0")
    assert run_cli(*base) == 0
    before, manifest = _stamps(out), (out / "manifest.jsonl").read_bytes()
    capsys.readouterr()
    for extra in ((), ("--dry-run",)):
        assert run_cli(*base, "--set", f"{key}={value}", *extra) == 2  # stops before any image, also in a dry run
        err = capsys.readouterr().err
        assert f"{key}: " in err and "--overwrite" in err and "new output folder" in err, err
    assert _stamps(out) == before and (out / "manifest.jsonl").read_bytes() == manifest  # nothing touched
    assert run_cli(*base, "--set", f"{key}={value}", "--overwrite") == 0  # every input reprocessed
    rows = _rows(out)
    assert [r["status"] for r in rows] == ["ok"] * 4 and rows[2]["config_hash"] != rows[0]["config_hash"]
    assert all(_stamps(out)[name] != stamp for name, stamp in before.items())
    assert json.loads((out / "config_hashes.json").read_text()).keys() == {rows[-1]["config_hash"]}
    assert run_cli(*base, "--set", f"{key}={value}") == 0 and len(_rows(out)) == 4  # same hash: resumes
    assert run_cli(*base) == 2  # now the folder holds the new config's results


def test_outputs_without_any_record_are_refused(identity_tree: Path, tmp_path: Path, weights: Path,
                                                run_cli: Callable[..., int],
                                                capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    base = ("--config", OFFLINE_CONFIG, "--source_dir", identity_tree / "astronaut", "-o", out,
            "--weights-dir", weights, "--workers", "0")
    assert run_cli(*base) == 0
    (out / "manifest.jsonl").unlink()  # what a run killed before its first row leaves: files + the hash record
    assert run_cli(*base) == 0
    assert [r["status"] for r in _rows(out)] == ["skipped_existing", "skipped_existing"]
    for name in ("manifest.jsonl", "config_hashes.json"):  # no record at all: nothing says what made the files
        (out / name).unlink()
    capsys.readouterr()
    assert run_cli(*base) == 2
    assert "no manifest.jsonl or config_hashes.json" in capsys.readouterr().err
    assert run_cli(*base, "--overwrite") == 0 and {r["status"] for r in _rows(out)} == {"ok"}


def test_full_and_crop_outputs_and_all_faces(group_photo, tmp_path: Path, weights: Path,
                                             run_cli: Callable[..., int]) -> None:
    source = tmp_path / "src"
    save(source / "group.jpg", group_photo)
    out = tmp_path / "out"
    code = run_cli("--config", OFFLINE_CONFIG, "--source_dir", source, "-o", out, "--weights-dir", weights,
                   "--set", "output.kind=both", "--set", "detection.face_choice=all", "--set", "output.format=jpg")
    assert code == 0
    (row,) = _rows(out)
    assert row["face_count"] == 6 and len(row["other_faces"]) == 5
    assert row["outputs"]["default"] == {"crop": "crop/group.jpg", "full": "full/group.jpg"}
    assert row["other_faces"][0]["outputs"]["default"]["crop"] == "crop/group_face1.jpg"
    full = cv2.imread(str(out / "full" / "group.jpg"))
    assert full.shape == group_photo.shape
    assert len(list((out / "crop").glob("*.jpg"))) == 6
