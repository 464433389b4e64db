"""``evaluate.py`` command line: identity preservation of frontalized output trees.

The only place that knows argv for evaluation. Precedence: dataclass defaults < ``--config`` YAML < ``--set`` <
explicit flags (``--layout``, ``--gt-dir``, ``--bootstrap-resamples``, ...).
"""

from __future__ import annotations

import argparse
import logging
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
from frontalize.config.evaluation import EvalConfig
from frontalize.config.schema import dump_config_yaml, with_value
from frontalize.devices import model_devices, resolve_device
from frontalize.errors import ConfigError
from frontalize.evaluation.embed import BatchRunner, local_runner
from frontalize.evaluation.embed_ray import RayEmbedRunner
from frontalize.evaluation.guard_report import GuardSection
from frontalize.evaluation.runner import EvaluationInputs, evaluate, verify_evaluation_weights
from frontalize.ray_support import import_ray
from frontalize.weights import resolve_weights_root

logger = logging.getLogger(__name__)

LOG_NAME = "evaluate.log"
"""The run's log file in the report folder (every run appends; internal errors leave their traceback there)."""

_EPILOG = f"""\
examples:
  python evaluate.py --config configs/eval.yaml --layout biwi --data BIWI --frontal-dir OUT -o REPORT
  python evaluate.py --config configs/eval-offline.yaml --layout generic --data DATA \\
      --frontal-dir OUT_BASE --frontal-dir OUT_GFPGAN -o REPORT

layouts: generic = DATA/ID/*.jpg (angled) + DATA/gt/ID.jpg, optional known poses (DATA/poses.csv, poses.json,
posed_views.json) and DATA/dataset_notes.txt; biwi = DATA/[hpdb/]NN/frame_NNNNN_rgb.png|.jpg|.jpeg +
frame_NNNNN_pose.txt; lfw = DATA/Name/Name_0001.jpg (GT = most frontal image per identity, optional --pairs
pairs.txt). Each --frontal-dir mirrors the angled inputs' relative paths (any extension); a folder holding variant
sub-trees gives one compared tree per variant.
pose (--pose or --set dataset.pose=...): the pose model run on every detected face: auto (1k3d68 when its file is
present, else landmarks68 with the offline extra, else keypoints; biwi: landmarks68 first), 1k3d68, landmarks68
(dlib 68 points + 3D mean shape) or keypoints (5-keypoint yaw proxy, no pitch). Every angle is in the project's
convention: pitch > 0 = looking down, yaw > 0 = face turned towards image left, roll > 0 = clockwise.
outputs: REPORT/report.md, REPORT/report.html (browsable, with REPORT/thumbs/), REPORT/summary.json,
REPORT/per_image.csv|jsonl (one row per tree x combination x angled image), REPORT/per_image_gt.csv|jsonl,
REPORT/tables/*.csv|json, REPORT/figures/*.png, REPORT/evaluate.log (the log of every run).
devices: the torch models on --device; the ONNX models on CUDA only with onnxruntime-gpu (else the CPU, said once);
dlib on the CPU.

{exit_codes_help("evaluate")}
"""


