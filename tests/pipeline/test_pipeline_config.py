"""The inference config tree: defaults file, example configs, validation messages, hash."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pipeline_helpers import REPO_ROOT

from frontalize.config.inference import HASH_EXCLUDE, InferenceConfig
from frontalize.config.schema import config_hash, config_to_dict, load_config, with_value
from frontalize.errors import ConfigError

CONFIGS = REPO_ROOT / "configs"


def test_default_yaml_mirrors_the_dataclass_exactly() -> None:
    data = yaml.safe_load((CONFIGS / "default.yaml").read_text(encoding="utf-8"))
    assert data == config_to_dict(InferenceConfig())


@pytest.mark.parametrize("path", sorted([CONFIGS / "offline.yaml", *(CONFIGS / "examples").glob("*.yaml")]),
                         ids=lambda p: p.name)
def test_shipped_configs_load(path: Path) -> None:
    cfg = load_config(InferenceConfig, path)
    assert isinstance(cfg, InferenceConfig)


def test_examples_cover_every_enhancement() -> None:
    used = set()
    for path in (CONFIGS / "examples").glob("*.yaml"):
        used.update(load_config(InferenceConfig, path).used_stages())
    assert {"gfpgan", "sharpen", "background"} <= used
    variants = load_config(InferenceConfig, CONFIGS / "examples" / "variants.yaml")
    assert [name for name, _ in variants.variant_plan()][:4] == ["base", "gfpgan", "sharp", "omit-bg"]
    assert load_config(InferenceConfig, CONFIGS / "offline.yaml").detection.detector == "retinaface_mnet"


def test_variant_plan_and_used_stages() -> None:
    cfg = with_value(InferenceConfig(), "stages.sharpen.enabled", True)
    assert cfg.variant_plan() == (("", ("sharpen",)),)
    cfg = with_value(cfg, "variants", [{"name": "base"}, {"name": "g", "stages": ["gfpgan", "colour"]}])
    assert cfg.variant_plan() == (("base", ()), ("g", ("gfpgan", "colour"))) and cfg.used_stages() == (
        "gfpgan", "colour")


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("frontaliser: {backend: liveportrait}", r"frontaliser: unknown key; did you mean 'frontalizer'"),
        ("detection: {detectr: scrfd_10g}", r"detection.detectr: unknown key; did you mean 'detection.detector'"),
        ("variants: [{name: g, stages: [gfpgna]}]", r"variants\[0\].stages\[0\]: unknown stage 'gfpgna'; did you mean"),
        ("variants: [{name: a}, {name: a}]", r"used twice"),
        ("variants: [{name: 'x/y'}]", r"not a valid folder name"),
        ("detection: {det_size: 500}", r"multiple of 32"),
        ("output: {format: jpg}\nstages: {background: {enabled: true, alpha: true}}", r"jpg cannot hold the alpha"),
        ("frontalizer: {alpha: 1.5}", r"frontalizer.alpha: 1.5 is above the maximum"),
        ("device: gpu", r"device"),
    ],
)
def test_bad_configs_name_the_key(tmp_path: Path, yaml_text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError, match=message):
        load_config(InferenceConfig, path)


def test_config_hash_ignores_run_only_keys() -> None:
    base = InferenceConfig()
    digest = config_hash(base, exclude=HASH_EXCLUDE)
    for key, value in (("run.workers", 7), ("frontalizer.batch_size", 3), ("device", "cpu"), ("input.limit", 5)):
        assert config_hash(with_value(base, key, value), exclude=HASH_EXCLUDE) == digest
    assert config_hash(with_value(base, "crop.scale", 2.0), exclude=HASH_EXCLUDE) != digest
