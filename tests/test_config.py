"""Tests for contrastkit.core.config: coercion, unknown keys, layering, YAML round trip."""

from __future__ import annotations

import dataclasses
import enum
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional, Union

import pytest
import yaml

from contrastkit.core.config import (RUN_SECTION, build_config, config_from_dict, config_keys,
                                     config_to_dict, load_yaml, parse_overrides, save_config)


class Pool(enum.Enum):
    MEAN = "mean"
    SUM = "sum"


@dataclass
class Encoder:
    hidden: int = 64
    layers: int = 2
    act: Literal["relu", "prelu"] = "relu"


@dataclass
class Cfg:
    dataset: str = "toy"
    lr: float = 1e-3
    epochs: int = 10
    use_bn: bool = False
    name: str = "run"
    drop: Optional[float] = None
    label: Optional[str] = None
    limit: int | None = None
    either: Union[int, str] = 0
    mode: Literal["a", "b"] = "a"
    sizes: list[int] = field(default_factory=lambda: [1, 2])
    pair: tuple[float, float] = (0.1, 0.2)
    tags: tuple[str, ...] = ()
    weights: dict[str, float] = field(default_factory=dict)
    path: Path = Path("data")
    pool: Pool = Pool.MEAN
    encoder: Encoder = field(default_factory=lambda: Encoder(hidden=128))
    aux: Optional[Encoder] = None
    derived: int = field(default=0, init=False)


@dataclass
class Required:
    dataset: str
    epochs: int = 1


# ---- coercion, one type at a time -----------------------------------------------------------
@pytest.mark.parametrize("value, expected", [(5, 5), ("10", 10), (3.0, 3), ("1e3", 1000),
                                             (" 7 ", 7)])
def test_int_coercion(value, expected):
    cfg = config_from_dict(Cfg, {"epochs": value})
    assert cfg.epochs == expected and type(cfg.epochs) is int


@pytest.mark.parametrize("value", [2.5, "abc", True, None, [1]])
def test_int_rejects(value):
    with pytest.raises((TypeError, ValueError), match="epochs"):
        config_from_dict(Cfg, {"epochs": value})


@pytest.mark.parametrize("value, expected", [(1, 1.0), (0.5, 0.5), ("1e-3", 1e-3),
                                             ("2.5", 2.5), ("3", 3.0)])
def test_float_coercion(value, expected):
    cfg = config_from_dict(Cfg, {"lr": value})
    assert cfg.lr == expected and type(cfg.lr) is float


@pytest.mark.parametrize("value", ["fast", False, None, {"a": 1}])
def test_float_rejects(value):
    with pytest.raises(TypeError, match=r"lr: expected float"):
        config_from_dict(Cfg, {"lr": value})


@pytest.mark.parametrize("value, expected", [
    (True, True), (False, False), ("true", True), ("False", False), ("1", True), ("0", False),
    ("yes", True), ("No", False), ("on", True), ("off", False), (1, True), (0, False)])
def test_bool_coercion(value, expected):
    assert config_from_dict(Cfg, {"use_bn": value}).use_bn is expected


@pytest.mark.parametrize("value", ["maybe", 2, 0.5, None])
def test_bool_rejects(value):
    with pytest.raises(TypeError, match="use_bn"):
        config_from_dict(Cfg, {"use_bn": value})


def test_str_coercion():
    assert config_from_dict(Cfg, {"name": "abc"}).name == "abc"
    assert config_from_dict(Cfg, {"name": 5}).name == "5"
    with pytest.raises(TypeError, match=r"name: .*quote"):
        config_from_dict(Cfg, {"name": True})  # YAML's `no` is a bool: ask for quotes
    with pytest.raises(TypeError, match="name"):
        config_from_dict(Cfg, {"name": None})


def test_optional_coercion():
    assert config_from_dict(Cfg, {"drop": None}).drop is None
    assert config_from_dict(Cfg, {"drop": "none"}).drop is None
    assert config_from_dict(Cfg, {"drop": "null"}).drop is None
    assert config_from_dict(Cfg, {"drop": "0.5"}).drop == 0.5
    assert config_from_dict(Cfg, {"limit": "12"}).limit == 12
    assert config_from_dict(Cfg, {"limit": None}).limit is None
    # for an Optional[str], the text "none" is a legitimate string
    assert config_from_dict(Cfg, {"label": "none"}).label == "none"
    with pytest.raises(TypeError, match="drop"):
        config_from_dict(Cfg, {"drop": "high"})


def test_union_prefers_exact_type():
    assert config_from_dict(Cfg, {"either": "3"}).either == "3"
    assert config_from_dict(Cfg, {"either": 7}).either == 7


def test_literal():
    assert config_from_dict(Cfg, {"mode": "b"}).mode == "b"
    assert config_from_dict(Cfg, {"mode": "B"}).mode == "b"
    with pytest.raises(ValueError, match=r"mode: expected one of \['a', 'b'\], got 'c'"):
        config_from_dict(Cfg, {"mode": "c"})
    with pytest.raises(ValueError, match=r"encoder.act: .*did you mean 'prelu'"):
        config_from_dict(Cfg, {"encoder.act": "prelux"})


