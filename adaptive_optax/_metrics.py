"""Reading the controller's values out of any optimizer state, for logging."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from adaptive_optax import _policy
from adaptive_optax._transform import AdaptiveHyperparamsState
from adaptive_optax._transform import AdaptiveScaleState

_STATES = (AdaptiveScaleState, AdaptiveHyperparamsState)


def controller_metrics(ctrl: _policy.ControllerState, rate_name: str,
                       momentum: bool) -> dict[str, jax.Array]:
  """The flat dict of one controller's current values.

  A stacked state (from ``vmap``/``pmap``, leading axes in front) gives
  stacked values: the window statistics are mapped over the leading axes.
  """
  if ctrl.stored_rate.ndim:
    return jax.vmap(lambda c: controller_metrics(c, rate_name, momentum))(ctrl)
  _, variance = _policy.window_stats(ctrl)
  period = jnp.maximum(ctrl.cosine_period, 1)
  out = {
      rate_name: ctrl.applied_rate,
      f"stored_{rate_name}": ctrl.stored_rate,
      "loss_ema": ctrl.loss_ema,
      "loss_variance": variance,
      "reward_ema": ctrl.reward_ema,
      "steps_since_improve": ctrl.steps_since_improve,
      "cooldown": ctrl.cooldown_left,
      "cosine_phase": ctrl.cosine_t.astype(ctrl.loss_ema.dtype)
                      / period.astype(ctrl.loss_ema.dtype),
      "cosine_period": ctrl.cosine_period,
      "num_steps": ctrl.num_steps,
      "num_nonfinite": ctrl.num_nonfinite,
  }
  if momentum:
    out["momentum"] = ctrl.applied_momentum
  return out


def _label(path) -> str:
  for key in reversed(path):
    if isinstance(key, jax.tree_util.DictKey):
      return str(key.key)
  return jax.tree_util.keystr(path)


def metrics(state) -> dict[str, jax.Array]:
  """The controller's current values, found anywhere in an optimizer state.

  Works inside ``jit`` and ``scan`` (it returns arrays, never host values).

  Args:
    state: an optimizer state holding one or more adaptive_optax controllers
      (bare, in ``optax.chain``, ``optax.partition``, ``MultiSteps``...).

  Returns:
    A flat dict of scalars: ``scale`` (for :func:`adaptive_scale`) or
    ``learning_rate`` and, when driven, ``momentum`` (for
    :func:`adaptive_hyperparams`), plus ``loss_ema``, ``loss_variance``,
    ``reward_ema``, ``steps_since_improve``, ``cooldown``, ``cosine_phase``,
    ``cosine_period``, ``num_steps``, ``num_nonfinite``. With several
    controllers (one per ``optax.partition`` group) each key is prefixed by
    the group's label, as ``"label/scale"``. A stacked state (``vmap``,
    ``pmap``, one per configuration of a sweep) gives stacked values, with
    the state's leading axes.

  Raises:
    ValueError: when the state holds no controller.
  """
  found = jax.tree_util.tree_flatten_with_path(
      state, is_leaf=lambda x: isinstance(x, _STATES))[0]
  found = [(p, s) for p, s in found if isinstance(s, _STATES)]
  if not found:
    raise ValueError(
        "metrics(state): no adaptive_optax controller in this state.")
  per = []
  for path, s in found:
    if isinstance(s, AdaptiveScaleState):
      m = controller_metrics(s.controller, "scale", False)
    else:  # the state says whether momentum is driven
      m = controller_metrics(s.controller, "learning_rate",
                             s.controller.config.has_momentum)
    per.append((_label(path), m))
  if len(per) == 1:
    return per[0][1]
  return {f"{label}/{k}": v for label, m in per for k, v in m.items()}
