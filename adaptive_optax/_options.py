"""Hyperparameter names, the seed's defaults, and validation at construction.

Every front end (``adaptive_scale``, ``adaptive_hyperparams``, ``simulate``,
config files) builds its policy through :func:`build_policy`, so a value is
checked once, in one place, with an error that names the argument.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, NamedTuple

import jax
import numpy as np

from adaptive_optax import _stable
from adaptive_optax import _state

class Rule(NamedTuple):
  """A hyperparameter's valid values: ``ok(v)`` for each concrete value."""

  ok: Callable[[float], bool]
  text: str  # completes "name must be ..."
  integer: bool = False  # an integer type is required (traced ones too)


_INT32_MAX = 2**31 - 1
BETA = Rule(lambda v: 0 <= v < 1, "in [0, 1)")
UP = Rule(lambda v: v >= 1, ">= 1 (it moves the rate up)")
DOWN = Rule(lambda v: 0 < v <= 1, "in (0, 1] (it moves the rate down)")
UNIT = Rule(lambda v: 0 <= v <= 1, "in [0, 1]")
POSITIVE = Rule(lambda v: v > 0, "a positive number")
NONNEGATIVE = Rule(lambda v: v >= 0, "non-negative")
STEPS = Rule(lambda v: 0 <= v <= _INT32_MAX,
             f"an integer in [0, {_INT32_MAX}] (a number of steps)", True)
PERIOD = Rule(lambda v: 1 <= v <= _INT32_MAX,
              f"an integer in [1, {_INT32_MAX}] (a number of steps)", True)

# The policy's numeric hyperparameters: (name, the seed's default, valid
# values), one line each, and the ONE place their defaults are written
# (adaptive_scale's signature is checked against it by the tests). To add
# one: a line here, a parameter and an Args entry in adaptive_scale.
HYPERPARAMS: tuple[tuple[str, Any, Rule], ...] = (
    ("loss_beta", 0.9, BETA),
    ("reward_beta", 0.9, BETA),
    ("up_factor", 1.05, UP),
    ("down_factor", 0.7, DOWN),
    ("min_rel_improve", 1e-4, NONNEGATIVE),
    ("var_damp_base", 1.0, POSITIVE),
    ("var_damp_scale", 1.0, NONNEGATIVE),
    ("reward_up", 1.03, UP),
    ("reward_down", 0.90, DOWN),
    ("momentum_up", 0.01, Rule(lambda v: 0 <= v < 1, "in [0, 1)")),
    ("momentum_down", 0.90, DOWN),
    ("patience", 20, STEPS),
    ("big_drop", 0.5, DOWN),
    ("cooldown", 50, STEPS),
    ("T0", 200, PERIOD),  # checked when use_cosine=True (else unused)
    ("T_mult", 2, UP),  # checked when use_cosine=True (else unused)
    ("eta_min_scale", 0.1, UNIT),
    ("momentum_min", 0.0, BETA),
    ("momentum_max", 0.999, BETA),
    # Stable mode only: start-up probe and spike guard (not in the seed).
    ("probe_growth", 2.0, UP),
    ("guard_ratio", 2.0, Rule(lambda v: v > 1, "> 1")),
    ("guard_sigma", 4.0, NONNEGATIVE),
    ("cooldown_ratio", 1.0, NONNEGATIVE),
    ("start_scale", 0.1, Rule(lambda v: 0 < v <= 1, "in (0, 1]")),
    # Stable mode: the horizon, when the user knows it (0: none).
    ("total_steps", 0, STEPS),
    ("decay_fraction", 0.2, Rule(lambda v: 0 < v <= 1, "in (0, 1]")),
    # Stable mode: the drift rule's window of updates (0: var_window).
    ("drift_window", 0, Rule(lambda v: v == 0 or 2 <= v <= _INT32_MAX,
                             f"0 (var_window) or an integer in [2, "
                             f"{_INT32_MAX}] (a number of updates)", True)),
)
# Checked only when the policy that reads them is on (static switch).
_ONLY_WITH = dict(T0="use_cosine", T_mult="use_cosine")
POLICY_DEFAULTS: dict[str, Any] = {n: d for n, d, _ in HYPERPARAMS}
RULES: dict[str, Rule] = {n: r for n, _, r in HYPERPARAMS}
STATIC_DEFAULTS: dict[str, Any] = dict(
    mode="stable", var_window=20, use_reward=False, use_cosine=False,
    rules=None)
