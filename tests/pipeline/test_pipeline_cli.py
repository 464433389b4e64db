"""``inference.py`` command line: help, precedence, --input forms, dry run, usage errors and exit codes."""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from pipeline_helpers import OFFLINE_CONFIG, REPO_ROOT

from frontalize.cli.inference import build_parser


def test_help_documents_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    for action in parser._actions:
        if action.option_strings:
            assert action.help and action.help != argparse.SUPPRESS, action.option_strings
    with pytest.raises(SystemExit) as info:
        parser.parse_args(["--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--source_dir", "--source_pattern", "--input", "--recursive", "--limit", "--list-file", "--output",
                 "--overwrite", "--frontalize", "--dry-run", "--allow-unverified-weights", "--batch-size",
                 "--workers", "--config", "--set", "--print-config", "--device", "--weights-dir", "exit codes"):
        assert flag in text, flag


def test_precedence_defaults_yaml_set_flags(tmp_path: Path, run_cli: Callable[..., int],
                                            capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("frontalizer: {batch_size: 16, alpha: 0.5}\nrun: {workers: 3}\n")
    assert run_cli("--config", config, "--set", "frontalizer.batch_size=4", "--set", "run.workers=5",
                   "--workers", "1", "--frontalize", "--source_pattern", "*.png", "--print-config") == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["frontalizer"]["batch_size"] == 4  # --set beats YAML
    assert printed["frontalizer"]["alpha"] == 0.5  # YAML beats defaults
    assert printed["run"]["workers"] == 1  # explicit flag beats --set
    assert printed["frontalizer"]["backend"] == "liveportrait" and printed["input"]["pattern"] == "*.png"
    assert run_cli("--print-config") == 0
    assert yaml.safe_load(capsys.readouterr().out)["frontalizer"]["backend"] == "identity"


def test_frontalize_takes_an_optional_backend(run_cli: Callable[..., int], capsys: pytest.CaptureFixture[str]) -> None:
    backends = {}
    for flags in (["--frontalize"], ["--frontalize", "mesh"], ["--frontalize", "liveportrait"], []):
        assert run_cli(*flags, "--print-config") == 0
        backends[" ".join(flags)] = yaml.safe_load(capsys.readouterr().out)["frontalizer"]["backend"]
    assert backends == {"--frontalize": "liveportrait", "--frontalize mesh": "mesh",
                        "--frontalize liveportrait": "liveportrait", "": "identity"}
    assert run_cli("--frontalize", "meshh", "--print-config") == 2
    assert "invalid choice: 'meshh'" in capsys.readouterr().err
    help_text = " ".join(build_parser().format_help().split())
    assert "alone or 'liveportrait' = LivePortrait" in help_text and "'mesh' = the geometric" in help_text


def test_misspelled_keys_exit_2_with_a_suggestion(tmp_path: Path, run_cli: Callable[..., int],
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "typo.yaml"
    config.write_text("detection:\n  detecor: scrfd_10g\n")
    assert run_cli("--config", config, "--source_dir", tmp_path, "-o", tmp_path / "o") == 2
    err = capsys.readouterr().err
    assert "detection.detecor" in err and "did you mean 'detection.detector'" in err
    assert run_cli("--set", "frontalizer.bach_size=2", "--print-config") == 2
    assert "did you mean 'frontalizer.batch_size'" in capsys.readouterr().err


@pytest.fixture()
def small_tree(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    for rel in ("a/1.jpg", "a/2.png", "b/3.jpg"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"never decoded in a dry run")
    return root


def _dry(run_cli: Callable[..., int], capsys: pytest.CaptureFixture[str], *args: object) -> list[str]:
    assert run_cli("--config", OFFLINE_CONFIG, "--dry-run", *args) == 0
    return capsys.readouterr().out.splitlines()


def test_dry_run_and_input_forms(small_tree: Path, tmp_path: Path, run_cli: Callable[..., int],
                                 capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert _dry(run_cli, capsys, "--source_dir", small_tree, "--recursive", "-o", out) == [
        "todo\ta/1.jpg", "todo\ta/2.png", "todo\tb/3.jpg"]
    assert not out.exists()  # a dry run writes nothing
    assert _dry(run_cli, capsys, "--input", small_tree / "a", "-o", out) == ["todo\t1.jpg", "todo\t2.png"]
    assert _dry(run_cli, capsys, "--input", small_tree / "a" / "2.png", "-o", out) == ["todo\t2.png"]
    assert _dry(run_cli, capsys, "--input", f"{small_tree}/*/*.jpg", "-o", out) == ["todo\ta/1.jpg", "todo\tb/3.jpg"]
    listing = small_tree / "list.txt"
    listing.write_text("b/3.jpg\na/1.jpg\n")
    assert _dry(run_cli, capsys, "--input", listing, "-o", out) == ["todo\ta/1.jpg", "todo\tb/3.jpg"]
    assert _dry(run_cli, capsys, "--source_dir", small_tree, "--list-file", listing, "--limit", "1", "-o", out) == [
        "todo\ta/1.jpg"]


def test_usage_errors_exit_2(small_tree: Path, run_cli: Callable[..., int],
                             capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli("--config", OFFLINE_CONFIG, "--source_dir", small_tree) == 2  # no -o
    assert "--output" in capsys.readouterr().err
    assert run_cli("--config", OFFLINE_CONFIG, "--source_dir", small_tree, "--recursive", "-o",
                   small_tree / "out") == 2
    assert "overlaps" in capsys.readouterr().err
    assert run_cli("--config", OFFLINE_CONFIG, "--source_dir", small_tree / "missing", "-o", "o") == 2
    assert run_cli("--device", "tpu", "--print-config") == 2
    assert run_cli("--input", small_tree / "nothing_here", "-o", "o") == 2


@pytest.mark.cpu_only
def test_explicit_cuda_without_a_gpu_is_an_error(small_tree: Path, tmp_path: Path, run_cli: Callable[..., int]) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    assert run_cli("--config", OFFLINE_CONFIG, "--source_dir", small_tree, "-o", tmp_path / "o", "--device",
                   "cuda") == 2


def test_inference_script_dry_run_in_a_subprocess(small_tree: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "inference.py"), "--config", str(OFFLINE_CONFIG), "--source_dir",
         str(small_tree), "--source_pattern", "*.jpg", "--recursive", "-o", str(tmp_path / "o"), "--dry-run"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["todo\ta/1.jpg", "todo\tb/3.jpg"]
