"""Construction rejects invalid values with a ValueError naming the argument."""

import jax.numpy as jnp
import optax
import pytest

import adaptive_optax as ao

BAD_POLICY = [
    ("up_factor", 0.0), ("up_factor", -1.0), ("down_factor", 0.0),
    ("reward_up", -0.1), ("reward_down", 0.0), ("big_drop", 0.0),
    ("momentum_down", 0.0), ("var_damp_base", 0.0), ("var_damp_scale", -1.0),
    ("loss_beta", 1.0), ("loss_beta", -0.1), ("reward_beta", 1.5),
    ("var_window", 0), ("var_window", 2.5), ("patience", -1), ("patience", 1.5),
    ("cooldown", -3), ("eta_min_scale", 1.5), ("momentum_min", -0.1),
    ("momentum_max", 1.0), ("momentum_up", -0.01), ("mode", "fast"),
    ("up_factor", float("nan")), ("use_cosine", "yes"),
]


@pytest.mark.parametrize("name,value", BAD_POLICY)
def test_adaptive_scale_names_the_bad_argument(name, value):
  with pytest.raises(ValueError, match=name):
    ao.adaptive_scale(**{name: value})


@pytest.mark.parametrize("name,value", BAD_POLICY)
def test_adaptive_hyperparams_names_the_bad_argument(name, value):
  with pytest.raises(ValueError, match=name):
    ao.adaptive_hyperparams(optax.sgd, learning_rate=0.1, **{name: value})


@pytest.mark.parametrize("kw,name", [
    (dict(use_cosine=True, T0=0), "T0"),
    (dict(use_cosine=True, T_mult=0.5), "T_mult"),
    (dict(min_scale=2.0, max_scale=1.0), "min_scale"),
    (dict(min_scale=-1.0), "min_scale"),
    (dict(max_scale=0.0), "max_scale"),
    (dict(momentum_min=0.9, momentum_max=0.5), "momentum_min"),
])
def test_scale_constraints_between_arguments(kw, name):
  with pytest.raises(ValueError, match=name):
    ao.adaptive_scale(**kw)


def test_cosine_periods_only_checked_when_cosine_is_on():
  ao.adaptive_scale(use_cosine=False, T0=0)


@pytest.mark.parametrize("kw,name", [
    (dict(lr_min=1.0, lr_max=0.1), "lr_min"),
    (dict(learning_rate=0.0), "learning_rate"),
    (dict(learning_rate=-1.0), "learning_rate"),
    (dict(momentum=1.0), "momentum"),
    (dict(momentum=-0.5), "momentum"),
])
def test_hyperparams_constraints(kw, name):
  args = dict(learning_rate=0.1, momentum=0.9)
  args.update(kw)
  with pytest.raises(ValueError, match=name):
    ao.adaptive_hyperparams(optax.sgd, **args)


def test_batched_values_are_checked_elementwise():
  with pytest.raises(ValueError, match="up_factor"):
    ao.adaptive_scale(up_factor=jnp.asarray([1.1, -1.0]))
