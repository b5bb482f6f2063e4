"""A million steps under lax.scan: counters saturate, restarts keep coming.

The restart period grows as T0 * T_mult**k; it saturates at
MAX_COSINE_PERIOD (2**30) instead of overflowing int32, and the step
counters saturate at 2**31 - 1 instead of wrapping to negative values.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adaptive_optax as ao
from adaptive_optax import _policy
from tests.conftest import jit_long

MILLION = 1_000_000
INT32_MAX = 2**31 - 1


def _noisy_decay(n, seed=0):
  t = jnp.arange(n, dtype=jnp.float32)
  noise = jax.random.uniform(jax.random.PRNGKey(seed), (n,))
  return 1.0 + jnp.exp(-t / 1e5) + 0.1 * noise


@pytest.fixture(scope="module", params=["stable", "reference"])
def million(request):
  """1,000,000 steps with cosine restarts from T0=1, T_mult=2."""
  # Run time, not compile time, is what this program costs: compiled with
  # XLA's optimizations (which conftest turns off for the rest of the suite)
  # it runs 2-3x faster, for a second more of compiling.
  run = jit_long(lambda losses: ao.simulate(
      losses, mode=request.param, use_cosine=True, T0=1, T_mult=2))
  out = run(_noisy_decay(MILLION))
  return request.param, jax.tree.map(np.asarray, out)


def test_a_million_steps_stay_finite(million):
  _, out = million
  for name, values in out.items():
    assert np.all(np.isfinite(values)), name
  assert int(out["num_steps"][-1]) == MILLION


def test_a_million_steps_never_overflow_a_counter(million):
  _, out = million
  for name in ("num_steps", "steps_since_improve", "cooldown", "cosine_period",
               "num_nonfinite"):
    assert out[name].dtype == np.int32
    assert out[name].min() >= 0, name
  assert np.all(np.diff(out["num_steps"]) == 1)


def test_restarts_keep_happening_with_doubling_periods(million):
  """Periods 1, 2, 4... restart at steps 2**k - 1: 19 within 1e6 steps."""
  mode, out = million
  period = np.concatenate([[1], out["cosine_period"]]).astype(np.int64)  # T0
  grew = np.flatnonzero(np.diff(period) > 0) + 1
  ratios = period[grew] / period[grew - 1]
  np.testing.assert_array_equal(ratios, 2.0)
  # reference mode's constructor step has already used the first period
  expected = int(math.log2(MILLION + 1)) - (mode == "reference")
  assert len(grew) >= expected
  assert grew[-1] > MILLION // 2  # the last restart is late in the run
  assert out["cosine_phase"].min() == 0.0 and out["cosine_phase"].max() < 1.0


@pytest.mark.parametrize("mode", ["stable", "reference"])
def test_restart_period_saturates_instead_of_overflowing(mode):
  """T0=1, T_mult=1e5: periods 1, 1e5, then 1e10 > int32: held at 2**30."""
  n = 120_000
  run = jax.jit(lambda losses: ao.simulate(
      losses, mode=mode, use_cosine=True, T0=1, T_mult=100_000))
  out = jax.tree.map(np.asarray, run(_noisy_decay(n)))
  assert out["cosine_period"].min() >= 1
  assert out["cosine_period"][-1] == _policy.MAX_COSINE_PERIOD
  assert np.all(np.isfinite(out["scale"]))


def _tx(mode, **kw):
  return ao.adaptive_hyperparams(optax.sgd, learning_rate=0.05, momentum=0.9,
                                 mode=mode, use_cosine=True, **kw)


def _steps(tx, state, losses):
  params = jnp.zeros(2)
  step = jax.jit(lambda s, loss: tx.update(jnp.ones(2), s, params,
                                           value=loss)[1])
  for loss in losses:
    state = step(state, jnp.float32(loss))
  return state


@pytest.mark.parametrize("mode", ["stable", "reference"])
def test_restarts_continue_at_the_saturated_period(mode):
  """At the 2**30 cap, the timer still wraps: the period does not stick."""
  cap = _policy.MAX_COSINE_PERIOD
  tx = _tx(mode, T0=1, T_mult=2)
  state = tx.init(jnp.zeros(2))
  ctrl = state.controller.replace(cosine_t=jnp.int32(cap - 2),
                                  cosine_period=jnp.int32(cap))
  state = _steps(tx, state._replace(controller=ctrl), [1.0] * 4)
  assert int(state.controller.cosine_period) == cap
  assert 0 <= int(state.controller.cosine_t) <= 2


@pytest.mark.parametrize("mode", ["stable", "reference"])
def test_step_counters_saturate_at_int32_max(mode):
  """Counters that reach 2**31 - 1 stay there instead of wrapping."""
  tx = _tx(mode, T0=5, var_window=2)
  # Slowly worsening losses (no improvement, no spike), some non-finite.
  losses = [1.05**k for k in range(24)]
  losses[3] = losses[11] = math.nan
  losses[7] = math.inf
  # A first pass ends any start-up phase; then the counters are put near the
  # limit, with a long cooldown to hold off the big drop that would reset one.
  state = _steps(tx, tx.init(jnp.zeros(2)), losses)
  near = jnp.int32(INT32_MAX - 2)
  # Stable mode's start-up probe resets the patience counter while it runs:
  # end it explicitly, as a spike or a worse window would.
  ctrl = state.controller.replace(probing=jnp.asarray(False),
                                  warmup=jnp.ones_like(state.controller.warmup))
  ctrl = ctrl.replace(num_steps=near, num_nonfinite=near,
                      steps_since_improve=near, cooldown_left=jnp.int32(1000))
  ctrl = _steps(tx, state._replace(controller=ctrl),
                [x * 1.05**24 for x in losses]).controller
  assert int(ctrl.num_steps) == INT32_MAX
  assert int(ctrl.num_nonfinite) == INT32_MAX
  assert int(ctrl.steps_since_improve) == INT32_MAX
