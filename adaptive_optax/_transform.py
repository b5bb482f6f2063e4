"""The controller as optax gradient transformations."""

from __future__ import annotations

import inspect
import math
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import optax

from adaptive_optax import _displacement
from adaptive_optax import _options
from adaptive_optax import _policy
from adaptive_optax import presets as _presets
from adaptive_optax._policy import ControllerState


class AdaptiveScaleState(NamedTuple):
  """State of :func:`adaptive_scale`."""

  controller: ControllerState  # the policy's state; its rate is the scale.
  # The parameters' recent displacement, sampled: the drift rule's input
  # (kept in every configuration, so that a state's structure does not
  # depend on its switches and restoring one names the switch that differs).
  displacement: _displacement.Displacement


class AdaptiveHyperparamsState(NamedTuple):
  """State of :func:`adaptive_hyperparams`."""

  controller: ControllerState  # the policy's state; its rate is the LR.
  optimizer_state: Any  # the inner optimizer's inject_hyperparams state.
  displacement: _displacement.Displacement  # see AdaptiveScaleState.


def stats_dtype(params) -> jnp.dtype:
  """float32, or wider when the parameters are (statistics never go lower).

  Always real: complex parameters get the statistics of their real part's
  precision (a loss, a rate and their bounds are real numbers).
  """
  leaves = jax.tree.leaves(params)
  if not leaves:
    return jnp.dtype(jnp.float32)
  dtype = jnp.promote_types(optax.tree.dtype(params, "highest"), jnp.float32)
  return jnp.finfo(dtype).dtype  # complex64 -> float32, complex128 -> float64


def _scalar(name: str, x, axis_name):
  if isinstance(x, (tuple, list)):
    raise ValueError(
        f"{name} must be a scalar (the mean loss of the step), got a "
        f"{type(x).__name__} of {len(x)}. jax.value_and_grad(f, has_aux=True) "
        f"returns ((loss, aux), grads): pass {name}=loss, not (loss, aux).")
  x = jnp.asarray(x)
  if x.ndim != 0:
    raise ValueError(
        f"{name} must be a scalar (the mean loss of the step), got shape "
        f"{x.shape}.")
  if axis_name is not None:
    x = jax.lax.pmean(x, axis_name)
  return x


def _signals(cfg, value, extra_args, axis_name):
  """The step's loss and reward, checked and averaged across replicas."""
  if value is None:
    raise TypeError(
        "adaptive_optax needs the loss: call update(updates, state, params, "
        "value=loss). With Flax Linen, use adaptive_optax.flax_utils.TrainState"
        " (its apply_gradients takes value=loss: flax.training.train_state."
        "TrainState's does not pass it); with Flax NNX, call "
        "optimizer.update(model, grads, value=loss).")
  value = _scalar("value", value, axis_name)
  reward = extra_args.get("reward")
  if cfg.use_reward:
    if reward is None:
      raise TypeError(
          "use_reward=True needs the reward: call update(..., value=loss, "
          "reward=r); pass reward=nan for a step without one.")
    reward = _scalar("reward", reward, axis_name)
  else:
    reward = None
  return value, reward


def _computed_once(x: jax.Array) -> jax.Array:
  """``x`` unchanged, divided by a 1 that XLA cannot fold away.

  The controller's step is a chain of a few hundred cheap scalar operations,
  and XLA fuses cheap producers into every consumer: each leaf's update loop
  would recompute the whole step, and compile time grew with the number of
  leaves (Adam over 100 leaves: 5.5-6.6 s, against 0.7-1.1 s for Adam
  alone). XLA does not copy a division into several consumers, so the rate
  becomes one small kernel that every leaf reads (2.9-3.6 s). The divisor
  is 1, or 2 for a NaN (which stays NaN): the value is exact.
  """
  return x / jnp.where(jnp.isnan(x), 2, 1).astype(x.dtype)


def _scale_tree(tree, rate):
  """Multiplies every leaf by ``rate`` in at least float32, keeping its dtype."""
  rate = _computed_once(rate)

  def mul(g):
    g = jnp.asarray(g)  # updates may be Python scalars
    wide = jnp.promote_types(g.dtype, jnp.float32)
    return (g.astype(wide) * rate.astype(wide)).astype(g.dtype)
  return jax.tree.map(mul, tree)


