"""optax's generic optimizer battery, pointed at our two front ends.

Adapted from optax's ``_src/alias_test.py`` and ``contrib/_common_test.py``:
optimization of a parabola (real and complex), dtype preservation (bfloat16),
state shape/dtype stability through ``lax.cond``, gradient accumulation
(``MultiSteps``), ``inject_hyperparams``, extra arguments, explicit state
dtypes; plus what wrapping a factory must not change (static arguments stay
static, schedules are refused by name).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adaptive_optax as ao

POLICY = dict(var_window=4, patience=8, cooldown=8)
# The seed's rules compound every step (variance damping, patience drops);
# on a noiseless parabola that stalls adam's approach: damping off here.
REFERENCE = dict(POLICY, mode="reference", var_damp_scale=0.0)
FRONTS = {
    "scale-stable": lambda: optax.chain(
        optax.adam(0.1), ao.adaptive_scale(mode="stable", **POLICY)),
    "scale-reference": lambda: optax.chain(
        optax.adam(0.1), ao.adaptive_scale(**REFERENCE)),
    "hyperparams-sgd": lambda: ao.adaptive_hyperparams(
        optax.sgd, learning_rate=0.02, momentum=0.5, **POLICY),
    "hyperparams-adam": lambda: ao.adaptive_hyperparams(
        optax.adam, learning_rate=0.1, **POLICY),
}
TARGET = np.array([1.0, -1.0, 1.0])


def _parabola(dtype):
  """optax's _setup_parabola: (initial params, objective)."""
  initial = jnp.array([-1.0, 10.0, 1.0], dtype)
  target = jnp.array(TARGET, dtype)
  return initial, lambda p: jnp.sum(jnp.abs(p - target) ** 2)


def _step(tx, objective):
  def step(params, state):
    value, grads = jax.value_and_grad(objective)(params)
    grads = jax.tree.map(jnp.conj, grads)  # complex: descend along conj
    updates, state = tx.update(grads, state, params, value=value)
    return optax.apply_updates(params, updates), state
  return step


# Every front end in float32 and bfloat16; complex for two of them each (a
# compile per case: the battery stays within seconds).
REAL = [(f, jnp.float32) for f in sorted(FRONTS)]
COMPLEX = [("scale-stable", jnp.complex64), ("hyperparams-adam", jnp.complex64)]
LOW = [(f, jnp.bfloat16) for f in sorted(FRONTS)]
COMPLEX_2 = [("scale-reference", jnp.complex64),
             ("hyperparams-sgd", jnp.complex64)]


@pytest.mark.parametrize("front,dtype", REAL + COMPLEX)
def test_optimization(front, dtype):
  tx = FRONTS[front]()
  params, objective = _parabola(dtype)
  step = _step(tx, objective)

  @jax.jit
  def run(params):
    body = lambda carry, _: (step(*carry), None)
    return jax.lax.scan(body, (params, tx.init(params)), None, length=300)[0]

  final, state = run(params)
  assert final.dtype == dtype
  assert float(objective(final)) < 1e-2 * float(objective(params))
  assert int(ao.metrics(state)["num_steps"]) == 300


@pytest.mark.parametrize("front,dtype", LOW + COMPLEX_2)
def test_dtype_preserved_and_state_stable(front, dtype):
  """Updates keep the gradients' dtype and stay finite (bfloat16 adam once
  gave NaN: b2 injected as a bfloat16 1.0); the state keeps its structure,
  shapes and dtypes, checked by lax.cond, which demands identical types."""
  tx = FRONTS[front]()
  params, objective = _parabola(dtype)
  step = _step(tx, objective)

  @jax.jit
  def run(params, state, take):  # take: traced, so both branches compile
    grads = jax.grad(objective)(params)
    updates, _ = tx.update(grads, state, params, value=1.0)
    assert updates.dtype == grads.dtype
    new_params, new_state = step(params, state)
    return jax.lax.cond(take, lambda: (new_params, new_state),
                        lambda: (params, state))

  state = tx.init(params)
  before = jax.tree.map(lambda x: (x.shape, x.dtype), state)
  for _ in range(3):
    params, state = run(params, state, jnp.asarray(True))
  assert params.dtype == dtype
  assert bool(jnp.all(jnp.isfinite(params)))
  assert jax.tree.map(lambda x: (x.shape, x.dtype), state) == before


