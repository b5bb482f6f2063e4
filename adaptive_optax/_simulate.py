"""Replaying a loss (and reward) stream through the controller, no model."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from adaptive_optax import _metrics
from adaptive_optax import _options
from adaptive_optax import _policy
from adaptive_optax import presets as _presets


@_presets.accepts_preset
def simulate(
    losses: jax.typing.ArrayLike,
    rewards: jax.typing.ArrayLike | None = None,
    *,
    learning_rate: jax.typing.ArrayLike | None = None,
    momentum: jax.typing.ArrayLike | None = None,
    **policy,
) -> dict[str, jax.Array]:
  """Runs the controller over a stream under ``lax.scan``; per-step metrics.

  Without ``learning_rate`` it simulates :func:`adaptive_scale` (a scale
  starting at 1, bounds ``min_scale``/``max_scale``); with it,
  :func:`adaptive_hyperparams` (bounds ``lr_min``/``lr_max``, and momentum
  when ``momentum`` is given). Numeric hyperparameters may be traced, so
  ``jax.vmap`` over configurations works.

  Args:
    losses: shape ``(T,)``; NaN/Inf entries are steps without metrics.
    rewards: shape ``(T,)``, needed when ``use_reward=True``.
    learning_rate: starting LR, or ``None`` to simulate a scale.
    momentum: starting momentum (with ``learning_rate`` only).
    **policy: hyperparameters as in :func:`adaptive_scale` (``mode``,
      ``up_factor``...).

  Returns:
    A dict of ``(T,)`` arrays: the values :func:`metrics` reports after each
    step (``scale`` or ``learning_rate``, ``momentum``, ``loss_ema``,
    ``loss_variance``, counters...). In reference mode the rate reported at
    step ``t`` is the one applied at step ``t + 1``, as in the seed.

  Example:
    >>> import jax.numpy as jnp
    >>> import adaptive_optax as ao
    >>> out = ao.simulate(jnp.linspace(2.0, 1.0, 100), mode="reference")
    >>> bool(out["scale"][-1] > 1.0)   # a steadily falling loss raises it
    True
  """
  if learning_rate is None:
    if momentum is not None:
      raise ValueError("momentum needs learning_rate (a scale has none).")
    bounds, rate_name, rate0 = _options.SCALE_BOUNDS, "scale", 1.0
  else:
    bounds, rate_name, rate0 = _options.LR_BOUNDS, "learning_rate", learning_rate
  hp, cfg = _options.build_policy(policy, bounds, "simulate",
                                  learning_rate=learning_rate,
                                  momentum=momentum)
  has_momentum = cfg.has_momentum

  losses = jnp.asarray(losses)
  if losses.ndim != 1:
    raise ValueError(f"losses must be one-dimensional, got shape {losses.shape}.")
  if cfg.use_reward:
    if rewards is None:
      raise ValueError("use_reward=True needs rewards.")
    rewards = jnp.asarray(rewards)
    if rewards.shape != losses.shape:
      raise ValueError(f"rewards must have the shape of losses {losses.shape}, "
                       f"got {rewards.shape}.")
  dtype = jnp.promote_types(losses.dtype, jnp.float32)
  if not jnp.issubdtype(dtype, jnp.floating):
    dtype = jnp.dtype(jnp.float32)
  state = _policy.init(hp, cfg, rate0, momentum if has_momentum else 0.0, dtype)

  def body(state, xs):
    loss, reward = xs
    state = _policy.step(hp, cfg, state, loss,
                         reward if cfg.use_reward else None)
    return state, _metrics.controller_metrics(state, rate_name, has_momentum)

  xs = (losses, rewards if cfg.use_reward else jnp.zeros_like(losses))
  _, out = jax.lax.scan(body, state, xs)
  return out
