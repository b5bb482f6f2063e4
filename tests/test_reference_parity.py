"""mode="reference" equals the seed's PyTorch AdaptiveScheduler, step for step."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adaptive_optax as ao
from tests import _streams

torch = pytest.importorskip("torch")
from tests.oracle.adaptive_scheduler_seed import AdaptiveScheduler  # noqa: E402

# The seed README's example configurations, its demo's, and the defaults.
SEED_CONFIGS = {
    "defaults": {},
    "readme_usage": dict(up_factor=1.03, down_factor=0.8, patience=30,
                         cooldown=60, use_cosine=True, T0=200, T_mult=2),
    "conservative": dict(up_factor=1.02, down_factor=0.9, patience=40),
    "exploratory": dict(use_cosine=True, T0=100, T_mult=2),
    "rl": dict(use_reward=True, reward_up=1.05, reward_down=0.8),
    "demo": dict(up_factor=1.03, down_factor=0.8, patience=20, cooldown=40,
                 use_cosine=True, T0=100, T_mult=2, lr_min=1e-5, lr_max=1.0),
    # Stresses every branch at once, with bounds that bite.
    "everything": dict(use_reward=True, use_cosine=True, T0=7, T_mult=3,
                       patience=3, cooldown=5, var_window=5, lr_min=1e-3,
                       lr_max=0.2, momentum_max=0.95, momentum_min=0.5,
                       var_damp_scale=0.1, eta_min_scale=0.3),
}


def torch_trajectory(config, losses, rewards, lr=0.05, momentum=0.9):
  p = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
  opt = torch.optim.SGD([p], lr=lr, momentum=momentum)
  sched = AdaptiveScheduler(opt, **config)
  out = []
  for i, loss in enumerate(losses):
    r = None if rewards is None else float(rewards[i])
    sched.step_loss(float(loss), reward=r)
    g = opt.param_groups[0]
    out.append((g["lr"], g["momentum"]))
  return np.array(out)


def _controller(config, lr=0.05, momentum=0.9):
  """(initial state, scan body): each step feeds a loss (and a reward) and
  emits the learning rate and momentum. Call under x64."""
  tx = ao.adaptive_hyperparams(optax.sgd, learning_rate=lr, momentum=momentum,
                               mode="reference", **config)
  params = jnp.zeros(1, jnp.float64)
  use_reward = config.get("use_reward", False)

  def body(state, xs):
    loss, reward = xs
    kw = {"reward": reward} if use_reward else {}
    _, state = tx.update(jnp.zeros_like(params), state, params, value=loss, **kw)
    m = ao.metrics(state)
    return state, jnp.stack([m["learning_rate"], m["momentum"]])

  return tx.init(params), body


def jax_trajectory(config, losses, rewards, lr=0.05, momentum=0.9):
  state, body = _controller(config, lr, momentum)
  rs = rewards if rewards is not None else np.zeros_like(losses)
  # The streams are arguments, not constants: one compiled program per
  # configuration serves every stream of its length.
  _, out = jax.jit(lambda s, l, r: jax.lax.scan(body, s, (l, r)))(state, losses, rs)
  return np.asarray(out)


PARITY_N = 1500


def _parity_streams(name):
  """The test's loss streams (one per kind) and rewards (None without use_reward)."""
  losses = {kind: _streams.loss_stream(kind, PARITY_N, seed=hash(name) % 1000)
            for kind in _streams.KINDS}
  use_reward = SEED_CONFIGS[name].get("use_reward")
  return losses, _streams.reward_stream(PARITY_N) if use_reward else None


@pytest.fixture(scope="module")
def jax_trajectories():
  """(name, kind) -> jax_trajectory(SEED_CONFIGS[name], ...) for every case
  of the test below, computed in ONE jitted program: per configuration, its
  streams go one after another (lax.map) from the same initial state. The
  configurations share most of their kernels: one compilation for all."""
  with jax.enable_x64(True):
    states, bodies, streams = {}, {}, {}
    for name, config in SEED_CONFIGS.items():
      states[name], bodies[name] = _controller(config)
      losses, rewards = _parity_streams(name)
      rs = rewards if rewards is not None else np.zeros(PARITY_N)
      streams[name] = (np.stack([losses[k] for k in _streams.KINDS]),
                       np.stack([rs] * len(_streams.KINDS)))

    def run_all(states, streams):
      return {name: jax.lax.map(
          lambda xs, name=name: jax.lax.scan(bodies[name], states[name], xs)[1],
          streams[name]) for name in SEED_CONFIGS}

    out = jax.device_get(jax.jit(run_all)(states, streams))
  return {(name, kind): out[name][i] for name in SEED_CONFIGS
          for i, kind in enumerate(_streams.KINDS)}