def test_state_stable_under_x64():
  with jax.enable_x64(True):
    for make in (FRONTS["hyperparams-sgd"],):
      tx = make()
      params, objective = _parabola(jnp.float64)
      state = tx.init(params)
      before = jax.tree.map(lambda x: (x.shape, x.dtype), state)
      params, state = jax.jit(_step(tx, objective))(params, state)
      assert params.dtype == jnp.float64
      assert jax.tree.map(lambda x: (x.shape, x.dtype), state) == before


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float32])
@pytest.mark.parametrize("front", ["scale-stable", "hyperparams-adam"])
def test_gradient_accumulation(front, dtype):
  tx = optax.MultiSteps(FRONTS[front](), every_k_schedule=4)
  params = jnp.array([1.0, 2.0], dtype)
  grads = 2 * params
  state = jax.jit(tx.init)(params)
  update = jax.jit(tx.update)
  updates, state = update(grads, state, params, value=jnp.float32(5.0))
  np.testing.assert_array_equal(updates, jnp.zeros_like(grads))
  for _ in range(3):
    updates, state = update(grads, state, params, value=jnp.float32(5.0))
  assert updates.dtype == dtype and bool(jnp.any(updates != 0))
  assert int(ao.metrics(state)["num_steps"]) == 1  # one inner step per k


def test_adaptive_scale_can_be_wrapped_in_inject_hyperparams():
  params = [-jnp.ones((2, 3)), jnp.ones((2, 5, 2))]
  grads = [jnp.ones((2, 3)), -jnp.ones((2, 5, 2))]
  plain = ao.adaptive_scale(up_factor=1.1, **POLICY)
  injected = optax.inject_hyperparams(
      ao.adaptive_scale, static_args=("var_window",))(up_factor=1.1, **POLICY)
  want, want_state = jax.jit(plain.update)(
      grads, jax.jit(plain.init)(params), params, value=1.0)
  got, got_state = jax.jit(injected.update)(
      grads, jax.jit(injected.init)(params), params, value=1.0)
  for g, w in zip(jax.tree.leaves((got, got_state.inner_state)),
                  jax.tree.leaves((want, want_state))):
    np.testing.assert_allclose(g, w, rtol=1e-6)
  with pytest.raises(ValueError, match="static_args"):
    optax.inject_hyperparams(ao.adaptive_scale)().init(params)


@pytest.mark.parametrize("front", sorted(FRONTS))
def test_extra_args_and_python_scalars(front):
  """Unknown extra arguments pass through; scalar params and updates work."""
  for tx in (FRONTS[front](), ao.adaptive_scale(mode=front.split("-")[1])
             if front.startswith("scale") else FRONTS[front]()):
    state = tx.init(1.0)
    updates, state = tx.update(0.5, state, 1.0, value=2.0, unrelated_arg=3)
    assert jnp.shape(updates) == () and bool(jnp.isfinite(updates))


def test_factory_arguments_stay_static_and_only_the_rate_is_injected():
  params = jnp.ones((4, 5))
  # adafactor's sizes must stay Python ints under jit.
  tx = ao.adaptive_hyperparams(optax.adafactor, learning_rate=0.01)
  state = tx.init(params)
  updates, _ = jax.jit(tx.update)(params, state, params, value=1.0)
  assert updates.shape == params.shape
  assert set(state.optimizer_state.hyperparams) == {"learning_rate"}
  # mu_dtype is a dtype, not a schedule; explicit state dtypes are kept.
  tx = ao.adaptive_hyperparams(optax.adam, learning_rate=0.1,
                               mu_dtype=jnp.bfloat16)
  assert optax.tree.get(tx.init(params), "mu").dtype == jnp.bfloat16


def test_more_can_be_injected_on_purpose():
  params = jnp.ones(3)
  tx = ao.adaptive_hyperparams(optax.adam, learning_rate=0.1, b1=0.5,
                               inject=("b1",))
  state = tx.init(params)
  assert float(state.optimizer_state.hyperparams["b1"]) == 0.5
  hps = dict(state.optimizer_state.hyperparams, b1=jnp.float32(0.0))
  changed = state._replace(
      optimizer_state=state.optimizer_state._replace(hyperparams=hps))
  a, _ = tx.update(params, state, params, value=1.0)
  b, _ = tx.update(params, changed, params, value=1.0)
  np.testing.assert_array_equal(a, b)  # one step of adam: b1 cancels...
  a, sa = tx.update(params, state, params, value=1.0)
  b, sb = tx.update(params, changed, params, value=1.0)
  a, _ = tx.update(-params, sa, params, value=1.0)
  b, _ = tx.update(-params, sb, params, value=1.0)
  assert not np.allclose(a, b)  # ...the second does not
  with pytest.raises(ValueError, match="inject names"):
    ao.adaptive_hyperparams(optax.adam, learning_rate=0.1, inject=("b2",))


def test_a_schedule_for_the_rate_is_refused_by_name():
  schedule = optax.cosine_decay_schedule(0.1, 100)
  with pytest.raises(ValueError, match=r"learning_rate must be a number.*"
                                       r"adaptive_scale"):
    ao.adaptive_hyperparams(optax.sgd, learning_rate=schedule)
  # The supported combination: the schedule in the optimizer, scaled.
  tx = optax.chain(optax.sgd(schedule), ao.adaptive_scale())
  params = jnp.ones(2)
  updates, _ = tx.update(params, tx.init(params), params, value=1.0)
  assert bool(jnp.all(jnp.isfinite(updates)))
