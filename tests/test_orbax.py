"""Orbax: a run saved mid-way and restored into a fresh setup continues bitwise.

Both runs go through the same two chunks of CHUNK steps (one compiled program
per setup); only the interrupted one passes through a checkpoint between them.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest

import adaptive_optax as ao
from adaptive_optax import toy

CHUNK = 12
STEPS = 2 * CHUNK
POLICY = dict(var_window=4, patience=2, cooldown=3)
TXS = {
    "adaptive_scale": lambda: optax.chain(
        optax.sgd(0.05, momentum=0.9), ao.adaptive_scale(**POLICY)),
    "adaptive_scale_reference_cosine": lambda: optax.chain(
        optax.adam(1e-2), ao.adaptive_scale(mode="reference", use_cosine=True,
                                            T0=5, **POLICY)),
    "adaptive_hyperparams_reward": lambda: ao.adaptive_hyperparams(
        optax.sgd, learning_rate=0.05, momentum=0.9, use_reward=True,
        **POLICY),
}


def _setup(name):
  """What a fresh process builds: data, batches, optimizer, jitted steps."""
  tx = TXS[name]()
  data = toy.make_toy_dataset()
  idx = toy.batch_indices(jax.random.PRNGKey(1), STEPS)
  rewards = jnp.cos(jnp.arange(STEPS) / 2.0)

  @jax.jit
  def run(params, opt_state, ix, r):
    def body(carry, xs):
      params, opt_state = carry
      ix, r = xs
      loss, grads = jax.value_and_grad(toy.mse)(params, data.x[ix], data.y[ix])
      updates, opt_state = tx.update(grads, opt_state, params, value=loss,
                                     reward=r)
      return (params := optax.apply_updates(params, updates), opt_state), loss
    return jax.lax.scan(body, (params, opt_state), (ix, r))

  params = toy.init_mlp(jax.random.PRNGKey(0))
  return tx, params, idx, rewards, run


@pytest.mark.parametrize("name", sorted(TXS))
def test_restored_run_continues_bitwise(tmp_path, name):
  tx, params, idx, rewards, run = _setup(name)
  (mid_params, mid_state), first = run(params, tx.init(params), idx[:CHUNK],
                                       rewards[:CHUNK])
  (full_params, full_state), second = run(mid_params, mid_state, idx[CHUNK:],
                                          rewards[CHUNK:])
  path = tmp_path / "ckpt"
  with ocp.StandardCheckpointer() as ckptr:
    ckptr.save(path, {"params": mid_params, "opt_state": mid_state})

  # A fresh setup: new optimizer object, new jitted step, abstract target.
  tx2, params2, idx2, rewards2, run2 = _setup(name)
  target = jax.eval_shape(
      lambda: {"params": params2, "opt_state": tx2.init(params2)})
  with ocp.StandardCheckpointer() as ckptr:
    restored = ckptr.restore(path, target)
  assert (jax.tree.structure(restored["opt_state"])
          == jax.tree.structure(mid_state))
  (end_params, end_state), rest = run2(
      restored["params"], restored["opt_state"], idx2[CHUNK:],
      rewards2[CHUNK:])

  np.testing.assert_array_equal(rest, second)
  jax.tree.map(np.testing.assert_array_equal, end_params, full_params)
  jax.tree.map(np.testing.assert_array_equal, end_state, full_state)


def test_checkpoint_keeps_the_controller_s_dtypes(tmp_path):
  tx = TXS["adaptive_hyperparams_reward"]()
  state = jax.jit(tx.init)(toy.init_mlp(jax.random.PRNGKey(0)))
  with ocp.StandardCheckpointer() as ckptr:
    ckptr.save(tmp_path / "c", state)
  with ocp.StandardCheckpointer() as ckptr:
    restored = ckptr.restore(tmp_path / "c", jax.eval_shape(lambda: state))
  got = [x.dtype for x in jax.tree.leaves(restored)]
  assert got == [x.dtype for x in jax.tree.leaves(state)]
  assert jnp.int32 in got and jnp.float32 in got
