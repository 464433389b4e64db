"""Generic and LFW layouts: listing, GT rules, pose CSV, pairs.txt, layout dispatch errors."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from frontalize.datasets import LAYOUTS, assign_gt, load_dataset, rel_stem, select_most_frontal
from frontalize.datasets.base import ImageRef, Record
from frontalize.errors import ConfigError, InputError


def _image(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.zeros((4, 4, 3), np.uint8))
    return path


def test_rel_stem() -> None:
    assert rel_stem("a/b/x.jpg") == "a/b/x"
    assert rel_stem("x.tar.png") == "x.tar"
    assert rel_stem("a/.hidden") == "a/.hidden"
    assert rel_stem("noext") == "noext"


def test_generic_layout(tmp_path: Path) -> None:
    for rel in ("alice/1.jpg", "alice/2.PNG", "bob/1.jpg", "carol/1.jpg", "gt/alice.png", "gt/bob.jpg"):
        _image(tmp_path / rel)
    (tmp_path / "alice" / "notes.txt").write_text("x")
    (tmp_path / "poses.csv").write_text("rel,pitch,yaw,roll\nalice/1.jpg,1,20,0\n")
    dataset = load_dataset("generic", tmp_path)
    assert [(r.subject, r.image.rel) for r in dataset.records] == [
        ("alice", "alice/1.jpg"), ("alice", "alice/2.PNG"), ("bob", "bob/1.jpg"), ("carol", "carol/1.jpg")]
    assert dataset.records[0].pose is not None and dataset.records[0].pose.yaw == 20.0
    assert dataset.records[1].pose is None and dataset.pose_source == "none"
    assert set(dataset.gt) == {"alice", "bob"} and dataset.gt["bob"].image.rel == "gt/bob.jpg"
    assert any("carol" in note for note in dataset.notes)


def test_generic_errors(tmp_path: Path) -> None:
    _image(tmp_path / "alice" / "1.jpg")
    with pytest.raises(InputError, match="GT folder"):
        load_dataset("generic", tmp_path)
    _image(tmp_path / "gt" / "alice.jpg")
    _image(tmp_path / "gt" / "alice.png")
    with pytest.raises(InputError, match="two images"):
        load_dataset("generic", tmp_path)
    (tmp_path / "poses.csv").write_text("rel,pitch\nalice/1.jpg,x\n")
    (tmp_path / "gt" / "alice.png").unlink()
    with pytest.raises(InputError, match=r"poses\.csv:2"):
        load_dataset("generic", tmp_path)


def test_layout_dispatch_errors(tmp_path: Path) -> None:
    assert LAYOUTS == ("generic", "biwi", "lfw")
    with pytest.raises(ConfigError, match="unknown dataset layout"):
        load_dataset("cfp", tmp_path)
    with pytest.raises(ConfigError, match="only used by the lfw"):
        load_dataset("generic", tmp_path, pairs_file="pairs.txt")
    with pytest.raises(ConfigError, match="not used by the lfw"):
        load_dataset("lfw", tmp_path, gt_dir="gt")


def _lfw_tree(root: Path) -> None:
    for name, count in (("Ann_Lee", 3), ("Bo_Chan", 2), ("Cy_Solo", 1)):
        for i in range(1, count + 1):
            _image(root / name / f"{name}_{i:04d}.jpg")


def test_lfw_listing_and_gt_by_frontality(tmp_path: Path) -> None:
    _lfw_tree(tmp_path)
    dataset = load_dataset("lfw", tmp_path)
    assert dataset.gt == {} and len(dataset.records) == 5
    assert any("1 identities with fewer than 2" in n for n in dataset.notes)
    yaw = {"Ann_Lee_0001.jpg": 30.0, "Ann_Lee_0002.jpg": -4.0, "Ann_Lee_0003.jpg": 5.0,
           "Bo_Chan_0001.jpg": None, "Bo_Chan_0002.jpg": 12.0}
    chosen = assign_gt(dataset, lambda r: None if yaw[r.image.path.name] is None else abs(yaw[r.image.path.name]),
                       "test pose")
    assert chosen.gt["Ann_Lee"].image.path.name == "Ann_Lee_0002.jpg"
    assert chosen.gt["Bo_Chan"].image.path.name == "Bo_Chan_0002.jpg"  # the image without a face cannot be GT
    assert {r.image.path.name for r in chosen.records} == {"Ann_Lee_0001.jpg", "Ann_Lee_0003.jpg", "Bo_Chan_0001.jpg"}
    assert "test pose" in chosen.gt_rule


def test_select_most_frontal_ties_by_path() -> None:
    records = [Record("s", ImageRef(Path(f"/d/{n}"), n)) for n in ("b.jpg", "a.jpg")]
    gt, rest = select_most_frontal(records, lambda r: 1.0)
    assert gt["s"].image.rel == "a.jpg" and [r.image.rel for r in rest] == ["b.jpg"]


def test_lfw_pairs(tmp_path: Path) -> None:
    _lfw_tree(tmp_path)
    (tmp_path / "pairs.txt").write_text(
        "2\t2\nAnn_Lee\t1\t2\nBo_Chan\t1\t2\nAnn_Lee\t1\tBo_Chan\t2\nAnn_Lee\t3\tGhost_Name\t1\n"
        "Ann_Lee\t2\t3\nBo_Chan\t1\t2\nAnn_Lee\t2\tBo_Chan\t1\nAnn_Lee\t9\tBo_Chan\t1\n")
    dataset = load_dataset("lfw", tmp_path, pairs_file="pairs.txt")
    same = [(p.first.rel, p.second.rel, p.same, p.fold) for p in dataset.pairs]
    assert same[0] == ("Ann_Lee/Ann_Lee_0001.jpg", "Ann_Lee/Ann_Lee_0002.jpg", True, 0)
    assert same[2][2] is False and same[-1][3] == 1
    assert len(same) == 6 and any("2 pairs" in n for n in dataset.notes)
    (tmp_path / "bad.txt").write_text("1 1\nAnn_Lee 1\n")
    with pytest.raises(InputError, match=r"bad\.txt:2"):
        load_dataset("lfw", tmp_path, pairs_file="bad.txt")
    (tmp_path / "bad.txt").write_text("header\n")
    with pytest.raises(InputError, match="header"):
        load_dataset("lfw", tmp_path, pairs_file="bad.txt")
