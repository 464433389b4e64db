"""JSONL manifest: fsync'ed appends, tolerant reading, torn-tail repair, last-row-wins, CSV export."""

from __future__ import annotations

import csv
import json
import threading
from pathlib import Path

from frontalize.io.manifest import (
    ManifestWriter,
    export_csv,
    flatten_row,
    latest_rows,
    read_manifest,
    repair_torn_tail,
)


def test_append_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "out" / "manifest.jsonl"
    with ManifestWriter(path) as manifest:
        manifest.append({"input": "a/x.jpg", "status": "ok", "reason": "", "pose": {"yaw": float("nan")}})
        manifest.append({"input": "a/y.jpg", "status": "no_face", "reason": "no face detected"})
    rows = read_manifest(path)
    assert [r["input"] for r in rows] == ["a/x.jpg", "a/y.jpg"]
    assert rows[0]["pose"] == {"yaw": None}  # NaN is not JSON: written as null
    assert path.read_text().count("\n") == 2


def test_torn_last_line_is_skipped_and_cut_before_appending(tmp_path: Path) -> None:
    path = tmp_path / "manifest.jsonl"
    path.write_text(json.dumps({"input": "a", "status": "ok"}) + "\n" + '{"input": "b", "sta')
    assert [r["input"] for r in read_manifest(path)] == ["a"]
    with ManifestWriter(path) as manifest:
        manifest.append({"input": "b", "status": "ok"})
    assert [r["input"] for r in read_manifest(path)] == ["a", "b"]
    assert path.read_text().splitlines()[1] == '{"input": "b", "status": "ok"}'
    assert repair_torn_tail(path) is False


def test_latest_row_per_input_wins(tmp_path: Path) -> None:
    rows = [{"input": "a", "status": "stage_error"}, {"input": "b", "status": "ok"}, {"input": "a", "status": "ok"}]
    latest = latest_rows(rows)
    assert list(latest) == ["a", "b"] and latest["a"]["status"] == "ok"
    shard = tmp_path / "shard.jsonl"
    shard.write_text('{"input": "c", "status": "ok"}\nnot json\n{"no_input": 1}\n')
    assert [r["input"] for r in read_manifest(tmp_path / "missing.jsonl", shard)] == ["c"]


def test_concurrent_appends_keep_whole_lines(tmp_path: Path) -> None:
    path = tmp_path / "manifest.jsonl"
    with ManifestWriter(path, durable=False) as manifest:
        threads = [threading.Thread(target=lambda k=k: [manifest.append({"input": f"{k}-{i}", "status": "ok"})
                                                        for i in range(50)]) for k in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert len(read_manifest(path)) == 200


def test_csv_export_flattens_nested_fields(tmp_path: Path) -> None:
    rows = [
        {"input": "a", "status": "ok", "reason": "", "source_pose": {"yaw": 12.5, "pitch": 1.0},
         "outputs": {"base": {"crop": "base/a.png"}}, "other_faces": [{"face_index": 1}]},
        {"input": "b", "status": "decode_error", "reason": "empty file (0 bytes)", "source_pose": None},
    ]
    assert flatten_row(rows[0])["outputs.base.crop"] == "base/a.png"
    target = tmp_path / "manifest.csv"
    assert export_csv(rows, target) == 2
    with open(target, newline="") as handle:
        table = list(csv.DictReader(handle))
    assert list(table[0])[:3] == ["input", "status", "reason"]
    assert table[0]["source_pose.yaw"] == "12.5" and table[0]["other_faces"] == '[{"face_index": 1}]'
    assert table[1]["source_pose"] == "" and table[1]["source_pose.yaw"] == ""
