"""The inference run: plan (inputs, weights, provenance, resume) then execute with the local executor.

:func:`plan_run` lists the inputs, checks the output folder, verifies every weight file the config needs (before
any image is read), computes the run hash, refuses an output folder holding results of another hash
(:mod:`frontalize.pipeline.provenance`) and decides what resume can skip. :func:`execute_run` builds the steps and
drives them: decode + detect run ahead on worker threads (bounded prefetch), the frontalizer runs network batches
on the main thread, paste-back + stages + encoding run behind it on worker threads, and each manifest row is
appended (with fsync) after its files are written. The summary counts the final status of every selected input;
the exit code is 1 when any of them failed.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from frontalize.config.inference import InferenceConfig
from frontalize.errors import ConfigError, FrontalizeError, OutputConflictError
from frontalize.io.atomic import remove_stale_temp_files
from frontalize.io.manifest import ManifestWriter, export_csv, latest_rows, read_manifest
from frontalize.pipeline.build import OUTPUT_KINDS, build_steps
from frontalize.pipeline.inputs import InputItem, check_output_location, discover_inputs
from frontalize.pipeline.outputs import OutputLayout
from frontalize.pipeline.plan import RunPlan
from frontalize.pipeline.pose import landmarks68_identity
from frontalize.pipeline.provenance import (
    check_no_foreign_results,
    hash_inputs,
    read_hash_record,
    run_hash,
    write_hash_record,
)
from frontalize.pipeline.requirements import LANDMARKS68_KEY, require_landmarks68, weight_requirements
from frontalize.pipeline.resume import SUCCESS_STATUSES, plan_resume
from frontalize.pipeline.shards import merge_shards, read_shard_rows
from frontalize.pipeline.steps import Steps
from frontalize.pipeline.workers import batch_by_weight, bounded_map
from frontalize.weights import VerifiedWeight, resolve_weights_root, verify_packaged, verify_weights

logger = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.jsonl"
CSV_NAME = "manifest.csv"


@dataclass
class RunSummary:
    """Outcome of a run.

    Attributes:
        counts: final status → number of selected inputs.
        processed: inputs processed in this run.
        already_done: inputs skipped because the manifest already had them.
        elapsed_s: wall time of the execution.
        manifest: path of the JSONL manifest.
        exit_code: 0 when every selected input succeeded, else 1.
    """

    counts: Counter[str] = field(default_factory=Counter)
    processed: int = 0
    already_done: int = 0
    elapsed_s: float = 0.0
    manifest: Path | None = None
    exit_code: int = 0


def plan_run(
    cfg: InferenceConfig,
    *,
    source_dir: str | Path | None,
    out_dir: str | Path,
    device: str = "cpu",
    overwrite: bool = False,
) -> RunPlan:
    """List inputs, verify weights, check the output folder's provenance and plan resume (no image is read).

    Raises:
        ConfigError: bad input selection (also one that matches nothing) or an output folder overlapping the
            inputs.
        OutputConflictError: without ``overwrite``, the output folder holds results made under another run hash,
            or output files with no record of what made them.
        WeightsMissingError: a weight file the config needs is missing or corrupt (every problem listed).
    """
    out_path = Path(out_dir).expanduser()
    if cfg.frontalizer.backend != "identity" and cfg.frontalizer.precision == "fp16" and not device.startswith("cuda"):
        raise ConfigError(f"frontalizer.precision: fp16 needs a CUDA device (got {device}); use fp32 or bf16")
    source_root, items = discover_inputs(source_dir, cfg.input)
    check_output_location(source_root, out_path)
    weights_root = resolve_weights_root(cfg.weights_dir)
    needs = weight_requirements(cfg, weights_root)
    keys = list(needs.keys)
    verified = verify_weights(keys, weights_root, allow_unverified=cfg.allow_unverified_weights) if keys else {}
    packaged = verify_packaged_files(needs.packaged, weights_root)
    if cfg.allow_unverified_weights and keys:
        logger.warning("UNVERIFIED WEIGHTS: checksums are not enforced; with test weights (make_test_weights.py) "
                       "every output is MEANINGLESS and only exercises the pipeline")
    inputs = hash_inputs(cfg, {**verified, **packaged}, pose_hash_inputs(needs.pose_source))
    digest = run_hash(inputs)
    # rows of manifest shards an interrupted Ray run left behind count as written (merged when the run starts)
    latest = latest_rows([*read_manifest(out_path / MANIFEST_NAME), *read_shard_rows(out_path)])
    if not overwrite:
        check_no_foreign_results(out_path, digest, inputs, latest)
        if not latest and not read_hash_record(out_path):
            _refuse_unrecorded_outputs(cfg, out_path, items)
    resume = plan_resume(items, latest, digest, overwrite=overwrite)
    return RunPlan(config=cfg, source_root=source_root, out_dir=out_path, items=tuple(items), resume=resume,
                   config_hash=digest, weights_root=weights_root, verified_weights=verified, device=device,
                   overwrite=overwrite, hash_inputs=inputs, pose_source=needs.pose_source,
                   packaged_weights=packaged)


def verify_packaged_files(keys: Sequence[str], weights_root: Path) -> dict[str, VerifiedWeight]:
    """Verify package-shipped files (size + sha256; the digest cached under the weights root when it exists).

    Raises:
        WeightsMissingError: a package is not installed (dlib for the 68-point landmarker included) or a file is
            missing or corrupt; the message names the install command.
    """
    found = {}
    for key in keys:
        if key == LANDMARKS68_KEY:
            require_landmarks68("the mesh backend or the landmarks68 pose source")
        found[key] = verify_packaged(key, root=weights_root if weights_root.is_dir() else None)
    return found


def pose_hash_inputs(pose_source: str | None) -> dict[str, Any]:
    """Run-hash entries of the pose source: its name and the estimator's settings (README "Resume")."""
    estimator = {"landmarks68": landmarks68_identity(), "motion_extractor": "motion_extractor"}.get(pose_source or "")
    return {"pose.source": pose_source, "pose.estimator": estimator}


