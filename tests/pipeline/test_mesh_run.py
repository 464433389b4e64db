"""``inference.py --frontalize mesh`` end to end, offline, with the real shipped models, on real faces (t1.jpg, the
astronaut) and the synthetic posed views ``scripts/make_samples.py`` renders: the interface the checks use, paste-back,
variants and stages, resume, unfit faces, the dry run, face_choice all and the Ray executor."""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from pipeline_helpers import OFFLINE_CONFIG, REPO_ROOT, load_script, save, unfit_face

from frontalize.evaluation.posecues import keypoint_pose
from frontalize.faces.registry import build_detector
from frontalize.io.manifest import read_manifest
from frontalize.weights import PACKAGED

SUBSET = ["astronaut_00/mirror.jpg", "astronaut_00/rot+12.jpg", "astronaut_00/rot-12.jpg", "astronaut_00/small.jpg",
          "astronaut_00/yaw+15.jpg", "astronaut_00/yaw-15.jpg", "astronaut_00/yaw+30.jpg", "astronaut_00/yaw-30.jpg",
          "astronaut_00/yaw+45.jpg", "astronaut_00/yaw-45.jpg", "t1_02/mirror.jpg", "t1_02/yaw+30.jpg",
          "t1_02/yaw-30.jpg", "t1_04/small.jpg", "t1_04/yaw+15.jpg", "t1_04/yaw-45.jpg"]
"""Real faces and posed views (±15/30/45°) of three identities."""


def _pose_ok(pose: Any) -> bool:
    return isinstance(pose, dict) and all(isinstance(pose.get(axis), (int, float)) and np.isfinite(pose[axis])
                                          for axis in ("pitch", "yaw", "roll"))


