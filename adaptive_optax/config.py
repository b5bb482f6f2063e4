"""Configs in YAML or JSON files: read, validate, write.

A config holds the keyword arguments of a front end, by the seed's names::

  # adaptive.yaml
  preset: conservative      # optional; the keys below override it
  patience: 60
  use_cosine: true
  T0: 100

``ao.adaptive_scale(**ao.load_config("adaptive.yaml"))``. A config that sets
``learning_rate`` (and ``momentum``, ``lr_min``, ``lr_max``) is for
``adaptive_hyperparams`` or ``simulate``. Values are checked by the same
code as the front ends' (``_options.build_policy``).
"""

from __future__ import annotations

import json
import math
import os
import pathlib
from typing import Any, Mapping

import numpy as np

from adaptive_optax import _options
from adaptive_optax import presets as _presets

# Keys a config may hold besides the policy's (the starting point of
# adaptive_hyperparams / simulate).
START_KEYS = ("learning_rate", "momentum")
_STATIC_TYPES = dict(mode=str, var_window=int, use_reward=bool,
                     use_cosine=bool)
_TYPE_NAMES = {str: "a string", int: "an integer", bool: "true or false"}


class ConfigError(ValueError):
  """A config file that cannot be used; the message names the file and key."""


def _known_keys() -> set[str]:
  # Read at call time: the policy's names live in _options alone.
  return (set(_options.POLICY_DEFAULTS) | set(_options.STATIC_DEFAULTS)
          | set(_options.SCALE_BOUNDS) | set(_options.LR_BOUNDS)
          | set(START_KEYS))


def _number(where: str, key: str, value) -> float | int:
  """A JSON/YAML scalar as a Python number; YAML 1.1 reads '1e-4' as text."""
  if isinstance(value, (bool, np.bool_)) or value is None:
    raise ConfigError(f"{where}: key {key!r} must be a number, got {value!r}.")
  if isinstance(value, str):
    try:
      value = float(value)
    except ValueError:
      raise ConfigError(
          f"{where}: key {key!r} must be a number, got {value!r}.") from None
  if isinstance(value, (np.integer, np.floating)):
    value = value.item()
  if isinstance(value, (int, float)):
    return value
  try:  # a 0-d jax or numpy array
    arr = np.asarray(value)
  except Exception:  # pylint: disable=broad-except
    arr = None
  if arr is not None and arr.ndim == 0 and arr.dtype.kind in "iuf":
    return arr.item()
  raise ConfigError(f"{where}: key {key!r} must be a number, got {value!r}.")


def normalize(config: Mapping[str, Any], where: str = "config"
              ) -> dict[str, Any]:
  """Expands ``preset``, checks every key and value; returns plain kwargs.

  Args:
    config: a mapping as read from a file (or built in code).
    where: the file name for error messages.

  Returns:
    A ``dict`` of Python scalars, accepted by ``simulate`` and, depending on
    its keys, ``adaptive_scale`` or ``adaptive_hyperparams``.

  Raises:
    ConfigError: naming ``where`` and the offending key.
  """
  if not isinstance(config, Mapping):
    raise ConfigError(
        f"{where}: a config must be a mapping of keys to values, got "
        f"{type(config).__name__}.")
  config = dict(config)
  for key in config:
    if not isinstance(key, str):
      raise ConfigError(f"{where}: key {key!r} is not a string.")
  preset = config.pop("preset", None)
  if preset is not None and not isinstance(preset, str):
    raise ConfigError(f"{where}: key 'preset' must be a preset name, got "
                      f"{preset!r}.")
  try:
    merged = _presets.merge(preset, config)
  except ValueError as e:
    raise ConfigError(f"{where}: key 'preset': {e}") from None

  known = _known_keys()
  unknown = sorted(set(merged) - known)
  if unknown:
    raise ConfigError(
        f"{where}: unknown key {unknown[0]!r} (known keys: preset, "
        f"{', '.join(sorted(known))}).")
  out = {}
  for key, value in merged.items():
    if key == "rules":  # a list of rule names (YAML/JSON have no tuples)
      if value is not None and (isinstance(value, str) or not all(
          isinstance(r, str) for r in value)):
        raise ConfigError(f"{where}: key 'rules' must be a list of rule "
                          f"names, got {value!r}.")
      out[key] = None if value is None else list(value)
    elif key in _STATIC_TYPES:
      kind = _STATIC_TYPES[key]
      ok = isinstance(value, kind) and not (kind is int and
                                            isinstance(value, bool))
      if not ok:
        raise ConfigError(f"{where}: key {key!r} must be {_TYPE_NAMES[kind]}, "
                          f"got {value!r}.")
      out[key] = value
    else:
      out[key] = _number(where, key, value)

  scale_keys = sorted(set(out) & set(_options.SCALE_BOUNDS))
  lr_keys = sorted(set(out) & (set(_options.LR_BOUNDS) | set(START_KEYS)))
  if scale_keys and lr_keys:
    raise ConfigError(
        f"{where}: key {scale_keys[0]!r} bounds a scale (adaptive_scale) but "
        f"key {lr_keys[0]!r} is for a learning rate (adaptive_hyperparams); "
        "use one or the other.")
  if "momentum" in out and "learning_rate" not in out:
    raise ConfigError(f"{where}: key 'momentum' needs key 'learning_rate'.")
  for key, requirement, ok in (
      ("learning_rate", "a positive number", lambda v: v > 0),
      ("momentum", "in [0, 1)", lambda v: 0 <= v < 1)):
    if key in out and not (math.isfinite(out[key]) and ok(out[key])):
      raise ConfigError(
          f"{where}: key {key!r} must be {requirement}, got {out[key]!r}.")

  bounds = _options.LR_BOUNDS if lr_keys else _options.SCALE_BOUNDS
  policy = {k: v for k, v in out.items() if k not in START_KEYS}
  try:
    _options.build_policy(policy, bounds, where,
                          learning_rate=out.get("learning_rate"))
  except (TypeError, ValueError) as e:
    raise ConfigError(f"{where}: {e}") from None
  return out


