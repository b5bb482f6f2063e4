"""JAX-native behaviour: jit without recompiles, scan, donation, vmap, dtypes."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adaptive_optax as ao
from adaptive_optax import toy

ALL_ON = dict(use_reward=True, use_cosine=True, T0=5, patience=3, cooldown=2,
              var_window=4)


def make(kind, mode, **kw):
  if kind == "scale":
    return optax.chain(optax.sgd(0.1, momentum=0.9),
                       ao.adaptive_scale(mode=mode, **kw))
  return ao.adaptive_hyperparams(optax.sgd, learning_rate=0.1, momentum=0.9,
                                 mode=mode, **kw)


KINDS = ("scale", "hyperparams")


def leaves_signature(tree):
  return [(x.shape, x.dtype) for x in jax.tree.leaves(tree)]


@pytest.mark.parametrize("kind", KINDS)
def test_second_call_does_not_recompile(kind, mode):
  tx = make(kind, mode, **ALL_ON)
  params = jnp.ones(4)
  step = jax.jit(lambda s, l, r: tx.update(params, s, params, value=l, reward=r))
  state = tx.init(params)
  for loss in (1.0, 0.5, 0.7, float("nan"), 0.2):
    _, state = step(state, jnp.float32(loss), jnp.float32(loss))
  assert step._cache_size() == 1


@pytest.mark.parametrize("param_dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("kind", KINDS)
def test_state_keeps_dtype_and_shape(kind, mode, param_dtype):
  tx = make(kind, mode, **ALL_ON)
  params = jnp.ones(4, param_dtype)
  state0 = tx.init(params)
  state = state0
  step = jax.jit(lambda s, l: tx.update(params, s, params, value=l, reward=l))
  for loss in (3.0, 1.0, 2.0, 0.5, float("inf"), 0.1, 0.05):
    updates, state = step(state, loss)
    assert leaves_signature(state) == leaves_signature(state0)
    assert updates.dtype == param_dtype


def test_scan_over_ten_thousand_updates(mode):
  tx = make("hyperparams", mode, **ALL_ON)
  params = jnp.ones(3)
  losses = jnp.abs(jnp.sin(jnp.arange(10_000) / 50.0)) + 0.1

  def body(state, loss):
    _, state = tx.update(params, state, params, value=loss, reward=-loss)
    return state, ao.metrics(state)["learning_rate"]

  state, lrs = jax.jit(lambda s: jax.lax.scan(body, s, losses))(tx.init(params))
  assert int(state.controller.num_steps) == 10_000
  assert np.all(np.isfinite(lrs))


@pytest.mark.parametrize("kind", KINDS)
def test_state_leaves_do_not_share_buffers(kind, mode):
  tx = make(kind, mode, **ALL_ON)
  params = jnp.ones(3)
  for state in (tx.init(params),
                jax.jit(lambda s: tx.update(params, s, params, value=1.0,
                                            reward=1.0)[1])(tx.init(params))):
    ptrs = [x.unsafe_buffer_pointer() for x in jax.tree.leaves(state)]
    assert len(ptrs) == len(set(ptrs))


@pytest.mark.parametrize("kind", KINDS)
def test_state_and_params_can_be_donated(kind, mode):
  tx = make(kind, mode, **ALL_ON)

  @functools.partial(jax.jit, donate_argnums=(0, 1))
  def step(params, state, loss):
    updates, state = tx.update(params, state, params, value=loss, reward=loss)
    return optax.apply_updates(params, updates), state

  params = jnp.ones(3)
  state = tx.init(params)
  for loss in (1.0, 0.5, 0.25):
    params, state = step(params, state, loss)
  assert np.all(np.isfinite(params))


@pytest.mark.parametrize("name,values", [
    ("up_factor", [1.01, 1.05, 1.2]),
    ("down_factor", [0.5, 0.7, 0.95]),
    ("patience", [1, 5, 20]),
    ("cooldown", [0, 3, 500]),
    ("T0", [3, 10, 50]),
    ("T_mult", [1, 2, 3]),
    ("big_drop", [0.1, 0.5, 0.9]),
    ("min_scale", [1e-6, 0.5, 0.9]),
    ("max_scale", [0.3, 0.6, 1e4]),
    ("start_scale", [0.02, 0.1, 1.0]),
    ("guard_ratio", [1.1, 2.0, 8.0]),
])
def test_vmap_over_a_traced_hyperparameter(mode, name, values):
  if mode == "stable" and name in ("up_factor", "down_factor"):
    pytest.skip("the per-window trend rule is reference mode's only")
  if mode == "reference" and name in ("start_scale", "guard_ratio"):
    pytest.skip("stable mode's only")
  # Small variance, so that reference mode's damping does not pin the scale.
  # A fall, then a plateau, so that every rule has something to act on.
  losses = 0.01 * (jnp.abs(jnp.cos(jnp.arange(300) / 7.0))
                   + jnp.maximum(jnp.linspace(2, -1, 300), 0))

  def run(v):
    # The seed's overlay compounds to min_scale: on only where it is tested.
    kw = dict(use_cosine=name in ("T0", "T_mult"), patience=3, var_window=5,
              T0=20)
    kw[name] = v
    if name == "cooldown":  # else stable mode's relative cooldown rules
      kw["cooldown_ratio"] = 0.0
    return ao.simulate(losses, mode=mode, **kw)["scale"]

  batched = jax.jit(jax.vmap(run))(jnp.asarray(values))
  for i, v in enumerate(values):  # each row is that configuration's own run
    np.testing.assert_allclose(batched[i], jax.jit(run)(v), rtol=2e-5)
  assert not np.allclose(batched[0], batched[-1])


def test_vmap_training_over_start_scale(mode="stable"):
  def run(u):
    tx = optax.chain(optax.sgd(0.05, momentum=0.9),
                     ao.adaptive_scale(mode=mode, start_scale=u, var_window=5))
    return toy.train(tx, steps=40, seed=0)["metrics"]["scale"]

  ups = jnp.asarray([0.05, 0.5])
  batched = jax.jit(jax.vmap(run))(ups)
  np.testing.assert_allclose(batched[1], jax.jit(run)(ups[1]), rtol=2e-5)
  assert not np.allclose(batched[0], batched[1])


def test_vmap_over_learning_rate_of_hyperparams(mode="reference"):
  def run(lr):
    tx = ao.adaptive_hyperparams(optax.sgd, learning_rate=lr, momentum=0.9,
                                 mode=mode)
    return toy.train(tx, steps=40, seed=0)["metrics"]["learning_rate"]

  lrs = jnp.asarray([0.01, 0.05])
  out = jax.jit(jax.vmap(run))(lrs)
  np.testing.assert_allclose(out[:, 0] / lrs, out[0, 0] / lrs[0], rtol=1e-5)
  assert not np.allclose(out[0], out[1])


def test_var_window_is_static():
  with pytest.raises(ValueError, match="var_window"):
    jax.vmap(lambda w: ao.adaptive_scale(var_window=w).init(jnp.ones(2)))(
        jnp.arange(1, 3))


@pytest.mark.parametrize("param_dtype,stat_dtype", [
    (jnp.bfloat16, jnp.float32), (jnp.float16, jnp.float32),
    (jnp.float32, jnp.float32)])
def test_statistics_are_float32_or_wider(param_dtype, stat_dtype):
  state = ao.adaptive_scale().init({"w": jnp.ones(2, param_dtype)})
  assert state.controller.loss_ema.dtype == stat_dtype
  assert state.controller.loss_window.dtype == stat_dtype


def test_statistics_follow_float64_params_under_x64():
  with jax.enable_x64(True):
    state = ao.adaptive_scale().init(jnp.ones(2, jnp.float64))
    assert state.controller.applied_rate.dtype == jnp.float64


def test_bf16_updates_stay_bf16_through_apply(mode):
  tx = make("scale", mode)
  params = {"w": jnp.ones((4, 4), jnp.bfloat16)}
  state = tx.init(params)
  updates, state = jax.jit(lambda s: tx.update(params, s, params, value=1.0))(state)
  assert updates["w"].dtype == jnp.bfloat16
  assert optax.apply_updates(params, updates)["w"].dtype == jnp.bfloat16
