"""PPO on gymnax classic-control tasks, for the RL benchmark (``rl.py``).

Written from the paper (Schulman et al. 2017: the clipped surrogate objective,
a value loss and an entropy bonus, on advantages from generalized advantage
estimation, Schulman et al. 2016) and the gymnax ``reset``/``step`` API. The
whole training run is one ``lax.scan`` over rollout-and-update iterations, so
:func:`train` can be ``jit``-ed and ``vmap``-ed over seeds and over a traced
learning rate.

The optimizer is an argument: ``make_tx(learning_rate)`` returns any optax
transformation. At every gradient step it receives ``value=`` the PPO
minibatch loss and, when asked for, ``reward=`` the mean return of the
episodes completed in the latest rollout (NaN when none completed).

Deviations from the paper, both common practice: advantages are normalized per
minibatch, and a step cut by the time limit (``truncated``) bootstraps from the
value of its true next observation instead of counting as terminal.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

try:
  import gymnax
except ImportError as e:  # pragma: no cover - depends on the environment
  raise ImportError(
      "The RL benchmark needs gymnax: pip install -e '.[bench]' "
      "(or pip install gymnax six).") from e

ENVS = ("CartPole-v1", "Acrobot-v1")


@dataclasses.dataclass(frozen=True)
class PPOConfig:
  """The small standard PPO configuration (hyperparameters of the paper's
  Atari/MuJoCo tables, sized down for classic control)."""

  total_timesteps: int = 200_000
  num_envs: int = 4
  num_steps: int = 128  # rollout length per env
  update_epochs: int = 4
  num_minibatches: int = 4
  gamma: float = 0.99
  gae_lambda: float = 0.95
  clip_eps: float = 0.2
  vf_coef: float = 0.5
  ent_coef: float = 0.01
  hidden: int = 64
  max_grad_norm: float = 0.5  # used by the benchmark's tx factories
  base_lr: float = 2.5e-4  # "the good LR"

  @property
  def batch_size(self) -> int:
    return self.num_envs * self.num_steps

  @property
  def num_updates(self) -> int:
    return self.total_timesteps // self.batch_size

  @property
  def minibatch_size(self) -> int:
    return self.batch_size // self.num_minibatches

  def __post_init__(self):
    if self.batch_size % self.num_minibatches:
      raise ValueError(
          "num_envs * num_steps must be divisible by num_minibatches, got "
          f"{self.num_envs} * {self.num_steps} and {self.num_minibatches}.")
    if self.num_updates < 1:
      raise ValueError(
          f"total_timesteps={self.total_timesteps} is less than one rollout "
          f"({self.batch_size} steps): raise it.")


# Timesteps per env (constant Adam 2.5e-4, 4 seeds, measured): CartPole
# reaches 394 +- 55 at 2e5 and 449 +- 61 at 5e5 (cap 500); Acrobot levels off
# near -85 by ~1.5e5 and its steps cost more (an RK4 integrator), so 2e5.
DEFAULT_TIMESTEPS = {"CartPole-v1": 500_000, "Acrobot-v1": 200_000}


def default_config(env_name: str, **overrides) -> PPOConfig:
  """The benchmark's config for ``env_name``, with ``overrides`` applied."""
  if env_name not in DEFAULT_TIMESTEPS:
    raise ValueError(
        f"env_name must be one of {sorted(DEFAULT_TIMESTEPS)}, got "
        f"{env_name!r}.")
  kw = {"total_timesteps": DEFAULT_TIMESTEPS[env_name], **overrides}
  return PPOConfig(**kw)


# ----------------------------------------------------------------- network --

def _dense(key, n_in, n_out, scale):
  w = jax.nn.initializers.orthogonal(scale)(key, (n_in, n_out), jnp.float32)
  return {"w": w, "b": jnp.zeros((n_out,), jnp.float32)}


