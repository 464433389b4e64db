"""What made the results of an output folder, and the guard that keeps two configs out of one tree.

The **run hash** (the ``config_hash`` of every manifest row, which resume compares) covers everything that changes
an input's outputs:

* every config key except those of :data:`~frontalize.config.inference.HASH_EXCLUDE` (execution, input selection,
  device, Ray): ``input.max_pixels``, detection, crop, frontalizer, guard, output, stages, variants;
* the identity of every weight file the run loads: ``weights.<key>`` = its verified sha256, or ``unverified``
  when checksums were not checked (``--allow-unverified-weights``, e.g. ``make_test_weights.py`` output); package-
  shipped files (dlib's 68-point predictor) the same way;
* the pose source that measures the rows' poses: ``pose.source`` (``motion_extractor``, ``landmarks68`` or None) and
  ``pose.estimator`` (its settings beyond the weight file).

``OUT/config_hashes.json`` keeps, for each hash whose results the folder holds, the flat key → value map the hash
was computed from. When a run finds results made under another hash (manifest rows, Ray shards, or a run that
started there) it stops before any image with :class:`~frontalize.errors.OutputConflictError` (exit 2), naming
the keys that differ; ``--overwrite`` reprocesses every selected input instead.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from frontalize.config.inference import HASH_EXCLUDE, InferenceConfig
from frontalize.config.schema import config_to_dict
from frontalize.errors import OutputConflictError
from frontalize.io.atomic import atomic_write_text
from frontalize.weights import VerifiedWeight

logger = logging.getLogger(__name__)

__all__ = [
    "HASHES_NAME",
    "UNVERIFIED",
    "check_no_foreign_results",
    "hash_inputs",
    "read_hash_record",
    "run_hash",
    "write_hash_record",
]

HASHES_NAME = "config_hashes.json"
"""File of the output folder mapping each run hash to the key → value map it was computed from."""

UNVERIFIED = "unverified"
"""Stands for the checksum of a weight file that was not verified (``allow_unverified_weights``)."""

_SHOWN_KEYS = 8


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts → dotted keys; lists and scalars are values (None kept, unlike the CSV flattening)."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, prefix=f"{name}."))
        else:
            flat[name] = value
    return flat


def _excluded(key: str, exclude: Iterable[str]) -> bool:
    return any(key == dotted or key.startswith(dotted + ".") for dotted in exclude)


def hash_inputs(cfg: InferenceConfig, verified_weights: Mapping[str, VerifiedWeight],
                derived: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The flat key → value map a run hash is computed from (JSON-ready, sorted keys).

    Args:
        cfg: the resolved config.
        verified_weights: every weight file the run loads, registry and package-shipped (``sha256`` None when not
            verified).
        derived: values resolved from the config and the machine that change the rows (``pose.source``,
            ``pose.estimator``).

    Returns:
        Config keys outside :data:`HASH_EXCLUDE` with their values, plus ``weights.<key>`` → sha256 or
        :data:`UNVERIFIED`, plus ``derived``.
    """
    flat = {key: value for key, value in _flatten(config_to_dict(cfg)).items() if not _excluded(key, HASH_EXCLUDE)}
    for key, weight in verified_weights.items():
        flat[f"weights.{key}"] = weight.sha256 or UNVERIFIED
    flat.update(derived or {})
    return dict(sorted(flat.items()))


def run_hash(inputs: Mapping[str, Any]) -> str:
    """16 hex digits of the sha256 of ``inputs`` as canonical JSON."""
    canonical = json.dumps(dict(inputs), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def read_hash_record(out_dir: str | Path) -> dict[str, dict[str, Any]]:
    """``config_hashes.json`` of ``out_dir`` (empty when absent or unreadable)."""
    path = Path(out_dir) / HASHES_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        logger.warning("%s is unreadable (%s); the settings of earlier runs are unknown", path, exc)
        return {}
    return {str(k): dict(v) for k, v in data.items() if isinstance(v, Mapping)} if isinstance(data, dict) else {}


def write_hash_record(out_dir: str | Path, digest: str, inputs: Mapping[str, Any], keep: Iterable[str]) -> None:
    """Record ``digest`` → ``inputs`` in ``config_hashes.json``, keeping the earlier entries of ``keep`` only.

    Args:
        out_dir: the output folder (exists).
        digest: this run's hash.
        inputs: its key → value map (:func:`hash_inputs`).
        keep: hashes whose results the folder still holds besides this run's.
    """
    wanted = set(keep) - {digest}
    record = {h: entry for h, entry in read_hash_record(out_dir).items() if h in wanted}
    record[digest] = dict(inputs)
    atomic_write_text(Path(out_dir) / HASHES_NAME, json.dumps(record, indent=1, sort_keys=True, default=str) + "\n")


def _short(value: Any) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else value
    return text if len(text) <= 40 else text[:37] + "…"


def describe_differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """``key: old → new`` for every key whose value differs (``(absent)`` for a missing key), sorted by key."""
    missing = object()
    lines = []
    for key in sorted(set(old) | set(new)):
        before, after = old.get(key, missing), new.get(key, missing)
        if before != after:
            lines.append(f"{key}: {'(absent)' if before is missing else _short(before)} → "
                         f"{'(absent)' if after is missing else _short(after)}")
    return lines


def check_no_foreign_results(out_dir: Path, digest: str, inputs: Mapping[str, Any],
                             latest: Mapping[str, Mapping[str, Any]]) -> None:
    """Stop when ``out_dir`` holds results made under another run hash.

    Args:
        out_dir: the output folder (may not exist yet).
        digest: this run's hash.
        inputs: its key → value map.
        latest: the last manifest row of every input the folder has a row for (manifest and Ray shards).

    Raises:
        OutputConflictError: some row, or a run recorded in ``config_hashes.json``, has another hash; the message
            names the keys that differ and offers ``--overwrite`` or a new output folder.
    """
    rows = Counter(str(row.get("config_hash")) for row in latest.values() if row.get("config_hash") != digest)
    record = read_hash_record(out_dir)
    foreign = list(rows) + [h for h in record if h != digest and h not in rows]
    if not foreign:
        return
    parts = []
    for other in foreign:
        count = f"{rows[other]} input(s)" if rows[other] else "a run that started there"
        known = record.get(other)
        if known is None:
            parts.append(f"hash {other} ({count}; its settings were not recorded)")
            continue
        diff = describe_differences(known, inputs)
        shown = "; ".join(diff[:_SHOWN_KEYS]) + (f"; … and {len(diff) - _SHOWN_KEYS} more" if len(diff) > _SHOWN_KEYS
                                                  else "")
        parts.append(f"hash {other} ({count}), which differs in {shown or 'nothing recorded'}")
    raise OutputConflictError(
        f"output folder {out_dir} holds results made under another config than this run (hash {digest}): "
        f"{' | '.join(parts)}. Mixing them would leave a tree made by two configs: rerun with --overwrite to "
        "reprocess every input, or choose a new output folder (-o).")
