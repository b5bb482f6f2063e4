"""Works through chain, partition (one controller per group), apply_if_finite, MultiSteps."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adaptive_optax as ao

PARAMS = {"body": jnp.ones(3), "head": jnp.ones(2)}
LOSSES = [2.0, 1.5, 1.2, 1.0, 0.9, 0.85, 0.8, 0.75, 0.7, 0.68, 0.66, 0.65]


def drive(tx, losses=LOSSES, params=PARAMS):
  state = tx.init(params)
  step = jax.jit(lambda s, l: tx.update(jax.tree.map(jnp.ones_like, params), s,
                                        params, value=l))
  for loss in losses:
    prev = state
    updates, state = step(state, loss)
  return updates, state, prev


def test_partition_keeps_one_controller_per_group(mode):
  tx = optax.partition(
      {"body": optax.chain(optax.sgd(0.1), ao.adaptive_scale(mode=mode, var_window=2)),
       "head": optax.chain(optax.sgd(0.1), ao.adaptive_scale(mode=mode, var_window=2, max_scale=0.5))},
      {"body": "body", "head": "head"})
  updates, state, prev = drive(tx)
  m = ao.metrics(state)
  assert {"body/scale", "head/scale"} <= set(m)
  assert float(m["body/scale"]) > float(m["head/scale"])
  # Each group's updates carry its own scale: in reference mode the one
  # decided before this step (the seed steps after the optimizer).
  used = ao.metrics(prev if mode == "reference" else state)
  np.testing.assert_allclose(updates["body"], -0.1 * used["body/scale"], rtol=1e-6)
  np.testing.assert_allclose(updates["head"], -0.1 * used["head/scale"], rtol=1e-6)


def test_apply_if_finite_forwards_the_loss(mode):
  tx = optax.apply_if_finite(
      optax.chain(optax.sgd(0.1), ao.adaptive_scale(mode=mode)), 3)
  _, state, _ = drive(tx)
  assert float(ao.metrics(state)["loss_ema"]) > 0
  assert int(ao.metrics(state)["num_steps"]) == len(LOSSES)


def test_apply_if_finite_rejected_step_leaves_controller_alone(mode):
  tx = optax.apply_if_finite(
      optax.chain(optax.sgd(0.1), ao.adaptive_scale(mode=mode)), 3)
  state = tx.init(PARAMS)
  bad = jax.tree.map(lambda p: jnp.full_like(p, jnp.nan), PARAMS)
  _, state = jax.jit(lambda s: tx.update(bad, s, PARAMS, value=1.0))(state)
  assert int(ao.metrics(state)["num_steps"]) == 0


def test_multisteps_wrapping_the_chain_sees_one_loss_per_emit(mode):
  k = 3
  tx = optax.MultiSteps(
      optax.chain(optax.sgd(0.1), ao.adaptive_scale(mode=mode)), every_k_schedule=k)
  _, state, _ = drive(tx)
  assert int(ao.metrics(state)["num_steps"]) == len(LOSSES) // k


def test_multisteps_inside_a_chain_drops_value():
  """The documented pitfall: MultiSteps' gradient_transformation() is a plain
  GradientTransformation, so an outer chain drops ``value`` before it."""
  ms = optax.MultiSteps(optax.chain(optax.sgd(0.1), ao.adaptive_scale()), 2)
  tx = optax.chain(optax.clip(1.0), ms.gradient_transformation())
  state = tx.init(PARAMS)
  with pytest.raises(TypeError, match="value"):
    tx.update(PARAMS, state, PARAMS, value=1.0)


def test_hyperparams_inside_partition(mode):
  tx = optax.partition(
      {"body": ao.adaptive_hyperparams(optax.sgd, learning_rate=0.1, momentum=0.9, mode=mode),
       "head": ao.adaptive_hyperparams(optax.adam, learning_rate=1e-3, mode=mode)},
      {"body": "body", "head": "head"})
  _, state, _ = drive(tx)
  m = ao.metrics(state)
  assert "body/momentum" in m and "head/momentum" not in m
  assert "head/learning_rate" in m