def init_network(key, obs_dim: int, num_actions: int, hidden: int):
  """Separate actor and critic MLPs (two tanh layers each).

  Orthogonal init with gain sqrt(2) in the hidden layers, 0.01 on the policy
  head (near-uniform first policy) and 1 on the value head.
  """
  ks = jax.random.split(key, 6)
  g = math.sqrt(2.0)
  actor = [_dense(ks[0], obs_dim, hidden, g), _dense(ks[1], hidden, hidden, g),
           _dense(ks[2], hidden, num_actions, 0.01)]
  critic = [_dense(ks[3], obs_dim, hidden, g), _dense(ks[4], hidden, hidden, g),
            _dense(ks[5], hidden, 1, 1.0)]
  return {"actor": actor, "critic": critic}


def _env_network(env, env_params, key, hidden: int):
  """:func:`init_network` sized for the environment's observations and
  actions."""
  obs_dim = int(np.prod(env.observation_space(env_params).shape))
  return init_network(key, obs_dim, env.num_actions, hidden)


def _keys(seed):
  """A run's keys: (network, environments, rollouts)."""
  return jax.random.split(jax.random.PRNGKey(seed), 3)


def initial_networks(env_name: str, seeds, hidden: int):
  """The networks :func:`train` starts from, one per seed, stacked.

  Built one seed at a time (``lax.map``), never batched. The orthogonal
  init is a LAPACK QR; batched (under ``vmap``), XLA's CPU runtime spreads
  the batch over its intra-op thread pool and waits for it, and two such QRs
  running at once on a 2-thread pool wait on each other forever (jaxlib
  0.10.2: ``run_rl`` hung in ``lapack_sgeqrf_ffi``). Pass the result to
  :func:`train` and :func:`untrained_returns` as ``params`` under ``vmap``.
  """
  env, env_params = make_env(env_name)
  one = lambda s: _env_network(env, env_params, _keys(s)[0], hidden)
  return jax.jit(lambda ss: jax.lax.map(one, ss))(
      jnp.asarray(seeds, jnp.int32))


def _mlp(layers, x):
  for layer in layers[:-1]:
    x = jnp.tanh(x @ layer["w"] + layer["b"])
  return x @ layers[-1]["w"] + layers[-1]["b"]


def apply_network(params, obs):
  """(action logits, state value) for a batch of observations."""
  return _mlp(params["actor"], obs), _mlp(params["critic"], obs)[..., 0]


# ---------------------------------------------------------------- rollouts --

class Rollout(NamedTuple):
  obs: jax.Array  # (T, N, obs_dim)
  action: jax.Array  # (T, N)
  log_prob: jax.Array
  value: jax.Array
  reward: jax.Array
  terminated: jax.Array
  done: jax.Array  # terminated or truncated: the episode ends here
  next_obs: jax.Array  # the true next observation (before any auto-reset)


class EnvCarry(NamedTuple):
  obs: jax.Array
  state: Any
  episode_return: jax.Array  # running return of each env's current episode


def make_env(env_name: str):
  env, env_params = gymnax.make(env_name)
  return env, env_params


def reset_envs(env, env_params, key, num_envs) -> EnvCarry:
  obs, state = jax.vmap(env.reset, in_axes=(0, None))(
      jax.random.split(key, num_envs), env_params)
  return EnvCarry(obs, state, jnp.zeros((num_envs,), jnp.float32))


def collect(env, env_params, params, carry: EnvCarry, key, num_steps):
  """``num_steps`` steps of every env under the current policy.

  Returns:
    ``(carry, rollout, (return_sum, episodes))``: the sum of the returns of
    the episodes that ended in this rollout and their count.
  """

  def step(carry, key):
    k_act, k_env = jax.random.split(key)
    logits, value = apply_network(params, carry.obs)
    action = jax.random.categorical(k_act, logits)
    log_prob = jax.nn.log_softmax(logits)[jnp.arange(action.shape[0]), action]
    n = carry.obs.shape[0]
    obs, state, reward, terminated, truncated, info = jax.vmap(
        env.step, in_axes=(0, 0, 0, None))(
            jax.random.split(k_env, n), carry.state, action, env_params)
    reward = reward.astype(jnp.float32)
    done = jnp.logical_or(terminated, truncated)
    ep = carry.episode_return + reward
    finished = (jnp.sum(jnp.where(done, ep, 0.0)),
                jnp.sum(done.astype(jnp.float32)))
    tr = Rollout(carry.obs, action, log_prob, value, reward,
                 terminated.astype(jnp.float32), done.astype(jnp.float32),
                 info["final_observation"])
    return EnvCarry(obs, state, jnp.where(done, 0.0, ep)), (tr, finished)

  carry, (rollout, (ret, count)) = jax.lax.scan(
      step, carry, jax.random.split(key, num_steps))
  return carry, rollout, (jnp.sum(ret), jnp.sum(count))


