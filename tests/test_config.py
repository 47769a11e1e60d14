import json

import pytest

from core.config import PRESETS, ConfigError, TrainConfig, list_presets, preset, validate


def test_json_round_trip_and_stable_hash():
    cfg = preset("scratch", "recommended", seed=3)
    back = TrainConfig.from_json(cfg.to_json())
    assert back == cfg
    assert back.config_hash() == cfg.config_hash()
    # the hash is of the content: a fixed value for a fixed config, whatever the process
    assert TrainConfig().config_hash() == TrainConfig.from_dict(json.loads(TrainConfig().to_json())).config_hash()
    assert cfg.with_(seed=4).config_hash() != cfg.config_hash()


def test_every_preset_is_valid():
    assert {"notebook", "recommended"} <= set(list_presets())
    for (method, name), cfg in PRESETS.items():
        if cfg.weights == "imagenet":
            cfg = cfg.with_(weights="imagenet")
        assert validate(cfg).method == method, name


def test_notebook_preset_is_the_original_recipe():
    cfg = preset("scratch", "notebook")
    assert (cfg.optimizer, cfg.lr, cfg.batch_size, cfg.epochs) == ("adam", 0.1, 10, 100)
    assert (cfg.schedule, cfg.step_every, cfg.step_gamma, cfg.augment) == ("step", 30, 0.1, "none")
    assert preset("transfer", "notebook").lr == 1e-3


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"lr": 0.0}, ["lr", "0.0"]),
        ({"lr": -1.0}, ["lr"]),
        ({"epochs": 0}, ["epochs", "0"]),
        ({"batch_size": -5}, ["batch_size"]),
        ({"arch": "resnet9000"}, ["arch", "resnet9000"]),
        ({"optimizer": "lion"}, ["optimizer", "lion"]),
        ({"augment": "hflip|warp"}, ["augment", "warp"]),
        ({"augment": "crop(padding=99)"}, ["padding", "99"]),
        ({"finetune": "head"}, ["finetune", "weights"]),
        ({"weights": "imagenet"}, ["scratch"]),
        ({"method": "transfer"}, ["weights"]),
        ({"weights": "/no/such/file.pth", "method": "transfer"}, ["no such file"]),
    ],
)
def test_validation_names_field_and_value(changes, words):
    with pytest.raises(ConfigError) as err:
        validate(TrainConfig(**changes))
    for word in words:
        assert word in str(err.value)


def test_unknown_fields_and_bad_types_are_rejected():
    with pytest.raises(ConfigError, match="colour"):
        TrainConfig.from_dict({"colour": "red"})
    with pytest.raises(ConfigError, match="epochs"):
        TrainConfig.from_dict({"epochs": "many"})
    assert TrainConfig.from_dict({"normalize": "true", "epochs": "3"}).epochs == 3


def test_unknown_preset_lists_the_choices():
    with pytest.raises(ConfigError, match="notebook"):
        preset("scratch", "fastest")
