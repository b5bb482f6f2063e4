"""Presets: the seed README's example configurations, usable as kwargs or by name."""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adaptive_optax as ao
from tests import _streams

# The seed README's "Example Configurations", verbatim.
SEED_EXAMPLES = {
    "conservative": dict(up_factor=1.02, down_factor=0.9, patience=40),
    "exploratory": dict(use_cosine=True, T0=100, T_mult=2),
    "rl": dict(use_reward=True, reward_up=1.05, reward_down=0.8),
    "default": {},
}
NAMES = sorted(SEED_EXAMPLES)
LOSSES = _streams.loss_stream("trend", 240)
REWARDS = _streams.reward_stream(240)


@pytest.mark.parametrize("name", NAMES)
def test_preset_holds_the_seed_example(name):
  assert dict(getattr(ao.presets, name)) == SEED_EXAMPLES[name]
  assert ao.presets.get(name) == SEED_EXAMPLES[name]


@pytest.mark.parametrize("name", NAMES)
def test_preset_is_read_only(name):
  with pytest.raises(TypeError):
    getattr(ao.presets, name)["patience"] = 1


@pytest.mark.parametrize("name", NAMES)
def test_adaptive_scale_accepts_preset_as_kwargs(name):
  preset = getattr(ao.presets, name)
  tx = optax.chain(optax.sgd(0.1), ao.adaptive_scale(**preset))
  params = jnp.ones(3)
  state = tx.init(params)
  extra = {"reward": 1.0} if preset.get("use_reward") else {}
  step = jax.jit(lambda g, s, p: tx.update(g, s, p, value=jnp.sum(p**2),
                                           **extra))
  for _ in range(3):
    updates, state = step(2 * params, state, params)
    params = optax.apply_updates(params, updates)
  assert int(ao.metrics(state)["num_steps"]) == 3


@pytest.mark.parametrize("name", NAMES)
def test_preset_name_passes_the_preset_s_kwargs(name):
  seen = ao.presets.accepts_preset(lambda *args, **kwargs: (args, kwargs))
  assert seen("losses", preset=name) == (("losses",), SEED_EXAMPLES[name])


def test_simulate_by_preset_name_equals_by_kwargs():
  simulate = ao.presets.accepts_preset(ao.simulate)
  by_name = jax.jit(lambda l, r: simulate(l, r, preset="rl"))(LOSSES, REWARDS)
  by_kwargs = jax.jit(lambda l, r: ao.simulate(l, r, **SEED_EXAMPLES["rl"]))(
      LOSSES, REWARDS)
  for key in by_kwargs:
    np.testing.assert_array_equal(by_name[key], by_kwargs[key], err_msg=key)


@pytest.mark.parametrize("factory", ["adaptive_scale", "adaptive_hyperparams"])
def test_preset_name_on_the_transformations(factory):
  wrapped = ao.presets.accepts_preset(getattr(ao, factory))
  args = (optax.sgd,) if factory == "adaptive_hyperparams" else ()
  kw = dict(learning_rate=0.1) if factory == "adaptive_hyperparams" else {}
  state = wrapped(*args, preset="exploratory", **kw).init(jnp.ones(2))
  assert int(ao.metrics(state)["cosine_period"]) == 100
  state = wrapped(*args, preset="exploratory", T0=7, **kw).init(jnp.ones(2))
  assert int(ao.metrics(state)["cosine_period"]) == 7


def test_explicit_kwargs_win_over_the_preset():
  assert ao.presets.merge("conservative", {"patience": 5}) == dict(
      up_factor=1.02, down_factor=0.9, patience=5)


@pytest.mark.parametrize("bad", ["aggressive", "Conservative", ""])
def test_unknown_preset_name_lists_the_known_ones(bad):
  with pytest.raises(ValueError, match="conservative.*exploratory"):
    ao.presets.get(bad)


def test_accepts_preset_shows_preset_in_the_signature():
  sig = inspect.signature(ao.presets.accepts_preset(ao.simulate))
  assert sig.parameters["preset"].kind is inspect.Parameter.KEYWORD_ONLY
  assert sig.parameters["preset"].default is None
