"""Whatever the loss and reward streams hold, the controller stays sane.

Property-based (hypothesis): streams mixing NaN, +/-Inf, zeros, negatives,
values crossing zero, 1e-30, large magnitudes, plateaus and spikes. At every
step the controller state stays finite, the applied learning rate stays in
[lr_min, lr_max] (the scale in [min_scale, max_scale]) and the momentum in
[momentum_min, momentum_max], and no leaf changes dtype or shape. Also: the
reference mode equals the seed's PyTorch class on random finite streams and
random configurations, and the state's dtypes under float32/bfloat16/float64
parameters with x64 on and off.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import HealthCheck
from hypothesis import example
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

import adaptive_optax as ao

N = 64  # stream length: fixed, so one compilation serves every example
BOUNDS = dict(lr_min=1e-4, lr_max=0.5, momentum_min=0.1, momentum_max=0.95)
SCALE_BOUNDS = dict(min_scale=1e-3, max_scale=20.0)
POLICY = dict(var_window=4, patience=3, cooldown=2, use_cosine=True, T0=3,
              T_mult=2, use_reward=True)
PROPERTY = settings(max_examples=30, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])

# |x| <= 1e18 keeps x*x finite in float32; larger values are the next section.
SPECIAL = [math.nan, math.inf, -math.inf, 0.0, -0.0, 1e-30, -1e-30, 1.0, -1.0,
           1e18, -1e18, 3.0]


def _streams(magnitude):
  value = st.one_of(
      st.sampled_from(SPECIAL),
      st.floats(-magnitude, magnitude, allow_nan=False))
  # Runs of one value: plateaus; a lone value among them: a spike.
  runs = st.lists(st.tuples(value, st.integers(1, 24)), min_size=1,
                  max_size=N)
  def expand(rs):
    xs = [v for v, k in rs for _ in range(k)]
    return np.resize(np.asarray(xs, np.float32), N)
  return runs.map(expand)


HOSTILE = _streams(1e18)


FRONTS_AND_MODES = [(front, mode) for front in ("hyperparams", "scale")
                    for mode in ("stable", "reference")]


def _runner(front, mode):
  """(initial state, a scan returning the state after every step, for
  (losses, rewards))."""
  if front == "hyperparams":
    tx = ao.adaptive_hyperparams(optax.sgd, learning_rate=0.05, momentum=0.9,
                                 mode=mode, **BOUNDS, **POLICY)
  else:
    tx = optax.chain(optax.sgd(0.05, momentum=0.9),
                     ao.adaptive_scale(mode=mode, **SCALE_BOUNDS, **POLICY))
  params = jnp.ones(3)
  state = tx.init(params)

  def run(losses, rewards):
    def body(state, xs):
      loss, reward = xs
      updates, state = tx.update(jnp.ones(3), state, params, value=loss,
                                 reward=reward)
      return state, (state, updates)
    return jax.lax.scan(body, state, (losses, rewards))[1]

  return state, run


@functools.lru_cache(maxsize=None)
def _all_runners():
  """(initial states, ONE jitted program feeding (losses, rewards) to all four
  controllers): compiled once for every example of every test below, instead
  of once per controller (the four share most of their kernels); a stream of
  N steps costs next to nothing to run."""
  runners = {key: _runner(*key) for key in FRONTS_AND_MODES}
  return ({key: state for key, (state, _) in runners.items()},
          jax.jit(lambda l, r: {key: run(l, r)
                                for key, (_, run) in runners.items()}))


def _controller(state):
  return state.controller if hasattr(state, "controller") else state[1].controller


def _check_sane(front, mode, losses, rewards):
  inits, run_all = _all_runners()
  init = inits[(front, mode)]
  states, updates = run_all(jnp.asarray(losses), jnp.asarray(rewards))[
      (front, mode)]
  ctrl = _controller(states)
  # No dtype or shape change: each leaf is the initial leaf, stacked N times.
  for got, want in zip(jax.tree.leaves(states), jax.tree.leaves(init)):
    assert got.dtype == want.dtype and got.shape == (N,) + want.shape
  for name, leaf in ctrl._asdict().items():
    if name == "config":  # static metadata, no array
      continue
    if jnp.issubdtype(leaf.dtype, jnp.floating):
      assert bool(jnp.all(jnp.isfinite(leaf))), name
    elif leaf.dtype == jnp.int32:
      assert bool(jnp.all(leaf >= 0)), name
  assert bool(jnp.all(jnp.isfinite(updates)))
  if front == "hyperparams":
    hps = states.optimizer_state.hyperparams
    lr, m = hps["learning_rate"], hps["momentum"]
    assert bool(jnp.all((lr >= BOUNDS["lr_min"]) & (lr <= BOUNDS["lr_max"])))
    assert bool(jnp.all((m >= BOUNDS["momentum_min"])
                        & (m <= BOUNDS["momentum_max"])))
  else:
    s = ctrl.applied_rate
    assert bool(jnp.all((s >= SCALE_BOUNDS["min_scale"])
                        & (s <= SCALE_BOUNDS["max_scale"])))


@pytest.mark.parametrize("front", ["hyperparams", "scale"])
@pytest.mark.parametrize("mode", ["stable", "reference"])
@PROPERTY
@given(losses=HOSTILE, rewards=HOSTILE)
@example(losses=np.resize(np.float32([math.nan, math.inf, -math.inf]), N),
         rewards=np.resize(np.float32([math.nan, 1.0]), N))
@example(losses=np.resize(np.float32([1e-30, -1e-30, 0.0]), N),
         rewards=np.zeros(N, np.float32))
@example(losses=np.resize(np.float32([1e18, 1.0, 1.0, 1.0, -1e18]), N),
         rewards=np.resize(np.float32([1e18, -1e18]), N))
def test_hostile_streams_keep_state_finite_and_rates_bounded(
    mode, front, losses, rewards):
  _check_sane(front, mode, losses, rewards)


# Beyond 1e19, x*x overflows float32. Found by the property above with a
# wider range; kept as explicit cases until _policy.py handles them.
HUGE = 1e30
HUGE_LOSSES = np.resize(np.float32([HUGE, HUGE, HUGE] + [1.0] * 9), N)
HUGE_SWINGS = np.resize(np.float32([HUGE, -HUGE, 1.0, 0.0]), N)
CALM = np.linspace(2.0, 1.0, N).astype(np.float32)


@pytest.mark.parametrize("front", ["hyperparams", "scale"])
@pytest.mark.parametrize("mode", ["stable", "reference"])
@pytest.mark.parametrize("losses", [HUGE_LOSSES, HUGE_SWINGS],
                         ids=["huge_plateau", "huge_swings"])
def test_losses_of_1e30_keep_state_finite_and_rates_bounded(mode, front,
                                                            losses):
  _check_sane(front, mode, losses, -CALM)


@pytest.mark.parametrize("mode", ["stable", "reference"])
def test_rewards_of_1e30_keep_state_finite(mode):
  _check_sane("hyperparams", mode, CALM, HUGE_SWINGS)


# ---------------------------------------------------------------------------
# Precision


@pytest.mark.filterwarnings("ignore:Explicitly requested dtype float64")
@pytest.mark.parametrize("x64", [False, True], ids=["x64_off", "x64_on"])
@pytest.mark.parametrize("param_dtype,stats_dtype", [
    ("bfloat16", "float32"), ("float32", "float32"), ("float64", "float64")])
@pytest.mark.parametrize("front", ["hyperparams", "scale"])
def test_dtypes_hold_across_jitted_updates(front, param_dtype, stats_dtype,
                                           x64):
  """bf16/f32 params keep float32 statistics; f64 (x64 on) keeps float64.
  With x64 off, float64 params are float32 arrays and so is everything."""
  if not x64 and param_dtype == "float64":
    stats_dtype = "float32"
  with jax.enable_x64(x64):
    params = jnp.ones(4, param_dtype)
    if front == "hyperparams":
      tx = ao.adaptive_hyperparams(optax.sgd, learning_rate=0.05,
                                   momentum=0.9, use_cosine=True, T0=3)
    else:
      tx = optax.chain(optax.sgd(0.05, momentum=0.9),
                       ao.adaptive_scale(use_cosine=True, T0=3))
    state = tx.init(params)
    ctrl0 = jax.tree.map(lambda a: (a.dtype, a.shape), state)
    step = jax.jit(lambda s, loss: tx.update(jnp.ones_like(params), s, params,
                                             value=loss))
    for loss in (3.0, 2.0, float("nan"), 1.0, 1e-30):
      updates, state = step(state, jnp.asarray(loss))  # weak-typed, x64-wide
      assert updates.dtype == params.dtype
      assert jax.tree.map(lambda a: (a.dtype, a.shape), state) == ctrl0
    ctrl = state.controller if front == "hyperparams" else state[1].controller
    assert ctrl.applied_rate.dtype == jnp.dtype(stats_dtype)
    assert step._cache_size() == 1  # no retrace from a dtype drift


# ---------------------------------------------------------------------------
# Reference mode equals the seed's PyTorch class on random configurations.

torch = pytest.importorskip("torch")
from tests.oracle.adaptive_scheduler_seed import AdaptiveScheduler  # noqa: E402

PARITY_N = 150


@functools.lru_cache(maxsize=None)
def _reference_sim(var_window, use_reward, use_cosine):
  """simulate() in reference mode, numeric hyperparameters traced."""
  @jax.jit
  def run(losses, rewards, lr, momentum, hps):
    return ao.simulate(losses, rewards, learning_rate=lr, momentum=momentum,
                       mode="reference", var_window=var_window,
                       use_reward=use_reward, use_cosine=use_cosine, **hps)
  return run


def _configs():
  unit = lambda lo, hi: st.floats(lo, hi, allow_nan=False)
  numeric = st.fixed_dictionaries(dict(
      loss_beta=unit(0.0, 0.99), reward_beta=unit(0.0, 0.99),
      up_factor=unit(1.0, 1.2), down_factor=unit(0.5, 1.0),
      min_rel_improve=unit(1e-6, 1e-2), var_damp_base=unit(0.5, 2.0),
      var_damp_scale=unit(0.0, 2.0), reward_up=unit(1.0, 1.2),
      reward_down=unit(0.5, 1.0), momentum_up=unit(0.0, 0.1),
      momentum_down=unit(0.5, 1.0), patience=st.integers(0, 30),
      big_drop=unit(0.1, 1.0), cooldown=st.integers(0, 30),
      T0=st.integers(1, 40), T_mult=st.sampled_from([1, 2, 3]),
      eta_min_scale=unit(0.0, 1.0), lr_min=unit(1e-7, 1e-3),
      lr_max=unit(0.1, 10.0), momentum_min=unit(0.0, 0.5),
      momentum_max=unit(0.6, 0.999)))
  # Static switches recompile: four combinations flip each switch both ways.
  static = st.sampled_from([
      dict(var_window=2, use_reward=True, use_cosine=True),
      dict(var_window=20, use_reward=False, use_cosine=False),
      dict(var_window=2, use_reward=False, use_cosine=True),
      dict(var_window=20, use_reward=True, use_cosine=False)])
  return st.tuples(static, numeric, unit(1e-3, 1.0), unit(0.0, 0.99))


def _parity_stream(seed, kind):
  """Continuous random values: exact ties (where summation order could flip
  a comparison) have probability zero."""
  rng = np.random.default_rng(seed)
  t = np.arange(PARITY_N)
  if kind == "decay":
    return 2 * np.exp(-t / rng.uniform(10, 200)) + rng.uniform(0, .3) * rng.random(PARITY_N)
  if kind == "signed":
    return rng.normal(rng.uniform(-2, 2), rng.uniform(0.01, 3), PARITY_N)
  return np.exp(rng.normal(0, rng.uniform(0.1, 5), PARITY_N))  # heavy tails


def _torch_lr_momentum(static, numeric, lr, momentum, losses, rewards):
  p = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
  opt = torch.optim.SGD([p], lr=lr, momentum=momentum)
  sched = AdaptiveScheduler(opt, **static, **numeric)
  out = []
  for i, loss in enumerate(losses):
    sched.step_loss(float(loss),
                    reward=float(rewards[i]) if static["use_reward"] else None)
    g = opt.param_groups[0]
    out.append((g["lr"], g["momentum"]))
  return np.array(out)


@PROPERTY
@given(config=_configs(), seed=st.integers(0, 2**32 - 1),
       kind=st.sampled_from(["decay", "signed", "heavy"]))
def test_reference_mode_equals_seed_on_random_streams_and_configs(config, seed,
                                                                  kind):
  static, numeric, lr, momentum = config
  losses = _parity_stream(seed, kind)
  rewards = np.random.default_rng(seed + 1).normal(size=PARITY_N)
  with jax.enable_x64(True):
    run = _reference_sim(**static)
    hps = {k: jnp.asarray(v, jnp.float64) for k, v in numeric.items()}
    out = run(jnp.asarray(losses), jnp.asarray(rewards), jnp.float64(lr),
              jnp.float64(momentum), hps)
    got = np.stack([out["learning_rate"], out["momentum"]], axis=1)
  want = _torch_lr_momentum(static, numeric, lr, momentum, losses, rewards)
  np.testing.assert_allclose(got, want, rtol=1e-9, atol=0)
