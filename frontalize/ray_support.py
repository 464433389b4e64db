"""Ray runtime helpers shared by the Ray executors of the pipeline and of the evaluator.

Ray is an optional extra (``pip install .[ray]``): it is imported only here, lazily, and a missing package is a
:class:`~frontalize.errors.ConfigError` with the install command. The helpers start or join a cluster, turn a
:class:`~frontalize.config.ray_config.RayConfig` into task/actor options (resources and fault tolerance), check
that the requested actors leave room for the CPU tasks, verify weights inside a worker, and recover our own
errors from Ray's exception wrappers.

Every worker reads inputs, weights and outputs by path: the source folder, the output folder and the weights
folder must be visible to every node of the cluster at the same paths (a shared file system).
"""

from __future__ import annotations

import importlib
import logging
import os
import socket
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

from frontalize.config.ray_config import RayConfig
from frontalize.errors import ConfigError, FrontalizeError, WeightsMissingError
from frontalize.weights import VerifiedWeight, verify_weights

logger = logging.getLogger(__name__)

RAY_REQUIREMENT = "ray[data]>=2.60,<2.64"
"""The ``ray`` extra of pyproject.toml (a test keeps the two equal): Ray Data 2.60 is the first with the APIs used
here, and 2.64 announces the removal of the remote-argument mechanism :func:`map_batches` relies on."""
INSTALL_HINT = f'pip install ".[ray]" (or: pip install "{RAY_REQUIREMENT}")'
USAGE_STATS_ENV = "RAY_USAGE_STATS_ENABLED"
SHARED_FS_HINT = ("the weights folder must be visible to every Ray worker at the same path (a shared file "
                  "system), like the source and output folders")


def import_ray() -> ModuleType:
    """The ``ray`` module with ``ray.data`` loaded.

    Raises:
        ConfigError: Ray is not installed (the message gives the install command).
    """
    try:
        ray = importlib.import_module("ray")
        importlib.import_module("ray.data")
    except ImportError as exc:
        raise ConfigError(f"executor ray needs the optional package ray[data], which is not installed: "
                          f"{INSTALL_HINT}") from exc
    return ray


@contextmanager
def ray_session(cfg: RayConfig, *, progress_bars: bool | None = None) -> Iterator[ModuleType]:
    """Use the running Ray of this process, or start / join one for the ``with`` body.

    ``cfg.address`` null starts a local Ray on this machine (``cfg.num_cpus`` CPUs) and stops it at the end;
    ``auto`` or an address joins that cluster (and disconnects at the end). A Ray already initialised in this
    process (e.g. by a test or a notebook) is used as it is and left running.

    A local Ray starts with Ray's usage statistics off (``RAY_USAGE_STATS_ENABLED=0`` for the processes it
    starts): the toolkit reports nothing anywhere. A joined cluster keeps the setting it was started with. Its
    processes share the fate of this process: if the driver is killed (even with SIGKILL), the GCS, raylet and
    workers exit at once and Ray's two agent processes within about a minute (``ray stop`` ends them at once).

    Raises:
        ConfigError: Ray is missing, or the cluster cannot be reached.
    """
    ray = import_ray()
    started = False
    if not ray.is_initialized():
        options: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING,
                                   "namespace": "frontalize"}
        if cfg.address is None:
            options["num_cpus"] = cfg.num_cpus
            os.environ[USAGE_STATS_ENV] = "0"  # inherited by the GCS, raylet and dashboard that ray.init starts
        else:
            options["address"] = cfg.address
        try:
            ray.init(**options)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = cfg.address or "a local Ray"
            raise ConfigError(f"ray.address: cannot start or join {where} ({exc})") from exc
        started = True
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = bool(cfg.progress_bars if progress_bars is None else progress_bars)
    context.raise_original_map_exception = True  # our errors (missing weights, ...) reach the driver unwrapped
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()


