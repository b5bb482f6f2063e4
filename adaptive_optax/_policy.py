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

import dataclasses
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

MODES = ("stable", "reference")

# Restart periods saturate here instead of overflowing int32 (T_i *= T_mult).
MAX_COSINE_PERIOD = 2**30
# Counters saturate here (a run of 2**31 steps must not wrap to negative).
_INT_MAX = 2**31 - 1
# The seed's guard against division by a zero previous loss.
_REL_EPS = 1e-12


class Hyperparams(NamedTuple):
  """Numeric hyperparameters; each may be a Python number or a traced array."""

  loss_beta: jax.typing.ArrayLike
  reward_beta: jax.typing.ArrayLike
  up_factor: jax.typing.ArrayLike
  down_factor: jax.typing.ArrayLike
  min_rel_improve: jax.typing.ArrayLike
  var_damp_base: jax.typing.ArrayLike
  var_damp_scale: jax.typing.ArrayLike
  reward_up: jax.typing.ArrayLike
  reward_down: jax.typing.ArrayLike
  momentum_up: jax.typing.ArrayLike
  momentum_down: jax.typing.ArrayLike
  patience: jax.typing.ArrayLike
  big_drop: jax.typing.ArrayLike
  cooldown: jax.typing.ArrayLike
  T0: jax.typing.ArrayLike
  T_mult: jax.typing.ArrayLike
  eta_min_scale: jax.typing.ArrayLike
  rate_min: jax.typing.ArrayLike  # lr_min, or min_scale for adaptive_scale
  rate_max: jax.typing.ArrayLike  # lr_max, or max_scale for adaptive_scale
  momentum_min: jax.typing.ArrayLike
  momentum_max: jax.typing.ArrayLike
  # Stable mode only (reference mode ignores them).
  probe_growth: jax.typing.ArrayLike = 2.0
  guard_ratio: jax.typing.ArrayLike = 2.0
  guard_sigma: jax.typing.ArrayLike = 4.0
  cooldown_ratio: jax.typing.ArrayLike = 1.0
  start_scale: jax.typing.ArrayLike = 0.1


@dataclasses.dataclass(frozen=True)
class Config:
  """Static switches: they change the program, so they cannot be traced."""

  mode: str = "stable"
  var_window: int = 20
  use_reward: bool = False
  use_cosine: bool = False
  has_momentum: bool = False


class Fields(NamedTuple):
  """The controller's state, one field per quantity: what the math works on.

  Stored packed as a :class:`ControllerState`; see :func:`pack`.
  """

  stored_rate: jax.Array  # (), float: LR (or scale) as moved by decisions.
  applied_rate: jax.Array  # (), float: LR (or scale) used for the next update.
  applied_momentum: jax.Array  # (), float: momentum for the next update.
  loss_ema: jax.Array  # (), float: EMA of finite losses.
  has_loss_ema: jax.Array  # (), bool: a finite loss has been seen.
  prev_loss: jax.Array  # (), float: loss_ema at the end of the last step.
  has_prev_loss: jax.Array  # (), bool: prev_loss is set.
  loss_window: jax.Array  # (var_window,), float: ring buffer of raw losses.
  window_fill: jax.Array  # (), int32: valid entries in loss_window (<= W).
  window_pos: jax.Array  # (), int32: next write index in loss_window.
  reward_ema: jax.Array  # (), float: EMA of finite rewards.
  has_reward_ema: jax.Array  # (), bool: a finite reward has been seen.
  prev_reward: jax.Array  # (), float: reward EMA at the last reward decision.
  has_prev_reward: jax.Array  # (), bool: prev_reward is set.
  reward_sq_dev: jax.Array  # (), float: EMA of squared reward deviations.
  steps_since_improve: jax.Array  # (), int32: steps without an improvement.
  cooldown_left: jax.Array  # (), int32: steps before patience may drop again.
  cosine_t: jax.Array  # (), int32: steps into the current cosine period.
  cosine_period: jax.Array  # (), int32: length of the current cosine period.
  window_steps: jax.Array  # (), int32: finite losses since the last decision.
  prev_window_mean: jax.Array  # (), float: mean of the last decided window.
  prev_window_var: jax.Array  # (), float: variance of the last decided window.
  has_prev_window: jax.Array  # (), bool: a window has been decided.
  window_noise_var: jax.Array  # (), float: window_noise of loss_window as
  # the last step left it (stable mode's spike guard reads it: no re-reduce).
  num_steps: jax.Array  # (), int32: updates seen (saturating).
  num_nonfinite: jax.Array  # (), int32: non-finite losses skipped.
  probing: jax.Array  # (), bool: stable start-up probe still growing the rate.
  warmup: jax.Array  # (), float: stable cautious-start factor of the applied
  # rate, < 1 only while the probe is below the given rate.
  given_rate: jax.Array  # (), float: stable: the rate given at init.
  plateau_ref: jax.Array  # (), float: stable: window mean at the start of the
  # current patience period, which the next patience check must beat.



