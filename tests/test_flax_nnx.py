"""Flax NNX: nnx.Optimizer(model, tx, wrt=nnx.Param).update(model, grads, value=loss)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import adaptive_optax as ao
from adaptive_optax import toy

STEPS = 40
POLICY = dict(var_window=5, patience=3, cooldown=4)
TXS = {
    "adaptive_scale": lambda: optax.chain(
        optax.sgd(0.05, momentum=0.9), ao.adaptive_scale(**POLICY)),
    "adaptive_hyperparams": lambda: ao.adaptive_hyperparams(
        optax.sgd, learning_rate=0.05, momentum=0.9, **POLICY),
}


class MLP(nnx.Module):

  def __init__(self, rngs):
    self.hidden = nnx.Linear(toy.N_FEATURES, toy.HIDDEN, rngs=rngs)
    self.out = nnx.Linear(toy.HIDDEN, 1, rngs=rngs)

  def __call__(self, x):
    return self.out(jax.nn.relu(self.hidden(x)))


def _loss(model, x, y):
  return jnp.mean((model(x) - y) ** 2)


def _train_nnx(tx):
  data = toy.make_toy_dataset()
  model = MLP(nnx.Rngs(0))
  opt = nnx.Optimizer(model, tx, wrt=nnx.Param)

  @nnx.jit
  def step(model, opt, x, y):
    loss, grads = nnx.value_and_grad(_loss)(model, x, y)
    opt.update(model, grads, value=loss)
    return loss

  idx = toy.batch_indices(jax.random.PRNGKey(1), STEPS)
  losses = [step(model, opt, data.x[ix], data.y[ix]) for ix in idx]
  return model, opt, jnp.stack(losses)


def _train_optax(tx):
  """The same run with plain optax from the same initial parameters."""
  data = toy.make_toy_dataset()
  graphdef, params = nnx.split(MLP(nnx.Rngs(0)))
  loss_fn = lambda p, x, y: _loss(nnx.merge(graphdef, p), x, y)
  state = tx.init(params)

  @jax.jit
  def step(params, state, x, y):
    loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
    updates, state = tx.update(grads, state, params, value=loss)
    return optax.apply_updates(params, updates), state, loss

  losses = []
  for ix in toy.batch_indices(jax.random.PRNGKey(1), STEPS):
    params, state, loss = step(params, state, data.x[ix], data.y[ix])
    losses.append(loss)
  return params, state, jnp.stack(losses)


@pytest.fixture(scope="module", params=sorted(TXS))
def nnx_run(request):
  return request.param, _train_nnx(TXS[request.param]())


def test_nnx_optimizer_trains_like_plain_optax(nnx_run):
  name, (_, opt, losses) = nnx_run
  _, state, ref_losses = _train_optax(TXS[name]())
  np.testing.assert_allclose(losses, ref_losses, rtol=1e-5, atol=1e-7)
  got, want = ao.metrics(nnx.as_pure(opt.opt_state)), ao.metrics(state)
  for key in want:
    np.testing.assert_allclose(jnp.asarray(got[key]), want[key], rtol=1e-5,
                               err_msg=key)


def test_nnx_optimizer_reduces_the_loss(nnx_run):
  _, (_, _, losses) = nnx_run
  assert float(losses[-5:].mean()) < 0.5 * float(losses[:5].mean())


def test_nnx_optimizer_state_counts_every_update(nnx_run):
  _, (_, opt, _) = nnx_run
  assert int(ao.metrics(nnx.as_pure(opt.opt_state))["num_steps"]) == STEPS
  assert int(nnx.as_pure(opt.step)) == STEPS


def test_nnx_update_without_value_is_an_error_naming_value():
  model = MLP(nnx.Rngs(0))
  opt = nnx.Optimizer(model, TXS["adaptive_scale"](), wrt=nnx.Param)
  grads = nnx.grad(_loss)(model, jnp.ones((2, toy.N_FEATURES)),
                          jnp.ones((2, 1)))
  with pytest.raises(TypeError, match="value"):
    opt.update(model, grads)
