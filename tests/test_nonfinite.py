"""A NaN/Inf loss or reward is a step without metrics: nothing gets poisoned."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adaptive_optax as ao
from tests.conftest import run_updates

BAD = [float("nan"), float("inf"), -float("inf")]
POLICY = dict(use_cosine=True, T0=4, patience=2, cooldown=1, var_window=3)


def all_finite(tree):
  return all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(tree)
             if jnp.issubdtype(x.dtype, jnp.floating))


@pytest.mark.parametrize("bad", BAD)
def test_nonfinite_loss_leaves_state_and_updates_finite(mode, bad):
  tx = optax.chain(optax.sgd(0.1), ao.adaptive_scale(mode=mode, **POLICY))
  params = jnp.ones(3)
  state = tx.init(params)
  step = jax.jit(lambda s, l: tx.update(params, s, params, value=l))
  for loss in [1.0, 0.8, bad, 0.7, bad, bad, 0.6]:
    updates, state = step(state, loss)
    assert all_finite(updates) and all_finite(state)
  assert int(ao.metrics(state)["num_nonfinite"]) == 3


@pytest.mark.parametrize("bad", BAD)
def test_nonfinite_loss_is_skipped_by_the_statistics(mode, bad):
  clean = jnp.asarray([1.0, 0.8, 0.7, 0.6])
  dirty = jnp.asarray([1.0, 0.8, bad, 0.7, 0.6])
  tx = ao.adaptive_scale(mode=mode, var_window=3)
  c_state, _ = run_updates(tx, clean)
  d_state, _ = run_updates(tx, dirty)
  c, d = c_state.controller, d_state.controller
  np.testing.assert_allclose(d.loss_ema, c.loss_ema, rtol=1e-6)
  mc, vc = ao.metrics(c_state), ao.metrics(d_state)
  np.testing.assert_allclose(vc["loss_variance"], mc["loss_variance"], rtol=1e-5)
  assert int(d.num_steps) == int(c.num_steps) + 1  # the step still counted


@pytest.mark.parametrize("bad", BAD)
def test_nonfinite_reward_is_skipped(mode, bad):
  tx = ao.adaptive_hyperparams(optax.sgd, learning_rate=0.1, momentum=0.9,
                               mode=mode, use_reward=True, var_window=2)
  losses = jnp.asarray([1.0, 0.9, 0.8, 0.7])
  clean, _ = run_updates(tx, losses[:3], rewards=jnp.asarray([0.0, 1.0, 2.0]))
  dirty, _ = run_updates(tx, losses[:3], rewards=jnp.asarray([0.0, 1.0, bad]))
  assert all_finite(dirty)
  # The skipped reward left the EMA where the two finite rewards put it.
  two, _ = run_updates(tx, losses[:2], rewards=jnp.asarray([0.0, 1.0]))
  np.testing.assert_allclose(dirty.controller.reward_ema,
                             two.controller.reward_ema)
  assert float(clean.controller.reward_ema) != float(dirty.controller.reward_ema)


def test_all_nonfinite_stream_keeps_initial_rate(mode):
  tx = ao.adaptive_scale(mode=mode)
  state, _ = run_updates(tx, jnp.full(50, jnp.nan))
  assert all_finite(state)
  assert not bool(state.controller.has_loss_ema)