# Scalar fields packed into ControllerState.stats (float, then the window) and
# ControllerState.counters (int32; booleans as 0/1). A jitted call pays per
# leaf of its arguments and results, and per kernel that writes one: two dozen
# scalar leaves cost more than the controller's arithmetic.
_FLOATS = ("applied_momentum", "loss_ema", "prev_loss", "reward_ema",
           "prev_reward", "reward_sq_dev", "prev_window_mean",
           "prev_window_var", "warmup", "window_noise_var", "given_rate",
           "plateau_ref")
_INTS = ("window_fill", "window_pos", "steps_since_improve", "cooldown_left",
         "cosine_t", "cosine_period", "window_steps", "num_steps",
         "num_nonfinite")
_BOOLS = ("has_loss_ema", "has_prev_loss", "has_reward_ema",
          "has_prev_reward", "has_prev_window", "probing")
_COUNTERS = _INTS + _BOOLS


def _view(name: str):
  """A read-only property: ``name``'s slot in ``stats`` or ``counters``."""
  if name in _FLOATS:
    vector, i, is_bool = "stats", _FLOATS.index(name), False
  else:
    vector, i, is_bool = "counters", _COUNTERS.index(name), name in _BOOLS
  def get(self):
    x = getattr(self, vector)[..., i]
    return x != 0 if is_bool else x
  get.__doc__ = f"``{vector}[..., {i}]``: see :class:`Fields`."
  return property(get)


class ControllerState(NamedTuple):
  """The controller's state: four leaves, whatever policies are on.

  ``applied_rate`` and ``stored_rate`` are fields, with names distinct from
  other optax states' (``scale``, ``count``...), so
  ``optax.tree.get(state, "applied_rate")`` finds ours. The other quantities
  of :class:`Fields` are packed into ``stats`` and ``counters`` and read by
  name (``state.loss_ema``, ``state.loss_window``...); the views index the
  last axis, so they also read stacked states (vmap, pmap). :meth:`replace`
  sets them by name.
  """

  stored_rate: jax.Array  # (), float: LR (or scale) as moved by decisions.
  applied_rate: jax.Array  # (), float: LR (or scale) used for the next update.
  stats: jax.Array  # (12 + var_window,), float: _FLOATS, then loss_window.
  counters: jax.Array  # (15,), int32: _INTS, then _BOOLS as 0/1.

  applied_momentum = _view("applied_momentum")
  loss_ema = _view("loss_ema")
  prev_loss = _view("prev_loss")
  reward_ema = _view("reward_ema")
  prev_reward = _view("prev_reward")
  reward_sq_dev = _view("reward_sq_dev")
  prev_window_mean = _view("prev_window_mean")
  prev_window_var = _view("prev_window_var")
  warmup = _view("warmup")
  window_noise_var = _view("window_noise_var")
  given_rate = _view("given_rate")
  plateau_ref = _view("plateau_ref")
  loss_window = property(lambda self: self.stats[..., len(_FLOATS):],
                         doc="``stats[..., 12:]``: see :class:`Fields`.")
  window_fill = _view("window_fill")
  window_pos = _view("window_pos")
  steps_since_improve = _view("steps_since_improve")
  cooldown_left = _view("cooldown_left")
  cosine_t = _view("cosine_t")
  cosine_period = _view("cosine_period")
  window_steps = _view("window_steps")
  num_steps = _view("num_steps")
  num_nonfinite = _view("num_nonfinite")
  has_loss_ema = _view("has_loss_ema")
  has_prev_loss = _view("has_prev_loss")
  has_reward_ema = _view("has_reward_ema")
  has_prev_reward = _view("has_prev_reward")
  has_prev_window = _view("has_prev_window")
  probing = _view("probing")

  def unpack(self) -> Fields:
    """The state as one field per quantity."""
    return Fields(**{k: getattr(self, k) for k in Fields._fields})

  def replace(self, **fields) -> ControllerState:
    """A copy with the named :class:`Fields` set (unbatched states only)."""
    return pack(self.unpack()._replace(**fields))


