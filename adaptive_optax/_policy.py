"""The controller's math: scalars in, scalars out, no optax plumbing.

One :class:`ControllerState` and one :func:`step` serve every front end
(``adaptive_scale``, ``adaptive_hyperparams``, ``simulate``). The state is a
fixed-shape pytree and every branch is a ``jnp.where``, so a step can be
jitted, scanned, vmapped over traced hyperparameters and replicated.

Two semantics share the statistics and differ in how decisions are applied:

* ``"reference"`` mirrors the seed's PyTorch ``AdaptiveScheduler.step`` line
  for line, including its compounding: variance damping and the cosine overlay
  are written back into the stored rate every step.
* ``"stable"`` keeps the stored rate for decisions (trend, reward, patience)
  only; variance damping and the cosine overlay modulate the *applied* rate.
  Trends are decided over windows of ``var_window`` losses, with a noise band,
  rather than from one noisy step.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

# The state's layout is declared once (_state.SCHEMA), and so are the
# hyperparameters with their defaults (_options.HYPERPARAMS).
from adaptive_optax import _stable
from adaptive_optax._options import Hyperparams
from adaptive_optax._state import Config
from adaptive_optax._state import ControllerState
from adaptive_optax._state import Fields
from adaptive_optax._state import MAX_COSINE_PERIOD
from adaptive_optax._state import MODES  # pylint: disable=unused-import
from adaptive_optax._state import check_config
from adaptive_optax._state import initial_fields
from adaptive_optax._state import pack

# Counters saturate here (a run of 2**31 steps must not wrap to negative).
_INT_MAX = 2**31 - 1
# The seed's guard against division by a zero previous loss.
_REL_EPS = 1e-12


def _wrap(i: jax.Array, size: int) -> jax.Array:
  """``i % size`` for ``0 <= i < 2 * size``, as a select (XLA fuses it)."""
  return jnp.where(i >= size, i - size, i)


def _sat_inc(x: jax.Array, by=1) -> jax.Array:
  return jnp.where(x >= _INT_MAX - by, _INT_MAX, x + by).astype(jnp.int32)


def window_stats(state: Fields | ControllerState):
  """Mean and unbiased variance of the valid part of the loss window."""
  w = state.loss_window
  n = state.window_fill
  mask = jnp.arange(w.shape[0]) < n
  nf = jnp.maximum(n, 1).astype(w.dtype)
  mean = jnp.sum(jnp.where(mask, w, 0)) / nf
  sq = jnp.sum(jnp.where(mask, (w - mean) ** 2, 0))
  var = jnp.where(n > 1, sq / jnp.maximum(n - 1, 1).astype(w.dtype), 0)
  # Losses near the dtype's limit square to inf; inf/inf would then be NaN.
  return mean, jnp.minimum(var, jnp.finfo(w.dtype).max)


def window_noise(state: Fields | ControllerState):
  """Mean and noise variance of the loss window, the trend taken out.

  Half the mean squared difference of consecutive losses estimates the noise
  variance whether or not the loss is trending, where the plain variance of
  a falling loss would mostly measure the fall.
  """
  w = state.loss_window
  size = w.shape[0]
  n = state.window_fill
  mean, _ = window_stats(state)
  idx = jnp.arange(size)
  age = state.window_pos - 1 - idx  # 0 = newest
  age = jnp.where(age < 0, age + size, age)  # a select fuses; % does not
  pair = age < n - 1  # this entry and the one written before it are valid
  d = w - jnp.roll(w, 1)  # w[i] - w[i - 1], wrapping
  sq = jnp.sum(jnp.where(pair, d * d, 0))
  var = jnp.where(n > 1, sq / (2 * jnp.maximum(n - 1, 1).astype(w.dtype)), 0)
  var = jnp.minimum(var, jnp.finfo(w.dtype).max)
  return mean, var


def init(
    hp: Hyperparams,
    cfg: Config,
    rate: jax.typing.ArrayLike,
    momentum: jax.typing.ArrayLike,
    dtype,
) -> ControllerState:
  """The state before any loss; in reference mode after the seed's first step.

  The torch scheduler base class calls ``step()`` once from its constructor
  with no metrics, which advances the cosine timer and clamps the bounds;
  reference mode reproduces that here.
  """
  state = initial_fields(hp, cfg, rate, momentum, dtype)
  if cfg.mode == "reference":
    state = _reference_step(hp, cfg, state, None, None)
    state = state._replace(num_steps=jnp.zeros((), jnp.int32))
  else:
    state = _finish(hp, cfg, state, state.stored_rate, state.applied_momentum)
  return pack(state, cfg)


def step(
    hp: Hyperparams,
    cfg: Config,
    state: ControllerState,
    loss: jax.typing.ArrayLike,
    reward: jax.typing.ArrayLike | None = None,
    align: jax.typing.ArrayLike | None = None,
) -> ControllerState:
  """Consumes one loss (and reward) and returns the next state.

  ``align``, stable mode: the cosine between the parameters' last two
  window displacements when one was measured at this step, else NaN; None
  where the caller does not see the parameters (see ``_stable.drift``).

  A non-finite loss is a step with no metrics (the seed's ``step()`` without
  ``step_loss``): statistics are left alone, timers still advance. A
  non-finite reward is a step with no reward.
  """
  check_config(state, cfg)
  dtype = state.stored_rate.dtype
  loss = jnp.asarray(loss).astype(dtype)
  reward = None if reward is None else jnp.asarray(reward).astype(dtype)
  if cfg.mode == "reference":
    return pack(_reference_step(hp, cfg, state.unpack(), loss, reward), cfg)
  align = None if align is None else jnp.asarray(align).astype(dtype)
  return pack(_stable_step(hp, cfg, state.unpack(), loss, reward, align), cfg)


# ---------------------------------------------------------------------------
# Shared statistics


def _observe(hp, cfg, state, loss, reward):
  """Updates EMAs and the loss window; returns (state, has_loss)."""
  dtype = state.stored_rate.dtype
  if loss is None:  # the seed's step() without metrics
    has_loss = skipped = jnp.asarray(False)
    loss = jnp.zeros((), dtype)
  else:
    has_loss = jnp.isfinite(loss)
    skipped = ~has_loss
  safe_loss = jnp.where(has_loss, loss, 0).astype(dtype)
  beta = jnp.asarray(hp.loss_beta, dtype)
  ema = jnp.where(
      state.has_loss_ema,
      beta * state.loss_ema + (1 - beta) * safe_loss,
      safe_loss,
  )
  w = cfg.var_window
  # A select rather than .at[].set: it fuses with its neighbours (one kernel
  # less per step on XLA:CPU).
  window = jnp.where(jnp.arange(w) == state.window_pos, safe_loss,
                     state.loss_window)
  state = state._replace(
      loss_ema=jnp.where(has_loss, ema, state.loss_ema),
      has_loss_ema=state.has_loss_ema | has_loss,
      loss_window=jnp.where(has_loss, window, state.loss_window),
      window_pos=jnp.where(has_loss, _wrap(state.window_pos + 1, w),
                           state.window_pos),
      window_fill=jnp.where(
          has_loss, jnp.minimum(state.window_fill + 1, w), state.window_fill
      ),
      num_nonfinite=jnp.where(
          skipped, _sat_inc(state.num_nonfinite), state.num_nonfinite),
  )

  if cfg.use_reward and reward is not None:
    has_reward = has_loss & jnp.isfinite(reward)
    safe_r = jnp.where(has_reward, reward, 0).astype(dtype)
    rbeta = jnp.asarray(hp.reward_beta, dtype)
    dev = safe_r - state.reward_ema
    r_ema = jnp.where(
        state.has_reward_ema,
        rbeta * state.reward_ema + (1 - rbeta) * safe_r,
        safe_r,
    )
    sq = jnp.where(
        state.has_reward_ema,
        rbeta * state.reward_sq_dev + (1 - rbeta) * dev * dev,
        0,
    )
    sq = jnp.minimum(sq, jnp.finfo(dtype).max)  # huge rewards: not inf forever
    state = state._replace(
        reward_ema=jnp.where(has_reward, r_ema, state.reward_ema),
        reward_sq_dev=jnp.where(has_reward, sq, state.reward_sq_dev),
        has_reward_ema=state.has_reward_ema | has_reward,
    )
  return state, has_loss


def _patience(hp, state, rate):
  """Big drop after ``patience`` steps without improvement, then cooldown."""
  in_cooldown = state.cooldown_left > 0
  drop = (~in_cooldown) & (state.steps_since_improve >= hp.patience)
  dtype = rate.dtype
  rate = jnp.where(drop, rate * jnp.asarray(hp.big_drop, dtype), rate)
  state = state._replace(
      cooldown_left=jnp.where(
          in_cooldown,
          state.cooldown_left - 1,
          jnp.where(drop, jnp.asarray(hp.cooldown).astype(jnp.int32),
                    state.cooldown_left),
      ).astype(jnp.int32),
      steps_since_improve=jnp.where(drop, 0, state.steps_since_improve).astype(
          jnp.int32),
  )
  return state, rate


def _cosine_factor(hp, state, dtype):
  """cos term in [0, 1] at the current timer; and the advanced timers."""
  t_i = jnp.maximum(state.cosine_period, 1)
  cos = 0.5 * (
      1 + jnp.cos(jnp.asarray(math.pi, dtype)
                  * (state.cosine_t.astype(dtype) / t_i.astype(dtype))))
  t_cur = state.cosine_t + 1
  restart = t_cur >= t_i
  grown = jnp.floor(t_i.astype(dtype) * jnp.asarray(hp.T_mult, dtype))
  grown = jnp.clip(grown, 1, MAX_COSINE_PERIOD).astype(jnp.int32)
  state = state._replace(
      cosine_t=jnp.where(restart, 0, t_cur).astype(jnp.int32),
      cosine_period=jnp.where(restart, grown, t_i).astype(jnp.int32),
  )
  return state, cos


def _finish(hp, cfg, state, applied, momentum):
  """Clamps the rates and momentum to their bounds."""
  dtype = state.stored_rate.dtype
  lo = jnp.asarray(hp.rate_min, dtype)
  hi = jnp.asarray(hp.rate_max, dtype)
  m = state.applied_momentum
  if cfg.has_momentum:
    m = jnp.clip(momentum, jnp.asarray(hp.momentum_min, dtype),
                 jnp.asarray(hp.momentum_max, dtype))
  return state._replace(
      stored_rate=jnp.clip(state.stored_rate, lo, hi),
      applied_rate=jnp.clip(applied, lo, hi),
      applied_momentum=m.astype(dtype),
  )


# ---------------------------------------------------------------------------
# Reference semantics: the seed's step(), line for line.


def _reference_step(hp, cfg, state, loss, reward):
  dtype = state.stored_rate.dtype
  c = lambda x: jnp.asarray(x, dtype)
  state, _ = _observe(hp, cfg, state, loss, reward)
  lr = state.stored_rate
  m = state.applied_momentum

  # improving is None until both prev_loss and loss_ema exist.
  known = state.has_prev_loss & state.has_loss_ema
  prev, cur = state.prev_loss, state.loss_ema
  rel_improve = (prev - cur) / (jnp.abs(prev) + _REL_EPS)
  improving = rel_improve > c(hp.min_rel_improve)
  up = known & improving
  down = known & ~improving
  _, variance = window_stats(state)

  # 2) trend nudge
  lr = jnp.where(up, lr * c(hp.up_factor),
                 jnp.where(down, lr * c(hp.down_factor), lr))
  ssi = jnp.where(up, 0, jnp.where(down, _sat_inc(state.steps_since_improve),
                                   state.steps_since_improve))
  state = state._replace(steps_since_improve=ssi.astype(jnp.int32))

  # 3) variance damping, written back (this is what compounds)
  lr = lr / (c(hp.var_damp_base) + c(hp.var_damp_scale) * variance)

  # 4) reward shaping, also on steps without a new reward (as the seed does)
  if cfg.use_reward:
    active = state.has_reward_ema
    decide = active & state.has_prev_reward
    better = state.reward_ema > state.prev_reward
    lr = jnp.where(decide, jnp.where(better, lr * c(hp.reward_up),
                                     lr * c(hp.reward_down)), lr)
    if cfg.has_momentum:
      m_up = jnp.minimum(c(hp.momentum_max), m + c(hp.momentum_up))
      m_down = jnp.maximum(c(hp.momentum_min), m * c(hp.momentum_down))
      m = jnp.where(decide, jnp.where(better, m_up, m_down), m)
    state = state._replace(
        prev_reward=jnp.where(active, state.reward_ema, state.prev_reward),
        has_prev_reward=state.has_prev_reward | active,
    )

  # 5) patience + cooldown
  state, lr = _patience(hp, state, lr)

  # 6) cosine overlay, written back
  if cfg.use_cosine:
    eta_max = lr
    eta_min = jnp.maximum(c(hp.rate_min), c(hp.eta_min_scale) * eta_max)
    state, cos = _cosine_factor(hp, state, dtype)
    lr = eta_min + (eta_max - eta_min) * cos

  # 7) clamps
  lr = jnp.clip(lr, c(hp.rate_min), c(hp.rate_max))
  state = state._replace(
      stored_rate=lr,
      prev_loss=jnp.where(state.has_loss_ema, state.loss_ema, state.prev_loss),
      has_prev_loss=state.has_prev_loss | state.has_loss_ema,
      num_steps=_sat_inc(state.num_steps),
  )
  return _finish(hp, cfg, state, lr, m)


# ---------------------------------------------------------------------------
# Stable semantics.


def reads_alignment(cfg: Config) -> bool:
  """Whether the drift rule runs: stable mode, not switched off, and no
  cosine overlay (its applied rate swings 10x within a period: a
  displacement measured at its trough says nothing of its peak)."""
  return (cfg.mode == "stable" and "drift" in cfg.rules
          and not cfg.use_cosine)


def _stable_step(hp, cfg, state, loss, reward, align=None):
  """One step of the stable policy: the rules of ``_stable``, in order."""
  dtype = state.stored_rate.dtype
  c = lambda x: jnp.asarray(x, dtype)
  w = cfg.var_window
  rules = cfg.rules
  before = state
  state, has_loss = _observe(hp, cfg, state, loss, reward)
  rate = state.stored_rate
  m = state.applied_momentum
  # With a reward, the loss is no measure of progress (a policy-gradient
  # loss grows with the returns): the loss's guards act only while the
  # reward is falling too, as it does when training diverges.
  guards_off = (
      ~(state.has_prev_reward & (state.reward_ema < state.prev_reward))
      if cfg.use_reward else jnp.zeros((), bool))
  # A non-finite loss after finite ones is the loudest spike of all.
  nonfinite = before.has_loss_ema & ~jnp.isfinite(loss)

  # A spike damps its own step and leaves the window, which restarts after
  # it, so it inflates neither the noise band nor the next decision; it also
  # stops the warm-up, and a run of three cuts the rate (explosion).
  step_factor = c(1.0)
  is_spike = jnp.zeros((), bool)
  sign_age, has_level = _stable.level(cfg, before, loss, has_loss)
  state = state._replace(sign_age=sign_age)
  if "spike" in rules:
    is_spike, step_factor = _stable.spike(hp, before, loss, has_loss,
                                          has_level, c)
    zero = jnp.zeros((), jnp.int32)
    state = state._replace(
        loss_window=jnp.where(is_spike, before.loss_window, state.loss_window),
        window_fill=jnp.where(is_spike, zero, state.window_fill),
        window_pos=jnp.where(is_spike, zero, state.window_pos),
    )
  seen = has_loss
  has_loss = has_loss & ~is_spike
  state = state._replace(window_steps=jnp.where(
      is_spike, 0, jnp.where(has_loss, state.window_steps + 1,
                             state.window_steps)).astype(jnp.int32))
  mean, var = window_noise(state)
  ev = _stable.evidence(hp, cfg, state, has_loss, mean, var, c)
  if "spike" in rules:
    # With a reward, only non-finite losses count, whatever the reward does:
    # a policy-gradient loss spikes for a whole rollout's minibatches at
    # once (one hard rollout, a run of spikes, while the return dips), which
    # cut the rate ~1e-6-fold late in PPO on CartPole.
    burst = nonfinite if cfg.use_reward else is_spike | nonfinite
    before_cut = rate
    began = burst & (state.spikes == 0)
    state, rate = _stable.explosion(hp, state, ev, burst, seen, loss, rate, c)
    state = _stable.mark_ceiling(hp, state, before_cut, rate, c)
    state, rate = _stable.spike_trial(hp, cfg, state, rate < before_cut,
                                      began, rate, c)
    state = state._replace(cut_since=state.cut_since | (rate < before_cut))

  end_probe = jnp.zeros((), bool)
  if "probe" in rules and not cfg.use_reward and "warmup" in rules:
    warm, stopped = _stable.warmup(hp, cfg, state.warmup, loss, before,
                                   is_spike, nonfinite, c)
    # The warm-up stops there, cut by the spike (a non-finite loss: halved);
    # the probe then goes on from there, back to the given rate at least if
    # the loss gives no evidence either way.
    cut = jnp.where(nonfinite, c(hp.big_drop), step_factor)
    rate = jnp.where(stopped, rate * state.warmup * cut, rate)
    state = state._replace(warmup=warm, cut_since=state.cut_since | stopped)
  if "probe" in rules and not cfg.use_reward:
    state, rate, end_probe = _stable.probe(hp, cfg, state, ev, rate,
                                           is_spike, c)
  if "runaway" in rules:
    before_cut = rate
    state, rate, _ = _stable.runaway(hp, state, ev, rate, c, guards_off)
    state = _stable.mark_ceiling(hp, state, before_cut, rate, c)
  # With a reward, the reward's trend is the evidence of progress: the loss
  # only guards (above).
  trend = _stable.reward_evidence(hp, state, ev, c) if cfg.use_reward else ev
  if cfg.use_reward and "reward" in rules:
    state, rate, m = _stable.reward(hp, state, trend, rate, m,
                                    cfg.has_momentum, c)

  if align is not None and reads_alignment(cfg):
    # Not in the horizon's final decay: a displacement measured at a
    # decayed rate says nothing of the rate it would grow.
    decaying = _stable.horizon_factor(hp, before.num_steps, dtype) < 1
    state, rate, _ = _stable.drift(
        hp, state, trend, jnp.where(decaying, jnp.nan, align), rate, c,
        streak=cfg.use_reward)
  if cfg.use_reward:
    state = _stable.snap_reward(state, ev)

  ssi = jnp.where(
      ev.better | state.probing, 0,
      jnp.where(ev.known, _sat_inc(state.steps_since_improve, w),
                state.steps_since_improve))
  state = state._replace(
      steps_since_improve=ssi.astype(jnp.int32),
      window_steps=jnp.where(ev.decide, 0, state.window_steps).astype(
          jnp.int32),
      prev_window_mean=jnp.where(ev.decide, mean, state.prev_window_mean),
      prev_window_var=jnp.where(ev.decide, var, state.prev_window_var),
      has_prev_window=state.has_prev_window | ev.decide,
      window_noise_var=var,
  )
  if "patience" in rules and not cfg.use_reward:
    state, rate = _stable.patience(hp, cfg, state, ev, rate, end_probe, c)

  # The window rules have read it: a guard's cut counts for one window.
  state = state._replace(cut_since=state.cut_since & ~ev.decide)
  rel_var = var / (mean * mean + _REL_EPS)
  rel_var = jnp.where((state.window_fill > 1) & has_level, rel_var, 0)
  applied = _stable.modulate(hp, cfg, rate, rel_var, step_factor,
                             before.num_steps, c)
  if cfg.use_cosine:
    state, cos = _cosine_factor(hp, state, dtype)
    applied = applied * _stable.cosine_overlay(hp, cos, state.probing, c)
  # Cautious start: the first update uses the rate as given; from the
  # second on, the warm-up factor (a modulation, never written back) starts
  # at start_scale and reaches 1 after one window.
  first = before.num_steps == 0
  g = c(hp.probe_growth)
  warming = (state.probing & ("probe" in rules) & ("warmup" in rules)
             & (not cfg.use_reward))
  warm = jnp.where(first & warming, jnp.minimum(c(hp.start_scale) * g, 1),
                   state.warmup)
  rate = jnp.where(first & warming, rate / g, rate)
  applied = applied * jnp.where(first, 1, state.warmup)
  state = state._replace(stored_rate=rate, warmup=warm.astype(dtype),
                         num_steps=_sat_inc(state.num_steps))
  return _finish(hp, cfg, state, applied, m)
