"""Typed configuration trees (frozen dataclasses) and their YAML loader."""

from __future__ import annotations

from frontalize.config.schema import (
    apply_overrides,
    config_hash,
    config_to_dict,
    dump_config_yaml,
    from_dict,
    load_config,
    with_value,
)

__all__ = ["apply_overrides", "config_hash", "config_to_dict", "dump_config_yaml", "from_dict", "load_config",
           "with_value"]
