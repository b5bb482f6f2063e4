"""ao.simulate: the controller replayed over a stream equals the transformation's."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adaptive_optax as ao
from tests import _streams

N = 120
LOSSES = _streams.loss_stream("trend", N)
REWARDS = _streams.reward_stream(N)
CONFIGS = {
    "stable": dict(var_window=5, patience=3, cooldown=4),
    "reference_cosine_reward": dict(mode="reference", use_cosine=True, T0=9,
                                    use_reward=True, patience=3),
}


def _stepped(tx, rewards):
  """The same stream fed to tx.update one step at a time (jitted step)."""
  params = jnp.zeros(2)
  state = tx.init(params)
  step = jax.jit(lambda s, l, r: tx.update(
      params, s, params, value=l, **({} if rewards is None else {"reward": r}))[1])
  out = []
  for t in range(N):
    state = step(state, LOSSES[t], 0.0 if rewards is None else rewards[t])
    out.append(ao.metrics(state))
  return {k: np.stack([o[k] for o in out]) for k in out[0]}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_simulate_equals_stepping_adaptive_scale(name):
  cfg = CONFIGS[name]
  rewards = REWARDS if cfg.get("use_reward") else None
  sim = jax.jit(lambda l, r: ao.simulate(l, r, **cfg))(LOSSES, rewards)
  ref = _stepped(ao.adaptive_scale(**cfg), rewards)
  assert set(sim) == set(ref)
  for key in ref:
    np.testing.assert_allclose(sim[key], ref[key], rtol=1e-6, err_msg=key)


def test_simulate_with_learning_rate_equals_adaptive_hyperparams():
  cfg = CONFIGS["reference_cosine_reward"]
  sim = jax.jit(lambda l, r: ao.simulate(l, r, learning_rate=0.05,
                                         momentum=0.9, **cfg))(LOSSES, REWARDS)
  ref = _stepped(ao.adaptive_hyperparams(optax.sgd, learning_rate=0.05,
                                         momentum=0.9, **cfg), REWARDS)
  for key in ("learning_rate", "momentum", "loss_ema", "cooldown"):
    np.testing.assert_allclose(sim[key], ref[key], rtol=1e-6, err_msg=key)


@pytest.mark.parametrize("with_lr", [False, True])
def test_every_metric_is_one_value_per_step(with_lr):
  kw = dict(learning_rate=0.1, momentum=0.5) if with_lr else {}
  out = jax.jit(lambda l: ao.simulate(l, **kw))(LOSSES)
  rate = "learning_rate" if with_lr else "scale"
  for key in (rate, "loss_ema", "loss_variance", "steps_since_improve",
              "cooldown", "cosine_phase"):
    assert out[key].shape == (N,), key
  assert ("momentum" in out) == with_lr


def test_vmap_over_configurations_equals_a_loop():
  ups = jnp.array([1.01, 1.05, 1.2])
  downs = jnp.array([0.5, 0.7, 0.95])
  run = lambda u, d: ao.simulate(LOSSES, mode="reference", up_factor=u,
                                 down_factor=d)["scale"]
  # One program (one compilation): the configurations vmapped, and each on
  # its own, unbatched, one after another (lax.map).
  batched, each = jax.jit(lambda u, d: (
      jax.vmap(run)(u, d), jax.lax.map(lambda ud: run(*ud), (u, d))))(ups, downs)
  for i in range(3):
    np.testing.assert_allclose(batched[i], each[i], rtol=1e-6)
  assert len({float(b[-1]) for b in batched}) == 3


def test_nonfinite_losses_are_skipped_and_counted():
  losses = LOSSES.copy()
  losses[[10, 50, 51]] = [np.nan, np.inf, np.nan]
  out = jax.jit(lambda l: ao.simulate(l))(losses)
  assert int(out["num_nonfinite"][-1]) == 3
  assert bool(jnp.all(jnp.isfinite(out["scale"])))


@pytest.mark.parametrize("call,match", [
    (lambda: ao.simulate(LOSSES, use_reward=True), "rewards"),
    (lambda: ao.simulate(LOSSES, momentum=0.9), "learning_rate"),
    (lambda: ao.simulate(LOSSES.reshape(4, -1)), "one-dimensional"),
    (lambda: ao.simulate(LOSSES, REWARDS[:-1], use_reward=True), "shape"),
    (lambda: ao.simulate(LOSSES, patience=-1), "patience"),
])
def test_bad_inputs_are_errors(call, match):
  with pytest.raises((ValueError, TypeError), match=match):
    call()