def _refuse_unrecorded_outputs(cfg: InferenceConfig, out_dir: Path, items: Sequence[InputItem]) -> None:
    """Stop when output files of the selected inputs exist in a folder with no manifest and no hash record.

    Raises:
        OutputConflictError: such files exist (nothing tells which config or weights made them).
    """
    if not out_dir.is_dir():
        return
    layout = OutputLayout(out_dir=out_dir, trees=cfg.variant_plan(), kinds=OUTPUT_KINDS[cfg.output.kind],
                          fmt=cfg.output.format)
    found = sum(any(path.is_file() for path in layout.face_paths(item.output_stem)) for item in items)
    if found:
        raise OutputConflictError(
            f"output folder {out_dir} already holds outputs of {found} selected input(s) but no manifest.jsonl or "
            "config_hashes.json telling which config and weights made them: rerun with --overwrite to reprocess "
            "every input, or choose a new output folder (-o)")


def open_output_folder(plan: RunPlan) -> Path:
    """Prepare the output folder for execution (either executor), before any image is read.

    Creates it, removes temp files a killed run left, merges Ray shards into the manifest and records this
    run's hash in ``config_hashes.json`` (with the hashes of the rows of inputs this run does not redo).

    Returns:
        Path of the JSONL manifest.
    """
    manifest_path = plan.out_dir / MANIFEST_NAME
    plan.out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(plan.out_dir)
    merge_shards(plan.out_dir, manifest_path)
    selected = {item.rel for item in plan.items}
    others = Counter(str(row.get("config_hash")) for rel, row in latest_rows(read_manifest(manifest_path)).items()
                     if rel not in selected)
    foreign = sum(count for digest, count in others.items() if digest != plan.config_hash)
    if foreign:
        logger.warning("%d input(s) outside this run's selection keep results of another config in %s "
                       "(--overwrite replaces only the selected inputs)", foreign, plan.out_dir)
    write_hash_record(plan.out_dir, plan.config_hash, plan.hash_inputs, keep=others)
    return manifest_path


def skipped_existing_row(item: InputItem, config_hash_value: str) -> dict[str, Any]:
    """Manifest row of an input whose outputs already exist (kept without --overwrite)."""
    return {"input": item.rel, "status": "skipped_existing",
            "reason": "outputs already exist (kept; use --overwrite to replace them)", "face_index": 0,
            "outputs": {}, "config_hash": config_hash_value}


