"""Ray executor of the inference pipeline (``executor: ray``): the same steps as the local executor, on Ray Data.

The inputs still to process become a Ray Dataset of ``(path, rel, output_stem)`` rows and flow through three
``map_batches`` operators that drive the pipeline's own step callables:

1. :func:`prepare_batch` — decode + detect + crop (:class:`~frontalize.pipeline.steps.PrepareStep`) as CPU tasks;
2. :class:`FrontalizeActor` — the frontalizer backend (with the identity guard when configured) in a fixed pool
   of actors, one GPU each on CUDA (CPU actors otherwise), ``ray.batch_size`` inputs per call;
3. :func:`finish_batch` — paste-back + stages + encode + atomic writes
   (:class:`~frontalize.pipeline.outputs.FinishStep`) as CPU tasks; each task writes the manifest rows of its
   batch as one atomic shard (:mod:`frontalize.pipeline.shards`) after the images.

Records travel between operators as pickled bytes (plain dataclasses of numpy arrays). Every worker verifies the
weight files it loads (registry sizes and checksums) before its first batch; inputs, outputs and weights are
read and written by path, so they must sit on a file system every node sees at the same paths.

Faults: a task whose worker process died is retried (``ray.max_retries``); an actor whose process died is
restarted (``ray.max_restarts``) and its call retried. Images are written atomically, so a retry rewrites them
whole, and the driver merges the shards keeping one row per input, so the manifest ends with every input exactly
once. The driver merges at the end of the run (also when it stops on an error), and the next run merges shards a
killed driver left behind before planning resume — exactly the resume of the local executor.

Stopping (Ctrl-C, ``run.on_error: abort``, an error): the driver closes its iterator over the results, which makes
Ray Data stop the execution (it cancels the running tasks — killing their processes — and kills the actors), but
Ray does not wait for the cancelled tasks to end. So the driver then waits on the run's write gate
(:func:`~frontalize.pipeline.shards.close_gate`) until no finish task is still writing, and only then merges the
shards and returns: nothing of the run is written into the output folder after that. A task killed in the middle
of a batch may leave images without their rows; the next run keeps them (``skipped_existing``), as after a kill.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import pickle
import socket
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from frontalize.errors import ConfigError, FrontalizeError
from frontalize.faces.registry import LANDMARKER106_KEYS, detector_weight_keys
from frontalize.io.manifest import ManifestWriter
from frontalize.pipeline.build import build_finish_step, build_frontalize_batch, build_layout, build_prepare_step
from frontalize.pipeline.inputs import InputItem
from frontalize.pipeline.plan import RunPlan
from frontalize.pipeline.requirements import DETECTOR_CHAINS
from frontalize.pipeline.resume import SUCCESS_STATUSES, ResumePlan
from frontalize.pipeline.runner import (
    MANIFEST_NAME,
    RunSummary,
    log_summary,
    open_output_folder,
    skipped_existing_row,
    summarise,
)
from frontalize.pipeline.shards import close_gate, gate_pass, gate_path, merge_shards, open_gate, shard_dir, write_shard
from frontalize.ray_support import (
    actor_device,
    actor_options,
    check_capacity,
    frontalize_cause,
    import_ray,
    map_batches,
    ray_session,
    task_options,
    verify_worker_weights,
)
from frontalize.stages.registry import stage_weight_keys

logger = logging.getLogger(__name__)

Batch = Mapping[str, Any]
"""A Ray Data batch in ``numpy`` format: column name → array (strings, or pickled records as bytes)."""

PICKLE_PROTOCOL = 5


@dataclass(frozen=True)
class RayJob:
    """What every Ray worker of a run receives (small and picklable).

    Attributes:
        plan: the run plan without its input list (workers get inputs through the dataset).
        run_id: unique per execution; keys the models each worker process builds once.
        shard_dir: folder of the manifest shards.
        gate: the run's write gate (:mod:`frontalize.pipeline.shards`): finish tasks write only while it is open.
        actor_device: torch device inside a frontalizer actor (``cuda:0`` of its GPU, or ``cpu``).
        weight_keys: registry keys each role verifies and loads (``prepare``, ``frontalize``, ``finish``).
    """

    plan: RunPlan
    run_id: str
    shard_dir: Path
    gate: Path
    actor_device: str
    weight_keys: Mapping[str, tuple[str, ...]]


def role_weight_keys(plan: RunPlan) -> dict[str, tuple[str, ...]]:
    """Weight keys per worker role: the detector chain (prepare), the stages (finish), every key (frontalize —
    the backend and guard may share files with the others, so the model actor checks the whole set)."""
    cfg = plan.config
    detector, landmarks = DETECTOR_CHAINS[cfg.detection.detector]
    prepare = (*detector_weight_keys(detector), *(LANDMARKER106_KEYS if landmarks else ()))
    finish = tuple(key for name in cfg.used_stages() for key in stage_weight_keys(name, cfg.stages))
    return {"prepare": tuple(dict.fromkeys(prepare)), "finish": tuple(dict.fromkeys(finish)),
            "frontalize": tuple(plan.verified_weights)}


def make_job(plan: RunPlan) -> RayJob:
    """The :class:`RayJob` of a plan."""
    lean = dataclasses.replace(plan, items=(), resume=ResumePlan(todo=(), done=()))
    run_id = uuid.uuid4().hex
    return RayJob(plan=lean, run_id=run_id, shard_dir=shard_dir(plan.out_dir), gate=gate_path(plan.out_dir, run_id),
                  actor_device=actor_device(plan.config.ray, plan.device), weight_keys=role_weight_keys(plan))


_WORKER_STEPS: dict[tuple[str, str], Callable[..., Any]] = {}
"""Steps built in this worker process, by (role, run id): Ray reuses worker processes across tasks, so the
detector / stages load once per process instead of once per batch."""


def _worker_step(role: str, job: RayJob, device: str, build: Callable[[RunPlan], Callable[..., Any]]) -> Any:
    """The step of ``role`` in this process, verified and built on first use."""
    key = (role, job.run_id)
    step = _WORKER_STEPS.get(key)
    if step is None:
        for old in [k for k in _WORKER_STEPS if k[1] != job.run_id]:
            del _WORKER_STEPS[old]
        verify_worker_weights(job.weight_keys[role], job.plan.weights_root,
                              allow_unverified=job.plan.config.allow_unverified_weights, role=role)
        step = build(dataclasses.replace(job.plan, device=device))
        _WORKER_STEPS[key] = step
    return step


def _dump(record: object) -> bytes:
    return pickle.dumps(record, protocol=PICKLE_PROTOCOL)


def _load(data: bytes | np.bytes_) -> Any:
    return pickle.loads(bytes(data))  # trusted: records this run's own workers produced


def prepare_batch(batch: Batch, job: RayJob) -> dict[str, list[Any]]:
    """CPU task: decode + detect + crop a batch of inputs (columns ``path``, ``rel``, ``output_stem``).

    Returns:
        Columns ``input`` (relative paths) and ``record`` (pickled :class:`~frontalize.pipeline.records.Prepared`).
    """
    step = _worker_step("prepare", job, "cpu", build_prepare_step)
    items = [InputItem(path=Path(str(path)), rel=str(rel), output_stem=str(stem))
             for path, rel, stem in zip(batch["path"], batch["rel"], batch["output_stem"])]
    return {"input": [item.rel for item in items], "record": [_dump(step(item)) for item in items]}


class FrontalizeActor:
    """Model actor: frontalizes the prepared inputs of each batch (faces in network batches)."""

    def __init__(self, job: RayJob) -> None:
        """Args: job: the run (models are loaded on the first batch, see :meth:`step`)."""
        self.job = job
        self._step: Callable[[Sequence[Any]], list[Any]] | None = None

    def step(self) -> Callable[[Sequence[Any]], list[Any]]:
        """The frontalize step: weights verified and backend loaded on the actor's device at the first batch.

        Loading here rather than in the constructor lets a missing weight file reach the driver as our own
        error (Ray reports constructor failures as a bare "actor died") and spares pointless actor restarts.
        """
        if self._step is None:
            job = self.job
            verify_worker_weights(job.weight_keys["frontalize"], job.plan.weights_root,
                                  allow_unverified=job.plan.config.allow_unverified_weights, role="frontalize")
            self._step = build_frontalize_batch(dataclasses.replace(job.plan, device=job.actor_device))
        return self._step

    def __call__(self, batch: Batch) -> dict[str, list[Any]]:
        """Pickled Prepared records → pickled Rendered records (same order; failed inputs pass through)."""
        prepared = [_load(data) for data in batch["record"]]
        rendered = self.step()(prepared)
        return {"input": [str(rel) for rel in batch["input"]], "record": [_dump(item) for item in rendered]}


def finish_batch(batch: Batch, job: RayJob) -> dict[str, list[str]]:
    """CPU task: write the outputs of a batch of rendered inputs, then their manifest rows as one shard.

    The batch is written under the run's write gate, so a driver that stops the run waits for it.

    Returns:
        Columns ``input``, ``status``, ``reason`` (for the driver's progress and ``on_error: abort``).

    Raises:
        ConfigError: the gate is closed (the run was stopped: nobody reads this error) or this worker does not see
            the output folder.
    """
    step = _worker_step("finish", job, "cpu", build_finish_step)
    with gate_pass(job.gate) as admitted:
        if not admitted:
            raise ConfigError(f"Ray worker on {socket.gethostname()} (finish): the run was stopped, or this worker "
                              f"does not see the output folder (its write gate {job.gate} is not open here); the "
                              "output folder must be visible to every Ray worker at the same path")
        rows = [step(_load(data)) for data in batch["record"]]
        write_shard(job.shard_dir, rows)
    return {"input": [str(row["input"]) for row in rows], "status": [str(row["status"]) for row in rows],
            "reason": [str(row.get("reason", "")) for row in rows]}


def build_dataset(job: RayJob, todo: Sequence[InputItem], actor_class: type[FrontalizeActor] = FrontalizeActor) -> Any:
    """The lazy Ray Dataset of a run: inputs → prepare tasks → frontalizer actors → finish tasks.

    The three operators stay separate (different resources and retry options keep Ray Data from fusing them).
    """
    ray = import_ray()
    cfg = job.plan.config
    rows = [{"path": str(item.path), "rel": item.rel, "output_stem": item.output_stem} for item in todo]
    tasks = task_options(cfg.ray)
    blocks = max(1, math.ceil(len(rows) / cfg.ray.task_batch_size))
    dataset = ray.data.from_items(rows, override_num_blocks=blocks)
    dataset = map_batches(dataset, prepare_batch, fn_kwargs={"job": job}, batch_size=cfg.ray.task_batch_size,
                          batch_format="numpy", **tasks)
    dataset = map_batches(dataset, actor_class, fn_constructor_kwargs={"job": job}, batch_format="numpy",
                          batch_size=cfg.ray.batch_size or cfg.frontalizer.batch_size,
                          **actor_options(cfg.ray, job.plan.device))
    return map_batches(dataset, finish_batch, fn_kwargs={"job": job}, batch_size=cfg.ray.task_batch_size,
                       batch_format="numpy", **tasks)


@contextmanager
def _finish_results(dataset: Any) -> Iterator[Iterator[Batch]]:
    """Execute ``dataset``, yielding an iterator over its finish results; stop the execution when the block ends.

    Closing the iterator makes Ray Data shut the execution down at once (cancel the tasks, kill the actors) however
    the block ends; left to itself, Ray Data does so only when the iterator is garbage collected, which a traceback
    that keeps the consuming frame alive (a caller that catches the Ctrl-C) can put off indefinitely.
    """
    batches = iter(dataset.iter_batches(batch_size=None, batch_format="numpy"))
    try:
        yield batches
    finally:
        close = getattr(batches, "close", None)
        if close is not None:
            close()


def _drain(batches: Iterator[Batch], bar: tqdm, abort_on_error: bool) -> None:
    """Consume the finish results as they stream back: progress, failures logged, ``on_error: abort``."""
    for batch in batches:
        for rel, status, reason in zip(batch["input"], batch["status"], batch["reason"]):
            bar.update(1)
            if status in SUCCESS_STATUSES:
                continue
            logger.info("%s: %s: %s", rel, status, reason)
            if abort_on_error:
                raise FrontalizeError(f"aborted on {rel}: {status}: {reason} (run.on_error: abort)")


def _run_dataset(plan: RunPlan, todo: Sequence[InputItem], bar: tqdm,
                 actor_class: type[FrontalizeActor]) -> None:
    """Execute the dataset of ``todo`` on Ray; shards are merged into the manifest whatever happens, once no task
    of the run writes any more (see the module docstring, "Stopping")."""
    cfg = plan.config
    try:
        with ray_session(cfg.ray):
            check_capacity(cfg.ray, plan.device, cpu_tasks=True)
            job = make_job(plan)
            logger.info("ray: %d input(s), %d frontalizer actor(s) on %s, batches of %d", len(todo),
                        cfg.ray.actors, job.actor_device, cfg.ray.batch_size or cfg.frontalizer.batch_size)
            open_gate(job.gate)
            try:
                with _finish_results(build_dataset(job, todo, actor_class)) as batches:
                    _drain(batches, bar, cfg.run.on_error == "abort")
            finally:
                close_gate(job.gate)
    except Exception as exc:  # Ray wraps worker exceptions: surface ours (missing weights, ...) as they are
        cause = frontalize_cause(exc)
        if cause is None or cause is exc:
            raise
        raise cause from exc
    finally:
        merge_shards(plan.out_dir, plan.out_dir / MANIFEST_NAME, order=[item.rel for item in todo])


def execute_run_ray(plan: RunPlan, *, actor_class: type[FrontalizeActor] = FrontalizeActor) -> RunSummary:
    """Process the inputs of ``plan`` that are not done yet on Ray, then export the CSV and summarise.

    Same contract as :func:`frontalize.pipeline.runner.execute_run`: the same output tree, one manifest row per
    processed input (merged from the workers' shards, in input order), the same summary and exit code.

    Args:
        plan: from :func:`frontalize.pipeline.runner.plan_run` (its config's ``ray`` section is used).
        actor_class: the frontalizer actor class (a subclass can wrap ``__call__``, e.g. to inject faults).

    Raises:
        ConfigError: Ray is missing, unreachable, or too small for the requested actors.
        WeightsMissingError: a worker cannot see or verify a weight file.
        FrontalizeError: ``run.on_error: abort`` and an input failed.
    """
    cfg = plan.config
    manifest_path = open_output_folder(plan)
    started = time.perf_counter()
    layout = build_layout(plan)
    todo: list[InputItem] = []
    with logging_redirect_tqdm(), tqdm(total=len(plan.resume.todo), unit="img", disable=not cfg.run.progress,
                                       dynamic_ncols=True, desc="frontalize (ray)") as bar:
        with ManifestWriter(manifest_path) as manifest:
            for item in plan.resume.todo:
                if not plan.overwrite and all(path.is_file() for path in layout.face_paths(item.output_stem)):
                    manifest.append(skipped_existing_row(item, plan.config_hash))
                    bar.update(1)
                else:
                    todo.append(item)
        if todo:
            _run_dataset(plan, todo, bar, actor_class)
    summary = summarise(plan, manifest_path)
    summary.processed = len(plan.resume.todo)
    summary.elapsed_s = time.perf_counter() - started
    skipped = len(plan.resume.todo) - len(todo)
    if skipped:
        logger.warning("%d input(s) kept their existing outputs (written under this run's hash by an interrupted "
                       "run); use --overwrite to replace them", skipped)
    log_summary(summary)
    return summary
