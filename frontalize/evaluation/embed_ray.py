"""Ray executor of the evaluator's detection + embedding pass (``executor: ray``).

:class:`RayEmbedRunner` is a :data:`~frontalize.evaluation.embed.BatchRunner`: ``run_embedding_pass`` hands it the
planned :class:`~frontalize.evaluation.embed.ImageTask` batches and stores what it yields into the embedding cache
on the driver, exactly as with the local runner — the cache, the statistics, tables and figures never leave the
driver. The tasks become a Ray Dataset; a fixed pool of :class:`EmbedActor` (one GPU each on CUDA, CPU actors
otherwise) builds the models of the pass's picklable :class:`~frontalize.evaluation.embed.ModelSpec` once, after
verifying their weight files, and runs :class:`~frontalize.evaluation.embed.EmbedBatch` on each batch.

Faults: an actor whose process died is restarted and its batch retried (``ray.max_restarts``,
``ray.max_retries``); results are keyed by image content hash, so a batch computed twice is stored once.
Image files and weights are read by path: they must be visible to every node at the same paths.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import pickle
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from frontalize.config.ray_config import RayConfig
from frontalize.evaluation.embed_batch import EmbedBatch, ImageResult, ImageTask, ModelSpec
from frontalize.evaluation.poses import POSE_1K3D68
from frontalize.faces.registry import POSE68_KEYS, detector_weight_keys, recognizer_weight_keys
from frontalize.ray_support import (
    actor_device,
    actor_options,
    check_capacity,
    frontalize_cause,
    import_ray,
    map_batches,
    ray_session,
    verify_worker_weights,
)

log = logging.getLogger(__name__)

__all__ = ["EmbedActor", "EmbedJob", "RayEmbedRunner", "spec_weight_keys"]

PICKLE_PROTOCOL = 5


def spec_weight_keys(spec: ModelSpec) -> tuple[str, ...]:
    """Registry keys of every model a :class:`ModelSpec` builds (offline models need none)."""
    keys = [key for name in spec.detectors for key in detector_weight_keys(name)]
    keys += [key for name in spec.recognizers for key in recognizer_weight_keys(name)]
    if spec.pose_model == POSE_1K3D68:  # the 68-point estimator's file ships in a package (verified when built)
        keys += list(POSE68_KEYS)
    return tuple(dict.fromkeys(keys))


@dataclass(frozen=True)
class EmbedJob:
    """What every embedding actor receives.

    Attributes:
        spec: the models to build, with the actor's device (``cuda:0`` of its GPU, or ``cpu``).
        allow_unverified: accept weight files without checksums (test weights).
    """

    spec: ModelSpec
    allow_unverified: bool = False


class EmbedActor:
    """Model actor: decode → detect → align → embed a batch of image tasks (see :class:`EmbedBatch`)."""

    def __init__(self, job: EmbedJob) -> None:
        """Args: job: the models to build (on the first batch, see :meth:`worker`)."""
        self.job = job
        self._worker: EmbedBatch | None = None

    def worker(self) -> EmbedBatch:
        """The batch worker: weight files of ``job.spec`` verified on this node, models built, at the first batch.

        Loading here rather than in the constructor lets a missing weight file reach the driver as our own
        error (Ray reports constructor failures as a bare "actor died") and spares pointless actor restarts.
        """
        if self._worker is None:
            verify_worker_weights(spec_weight_keys(self.job.spec), self.job.spec.weights_root,
                                  allow_unverified=self.job.allow_unverified, role="embed")
            self._worker = EmbedBatch.from_spec(self.job.spec)
        return self._worker

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, list[bytes]]:
        """Pickled :class:`ImageTask` column ``task`` → pickled :class:`ImageResult` column ``result``."""
        tasks = [pickle.loads(bytes(data)) for data in batch["task"]]  # trusted: planned by this run's driver
        results = self.worker()(tasks)
        return {"result": [pickle.dumps(result, protocol=PICKLE_PROTOCOL) for result in results]}


class RayEmbedRunner:
    """Runs the embedding batches on a pool of Ray actors (a ``BatchRunner`` for ``run_embedding_pass``)."""

    def __init__(self, cfg: RayConfig, *, allow_unverified: bool = False,
                 actor_class: type[EmbedActor] = EmbedActor) -> None:
        """Args:
        cfg: the ``ray`` config section (address, actors, resources, retries, batch size).
        allow_unverified: workers accept weight files without checksums (test weights).
        actor_class: the actor class (a subclass can wrap ``__call__``, e.g. to inject faults).
        """
        self.cfg = cfg
        self.allow_unverified = allow_unverified
        self.actor_class = actor_class

    def __call__(self, worker: EmbedBatch, batches: Sequence[Sequence[ImageTask]]) -> Iterator[list[ImageResult]]:
        """Yield the results of every task of ``batches`` as they come back (in no particular order).

        Args:
            worker: the driver's local worker; only its :class:`ModelSpec` is used (actors build their own).
            batches: the planned task batches.

        Raises:
            ConfigError: Ray is missing, unreachable or too small for the actor pool.
            WeightsMissingError: an actor cannot see or verify a weight file.
        """
        tasks = [task for batch in batches for task in batch]
        if not tasks:
            return
        spec = worker.models.spec
        batch_size = self.cfg.batch_size or max(len(batch) for batch in batches)
        with ray_session(self.cfg):
            check_capacity(self.cfg, spec.device, cpu_tasks=False)
            job = EmbedJob(dataclasses.replace(spec, device=actor_device(self.cfg, spec.device)),
                           self.allow_unverified)
            log.info("ray: %d image(s), %d embedding actor(s) on %s, batches of %d", len(tasks), self.cfg.actors,
                     job.spec.device, batch_size)
            dataset = self._dataset(job, tasks, batch_size, spec.device)
            try:
                for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
                    yield [pickle.loads(bytes(data)) for data in batch["result"]]
            except Exception as exc:  # Ray wraps worker exceptions: surface ours (missing weights, ...) as they are
                cause = frontalize_cause(exc)
                if cause is None or cause is exc:
                    raise
                raise cause from exc

    def _dataset(self, job: EmbedJob, tasks: Sequence[ImageTask], batch_size: int, device: str) -> Any:
        ray = import_ray()
        rows = [{"task": pickle.dumps(task, protocol=PICKLE_PROTOCOL)} for task in tasks]
        dataset = ray.data.from_items(rows, override_num_blocks=max(1, math.ceil(len(rows) / batch_size)))
        return map_batches(dataset, self.actor_class, fn_constructor_kwargs={"job": job}, batch_size=batch_size,
                           batch_format="numpy", **actor_options(self.cfg, device))
