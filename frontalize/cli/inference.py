"""``inference.py`` command line: batch face frontalization of a folder (resumable, with a manifest).

The only place that knows argv for inference. Precedence: dataclass defaults < ``--config`` YAML < ``--set`` <
explicit flags (``--frontalize``, ``--batch-size``, ...). Without ``--frontalize`` the run only crops/aligns
(the ``identity`` frontalizer).
"""

from __future__ import annotations

import argparse
import glob
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from frontalize.cli.common import (
    add_common_arguments,
    add_executor_arguments,
    check_output_folder,
    exit_codes_help,
    load_config_from_args,
    print_config,
    run_cli,
    write_run_metadata,
)
from frontalize.cli.runlog import open_run_log
from frontalize.config.inference import InferenceConfig
from frontalize.config.schema import dump_config_yaml, with_value
from frontalize.devices import model_devices, resolve_device
from frontalize.errors import ConfigError
from frontalize.io.images import IMAGE_EXTENSIONS
from frontalize.pipeline import executor_ray
from frontalize.pipeline.plan import RunPlan
from frontalize.pipeline.runner import execute_run, plan_run
from frontalize.ray_support import import_ray

logger = logging.getLogger(__name__)

FRONTALIZERS = ("liveportrait", "mesh")
"""Values of ``--frontalize BACKEND`` (``--frontalize`` alone = liveportrait)."""

LOG_NAME = "inference.log"
"""The run's log file in the output folder (every run appends; internal errors leave their traceback there)."""

_EPILOG = f"""\
examples:
  python inference.py --source_dir DATA --source_pattern "*.png" -o OUT --frontalize          (LivePortrait)
  python inference.py --config configs/offline.yaml --source_dir DATA --recursive -o OUT --frontalize mesh
                                                                          (geometric, offline, no download)
  python inference.py --config configs/offline.yaml --source_dir DATA --recursive -o OUT      (crop/align only)
  python inference.py --config configs/examples/variants.yaml --source_dir DATA -o OUT --frontalize
  python inference.py --source_dir DATA -o OUT --frontalize --set guard.enabled=true --guard-dump   (identity guard)

outputs: OUT/[VARIANT/][crop|full/]<input path>.png mirrors the input tree; OUT/manifest.jsonl (+ .csv) has one
row per input (status, reason, source/output poses and their pose_source, outputs, timings); OUT/inference.log is
the log of every run.
resume: rerunning skips inputs already done under the same run hash (the config keys that change outputs,
input.max_pixels included, plus the checksum of every weight file loaded, or "unverified"). When OUT holds
results of another hash the run stops before any image (exit 2) naming the keys that differ: use --overwrite
or a new -o folder.

{exit_codes_help("inference")}
"""


