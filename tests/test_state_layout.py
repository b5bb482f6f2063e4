"""The stored state: four leaves, read and set by field name."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adaptive_optax as ao
from adaptive_optax import _policy
from adaptive_optax import _state
from tests import _streams
from tests.conftest import run_updates

ALL_ON = dict(use_reward=True, use_cosine=True, T0=7, patience=3, cooldown=2,
              var_window=5)
LOSSES = _streams.loss_stream("noisy", 40)
REWARDS = _streams.reward_stream(40)


def _run(mode):
  """(final state, every step's state stacked), every policy on."""
  tx = ao.adaptive_scale(mode=mode, **ALL_ON)
  return run_updates(tx, jnp.asarray(LOSSES), rewards=jnp.asarray(REWARDS))


@pytest.mark.parametrize("policy", [{}, ALL_ON], ids=["defaults", "all_on"])
def test_controller_has_four_leaves_whatever_the_policies(mode, policy):
  ctrl = ao.adaptive_scale(mode=mode, **policy).init(jnp.zeros(3)).controller
  leaves = jax.tree.leaves(ctrl)
  assert len(leaves) == 4
  assert ctrl.stats.shape == (len(_state.FLOATS) + ctrl.loss_window.shape[0],)
  assert ctrl.counters.dtype == jnp.int32


def test_named_views_read_the_unpacked_fields(mode):
  ctrl = _run(mode)[0].controller
  fields = ctrl.unpack()
  for name in _policy.Fields._fields:
    got, want = getattr(ctrl, name), getattr(fields, name)
    np.testing.assert_array_equal(got, want, err_msg=name)
    assert got.dtype == want.dtype, name
  assert ctrl.has_loss_ema.dtype == jnp.bool_
  assert int(ctrl.num_steps) == len(LOSSES)


def test_pack_inverts_unpack(mode):
  ctrl = _run(mode)[0].controller
  again = _state.pack(ctrl.unpack(), ctrl.config)
  for a, b in zip(jax.tree.leaves(ctrl), jax.tree.leaves(again)):
    np.testing.assert_array_equal(a, b)


def test_replace_sets_a_packed_field_and_only_it(mode):
  ctrl = _run(mode)[0].controller
  new = ctrl.replace(cosine_t=jnp.int32(3), loss_ema=jnp.float32(9.0),
                     probing=jnp.asarray(True))
  assert int(new.cosine_t) == 3 and float(new.loss_ema) == 9.0
  assert bool(new.probing)
  for name in set(_policy.Fields._fields) - {"cosine_t", "loss_ema",
                                             "probing"}:
    np.testing.assert_array_equal(getattr(new, name), getattr(ctrl, name),
                                  err_msg=name)
  with pytest.raises(ValueError, match="no_such_field"):
    ctrl.replace(no_such_field=1)


def test_views_read_stacked_states(mode):
  tx = ao.adaptive_scale(mode=mode, **ALL_ON)
  params = jnp.zeros(2)
  lrs = jnp.array([0.5, 1.0, 2.0])

  def run(lr):
    def body(state, loss):
      _, state = tx.update(params, state, params, value=lr * loss, reward=0.0)
      return state, None
    state, _ = jax.lax.scan(body, tx.init(params), jnp.asarray(LOSSES[:12]))
    return state.controller

  stacked = jax.jit(jax.vmap(run))(lrs)
  assert stacked.num_steps.shape == (3,)
  assert stacked.loss_window.shape == (3, ALL_ON["var_window"])
  for i in range(3):
    one = jax.tree.map(lambda x, i=i: x[i], stacked)
    np.testing.assert_array_equal(stacked.loss_ema[i], one.loss_ema)
    np.testing.assert_array_equal(stacked.loss_window[i], one.loss_window)


def test_stored_window_noise_is_the_window_s_noise():
  """Stable mode's guard reads window_noise_var instead of re-reducing."""
  ctrls = _run("stable")[1].controller
  _, var = jax.vmap(_policy.window_noise)(ctrls)
  assert var.shape == (len(LOSSES),)
  np.testing.assert_allclose(ctrls.window_noise_var, var, rtol=1e-6,
                             atol=1e-12)


def test_tree_get_still_finds_the_rates_by_name(mode):
  state = optax.chain(optax.sgd(0.1), ao.adaptive_scale(mode=mode)).init(
      jnp.zeros(2))
  assert float(optax.tree.get(state, "applied_rate")) == 1.0
  assert float(optax.tree.get(state, "stored_rate")) == 1.0
