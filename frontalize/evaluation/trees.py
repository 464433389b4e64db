"""Frontalized output trees (``--frontal-dir``): find the output of every angled image, and its failures.

Matching rule (documented in the report): ``inference.py`` mirrors the input's relative path, so the output for
input ``ID/x.jpg`` is ``OUT/[PREFIX/]ID/x.<any extension>`` — matched by relative path *without* extension
(outputs are often PNG for JPEG inputs; when two inputs only differ by extension inference keeps the suffix,
``ID/x.jpg.png``, which is matched too). ``PREFIX`` is found automatically:

* ``""``: a plain tree;
* ``VARIANT``: inference wrote variant sub-trees (``OUT/base/…``, ``OUT/gfpgan/…``) — each becomes one *arm*;
* ``[VARIANT/]crop`` and ``[VARIANT/]full``: both output kinds were written; ``frontal.kind`` picks one
  (auto = the pasted-back ``full`` image when present, else ``crop``).

When the dataset's relative paths carry one more leading folder than the inference source (e.g. BIWI read from
the folder above ``hpdb/`` while inference ran on ``hpdb/``), that first folder is dropped for matching.

``OUT/manifest.jsonl`` (when present) tells why an input has no output: a row with a status other than ``ok``
(or ``skipped_existing``) is a *frontalization failure*, reported apart from detector misses on the outputs.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from frontalize.datasets.base import IMAGE_EXTENSIONS, rel_stem
from frontalize.errors import InputError
from frontalize.io.manifest import latest_rows, read_manifest

log = logging.getLogger(__name__)

__all__ = ["MATCHING_RULE", "OK_STATUSES", "FrontalArm", "discover_arms", "unique_arm_names"]

MATCHING_RULE = (
    "the output for input ID/x.jpg is OUT/[PREFIX/]ID/x.<any extension> (matched by relative path without "
    "extension; PREFIX = a variant sub-tree and/or crop|full, found automatically, one arm per variant); "
    "a dataset folder level missing in the output tree is tolerated; inputs that the tree's manifest.jsonl "
    "reports with a status other than ok are inference failures, not detector misses"
)

OK_STATUSES = frozenset({"ok", "skipped_existing"})
_KINDS = ("full", "crop")
_MAX_PREFIX_DEPTH = 3


@dataclass(frozen=True)
class FrontalArm:
    """One set of frontalized images to compare with the angled inputs.

    Attributes:
        name: label in tables (the tree folder name, plus ``/variant`` for variant sub-trees).
        root: the ``--frontal-dir`` folder.
        prefix: sub-folder of ``root`` that mirrors the dataset ("" for a plain tree).
        outputs: dataset relative path -> output image.
        failures: dataset relative path -> (manifest status, reason) for inputs inference could not process.
        manifest: whether a manifest was read.
        statuses: dataset relative path -> status of the input's last manifest row (``ok``, ``skipped_existing``,
            or a failure), for every input the manifest names.
    """

    name: str
    root: Path
    prefix: str
    outputs: Mapping[str, Path] = field(default_factory=dict)
    failures: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    manifest: bool = False
    statuses: Mapping[str, str] = field(default_factory=dict)

    def status(self, rel: str) -> str:
        """"ok" (an output exists), "failed" (the manifest says inference failed) or "missing"."""
        if rel in self.outputs:
            return "ok"
        return "failed" if rel in self.failures else "missing"


def _index_tree(root: Path) -> dict[str, Path]:
    """Relative stem -> file for every image under ``root`` (first in sorted order wins)."""
    index: dict[str, Path] = {}
    for current, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        base = Path(current).relative_to(root).as_posix()
        for name in sorted(files):
            if name.startswith(".") or not name.lower().endswith(IMAGE_EXTENSIONS):
                continue
            rel = name if base == "." else f"{base}/{name}"
            index.setdefault(rel_stem(rel), Path(current) / name)
    return index


def _dataset_keys(rels: Sequence[str], strip_first: bool) -> dict[str, str]:
    """Matching key -> dataset rel: the stem and the full rel (suffix kept), optionally minus folder 1."""
    keys: dict[str, str] = {}
    for rel in rels:
        if strip_first:
            if "/" not in rel:
                continue
            base = rel.split("/", 1)[1]
        else:
            base = rel
        keys.setdefault(rel_stem(base), rel)
        keys.setdefault(base, rel)
    return keys


def _prefix_matches(index: Mapping[str, Path], keys: Mapping[str, str]) -> dict[str, dict[str, Path]]:
    """prefix -> {dataset rel: output file} for every prefix (≤ 3 folders) under which outputs match."""
    found: dict[str, dict[str, Path]] = {}
    for stem, path in index.items():
        parts = stem.split("/")
        for depth in range(min(_MAX_PREFIX_DEPTH, len(parts) - 1) + 1):
            rel = keys.get("/".join(parts[depth:]))
            if rel is not None:
                found.setdefault("/".join(parts[:depth]), {}).setdefault(rel, path)
    return found


def _choose_kinds(found: dict[str, dict[str, Path]], kind: str) -> dict[str, dict[str, Path]]:
    """Keep one of ``P/full`` and ``P/crop`` per parent P (``kind`` or, for auto, full first)."""
    order = _KINDS if kind == "auto" else (kind,)
    chosen: dict[str, dict[str, Path]] = {}
    parents: dict[str, dict[str, str]] = {}
    for prefix in found:
        parent, _, last = prefix.rpartition("/")
        if last in _KINDS:
            parents.setdefault(parent, {})[last] = prefix
        else:
            chosen[prefix] = found[prefix]
    for parent, kinds in parents.items():
        for wanted in order:
            if wanted in kinds:
                chosen[parent] = found[kinds[wanted]]
                break
    return chosen


def _drop_stray(found: dict[str, dict[str, Path]]) -> dict[str, dict[str, Path]]:
    """Drop prefixes matching far fewer images than the best one (accidental name clashes)."""
    best = max(len(v) for v in found.values())
    return {p: v for p, v in found.items() if len(v) * 20 >= best}


def _manifest_statuses(root: Path, keys: Mapping[str, str]) -> tuple[dict[str, tuple[str, str]], bool]:
    """Dataset rel -> (status, reason) of its last row in ``root/manifest.jsonl``, and whether there is a manifest."""
    path = root / "manifest.jsonl"
    if not path.is_file():
        return {}, False
    statuses: dict[str, tuple[str, str]] = {}
    for input_rel, row in latest_rows(read_manifest(path)).items():
        rel = keys.get(input_rel) or keys.get(rel_stem(input_rel))
        if rel is not None:
            statuses[rel] = (str(row.get("status", "")) or "unknown", str(row.get("reason") or ""))
    return statuses, True


def discover_arms(
    root: str | Path,
    rels: Sequence[str],
    *,
    kind: str = "auto",
    use_manifest: bool = True,
    name: str | None = None,
) -> list[FrontalArm]:
    """Find the arm(s) of one ``--frontal-dir`` for the dataset's angled relative paths.

    Args:
        root: output folder of an inference run.
        rels: relative paths of the dataset's angled images.
        kind: "auto", "full" or "crop" (see module docstring).
        use_manifest: read ``root/manifest.jsonl`` for frontalization failures.
        name: arm label (default: the folder name); variants append ``/variant``.

    Returns:
        One arm per variant sub-tree (or a single arm).

    Raises:
        InputError: ``root`` is not a folder, or no output in it matches any dataset image.
    """
    folder = Path(root).resolve()
    if not folder.is_dir():
        raise InputError(f"--frontal-dir {root} is not a directory")
    index = _index_tree(folder)
    keys: dict[str, str] = {}
    found: dict[str, dict[str, Path]] = {}
    for strip_first in (False, True):
        keys = _dataset_keys(rels, strip_first)
        found = _prefix_matches(index, keys)
        if found:
            break
    if not found:
        raise InputError(f"--frontal-dir {root}: no image matches a dataset input by relative path "
                         f"(expected e.g. {root}/{rel_stem(rels[0]) if rels else 'ID/x'}.png)")
    arms_found = _drop_stray(_choose_kinds(found, kind))
    found_statuses, has_manifest = _manifest_statuses(folder, keys) if use_manifest else ({}, False)
    statuses = {rel: status for rel, (status, _) in found_statuses.items()}
    failures = {rel: entry for rel, entry in found_statuses.items() if entry[0] not in OK_STATUSES}
    label = name or folder.name
    arms = [
        FrontalArm(name=label if not prefix else f"{label}/{prefix}", root=folder, prefix=prefix,
                   outputs=outputs, failures=failures, manifest=has_manifest, statuses=statuses)
        for prefix, outputs in sorted(arms_found.items())
    ]
    for arm in arms:
        log.info("arm %s: %d of %d inputs have an output (%d failed in inference)", arm.name, len(arm.outputs),
                 len(rels), sum(r not in arm.outputs for r in arm.failures))
    return arms


def unique_arm_names(arms: Iterable[FrontalArm]) -> list[FrontalArm]:
    """Make arm names unique by suffixing ``#2``, ``#3``… (two --frontal-dir folders with the same name)."""
    seen: Counter[str] = Counter()
    result = []
    for arm in arms:
        seen[arm.name] += 1
        result.append(arm if seen[arm.name] == 1 else
                      FrontalArm(f"{arm.name}#{seen[arm.name]}", arm.root, arm.prefix, arm.outputs, arm.failures,
                                 arm.manifest, arm.statuses))
    return result
