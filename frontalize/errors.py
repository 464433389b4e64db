"""Exception hierarchy shared by the whole toolkit.

Every error a user can cause derives from :class:`FrontalizeError` and carries the process exit code the CLI
returns for it (0 ok, 1 some inputs failed, 2 usage/config error, 3 weights missing or corrupt).
"""

from __future__ import annotations


class FrontalizeError(Exception):
    """Base class of all errors raised on purpose by frontalize."""

    exit_code: int = 1


class ConfigError(FrontalizeError):
    """Invalid configuration or command-line usage (exit code 2)."""

    exit_code = 2


class WeightsMissingError(FrontalizeError):
    """One or more weight files are missing or corrupt (exit code 3).

    The message lists every problem and the command that fixes them.
    """

    exit_code = 3


class DeviceError(ConfigError):
    """An explicitly requested device is not available (exit code 2)."""


class InputError(FrontalizeError):
    """One input image cannot be processed (decode failure, unreadable file, ...).

    Attributes:
        status: the manifest status this failure maps to (e.g. ``decode_error``).
    """

    def __init__(self, message: str, status: str = "input_error") -> None:
        super().__init__(message)
        self.status = status


class NoFaceError(InputError):
    """No face was found in an input image."""

    def __init__(self, message: str = "no face detected") -> None:
        super().__init__(message, status="no_face")


class StageError(FrontalizeError):
    """A post-processing stage failed on one image; stages never silently return their input."""

    def __init__(self, stage: str, input_id: str, message: str) -> None:
        super().__init__(f"stage {stage!r} failed on {input_id}: {message}")
        self.stage = stage
        self.input_id = input_id
        self.status = "stage_error"
