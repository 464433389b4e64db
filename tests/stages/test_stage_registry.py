"""Tests of the stage registry, the stage configs and the shared input checks of every stage."""

from __future__ import annotations

import typing
from pathlib import Path

import numpy as np
import pytest

from frontalize.config import from_dict
from frontalize.config.stages import STAGE_NAMES, BackgroundConfig, GfpganConfig, StagesConfig
from frontalize.errors import ConfigError, StageError, WeightsMissingError
from frontalize.stages import STAGES, Stage, StageContext, build_pipeline_stages, build_stage, stage_weight_keys
from frontalize.weights import REGISTRY

WEIGHTLESS = ("colour", "sharpen", "margins")
CONTEXT = StageContext("bad.png", source_rgb=np.zeros((8, 8, 3), np.uint8), face_box=np.array([1.0, 1.0, 6.0, 6.0]))


def test_registry_names_match_the_config() -> None:
    assert set(STAGES) == set(STAGE_NAMES)
    assert StagesConfig().order == STAGE_NAMES


def test_unknown_stage_suggests_the_close_match(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown stage 'sharpn'; did you mean 'sharpen'"):
        build_stage("sharpn", StagesConfig(), weights_root=tmp_path)
    with pytest.raises(ConfigError, match="did you mean 'colour'"):
        stage_weight_keys("color", StagesConfig())
    with pytest.raises(ConfigError, match="valid stages"):
        build_pipeline_stages(["margins", "zzz"], StagesConfig(), weights_root=tmp_path)


def test_weight_keys_for_every_choice_exist_in_the_registry() -> None:
    for version in typing.get_args(typing.get_type_hints(GfpganConfig)["version"]):
        keys = stage_weight_keys("gfpgan", StagesConfig(gfpgan=GfpganConfig(version=version)))
        assert keys == (f"gfpgan_v{version}",) and keys[0] in REGISTRY
    for model in typing.get_args(typing.get_type_hints(BackgroundConfig)["model"]):
        (key,) = stage_weight_keys("background", StagesConfig(background=BackgroundConfig(model=model)))
        assert key in REGISTRY
    assert all(stage_weight_keys(name, StagesConfig()) == () for name in WEIGHTLESS)


def test_build_pipeline_stages_in_configured_order(tmp_path: Path) -> None:
    cfg = from_dict(StagesConfig, {"order": ["margins", "sharpen", "gfpgan", "colour", "background"],
                                   "sharpen": {"enabled": True}, "margins": {"enabled": True}})
    stages = build_pipeline_stages(None, cfg, weights_root=tmp_path)
    assert [stage.name for stage in stages] == ["margins", "sharpen"]
    assert all(isinstance(stage, Stage) for stage in stages)
    explicit = build_pipeline_stages(["colour", "sharpen"], cfg, weights_root=tmp_path)
    assert [stage.name for stage in explicit] == ["colour", "sharpen"]
    with pytest.raises(WeightsMissingError):  # weights are needed as soon as a weighted stage is built
        build_pipeline_stages(["sharpen", "gfpgan"], cfg, weights_root=tmp_path)


@pytest.mark.parametrize(("data", "message"), [
    ({"order": ["gfpgan", "sharpem"]}, "stages.yaml: stages: order: unknown stage 'sharpem'; did you mean 'sharpen'"),
    ({"order": ["sharpen", "sharpen"]}, "order: sharpen listed more than once"),
    ({"order": ["colour"], "sharpen": {"enabled": True}}, "sharpen missing from the order"),
    ({"background": {"enabled": True, "alpha": True}, "gfpgan": {"enabled": True},
      "order": ["background", "gfpgan"]}, "gfpgan cannot run after background"),
    ({"background": {"fill": [0, 300, 0]}}, r"stages.yaml: stages.background: fill: expected three integers"),
    ({"margins": {"fill": [0, 0]}}, "stages.margins.fill: expected a list of 3 values"),
    ({"sharpen": {"amount": -1}}, "sharpen.amount"),
    ({"gfpgan": {"weight": 1.5}}, "gfpgan.weight"),
    ({"gfpgan": {"version": "1.5"}}, "gfpgan.version"),
    ({"background": {"model": "u2nett"}}, "did you mean 'u2net"),
    ({"margins": {"face_fraction": 0.0}}, "margins.face_fraction"),
    ({"colour": {"strenght": 1.0}}, "did you mean 'stages.colour.strength'"),
])
def test_config_validation(data: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        from_dict(StagesConfig, data, source="stages.yaml", prefix="stages")


def test_yaml_style_values_are_accepted() -> None:
    cfg = from_dict(StagesConfig, {"gfpgan": {"version": 1.3, "weight": 1}, "background": {"fill": [1, 2, 3]}})
    assert cfg.gfpgan.version == "1.3" and cfg.gfpgan.weight == 1.0 and cfg.background.fill == (1, 2, 3)
    assert cfg.enabled_names() == ()


def test_direct_construction_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="order: unknown stage 'gfpgann'"):
        StagesConfig(order=("gfpgann",))
    with pytest.raises(ValueError, match="fill"):
        BackgroundConfig(fill=(0, 0, -1))


@pytest.mark.parametrize("name", WEIGHTLESS)
@pytest.mark.parametrize("bad", [
    np.zeros((8, 8, 3), np.float32),
    np.zeros((8, 8), np.uint8),
    np.zeros((8, 8, 2), np.uint8),
    np.zeros((0, 8, 3), np.uint8),
    [[0, 0, 0]],
])
def test_every_stage_raises_stage_error_on_bad_input(name: str, bad: object, tmp_path: Path) -> None:
    stage = build_stage(name, StagesConfig(), weights_root=tmp_path)
    with pytest.raises(StageError) as caught:
        stage(bad, CONTEXT)  # type: ignore[arg-type]
    assert caught.value.stage == name and caught.value.input_id == "bad.png"