class _RowSink:
    """Appends rows to the manifest, updates progress and enforces ``on_error: abort``."""

    def __init__(self, manifest: ManifestWriter, bar: tqdm, abort_on_error: bool) -> None:
        self.manifest, self.bar, self.abort_on_error = manifest, bar, abort_on_error
        self.counts: Counter[str] = Counter()

    def __call__(self, row: dict[str, Any]) -> None:
        self.manifest.append(row)
        status = str(row["status"])
        self.counts[status] += 1
        self.bar.update(1)
        self.bar.set_postfix(ok=self.counts["ok"], failed=sum(self.counts.values()) - self.counts["ok"]
                             - self.counts["skipped_existing"], refresh=False)
        if status not in SUCCESS_STATUSES:
            logger.info("%s: %s: %s", row["input"], status, row.get("reason", ""))
            if self.abort_on_error:
                raise FrontalizeError(f"aborted on {row['input']}: {status}: {row.get('reason', '')} "
                                      "(run.on_error: abort)")


def _drive(todo: Sequence[InputItem], steps: Steps, sink: Callable[[dict[str, Any]], None], workers: int,
           prefetch: int) -> None:
    """Local executor: prefetch prepare on threads, frontalize in batches, finish on threads, rows in order."""
    prepare_pool = ThreadPoolExecutor(workers, thread_name_prefix="prepare") if workers else None
    finish_pool = ThreadPoolExecutor(workers, thread_name_prefix="finish") if workers else None
    pending: deque[Future[dict[str, Any]]] = deque()
    try:
        stream = bounded_map(steps.prepare, todo, prepare_pool, prefetch)
        for group in batch_by_weight(stream, steps.batch_size, lambda p: len(p.faces)):
            for rendered in steps.frontalize(group):
                if finish_pool is None:
                    sink(steps.finish(rendered))
                    continue
                pending.append(finish_pool.submit(steps.finish, rendered))
            while pending and (pending[0].done() or len(pending) > prefetch):
                sink(pending.popleft().result())
        while pending:
            sink(pending.popleft().result())
    finally:
        for pool in (prepare_pool, finish_pool):
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)


def execute_run(plan: RunPlan, steps: Steps | None = None) -> RunSummary:
    """Process the inputs of ``plan`` that are not done yet, then export the CSV and summarise.

    Args:
        plan: from :func:`plan_run`.
        steps: the step callables; None builds them from the plan (loads the models).

    Raises:
        FrontalizeError: ``run.on_error: abort`` and an input failed.
    """
    cfg = plan.config
    manifest_path = open_output_folder(plan)
    steps = steps or build_steps(plan)
    todo: list[InputItem] = []
    started = time.perf_counter()
    with ManifestWriter(manifest_path) as manifest, logging_redirect_tqdm(), tqdm(
        total=len(plan.resume.todo), unit="img", disable=not cfg.run.progress, dynamic_ncols=True,
        desc="frontalize",
    ) as bar:
        sink = _RowSink(manifest, bar, cfg.run.on_error == "abort")
        for item in plan.resume.todo:
            if not plan.overwrite and all(path.is_file() for path in steps.expected_outputs(item)):
                sink(skipped_existing_row(item, plan.config_hash))
            else:
                todo.append(item)
        _drive(todo, steps, sink, cfg.run.workers, cfg.run.prefetch)
    summary = summarise(plan, manifest_path)
    summary.processed = len(plan.resume.todo)
    summary.elapsed_s = time.perf_counter() - started
    if sink.counts["skipped_existing"]:
        logger.warning("%d input(s) kept their existing outputs (written under this run's hash by an interrupted "
                       "run); use --overwrite to replace them", sink.counts["skipped_existing"])
    log_summary(summary)
    return summary


def summarise(plan: RunPlan, manifest_path: Path) -> RunSummary:
    """Final status of every selected input from the manifest; exports the CSV next to it."""
    latest = latest_rows(read_manifest(manifest_path))
    export_csv(latest.values(), manifest_path.with_name(CSV_NAME))
    counts: Counter[str] = Counter()
    for item in plan.items:
        row = latest.get(item.rel)
        counts[str(row["status"]) if row else "missing"] += 1
    failed = sum(n for status, n in counts.items() if status not in SUCCESS_STATUSES)
    return RunSummary(counts=counts, already_done=len(plan.resume.done), manifest=manifest_path,
                      exit_code=1 if failed else 0)


def log_summary(summary: RunSummary) -> None:
    """One summary line: counts per status, throughput and where the manifest is."""
    total = sum(summary.counts.values())
    parts = ", ".join(f"{status} {count}" for status, count in sorted(summary.counts.items()))
    rate = summary.processed / summary.elapsed_s if summary.elapsed_s > 0 else 0.0
    logger.info("%d input(s): %s | processed now %d (%.2f img/s), already done %d | manifest %s",
                total, parts or "none", summary.processed, rate, summary.already_done, summary.manifest)