def build_parser() -> argparse.ArgumentParser:
    """The ``inference.py`` argument parser (every option documented in ``--help``)."""
    parser = argparse.ArgumentParser(
        prog="inference.py",
        description="Frontalize every face image of a folder with LivePortrait (--frontalize) or the offline "
                    "geometric frontalizer (--frontalize mesh), or only crop and align them (default), writing a "
                    "mirrored output tree and a resumable manifest.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    io = parser.add_argument_group("inputs and outputs")
    io.add_argument("--source_dir", "--source-dir", dest="source_dir", metavar="DIR",
                    help="folder of input images (paths in the manifest and the output tree are relative to it)")
    io.add_argument("--input", dest="input", metavar="PATH",
                    help="alias accepting a folder, one image, a glob (quoted) or a list file (.txt)")
    io.add_argument("--source_pattern", "--source-pattern", dest="source_pattern", metavar="GLOB",
                    help="file-name glob, e.g. '*.png' (config input.pattern; default: all common image types)")
    io.add_argument("--recursive", action="store_true", default=None,
                    help="also search sub-folders (config input.recursive)")
    io.add_argument("--limit", type=int, metavar="N", help="process at most N inputs (config input.limit)")
    io.add_argument("--list-file", dest="list_file", metavar="FILE",
                    help="text file with one input path per line, relative to --source_dir (config input.list_file)")
    io.add_argument("-o", "--output", "--output_dir", dest="output", metavar="DIR",
                    help="output folder (must not overlap the input tree)")
    io.add_argument("--overwrite", action="store_true",
                    help="reprocess every selected input and replace existing outputs, also when OUT holds results "
                         "of another config or other weights (default: resume; such a folder stops the run, exit 2)")
    run = parser.add_argument_group("processing")
    run.add_argument("--frontalize", nargs="?", const="liveportrait", choices=FRONTALIZERS, metavar="BACKEND",
                     help="frontalize (config frontalizer.backend): alone or 'liveportrait' = LivePortrait (needs its "
                          "weights); 'mesh' = the geometric 3D-model frontalizer, offline (pip install .[offline]); "
                          "without --frontalize the run only crops/aligns (identity frontalizer)")
    run.add_argument("--batch-size", dest="batch_size", type=int, metavar="N",
                     help="faces per network batch (config frontalizer.batch_size)")
    run.add_argument("--workers", type=int, metavar="N",
                     help="decode/detect/encode threads working around the network (config run.workers)")
    run.add_argument("--on-error", dest="on_error", choices=("skip", "abort"),
                     help="a failing input: record it and go on (skip), or stop (abort) (config run.on_error)")
    run.add_argument("--no-progress", dest="progress", action="store_false", default=None,
                     help="no progress bar (config run.progress)")
    run.add_argument("--allow-unverified-weights", dest="allow_unverified", action="store_true",
                     help="only require weight files to exist, without checksums (for make_test_weights.py "
                          "output; results are then meaningless)")
    run.add_argument("--guard-dump", dest="guard_dump", action="store_true",
                     help="with the identity guard (--set guard.enabled=true): also write every candidate to "
                          "OUT/_guard/<input>/<candidate>.png (config guard.dump)")
    add_executor_arguments(run, "Ray Data tasks and actors, same outputs and manifest")
    run.add_argument("--dry-run", dest="dry_run", action="store_true",
                     help="validate the config and weights, list the inputs and what resume would do, then exit")
    add_common_arguments(parser)
    return parser


def _input_alias(value: str) -> dict[str, Any]:
    """Interpret ``--input``: folder, single image, glob or list file → source_dir / pattern / list_file."""
    path = Path(value).expanduser()
    if path.is_dir():
        return {"source_dir": str(path)}
    if glob.has_magic(value):
        parts = Path(value).parts
        first = next(i for i, part in enumerate(parts) if glob.has_magic(part))
        root = Path(*parts[:first]) if first else Path(".")
        rest = "/".join(parts[first:])
        return {"source_dir": str(root), "pattern": rest.replace("**/", ""), "recursive": "/" in rest}
    if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS:
        return {"source_dir": str(path.parent), "pattern": glob.escape(path.name)}
    if path.is_file():
        return {"list_file": str(path)}
    raise ConfigError(f"--input {value}: no such folder, image, glob match or list file")


def _flag_overrides(args: argparse.Namespace) -> list[tuple[str, Any]]:
    """Config keys set by explicit flags (they win over YAML and --set)."""
    alias = _input_alias(args.input) if args.input else {}
    pairs: list[tuple[str, Any]] = [
        ("input.pattern", args.source_pattern if args.source_pattern is not None else alias.get("pattern")),
        ("input.recursive", args.recursive if args.recursive is not None else alias.get("recursive") or None),
        ("input.limit", args.limit),
        ("input.list_file", args.list_file if args.list_file is not None else alias.get("list_file")),
        ("frontalizer.backend", args.frontalize),
        ("frontalizer.batch_size", args.batch_size),
        ("run.workers", args.workers),
        ("run.on_error", args.on_error),
        ("run.progress", args.progress),
        ("executor", args.executor),
        ("ray.address", args.ray_address),
        ("allow_unverified_weights", True if args.allow_unverified else None),
        ("guard.dump", True if args.guard_dump else None),
    ]
    if args.source_dir is None and alias.get("source_dir"):
        args.source_dir = alias["source_dir"]
    return [(key, value) for key, value in pairs if value is not None]


def resolve_config(args: argparse.Namespace) -> InferenceConfig:
    """Config from defaults < YAML < --set < explicit flags."""
    cfg = load_config_from_args(args, InferenceConfig)
    for key, value in _flag_overrides(args):
        flag_source = "--" + key.rsplit(".", 1)[-1].replace("_", "-")
        cfg = with_value(cfg, key, value, source=flag_source)
    return cfg


def _print_dry_run(plan: RunPlan) -> None:
    """List every selected input and what a real run would do with it (stdout: the product of --dry-run)."""
    done = {str(row["input"]) for row in plan.resume.done}
    for item in plan.items:
        sys.stdout.write(f"{'done' if item.rel in done else 'todo'}\t{item.rel}\n")
    sys.stdout.flush()
    logger.info("dry run: %d input(s), %d to process, %d already done; config and %d weight file(s) OK",
                len(plan.items), len(plan.resume.todo), len(plan.resume.done), len(plan.verified_weights))


def _body(args: argparse.Namespace) -> int:
    cfg = resolve_config(args)
    if args.print_config:
        print_config(cfg)
        return 0
    if not args.output:
        raise ConfigError("-o/--output DIR is required")
    check_output_folder(args.output, create=False)
    device = resolve_device(cfg.device)
    if cfg.executor == "ray":
        import_ray()  # a missing optional package is a usage error before any work
    logger.debug("resolved config:\n%s", dump_config_yaml(cfg))
    plan = plan_run(cfg, source_dir=args.source_dir, out_dir=args.output, device=device, overwrite=args.overwrite)
    if args.dry_run:
        _print_dry_run(plan)
        return 0
    check_output_folder(plan.out_dir, create=True)
    try:
        open_run_log(plan.out_dir / LOG_NAME)
    except OSError as exc:
        raise ConfigError(f"cannot write the log file in {plan.out_dir} ({exc})") from exc
    if cfg.frontalizer.backend == "identity":
        logger.info("frontalizer: identity (crop/align only; add --frontalize mesh or --frontalize for LivePortrait)")
    placement = model_devices(device)
    logger.info("config hash %s, device %s (torch %s, onnx %s, dlib %s), %d input(s) (%d already done)",
                plan.config_hash, device, placement["torch"], placement["onnx"], placement["dlib"], len(plan.items),
                len(plan.resume.done))
    write_run_metadata(plan.out_dir, cfg, {**plan.verified_weights, **plan.packaged_weights}, digest=plan.config_hash,
                       extra={"source_dir": str(plan.source_root), "device": device, "model_devices": placement,
                              "pose_source": plan.pose_source, "hashed": dict(plan.hash_inputs)})
    if cfg.executor == "ray":
        return executor_ray.execute_run_ray(plan).exit_code
    return execute_run(plan).exit_code


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``inference.py`` with ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    return run_cli(build_parser(), argv, _body)