def gae(rollout: Rollout, next_value, gamma, lam):
  """Generalized advantage estimates and value targets, (T, N) each.

  ``next_value`` is V of the true next observation, so a step cut by the time
  limit still bootstraps; only a terminal step drops the bootstrap. The
  recursion stops at every episode end (terminal or truncated).
  """
  delta = (rollout.reward + gamma * (1.0 - rollout.terminated) * next_value
           - rollout.value)

  def back(adv_next, x):
    d, done = x
    adv = d + gamma * lam * (1.0 - done) * adv_next
    return adv, adv

  _, adv = jax.lax.scan(back, jnp.zeros_like(delta[0]), (delta, rollout.done),
                        reverse=True)
  return adv, adv + rollout.value


# -------------------------------------------------------------------- loss --

def ppo_loss(params, batch, cfg: PPOConfig):
  """The paper's objective as a loss: -L^CLIP + c1 L^VF - c2 S.

  Returns:
    ``(loss, aux)`` with the three terms in ``aux``.
  """
  obs, action, old_log_prob, adv, target = batch
  logits, value = apply_network(params, obs)
  log_p = jax.nn.log_softmax(logits)
  log_prob = jnp.take_along_axis(log_p, action[:, None], axis=1)[:, 0]
  ratio = jnp.exp(log_prob - old_log_prob)
  adv = (adv - adv.mean()) / (adv.std() + 1e-8)
  surrogate = jnp.minimum(
      ratio * adv, jnp.clip(ratio, 1 - cfg.clip_eps, 1 + cfg.clip_eps) * adv)
  policy_loss = -jnp.mean(surrogate)
  value_loss = jnp.mean((value - target) ** 2)
  entropy = -jnp.mean(jnp.sum(jnp.exp(log_p) * log_p, axis=-1))
  loss = policy_loss + cfg.vf_coef * value_loss - cfg.ent_coef * entropy
  return loss, {"policy": policy_loss, "value": value_loss,
                "entropy": entropy}


# ---------------------------------------------------------------- training --

TxFactory = Callable[[jax.Array], optax.GradientTransformation]
LrOf = Callable[[Any, jax.Array], jax.Array]


def constant_lr(opt_state, learning_rate):
  """``lr_of`` for a transformation that does not change its rate."""
  del opt_state
  return learning_rate


