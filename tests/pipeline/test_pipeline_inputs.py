"""Input discovery, output-location checks, resume planning and the local executor helpers."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from frontalize.config.inference import InputConfig
from frontalize.errors import ConfigError
from frontalize.pipeline.inputs import InputItem, check_output_location, discover_inputs
from frontalize.pipeline.resume import plan_resume
from frontalize.pipeline.workers import batch_by_weight, bounded_map


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    for rel in ("b/2.jpg", "b/1.PNG", "a/x.jpg", "a/x.png", "top.webp", "notes.txt", "a/deep/z.jpeg"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x")
    (root / "folder.jpg").mkdir()
    (root / "._top.jpg").write_bytes(b"resource fork")
    (root / ".hidden").mkdir()
    (root / ".hidden" / "h.jpg").write_bytes(b"x")
    return root


def _rels(items: list[InputItem]) -> list[str]:
    return [item.rel for item in items]


def test_default_pattern_recursive_sorted_and_limit(tree: Path) -> None:
    root, items = discover_inputs(tree, InputConfig(recursive=True))
    assert root == tree
    assert _rels(items) == ["a/deep/z.jpeg", "a/x.jpg", "a/x.png", "b/1.PNG", "b/2.jpg", "folder.jpg", "top.webp"]
    assert items[0].path == tree / "a" / "deep" / "z.jpeg"
    stems = {item.rel: item.output_stem for item in items}
    assert stems["a/x.jpg"] == "a/x.jpg" and stems["a/x.png"] == "a/x.png"  # would collide: suffix kept
    assert stems["b/2.jpg"] == "b/2" and stems["a/deep/z.jpeg"] == "a/deep/z"
    _, limited = discover_inputs(tree, InputConfig(recursive=True, limit=2))
    assert _rels(limited) == ["a/deep/z.jpeg", "a/x.jpg"] and limited[1].output_stem == "a/x.jpg"


def test_pattern_and_non_recursive(tree: Path) -> None:
    assert _rels(discover_inputs(tree, InputConfig())[1]) == ["folder.jpg", "top.webp"]
    assert _rels(discover_inputs(tree, InputConfig(pattern="*.jpg", recursive=True))[1]) == [
        "a/x.jpg", "b/2.jpg", "folder.jpg"]
    assert _rels(discover_inputs(tree, InputConfig(pattern="b/*", recursive=True))[1]) == ["b/1.PNG", "b/2.jpg"]


def test_list_file(tree: Path, tmp_path: Path) -> None:
    listing = tmp_path / "list.txt"
    listing.write_text("# comment\nb/2.jpg\n\n  a/x.jpg  \nb/2.jpg\nmissing.jpg\n")
    _, items = discover_inputs(tree, InputConfig(list_file=str(listing)))
    assert _rels(items) == ["a/x.jpg", "b/2.jpg", "missing.jpg"]  # missing files get a row later (unreadable)
    inside = tree / "list.txt"
    inside.write_text("b/2.jpg\n")
    root, items = discover_inputs(None, InputConfig(list_file=str(inside)))
    assert root == tree and _rels(items) == ["b/2.jpg"]
    listing.write_text("../outside.jpg\n")
    with pytest.raises(ConfigError, match="outside the source folder"):
        discover_inputs(tree, InputConfig(list_file=str(listing)))


def test_missing_sources_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no input"):
        discover_inputs(None, InputConfig())
    with pytest.raises(ConfigError, match="does not exist"):
        discover_inputs(tmp_path / "nope", InputConfig())


def test_output_may_not_overlap_input(tree: Path, tmp_path: Path) -> None:
    check_output_location(tree, tmp_path / "out")
    for bad in (tree, tree / "out", tmp_path):
        with pytest.raises(ConfigError, match="overlaps"):
            check_output_location(tree, bad)


def test_plan_resume() -> None:
    items = [InputItem(Path(f"/d/{n}"), n, n) for n in ("a", "b", "c", "d")]
    latest = {"a": {"input": "a", "status": "ok", "config_hash": "h"},
              "b": {"input": "b", "status": "no_face", "config_hash": "h"},
              "c": {"input": "c", "status": "ok", "config_hash": "other"},
              "d": {"input": "d", "status": "stage_error", "config_hash": "h"}}
    plan = plan_resume(items, latest, "h")
    assert [i.rel for i in plan.todo] == ["c", "d"] and [r["input"] for r in plan.done] == ["a", "b"]
    assert len(plan_resume(items, latest, "h", overwrite=True).todo) == 4


def test_bounded_map_keeps_order_and_bounds_work_in_flight() -> None:
    running, peak = 0, 0
    lock = threading.Lock()

    def work(value: int) -> int:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.002 * (value % 3))
        with lock:
            running -= 1
        return value * 10

    consumed: list[int] = []
    with ThreadPoolExecutor(4) as pool:
        for result in bounded_map(work, range(40), pool, max_in_flight=3):
            consumed.append(result)
    assert consumed == [v * 10 for v in range(40)] and peak <= 3
    assert list(bounded_map(work, range(5), None, 2)) == [0, 10, 20, 30, 40]


def test_batch_by_weight() -> None:
    weights = [2, 0, 1, 3, 0, 0, 1]
    groups = list(batch_by_weight(range(len(weights)), 3, lambda i: weights[i]))
    assert groups == [[0, 1, 2], [3], [4, 5, 6]]
    assert list(batch_by_weight(range(10), 3, lambda i: 0, max_items=4)) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
