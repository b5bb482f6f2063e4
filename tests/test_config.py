"""Configs: YAML/JSON files into validated kwargs; every error names key and file."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import adaptive_optax as ao
from adaptive_optax.config import ConfigError

CONFIGS = {
    "empty": {},
    "conservative": dict(ao.presets.conservative),
    "cosine": dict(use_cosine=True, T0=100, T_mult=2, eta_min_scale=0.2),
    "rl": dict(use_reward=True, reward_up=1.05, reward_down=0.8,
               min_scale=1e-3, max_scale=50.0),
    "hyperparams": dict(learning_rate=0.05, momentum=0.9, lr_min=1e-7,
                        lr_max=1.0, mode="reference", var_window=10),
}
FORMATS = ["yaml", "json"]


def _write(tmp_path, fmt, data, name="cfg"):
  path = tmp_path / f"{name}.{fmt}"
  if fmt == "json":
    path.write_text(json.dumps(data))
  else:
    import yaml
    path.write_text(yaml.safe_dump(data))
  return path


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_save_then_load_round_trips(tmp_path, fmt, name):
  path = tmp_path / f"c.{fmt}"
  ao.save_config(path, CONFIGS[name])
  assert ao.load_config(path) == CONFIGS[name]


def test_loaded_config_drives_simulate_like_the_kwargs(tmp_path):
  kwargs = dict(up_factor=1.1, patience=5, var_window=5, use_cosine=True,
                T0=30)
  cfg = ao.load_config(_write(tmp_path, "yaml", kwargs))
  losses = jnp.abs(jnp.sin(jnp.arange(120.0) / 7)) + 1.0
  a = jax.jit(lambda l: ao.simulate(l, **cfg))(losses)
  b = jax.jit(lambda l: ao.simulate(l, **kwargs))(losses)
  np.testing.assert_array_equal(a["scale"], b["scale"])


@pytest.mark.parametrize("fmt", FORMATS)
def test_preset_key_is_expanded_and_overridden(tmp_path, fmt):
  cfg = ao.load_config(_write(tmp_path, fmt, {"preset": "rl", "reward_up": 1.2}))
  assert cfg == dict(use_reward=True, reward_up=1.2, reward_down=0.8)


def test_yaml_exponent_without_dot_is_a_number(tmp_path):
  # YAML 1.1 (PyYAML) reads 1e-4 as the string "1e-4".
  path = tmp_path / "c.yaml"
  path.write_text("min_rel_improve: 1e-4\nmin_scale: 1e-3\n")
  assert ao.load_config(path) == dict(min_rel_improve=1e-4, min_scale=1e-3)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("key", ["patiense", "lr", "use_cosin"])
def test_unknown_key_is_an_error_naming_key_and_file(tmp_path, fmt, key):
  path = _write(tmp_path, fmt, {"patience": 3, key: 1})
  with pytest.raises(ConfigError) as err:
    ao.load_config(path)
  assert repr(key) in str(err.value) and str(path) in str(err.value)


BAD_VALUES = [
    ("patience", -1), ("patience", 2.5), ("loss_beta", 1.5),
    ("up_factor", 0), ("mode", "fast"), ("var_window", 2.5),
    ("use_cosine", "yes"), ("patience", "abc"), ("momentum_max", 1.0),
    ("min_scale", -1.0), ("learning_rate", -0.1), ("momentum", 1.2),
    ("cooldown", None), ("preset", "aggressive"),
]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("key,value", BAD_VALUES)
def test_bad_value_is_an_error_naming_key_and_file(tmp_path, fmt, key, value):
  data = {key: value}
  if key == "momentum":
    data["learning_rate"] = 0.1
  path = _write(tmp_path, fmt, data)
  with pytest.raises(ConfigError) as err:
    ao.load_config(path)
  assert key in str(err.value) and str(path) in str(err.value)


def test_scale_and_lr_bounds_together_are_an_error(tmp_path):
  path = _write(tmp_path, "json", {"min_scale": 1e-3, "lr_max": 1.0})
  with pytest.raises(ConfigError, match="min_scale.*lr_max"):
    ao.load_config(path)


def test_save_rejects_a_bad_config_and_writes_nothing(tmp_path):
  path = tmp_path / "c.yaml"
  with pytest.raises(ConfigError, match="patience"):
    ao.save_config(path, {"patience": -3})
  assert not path.exists()


@pytest.mark.parametrize("text,suffix,match", [
    ("patience: [1,\n", "yaml", "not valid YAML"),
    ('{"patience": ', "json", "not valid JSON"),
    ("- 1\n- 2\n", "yaml", "mapping"),
    ("patience: 3\n", "toml", "unknown config format"),
])
def test_unreadable_file_is_an_error_naming_the_file(tmp_path, text, suffix,
                                                     match):
  path = tmp_path / f"c.{suffix}"
  path.write_text(text)
  with pytest.raises(ConfigError, match=match) as err:
    ao.load_config(path)
  assert str(path) in str(err.value)


def test_missing_file_is_file_not_found(tmp_path):
  with pytest.raises(FileNotFoundError, match="nope.yaml"):
    ao.load_config(tmp_path / "nope.yaml")
