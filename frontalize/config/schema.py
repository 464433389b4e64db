"""Typed YAML configuration: frozen dataclass trees, validation, ``--set`` overrides, hashing.

A configuration is a tree of frozen dataclasses; the dataclass defaults are the single source of defaults. A YAML
file may give any subset of the keys. Loading checks every value against the annotations:

* ``bool``, ``int``, ``float`` (ints accepted), ``str``; ``typing.Literal[...]`` gives the allowed choices;
* ``T | None``; ``tuple[T, ...]`` (a YAML list) and fixed ``tuple[A, B, C]``; nested dataclasses, also inside tuples;
* per-field ``metadata={"min": lo, "max": hi}`` (inclusive bounds) and ``metadata={"help": "..."}``.

Every problem is reported as ``SOURCE: dotted.key: problem`` in a :class:`~frontalize.errors.ConfigError` (exit
code 2). Unknown keys get a close-match suggestion. Values of ``--set a.b=value`` are parsed as YAML (never
``eval``).
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import types
import typing
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

import yaml

from frontalize.errors import ConfigError

T = TypeVar("T")

__all__ = [
    "apply_overrides",
    "config_hash",
    "config_to_dict",
    "dump_config_yaml",
    "from_dict",
    "load_config",
    "parse_override",
    "with_value",
]


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _where(source: str, key: str) -> str:
    return f"{source}: {key or '<root>'}"


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    if origin in (tuple, list):
        return "a list"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(tp))
    return getattr(tp, "__name__", str(tp))


def _convert_scalar(tp: Any, value: Any, where: str) -> Any:
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif tp is type(None):
        if value is None:
            return None
    else:
        raise ConfigError(f"{where}: unsupported annotation {tp!r} (internal)")
    raise ConfigError(f"{where}: expected {_describe(tp)}, got {value!r}")


def _convert_literal(tp: Any, value: Any, where: str) -> Any:
    choices = typing.get_args(tp)
    if value in choices and type(value) in {type(c) for c in choices}:
        return value
    # YAML reads `version: 1.4` as a float; accept it when the choices are the strings "1.4", ...
    if isinstance(value, (int, float)) and not isinstance(value, bool) and str(value) in choices:
        return str(value)
    hint = ""
    if isinstance(value, str):
        close = difflib.get_close_matches(value, [str(c) for c in choices], n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ConfigError(f"{where}: {value!r} is not {_describe(tp)}{hint}")


def _convert_tuple(tp: Any, value: Any, where: str, source: str, key: str) -> tuple[Any, ...]:
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{where}: expected a list, got {value!r}")
    args = typing.get_args(tp)
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(_convert(args[0], v, source, f"{key}[{i}]") for i, v in enumerate(value))
    if len(args) != len(value):
        raise ConfigError(f"{where}: expected a list of {len(args)} values, got {len(value)}")
    return tuple(_convert(a, v, source, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value)))


def _convert_union(tp: Any, value: Any, where: str, source: str, key: str) -> Any:
    args = typing.get_args(tp)
    if value is None and type(None) in args:
        return None
    candidates = [a for a in args if a is not type(None)]
    errors: list[str] = []
    for candidate in candidates:
        try:
            return _convert(candidate, value, source, key)
        except ConfigError as exc:
            errors.append(str(exc))
    if len(candidates) == 1:
        raise ConfigError(errors[0])
    raise ConfigError(f"{where}: expected {_describe(tp)}, got {value!r}")


def _convert(tp: Any, value: Any, source: str, key: str) -> Any:
    where = _where(source, key)
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return from_dict(tp, value, source=source, prefix=key)
    if origin is typing.Literal:
        return _convert_literal(tp, value, where)
    if origin in (typing.Union, types.UnionType):
        return _convert_union(tp, value, where, source, key)
    if origin is tuple:
        return _convert_tuple(tp, value, where, source, key)
    return _convert_scalar(tp, value, where)


def _check_range(field: dataclasses.Field[Any], value: Any, where: str) -> None:
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    low, high = field.metadata.get("min"), field.metadata.get("max")
    if low is not None and value < low:
        raise ConfigError(f"{where}: {value!r} is below the minimum {low!r}")
    if high is not None and value > high:
        raise ConfigError(f"{where}: {value!r} is above the maximum {high!r}")


def from_dict(cls: type[T], data: Any, *, source: str = "<config>", prefix: str = "") -> T:
    """Build a config dataclass from a plain mapping, validating every key.

    Args:
        cls: frozen dataclass type of the (sub)tree.
        data: mapping loaded from YAML (missing keys keep their defaults).
        source: file name or other origin used in error messages.
        prefix: dotted key of ``data`` inside the whole tree.

    Raises:
        ConfigError: ``SOURCE: dotted.key: problem`` for the first problem found.
    """
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{_where(source, prefix)}: expected a mapping, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    hints = _hints(cls)  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        key = f"{prefix}.{name}" if prefix else str(name)
        if name not in fields:
            close = difflib.get_close_matches(str(name), list(fields), n=1)
            hint = f"; did you mean {'.'.join(filter(None, [prefix, close[0]]))!r}?" if close else ""
            raise ConfigError(f"{_where(source, key)}: unknown key{hint}")
        converted = _convert(hints[name], value, source, key)
        _check_range(fields[name], converted, _where(source, key))
        kwargs[name] = converted
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{_where(source, prefix)}: {exc}") from exc


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    return value


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """Plain, YAML/JSON-serialisable nested dict of a config tree (tuples become lists)."""
    result = _plain(cfg)
    if not isinstance(result, dict):
        raise TypeError(f"not a config dataclass: {cfg!r}")
    return result


def dump_config_yaml(cfg: Any) -> str:
    """YAML text of a config tree, keys in declaration order."""
    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False, default_flow_style=None, allow_unicode=True)


def config_hash(cfg: Any, exclude: Sequence[str] = ()) -> str:
    """Stable 16-hex-digit hash of a config tree, leaving out the dotted keys in ``exclude``."""
    data = config_to_dict(cfg)
    for dotted in exclude:
        node: Any = data
        parts = dotted.split(".")
        for part in parts[:-1]:
            node = node.get(part, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(parts[-1], None)
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def parse_override(text: str) -> tuple[str, Any]:
    """Split ``a.b=value`` into the dotted key and its YAML-parsed value."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set {text}: expected KEY=VALUE (e.g. --set frontalizer.alpha=0.5)")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {text}: value is not valid YAML ({exc.__class__.__name__})") from exc
    return key, value


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    node = data
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def apply_overrides(data: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Return a deep copy of ``data`` with every ``KEY=VALUE`` override applied."""
    merged: dict[str, Any] = json.loads(json.dumps(_plain(dict(data))))
    for text in overrides:
        key, value = parse_override(text)
        _set_dotted(merged, key, value)
    return merged


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise ConfigError(f"{path}: invalid YAML{where}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config file ({exc})") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: <root>: expected a mapping of keys, got {type(data).__name__}")
    return data


def load_config(cls: type[T], path: str | Path | None = None, overrides: Sequence[str] = ()) -> T:
    """Load a config tree: dataclass defaults < YAML file < ``--set`` overrides.

    Args:
        cls: root config dataclass.
        path: YAML file, or None for the defaults alone.
        overrides: ``KEY=VALUE`` strings (values parsed as YAML).

    Raises:
        ConfigError: ``FILE: dotted.key: problem`` (or ``--set: ...`` for a bad override).
    """
    source = str(path) if path is not None else "<defaults>"
    data = _read_yaml(Path(path)) if path is not None else {}
    cfg = from_dict(cls, data, source=source)
    if not overrides:
        return cfg
    return from_dict(cls, apply_overrides(data, overrides), source="--set")


def with_value(cfg: T, key: str, value: Any, source: str = "command line") -> T:
    """Return a copy of ``cfg`` with the dotted ``key`` set to ``value`` (validated)."""
    data = config_to_dict(cfg)
    _set_dotted(data, key, value)
    return from_dict(type(cfg), data, source=source)