def map_batches(dataset: Any, fn: Any, **options: Any) -> Any:
    """``dataset.map_batches(fn, **options)``, with the retry/restart options passed as Ray remote arguments.

    Ray Data 2.60 has no named parameters for ``max_retries`` / ``max_restarts`` / ``max_task_retries`` /
    ``retry_exceptions`` and warns that the generic remote-arguments mechanism is deprecated (removal announced
    for 2.64, hence the ``<2.64`` pin of the ``ray`` extra); the warning is silenced here, in one place.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*ray_remote_args.* is deprecated")
        return dataset.map_batches(fn, **options)


def task_options(cfg: RayConfig) -> dict[str, Any]:
    """``map_batches`` options of a CPU task: its CPUs and how often a task whose worker died is retried.

    Exceptions raised by our own code are not retried (``retry_exceptions`` off): the steps turn bad inputs into
    manifest statuses, so an exception that escapes (missing weights, a bug) would fail again.
    """
    return {"num_cpus": cfg.cpus_per_task, "max_retries": cfg.max_retries, "retry_exceptions": False}


def actor_options(cfg: RayConfig, device: str) -> dict[str, Any]:
    """``map_batches`` options of a model actor: a fixed pool, its resources and restart/retry policy."""
    ray = import_ray()
    return {
        "compute": ray.data.ActorPoolStrategy(size=cfg.actors),
        "num_cpus": cfg.cpus_per_actor,
        "num_gpus": cfg.actor_gpus(device),
        "max_restarts": cfg.max_restarts,
        "max_task_retries": cfg.max_retries,
    }


def actor_device(cfg: RayConfig, device: str) -> str:
    """Torch device inside an actor: the GPU Ray assigned to it (``cuda:0`` of its visible devices) or CPU."""
    return "cuda:0" if cfg.actor_gpus(device) > 0 else "cpu"


def check_capacity(cfg: RayConfig, device: str, *, cpu_tasks: bool) -> None:
    """Refuse an actor pool that leaves no CPU for the CPU tasks or asks for more GPUs than the cluster has.

    Ray would otherwise wait forever for resources. Only checked against the resources the cluster has now
    (an autoscaling cluster may grow later: then a warning, not an error).

    Raises:
        ConfigError: the pool cannot fit next to one CPU task on a fixed (local) cluster.
    """
    ray = import_ray()
    resources = ray.cluster_resources()
    cpus, gpus = float(resources.get("CPU", 0.0)), float(resources.get("GPU", 0.0))
    need_cpus = cfg.actors * cfg.cpus_per_actor + (cfg.cpus_per_task if cpu_tasks else 0.0)
    need_gpus = cfg.actors * cfg.actor_gpus(device)
    if need_cpus <= cpus and need_gpus <= gpus:
        return
    message = (f"ray: {cfg.actors} actor(s) × {cfg.cpus_per_actor:g} CPU / {cfg.actor_gpus(device):g} GPU"
               f"{f' + one task × {cfg.cpus_per_task:g} CPU' if cpu_tasks else ''} need {need_cpus:g} CPU / "
               f"{need_gpus:g} GPU, the cluster has {cpus:g} / {gpus:g}; lower ray.actors, ray.cpus_per_actor or "
               "ray.gpus_per_actor")
    if cfg.address is None:
        raise ConfigError(message)
    logger.warning("%s (waiting for the cluster to scale up)", message)


def verify_worker_weights(keys: Iterable[str], root: str | Path, *, allow_unverified: bool,
                          role: str) -> dict[str, VerifiedWeight]:
    """Verify (registry sizes and checksums) the weight files a worker loads, before its first batch.

    Raises:
        WeightsMissingError: a file is missing or corrupt on this worker; the message names the host and says
            that the weights folder must be shared.
    """
    wanted = list(dict.fromkeys(keys))
    if not wanted:
        return {}
    try:
        return verify_weights(wanted, root, allow_unverified=allow_unverified)
    except WeightsMissingError as exc:
        raise WeightsMissingError(f"Ray worker on {socket.gethostname()} ({role}): {exc} — {SHARED_FS_HINT}") \
            from exc


def frontalize_cause(error: BaseException) -> FrontalizeError | None:
    """Our own error behind a Ray exception (task/actor errors wrap the worker's exception), or None."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        cause = getattr(current, "cause", None)  # RayTaskError: the worker's own exception, with its message
        if isinstance(cause, BaseException) and id(cause) not in seen:
            current = cause
            continue
        if isinstance(current, FrontalizeError):
            return current
        current = current.__cause__ or current.__context__
    return None
