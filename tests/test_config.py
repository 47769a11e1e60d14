import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.config import FIELD_SPECS, ConfigError, TrainConfig, is_used
from core.methods.registry import METHODS, canonical, experiment_hash, list_presets, preset, used_fields, validate
from tests.conftest import TINY

ROOT = Path(__file__).resolve().parent.parent


def test_json_round_trip_and_stable_hash():
    cfg = preset("scratch", "recommended", seed=3)
    back = TrainConfig.from_json(cfg.to_json())
    assert back == cfg and back.config_hash() == cfg.config_hash()
    assert cfg.with_(seed=4).config_hash() != cfg.config_hash()
    assert cfg.with_(preset="other").config_hash() == cfg.config_hash()  # the label is not content


def test_hash_is_the_same_in_another_process():
    """Another interpreter, with another string-hash seed, computes the same hash for the same config."""
    cfg = preset("transfer", "recommended", seed=7)
    code = "import sys; from core.config import TrainConfig; print(TrainConfig.from_json(sys.argv[1]).config_hash())"
    env = os.environ | {"PYTHONHASHSEED": "12345", "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code, cfg.to_json()], capture_output=True, text=True, env=env, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == cfg.config_hash()


def test_every_preset_of_every_method_is_valid():
    assert {"notebook", "recommended"} <= set(list_presets())
    for name, method in METHODS.items():
        assert method.presets, f"{name} has no preset"
        for p in method.presets:
            cfg = preset(name, p)  # validated inside
            assert cfg.method == name and cfg.preset == p
            read = {*used_fields(name), *method.fixed}
            for field, value in method.presets[p].items():  # what the method reads is the preset's value
                kept = field in read and is_used(field, cfg)  # idle here (a centroid head's lr): the default
                assert getattr(cfg, field) == (value if kept else getattr(TrainConfig(), field)), (name, p, field)
    # an idle field's preset value comes back once a choice makes it count: transfer's tuned head recipe
    trained = preset("transfer", "recommended", classifier="trained")
    assert (trained.optimizer, trained.lr, trained.batch_size) == ("adamw", 1e-3, 100)


def test_one_experiment_has_one_spelling_and_one_hash():
    """Fields a method does not read, or that do nothing here, take their defaults: the CLI's
    `--method scratch --knn 5` and the Train page's scratch (which never shows knn) are one experiment."""
    plain = preset("scratch", "notebook")
    noisy = preset("scratch", "notebook", knn=5, rounds=9, flip_features=True, momentum=0.5)  # momentum: Adam here
    assert noisy == plain and noisy.config_hash() == plain.config_hash()
    assert experiment_hash(noisy, "data-1") == experiment_hash(plain, "data-1") != experiment_hash(plain, "data-2")
    assert canonical(plain.with_(knn=5)) == plain  # also for a config that was never validated
    assert preset("scratch", "notebook", lr=0.01).config_hash() != plain.config_hash()  # a field it reads counts
    spread = preset("labelspread", "recommended")
    assert spread.finetune == "head" and canonical(spread.with_(finetune="all")).finetune == "head"  # its fixed value


def test_notebook_preset_is_the_original_recipe():
    cfg = preset("scratch", "notebook")
    assert (cfg.optimizer, cfg.lr, cfg.batch_size, cfg.epochs) == ("adam", 0.1, 10, 100)
    assert (cfg.schedule, cfg.step_every, cfg.step_gamma, cfg.augment) == ("step", 30, 0.1, "none")
    assert preset("transfer", "notebook").lr == 1e-3


def test_configs_of_schema_one_are_migrated():
    old = TrainConfig().to_dict() | {"method": "semi", "semi": "labelspread"}
    assert TrainConfig.from_dict(old).method == "labelspread"
    assert TrainConfig.from_dict(TrainConfig().to_dict() | {"semi": "fixmatch"}).method == "scratch"


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"lr": 0.0}, ["lr", "0.0"]),
        ({"lr": -1.0}, ["lr"]),
        ({"epochs": 0}, ["epochs", "0"]),
        ({"batch_size": -5}, ["batch_size"]),
        ({"arch": "resnet9000"}, ["arch", "resnet9000"]),
        ({"optimizer": "lion"}, ["optimizer", "lion"]),
        ({"method": "magic"}, ["method", "magic", "scratch"]),
        ({"augment": "hflip|warp"}, ["augment", "warp"]),
        ({"augment": "crop(padding=99)"}, ["padding", "99"]),
        ({"finetune": "head"}, ["finetune", "weights"]),
        ({"weights": "imagenet"}, ["scratch"]),
        ({"method": "transfer"}, ["weights"]),
        ({"weights": "/no/such/file.pth", "method": "transfer"}, ["no such file"]),
        ({"warmup_epochs": 100}, ["warmup_epochs", "epochs"]),
        ({"device": "tpu"}, ["device", "tpu"]),
    ],
)
def test_validation_names_field_and_value(changes, words):
    with pytest.raises(ConfigError) as err:
        validate(TrainConfig(**changes))
    for word in words:
        assert word in str(err.value)


@pytest.mark.parametrize("name", [n for n, s in FIELD_SPECS.items() if s.low is not None])
def test_bounds_are_inclusive_and_enforced(name):
    """Each numeric field accepts exactly its spec's [low, high]: what the widgets and flags offer."""
    s = FIELD_SPECS[name]
    base = TrainConfig(arch=TINY, epochs=10_000 if name == "warmup_epochs" else 100)
    for ok in (s.low, s.high):
        validate(base.with_(**{name: type(getattr(base, name))(ok)}))
    delta = 1 if isinstance(getattr(base, name), int) else max(1e-9, abs(s.low) * 1e-3)
    for bad in (s.low - delta, s.high + delta):
        with pytest.raises(ConfigError, match=name):
            validate(base.with_(**{name: type(getattr(base, name))(bad)}))


def test_unknown_fields_and_bad_types_are_rejected():
    with pytest.raises(ConfigError, match="colour"):
        TrainConfig.from_dict({"colour": "red"})
    with pytest.raises(ConfigError, match="epochs"):
        TrainConfig.from_dict({"epochs": "many"})
    assert TrainConfig.from_dict({"normalize": "true", "epochs": "3"}).epochs == 3
    assert json.loads(TrainConfig().to_json())["method"] == "scratch"


def test_unknown_preset_lists_the_choices():
    with pytest.raises(ConfigError, match="notebook"):
        preset("scratch", "fastest")
