"""Shared fixtures: the two semantics, and small helpers to drive a transform."""

import jax
import jax.numpy as jnp
import pytest

MODES = ("stable", "reference")


@pytest.fixture(params=MODES)
def mode(request):
  return request.param


def run_updates(tx, losses, params=None, rewards=None):
  """Feeds ``losses`` through ``tx`` under one jitted scan; returns states."""
  params = jnp.ones(3) if params is None else params
  state = tx.init(params)

  def body(state, xs):
    loss, reward = xs
    kw = {} if rewards is None else {"reward": reward}
    _, state = tx.update(jax.tree.map(jnp.ones_like, params), state, params,
                         value=loss, **kw)
    return state, state

  rs = jnp.zeros_like(losses) if rewards is None else rewards
  return jax.jit(lambda s: jax.lax.scan(body, s, (losses, rs)))(state)
