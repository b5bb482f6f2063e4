"""The RL benchmark's PPO and bookkeeping (``benchmarks/rl.py``), at smoke size.

The benchmark itself is a script (about 15 minutes); these check the pieces it
is built from: GAE against a plain loop, the tail score, the reward and
learning rate that reach the optimizer, and the goal arithmetic.
"""

import importlib
import importlib.util
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

if importlib.util.find_spec("gymnax") is None:
  pytest.skip("could not import 'gymnax'", allow_module_level=True)

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))


# The benchmark's modules are imported when a test of this file first runs,
# not at collection: gymnax takes seconds to import, and under `pytest -n 2`
# every worker collects every file (this one runs on one of them).
@pytest.fixture(scope="module")
def rl_tasks():
  return importlib.import_module("_rl_tasks")


@pytest.fixture(scope="module")
def rl():
  return importlib.import_module("rl")


@pytest.fixture(scope="module")
def tiny(rl_tasks):  # pylint: disable=redefined-outer-name
  return rl_tasks.PPOConfig(total_timesteps=3 * 4 * 32, num_steps=32,
                            update_epochs=1, num_minibatches=2, hidden=8)


def _gae_loop(r, v, v_next, term, done, gamma, lam):
  """GAE by the paper's definition, one env, a Python loop."""
  adv = np.zeros_like(r)
  running = 0.0
  for t in reversed(range(len(r))):
    delta = r[t] + gamma * (1 - term[t]) * v_next[t] - v[t]
    running = delta + gamma * lam * (1 - done[t]) * running
    adv[t] = running
  return adv


def test_gae_matches_a_loop_with_terminal_and_truncated_steps(rl_tasks):
  rng = np.random.default_rng(0)
  t, n = 9, 3
  r, v, v_next = (rng.normal(size=(t, n)).astype(np.float32) for _ in range(3))
  term = np.zeros((t, n), np.float32)
  done = np.zeros((t, n), np.float32)
  term[3, 0] = done[3, 0] = 1.0  # episode ends: no bootstrap
  done[5, 1] = 1.0  # time limit: bootstraps from v_next, trace still cut
  ro = rl_tasks.Rollout(obs=None, action=None, log_prob=None, value=v,
                        reward=r, terminated=term, done=done, next_obs=None)
  adv, target = rl_tasks.gae(ro, jnp.asarray(v_next), 0.99, 0.95)
  for j in range(n):
    want = _gae_loop(r[:, j], v[:, j], v_next[:, j], term[:, j], done[:, j],
                     0.99, 0.95)
    np.testing.assert_allclose(np.asarray(adv)[:, j], want, rtol=1e-5,
                               atol=1e-5)
  np.testing.assert_allclose(np.asarray(target), np.asarray(adv) + v,
                             rtol=1e-6)


def test_final_return_averages_episodes_of_the_tail_only(rl_tasks):
  sums = np.array([[100.0, 0.0, 30.0, 50.0] * 5])  # 20 updates
  counts = np.array([[1.0, 0.0, 1.0, 2.0] * 5])
  # The last 10% is the last 2 updates: 30 + 50 over 3 episodes.
  np.testing.assert_allclose(rl_tasks.final_return(sums, counts, 0.1),
                             [80.0 / 3.0])
  empty = rl_tasks.final_return(np.zeros((1, 20)), np.zeros((1, 20)), 0.1)
  assert np.isnan(empty[0])


def _probe(learning_rate):
  """Adam that records the reward and the loss it is given, and its rate."""
  inner = optax.adam(learning_rate)

  def init(params):
    nan = jnp.full((), jnp.nan, jnp.float32)
    return (inner.init(params), nan, nan,
            jnp.asarray(learning_rate, jnp.float32))

  def update(grads, state, params=None, *, value, reward, **_):
    updates, s = inner.update(grads, state[0], params)
    return updates, (s, reward, value, state[3])

  return optax.GradientTransformationExtraArgs(init, update)