@pytest.mark.parametrize("kind", _streams.KINDS)
@pytest.mark.parametrize("name", sorted(SEED_CONFIGS))
def test_lr_and_momentum_match_seed_every_step(jax_trajectories, name, kind):
  config = SEED_CONFIGS[name]
  losses, rewards = _parity_streams(name)
  got = jax_trajectories[(name, kind)]
  want = torch_trajectory(config, losses[kind], rewards)
  np.testing.assert_allclose(got, want, rtol=1e-9, atol=0)


def test_init_equals_seed_constructor_step():
  """The torch base class steps once without metrics in its constructor."""
  config = dict(use_cosine=True, T0=3, lr_max=0.01)  # the clamp bites at init
  p = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
  opt = torch.optim.SGD([p], lr=0.05, momentum=0.9)
  AdaptiveScheduler(opt, **config)
  tx = ao.adaptive_hyperparams(optax.sgd, learning_rate=0.05, momentum=0.9,
                               mode="reference", **config)
  with jax.enable_x64(True):
    state = tx.init(jnp.zeros(1, jnp.float64))
    assert float(ao.metrics(state)["learning_rate"]) == opt.param_groups[0]["lr"]
    assert int(state.controller.cosine_t) == 1


@pytest.mark.parametrize("name", ["demo", "rl", "everything"])
def test_sgd_parameters_match_torch_sgd(name):
  """The LR and momentum *applied* at each step match: same parameter path."""
  config = SEED_CONFIGS[name]
  rng = np.random.default_rng(3)
  a = rng.standard_normal((64, 5))
  b = rng.standard_normal(64)
  n = 300
  rewards = _streams.reward_stream(n)

  def loss_fn(p):
    return 0.5 * jnp.mean((a @ p - b) ** 2)

  with jax.enable_x64(True):
    tx = ao.adaptive_hyperparams(optax.sgd, learning_rate=0.05, momentum=0.9,
                                 mode="reference", **config)
    params = jnp.zeros(5, jnp.float64)
    state = tx.init(params)

    @jax.jit
    def step(params, state, r):
      loss, g = jax.value_and_grad(loss_fn)(params)
      kw = {"reward": r} if config.get("use_reward") else {}
      u, state = tx.update(g, state, params, value=loss, **kw)
      return optax.apply_updates(params, u), state

    jax_path = []
    for t in range(n):
      params, state = step(params, state, rewards[t])
      jax_path.append(np.asarray(params))

  tp = torch.nn.Parameter(torch.zeros(5, dtype=torch.float64))
  opt = torch.optim.SGD([tp], lr=0.05, momentum=0.9)
  sched = AdaptiveScheduler(opt, **config)
  ta, tb = torch.tensor(a), torch.tensor(b)
  torch_path = []
  for t in range(n):
    opt.zero_grad()
    loss = 0.5 * torch.mean((ta @ tp - tb) ** 2)
    loss.backward()
    opt.step()
    r = float(rewards[t]) if config.get("use_reward") else None
    sched.step_loss(loss, reward=r)
    torch_path.append(tp.detach().numpy().copy())
  np.testing.assert_allclose(np.array(jax_path), np.array(torch_path),
                             rtol=1e-9, atol=1e-12)


def test_adaptive_scale_reference_is_seed_with_unit_lr():
  """adaptive_scale's scale follows the seed's LR started at 1."""
  losses = _streams.loss_stream("trend", 400)
  config = dict(use_cosine=True, T0=50, patience=5, cooldown=10)
  with jax.enable_x64(True):
    tx = ao.adaptive_scale(mode="reference", min_scale=1e-7, max_scale=10.0,
                           **config)
    params = jnp.zeros(1, jnp.float64)
    state = tx.init(params)
    upd = jax.jit(lambda s, l: tx.update(params, s, params, value=l))
    got = []
    for loss in losses:
      _, state = upd(state, loss)
      got.append(float(ao.metrics(state)["scale"]))
  want = torch_trajectory(config, losses, None, lr=1.0)[:, 0]
  np.testing.assert_allclose(got, want, rtol=1e-9)


def test_nonfinite_loss_is_the_one_deliberate_difference():
  """The seed's class turns its LR into NaN; reference mode skips the step."""
  losses = [1.0, 0.9, float("nan"), 0.8, 0.7]
  p = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
  opt = torch.optim.SGD([p], lr=0.05, momentum=0.9)
  sched = AdaptiveScheduler(opt)
  for loss in losses:
    sched.step_loss(loss)
  assert np.isnan(opt.param_groups[0]["lr"])
  with jax.enable_x64(True):
    got = jax_trajectory({}, np.asarray(losses), None)
    # Up to the bad step it is the seed; the bad step is a step without metrics.
    want = torch_trajectory({}, np.asarray(losses[:2]), None)
    np.testing.assert_allclose(got[:2], want, rtol=1e-9)
    assert np.all(np.isfinite(got))