@pytest.fixture()
def no_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty weights root as $FRONTALIZE_WEIGHTS: the mesh backend needs no file under it."""
    root = tmp_path / "weights"
    root.mkdir()
    monkeypatch.setenv("FRONTALIZE_WEIGHTS", str(root))
    return root


@pytest.fixture(scope="module")
def detector():  # type: ignore[no-untyped-def]
    return build_detector("retinaface_mnet", weights_root=".", det_size=640, threshold=0.5)


@pytest.mark.slow
def test_the_offline_interface_the_checks_use(sample_data: Path, tmp_path: Path, no_weights: Path, detector,  # type: ignore[no-untyped-def]
                                              run_cli: Callable[..., int]) -> None:
    listed = tmp_path / "list.txt"
    listed.write_text("".join(f"{rel}\n" for rel in SUBSET))
    out = tmp_path / "out"
    assert run_cli("--config", OFFLINE_CONFIG, "--source_dir", sample_data, "--list-file", listed, "-o", out,
                   "--frontalize", "mesh") == 0
    rows = read_manifest(out / "manifest.jsonl")
    assert [row["input"] for row in rows] == sorted(SUBSET)  # input order: sorted paths
    yaws, proxies = [], []
    for row in rows:
        assert row["status"] == "ok", row
        assert _pose_ok(row["source_pose"]) and _pose_ok(row["output_pose"]), row
        assert row["pose_source"] == "landmarks68"
        image = cv2.imread(str(out / row["outputs"]["default"]["crop"]))
        assert image is not None and image.shape == (512, 512, 3)
        found = detector.detect(np.ascontiguousarray(image[:, :, ::-1]))
        assert found, f"no face in the output of {row['input']}"
        proxies.append(abs(keypoint_pose(max(found, key=lambda f: f.score).kps)[1]))  # 5-point yaw proxy
        yaws.append(abs(row["output_pose"]["yaw"]))
    assert statistics.median(yaws) <= 3.0 and statistics.median(proxies) <= 8.0, (yaws, proxies)
    turned = {row["input"]: row["source_pose"]["yaw"] for row in rows if "yaw+30" in row["input"]}
    assert all(15 < yaw < 40 for yaw in turned.values()), turned  # the posed views read back with their sign
    hashed = json.loads((out / "run_info.json").read_text())["hashed"]
    assert hashed["weights.dlib_shape_predictor_68"] == PACKAGED["dlib_shape_predictor_68"].sha256
    assert hashed["pose.source"] == "landmarks68" and hashed["pose.estimator"].startswith("landmarks68")
    assert not any(no_weights.iterdir()) or {p.name for p in no_weights.iterdir()} == {".verified.json"}


@pytest.mark.slow
def test_paste_back_full_and_both_variants_and_stages(sample_data: Path, tmp_path: Path, no_weights: Path,
                                        run_cli: Callable[..., int]) -> None:
    out = tmp_path / "out"
    listed = tmp_path / "list.txt"
    listed.write_text("astronaut_00/rot+12.jpg\nt1_02/yaw-30.jpg\n")
    assert run_cli("--config", OFFLINE_CONFIG, "--source_dir", sample_data, "--list-file", listed, "-o", out,
                   "--frontalize", "mesh", "--set", "output.kind=both",
                   "--set", "variants=[{name: base}, {name: sharp, stages: [sharpen]}]") == 0
    for row in read_manifest(out / "manifest.jsonl"):
        source = cv2.imread(str(sample_data / row["input"]))
        base, sharp = row["outputs"]["base"], row["outputs"]["sharp"]
        assert base["crop"].startswith("base/crop/") and sharp["full"].startswith("sharp/full/")
        crop = cv2.imread(str(out / base["crop"]))
        full = cv2.imread(str(out / base["full"]))
        assert crop.shape == (512, 512, 3) and full.shape == source.shape
        changed = np.abs(full.astype(int) - source.astype(int)).max(axis=2) > 12
        assert 0.02 < changed.mean() < 0.9  # the face was pasted back, the rest of the photograph kept
        corner = np.s_[: source.shape[0] // 10, : source.shape[1] // 10]
        assert not changed[corner].any()
        assert not np.array_equal(cv2.imread(str(out / sharp["crop"])), crop)
    full_only = tmp_path / "full"
    assert run_cli("--config", OFFLINE_CONFIG, "--source_dir", sample_data, "--list-file", listed, "-o", full_only,
                   "--frontalize", "mesh", "--set", "output.kind=full") == 0
    both = {row["input"]: row for row in read_manifest(out / "manifest.jsonl")}
    for row in read_manifest(full_only / "manifest.jsonl"):
        assert list(row["outputs"]["default"]) == ["full"]
        pasted = cv2.imread(str(full_only / row["outputs"]["default"]["full"]))
        same = cv2.imread(str(out / both[row["input"]]["outputs"]["base"]["full"]))
        assert np.array_equal(pasted, same)  # the same paste-back


@pytest.mark.slow
def test_unfit_faces_get_a_final_row_and_resume_skips_them(tmp_path: Path, no_weights: Path,
                                                           face_photos: dict[str, np.ndarray],
                                                           run_cli: Callable[..., int]) -> None:
    source = tmp_path / "in"
    save(source / "blurred.jpg", unfit_face(face_photos["astronaut"]))
    save(source / "sharp.jpg", face_photos["astronaut"])
    out = tmp_path / "out"
    base = ("--config", OFFLINE_CONFIG, "--source_dir", source, "-o", out, "--frontalize", "mesh")
    assert run_cli(*base) == 1  # an input not ok → exit 1, the batch went on
    rows = {row["input"]: row for row in read_manifest(out / "manifest.jsonl")}
    assert rows["sharp.jpg"]["status"] == "ok"
    unfit = rows["blurred.jpg"]
    assert unfit["status"] == "landmarks_unfit" and "dlib's HOG detector finds no face" in unfit["reason"]
    assert unfit["outputs"] == {} and unfit["source_pose"] is None and unfit["face_count"] == 1
    assert run_cli(*base) == 1  # resume: both are final under this run hash, nothing is redone
    assert len(read_manifest(out / "manifest.jsonl")) == 2
    assert run_cli(*base, "--overwrite") == 1
    assert len(read_manifest(out / "manifest.jsonl")) == 4


def test_dry_run_checks_the_shipped_predictor_before_any_image(tmp_path: Path, no_weights: Path,
                                                                face_photos: dict[str, np.ndarray],
                                                                run_cli: Callable[..., int],
                                                                capsys: pytest.CaptureFixture[str],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    save(tmp_path / "in" / "a.jpg", face_photos["astronaut"])
    command = ("--config", OFFLINE_CONFIG, "--source_dir", tmp_path / "in", "-o", tmp_path / "out",
               "--frontalize", "mesh", "--dry-run")
    assert run_cli(*command) == 0
    assert capsys.readouterr().out == "todo\ta.jpg\n" and not (tmp_path / "out").exists()

    def no_reading(*args: object, **kwargs: object) -> None:
        raise AssertionError("an image was read before the predictor was checked")

    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr("frontalize.pipeline.steps.load_image", no_reading)
    monkeypatch.setattr("importlib.util.find_spec",
                        lambda name, *a: None if name == "dlib" else real_find_spec(name, *a))
    assert run_cli(*command[:-1]) == 3
    message = capsys.readouterr().err
    assert "dlib is not installed" in message and 'pip install ".[offline]"' in message
    assert not (tmp_path / "out" / "manifest.jsonl").exists()


@pytest.mark.slow
def test_face_choice_all_frontalizes_every_face_of_a_group_photo(tmp_path: Path, no_weights: Path,
                                                                 group_photo: np.ndarray,
                                                                 run_cli: Callable[..., int]) -> None:
    save(tmp_path / "in" / "group.jpg", group_photo)
    out = tmp_path / "out"
    assert run_cli("--config", OFFLINE_CONFIG, "--source_dir", tmp_path / "in", "-o", out, "--frontalize", "mesh",
                   "--set", "detection.face_choice=all") == 0
    (row,) = read_manifest(out / "manifest.jsonl")
    assert row["status"] == "ok" and row["face_count"] == 6
    faces = [row, *row.get("other_faces", [])]
    failed = row.get("failed_faces", [])
    assert sorted([face["face_index"] for face in faces] + [face["face_index"] for face in failed]) == list(range(6))
    assert all(face["status"] == "landmarks_unfit" for face in failed) and len(faces) >= 5
    for face in faces:
        assert _pose_ok(face["source_pose"]) and _pose_ok(face["output_pose"])
        image = cv2.imread(str(out / face["outputs"]["default"]["crop"]))
        assert image.shape == (512, 512, 3)
    assert {face["outputs"]["default"]["crop"] for face in faces} >= {"group_face1.png", "group_face2.png"}


@pytest.mark.slow
def test_ray_executor_gives_the_local_rows_and_images(tmp_path: Path, no_weights: Path,
                                                      face_photos: dict[str, np.ndarray],
                                                      run_cli: Callable[..., int]) -> None:
    pytest.importorskip("ray", reason="the ray extra is not installed (pip install .[ray])")
    source = tmp_path / "in"
    save(source / "a.jpg", face_photos["astronaut"])
    save(source / "b.jpg", face_photos["t1_2"])
    save(source / "c.jpg", unfit_face(face_photos["astronaut"]))
    results = {}
    for executor in ("local", "ray"):
        out = tmp_path / executor
        assert run_cli("--config", OFFLINE_CONFIG, "--source_dir", source, "-o", out, "--frontalize", "mesh",
                       "--executor", executor, "--set", "ray.num_cpus=2") == 1
        rows = [{k: v for k, v in row.items() if k != "timings_ms"} for row in read_manifest(out / "manifest.jsonl")]
        images = {p.name: p.read_bytes() for p in out.glob("*.png")}
        results[executor] = rows, images
    assert results["ray"] == results["local"]  # same rows (poses included) and bit-identical images
    assert [row["status"] for row in results["local"][0]] == ["ok", "ok", "landmarks_unfit"]


@pytest.mark.slow
def test_mesh_job_benchmark_reports_each_arm(sample_data: Path, tmp_path: Path, no_weights: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data"
    for rel in ("astronaut_00/yaw+30.jpg", "t1_02/mirror.jpg"):
        (data / rel).parent.mkdir(parents=True, exist_ok=True)
        (data / rel).write_bytes((sample_data / rel).read_bytes())
    (data / "angled.txt").write_text("astronaut_00/yaw+30.jpg\nt1_02/mirror.jpg\n")
    monkeypatch.syspath_prepend(str(REPO_ROOT / "scripts"))
    bench = load_script("bench_mesh_job")
    assert bench.main(["--data", str(data), "--arms", "mesh", "mesh+guard", "--out", str(tmp_path / "b")]) == 0
    results = json.loads((tmp_path / "b" / "mesh_job_cpu.json").read_text())["arms"]
    assert list(results) == ["mesh", "mesh+guard"]
    for arm in results.values():
        assert (arm["inputs"], arm["ok"], arm["exit_code"]) == (2, 2, 0)
        assert arm["median_step_ms"]["frontalize"] > 0 and arm["cpu_s_per_input"] > 0
        assert arm["median_abs_residual"]["yaw"] is not None
    assert results["mesh"]["guard_candidates"] is None and results["mesh+guard"]["guard_candidates"] == 8
    assert set(results["mesh+guard"]["guard_step_ms"]) == {"render", "pose", "score"}
    assert results["mesh"]["median_abs_residual"]["yaw"] < 5
    page = (tmp_path / "b" / "mesh_job_cpu.md").read_text()
    assert "| mesh+guard | 2 | 2 |" in page