@_presets.accepts_preset
def adaptive_scale(
    *,
    mode: str = "stable",
    loss_beta: jax.typing.ArrayLike = 0.9,
    reward_beta: jax.typing.ArrayLike = 0.9,
    var_window: int = 20,
    up_factor: jax.typing.ArrayLike = 1.05,
    down_factor: jax.typing.ArrayLike = 0.7,
    min_rel_improve: jax.typing.ArrayLike = 1e-4,
    var_damp_base: jax.typing.ArrayLike = 1.0,
    var_damp_scale: jax.typing.ArrayLike = 1.0,
    use_reward: bool = False,
    reward_up: jax.typing.ArrayLike = 1.03,
    reward_down: jax.typing.ArrayLike = 0.90,
    momentum_up: jax.typing.ArrayLike = 0.01,
    momentum_down: jax.typing.ArrayLike = 0.90,
    patience: jax.typing.ArrayLike = 20,
    big_drop: jax.typing.ArrayLike = 0.5,
    cooldown: jax.typing.ArrayLike = 50,
    use_cosine: bool = False,
    T0: jax.typing.ArrayLike = 200,  # pylint: disable=invalid-name
    T_mult: jax.typing.ArrayLike = 2,  # pylint: disable=invalid-name
    eta_min_scale: jax.typing.ArrayLike = 0.1,
    min_scale: jax.typing.ArrayLike = 1e-6,
    max_scale: jax.typing.ArrayLike = 1e4,
    momentum_min: jax.typing.ArrayLike = 0.0,
    momentum_max: jax.typing.ArrayLike = 0.999,
    probe_growth: jax.typing.ArrayLike = 2.0,
    guard_ratio: jax.typing.ArrayLike = 2.0,
    guard_sigma: jax.typing.ArrayLike = 4.0,
    cooldown_ratio: jax.typing.ArrayLike = 1.0,
    start_scale: jax.typing.ArrayLike = 0.1,
    total_steps: jax.typing.ArrayLike = 0,
    decay_fraction: jax.typing.ArrayLike = 0.2,
    drift_window: jax.typing.ArrayLike = 0,
    rules: tuple[str, ...] | None = None,
    axis_name: str | None = None,
) -> optax.GradientTransformationExtraArgs:
  """Scales updates by a factor adapted online from the loss (and a reward).

  Place it after the optimizer, like ``optax.contrib.reduce_on_plateau``: the
  scale starts at 1 and multiplies the optimizer's updates. Feed the step's
  loss with ``update(..., value=loss)``.

  ``mode="stable"`` (default) moves the scale only on statistical evidence
  from windows of ``var_window`` losses, one rule each
  (``adaptive_optax._stable``): a warm-up from ``start_scale``; a probe that
  grows the scale by ``probe_growth`` while that speeds the loss's fall; a
  growth by ``probe_growth`` while the parameters keep moving one way from
  window to window and the loss's fall (with ``use_reward``, the reward's
  rise, two windows in a row) is lost in its noise (the drift rule; it
  reads ``params``, about 4,096 sampled coordinates, in
  ``state.displacement``, and does not run when ``update`` is not given
  them); a cut by ``big_drop`` when the loss keeps rising above
  ``guard_ratio`` times its lowest level, or spikes in a growing run (three,
  each higher); a drop by ``big_drop`` on trial after ``patience`` steps
  without progress (undone if the loss did not fall after it; ``cooldown``,
  ``cooldown_ratio``); with ``use_reward=True`` the reward's trend
  (``reward_up``/``reward_down``) instead of the loss's; variance damping,
  the cosine overlay (``T0``, ``T_mult``) and, with ``total_steps``, a final
  decay modulate the applied scale only. With no evidence it holds the given
  scale. ``mode="reference"`` reproduces the seed's ``AdaptiveScheduler``
  exactly, compounding included (its per-step trend rule ``up_factor`` /
  ``down_factor`` acts in that mode only).

  Args:
    mode: ``"stable"`` or ``"reference"`` (static).
    loss_beta: EMA coefficient of the loss.
    reward_beta: EMA coefficient of the reward.
    var_window: loss window for the variance and trend (static).
    up_factor: reference mode: multiplier when the loss improves.
    down_factor: reference mode: multiplier when it worsens.
    min_rel_improve: relative improvement that counts as one.
    var_damp_base: damping ``scale / (base + scale_ * variance)``.
    var_damp_scale: weight of the variance in the damping.
    use_reward: also read ``reward=`` (static). With ``use_reward=False`` a
      ``reward=`` given to ``update`` is ignored, as the seed ignores
      rewards when reward shaping is off.
    reward_up: multiplier when the reward trend rises.
    reward_down: multiplier when it falls.
    momentum_up: added to the momentum when the reward rises. No effect
      here: ``adaptive_scale`` drives no momentum. The four ``momentum_*``
      arguments stay so that one config file or preset serves every front
      end (``load_config`` output goes to either); they are validated all
      the same.
    momentum_down: momentum multiplier when the reward falls (stable mode:
      by no more than ``momentum_up``, on trial with the rate's moves); no
      effect here (see ``momentum_up``).
    patience: steps without improvement before a big drop.
    big_drop: multiplier of a big drop.
    cooldown: steps after a big drop before another may happen.
    use_cosine: enable the cosine warm-restart overlay (static). In stable
      mode it is held at 1 while the start-up probe runs (its timers run).
    T0: first cosine period, in steps.
    T_mult: period growth factor at each restart.
    eta_min_scale: cosine floor as a fraction of the adapted scale.
    min_scale: lower bound of the scale.
    max_scale: upper bound of the scale.
    momentum_min: lower bound of the momentum; no effect here (see
      ``momentum_up``).
    momentum_max: upper bound of the momentum; no effect here.
    probe_growth: stable mode: growth of the scale per probe segment; above
      the given scale a growth must speed the log-loss's fall by its square
      root.
    guard_ratio: stable mode: a loss above ``guard_ratio`` times the loss EMA
      (and ``guard_sigma`` noise standard deviations above it) is a spike,
      which damps its own step by ``ema / loss`` (at most 10x); a window mean
      above ``guard_ratio`` times the lowest one, rising three windows in a
      row, is a runaway (cut by ``big_drop``).
    guard_sigma: stable mode: see ``guard_ratio``.
    cooldown_ratio: stable mode: after a big drop, the cooldown lasts at
      least this fraction of the steps taken so far.
    start_scale: stable mode: the first update uses the given scale (or LR);
      from the second, the applied value restarts at ``start_scale`` times
      it and warms up to ``1 / probe_growth`` of it within a window (no
      warm-up when ``start_scale >= 1 / probe_growth``); the probe goes on
      from there (and beyond, while the loss allows).
    total_steps: stable mode: the run's length, when known (0: unknown). The
      applied scale then decays as ``1 - sqrt(x)`` over the last
      ``decay_fraction`` of the run, as warmup-stable-decay schedules do.
      It helps from a rate about right or too high; from one far too low
      on a short run it costs, the decay coming while the rate still
      climbs (docs/benchmarks/quality.md).
    decay_fraction: stable mode: see ``total_steps``.
    drift_window: stable mode: the updates per window of the drift rule's
      displacements (0: ``var_window``). Give at least half the optimizer's
      memory ``1/(1 - beta)`` where that exceeds ``var_window``: 50 for SGD
      momentum or Adam ``b1`` of 0.99 (``adaptive_hyperparams`` does it from
      the ``momentum`` or ``b1`` it is given). A momentum that remembers
      longer than two windows correlates consecutive ones, and the rule
      then grows the rate on noise.
    rules: stable mode: the rules that run, a subset of
      ``("warmup", "probe", "runaway", "spike", "reward", "patience",
      "damping", "drift")`` (static; default all; the warm-up needs the
      probe, and without it the probe starts at the given rate). For
      ablations: each rule is one function of ``adaptive_optax._stable``.
    axis_name: when set, the loss and reward are ``pmean``-ed over this axis
      so replicas stay identical.
    preset: a name from :data:`adaptive_optax.presets.PRESETS` (or a
      mapping) whose keywords are used as defaults; keywords given next to
      it win: ``adaptive_scale(preset="rl", reward_down=0.9)``.

  Hyperparameters are checked at construction (a ``ValueError`` names the
  argument; see ``adaptive_optax._options.HYPERPARAMS`` for each range).
  Traced values (under ``jit``/``vmap``) are only checked to be real
  numbers: their range cannot be known then, and an out-of-range traced
  value is used as given.

  Returns:
    An :class:`optax.GradientTransformationExtraArgs`.

  Example:
    >>> import jax.numpy as jnp, optax
    >>> import adaptive_optax as ao
    >>> tx = optax.chain(optax.sgd(0.1), ao.adaptive_scale())
    >>> params = jnp.array([1.0, -2.0])
    >>> state = tx.init(params)
    >>> loss, grads = jnp.sum(params**2), 2 * params
    >>> updates, state = tx.update(grads, state, params, value=loss)
    >>> params = optax.apply_updates(params, updates)
    >>> float(ao.metrics(state)["scale"])
    1.0

  References:
    The seed ``AdaptiveScheduler`` (PyTorch), whose policies this ports; see
    the project README for each rule as an equation.
  """
  kwargs = {k: v for k, v in locals().items() if k != "axis_name"}
  hp, cfg = _options.build_policy(kwargs, _options.SCALE_BOUNDS,
                                  "adaptive_scale")

  tracks = _policy.reads_alignment(cfg)
  window = _displacement.window_length(hp.drift_window, cfg.var_window)

  def init_fn(params):
    dtype = stats_dtype(params)
    return AdaptiveScaleState(
        controller=_policy.init(hp, cfg, 1.0, 0.0, dtype),
        displacement=_displacement.init(params, dtype))

  def update_fn(updates, state, params=None, *, value=None, **extra_args):
    loss, reward = _signals(cfg, value, extra_args, axis_name)
    ctrl, disp = state.controller, state.displacement
    if cfg.mode == "reference":  # the seed decides after the step
      updates = _scale_tree(updates, ctrl.applied_rate)
      ctrl = _policy.step(hp, cfg, ctrl, loss, reward)
    else:  # the loss at these params is known: use it now
      align = None
      if tracks:
        align, disp = _displacement.step(disp, params, window)
      ctrl = _policy.step(hp, cfg, ctrl, loss, reward, align)
      updates = _scale_tree(updates, ctrl.applied_rate)
    return updates, AdaptiveScaleState(controller=ctrl, displacement=disp)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _check_factory(factory) -> None:
  if isinstance(factory, optax.GradientTransformation):
    raise TypeError(
        "adaptive_hyperparams takes an optimizer factory such as optax.sgd "
        "(the function), not an optimizer instance such as optax.sgd(0.1): "
        "write adaptive_hyperparams(optax.sgd, learning_rate=0.1, ...).")
  if not callable(factory):
    raise TypeError(
        "adaptive_hyperparams takes an optimizer factory such as optax.sgd, "
        f"got {factory!r}.")


