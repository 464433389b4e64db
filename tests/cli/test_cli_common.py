"""Tests of the shared CLI conventions: exit codes, one-line errors, the run's log file, output folders, metadata."""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from frontalize.cli.common import (
    add_common_arguments,
    check_output_folder,
    exit_codes_help,
    load_config_from_args,
    run_cli,
    write_run_metadata,
)
from frontalize.cli.runlog import open_run_log
from frontalize.errors import EXIT_INTERNAL, ConfigError, DeviceError, InputError, WeightsMissingError


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
    [(ConfigError("f.yaml: a.b: bad"), 2), (DeviceError("no cuda"), 2), (InputError("no dataset"), 2),
     (WeightsMissingError("missing x"), 3), (KeyboardInterrupt(), 130)],
)
def test_errors_map_to_exit_codes_without_traceback(error: BaseException, code: int,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    def body(args: argparse.Namespace) -> int:
        raise error

    with caplog.at_level(logging.ERROR):
        assert run_cli(parser(), [], body) == code
    assert all(r.exc_info is None for r in caplog.records)


def _crash(log_file: Path | None) -> object:
    def body(args: argparse.Namespace) -> int:
        logging.getLogger("frontalize.test").info("before the crash")
        if log_file is not None:
            open_run_log(log_file)
        logging.getLogger("frontalize.test").info("log file open")
        raise RuntimeError("boom")

    return body


def test_internal_error_is_one_line_with_the_traceback_in_the_run_log(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    log_file = tmp_path / "out" / "run.log"
    assert run_cli(parser(), [], _crash(log_file)) == EXIT_INTERNAL == 70
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("ERROR")]
    assert len(lines) == 1 and "internal error" in lines[0] and str(log_file) in lines[0], err
    assert "Traceback" not in err
    text = log_file.read_text()
    # records from before the file was opened are kept, then the traceback of the crash
    assert text.index("before the crash") < text.index("log file open") < text.index("Traceback")
    assert 'raise RuntimeError("boom")' in text and "RuntimeError: boom" in text
    assert run_cli(parser(), [], _crash(log_file)) == 70  # a second run appends to the same file
    assert log_file.read_text().count("RuntimeError: boom") >= 2 and log_file.read_text().startswith(text)


def test_internal_error_before_the_log_file_is_known_goes_to_a_temp_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    assert run_cli(parser(), ["-q"], _crash(None)) == 70
    (fallback,) = tmp_path.glob("frontalize-t-*.log")
    assert str(fallback) in capsys.readouterr().err
    text = fallback.read_text()
    assert "before the crash" in text and "RuntimeError: boom" in text  # -q hides INFO here, not in the file


def test_debug_prints_the_traceback_and_keeps_the_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(parser(), ["--debug"], _crash(None)) == 70
    assert "Traceback" in capsys.readouterr().err


def test_usage_error_and_help_exit_codes() -> None:
    assert run_cli(parser(), ["--device", "gpu"], lambda a: 0) == 2
    assert run_cli(parser(), ["--help"], lambda a: 0) == 0


def test_exit_code_help_lists_every_code() -> None:
    for command in ("inference", "evaluate"):
        text = exit_codes_help(command)
        codes = [line.split()[0] for line in text.splitlines()[1:] if line[2:3].isdigit()]
        assert codes == (["0", "1", "2", "3", "70", "130"] if command == "inference" else ["0", "2", "3", "70", "130"])


def test_output_folder_checks(tmp_path: Path) -> None:
    in_the_way = tmp_path / "file.txt"
    in_the_way.write_text("x")
    for create in (False, True):
        with pytest.raises(ConfigError, match="a file is in the way"):
            check_output_folder(in_the_way, create=create)
        with pytest.raises(ConfigError, match="is a file, not a folder"):
            check_output_folder(in_the_way / "sub" / "out", create=create)
    fresh = tmp_path / "a" / "b"
    assert check_output_folder(fresh, create=False) == fresh and not (tmp_path / "a").exists()  # dry run: nothing
    check_output_folder(fresh, create=True)
    assert fresh.is_dir() and list(fresh.iterdir()) == []  # the write probe leaves nothing behind


def _deny_writes_under(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``folder`` behave as read-only for a process that would otherwise write anyway (root ignores the mode
    bits): ``os.access``, ``mkdir`` and the write probe fail with EACCES inside it, as the kernel would."""
    import errno
    import tempfile

    denied = os.path.realpath(folder)

    def inside(path: object) -> bool:
        text = os.path.realpath(os.fspath(path))  # type: ignore[arg-type]
        return text == denied or text.startswith(denied + os.sep)

    real_access, real_mkdir, real_temporary = os.access, Path.mkdir, tempfile.TemporaryFile

    def access(path: object, mode: int, *args: object, **kwargs: object) -> bool:
        return False if inside(path) and mode & os.W_OK else real_access(path, mode, *args, **kwargs)  # type: ignore[arg-type]

    def mkdir(self: Path, *args: object, **kwargs: object) -> None:
        if inside(self.parent):
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        real_mkdir(self, *args, **kwargs)  # type: ignore[arg-type]

    def temporary(*args: object, dir: object = None, **kwargs: object) -> object:
        if dir is not None and inside(dir):
            raise PermissionError(errno.EACCES, "Permission denied", str(dir))
        return real_temporary(*args, dir=dir, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(os, "access", access)
    monkeypatch.setattr(Path, "mkdir", mkdir)
    monkeypatch.setattr(tempfile, "TemporaryFile", temporary)


def test_read_only_output_parent_is_a_user_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(0o555)
    if os.geteuid() == 0:  # root writes into read-only folders: make the kernel's refusal explicit
        _deny_writes_under(parent, monkeypatch)
    try:
        for create in (False, True):
            with pytest.raises(ConfigError, match=r"not writable|cannot be created"):
                check_output_folder(parent / "out", create=create)
        with pytest.raises(ConfigError, match="not writable"):
            check_output_folder(parent, create=False)
        assert not (parent / "out").exists()
    finally:
        monkeypatch.undo()
        parent.chmod(0o755)


def test_config_precedence(tmp_path: Path) -> None:
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("alpha: 0.5\ndevice: cpu\n")
    args = parser().parse_args(["--config", str(cfg_file), "--set", "alpha=0.25", "--weights-dir", "W"])
    cfg = load_config_from_args(args, Cfg)
    assert (cfg.alpha, cfg.device, cfg.weights_dir) == (0.25, "cpu", "W")
    args = parser().parse_args(["--config", str(cfg_file), "--set", "device=cuda", "--device", "cpu"])
    assert load_config_from_args(args, Cfg).device == "cpu"


def test_run_metadata(tmp_path: Path) -> None:
    weights = {"lp_x": {"path": "/w/x.pth", "size": 3, "sha256": "ab"}}
    info_path = write_run_metadata(tmp_path / "out", Cfg(alpha=0.5), weights, extra={"n_inputs": 4})
    info = json.loads(info_path.read_text())
    assert info["version"] and info["weights"]["lp_x"]["sha256"] == "ab" and info["n_inputs"] == 4
    assert len(info["config_hash"]) == 16
    assert yaml.safe_load((tmp_path / "out" / "run_config.yaml").read_text())["alpha"] == 0.5
    info = json.loads(write_run_metadata(tmp_path / "out", Cfg(), weights, digest="0123abcd").read_text())
    assert info["config_hash"] == "0123abcd"
