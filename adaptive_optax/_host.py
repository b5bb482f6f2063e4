"""Controllers driven from host Python floats: the framework front ends' engine.

``adaptive_optax.torch`` and ``adaptive_optax.keras`` keep their controllers
here. Each step runs the one pure policy (:func:`adaptive_optax._policy.step`)
jitted on the host CPU in float64, whatever the default device and whatever
``jax_enable_x64`` says elsewhere: the seed computes in Python floats, and
float64 is what makes ``mode="reference"`` equal it to 1e-9. x64 is switched
on only around these calls (``jax.enable_x64``), never globally.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from adaptive_optax import _options
from adaptive_optax import _policy

_HP_FIELDS = _policy.Hyperparams._fields


def _unpack_hp(vector: jax.Array) -> _policy.Hyperparams:
  # The hyperparameters travel as one float64 vector: a jitted call pays per
  # argument leaf, and two dozen scalars would cost more than the step.
  return _policy.Hyperparams(*(vector[i] for i in range(len(_HP_FIELDS))))


def _outputs(state: _policy.ControllerState) -> jax.Array:
  """(controllers, 2): applied rate and momentum, what a front end writes."""
  return jnp.stack([state.applied_rate, state.applied_momentum], axis=-1)


@functools.partial(jax.jit, static_argnums=(1,))
def _init(hp_vector, cfg, rates, momenta):
  def one(rate, momentum):
    return _policy.init(_unpack_hp(hp_vector), cfg, rate, momentum, jnp.float64)
  # One controller per row (param group): one dispatch for all of them.
  state = jax.vmap(one)(rates, momenta)
  return state, _outputs(state)


@functools.partial(jax.jit, static_argnums=(1,))
def _step(hp_vector, cfg, state, loss, reward):
  def one(state):
    return _policy.step(_unpack_hp(hp_vector), cfg, state, loss,
                        reward if cfg.use_reward else None)
  state = jax.vmap(one)(state)
  return state, _outputs(state)


def build(options: Mapping[str, Any], where: str):
  """Validates the policy ``options`` (seed names, ``lr_min``/``lr_max``).

  Returns:
    ``(Hyperparams, Config)``; ``Config.has_momentum`` is False, set per
    controller by :class:`HostController`.
  """
  return _options.build_policy(options, _options.LR_BOUNDS, where)


def check_start(name: str, rate: float, momentum: float | None) -> None:
  """The starting LR and momentum a framework gave, checked at construction."""
  if not (math.isfinite(rate) and rate > 0):
    raise ValueError(f"{name} learning rate must be a positive number, got "
                     f"{rate!r}.")
  if momentum is not None and not (math.isfinite(momentum) and momentum >= 0):
    raise ValueError(f"{name} momentum must be a non-negative number, got "
                     f"{momentum!r}.")


class HostController:
  """Controllers of one configuration, one per row: floats in, floats out.

  All rows step together on the same loss, in one jitted call (a front end
  keeps one row per param group).

  Args:
    hp: the numeric hyperparameters (from :func:`build`).
    cfg: the static switches; ``has_momentum`` is set from ``momenta``.
    rates: the starting learning rate of each row.
    momenta: the starting momentum of each row, or ``None`` when the
      optimizer has none (the controller then leaves momentum alone).
  """

  def __init__(self, hp: _policy.Hyperparams, cfg: _policy.Config,
               rates: Sequence[float], momenta: Sequence[float] | None):
    self.cfg = _with_momentum(cfg, momenta is not None)
    self._cpu = jax.devices("cpu")[0]
    momenta = [0.0] * len(rates) if momenta is None else momenta
    with jax.enable_x64(True):
      # Committed to the CPU: every jitted step then runs there.
      self._hp = jax.device_put(
          np.asarray([float(h) for h in hp], np.float64), self._cpu)
      self.state, out = _init(self._hp, self.cfg,
                              np.asarray(rates, np.float64),
                              np.asarray(momenta, np.float64))
    self._set_outputs(out)

  def _set_outputs(self, out: jax.Array) -> None:
    out = np.asarray(out)  # one device-to-host copy
    self.rates, self.momenta = out[:, 0].tolist(), out[:, 1].tolist()

  def step(self, loss: float, reward: float = math.nan) -> None:
    """Consumes one loss (NaN: a step without metrics) in every row."""
    with jax.enable_x64(True):
      self.state, out = _step(self._hp, self.cfg, self.state,
                              np.float64(loss), np.float64(reward))
    self._set_outputs(out)

  def arrays(self) -> dict[str, np.ndarray]:
    """The state's array leaves by name, one row per controller.

    The static configuration is not among them: the front end saves its
    options and rebuilds the controller from them before :meth:`load_arrays`.
    """
    leaves = jax.tree_util.tree_flatten_with_path(self.state)[0]
    return {_name(path): np.asarray(leaf) for path, leaf in leaves}

  def load_arrays(self, arrays: Mapping[str, Any]) -> None:
    """Restores :meth:`arrays`; raises ValueError on another layout."""
    want = self.arrays()
    if set(arrays) != set(want):
      raise ValueError(f"controller state must have the fields {sorted(want)}, "
                       f"got {sorted(arrays)}.")
    loaded = []
    for k, ref in want.items():
      arr = np.asarray(arrays[k])
      if arr.shape != ref.shape:
        raise ValueError(
            f"controller state field {k!r} has shape {arr.shape}, this "
            f"controller's is {ref.shape} (saved under another var_window or "
            f"another version?).")
      loaded.append(arr.astype(ref.dtype))
    treedef = jax.tree.structure(self.state)
    with jax.enable_x64(True):
      self.state = jax.device_put(jax.tree.unflatten(treedef, loaded),
                                  self._cpu)
      self._set_outputs(_outputs_jit(self.state))


def _name(path) -> str:
  return ".".join(str(getattr(k, "name", getattr(k, "key", k))) for k in path)


def _with_momentum(cfg, has_momentum: bool):
  """``cfg`` with ``has_momentum`` set (a dataclass or a NamedTuple)."""
  if dataclasses.is_dataclass(cfg):
    return dataclasses.replace(cfg, has_momentum=has_momentum)
  return cfg._replace(has_momentum=has_momentum)


_outputs_jit = jax.jit(_outputs)