def _check_start_values(learning_rate, momentum) -> None:
  """Numbers, not schedules: the controller writes them at every step."""
  for name, value in (("learning_rate", learning_rate),
                      ("momentum", momentum)):
    if callable(value):
      raise ValueError(
          f"{name} must be a number (the starting value the controller then "
          f"adapts), got a schedule {value!r}. To combine a schedule with "
          "the controller, schedule the optimizer and scale its updates: "
          "optax.chain(optax.sgd(schedule), ao.adaptive_scale()).")


def _static_args(factory, extra, inject) -> tuple[str, ...]:
  """The factory arguments inject_hyperparams must leave alone.

  inject_hyperparams injects every numeric argument, defaults included: all
  but the driven ones and ``inject`` are named static here.
  """
  if isinstance(inject, str):
    raise TypeError(f"inject must be a sequence of names, got {inject!r}.")
  missing = sorted(set(inject) - set(extra))
  if missing:
    raise ValueError(
        f"inject names {missing}, which are not given: pass their values too "
        f"(e.g. adaptive_hyperparams({getattr(factory, '__name__', 'f')}, "
        f"..., {missing[0]}=value, inject={tuple(inject)!r})).")
  names = _factory_params(factory) | set(extra)
  driven = {"learning_rate", "momentum", *inject}
  return tuple(sorted(names - driven))


