"""Construction rejects invalid values with a ValueError naming the argument."""

import jax
import jax.numpy as jnp
import optax
import pytest

import adaptive_optax as ao
from adaptive_optax import _options
from adaptive_optax.config import normalize

BAD_POLICY = [
    ("up_factor", 0.0), ("up_factor", -1.0), ("down_factor", 0.0),
    ("reward_up", -0.1), ("reward_down", 0.0), ("big_drop", 0.0),
    ("momentum_down", 0.0), ("var_damp_base", 0.0), ("var_damp_scale", -1.0),
    ("loss_beta", 1.0), ("loss_beta", -0.1), ("reward_beta", 1.5),
    ("var_window", 0), ("var_window", 2.5), ("patience", -1), ("patience", 1.5),
    ("cooldown", -3), ("eta_min_scale", 1.5), ("momentum_min", -0.1),
    ("momentum_max", 1.0), ("momentum_up", -0.01), ("mode", "fast"),
    ("up_factor", float("nan")), ("use_cosine", "yes"),
    # Factors that move the rate up are >= 1, those that move it down are in
    # (0, 1], windows hold two losses at least, integers are integers.
    ("up_factor", 0.5), ("reward_up", 0.9), ("probe_growth", 0.9),
    ("down_factor", 1.5), ("reward_down", 1.2), ("big_drop", 2.0),
    ("momentum_down", 1.1), ("var_window", 1), ("patience", "20"),
    ("patience", 20.0), ("cooldown", "5"), ("cooldown", 2**31),
    ("T0", 2.5), ("up_factor", "1.1"), ("loss_beta", None),
    ("min_rel_improve", -0.1), ("start_scale", 0.0), ("guard_ratio", 1.0),
    ("drift_window", 1), ("drift_window", -1), ("drift_window", 50.5),
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


@pytest.mark.parametrize("name,value", BAD_POLICY)
def test_simulate_and_config_files_name_the_bad_argument(name, value, mode):
  kw = {name: value} if name == "mode" else {"mode": mode, name: value}
  with pytest.raises(ValueError, match=name):
    ao.simulate(jnp.ones(4), **kw)
  if (isinstance(value, float) and value != value) or value == "1.1":
    return  # NaN is no JSON; YAML 1.1 reads 1e-4 as text: config takes "1.1"
  with pytest.raises(ValueError, match=name):
    normalize(kw)


@pytest.mark.parametrize("name", sorted(_options.POLICY_DEFAULTS))
def test_every_hyperparameter_is_checked(name, mode):
  """Each table entry has a rule that refuses a non-number and a NaN."""
  for bad in ("x", float("nan")):
    with pytest.raises(ValueError, match=name):
      ao.adaptive_scale(mode=mode, use_cosine=True, **{name: bad})


def test_every_default_is_valid():
  for name, default, rule in _options.HYPERPARAMS:
    assert rule.ok(default), name
    assert not rule.integer or isinstance(default, int), name


def test_traced_values_are_checked_to_be_real_numbers_only():
  """A traced value's range is unknown at construction (documented): it is
  used as given; a concrete one is refused."""
  @jax.jit
  def run(patience, up_factor):
    return ao.simulate(jnp.ones(4), patience=patience,
                       up_factor=up_factor)["scale"]
  assert run(jnp.float32(3.0), jnp.float32(0.5)).shape == (4,)
  with pytest.raises(ValueError, match="up_factor"):
    run(jnp.float32(3.0), jnp.complex64(1.5))
  with pytest.raises(ValueError, match="up_factor"):
    ao.simulate(jnp.ones(4), up_factor=jnp.float32(0.5))


@pytest.mark.parametrize("kw,names", [
    (dict(learning_rate=42.0), ("learning_rate=42.0", "lr_max=10.0")),
    (dict(learning_rate=1e-3, lr_min=1e-2), ("learning_rate", "lr_min")),
    (dict(learning_rate=0.5, lr_max=0.1), ("learning_rate", "lr_max")),
])
def test_a_given_rate_outside_its_bounds_is_refused_not_clamped(kw, names):
  for build in (lambda: ao.adaptive_hyperparams(optax.sgd, **kw),
                lambda: ao.simulate(jnp.ones(3), **kw),
                lambda: normalize(kw)):
    with pytest.raises(ValueError) as e:
      build()
    for n in names:
      assert n in str(e.value)
