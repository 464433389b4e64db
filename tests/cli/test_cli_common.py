"""Tests of the shared CLI conventions: exit codes, one-line errors, device resolution, run metadata."""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml

from frontalize.cli.common import (
    add_common_arguments,
    load_config_from_args,
    resolve_device,
    run_cli,
    write_run_metadata,
)
from frontalize.errors import ConfigError, DeviceError, WeightsMissingError


@dataclass(frozen=True)
class Cfg:
    device: str = "auto"
    weights_dir: str | None = None
    alpha: float = 1.0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="t")
    add_common_arguments(p)
    return p


@pytest.mark.parametrize(
    ("error", "code"),
    [(ConfigError("f.yaml: a.b: bad"), 2), (WeightsMissingError("missing x"), 3), (KeyboardInterrupt(), 130),
     (RuntimeError("boom"), 1)],
)
def test_errors_map_to_exit_codes_without_traceback(error: BaseException, code: int,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    def body(args: argparse.Namespace) -> int:
        raise error

    with caplog.at_level(logging.ERROR):
        assert run_cli(parser(), [], body) == code
    assert all(r.exc_info is None for r in caplog.records)


def test_usage_error_and_help_exit_codes() -> None:
    assert run_cli(parser(), ["--device", "gpu"], lambda a: 0) == 2
    assert run_cli(parser(), ["--help"], lambda a: 0) == 0


def test_debug_reraises_internal_errors() -> None:
    def body(args: argparse.Namespace) -> int:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        run_cli(parser(), ["--debug"], body)


def test_config_precedence(tmp_path: Path) -> None:
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("alpha: 0.5\ndevice: cpu\n")
    args = parser().parse_args(["--config", str(cfg_file), "--set", "alpha=0.25", "--weights-dir", "W"])
    cfg = load_config_from_args(args, Cfg)
    assert (cfg.alpha, cfg.device, cfg.weights_dir) == (0.25, "cpu", "W")
    args = parser().parse_args(["--config", str(cfg_file), "--set", "device=cuda", "--device", "cpu"])
    assert load_config_from_args(args, Cfg).device == "cpu"


def test_device_resolution() -> None:
    assert resolve_device("cpu") == "cpu"
    if not torch.cuda.is_available():
        assert resolve_device("auto") == "cpu"
        with pytest.raises(DeviceError, match="CUDA is not available"):
            resolve_device("cuda")
        with pytest.raises(DeviceError):
            resolve_device("cuda:1")


def test_run_metadata(tmp_path: Path) -> None:
    weights = {"lp_x": {"path": "/w/x.pth", "size": 3, "sha256": "ab"}}
    info_path = write_run_metadata(tmp_path / "out", Cfg(alpha=0.5), weights, extra={"n_inputs": 4})
    info = json.loads(info_path.read_text())
    assert info["version"] and info["weights"]["lp_x"]["sha256"] == "ab" and info["n_inputs"] == 4
    assert yaml.safe_load((tmp_path / "out" / "run_config.yaml").read_text())["alpha"] == 0.5
