"""Flax Linen: ao.flax_utils.TrainState.apply_gradients forwards value= and reward=."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adaptive_optax as ao
from adaptive_optax import toy
from adaptive_optax.flax_utils import TrainState

STEPS = 30
POLICY = dict(var_window=5, patience=3, cooldown=4)


class MLP(nn.Module):

  @nn.compact
  def __call__(self, x):
    return nn.Dense(1)(nn.relu(nn.Dense(toy.HIDDEN)(x)))


def _run(tx, *, with_reward=False):
  """Trains with TrainState and with plain optax; returns both trajectories."""
  data = toy.make_toy_dataset()
  model = MLP()
  params = model.init(jax.random.PRNGKey(0), data.x[:1])
  loss_fn = lambda p, x, y: jnp.mean((model.apply(p, x) - y) ** 2)
  idx = toy.batch_indices(jax.random.PRNGKey(1), STEPS)
  rewards = jnp.sin(jnp.arange(STEPS) / 3.0)

  @jax.jit
  def ts_step(state, ix, r):
    loss, grads = jax.value_and_grad(loss_fn)(state.params, data.x[ix],
                                              data.y[ix])
    kw = {"reward": r} if with_reward else {}
    return state.apply_gradients(grads=grads, value=loss, **kw), loss

  @jax.jit
  def optax_step(params, opt_state, ix, r):
    loss, grads = jax.value_and_grad(loss_fn)(params, data.x[ix], data.y[ix])
    kw = {"reward": r} if with_reward else {}
    updates, opt_state = tx.update(grads, opt_state, params, value=loss, **kw)
    return optax.apply_updates(params, updates), opt_state, loss

  state = TrainState.create(apply_fn=model.apply, params=params, tx=tx)
  ref_params, ref_opt = params, tx.init(params)
  losses, ref_losses = [], []
  for ix, r in zip(idx, rewards):
    state, loss = ts_step(state, ix, r)
    ref_params, ref_opt, ref_loss = optax_step(ref_params, ref_opt, ix, r)
    losses.append(loss)
    ref_losses.append(ref_loss)
  return state, (ref_params, ref_opt), jnp.stack(losses), jnp.stack(ref_losses)


TXS = {
    "adaptive_scale": (lambda: optax.chain(
        optax.sgd(0.05, momentum=0.9), ao.adaptive_scale(**POLICY)), False),
    "adaptive_hyperparams+reward": (lambda: ao.adaptive_hyperparams(
        optax.sgd, learning_rate=0.05, momentum=0.9, use_reward=True,
        **POLICY), True),
}


@pytest.fixture(scope="module", params=sorted(TXS))
def linen_run(request):
  make, with_reward = TXS[request.param]
  return request.param, _run(make(), with_reward=with_reward)


def test_apply_gradients_equals_the_optax_loop(linen_run):
  _, (state, (ref_params, ref_opt), losses, ref_losses) = linen_run
  np.testing.assert_array_equal(losses, ref_losses)
  jax.tree.map(np.testing.assert_array_equal, state.params, ref_params)
  jax.tree.map(np.testing.assert_array_equal, state.opt_state, ref_opt)
  assert int(state.step) == STEPS
  assert int(ao.metrics(state.opt_state)["num_steps"]) == STEPS


def test_reward_reaches_the_controller_when_given(linen_run):
  name, (state, _, _, _) = linen_run
  rewards = np.sin(np.arange(STEPS) / 3.0)
  ema = rewards[0]
  for r in rewards[1:]:
    ema = 0.9 * ema + 0.1 * r
  if not TXS[name][1]:
    ema = 0.0  # no reward passed, none read
  np.testing.assert_allclose(ao.metrics(state.opt_state)["reward_ema"], ema,
                             rtol=1e-5)


def test_missing_reward_with_use_reward_is_an_error():
  tx = optax.chain(optax.sgd(0.1), ao.adaptive_scale(use_reward=True))
  state = TrainState.create(apply_fn=None, params=jnp.ones(2), tx=tx)
  with pytest.raises(TypeError, match="reward"):
    jax.jit(lambda s: s.apply_gradients(grads=jnp.ones(2), value=1.0))(state)


def test_without_value_it_is_flax_s_apply_gradients():
  tx = optax.sgd(0.5)
  params = {"w": jnp.ones(2)}
  ours = TrainState.create(apply_fn=None, params=params, tx=tx)
  flax_ts = __import__("flax.training.train_state", fromlist=["x"]).TrainState
  theirs = flax_ts.create(apply_fn=None, params=params, tx=tx)
  grads = {"w": jnp.array([1.0, -2.0])}
  a = jax.jit(lambda s: s.apply_gradients(grads=grads))(ours)
  b = jax.jit(lambda s: s.apply_gradients(grads=grads))(theirs)
  np.testing.assert_array_equal(a.params["w"], b.params["w"])
  assert int(a.step) == int(b.step) == 1


def test_other_keywords_replace_fields_as_in_flax():
  class WithExtra(TrainState):
    extra: int = 0

  tx = optax.chain(optax.sgd(0.1), ao.adaptive_scale())
  state = WithExtra.create(apply_fn=None, params=jnp.ones(2), tx=tx, extra=1)
  state = jax.jit(lambda s: s.apply_gradients(grads=jnp.ones(2), value=2.0,
                                              extra=5))(state)
  assert state.extra == 5
