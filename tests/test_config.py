"""Typed configs: recipe then dotted overrides; every error names the key, the value, what was expected."""
import dataclasses
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))
import toytask  # noqa: E402,F401  (registers the "toy" task)

from rnnkit.config import (FORMAT_VERSION, Config, ConfigError, OptimConfig, TrainerConfig,  # noqa: E402
                           build_config, config_to_dict, describe_keys, diff_configs, dump_config,
                           load_config)

RECIPE = {"task": "toy", "model": {"hidden_size": 32}, "trainer": {"bptt": 20}}


def test_recipe_then_overrides(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(RECIPE))
    cfg = load_config(path, ["model.hidden_size=512", "trainer.bptt=100", "optim.lr=1e-3",
                             "optim.betas=[0.8, 0.9]", "run.dir=runs/x", "schedule.name=cosine",
                             "trainer.max_steps=10", "data.nan_at=[3, 4]"])
    assert isinstance(cfg, Config)
    assert cfg.model.hidden_size == 512 and cfg.trainer.bptt == 100
    assert cfg.optim.lr == 1e-3 and isinstance(cfg.optim.lr, float)
    assert cfg.optim.betas == (0.8, 0.9)
    assert cfg.run.dir == "runs/x" and cfg.data.nan_at == [3, 4]
    assert cfg.model.embed_size == 8  # a default, untouched


def test_string_fields_keep_override_text():
    cfg = load_config(RECIPE, ["run.dir=123", "run.device=cpu", "trainer.metric=acc"])
    assert cfg.run.dir == "123" and cfg.trainer.metric == "acc"


def test_yaml_quirks_are_accepted():
    # YAML 1.1 reads 1e-3 as a string and 1e6 as a float: both mean what they say
    cfg = load_config({**RECIPE, "optim": {"lr": "1e-3"}, "trainer": {"max_steps": 1e6}})
    assert cfg.optim.lr == 1e-3 and cfg.trainer.max_steps == 1_000_000


def test_configs_are_frozen():
    cfg = load_config(RECIPE)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.trainer.bptt = 5


@pytest.mark.parametrize("override, key, words", [
    ("model.hiden_size=3", "model.hiden_size", "did you mean 'model.hidden_size'"),
    ("trainer.clipnorm=1", "trainer.clipnorm", "did you mean 'trainer.clip_norm'"),
    ("modle.hidden_size=3", "modle.hidden_size", "did you mean 'model.hidden_size'"),
    ("seed=3", "seed", "did you mean 'run.seed'"),
    ("trainer.bptt=abc", "trainer.bptt", "'abc': expected an integer"),
    ("trainer.bptt=1.5", "trainer.bptt", "1.5: expected an integer"),
    ("trainer.bptt=-4", "trainer.bptt", "-4: expected an integer >= 0"),
    ("optim.lr=0", "optim.lr", "0.0: expected a number > 0"),
    ("optim.lr=fast", "optim.lr", "'fast': expected a number"),
    ("optim.name=adamm", "optim.name", "expected one of 'sgd', 'adam'"),
    ("optim.betas=[0.9]", "optim.betas", "expected a list of 2 items"),
    ("optim.betas=[0.9, 1.5]", "optim.betas[1]", "1.5: expected a number >= 0 and < 1"),
    ("run.tensorboard=maybe", "run.tensorboard", "'maybe': expected true or false"),
    ("run.device=gpu", "run.device", "'gpu': expected auto, cpu, cuda, cuda:N or mps"),
    ("model.dropout=1", "model.dropout", "1.0: expected a number >= 0 and < 1"),
    ("optim.nesterov=true", "optim.nesterov", "nesterov only with name: sgd and momentum > 0"),
    ("trainer.max_epochs=0", "trainer.max_steps", "one must bound the run"),
    ("schedule.name=cosine", "schedule.total_steps", "for the cosine schedule"),
    ("task=toyy", "task", "did you mean 'toy'"),
    ("trainer=5", "trainer", "expected a mapping"),
    ("trainer.bptt.x=5", "trainer.bptt.x", "trainer.bptt is not a section"),
    ("justtext", "justtext", "expected key=value"),
])
def test_errors_name_key_value_and_expectation(override, key, words):
    with pytest.raises(ConfigError) as err:
        load_config(RECIPE, [override])
    assert err.value.key == key
    assert words in str(err.value), str(err.value)
    assert key in str(err.value)


def test_optim_name_typo_suggests():
    with pytest.raises(ConfigError, match="did you mean 'adam'"):
        load_config(RECIPE, ["optim.name=adamm"])


def test_unknown_top_level_and_missing_task():
    with pytest.raises(ConfigError, match="unknown key 'trainr.bptt' \\(did you mean 'trainer.bptt'"):
        build_config({"task": "toy", "trainr": {"bptt": 3}})
    with pytest.raises(ConfigError, match="task is required"):
        build_config({"model": {}})


def test_bad_recipe_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read recipe"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("task: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(listy)


def test_direct_construction_is_checked_too():
    with pytest.raises(ConfigError, match="bptt"):
        TrainerConfig(bptt=-1)
    assert OptimConfig(lr=1).lr == 1.0  # ints become floats


def test_dump_and_reload_round_trip(tmp_path):
    cfg = load_config(RECIPE, ["optim.betas=[0.5, 0.6]", "data.nan_at=[2]"])
    text = dump_config(cfg)
    data = yaml.safe_load(text)
    assert data["format_version"] == FORMAT_VERSION and list(data)[:2] == ["format_version", "task"]
    assert build_config(data) == cfg
    assert config_to_dict(cfg) == data


def test_format_version_mismatch_says_both_versions():
    data = config_to_dict(load_config(RECIPE))
    data["format_version"] = FORMAT_VERSION + 1
    with pytest.raises(ConfigError, match=f"format_version = {FORMAT_VERSION + 1}: expected format version {FORMAT_VERSION}"):
        build_config(data)


def test_diff_and_key_listing():
    a = config_to_dict(load_config(RECIPE))
    b = config_to_dict(load_config(RECIPE, ["model.hidden_size=64"]))
    assert diff_configs(a["model"], b["model"]) == [("hidden_size", 32, 64)]
    listing = describe_keys(toytask.ToyTask)
    for key in ("model.hidden_size", "trainer.clip_norm", "optim.nesterov", "run.seed", "data.doc_length"):
        assert key in listing
