"""Input discovery: the source folder (glob, optional recursion, limit) or a list file → sorted input items.

Each item carries the path relative to the source root (the manifest key, POSIX separators) and the relative
output stem, so the output tree mirrors the input tree (identity folders stay identity folders). Entries that
match but cannot be read (a folder named ``x.jpg``, a broken link, a file without permission) are kept: they
get a manifest row with the reason instead of silently disappearing. Hidden entries (names starting with ``.``,
e.g. macOS ``._x.jpg`` resource forks) are not inputs.
"""

from __future__ import annotations

import fnmatch
import logging
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from frontalize.config.inference import InputConfig
from frontalize.errors import ConfigError
from frontalize.io.images import IMAGE_EXTENSIONS

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class InputItem:
    """One input of the run.

    Attributes:
        path: absolute path of the file.
        rel: POSIX path relative to the source root; the manifest key.
        output_stem: POSIX relative path of the outputs without extension (``rel`` minus its suffix, or with
            the suffix kept when two inputs would otherwise collide, e.g. ``a.jpg`` and ``a.png``).
    """

    path: Path
    rel: str
    output_stem: str


def _matches(rel: str, pattern: str | None) -> bool:
    name = rel.rsplit("/", 1)[-1]
    if pattern is None:
        return name.lower().endswith(IMAGE_EXTENSIONS)
    return fnmatch.fnmatchcase(rel if "/" in pattern else name, pattern)


def _walk(root: Path, pattern: str | None, recursive: bool) -> list[str]:
    found: list[str] = []
    for current, dirs, files in os.walk(root, followlinks=False):
        dirs[:] = sorted(name for name in dirs if not name.startswith("."))
        base = Path(current).relative_to(root)
        for name in sorted(name for name in files + dirs if not name.startswith(".")):
            rel = (base / name).as_posix()
            if _matches(rel, pattern):
                found.append(rel)
        if not recursive:
            break
    return found


def _read_list_file(list_file: Path, root: Path) -> list[str]:
    try:
        lines = list_file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"input.list_file: cannot read {list_file} ({exc})") from exc
    found: list[str] = []
    for number, line in enumerate(lines, start=1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        candidate = Path(entry)
        absolute = candidate if candidate.is_absolute() else root / candidate
        rel = os.path.relpath(os.path.abspath(absolute), os.path.abspath(root))
        if rel == "." or rel.startswith(".."):
            raise ConfigError(f"input.list_file: {list_file}:{number}: {entry!r} is outside the source folder {root}")
        found.append(PurePosixPath(Path(rel).as_posix()).as_posix())
    return list(dict.fromkeys(found))


def _output_stems(rels: list[str]) -> dict[str, str]:
    """Map each relative path to an output stem, keeping the suffix where stems would collide."""
    stems = {rel: str(PurePosixPath(rel).with_suffix("")) for rel in rels}
    counts = Counter(stems.values())
    return {rel: (rel if counts[stem] > 1 else stem) for rel, stem in stems.items()}


def discover_inputs(source_dir: str | Path | None, cfg: InputConfig) -> tuple[Path, list[InputItem]]:
    """List the inputs of a run.

    Args:
        source_dir: source root; may be None when ``cfg.list_file`` is set (the list file's folder is the root).
        cfg: input selection (pattern, recursive, limit, list_file).

    Returns:
        ``(source root, items sorted by relative path, at most cfg.limit of them)``.

    Raises:
        ConfigError: no source given, the source folder or list file does not exist, a listed path lies outside
            the source folder, or nothing matched (an empty selection is a user error, not a successful run).
    """
    list_file = Path(cfg.list_file).expanduser() if cfg.list_file else None
    if source_dir is None and list_file is None:
        raise ConfigError("no input: give --source_dir DIR (or --input) or --list-file FILE")
    root = Path(source_dir).expanduser() if source_dir is not None else list_file.parent  # type: ignore[union-attr]
    root = Path(os.path.abspath(root))
    if not root.is_dir():
        raise ConfigError(f"source folder {root} does not exist or is not a folder")
    if list_file is not None:
        if not list_file.is_file():
            raise ConfigError(f"input.list_file: {list_file} does not exist")
        rels = _read_list_file(list_file, root)
    else:
        rels = _walk(root, cfg.pattern, cfg.recursive)
    if not rels:
        raise ConfigError(_nothing_matched(root, cfg, list_file))
    rels.sort()
    stems = _output_stems(rels)
    if cfg.limit is not None:
        rels = rels[: cfg.limit]
    items = [InputItem(path=root / rel, rel=rel, output_stem=stems[rel]) for rel in rels]
    logger.info("%d input(s) under %s", len(items), root)
    return root, items


def _nothing_matched(root: Path, cfg: InputConfig, list_file: Path | None) -> str:
    if list_file is not None:
        return f"nothing matched: the list file {list_file} names no input (only blank or # lines)"
    what = f"the pattern {cfg.pattern!r}" if cfg.pattern is not None else "an image file name (jpg, png, ...)"
    where = "in it or its sub-folders" if cfg.recursive else "directly in it (add --recursive for sub-folders)"
    return (f"nothing matched: no file under {root} matches {what} {where}; check --source_pattern / --input "
            "(hidden files are never inputs)")


def check_output_location(source_root: Path, out_dir: Path) -> None:
    """Refuse an output folder that overlaps the input tree (outputs would be read back as inputs).

    Raises:
        ConfigError: ``out_dir`` equals, contains or lies inside ``source_root``.
    """
    source = Path(os.path.realpath(source_root))
    output = Path(os.path.realpath(out_dir))
    if output == source or source in output.parents or output in source.parents:
        raise ConfigError(f"output folder {out_dir} overlaps the input tree {source_root}; choose a separate folder")
