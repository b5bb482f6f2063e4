"""What users write: chain usage, the loss keyword, metrics, and state lookup."""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adaptive_optax as ao

PARAMS = {"w": jnp.ones((2, 3)), "b": jnp.zeros(3)}


def grads():
  return jax.tree.map(lambda p: jnp.full_like(p, 0.5), PARAMS)


def test_adaptive_scale_is_extra_args_transformation():
  assert isinstance(ao.adaptive_scale(), optax.GradientTransformationExtraArgs)
  tx = ao.adaptive_hyperparams(optax.adam, learning_rate=1e-3)
  assert isinstance(tx, optax.GradientTransformationExtraArgs)


@pytest.mark.parametrize("mode", ["stable", "reference"])
def test_scale_starts_at_one_and_multiplies_updates(mode):
  tx = optax.chain(optax.sgd(0.1), ao.adaptive_scale(mode=mode))
  state = tx.init(PARAMS)
  updates, state = tx.update(grads(), state, PARAMS, value=1.0)
  # The first step has no trend yet: the scale is still 1, so sgd's update.
  chex_like = jax.tree.map(lambda u: np.asarray(u), updates)
  np.testing.assert_allclose(chex_like["w"], -0.05)
  assert float(ao.metrics(state)["scale"]) == 1.0


def test_value_is_required_and_named():
  tx = optax.chain(optax.sgd(0.1), ao.adaptive_scale())
  state = tx.init(PARAMS)
  with pytest.raises(TypeError, match="value"):
    tx.update(grads(), state, PARAMS)


def test_update_fn_signature_is_keyword_only_value():
  """Keyword-only; missing, it is our error (which says what to do), not
  Python's "missing 1 required keyword-only argument"."""
  tx = ao.adaptive_scale()
  sig = inspect.signature(tx.update)
  assert sig.parameters["value"].kind is inspect.Parameter.KEYWORD_ONLY
  with pytest.raises(TypeError, match=r"needs the loss.*value=loss"):
    tx.update(grads(), tx.init(PARAMS), PARAMS)


@pytest.mark.parametrize("value", [jnp.ones(2), jnp.ones((1, 1))])
def test_non_scalar_value_is_an_error(value):
  tx = ao.adaptive_scale()
  state = tx.init(PARAMS)
  with pytest.raises(ValueError, match="value must be a scalar"):
    tx.update(grads(), state, PARAMS, value=value)


def test_reward_required_when_use_reward():
  tx = ao.adaptive_scale(use_reward=True)
  state = tx.init(PARAMS)
  with pytest.raises(TypeError, match="reward"):
    tx.update(grads(), state, PARAMS, value=1.0)


def test_hyperparams_drive_learning_rate_and_momentum():
  tx = ao.adaptive_hyperparams(optax.sgd, learning_rate=0.05, momentum=0.9,
                               use_reward=True, mode="reference")
  state = tx.init(PARAMS)
  step = jax.jit(lambda s, l, r: tx.update(grads(), s, PARAMS, value=l, reward=r))
  for t, (loss, reward) in enumerate([(1.0, 0.0), (0.9, 1.0), (0.8, 2.0)]):
    _, state = step(state, loss, reward)
  m = ao.metrics(state)
  # The first reward sets the baseline; two rises then add 0.01 each.
  np.testing.assert_allclose(m["momentum"], 0.92, rtol=1e-6)
  # What the controller holds is what the inner optimizer will use.
  inner = state.optimizer_state.hyperparams
  np.testing.assert_allclose(inner["learning_rate"], m["learning_rate"])
  np.testing.assert_allclose(inner["momentum"], m["momentum"])


@pytest.mark.parametrize("factory", [optax.adam, optax.adafactor, optax.adamw])
def test_optimizers_without_momentum_get_lr_control(factory):
  tx = ao.adaptive_hyperparams(factory, learning_rate=1e-2)
  state = tx.init(PARAMS)
  _, state = tx.update(grads(), state, PARAMS, value=1.0)
  m = ao.metrics(state)
  assert "momentum" not in m
  np.testing.assert_allclose(m["learning_rate"], 1e-2, rtol=1e-6)


def test_momentum_for_a_factory_without_one_is_an_error():
  with pytest.raises(ValueError, match="momentum"):
    ao.adaptive_hyperparams(optax.adam, learning_rate=1e-3, momentum=0.9)


def test_factory_keywords_are_forwarded_and_unknown_ones_named():
  tx = ao.adaptive_hyperparams(optax.sgd, learning_rate=0.1, momentum=0.9,
                               nesterov=True)
  tx.init(PARAMS)
  with pytest.raises(TypeError, match="bogus"):
    ao.adaptive_hyperparams(optax.sgd, learning_rate=0.1, bogus=1)


def test_metrics_finds_controller_inside_a_chain():
  tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-3),
                   ao.adaptive_scale())
  state = tx.init(PARAMS)
  _, state = tx.update(grads(), state, PARAMS, value=2.0)
  m = ao.metrics(state)
  for key in ("scale", "loss_ema", "loss_variance", "steps_since_improve",
              "cooldown", "cosine_phase", "reward_ema", "num_steps"):
    assert key in m and jnp.ndim(m[key]) == 0, key
  assert float(m["loss_ema"]) == 2.0


def test_metrics_without_a_controller_is_an_error():
  with pytest.raises(ValueError, match="no adaptive_optax controller"):
    ao.metrics(optax.adam(1e-3).init(PARAMS))


def test_tree_get_finds_ours_beside_reduce_on_plateau_and_cocob():
  tx = optax.chain(optax.contrib.cocob(), optax.contrib.reduce_on_plateau(),
                   ao.adaptive_scale())
  state = tx.init(PARAMS)
  _, state = tx.update(grads(), state, PARAMS, value=1.0)
  ctrl = optax.tree.get(state, "AdaptiveScaleState").controller
  assert optax.tree.get(state, "applied_rate") is ctrl.applied_rate
  assert optax.tree.get(state, "stored_rate") is ctrl.stored_rate
  assert float(ao.metrics(state)["scale"]) == float(ctrl.applied_rate)
  controller = optax.tree.get(state, "AdaptiveScaleState")
  assert isinstance(controller, ao.AdaptiveScaleState)


def test_lr_bounds_belong_to_adaptive_hyperparams():
  with pytest.raises(TypeError, match="lr_min"):
    ao.adaptive_scale(lr_min=1e-5)
  with pytest.raises(TypeError, match="min_scale"):
    ao.simulate(jnp.ones(3), lr_min=1e-5)
