"""Command-line conventions shared by ``inference.py`` and ``evaluate.py``.

The only module family that knows about ``argv``. It sets up logging (``-q``/``-v``/``--debug``), loads the
configuration (dataclass defaults < YAML < ``--set`` < explicit flags), resolves ``--device`` and turns every
:class:`~frontalize.errors.FrontalizeError` into one readable line and its exit code:

====  ==========================================
0     success
1     some inputs failed (the others were processed)
2     usage or configuration error
3     weights missing or corrupt
130   interrupted (Ctrl-C)
====  ==========================================
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import json
import logging
import platform
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from frontalize import __version__
from frontalize.config.schema import config_hash, dump_config_yaml, load_config, with_value
from frontalize.errors import DeviceError, FrontalizeError
from frontalize.io.atomic import atomic_write_text

T = TypeVar("T")
log = logging.getLogger("frontalize")

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, EXIT_WEIGHTS, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
EXIT_CODES_HELP = (
    "exit codes: 0 ok, 1 some inputs failed (all others processed), 2 usage/config error, "
    "3 weights missing or corrupt, 130 interrupted"
)
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
    out.add_argument("--debug", action="store_true", help="show full tracebacks on errors")


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


def configure_logging(verbosity: int = 0, debug: bool = False) -> None:
    """Configure the root logger: WARNING at -q, INFO by default, DEBUG at -v or --debug."""
    level = logging.DEBUG if debug or verbosity > 0 else logging.INFO if verbosity == 0 else logging.WARNING
    if verbosity < -1:
        level = logging.ERROR
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s" if not debug else
                                           "%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("PIL", "matplotlib", "urllib3", "numba", "filelock", "httpx"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


def run_cli(
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None,
    body: Callable[[argparse.Namespace], int],
) -> int:
    """Parse ``argv``, configure logging and run ``body``; errors become one log line and an exit code."""
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits itself on --help (0) and usage errors (2)
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    debug = bool(getattr(args, "debug", False))
    configure_logging(getattr(args, "verbose", 0) - getattr(args, "quiet", 0), debug)
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
    except Exception as exc:  # an internal bug: one line unless --debug
        if debug:
            raise
        log.error("internal error: %s: %s (rerun with --debug for the traceback)", type(exc).__name__, exc)
        return EXIT_SOME_FAILED


def resolve_device(spec: str) -> str:
    """Map auto/cpu/cuda/cuda:N to a concrete torch device string.

    Raises:
        DeviceError: CUDA was requested explicitly but is not available (never a silent CPU fallback).
    """
    if spec == "cpu":
        return "cpu"
    import torch  # local: torch is heavy and not every command needs it

    available = torch.cuda.is_available()
    if spec == "auto":
        return "cuda:0" if available else "cpu"
    if not available:
        raise DeviceError(f"--device {spec}: CUDA is not available on this machine (use --device cpu or auto)")
    index = int(spec.split(":", 1)[1]) if ":" in spec else 0
    if index >= torch.cuda.device_count():
        raise DeviceError(f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s) present")
    return f"cuda:{index}"


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
    config_exclude: Sequence[str] = (),
) -> Path:
    """Write ``run_config.yaml`` and ``run_info.json`` (version, config hash, weight checksums) into ``out_dir``.

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
        "config_hash": config_hash(cfg, exclude=config_exclude),
        "weights": {key: _weight_record(item) for key, item in (verified_weights or {}).items()},
    }
    if "torch" in sys.modules:
        info["torch"] = sys.modules["torch"].__version__
    info.update(extra or {})
    path = out / "run_info.json"
    atomic_write_text(path, json.dumps(info, indent=2, sort_keys=False, default=str) + "\n")
    return path