def test_list_and_tuple():
    cfg = config_from_dict(Cfg, {"sizes": [3, "4"], "pair": ["0.3", 1], "tags": "a, b"})
    assert cfg.sizes == [3, 4] and cfg.pair == (0.3, 1.0) and cfg.tags == ("a", "b")
    assert config_from_dict(Cfg, {"sizes": "5,6"}).sizes == [5, 6]
    assert config_from_dict(Cfg, {"sizes": 8}).sizes == [8]
    assert config_from_dict(Cfg, {"tags": []}).tags == ()
    with pytest.raises(TypeError, match=r"sizes\[1\]"):
        config_from_dict(Cfg, {"sizes": [1, "x"]})
    with pytest.raises(ValueError, match=r"pair: expected 2 items"):
        config_from_dict(Cfg, {"pair": [0.1]})


def test_dict_path_enum():
    cfg = config_from_dict(Cfg, {"weights": {"a": "1"}, "weights.b": 2, "path": "x/y",
                                 "pool": "sum"})
    assert cfg.weights == {"a": 1.0, "b": 2.0}
    assert cfg.path == Path("x/y") and cfg.pool is Pool.SUM
    assert config_from_dict(Cfg, {"pool": "SUM"}).pool is Pool.SUM


def test_nested_dataclass_dotted_and_mapping():
    cfg = config_from_dict(Cfg, {"encoder.layers": "3"})
    # the field's own default (hidden=128) is kept for the sub-fields not given
    assert cfg.encoder == Encoder(hidden=128, layers=3)
    cfg = config_from_dict(Cfg, {"encoder": {"hidden": 32}, "encoder.act": "prelu"})
    assert cfg.encoder == Encoder(hidden=32, layers=2, act="prelu")
    assert config_from_dict(Cfg, {"aux.hidden": 8}).aux == Encoder(hidden=8)
    assert config_from_dict(Cfg, {"aux": None}).aux is None
    assert config_from_dict(Cfg, {"encoder": Encoder(hidden=1)}).encoder.hidden == 1
    with pytest.raises(TypeError, match=r"encoder.hidden: expected int"):
        config_from_dict(Cfg, {"encoder.hidden": "wide"})


# ---- unknown keys ---------------------------------------------------------------------------
def test_unknown_key_suggests_and_lists_valid_keys():
    with pytest.raises(ValueError) as info:
        config_from_dict(Cfg, {"epoch": 3})
    msg = str(info.value)
    assert "unknown config key 'epoch'" in msg and "did you mean 'epochs'" in msg
    assert "valid keys:" in msg and "encoder.hidden" in msg and "lr" in msg
    assert "derived" not in msg  # init=False fields cannot be set


def test_unknown_nested_key_suggestion():
    with pytest.raises(ValueError, match=r"'encoder.hiden'.*did you mean 'encoder.hidden'"):
        config_from_dict(Cfg, {"encoder.hiden": 3})
    with pytest.raises(ValueError, match=r"'hidden'.*did you mean 'encoder.hidden'"):
        config_from_dict(Cfg, {"hidden": 3})
    with pytest.raises(ValueError, match="'derived'"):
        config_from_dict(Cfg, {"derived": 3})


def test_required_and_bad_arguments():
    with pytest.raises(ValueError, match="missing required config key.*dataset"):
        config_from_dict(Required, {})
    assert config_from_dict(Required, {"dataset": "x"}).dataset == "x"
    with pytest.raises(TypeError, match="cls"):
        config_from_dict(dict, {})
    with pytest.raises(TypeError, match="mapping"):
        config_from_dict(Cfg, [("lr", 1)])
    with pytest.raises(ValueError, match="both as a value"):
        config_from_dict(Cfg, {"encoder": 3, "encoder.hidden": 2})
    assert config_keys(Encoder) == ["hidden", "layers", "act"]


# ---- layers ---------------------------------------------------------------------------------
def test_build_config_layer_order():
    preset = {"lr": 0.1, "epochs": 100, "encoder": {"hidden": 256, "layers": 3}}
    yaml_layer = {"epochs": 50, "encoder.layers": 4, "name": "from-yaml"}
    overrides = {"epochs": "7", "encoder.hidden": 16}
    cfg = build_config(Cfg, preset, yaml_layer, overrides)
    assert cfg.lr == 0.1  # preset only
    assert cfg.name == "from-yaml"  # yaml over default
    assert cfg.epochs == 7  # --set over yaml over preset
    assert cfg.encoder == Encoder(hidden=16, layers=4)  # merged key by key
    assert build_config(Cfg, {"lr": 0.1}, None, {}).lr == 0.1
    assert build_config(Cfg).lr == 1e-3
    assert build_config(Cfg, Cfg(lr=0.3), {"epochs": 2}).lr == 0.3
    with pytest.raises(TypeError, match=r"layers\[1\]"):
        build_config(Cfg, {}, ["lr=1"])
    with pytest.raises(ValueError, match="'lrr'.*did you mean 'lr'"):
        build_config(Cfg, {"lr": 0.1}, {"lrr": 0.2})