def _assemble(parts, dtype) -> jax.Array:
  """``concatenate(parts)`` as one elementwise select over an index vector.

  XLA:CPU computes each operand of a concatenate in a kernel of its own; a
  chain of selects fuses into one kernel that writes the whole vector.
  """
  sizes = [max(1, p.size) for p in parts]
  idx = jax.lax.iota(jnp.int32, sum(sizes))
  out = jnp.zeros(sum(sizes), dtype)
  start = 0
  for p, size in zip(parts, sizes):
    if p.ndim == 0:
      out = jnp.where(idx == start, p, out)
    else:  # a vector: gather it at the shifted index
      out = jnp.where((idx >= start) & (idx < start + size),
                      p[jnp.clip(idx - start, 0, size - 1)], out)
    start += size
  return out


def pack(fields: Fields) -> ControllerState:
  """Packs the scalar fields into two vectors (see ``ControllerState``)."""
  dtype = fields.stored_rate.dtype
  stats = _assemble([jnp.asarray(getattr(fields, k), dtype) for k in _FLOATS]
                    + [fields.loss_window.astype(dtype)], dtype)
  counters = _assemble([jnp.asarray(getattr(fields, k)).astype(jnp.int32)
                        for k in _COUNTERS], jnp.int32)
  return ControllerState(stored_rate=fields.stored_rate,
                         applied_rate=fields.applied_rate,
                         stats=stats, counters=counters)


def _wrap(i: jax.Array, size: int) -> jax.Array:
  """``i % size`` for ``0 <= i < 2 * size``, as a select (XLA fuses it)."""
  return jnp.where(i >= size, i - size, i)


def _beyond(x, k, var, floor=0.0):
  """``x > max(k * sqrt(var), floor)``, squared: no sqrt kernel per test."""
  return (x > floor) & (x >= 0) & (x * x > k * k * var)


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
  f = lambda x: jnp.asarray(x, dtype)
  i = lambda x: jnp.asarray(x, jnp.int32)
  b = lambda x: jnp.asarray(x, bool)
  state = Fields(
      stored_rate=f(rate),
      applied_rate=f(rate),
      applied_momentum=f(momentum),
      loss_ema=f(0.0),
      has_loss_ema=b(False),
      prev_loss=f(0.0),
      has_prev_loss=b(False),
      loss_window=jnp.zeros((cfg.var_window,), dtype),
      window_fill=i(0),
      window_pos=i(0),
      reward_ema=f(0.0),
      has_reward_ema=b(False),
      prev_reward=f(0.0),
      has_prev_reward=b(False),
      reward_sq_dev=f(0.0),
      steps_since_improve=i(0),
      cooldown_left=i(0),
      cosine_t=i(0),
      cosine_period=i(jnp.clip(jnp.asarray(hp.T0), 1, MAX_COSINE_PERIOD)),
      window_steps=i(0),
      prev_window_mean=f(0.0),
      prev_window_var=f(0.0),
      has_prev_window=b(False),
      window_noise_var=f(0.0),
      num_steps=i(0),
      num_nonfinite=i(0),
      probing=b(cfg.mode == "stable"),
      warmup=f(1.0),
      given_rate=f(rate),
      plateau_ref=f(0.0),
  )
  if cfg.mode == "reference":
    state = _reference_step(hp, cfg, state, None, None)
    state = state._replace(num_steps=i(0))
  else:
    state = _finish(hp, cfg, state, state.stored_rate, state.applied_momentum)
  return pack(state)


def step(
    hp: Hyperparams,
    cfg: Config,
    state: ControllerState,
    loss: jax.typing.ArrayLike,
    reward: jax.typing.ArrayLike | None = None,
) -> ControllerState:
  """Consumes one loss (and reward) and returns the next state.

  A non-finite loss is a step with no metrics (the seed's ``step()`` without
  ``step_loss``): statistics are left alone, timers still advance. A
  non-finite reward is a step with no reward.
  """
  dtype = state.stored_rate.dtype
  loss = jnp.asarray(loss).astype(dtype)
  reward = None if reward is None else jnp.asarray(reward).astype(dtype)
  policy = _reference_step if cfg.mode == "reference" else _stable_step
  return pack(policy(hp, cfg, state.unpack(), loss, reward))


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