def train(env_name: str, make_tx: TxFactory, learning_rate, seed,
          cfg: PPOConfig, *, reward: bool = False,
          lr_of: LrOf = constant_lr, params=None):
  """One PPO training run; jittable and vmappable over ``learning_rate``/``seed``.

  Args:
    env_name: a gymnax environment id with discrete actions.
    make_tx: ``make_tx(learning_rate)`` gives the optimizer (clipping
      included); called once, with a possibly traced rate.
    learning_rate: the rate handed to ``make_tx``.
    seed: an int32 scalar; seeds the network and the environments.
    cfg: the PPO configuration.
    reward: also pass ``reward=`` (mean return of the episodes completed in
      the latest rollout, NaN when none) to the optimizer.
    lr_of: ``lr_of(opt_state, learning_rate)`` gives the applied LR, logged
      after each update.
    params: the network to start from (this seed's entry of
      :func:`initial_networks`, which see: pass it under ``vmap``); None
      draws it from ``seed`` here.

  Returns:
    A dict of per-update arrays (length ``cfg.num_updates``): ``return_sum``
    and ``episodes`` (completed episodes in that rollout), ``loss`` (mean
    minibatch loss), ``lr`` (applied LR after the update).
  """
  env, env_params = make_env(env_name)
  tx = optax.with_extra_args_support(make_tx(learning_rate))
  k_net, k_env, k_run = _keys(seed)
  if params is None:
    params = _env_network(env, env_params, k_net, cfg.hidden)
  opt_state = tx.init(params)
  envs = reset_envs(env, env_params, k_env, cfg.num_envs)

  def grad_step(carry, minibatch):
    params, opt_state, reward_now = carry
    (loss, _), grads = jax.value_and_grad(ppo_loss, has_aux=True)(
        params, minibatch, cfg)
    extra = {"reward": reward_now} if reward else {}
    updates, opt_state = tx.update(grads, opt_state, params, value=loss,
                                   **extra)
    params = optax.apply_updates(params, updates)
    return (params, opt_state, reward_now), loss

  def epoch(carry, key, batch):
    perm = jax.random.permutation(key, cfg.batch_size)
    shuffled = jax.tree.map(
        lambda x: x[perm].reshape((cfg.num_minibatches, cfg.minibatch_size)
                                  + x.shape[1:]), batch)
    return jax.lax.scan(grad_step, carry, shuffled)

  def iteration(carry, key):
    params, opt_state, envs = carry
    k_roll, k_epochs = jax.random.split(key)
    envs, ro, (ret_sum, episodes) = collect(env, env_params, params, envs,
                                            k_roll, cfg.num_steps)
    _, next_value = apply_network(params, ro.next_obs)
    adv, target = gae(ro, next_value, cfg.gamma, cfg.gae_lambda)
    flat = lambda x: x.reshape((cfg.batch_size,) + x.shape[2:])
    batch = (flat(ro.obs), flat(ro.action), flat(ro.log_prob), flat(adv),
             flat(target))
    reward_now = jnp.where(episodes > 0, ret_sum / jnp.maximum(episodes, 1.0),
                           jnp.nan)
    (params, opt_state, _), losses = jax.lax.scan(
        lambda c, k: epoch(c, k, batch), (params, opt_state, reward_now),
        jax.random.split(k_epochs, cfg.update_epochs))
    out = {"return_sum": ret_sum, "episodes": episodes,
           "loss": jnp.mean(losses),
           "lr": jnp.asarray(lr_of(opt_state, learning_rate), jnp.float32)}
    return (params, opt_state, envs), out

  _, out = jax.lax.scan(iteration, (params, opt_state, envs),
                        jax.random.split(k_run, cfg.num_updates))
  return out


def untrained_returns(env_name: str, seed, cfg: PPOConfig, num_rollouts: int,
                      params=None):
  """Returns of the untrained (initial, near-uniform) policy.

  Runs ``num_rollouts`` rollouts of the freshly initialized network, as
  :func:`train` would before its first update (``params``: as in
  :func:`train`).

  Returns:
    ``(return_sum, episodes)`` per rollout, arrays of length ``num_rollouts``.
  """
  env, env_params = make_env(env_name)
  k_net, k_env, k_run = _keys(seed)
  if params is None:
    params = _env_network(env, env_params, k_net, cfg.hidden)
  envs = reset_envs(env, env_params, k_env, cfg.num_envs)

  def body(envs, key):
    envs, _, finished = collect(env, env_params, params, envs, key,
                                cfg.num_steps)
    return envs, finished

  _, (ret, count) = jax.lax.scan(body, envs,
                                 jax.random.split(k_run, num_rollouts))
  return ret, count


def final_return(return_sum, episodes, fraction: float = 0.1):
  """Mean return of the episodes completed in the last ``fraction`` of updates.

  Args:
    return_sum: per-update sums of completed returns, shape (..., updates).
    episodes: per-update counts, same shape.
    fraction: the tail of training that is scored.

  Returns:
    An array of shape (...): NaN where no episode ended in the tail.
  """
  return_sum, episodes = np.asarray(return_sum), np.asarray(episodes)
  n = return_sum.shape[-1]
  tail = max(1, int(round(n * fraction)))
  s = return_sum[..., n - tail:].sum(-1)
  c = episodes[..., n - tail:].sum(-1)
  with np.errstate(invalid="ignore", divide="ignore"):
    return np.where(c > 0, s / np.maximum(c, 1), np.nan)