LR_BOUNDS = dict(lr_min=1e-7, lr_max=10.0)
# Relative bounds of adaptive_scale: wide, so a start 100x off can recover.
SCALE_BOUNDS = dict(min_scale=1e-6, max_scale=1e4)


def _hyperparams_type():
  fields = [(n, jax.typing.ArrayLike) for n in POLICY_DEFAULTS]
  fields += [("rate_min", jax.typing.ArrayLike),  # lr_min, or min_scale
             ("rate_max", jax.typing.ArrayLike)]  # lr_max, or max_scale
  cls = NamedTuple("Hyperparams", fields)
  cls.__doc__ = ("Numeric hyperparameters (generated from HYPERPARAMS); each "
                 "may be a Python number or a (traced) array.")
  cls.__module__ = __name__
  return cls


Hyperparams = _hyperparams_type()


def _values(name: str, value, integer: bool) -> list[float]:
  """The concrete values to range-check (none when traced); checks the type.

  A traced value's range cannot be known at construction, nor whether a
  traced float holds an integer: it only has to be a real number (sweeps
  pass every hyperparameter as one float array).
  """
  kind = "an integer" if integer else "a real number"
  if isinstance(value, (bool, np.bool_, str, bytes)) or value is None:
    raise ValueError(f"{name} must be {kind}, got {name}={value!r}.")
  dtype = getattr(value, "dtype", None)
  if isinstance(value, jax.core.Tracer):
    arr = None
  else:
    try:
      arr = np.asarray(value)
    except Exception:  # pylint: disable=broad-except
      raise ValueError(f"{name} must be {kind}, got {name}={value!r}.") from None
    dtype = arr.dtype
  ok_kinds = "iu" if integer and arr is not None else "iuf"
  if np.dtype(dtype).kind not in ok_kinds:
    raise ValueError(
        f"{name} must be {kind}, got {name}={value!r} (dtype {dtype}).")
  return [] if arr is None else [float(v) for v in arr.ravel()]


def _check(name: str, value, rule: Rule) -> None:
  for v in _values(name, value, rule.integer):
    if not (math.isfinite(v) and rule.ok(v)):
      raise ValueError(f"{name} must be {rule.text}, got {name}={v!r}.")


def _check_order(lo_name, lo, hi_name, hi) -> None:
  lo_v, hi_v = _values(lo_name, lo, False), _values(hi_name, hi, False)
  if lo_v and hi_v and max(lo_v) > min(hi_v):
    raise ValueError(
        f"{lo_name} must not exceed {hi_name}, got {lo_name}={max(lo_v)!r} > "
        f"{hi_name}={min(hi_v)!r}.")


def _check_static(static: Mapping[str, Any]) -> None:
  mode = static["mode"]
  if mode not in _state.MODES:
    raise ValueError(f"mode must be one of {_state.MODES}, got mode={mode!r}.")
  w = static["var_window"]
  if isinstance(w, (jax.Array, np.ndarray)):
    raise ValueError(
        f"var_window must be a Python int (it sizes the state), got an array "
        f"var_window={w!r}. Under optax.inject_hyperparams, name it static: "
        "inject_hyperparams(ao.adaptive_scale, static_args=('var_window',)).")
  if isinstance(w, bool) or not isinstance(w, (int, np.integer)) or w < 2:
    raise ValueError(
        "var_window must be a Python int >= 2 (it sizes the state, and a "
        f"variance needs two losses), got var_window={w!r}.")
  for name in ("use_reward", "use_cosine"):
    if not isinstance(static[name], (bool, np.bool_)):
      raise ValueError(f"{name} must be a bool (it is static), got "
                       f"{name}={static[name]!r}.")