def test_optimizer_gets_latest_rollout_reward_and_traced_rate(rl, tiny):
  # lr_of reports the recorded reward times the traced rate, so res["lr"]
  # (in base_lr units) is factor * the reward the optimizer saw at the
  # update's last gradient step: both must reach the optimizer.
  factors = np.array([1.0, 0.5])
  res = rl.run_rl("CartPole-v1", _probe, seeds=[0, 1], lr_factors=factors,
                  reward=True, config=tiny, lr_of=lambda s, lr: s[1] * s[3])
  assert res["score"].shape == (2, 2)
  assert res["returns"].shape == (2, 2, tiny.num_updates)
  want = res["returns"] * factors[:, None, None]
  np.testing.assert_allclose(res["lr"], want, rtol=1e-5, equal_nan=True)
  assert np.isfinite(res["returns"]).any()  # CartPole episodes do end
  assert np.isfinite(res["loss"]).all()


def test_the_training_program_holds_no_batched_qr(rl, rl_tasks, tiny):
  # Batched under vmap, the orthogonal init's LAPACK QRs deadlocked XLA's
  # 2-thread CPU pool (the benchmark hung); the networks now come in built.
  lrs, ss = jnp.full((2,), 1e-3), jnp.arange(2, dtype=jnp.int32)
  nets = rl_tasks.initial_networks("CartPole-v1", ss, tiny.hidden)
  program = rl.batched_train("CartPole-v1", optax.adam, tiny)
  assert "geqrf" not in jax.jit(program).lower(lrs, ss, nets).as_text()
  # The same run drawing its networks inside (params=None) does hold one.
  inside = jax.vmap(lambda lr, s: rl_tasks.train("CartPole-v1", optax.adam,
                                                 lr, s, tiny))
  assert "geqrf" in jax.jit(inside).lower(lrs, ss).as_text()
  # And the networks are the ones train() would draw.
  keys = rl_tasks._keys  # pylint: disable=protected-access
  drawn = jax.vmap(lambda s: rl_tasks.init_network(
      keys(s)[0], 4, 2, tiny.hidden))(ss)
  for a, b in zip(jax.tree.leaves(nets), jax.tree.leaves(drawn)):
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("bad", [[], [1.0, -1.0], [[1.0]]])
def test_run_rl_rejects_bad_lr_factors(rl, tiny, bad):
  with pytest.raises(ValueError, match="lr_factors"):
    rl.run_rl("CartPole-v1", optax.adam, seeds=[0], lr_factors=bad,
              config=tiny)


def test_unknown_env_is_named(rl_tasks):
  with pytest.raises(ValueError, match="env_name"):
    rl_tasks.default_config("Pong-v0")


def _scores(rl, adam, ours_good, ours_low, loss_only):
  cols = {"adam": {"good": np.array([adam])}}
  for c in rl.REWARD_COLUMNS:
    cols[c] = {"good": np.array([ours_good]), "100x low": np.array([ours_low])}
  cols[rl.LOSS_ONLY_DEFAULT] = {"good": np.array([loss_only])}
  return {"E": cols}


@pytest.mark.parametrize("adam,rand,good,low,loss,want", [
    # Positive returns: 10% of 400 is 40, half the gain is (400-20)/2 = 190.
    (400.0, 20.0, 361.0, 211.0, 301.0, (True, True, True)),
    (400.0, 20.0, 359.0, 209.0, 299.0, (False, False, False)),
    # Negative returns (Acrobot): 10% of |-80| is 8, half gain is 210.
    (-80.0, -500.0, -87.0, -289.0, -99.0, (True, True, True)),
    (-80.0, -500.0, -89.0, -291.0, -101.0, (False, False, False)),
])
def test_goals_thresholds(rl, adam, rand, good, low, loss, want):
  rows = rl.goals(_scores(rl, adam, good, low, loss), {"E": np.array([rand])})
  by_goal = {}
  for _, goal, ok, _ in rows:
    kind = ("10%" if "10%" in goal else "half" if "half" in goal else "25%")
    by_goal.setdefault(kind, set()).add(ok)
  assert by_goal["10%"] == {want[0]}
  assert by_goal["half"] == {want[1]}
  assert by_goal["25%"] == {want[2]}
