"""JAX-native behaviour: jit without recompiles, scan, donation, vmap, dtypes."""

import functools
import inspect

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


# Every numeric hyperparameter of ao.simulate (a scale: min_scale/max_scale
# bound it), at ao.adaptive_scale's defaults.
_TRACED_DEFAULTS = {
    name: p.default
    for name, p in inspect.signature(ao.adaptive_scale).parameters.items()
    if isinstance(p.default, (int, float)) and not isinstance(p.default, bool)
    and name != "var_window"}


def _as_arrays(config):
  """Each value as an array of its default's kind: int32 or float32."""
  return {k: jnp.asarray(v, jnp.int32 if isinstance(_TRACED_DEFAULTS[k], int)
                         else jnp.float32) for k, v in config.items()}


@functools.lru_cache(maxsize=None)
def _traced_simulate(mode, use_cosine):
  """One jitted program: ``configs -> (vmap(run)(configs), lax.map(run, configs))``.

  ``run`` replays the stream with EVERY numeric hyperparameter traced, so the
  static switches (mode, use_cosine, var_window) are the only ones that
  select a program: each case of test_vmap_over_a_traced_hyperparameter
  reuses the program of its (mode, use_cosine) instead of compiling its own.
  Its hyperparameter is traced (and, batched, vmapped) as before, and so are
  the others, which hold the test's settings. Each row is also run on its
  own, unbatched (lax.map), in the same program.
  """
  # Small variance, so that reference mode's damping does not pin the scale.
  # A fall, then a plateau, so that every rule has something to act on.
  losses = 0.01 * (jnp.abs(jnp.cos(jnp.arange(300) / 7.0))
                   + jnp.maximum(jnp.linspace(2, -1, 300), 0))

  def run(config):
    return ao.simulate(losses, mode=mode, use_cosine=use_cosine, var_window=5,
                       **config)["scale"]

  # lax.map: one row after another through the unbatched run.
  return jax.jit(lambda configs: (jax.vmap(run)(configs),
                                  jax.lax.map(run, configs)))


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
  # The seed's overlay compounds to min_scale: on only where it is tested.
  run = _traced_simulate(mode, name in ("T0", "T_mult"))
  kw = dict(_TRACED_DEFAULTS, patience=3, T0=20)
  if name == "cooldown":  # else stable mode's relative cooldown rules
    kw["cooldown_ratio"] = 0.0
  configs = [_as_arrays({**kw, name: v}) for v in values]
  batched, one_by_one = run(jax.tree.map(lambda *x: jnp.stack(x), *configs))
  assert batched.shape[0] == len(one_by_one) == len(values)
  for i, own in enumerate(one_by_one):  # each row is that configuration's own run
    np.testing.assert_allclose(batched[i], own, rtol=2e-5)
  assert not np.allclose(batched[0], batched[-1])


def _train_over_start_scale(u, mode="stable"):
  tx = optax.chain(optax.sgd(0.05, momentum=0.9),
                   ao.adaptive_scale(mode=mode, start_scale=u, var_window=5))
  return toy.train(tx, steps=40, seed=0)["metrics"]["scale"]


def _train_over_learning_rate(lr, mode="reference"):
  tx = ao.adaptive_hyperparams(optax.sgd, learning_rate=lr, momentum=0.9,
                               mode=mode)
  return toy.train(tx, steps=40, seed=0)["metrics"]["learning_rate"]


UPS = jnp.asarray([0.05, 0.5])
LRS = jnp.asarray([0.01, 0.05])


@pytest.fixture(scope="module")
def vmapped_trainings():
  """The toy trainings of the two tests below, in ONE jitted program.

  They share the model, the data and the batches, which one program compiles
  once: (vmap over UPS, UPS[1]'s run on its own, vmap over LRS).
  """
  return jax.jit(lambda u, lr: (
      jax.vmap(_train_over_start_scale)(u), _train_over_start_scale(u[1]),
      jax.vmap(_train_over_learning_rate)(lr)))(UPS, LRS)


def test_vmap_training_over_start_scale(vmapped_trainings):
  batched, own, _ = vmapped_trainings
  np.testing.assert_allclose(batched[1], own, rtol=2e-5)
  assert not np.allclose(batched[0], batched[1])


def test_vmap_over_learning_rate_of_hyperparams(vmapped_trainings):
  out = vmapped_trainings[2]
  np.testing.assert_allclose(out[:, 0] / LRS, out[0, 0] / LRS[0], rtol=1e-5)
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


def _compiled_lines(tx, leaves: int) -> int:
  """Lines of the optimized program of one update over ``leaves`` leaves."""
  params = {f"w{i}": jnp.ones((8, 8)) for i in range(leaves)}
  step = jax.jit(lambda p, s, l: tx.update(p, s, p, value=l))
  return step.lower(params, tx.init(params), jnp.float32(1.0)).compile(
      ).as_text().count("\n")


@pytest.mark.parametrize("kind", KINDS)
def test_the_controller_step_is_compiled_once_not_once_per_leaf(kind):
  """XLA fuses cheap scalar producers into each consumer: unless the rate
  is computed once, every leaf's update loop carries the whole controller
  step (about 400 more lines of program per leaf, and a compile time that
  grows with the model)."""
  def per_leaf(make_tx):
    return (_compiled_lines(make_tx(), 12) - _compiled_lines(make_tx(), 2)) / 10

  plain = per_leaf(lambda: optax.sgd(0.1, momentum=0.9))
  ours = per_leaf(lambda: make(kind, "stable"))
  assert ours <= plain + 20, (ours, plain)
