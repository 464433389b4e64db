"""``evaluate.py --layout biwi`` on BIWI as the common copies store it: ``NN/frame_NNNNN_rgb.jpg`` + pose files
directly under the data folder (no ``hpdb`` level), against a PNG output tree (as inference writes it)."""

from __future__ import annotations

import json
from pathlib import Path

from eval_photos import face_crops, write_biwi

from frontalize.cli.evaluate import main

OFFLINE = str(Path(__file__).resolve().parents[2] / "configs" / "eval-offline.yaml")
COMBO = "retinaface_mnet+dlib_resnet"


def test_evaluate_reads_a_jpg_biwi_tree(tmp_path: Path) -> None:
    data, out = write_biwi(tmp_path, face_crops(), ext="jpg", hpdb=False)
    assert sorted(p.name for p in (data / "03").iterdir())[:2] == ["frame_00001_pose.txt", "frame_00001_rgb.jpg"]
    report = tmp_path / "report"
    code = main(["--config", OFFLINE, "--bootstrap-resamples", "200", "--no-progress", "-q", "--layout", "biwi",
                 "--data", str(data), "--frontal-dir", str(out), "--cache-dir", str(tmp_path / "cache"),
                 "-o", str(report)])
    assert code == 0
    summary = json.loads((report / "summary.json").read_text())
    assert summary["dataset"]["n_subjects"] == 4 and summary["dataset"]["n_records"] == 11
    entry = summary["results"]["biwi_out"][COMBO]
    assert entry["n"] == 11 and entry["no_face_angle"] == 0 and entry["no_face_frontal"] == 0
