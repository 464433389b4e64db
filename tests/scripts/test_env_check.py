"""One OpenCV and one ONNX Runtime distribution per environment (scripts/env_check.py, run by setup_env.sh)."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))

import env_check  # noqa: E402


def test_conflicts_keep_the_preferred_distribution() -> None:
    both = {"opencv-python": "5.1.0.95", "opencv-python-headless": "5.1.0.95", "onnxruntime": "1.32.0",
            "onnxruntime-gpu": "1.31.1", "numpy": "2.0"}
    conflicts = {c.family: c for c in env_check.find_conflicts(both)}
    assert conflicts["opencv"] == env_check.Conflict("opencv", "opencv-python", "5.1.0.95",
                                                      ("opencv-python-headless",))
    assert conflicts["onnxruntime"] == env_check.Conflict("onnxruntime", "onnxruntime-gpu", "1.31.1",
                                                           ("onnxruntime",))
    uninstall, reinstall = conflicts["onnxruntime"].commands("py")
    assert uninstall == ["py", "-m", "pip", "uninstall", "-y", "-q", "onnxruntime"]
    assert reinstall == ["py", "-m", "pip", "install", "-q", "--force-reinstall", "--no-deps",
                         "onnxruntime-gpu==1.31.1"]
    assert env_check.find_conflicts({"opencv-python-headless": "4.8", "onnxruntime": "1.2"}) == []


def test_project_names_the_opencv_distribution_its_dependencies_name() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    names = {r.split(">")[0].split("=")[0].split("[")[0].split(";")[0].strip() for r in requirements}
    assert "opencv-python" in names and "opencv-python-headless" not in names
    assert project["optional-dependencies"]["gpu"] == ["onnxruntime-gpu>=1.17"]
    assert "env_check.py --repair" in (REPO / "scripts" / "setup_env.sh").read_text()


def test_this_environment_has_one_opencv_and_one_onnxruntime() -> None:
    names = [name for family in env_check.FAMILIES.values() for name in family]
    installed = env_check.installed_versions(names)
    assert env_check.find_conflicts(installed) == [], (
        "run `python scripts/env_check.py --repair` (bash scripts/setup_env.sh does) to keep one distribution each")
    assert any(name.startswith("opencv") for name in installed) and any(n.startswith("onnxruntime") for n in installed)