def _stable_step(hp, cfg, state, loss, reward):
  dtype = state.stored_rate.dtype
  c = lambda x: jnp.asarray(x, dtype)
  w = cfg.var_window
  before = state
  state, has_loss = _observe(hp, cfg, state, loss, reward)
  # While the cautious start holds it below the given rate, the probe works
  # on the effective rate; it is split back into stored rate and warm-up
  # factor at the end of the step.
  rate = state.stored_rate * state.warmup
  m = state.applied_momentum

  # Spike guard, every step: a loss far above the EMA of the losses before it
  # (relatively, and against the window's noise) cuts the rate in proportion
  # to the spike, before this step's update is applied. Divergence shows as
  # such spikes within a few steps, long before a window trend would.
  # The spike leaves the window, which restarts after it, so it inflates
  # neither the noise band nor the next trend decision.
  noise_var = jnp.maximum(before.window_noise_var, before.prev_window_var)
  ref = jnp.abs(before.loss_ema)
  excess = jnp.where(has_loss, loss, 0).astype(dtype) - before.loss_ema
  spike = (has_loss & before.has_loss_ema
           & _beyond(excess, c(hp.guard_sigma), noise_var,
                     (c(hp.guard_ratio) - 1) * ref))
  cut = ref / (ref + jnp.maximum(excess, 0) + _REL_EPS)
  # While probing, a spike is the rate being too high: it cuts the stored
  # rate. Afterwards an isolated bad batch is likelier (heavy-tailed losses
  # near the floor), so it only damps its own step; a lasting rise is left
  # to the window trend.
  rate = jnp.where(spike & state.probing, rate * cut, rate)
  step_damp = jnp.where(spike & ~state.probing, cut, 1)
  zero = jnp.zeros((), jnp.int32)
  state = state._replace(
      loss_window=jnp.where(spike, before.loss_window, state.loss_window),
      window_fill=jnp.where(spike, zero, state.window_fill),
      window_pos=jnp.where(spike, zero, state.window_pos),
  )
  has_loss = has_loss & ~spike

  # Trend: once per window of W finite losses, compare the window's mean with
  # the previous window's, and act only outside a noise band of two standard
  # errors. A plateau inside the band counts towards patience. Noise here
  # and in the damping below is the detrended variance (window_noise).
  window_steps = jnp.where(spike, 0, jnp.where(
      has_loss, state.window_steps + 1, state.window_steps))
  decide = has_loss & (window_steps >= w)
  mean, var = window_noise(state)
  known = decide & state.has_prev_window
  prev_mean = state.prev_window_mean
  diff = prev_mean - mean
  # Outside the band max(2 standard errors, min_rel_improve * |mean|):
  se_var = (var + state.prev_window_var) / w
  floor = c(hp.min_rel_improve) * jnp.abs(prev_mean)
  up = known & _beyond(diff, 2, se_var, floor)
  down = known & _beyond(-diff, 2, se_var, floor)

  # Start-up probe: the rate grows by probe_growth per window while the loss
  # improves beyond the noise band, so a start 100x too low recovers in ~10
  # windows, and by its square root after a window inside the band: near the
  # edge of stability the loss stops improving, and the smaller step halves
  # the overshoot past the last rate that helped. A window worse by one band
  # holds it; a spike (already cut above) or a window worse by two bands
  # (the decision is irreversible) ends it, then
  # falling back to a quarter of the last rate that did not hurt: the best
  # rate is typically a few times below the edge of stability.
  probing = state.probing
  # Below the given rate (warm-up < 1) only a spike ends the probe: the
  # user's rate is evidence too, and a worse window there is likelier noise.
  worse = (probing & known & (state.warmup >= 1)
           & _beyond(-diff, 4, se_var, 2 * floor))  # two bands: irreversible
  end_probe = worse | (probing & spike)
  grow = probing & known & ~down & ~end_probe  # weak evidence: hold
  growth = c(hp.probe_growth)
  rate = jnp.where(grow, rate * jnp.where(up, growth, jnp.sqrt(growth)),
                   jnp.where(worse, rate / (growth * growth), rate))
  # The seed's trend rule: up at any time (the probe's growth comes on top);
  # down only after the probe, where a worse window holds it instead.
  steady = ~probing
  rate = jnp.where(up, rate * c(hp.up_factor),
                   jnp.where(steady & down, rate * c(hp.down_factor), rate))
  ssi = jnp.where(
      up | probing, 0,
      jnp.where(known, _sat_inc(state.steps_since_improve, w),
                state.steps_since_improve))
  state = state._replace(
      steps_since_improve=ssi.astype(jnp.int32),
      window_steps=jnp.where(decide, 0, window_steps).astype(jnp.int32),
      prev_window_mean=jnp.where(decide, mean, state.prev_window_mean),
      prev_window_var=jnp.where(decide, var, state.prev_window_var),
      has_prev_window=state.has_prev_window | decide,
      window_noise_var=var,
      probing=probing & ~end_probe,
  )

  # Reward: at the same decision points, the reward EMA's change against its
  # own noise (the EMA's standard deviation).
  if cfg.use_reward:
    rbeta = c(hp.reward_beta)
    r_var = state.reward_sq_dev * (1 - rbeta) / (1 + rbeta)  # the EMA's
    r_known = decide & state.has_reward_ema & state.has_prev_reward
    r_diff = state.reward_ema - state.prev_reward
    better = r_known & _beyond(r_diff, 2, r_var)
    worse = r_known & _beyond(-r_diff, 2, r_var)
    rate = jnp.where(better, rate * c(hp.reward_up),
                     jnp.where(worse, rate * c(hp.reward_down), rate))
    if cfg.has_momentum:
      m = jnp.where(better, jnp.minimum(c(hp.momentum_max), m + c(hp.momentum_up)),
                    jnp.where(worse, jnp.maximum(c(hp.momentum_min),
                                                 m * c(hp.momentum_down)), m))
    snap = decide & state.has_reward_ema
    state = state._replace(
        prev_reward=jnp.where(snap, state.reward_ema, state.prev_reward),
        has_prev_reward=state.has_prev_reward | snap,
    )

  # Patience, checked every step. A check is due after `patience` steps
  # without an improving window, once no cooldown runs. Above the given rate
  # it drops the rate (the probe's edge of stability is typically above the
  # best rate). At or below the given rate it drops only when the loss has
  # stalled over the whole period since the last check: the last window's
  # mean is not below the period's starting level by the noise band and by
  # the drop's own factor (a drop by big_drop lowers a noise-limited loss by
  # at most that factor; a loss that fell further without one is not held up
  # by the rate). Either way a new period starts, lasting at least
  # cooldown_ratio times the steps so far: checks (and drops) get rarer as
  # training goes on, the rate decaying no faster than a power of 1/t,
  # whatever the run's length. The probe's end is a cut too: it starts the
  # first period.
  in_cooldown = state.cooldown_left > 0
  check = ~in_cooldown & (state.steps_since_improve >= hp.patience)
  last = jnp.where(state.has_prev_window, state.prev_window_mean,
                   before.loss_ema)
  ref = state.plateau_ref
  rel = jnp.maximum(c(hp.min_rel_improve), 1 - c(hp.big_drop))
  progress = (_beyond(ref - last, 2, 2 * state.prev_window_var / w,
                      rel * jnp.abs(ref))
              & (rate <= state.given_rate))
  rate = jnp.where(check & ~progress, rate * c(hp.big_drop), rate)
  period = check | end_probe
  relative = jnp.floor(c(hp.cooldown_ratio) * state.num_steps.astype(dtype))
  relative = jnp.minimum(relative, c(_INT_MAX - 1)).astype(jnp.int32)
  length = jnp.maximum(jnp.asarray(hp.cooldown).astype(jnp.int32), relative)
  state = state._replace(
      cooldown_left=jnp.where(
          period, length,
          jnp.where(in_cooldown, state.cooldown_left - 1, state.cooldown_left),
      ).astype(jnp.int32),
      steps_since_improve=jnp.where(
          period, 0, state.steps_since_improve).astype(jnp.int32),
      plateau_ref=jnp.where(period, last, ref),
  )

  # Modulations of the applied rate only: never written back.
  rel_var = var / (mean * mean + _REL_EPS)
  rel_var = jnp.where(state.window_fill > 1, rel_var, 0)
  applied = rate / (c(hp.var_damp_base) + c(hp.var_damp_scale) * rel_var)
  applied = applied * step_damp
  if cfg.use_cosine:
    state, cos = _cosine_factor(hp, state, dtype)
    floor = c(hp.eta_min_scale)
    applied = applied * (floor + (1 - floor) * cos)
  # Cautious start: the first update uses the rate as given (one step of the
  # wrapped optimizer, unchanged); from the second on, the probe grows the
  # rate from start_scale times it, before a too-high rate compounds. Like
  # the other modulations it is a factor of the applied rate: the stored
  # rate only moves below the given one by a decision (the probe's end).
  probing = state.probing
  stored = jnp.where(probing, jnp.maximum(before.stored_rate, rate), rate)
  warm = jnp.where(probing, rate / jnp.maximum(stored, _REL_EPS), 1)
  first = before.num_steps == 0
  state = state._replace(
      stored_rate=stored,
      warmup=jnp.where(first, c(hp.start_scale), warm).astype(dtype),
      num_steps=_sat_inc(state.num_steps))
  return _finish(hp, cfg, state, applied, m)
