"""The stable policy, one rule per function.

Every rule reads the same evidence: the per-step loss and, once per window of
``W = var_window`` finite losses, a comparison of the window's mean with the
previous window's against a noise band (:class:`Evidence`). A rule that moves
the rate does so only on evidence whose false-alarm rate on a trendless loss
is stated in its docstring (and checked in ``tests/test_null_evidence.py``):

* :func:`probe` -- the start-up search: grow the rate while the loss falls
  faster after each growth; revert the last growth that did not pay.
* :func:`runaway` -- a loss that keeps rising far above its lowest level cuts
  the rate, however slowly it rises.
* :func:`spike` -- one loss far above the recent level damps that step alone.
* :func:`reward` -- with ``use_reward=True`` the reward's trend, not the
  loss's, nudges the rate.
* :func:`patience` -- a stalled loss halves the rate on trial: the drop is
  undone when the loss did not fall after it.
* :func:`modulate` -- the seed's variance damping, the cosine overlay and the
  horizon's final decay, applied to the applied rate only.

Each rule can be switched off (``Config.rules``) for the ablation in
``benchmarks/quality.py``. The functions work on the unpacked
:class:`adaptive_optax._policy.Fields`; ``rate`` is the decided rate.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

RULES = ("probe", "runaway", "spike", "reward", "patience", "damping")
# Significant: beyond two standard errors (a one-sided false-alarm rate of
# 2.3% per decision on Gaussian window means).
_Z = 2.0
_EPS = 1e-12


def _beyond(x, k, var, floor=0.0):
  """``x > max(k * sqrt(var), floor)``, squared: no sqrt kernel per test."""
  return (x > floor) & (x >= 0) & (x * x > k * k * var)


class Evidence(NamedTuple):
  """What one step tells the rules."""

  decide: jax.Array  # bool: a window of W finite losses closed at this step.
  known: jax.Array  # bool: decide, and a previous window exists to compare.
  mean: jax.Array  # this window's mean loss.
  var: jax.Array  # this window's detrended noise variance (per loss).
  gain: jax.Array  # previous window's mean minus this one's (> 0: better).
  better: jax.Array  # bool: known and gain beyond the noise band.
  worse: jax.Array  # bool: known and -gain beyond the noise band.


def evidence(hp, cfg, state, has_loss, mean, var, c) -> Evidence:
  """Compares the closing window with the previous one.

  The band is two standard errors of the difference of two window means,
  ``2 sqrt((var + prev_var) / W)``, and at least ``min_rel_improve`` of the
  previous mean, so round-off on a flat loss is no evidence.
  """
  w = cfg.var_window
  decide = has_loss & (state.window_steps >= w)
  known = decide & state.has_prev_window
  gain = state.prev_window_mean - mean
  se_var = (var + state.prev_window_var) / w
  floor = c(hp.min_rel_improve) * jnp.abs(state.prev_window_mean)
  return Evidence(
      decide=decide, known=known, mean=mean, var=var, gain=gain,
      better=known & _beyond(gain, _Z, se_var, floor),
      worse=known & _beyond(-gain, _Z, se_var, floor))


def spike(hp, before, loss, has_loss, c):
  """A loss far above the recent level: damp this step by ``ema / loss``.

  A spike is a loss above ``guard_ratio`` times the loss EMA *and*
  ``guard_sigma`` noise standard deviations above it; under Gaussian noise
  the second test alone fires with probability 3e-5 per step. It damps only
  its own step (no memory, so no drift); while probing it also ends the probe
  (see :func:`probe`). Returns ``(is_spike, step_factor)``.
  """
  noise_var = jnp.maximum(before.window_noise_var, before.prev_window_var)
  ref = jnp.abs(before.loss_ema)
  excess = jnp.where(has_loss, loss, 0).astype(ref.dtype) - before.loss_ema
  is_spike = (has_loss & before.has_loss_ema
              & _beyond(excess, c(hp.guard_sigma), noise_var,
                        (c(hp.guard_ratio) - 1) * ref))
  factor = ref / (ref + jnp.maximum(excess, 0) + _EPS)
  return is_spike, jnp.where(is_spike, factor, 1)


# A probe segment waits at most this many windows for a significant fall.
PROBE_WINDOWS = 4


def probe(hp, cfg, state, ev: Evidence, rate, is_spike, c):
  """Start-up search: double the rate while doubling pays, else revert.

  The run starts at ``start_scale`` times the given rate. A *segment* is the
  windows since the probe's last growth (at most ``PROBE_WINDOWS``); at each
  window the loss's fall since the segment began is tested against two
  standard errors. A significant fall grows the rate by ``probe_growth``
  (g) if, after a growth, the fall per window is at least ``sqrt(g)`` times
  the previous segment's: far below the best rate the loss falls in
  proportion to the rate; near it, it does not. A segment that fails (no
  significant fall within its windows, or no response) ends the probe and
  reverts its growth; so does a spike. Where the probe ends without a validated growth, the
  start rate is kept only if the loss fell there beyond four standard errors
  (strong evidence that it works); otherwise the given rate is restored.

  Null evidence: on i.i.d. noise a segment's fall passes two standard errors
  with probability about 2.3% per window, so the probe mostly ends after its
  first segment with the given rate restored; growths then need the response
  test too. A smooth descent that the rate does not cause (a slow sine)
  passes the significance test but not the response test, and falls beyond
  four standard errors: it leaves the start rate (``start_scale``), never
  less.
  """
  g = c(hp.probe_growth)
  w = cfg.var_window
  probing = state.probing
  active = probing & ev.decide
  started = state.probe_windows >= 0
  n = jnp.maximum(state.probe_windows + 1, 1)
  fall = state.probe_ref - ev.mean
  se_var = (state.probe_ref_var + ev.var) / w
  floor = c(hp.min_rel_improve) * jnp.abs(state.probe_ref)
  sig = _beyond(fall, _Z, se_var, floor)
  strong = _beyond(fall, 2 * _Z, se_var, floor)
  speed = fall / n.astype(fall.dtype)
  grew = state.probe_growths > 0
  responded = ~grew | (speed >= jnp.sqrt(g) * state.probe_prev_speed)
  grow = active & started & sig & responded & ~is_spike
  fail = active & started & ((sig & ~responded)
                             | (~sig & (n >= PROBE_WINDOWS)))
  end = fail | (probing & is_spike)
  # Where a failed segment falls back to: the last growth that paid (two
  # growths: the second segment responded); after one unpaid growth, the
  # start rate if the loss fell strongly there; else the given rate.
  trusted = (state.probe_growths >= 2) | (grew & state.probe_strong)
  fallback = jnp.where(trusted, state.probe_base, state.given_rate)
  new_rate = jnp.where(grow, rate * g,
                       jnp.where(is_spike & probing,
                                 jnp.where(grew, state.probe_base, rate),
                                 jnp.where(fail, fallback, rate)))
  restart = active & (grow | ~started)
  state = state._replace(
      probing=probing & ~end,
      probe_growths=jnp.where(grow, state.probe_growths + 1,
                              state.probe_growths).astype(jnp.int32),
      probe_strong=jnp.where(grow & ~grew, strong, state.probe_strong),
      probe_base=jnp.where(grow, rate, state.probe_base),
      probe_prev_speed=jnp.where(grow, speed, state.probe_prev_speed),
      probe_ref=jnp.where(restart, ev.mean, state.probe_ref),
      probe_ref_var=jnp.where(restart, ev.var, state.probe_ref_var),
      probe_windows=jnp.where(restart, 0, jnp.where(
          active, state.probe_windows + 1, state.probe_windows)).astype(
              jnp.int32),
  )
  return state, new_rate, end


def runaway(hp, state, ev: Evidence, rate, c):
  """A loss rising far above its lowest level halves the rate.

  Fires at a window that is worse than the previous one beyond the band, the
  third such window in a row, and whose mean exceeds the reference level by
  ``guard_ratio - 1`` times its magnitude (``2x`` by default). The reference
  is the lowest window mean since the last cut, but at least the level at
  that cut: the next cut needs the loss to double again. So on a bounded
  trendless loss whose window means vary by less than ``guard_ratio`` it
  never fires, and by a factor ``R`` at most ``log_2 R`` times over any run;
  three significant rises in a row have probability about 1e-5 under
  Gaussian noise. A divergence, however slow, doubles again and is cut again.
  """
  rises = jnp.where(ev.worse, state.rises + 1,
                    jnp.where(ev.known, 0, state.rises)).astype(jnp.int32)
  low = jnp.where(state.has_prev_window,
                  jnp.minimum(state.guard_low, ev.mean), ev.mean)
  low = jnp.where(ev.decide, low, state.guard_low)
  ref = jnp.where(state.guard_anchor != 0,
                  jnp.maximum(low, state.guard_anchor), low)
  fire = (ev.known & (rises >= 3)
          & (ev.mean - ref > (c(hp.guard_ratio) - 1) * jnp.abs(ref)))
  state = state._replace(
      rises=jnp.where(fire, 0, rises).astype(jnp.int32),
      guard_low=jnp.where(fire, ev.mean, low),
      guard_anchor=jnp.where(fire, ev.mean, state.guard_anchor),
  )
  return state, jnp.where(fire, rate * c(hp.big_drop), rate), fire


def reward(hp, state, ev: Evidence, rate, momentum, has_momentum, c):
  """The reward's trend at each window: up by ``reward_up``, down by
  ``reward_down``, when the reward EMA moved beyond two standard errors of
  the difference of two EMAs (``2 sqrt(2 var_ema)``): a false-alarm rate of
  2.3% per window and side on a trendless reward.
  """
  rbeta = c(hp.reward_beta)
  ema_var = state.reward_sq_dev * (1 - rbeta) / (1 + rbeta)
  known = ev.decide & state.has_reward_ema & state.has_prev_reward
  diff = state.reward_ema - state.prev_reward
  better = known & _beyond(diff, _Z, 2 * ema_var)
  worse = known & _beyond(-diff, _Z, 2 * ema_var)
  rate = jnp.where(better, rate * c(hp.reward_up),
                   jnp.where(worse, rate * c(hp.reward_down), rate))
  if has_momentum:
    momentum = jnp.where(
        better, jnp.minimum(c(hp.momentum_max), momentum + c(hp.momentum_up)),
        jnp.where(worse, jnp.maximum(c(hp.momentum_min),
                                     momentum * c(hp.momentum_down)),
                  momentum))
  snap = ev.decide & state.has_reward_ema
  state = state._replace(
      prev_reward=jnp.where(snap, state.reward_ema, state.prev_reward),
      has_prev_reward=state.has_prev_reward | snap)
  return state, rate, momentum


def patience(hp, cfg, state, ev: Evidence, rate, period_start, c):
  """A stalled loss halves the rate, on trial.

  A check is due ``patience`` steps after the last improving window, once no
  cooldown runs; each check starts a cooldown of ``max(cooldown,
  cooldown_ratio * t)`` steps, so checks get rarer as training goes on. At
  a check:

  * a drop still on trial is undone (``/ big_drop``) unless the loss fell
    since it beyond the band and by ``1 - big_drop`` of its level: a drop
    that did not lower the loss was not what held it up;
  * otherwise the rate drops by ``big_drop`` unless the loss fell since the
    last check beyond that same margin (above the given rate it drops even
    then: the probe's edge is typically above the best rate).

  Null evidence: a trendless loss drops and undoes alternately, so the rate
  is the given one or half of it, never lower.
  """
  w = cfg.var_window
  in_cooldown = state.cooldown_left > 0
  check = ~in_cooldown & (state.steps_since_improve >= hp.patience)
  last = jnp.where(state.has_prev_window, state.prev_window_mean, state.loss_ema)
  rel = jnp.maximum(c(hp.min_rel_improve), 1 - c(hp.big_drop))
  band = 2 * state.prev_window_var / w

  def fell_since(level):
    return _beyond(level - last, _Z, band, rel * jnp.abs(level))

  undo = check & state.trial & ~fell_since(state.trial_ref)
  progress = fell_since(state.plateau_ref) & (rate <= state.given_rate)
  drop = check & ~undo & ~progress
  rate = jnp.where(undo, rate / c(hp.big_drop),
                   jnp.where(drop, rate * c(hp.big_drop), rate))
  period = check | period_start
  relative = jnp.floor(c(hp.cooldown_ratio) * state.num_steps.astype(rate.dtype))
  relative = jnp.minimum(relative, c(2**31 - 2)).astype(jnp.int32)
  length = jnp.maximum(jnp.asarray(hp.cooldown).astype(jnp.int32), relative)
  state = state._replace(
      cooldown_left=jnp.where(
          period, length,
          jnp.where(in_cooldown, state.cooldown_left - 1, state.cooldown_left),
      ).astype(jnp.int32),
      steps_since_improve=jnp.where(
          period, 0, state.steps_since_improve).astype(jnp.int32),
      plateau_ref=jnp.where(period, last, state.plateau_ref),
      trial=jnp.where(check, drop, state.trial),
      trial_ref=jnp.where(drop, last, state.trial_ref),
  )
  return state, rate


def horizon_factor(hp, t, dtype):
  """``1 - sqrt(x)`` over the last ``decay_fraction`` of ``total_steps``.

  The final decay of warmup-stable-decay schedules (Hägele et al. 2024);
  1 throughout when ``total_steps`` is 0 (no horizon given).
  """
  total = jnp.asarray(hp.total_steps, dtype)
  span = jnp.maximum(jnp.asarray(hp.decay_fraction, dtype) * total, 1)
  x = jnp.clip((t.astype(dtype) - (total - span)) / span, 0, 1)
  return jnp.where(total > 0, 1 - jnp.sqrt(x), 1)


def modulate(hp, cfg, rate, rel_var, step_factor, t, c):
  """The applied rate: the decided one, damped and shaped, never written back.

  ``rate / (var_damp_base + var_damp_scale * rel_var) * step_factor *
  horizon_factor``; the cosine overlay is applied by the caller (it advances
  its own timers).
  """
  damp = c(hp.var_damp_base)
  if "damping" in cfg.rules:
    damp = damp + c(hp.var_damp_scale) * rel_var
  return rate / damp * step_factor * horizon_factor(hp, t, rate.dtype)


def start_rate(hp, cfg, given, c):
  """The cautious start: the probe searches upwards from here."""
  if "probe" in cfg.rules and not cfg.use_reward:
    return given * c(hp.start_scale)
  return given