def build_parser() -> argparse.ArgumentParser:
    """The ``evaluate.py`` argument parser (every option documented in ``--help``)."""
    parser = argparse.ArgumentParser(
        prog="evaluate.py",
        description="Measure identity preservation: is Frontal↔GT more similar than Angle↔GT? Tables, "
                    "statistics and figures per output tree and detector × recognizer combination.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    io = parser.add_argument_group("inputs and outputs")
    io.add_argument("--layout", choices=("generic", "biwi", "lfw"),
                    help="dataset layout (config dataset.layout, default generic)")
    io.add_argument("--data", metavar="DIR", help="dataset folder (angled images and GT)")
    io.add_argument("--frontal-dir", "--frontal_dir", dest="frontal_dirs", action="append", default=[],
                    metavar="DIR", help="output folder of inference.py (repeat to compare several trees)")
    io.add_argument("-o", "--output", dest="output", metavar="DIR", help="report folder")
    io.add_argument("--gt-dir", dest="gt_dir", metavar="DIR",
                    help="GT folder (generic: default DATA/gt; biwi: <subject>.png files) (config dataset.gt_dir)")
    io.add_argument("--pairs", dest="pairs_file", metavar="FILE",
                    help="lfw: official pairs.txt for pair verification (config dataset.pairs_file)")
    io.add_argument("--kind", choices=("auto", "full", "crop"),
                    help="which inference output to score when both exist (config frontal.kind)")
    io.add_argument("--no-manifest", dest="use_manifest", action="store_false", default=None,
                    help="ignore OUT/manifest.jsonl (config frontal.use_manifest)")
    run = parser.add_argument_group("processing")
    run.add_argument("--pose", choices=("auto", "1k3d68", "landmarks68", "keypoints"),
                     help="pose model run on every detected face (config dataset.pose; see below)")
    run.add_argument("--retry", dest="retry", action="store_true", default=None,
                     help="pad / retry detection on tight crops (config detection.retry)")
    run.add_argument("--no-retry", dest="retry", action="store_false",
                     help="plain detection only (config detection.retry=false)")
    run.add_argument("--bootstrap-resamples", dest="bootstrap_resamples", type=int, metavar="N",
                     help="cluster-bootstrap resamples (config stats.bootstrap_resamples, default 9999)")
    run.add_argument("--batch-size", dest="batch_size", type=int, metavar="N",
                     help="images per detection/embedding batch (config run.batch_size)")
    run.add_argument("--cache-dir", dest="cache_dir", metavar="DIR",
                     help="embedding cache folder (config cache.dir; default $FRONTALIZE_CACHE or ~/.cache)")
    run.add_argument("--no-cache", dest="cache", action="store_false", default=None,
                     help="keep detections/embeddings in memory only (config cache.enabled=false)")
    run.add_argument("--no-figures", dest="figures", action="store_false", default=None,
                     help="skip the figures (config figures.enabled=false)")
    run.add_argument("--no-progress", dest="progress", action="store_false", default=None,
                     help="no progress bars (config run.progress)")
    add_executor_arguments(run, "the detection + embedding pass on Ray actors (statistics stay here)")
    run.add_argument("--allow-unverified-weights", dest="allow_unverified", action="store_true",
                     help="only require weight files to exist, without checksums (test weights)")
    add_common_arguments(parser)
    return parser


def _flag_overrides(args: argparse.Namespace) -> list[tuple[str, Any]]:
    """Config keys set by explicit flags (they win over YAML and --set)."""
    pairs: list[tuple[str, Any]] = [
        ("dataset.layout", args.layout),
        ("dataset.gt_dir", args.gt_dir),
        ("dataset.pairs_file", args.pairs_file),
        ("dataset.pose", args.pose),
        ("frontal.kind", args.kind),
        ("frontal.use_manifest", args.use_manifest),
        ("detection.retry", args.retry),
        ("stats.bootstrap_resamples", args.bootstrap_resamples),
        ("run.batch_size", args.batch_size),
        ("run.progress", args.progress),
        ("cache.dir", args.cache_dir),
        ("cache.enabled", args.cache),
        ("figures.enabled", args.figures),
        ("executor", args.executor),
        ("ray.address", args.ray_address),
        ("allow_unverified_weights", True if args.allow_unverified else None),
    ]
    return [(key, value) for key, value in pairs if value is not None]


def resolve_config(args: argparse.Namespace) -> EvalConfig:
    """Config from defaults < YAML < --set < explicit flags."""
    cfg = load_config_from_args(args, EvalConfig)
    for key, value in _flag_overrides(args):
        cfg = with_value(cfg, key, value, source="--" + key.rsplit(".", 1)[-1].replace("_", "-"))
    return cfg


def _batch_runner(cfg: EvalConfig) -> BatchRunner:
    """Executor of the detection + embedding pass: this process, or Ray actors (``executor: ray``)."""
    if cfg.executor == "local":
        return local_runner
    return RayEmbedRunner(cfg.ray, allow_unverified=cfg.allow_unverified_weights)


def _body(args: argparse.Namespace) -> int:
    cfg = resolve_config(args)
    if args.print_config:
        print_config(cfg)
        return 0
    missing = [flag for flag, value in (("--data", args.data), ("--frontal-dir", args.frontal_dirs),
                                        ("-o/--output", args.output)) if not value]
    if missing:
        raise ConfigError(f"missing required option(s): {', '.join(missing)} (see evaluate.py --help)")
    device = resolve_device(cfg.device)
    if cfg.executor == "ray":
        import_ray()  # a missing optional package is a usage error before any work
    check_output_folder(args.output, create=False)
    weights_root = resolve_weights_root(cfg.weights_dir)
    checked = verify_evaluation_weights(cfg, weights_root)  # exit 3 before the report folder is made
    report_dir = check_output_folder(args.output, create=True)
    try:
        open_run_log(report_dir / LOG_NAME)
    except OSError as exc:
        raise ConfigError(f"cannot write the log file in {report_dir} ({exc})") from exc
    logger.debug("resolved config:\n%s", dump_config_yaml(cfg))
    placement = model_devices(device)
    logger.info("device %s (torch %s, onnx %s, dlib %s)", device, placement["torch"], placement["onnx"],
                placement["dlib"])
    inputs = EvaluationInputs(Path(args.data), tuple(Path(p) for p in args.frontal_dirs), report_dir)
    results = evaluate(cfg, inputs, weights_root=weights_root, device=device, runner=_batch_runner(cfg),
                       sections=[GuardSection()], checked_weights=checked)
    write_run_metadata(inputs.out_dir, cfg, results.verified_weights,
                       extra={"data": str(inputs.data_dir), "frontal_dirs": [str(p) for p in inputs.frontal_dirs],
                              "device": device, "model_devices": placement})
    for combo in results.combinations:
        for arm in combo.arms:
            s = arm.summary
            gain = "n/a" if s["net_gain"] is None else f"{s['net_gain']:+.3f}"
            logger.info("%s · %s: net gain %s (n=%d, no face angled %d / frontal %d)", arm.arm.name, combo.label,
                        gain, s["n"], s["no_face_angle"], s["no_face_frontal"])
    logger.info("report: %s", inputs.out_dir / "report.md")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``evaluate.py`` with ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    return run_cli(build_parser(), argv, _body)