def validate(hp: Mapping[str, Any], static: Mapping[str, Any],
             bound_names: tuple[str, str]) -> None:
  """Raises ValueError naming the first invalid argument.

  Every hyperparameter is checked against its :data:`HYPERPARAMS` rule, for
  every front end (they all build through :func:`build_policy`). Traced
  values (under ``jit`` or ``vmap``) are only checked to be real numbers:
  their range (and whether a float holds an integer) cannot be known at
  construction, and an out-of-range traced value is used as given.
  """
  _check_static(static)
  for name, rule in RULES.items():
    switch = _ONLY_WITH.get(name)
    if switch and not static[switch]:  # unused: its type only
      _values(name, hp[name], rule.integer)
      continue
    _check(name, hp[name], rule)
  _check_order("momentum_min", hp["momentum_min"], "momentum_max",
               hp["momentum_max"])
  lo_name, hi_name = bound_names
  _check(lo_name, hp[lo_name], NONNEGATIVE)
  _check(hi_name, hp[hi_name], POSITIVE)
  _check_order(lo_name, hp[lo_name], hi_name, hp[hi_name])


def _check_start(name, value, lo_name, lo, hi_name, hi) -> None:
  """A given starting rate must lie within the bounds: never clamped."""
  vals = _values(name, value, False)
  lo_v, hi_v = _values(lo_name, lo, False), _values(hi_name, hi, False)
  if vals and lo_v and min(vals) < max(lo_v):
    raise ValueError(
        f"{name}={min(vals)!r} is below {lo_name}={max(lo_v)!r}; it would be "
        f"raised silently: lower {lo_name} or raise {name}.")
  if vals and hi_v and max(vals) > min(hi_v):
    raise ValueError(
        f"{name}={max(vals)!r} is above {hi_name}={min(hi_v)!r}; it would be "
        f"clamped silently: raise {hi_name} or lower {name}.")


def build_policy(
    kwargs: Mapping[str, Any], bounds: Mapping[str, Any], where: str, *,
    learning_rate=None, momentum=None,
) -> tuple[Hyperparams, _state.Config]:
  """Merges defaults and ``kwargs``; validates; splits static from numeric.

  Args:
    kwargs: user arguments (policy names, static switches and bounds).
    bounds: the two bound names with their defaults (``lr_min``/``lr_max`` or
      ``min_scale``/``max_scale``).
    where: the caller's name, for the error on an unknown argument.
    learning_rate: the starting LR, checked when given: positive, and within
      the bounds (a rate outside them is refused, not clamped).
    momentum: the starting momentum, checked when given; it is then driven
      (``Config.has_momentum``).

  Returns:
    ``(Hyperparams, Config)``.
  """
  if learning_rate is not None:
    _check("learning_rate", learning_rate, POSITIVE)
  if momentum is not None:
    _check("momentum", momentum, BETA)
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
  # Reference mode is the seed's class, which clamps a starting rate outside
  # its bounds at construction: porting code relies on that, so only the
  # stable mode refuses it.
  if learning_rate is not None and static["mode"] == "stable":
    _check_start("learning_rate", learning_rate, lo_name, merged[lo_name],
                 hi_name, merged[hi_name])
  numeric = {k: merged[k] for k in POLICY_DEFAULTS}
  hp = Hyperparams(
      rate_min=merged[lo_name], rate_max=merged[hi_name], **numeric)
  cfg = _state.Config(
      mode=static["mode"], var_window=int(static["var_window"]),
      use_reward=bool(static["use_reward"]),
      use_cosine=bool(static["use_cosine"]),
      has_momentum=momentum is not None,
      rules=_rules(static["rules"]))
  return hp, cfg


def _rules(rules) -> tuple[str, ...]:
  """The stable policy's rules to run: all by default (an ablation's knob)."""
  if rules is None:
    return _stable.RULES
  if isinstance(rules, str) or not all(r in _stable.RULES for r in rules):
    raise ValueError(f"rules must be a subset of {_stable.RULES}, got "
                     f"rules={rules!r}.")
  return tuple(r for r in _stable.RULES if r in rules)