def test_parse_overrides():
    got = parse_overrides(["lr=1e-3", "epochs=5", "use_bn=true", "sizes=[1, 2]",
                           "encoder.hidden=32", "name=a=b", "drop=", "drop2=null", "epochs=6"])
    assert got == {"lr": "1e-3", "epochs": 6, "use_bn": True, "sizes": [1, 2],
                   "encoder.hidden": 32, "name": "a=b", "drop": None, "drop2": None}
    assert parse_overrides(None) == {} and parse_overrides([]) == {}
    cfg = build_config(Cfg, parse_overrides(["lr=1e-3", "encoder.hidden=32", "name='no'"]))
    assert cfg.lr == 1e-3 and cfg.encoder.hidden == 32 and cfg.name == "no"


@pytest.mark.parametrize("item", ["lr", "=3", "a..b=1", "x=[1, 2"])
def test_parse_overrides_malformed(item):
    with pytest.raises(ValueError, match="malformed override") as info:
        parse_overrides(["epochs=1", item])
    assert repr(item) in str(info.value)


def test_parse_overrides_rejects_single_string():
    with pytest.raises(TypeError, match="items"):
        parse_overrides("lr=1")


# ---- YAML files -----------------------------------------------------------------------------
def test_load_yaml(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("lr: 0.5\nencoder:\n  hidden: 8\n")
    assert load_yaml(p) == {"lr": 0.5, "encoder": {"hidden": 8}}
    p.write_text("")
    assert load_yaml(p) == {}
    with pytest.raises(ValueError, match="not found.*missing.yaml"):
        load_yaml(tmp_path / "missing.yaml")
    with pytest.raises(ValueError, match="expected a file"):
        load_yaml(tmp_path)
    p.write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="expected a mapping.*got list"):
        load_yaml(p)
    p.write_text("lr: [1, 2\nepochs: 3\n")
    with pytest.raises(ValueError, match=r"invalid YAML at line"):
        load_yaml(p)


def test_save_load_round_trip(tmp_path):
    cfg = build_config(Cfg, {"lr": 1e-5, "drop": 0.1 + 0.2, "pair": (0.25, 0.5), "tags": ("x",),
                             "encoder.act": "prelu", "aux.layers": 1, "path": "a/b",
                             "weights": {"w": 1.5}, "pool": "sum", "either": "7"})
    path = save_config(cfg, tmp_path / "run" / "config.yaml",
                       extra={"method": "dummy", "seed": 3, "device": "cpu",
                              "torch_version": "2.x"})
    text = path.read_text()
    assert text.startswith("# contrastkit configuration")
    data = load_yaml(path)
    assert list(data)[0] == RUN_SECTION
    run = data.pop(RUN_SECTION)
    assert run == {"method": "dummy", "seed": 3, "device": "cpu", "torch_version": "2.x"}
    back = config_from_dict(Cfg, data)
    assert back == cfg
    assert config_to_dict(back) == config_to_dict(cfg)
    # plain types only: yaml.safe_dump accepts it, tuples became lists, paths strings
    plain = config_to_dict(cfg)
    yaml.safe_dump(plain)
    assert plain["pair"] == [0.25, 0.5] and plain["path"] == "a/b" and plain["pool"] == "sum"
    assert "derived" not in plain
    # without extra there is no run section
    save_config(cfg, tmp_path / "plain.yaml")
    assert RUN_SECTION not in load_yaml(tmp_path / "plain.yaml")


def test_save_config_reserved_run_field(tmp_path):
    @dataclass
    class HasRun:
        dataset: str = "x"
        run: int = 1

    with pytest.raises(ValueError, match="reserved"):
        save_config(HasRun(), tmp_path / "c.yaml", extra={"method": "m"})
    with pytest.raises(TypeError, match="cfg"):
        config_to_dict(HasRun)
    assert dataclasses.is_dataclass(HasRun)


def test_save_config_writes_atomically_with_a_unique_temporary_file(tmp_path, monkeypatch):
    """A fixed ``config.yaml.tmp`` name would let two writers clobber each other's temporary
    file (here: a stranger's file of that name is overwritten and renamed away); the write must
    also be fsync-ed before the rename."""
    path = tmp_path / "config.yaml"
    stranger = tmp_path / "config.yaml.tmp"
    stranger.write_text("another writer's half-written file")
    synced: list[int] = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real(fd))[1])
    save_config(Cfg(lr=0.5), path, extra={"method": "m"})
    assert synced, "save_config did not fsync the new file"
    assert stranger.read_text() == "another writer's half-written file"
    assert load_yaml(path)["lr"] == 0.5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml", "config.yaml.tmp"]
