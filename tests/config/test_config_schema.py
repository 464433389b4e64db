"""Tests of the generic typed-YAML config loader."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from frontalize.config.schema import (
    config_hash,
    config_to_dict,
    dump_config_yaml,
    load_config,
    parse_override,
    with_value,
)
from frontalize.errors import ConfigError


@dataclass(frozen=True)
class Variant:
    name: str = "base"
    stages: tuple[str, ...] = ()


@dataclass(frozen=True)
class Inner:
    alpha: float = field(default=1.0, metadata={"min": 0.0, "max": 1.0, "help": "fraction"})
    mode: Literal["frontal", "partial"] = "frontal"
    size: int = field(default=512, metadata={"min": 1})


@dataclass(frozen=True)
class Root:
    device: str = "auto"
    enabled: bool = False
    limit: int | None = None
    fill: tuple[int, int, int] = (255, 255, 255)
    inner: Inner = field(default_factory=Inner)
    variants: tuple[Variant, ...] = ()
    version: Literal["1.3", "1.4"] = "1.4"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    return path


def test_defaults_without_file() -> None:
    assert load_config(Root) == Root()


def test_partial_yaml_and_nested(tmp_path: Path) -> None:
    cfg = load_config(Root, write(tmp_path, "inner:\n  alpha: 0.5\nvariants:\n  - {name: sharp, stages: [sharpen]}\n"))
    assert cfg.inner.alpha == 0.5 and cfg.inner.mode == "frontal"
    assert cfg.variants == (Variant("sharp", ("sharpen",)),)


def test_unknown_key_suggests_close_match(tmp_path: Path) -> None:
    path = write(tmp_path, "inner:\n  alpah: 0.5\n")
    with pytest.raises(ConfigError, match=r"cfg.yaml: inner.alpah: unknown key; did you mean 'inner.alpha'\?"):
        load_config(Root, path)


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("enabled: 1\n", r"enabled: expected bool"),
        ("inner:\n  size: 2.5\n", r"inner.size: expected int"),
        ("inner:\n  alpha: 1.5\n", r"inner.alpha: 1.5 is above the maximum 1.0"),
        ("inner:\n  size: 0\n", r"inner.size: 0 is below the minimum 1"),
        ("inner:\n  mode: fronal\n",
         r"inner.mode: 'fronal' is not one of 'frontal', 'partial'; did you mean 'frontal'"),
        ("fill: [1, 2]\n", r"fill: expected a list of 3 values"),
        ("inner: 3\n", r"inner: expected a mapping"),
        ("- a\n- b\n", r"<root>: expected a mapping"),
        ("limit: ten\n", r"limit: expected int"),
    ],
)
def test_type_range_choice_errors(tmp_path: Path, text: str, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        load_config(Root, write(tmp_path, text))


def test_int_accepted_for_float_and_numeric_literal(tmp_path: Path) -> None:
    cfg = load_config(Root, write(tmp_path, "inner:\n  alpha: 1\nversion: 1.3\n"))
    assert cfg.inner.alpha == 1.0 and isinstance(cfg.inner.alpha, float)
    assert cfg.version == "1.3"


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(Root, tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match=r"invalid YAML \(line"):
        load_config(Root, write(tmp_path, "inner: [\n"))


def test_overrides_parsed_as_yaml_never_eval(tmp_path: Path) -> None:
    cfg = load_config(Root, write(tmp_path, "inner:\n  alpha: 0.5\n"),
                      ["inner.mode=partial", "limit=3", "fill=[0, 0, 0]", "device=__import__('os')"])
    assert (cfg.inner.mode, cfg.inner.alpha, cfg.limit, cfg.fill) == ("partial", 0.5, 3, (0, 0, 0))
    assert cfg.device == "__import__('os')"  # kept as a plain string
    with pytest.raises(ConfigError, match=r"--set: inner.alfa: unknown key"):
        load_config(Root, None, ["inner.alfa=1"])
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_override("novalue")


def test_roundtrip_dump_hash_and_with_value(tmp_path: Path) -> None:
    cfg = Root(variants=(Variant("a", ("x",)),))
    again = load_config(Root, write(tmp_path, dump_config_yaml(cfg)))
    assert again == cfg
    assert config_to_dict(cfg)["fill"] == [255, 255, 255]
    assert config_hash(cfg) == config_hash(again)
    changed = with_value(cfg, "inner.alpha", 0.25)
    assert changed.inner.alpha == 0.25 and config_hash(changed) != config_hash(cfg)
    assert config_hash(changed, exclude=["inner.alpha"]) == config_hash(cfg, exclude=["inner.alpha"])
    with pytest.raises(ConfigError, match="above the maximum"):
        with_value(cfg, "inner.alpha", 2.0)
