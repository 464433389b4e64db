"""The ``ray`` section shared by the inference and evaluation configs (used with ``executor: ray``).

One frozen dataclass for both trees, so ``inference.py`` and ``evaluate.py`` take the same keys. Nothing here
changes what an input's outputs look like: the inference config hash leaves the section out (resume works
across executors).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from frontalize.errors import ConfigError

__all__ = ["ExecutorChoice", "RayConfig"]

ExecutorChoice = Literal["local", "ray"]
"""``local`` = this process (threads); ``ray`` = Ray Data tasks and actors (a local Ray or a cluster)."""


@dataclass(frozen=True)
class RayConfig:
    """Ray Data execution (``executor: ray``)."""

    address: str | None = field(default=None, metadata={
        "help": "null = start a local Ray on this machine (stopped at the end); 'auto' = join the running "
                "cluster of this node; host:port or ray://host:10001 = join that cluster"})
    num_cpus: int | None = field(default=None, metadata={
        "help": "CPUs of the local Ray started when address is null (null = all); ignored when joining",
        "min": 1})
    actors: int = field(default=1, metadata={
        "help": "model actors (inference: frontalizer [+ guard]; evaluation: detect + embed), each holding "
                "its own copy of the models", "min": 1, "max": 4096})
    gpus_per_actor: float | None = field(default=None, metadata={
        "help": "GPUs reserved per actor; null = 1 when the device is CUDA, else 0 (CPU actors)", "min": 0.0,
        "max": 64.0})
    cpus_per_actor: float = field(default=1.0, metadata={
        "help": "CPUs reserved per actor", "min": 0.0, "max": 1024.0})
    cpus_per_task: float = field(default=1.0, metadata={
        "help": "CPUs reserved per CPU task (inference: decode + detect + crop, and stages + encode + write)",
        "min": 0.01, "max": 1024.0})
    batch_size: int | None = field(default=None, metadata={
        "help": "inputs per actor call; null = frontalizer.batch_size (inference) or run.batch_size "
                "(evaluation)", "min": 1, "max": 4096})
    task_batch_size: int = field(default=8, metadata={
        "help": "inputs per CPU task (one manifest shard per finishing task)", "min": 1, "max": 4096})
    max_retries: int = field(default=3, metadata={
        "help": "retries of a task (and of an actor call) whose worker process died; -1 = unlimited",
        "min": -1})
    max_restarts: int = field(default=3, metadata={
        "help": "restarts of an actor whose process died; -1 = unlimited", "min": -1})
    progress_bars: bool = field(default=False, metadata={
        "help": "show Ray Data's own per-operator progress bars (the run's progress bar is shown either way)"})

    def __post_init__(self) -> None:
        if self.address is not None and not self.address.strip():
            raise ConfigError("ray.address: empty; use null (local Ray), 'auto' or host:port")

    def actor_gpus(self, device: str) -> float:
        """GPUs per actor for a run on ``device`` (the resolved torch device of the driver)."""
        if self.gpus_per_actor is not None:
            return float(self.gpus_per_actor)
        return 1.0 if device.startswith("cuda") else 0.0
