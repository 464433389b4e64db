"""Command-line conventions shared by ``inference.py`` and ``evaluate.py``.

The only module family that knows about ``argv``. It sets up logging (``-q``/``-v``/``--debug``, the terminal and
the run's log file, :mod:`frontalize.cli.runlog`), loads the configuration (dataclass defaults < YAML < ``--set`` <
explicit flags), checks the output folder and turns every :class:`~frontalize.errors.FrontalizeError` into one
readable line and its exit code:

====  ============================================================================================================
0     success: every input ``ok`` or ``skipped_existing`` (evaluate.py: report written)
1     some inputs failed (the others were processed; see the manifest)
2     user error: usage, config, no input matched, output folder not creatable/writable or holding results of
      another config, missing dataset, unavailable device
3     weights missing or corrupt
70    internal error (a bug): one line here, the traceback in the run's log file
130   interrupted (Ctrl-C)
====  ============================================================================================================
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import json
import logging
import os
import platform
import re
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from frontalize import __version__
from frontalize.cli.runlog import RunLog, activated
from frontalize.config.schema import config_hash, dump_config_yaml, load_config, with_value
from frontalize.errors import (
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    ConfigError,
    FrontalizeError,
)
from frontalize.io.atomic import atomic_write_text

T = TypeVar("T")
log = logging.getLogger("frontalize")

_EXIT_LINES: dict[str, tuple[str, ...]] = {
    "inference": (
        "0   every input ok or skipped_existing",
        "1   some inputs failed (all others were processed; see OUT/manifest.jsonl)",
        "2   user error: bad option or config, nothing matched the inputs, an output folder that cannot be created or",
        "    written or that holds results of another config (or other weights), an unavailable device",
        "3   weights missing or corrupt (the message gives the download command)",
        "70  internal error (a bug): one line here, the traceback in OUT/inference.log (or the file the line names)",
        "130 interrupted",
    ),
    "evaluate": (
        "0   the report was written",
        "2   user error: bad option or config, a dataset or --frontal-dir without usable images, a report folder",
        "    that cannot be created or written, an unavailable device",
        "3   weights missing or corrupt (the message gives the download command)",
        "70  internal error (a bug): one line here, the traceback in REPORT/evaluate.log (or the file the line names)",
        "130 interrupted",
    ),
}


def exit_codes_help(command: str) -> str:
    """The exit-code table of ``command`` (``inference`` or ``evaluate``) for the ``--help`` epilog."""
    return "exit codes:\n" + "\n".join("  " + line for line in _EXIT_LINES[command])


_DEVICE_RE = re.compile(r"^(auto|cpu|cuda|cuda:\d+)$")


def device_spec(text: str) -> str:
    """argparse type for ``--device``: auto, cpu, cuda or cuda:N."""
    if not _DEVICE_RE.match(text):
        raise argparse.ArgumentTypeError(f"invalid device {text!r}: use auto, cpu, cuda or cuda:N")
    return text


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """Add --config, --set, --print-config, --device, --weights-dir, -q/-v and --debug to ``parser``."""
    cfg = parser.add_argument_group("configuration")
    cfg.add_argument("--config", metavar="FILE", help="YAML config file (defaults: the dataclass defaults)")
    cfg.add_argument(
        "--set", metavar="KEY=VALUE", action="append", default=[], dest="overrides",
        help="override one config value, e.g. --set frontalizer.alpha=0.5 (value parsed as YAML; repeatable)",
    )
    cfg.add_argument("--print-config", action="store_true", help="print the resolved config as YAML and exit")
    cfg.add_argument(
        "--device", type=device_spec, metavar="{auto,cpu,cuda,cuda:N}",
        help="compute device; an explicitly requested but missing device is an error (default: config 'device')",
    )
    cfg.add_argument(
        "--weights-dir", metavar="DIR",
        help="weights root (default: $FRONTALIZE_WEIGHTS, else ./pretrained_weights)",
    )
    out = parser.add_argument_group("logging")
    out.add_argument("-q", "--quiet", action="count", default=0, help="less output (repeatable)")
    out.add_argument("-v", "--verbose", action="count", default=0, help="more output (repeatable)")
    out.add_argument("--debug", action="store_true",
                     help="also print tracebacks on the terminal (an internal error always leaves its traceback in "
                          "the run's log file)")


def add_executor_arguments(group: argparse._ArgumentGroup, ray_runs: str) -> None:
    """Add --executor and --ray-address (config ``executor`` / ``ray.address``), shared by both CLIs.

    Args:
        group: the argument group to add them to.
        ray_runs: what ``--executor ray`` distributes, for the help text.
    """
    group.add_argument("--executor", choices=("local", "ray"),
                       help=f"local = this process; ray = {ray_runs}, on a local Ray or a cluster (pip install .[ray]) "
                            "(config executor)")
    group.add_argument("--ray-address", dest="ray_address", metavar="ADDRESS",
                       help="with --executor ray: 'auto' or host:port joins that cluster; default: start a local "
                            "Ray on this machine (config ray.address)")


class _TerminalFormatter(logging.Formatter):
    """Terminal lines without tracebacks (they go to the run's log file), unless ``--debug``."""

    def __init__(self, fmt: str, *, tracebacks: bool) -> None:
        super().__init__(fmt)
        self.tracebacks = tracebacks

    def format(self, record: logging.LogRecord) -> str:
        if self.tracebacks or not (record.exc_info or record.exc_text or record.stack_info):
            return super().format(record)
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        try:
            return super().format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved


def configure_logging(verbosity: int = 0, debug: bool = False, run_log: RunLog | None = None) -> None:
    """Configure the root logger: the terminal at WARNING (-q), INFO (default) or DEBUG (-v, --debug); the run's
    log file (``run_log``) gets INFO and above whatever the terminal shows."""
    level = logging.DEBUG if debug or verbosity > 0 else logging.INFO if verbosity == 0 else logging.WARNING
    if verbosity < -1:
        level = logging.ERROR
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(level)
    handler.setFormatter(_TerminalFormatter("%(levelname)s: %(message)s" if not debug else
                                            "%(asctime)s %(levelname)s %(name)s: %(message)s", tracebacks=debug))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    if run_log is not None:
        root.addHandler(run_log)
    root.setLevel(min(level, logging.INFO))
    for noisy in ("PIL", "matplotlib", "urllib3", "numba", "filelock", "httpx"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


def run_cli(
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None,
    body: Callable[[argparse.Namespace], int],
) -> int:
    """Parse ``argv``, configure logging and run ``body``; errors become one log line and an exit code.

    An unexpected exception (a bug) returns :data:`~frontalize.errors.EXIT_INTERNAL` with one terminal line that
    names the log file holding its traceback (``--debug`` also prints the traceback).
    """
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits itself on --help (0) and usage errors (2)
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    debug = bool(getattr(args, "debug", False))
    run_log = RunLog(Path(parser.prog).stem)
    configure_logging(getattr(args, "verbose", 0) - getattr(args, "quiet", 0), debug, run_log)
    with activated(run_log):
        return _run_body(body, args, run_log, debug)


def _run_body(body: Callable[[argparse.Namespace], int], args: argparse.Namespace, run_log: RunLog,
              debug: bool) -> int:
    try:
        return body(args)
    except FrontalizeError as exc:
        if debug:
            log.exception("%s", exc)
        else:
            log.error("%s", exc)
        return exc.exit_code
    except KeyboardInterrupt:
        log.error("interrupted")
        return EXIT_INTERRUPTED
    except Exception as exc:  # an internal bug: one line on the terminal, the traceback in the run's log file
        where = run_log.write_traceback(exc)
        saved = f"the traceback is in {where}" if where else "the traceback could not be saved; rerun with --debug"
        log.error("internal error (a bug in frontalize): %s: %s; %s", type(exc).__name__, exc, saved,
                  exc_info=exc if debug else None)
        return EXIT_INTERNAL


def check_output_folder(path: str | Path, *, create: bool) -> Path:
    """Make sure an output folder can be created and written (exit 2 otherwise); create it when ``create``.

    Without ``create`` (``--dry-run``) nothing is left behind: an existing folder is probed with a temporary file
    removed at once, a missing one needs its nearest existing parent to be a writable folder.

    Args:
        path: the folder.
        create: create it (with its parents).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ConfigError: a file is in the way, a parent is not a folder, or the folder (or the parent it would be
            created in) is not writable.
    """
    folder = Path(path).expanduser()
    absolute = Path(os.path.abspath(folder))
    if absolute.exists() and not absolute.is_dir():
        raise ConfigError(f"output folder {folder}: a file is in the way (it is not a folder)")
    if not absolute.is_dir():
        parent = next(p for p in absolute.parents if p.exists())
        if not parent.is_dir():
            raise ConfigError(f"output folder {folder} cannot be created: {parent} is a file, not a folder")
        if not create:
            if not os.access(parent, os.W_OK | os.X_OK):
                raise ConfigError(f"output folder {folder} cannot be created: {parent} is not writable")
            return folder
        try:
            absolute.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"output folder {folder} cannot be created ({exc.strerror or exc})") from exc
    try:
        tempfile.TemporaryFile(dir=absolute, prefix=".frontalize-write-test-").close()  # removed on close
    except OSError as exc:
        raise ConfigError(f"output folder {folder} is not writable ({exc.strerror or exc})") from exc
    return folder


def load_config_from_args(args: argparse.Namespace, cls: type[T], default_path: str | Path | None = None) -> T:
    """Load ``cls`` from ``--config`` (or ``default_path``) and ``--set``; apply --device/--weights-dir flags."""
    path = getattr(args, "config", None) or default_path
    cfg = load_config(cls, path, tuple(getattr(args, "overrides", ()) or ()))
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    if getattr(args, "device", None) and "device" in names:
        cfg = with_value(cfg, "device", args.device, source="--device")
    if getattr(args, "weights_dir", None) and "weights_dir" in names:
        cfg = with_value(cfg, "weights_dir", str(args.weights_dir), source="--weights-dir")
    return cfg


def print_config(cfg: Any) -> None:
    """Write the resolved config as YAML to stdout (the product output of --print-config)."""
    sys.stdout.write(dump_config_yaml(cfg))
    sys.stdout.flush()


def _weight_record(item: Any) -> dict[str, Any]:
    if isinstance(item, Mapping):
        return dict(item)
    return {name: str(getattr(item, name)) if name == "path" else getattr(item, name, None)
            for name in ("path", "size", "sha256")}


def write_run_metadata(
    out_dir: str | Path,
    cfg: Any,
    verified_weights: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
    digest: str | None = None,
) -> Path:
    """Write ``run_config.yaml`` and ``run_info.json`` (version, config hash, weight checksums) into ``out_dir``.

    Args:
        out_dir: output or report folder.
        cfg: the resolved config.
        verified_weights: weight files the run loads.
        extra: more ``run_info.json`` entries.
        digest: the run's hash (inference: the run hash resume compares); default: the hash of ``cfg``.

    Returns:
        Path of ``run_info.json``.
    """
    out = Path(out_dir)
    atomic_write_text(out / "run_config.yaml", dump_config_yaml(cfg))
    info: dict[str, Any] = {
        "package": "frontalize",
        "version": __version__,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "argv": list(sys.argv),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "config_hash": digest or config_hash(cfg),
        "weights": {key: _weight_record(item) for key, item in (verified_weights or {}).items()},
    }
    if "torch" in sys.modules:
        info["torch"] = sys.modules["torch"].__version__
    info.update(extra or {})
    path = out / "run_info.json"
    atomic_write_text(path, json.dumps(info, indent=2, sort_keys=False, default=str) + "\n")
    return path
