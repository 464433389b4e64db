"""Evaluation config: YAML files mirror the dataclasses, validation errors, flag precedence."""

from __future__ import annotations

from pathlib import Path

import pytest

from frontalize.cli.evaluate import build_parser, resolve_config
from frontalize.config.evaluation import CombinationConfig, EvalConfig, EvalDetectionConfig, StatsConfig
from frontalize.config.schema import config_to_dict, load_config
from frontalize.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def test_eval_yaml_equals_dataclass_defaults() -> None:
    assert load_config(EvalConfig, REPO / "configs" / "eval.yaml") == EvalConfig()
    labels = [c.label for c in EvalConfig().combinations]
    assert labels == ["retinaface_r50+arcface_r100", "scrfd_10g+arcface_r100", "retinaface_r50+arcface_r50",
                      "scrfd_10g+arcface_r50"]


def test_offline_yaml_needs_no_weights() -> None:
    from frontalize.evaluation.runner import required_weight_keys

    cfg = load_config(EvalConfig, REPO / "configs" / "eval-offline.yaml")
    assert [(c.detector, c.recognizer) for c in cfg.combinations] == [("retinaface_mnet", "dlib_resnet")]
    assert required_weight_keys(cfg) == []
    assert cfg.dataset.pose == "landmarks68"  # the packaged 68-point estimator, whatever else is downloaded
    assert config_to_dict(cfg)["stats"] == config_to_dict(EvalConfig())["stats"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [({"device": "gpu"}, "device"),
     ({"combinations": ()}, "at least one"),
     ({"combinations": (CombinationConfig(), CombinationConfig())}, "listed twice"),
     ({"combinations": (CombinationConfig(name="a b"),)}, "valid label"),
     ({"detection": EvalDetectionConfig(retry_sizes=(16,))}, "retry_sizes"),
     ({"stats": StatsConfig(far_levels=(1.5,))}, "far_levels")],
)
def test_invalid_values(changes: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        EvalConfig(**changes)


def test_yaml_errors_name_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("combinations:\n  - detector: retinaface\n    recognizer: dlib_resnet\n")
    with pytest.raises(ConfigError, match=r"combinations\[0\]\.detector.*did you mean 'retinaface_r50'"):
        load_config(EvalConfig, bad)
    bad.write_text("stats:\n  bootstrap_resamples: 2\n")
    with pytest.raises(ConfigError, match="below the minimum"):
        load_config(EvalConfig, bad)


def test_flags_beat_set_beat_yaml(tmp_path: Path) -> None:
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("dataset:\n  layout: biwi\nstats:\n  bootstrap_resamples: 500\n")
    args = build_parser().parse_args(["--config", str(yaml_file), "--set", "dataset.layout=lfw",
                                      "--set", "stats.bootstrap_resamples=300", "--layout", "generic",
                                      "--no-retry", "--no-cache", "--kind", "crop"])
    cfg = resolve_config(args)
    assert cfg.dataset.layout == "generic" and cfg.stats.bootstrap_resamples == 300
    assert not cfg.detection.retry and not cfg.cache.enabled and cfg.frontal.kind == "crop"
    args = build_parser().parse_args(["--config", str(yaml_file), "--bootstrap-resamples", "99"])
    assert resolve_config(args).stats.bootstrap_resamples == 99 and resolve_config(args).dataset.layout == "biwi"


def test_missing_weights_exit_3_before_reading_images(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from frontalize.cli.evaluate import main

    code = main(["--config", str(REPO / "configs" / "eval.yaml"), "--data", str(tmp_path / "absent"),
                 "--frontal-dir", str(tmp_path / "absent-out"), "-o", str(tmp_path / "report"),
                 "--weights-dir", str(tmp_path / "no-weights"), "--device", "cpu"])
    assert code == 3
    stderr = capsys.readouterr().err  # the CLI's own log handler writes to stderr
    assert "insightface_glintr100" in stderr and "facexlib_retinaface_r50" in stderr and "download" in stderr
    assert not (tmp_path / "report").exists()


def test_help_names_the_biwi_formats_pose_choices_and_every_output() -> None:
    text = build_parser().format_help()
    assert "frame_NNNNN_rgb.png|.jpg|.jpeg" in text and "frame_NNNNN_rgb.png +" not in text
    assert "{auto,1k3d68,landmarks68,keypoints}" in text and "--set dataset.pose" in text
    assert "yaw > 0 = face turned towards image left" in text and "pitch > 0 = looking down" in text
    for output in ("report.md", "report.html", "thumbs/", "summary.json", "per_image.csv|jsonl",
                   "per_image_gt.csv|jsonl", "tables/", "figures/", "evaluate.log"):
        assert output in text, output
    assert "posed_views.json" in text and "dataset_notes.txt" in text