def _memory_window(factory, momentum, extra, var_window) -> int:
  """The drift window the inner optimizer's memory asks for (0: the loss's).

  A first-moment decay ``beta`` (``momentum``, or ``b1`` given or by the
  factory's default) remembers ``1/(1 - beta)`` steps; the drift rule's null
  holds once its window is half that (docs/stable_policy.md, rule 3). Only a
  concrete decay counts.
  """
  defaults = {k: p.default for k, p in _factory_signature(factory).items()}
  given = {**defaults, **extra}
  if momentum is not None:
    given["momentum"] = momentum
  window = 0
  for name in ("momentum", "b1"):
    try:
      beta = float(given.get(name))
    except (TypeError, ValueError, jax.errors.ConcretizationTypeError):
      continue
    if 0 <= beta < 1:
      window = max(window, math.ceil(0.5 / (1 - beta)))
  # An invalid var_window is left to build_policy's error, which names it.
  longer = not isinstance(var_window, int) or window > var_window
  return window if longer else 0


def _factory_params(factory) -> set[str]:
  return set(_factory_signature(factory))


def _factory_signature(factory):
  """The factory's parameters by name (empty when it has no signature)."""
  try:
    return inspect.signature(factory).parameters
  except (TypeError, ValueError):
    return {}


@_presets.accepts_preset
def adaptive_hyperparams(
    factory: Callable[..., optax.GradientTransformation],
    *,
    learning_rate: jax.typing.ArrayLike,
    momentum: jax.typing.ArrayLike | None = None,
    mode: str = "stable",
    lr_min: jax.typing.ArrayLike = 1e-7,
    lr_max: jax.typing.ArrayLike = 10.0,
    axis_name: str | None = None,
    inject: Sequence[str] = (),
    **kwargs,
) -> optax.GradientTransformationExtraArgs:
  """Drives an optimizer's ``learning_rate`` (and ``momentum``) from the loss.

  Wraps ``factory`` (``optax.sgd``, ``optax.adam``...) in
  ``optax.inject_hyperparams`` and writes the controller's learning rate and,
  when ``momentum`` is given and the factory takes one, its momentum into the
  optimizer at every step, as the seed writes both into the param group.
  Optimizers without a ``momentum`` argument get the LR control alone.

  Only the learning rate (and momentum) are injected: the factory's other
  arguments stay static Python values, as the factory expects (``b2=0.999``
  injected would be rounded to 1.0 in a bfloat16 state; ``adafactor``'s
  sizes must stay integers under ``jit``; ``mu_dtype`` is no schedule).
  Name others in ``inject`` to make them state you may change.

  Unless given, ``drift_window`` follows the optimizer's memory: half of
  ``1/(1 - beta)`` steps for the starting ``momentum`` or ``b1`` (given, or
  the factory's default) where that exceeds ``var_window`` (momentum 0.99:
  50), so that the drift rule's null holds (see :func:`adaptive_scale`).
  A momentum the reward rule later raises is not followed.

  Args:
    factory: an optax optimizer factory taking ``learning_rate``, such as
      ``optax.sgd`` (the function, not ``optax.sgd(0.1)``).
    learning_rate: the starting learning rate, a number within
      ``[lr_min, lr_max]`` (one outside is refused, not clamped). A schedule
      is refused: the controller is the schedule here; to combine one with
      it, use ``optax.chain(optax.sgd(schedule), adaptive_scale())``.
    momentum: the starting momentum; ``None`` leaves momentum alone.
    mode: ``"stable"`` or ``"reference"``, as in :func:`adaptive_scale`.
    lr_min: lower bound of the learning rate.
    lr_max: upper bound of the learning rate.
    axis_name: as in :func:`adaptive_scale`.
    preset: as in :func:`adaptive_scale`.
    inject: names of other numeric arguments of ``factory`` (given in
      ``kwargs``) to inject as well, so that they live in
      ``optimizer_state.hyperparams`` and can be changed there. Their values
      then take the dtype they are given in (mind bfloat16).
    **kwargs: the policy's hyperparameters, named and defaulted as in
      :func:`adaptive_scale` (``up_factor``, ``patience``, ``use_reward``,
      ``momentum_up``...); any other keyword goes to ``factory``
      (e.g. ``nesterov=True``, ``weight_decay=1e-4``).

  Returns:
    An :class:`optax.GradientTransformationExtraArgs`.

  Example:
    >>> import jax.numpy as jnp, optax
    >>> import adaptive_optax as ao
    >>> tx = ao.adaptive_hyperparams(optax.sgd, learning_rate=0.05,
    ...                              momentum=0.9)
    >>> params = jnp.array([1.0, -2.0])
    >>> state = tx.init(params)
    >>> updates, state = tx.update(2 * params, state, params,
    ...                            value=jnp.sum(params**2))
    >>> m = ao.metrics(state)
    >>> round(float(m["learning_rate"]), 4), round(float(m["momentum"]), 4)
    (0.05, 0.9)

  Raises:
    TypeError: ``factory`` is not an optimizer factory (an instance, say),
      or an argument is neither the policy's nor the factory's.
    ValueError: a value out of its range (named), ``learning_rate`` outside
      ``[lr_min, lr_max]`` or a schedule.

  References:
    ``optax.inject_hyperparams``; the seed ``AdaptiveScheduler`` (PyTorch).
  """
  _check_factory(factory)
  _check_start_values(learning_rate, momentum)
  accepted = _factory_params(factory)
  policy_names = (set(_options.POLICY_DEFAULTS)
                  | set(_options.STATIC_DEFAULTS))
  policy = {k: v for k, v in kwargs.items() if k in policy_names}
  extra = {k: v for k, v in kwargs.items() if k not in policy_names}
  bad = sorted(k for k in extra if accepted and k not in accepted)
  if bad:
    raise TypeError(
        f"adaptive_hyperparams got argument(s) {bad} that are neither policy "
        f"hyperparameters nor arguments of {getattr(factory, '__name__', factory)}.")
  if accepted and "learning_rate" not in accepted:
    raise ValueError(
        "factory must take a learning_rate argument, got "
        f"{getattr(factory, '__name__', factory)}.")
  has_momentum = momentum is not None
  if has_momentum and accepted and "momentum" not in accepted:
    raise ValueError(
        f"momentum was given but {getattr(factory, '__name__', factory)} has "
        "no momentum argument; leave momentum=None (the LR is still driven).")
  if "drift_window" not in policy:
    policy["drift_window"] = _memory_window(
        factory, momentum, extra,
        policy.get("var_window", _options.STATIC_DEFAULTS["var_window"]))
  hp, cfg = _options.build_policy(
      {**policy, "mode": mode, "lr_min": lr_min, "lr_max": lr_max},
      _options.LR_BOUNDS, "adaptive_hyperparams",
      learning_rate=learning_rate, momentum=momentum)
  inject_args = {"learning_rate": learning_rate}
  if has_momentum:
    inject_args["momentum"] = momentum
  static = _static_args(factory, extra, inject)
  inner = optax.inject_hyperparams(factory, static_args=static)(
      **inject_args, **extra)
  tracks = _policy.reads_alignment(cfg)
  window = _displacement.window_length(hp.drift_window, cfg.var_window)

  def init_fn(params):
    dtype = stats_dtype(params)
    ctrl = _policy.init(hp, cfg, learning_rate,
                        momentum if has_momentum else 0.0, dtype)
    opt_state = _inject(inner.init(params), ctrl)
    # Donation needs distinct buffers; astype to the same dtype would alias.
    opt_state = opt_state._replace(
        hyperparams=jax.tree.map(jnp.copy, opt_state.hyperparams))
    return AdaptiveHyperparamsState(
        controller=ctrl, optimizer_state=opt_state,
        displacement=_displacement.init(params, dtype))

  def _inject(opt_state, ctrl):
    hps = dict(opt_state.hyperparams)
    hps["learning_rate"] = _computed_once(ctrl.applied_rate).astype(
        jnp.asarray(hps["learning_rate"]).dtype)
    if has_momentum:
      hps["momentum"] = _computed_once(ctrl.applied_momentum).astype(
          jnp.asarray(hps["momentum"]).dtype)
    return opt_state._replace(hyperparams=hps)

  def update_fn(updates, state, params=None, *, value=None, **extra_args):
    loss, reward = _signals(cfg, value, extra_args, axis_name)
    ctrl, opt_state = state.controller, state.optimizer_state
    disp = state.displacement
    if cfg.mode == "reference":
      updates, opt_state = inner.update(updates, opt_state, params,
                                        value=value, **extra_args)
      ctrl = _policy.step(hp, cfg, ctrl, loss, reward)
    else:
      align = None
      if tracks:
        align, disp = _displacement.step(disp, params, window)
      ctrl = _policy.step(hp, cfg, ctrl, loss, reward, align)
      updates, opt_state = inner.update(
          updates, _inject(opt_state, ctrl), params, value=value, **extra_args)
    return updates, AdaptiveHyperparamsState(
        controller=ctrl, optimizer_state=_inject(opt_state, ctrl),
        displacement=disp)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
