"""Exception hierarchy shared by the whole toolkit.

Every error a user can cause derives from :class:`FrontalizeError` and carries the process exit code the CLI
returns for it. The exit codes of both commands (README "Exit codes"):

====  ============================================================================================================
0     every input ``ok`` or ``skipped_existing`` (evaluate.py: the report was written)
1     some inputs failed (the others were processed; see the manifest), or ``run.on_error: abort`` stopped the run
2     user error: usage, config, a source that matches no input, an output folder that cannot be created or
      written or that holds results of another config, a missing dataset, an unavailable device
3     weights missing or corrupt
70    internal error (a bug): one line on the terminal, the traceback in the run's log file
130   interrupted (Ctrl-C)
====  ============================================================================================================
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_SOME_FAILED = 1
EXIT_USAGE = 2
EXIT_WEIGHTS = 3
EXIT_INTERNAL = 70
"""sysexits.h ``EX_SOFTWARE`` ("internal software error"): apart from 1 (some inputs failed), 2 (argparse's usage
code), the shell's 126/127 and the 128+N of signals, so a script can tell a bug from its own mistakes."""
EXIT_INTERRUPTED = 130


class FrontalizeError(Exception):
    """Base class of all errors raised on purpose by frontalize."""

    exit_code: int = EXIT_SOME_FAILED


class ConfigError(FrontalizeError):
    """Invalid configuration or command-line usage (exit code 2)."""

    exit_code = EXIT_USAGE


class WeightsMissingError(FrontalizeError):
    """One or more weight files are missing or corrupt (exit code 3).

    The message lists every problem and the command that fixes them.
    """

    exit_code = EXIT_WEIGHTS


class DeviceError(ConfigError):
    """An explicitly requested device is not available (exit code 2)."""


class OutputConflictError(ConfigError):
    """The output folder holds results made under another config or other weights (exit code 2).

    Raised before any image is read; the message names the keys that differ and offers ``--overwrite`` or a new
    output folder.
    """


class InputError(FrontalizeError):
    """One input image cannot be processed (decode failure, unreadable file, ...).

    Per image, the inference runner records it as a manifest row and goes on; one that reaches the command line
    (a dataset folder that is missing or holds nothing usable) is a user error, exit code 2.

    Attributes:
        status: the manifest status this failure maps to (e.g. ``decode_error``).
    """

    exit_code = EXIT_USAGE

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