def _load_text(path: pathlib.Path, text: str) -> Any:
  suffix = path.suffix.lower()
  if suffix == ".json":
    try:
      return json.loads(text)
    except json.JSONDecodeError as e:
      raise ConfigError(f"{path}: not valid JSON ({e}).") from None
  if suffix in (".yaml", ".yml"):
    try:
      import yaml  # pylint: disable=import-outside-toplevel
    except ImportError:
      raise ConfigError(
          f"{path}: reading YAML needs PyYAML: pip install "
          "'adaptive_optax[yaml]' (or use a .json config).") from None
    try:
      return yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
      msg = " ".join(str(e).split())
      raise ConfigError(f"{path}: not valid YAML ({msg}).") from None
  raise ConfigError(
      f"{path}: unknown config format {suffix!r}; use .yaml, .yml or .json.")


def load_config(path: str | os.PathLike) -> dict[str, Any]:
  """Reads a YAML or JSON config into validated keyword arguments.

  Args:
    path: a ``.yaml``/``.yml`` (needs PyYAML) or ``.json`` file holding one
      mapping. An optional ``preset`` key names a base from
      :mod:`adaptive_optax.presets`; the other keys override it.

  Returns:
    A ``dict`` of keyword arguments (the preset expanded).

  Raises:
    FileNotFoundError: when ``path`` does not exist.
    ConfigError: (a ``ValueError``) for bad syntax, an unknown key or a bad
      value, naming the file and the key.

  Example:
    >>> import json, pathlib, tempfile
    >>> import adaptive_optax as ao
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "c.json"
    >>> _ = path.write_text(json.dumps({"preset": "rl", "patience": 30}))
    >>> cfg = ao.load_config(path)
    >>> cfg["patience"], cfg["use_reward"]
    (30, True)
    >>> tx = ao.adaptive_scale(**cfg)
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"{path}: config file not found.")
  data = _load_text(path, path.read_text(encoding="utf-8"))
  return normalize(data, str(path))


def save_config(path: str | os.PathLike, config: Mapping[str, Any]) -> None:
  """Validates ``config`` and writes it as YAML or JSON (by the extension).

  ``load_config(path)`` then returns the same keyword arguments (a preset is
  written expanded). Missing parent folders are created.

  Args:
    path: a ``.yaml``/``.yml`` or ``.json`` file to write.
    config: keyword arguments, as given to a front end.

  Raises:
    ConfigError: for an unknown key or a bad value, or an unknown extension.
  """
  path = pathlib.Path(path)
  data = normalize(config, str(path))
  suffix = path.suffix.lower()
  if suffix == ".json":
    text = json.dumps(data, indent=2) + "\n"
  elif suffix in (".yaml", ".yml"):
    try:
      import yaml  # pylint: disable=import-outside-toplevel
    except ImportError:
      raise ConfigError(
          f"{path}: writing YAML needs PyYAML: pip install "
          "'adaptive_optax[yaml]' (or use a .json config).") from None
    text = yaml.safe_dump(data, sort_keys=False)
  else:
    raise ConfigError(
        f"{path}: unknown config format {suffix!r}; use .yaml, .yml or .json.")
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(text, encoding="utf-8")
