"""Hyperparameter names, the seed's defaults, and validation at construction.

Every front end (``adaptive_scale``, ``adaptive_hyperparams``, ``simulate``,
config files) builds its policy through :func:`build_policy`, so a value is
checked once, in one place, with an error that names the argument.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import jax
import numpy as np

from adaptive_optax import _policy

# The seed's hyperparameters and defaults, minus the absolute LR bounds (which
# only ``adaptive_hyperparams`` takes) and the static switches.
POLICY_DEFAULTS: dict[str, Any] = dict(
    loss_beta=0.9,
    reward_beta=0.9,
    up_factor=1.05,
    down_factor=0.7,
    min_rel_improve=1e-4,
    var_damp_base=1.0,
    var_damp_scale=1.0,
    reward_up=1.03,
    reward_down=0.90,
    momentum_up=0.01,
    momentum_down=0.90,
    patience=20,
    big_drop=0.5,
    cooldown=50,
    T0=200,
    T_mult=2,
    eta_min_scale=0.1,
    momentum_min=0.0,
    momentum_max=0.999,
    # Stable mode only: start-up probe and spike guard (not in the seed).
    probe_growth=2.0,
    guard_ratio=2.0,
    guard_sigma=4.0,
    cooldown_ratio=1.0,
    start_scale=0.1,
)
STATIC_DEFAULTS: dict[str, Any] = dict(
    mode="stable", var_window=20, use_reward=False, use_cosine=False)
LR_BOUNDS = dict(lr_min=1e-7, lr_max=10.0)
# Relative bounds of adaptive_scale: wide, so a start 100x off can recover.
SCALE_BOUNDS = dict(min_scale=1e-6, max_scale=1e4)


def _concrete(value) -> float | None:
  """The value as a float, or None when it is traced (checked at run time)."""
  if isinstance(value, jax.core.Tracer):
    return None
  arr = np.asarray(value)
  if arr.ndim != 0:
    return None  # a batch of values for vmap: checked elementwise below
  return float(arr)


def _values(value) -> list[float]:
  if isinstance(value, jax.core.Tracer):
    return []
  return [float(v) for v in np.asarray(value, dtype=np.float64).ravel()]


def _check(name: str, value, ok, requirement: str) -> None:
  for v in _values(value):
    if not (math.isfinite(v) and ok(v)):
      raise ValueError(f"{name} must be {requirement}, got {name}={v!r}.")


def _check_order(lo_name, lo, hi_name, hi) -> None:
  lo_v, hi_v = _values(lo), _values(hi)
  if lo_v and hi_v and max(lo_v) > min(hi_v):
    raise ValueError(
        f"{lo_name} must not exceed {hi_name}, got {lo_name}={max(lo_v)!r} > "
        f"{hi_name}={min(hi_v)!r}.")


def validate(hp: Mapping[str, Any], static: Mapping[str, Any],
             bound_names: tuple[str, str]) -> None:
  """Raises ValueError naming the first invalid argument."""
  mode = static["mode"]
  if mode not in _policy.MODES:
    raise ValueError(f"mode must be one of {_policy.MODES}, got mode={mode!r}.")
  w = static["var_window"]
  if isinstance(w, bool) or not isinstance(w, (int, np.integer)) or w < 1:
    raise ValueError(
        f"var_window must be a Python int >= 1 (it sizes the state), got "
        f"var_window={w!r}.")
  for name in ("use_reward", "use_cosine"):
    if not isinstance(static[name], (bool, np.bool_)):
      raise ValueError(f"{name} must be a bool (it is static), got "
                       f"{name}={static[name]!r}.")

  for name in ("loss_beta", "reward_beta"):
    _check(name, hp[name], lambda v: 0 <= v < 1, "in [0, 1)")
  for name in ("up_factor", "down_factor", "reward_up", "reward_down",
               "big_drop", "momentum_down", "var_damp_base"):
    _check(name, hp[name], lambda v: v > 0, "a positive number")
  _check("var_damp_scale", hp["var_damp_scale"], lambda v: v >= 0,
         "non-negative")
  _check("min_rel_improve", hp["min_rel_improve"], lambda v: True, "finite")
  _check("probe_growth", hp["probe_growth"], lambda v: v >= 1, ">= 1")
  _check("guard_ratio", hp["guard_ratio"], lambda v: v > 1, "> 1")
  _check("guard_sigma", hp["guard_sigma"], lambda v: v >= 0, "non-negative")
  _check("cooldown_ratio", hp["cooldown_ratio"], lambda v: v >= 0,
         "non-negative")
  _check("start_scale", hp["start_scale"], lambda v: 0 < v <= 1, "in (0, 1]")
  _check("momentum_up", hp["momentum_up"], lambda v: v >= 0, "non-negative")
  for name in ("patience", "cooldown"):
    _check(name, hp[name], lambda v: v >= 0 and v == int(v),
           "a non-negative integer")
  if static["use_cosine"]:
    _check("T0", hp["T0"], lambda v: v >= 1 and v == int(v),
           "an integer >= 1 when use_cosine=True")
    _check("T_mult", hp["T_mult"], lambda v: v >= 1,
           ">= 1 when use_cosine=True")
  _check("eta_min_scale", hp["eta_min_scale"], lambda v: 0 <= v <= 1,
         "in [0, 1]")
  for name in ("momentum_min", "momentum_max"):
    _check(name, hp[name], lambda v: 0 <= v < 1, "in [0, 1)")
  _check_order("momentum_min", hp["momentum_min"], "momentum_max",
               hp["momentum_max"])
  lo_name, hi_name = bound_names
  _check(lo_name, hp[lo_name], lambda v: v >= 0, "non-negative")
  _check(hi_name, hp[hi_name], lambda v: v > 0, "positive")
  _check_order(lo_name, hp[lo_name], hi_name, hp[hi_name])


def build_policy(
    kwargs: Mapping[str, Any], bounds: Mapping[str, Any], where: str, *,
    learning_rate=None, momentum=None,
) -> tuple[_policy.Hyperparams, _policy.Config]:
  """Merges defaults and ``kwargs``; validates; splits static from numeric.

  Args:
    kwargs: user arguments (policy names, static switches and bounds).
    bounds: the two bound names with their defaults (``lr_min``/``lr_max`` or
      ``min_scale``/``max_scale``).
    where: the caller's name, for the error on an unknown argument.
    learning_rate: the starting LR, checked when given.
    momentum: the starting momentum, checked when given; it is then driven
      (``Config.has_momentum``).

  Returns:
    ``(Hyperparams, Config)``.
  """
  if learning_rate is not None:
    _check("learning_rate", learning_rate, lambda v: v > 0, "a positive number")
  if momentum is not None:
    _check("momentum", momentum, lambda v: 0 <= v < 1, "in [0, 1)")
  known = {**POLICY_DEFAULTS, **STATIC_DEFAULTS, **bounds}
  unknown = sorted(set(kwargs) - set(known))
  if unknown:
    hint = ""
    if set(unknown) & {"lr_min", "lr_max"} and "min_scale" in bounds:
      hint = (" adaptive_scale bounds the relative scale: use min_scale/"
              "max_scale (lr_min/lr_max belong to adaptive_hyperparams).")
    raise TypeError(f"{where} got unexpected argument(s) {unknown}.{hint}")
  merged = {**known, **kwargs}
  static = {k: merged[k] for k in STATIC_DEFAULTS}
  lo_name, hi_name = bounds
  validate(merged, static, (lo_name, hi_name))
  numeric = {k: merged[k] for k in POLICY_DEFAULTS}
  hp = _policy.Hyperparams(
      rate_min=merged[lo_name], rate_max=merged[hi_name], **numeric)
  cfg = _policy.Config(
      mode=static["mode"], var_window=int(static["var_window"]),
      use_reward=bool(static["use_reward"]),
      use_cosine=bool(static["use_cosine"]),
      has_momentum=momentum is not None)
  return hp, cfg
