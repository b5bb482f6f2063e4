"""Saving and restoring optimizer states without misreading them.

An optimizer state is a pytree, so ``pickle`` and
``flax.serialization.to_bytes`` already save it. Loading is where things go
wrong: ``flax.serialization.from_bytes(template, data)`` takes the arrays it
finds whatever their shape, so a state saved with ``var_window=20`` loads
into a ``var_window=10`` optimizer and is then silently misread.
:func:`restore_state` checks a loaded state against the template leaf by
leaf (paths, shapes, dtypes).

The switches ``mode``, ``use_reward`` and ``use_cosine`` do not change the
state's layout, so no template can tell them apart. :func:`state_to_bytes`
therefore records each controller's static configuration next to the state,
and :func:`state_from_bytes` refuses data made under another one.

These functions use flax's serialization (the ``flax`` extra); importing
adaptive_optax does not need flax.
"""

from __future__ import annotations

import dataclasses
import functools
import types
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from adaptive_optax import _policy

FORMAT = "adaptive_optax.state"
FORMAT_VERSION = 1


def _flax():
  """flax's serialization modules, imported on first use."""
  try:
    import flax.serialization  # pylint: disable=g-import-not-at-top
    import flax.traverse_util  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError(
        "Saving and restoring states uses flax's serialization: "
        "pip install 'adaptive_optax[flax]'.") from e
  return flax


def _flat(state_dict) -> dict[tuple[str, ...], Any]:
  return _flax().traverse_util.flatten_dict(state_dict, keep_empty_nodes=True)


def _describe(leaf) -> str:
  if leaf is _flax().traverse_util.empty_node:
    return "an empty node"
  arr = np.asarray(leaf)
  return f"{arr.dtype}{list(arr.shape)}"


def _hint(path: tuple[str, ...]) -> str:
  name = path[-1] if path else ""
  if name == "stats":
    return (" The controller's var_window differs (it sizes the loss window "
            "in stats).")
  if "hyperparams" in path:
    return (" The inner optimizer's injected hyperparameters differ (momentum "
            "driven in one and not the other, or another optimizer).")
  return ""


def restore_state(template, restored):
  """Checks a loaded optimizer state against ``template`` and returns it.

  Args:
    template: a freshly initialized state of the optimizer that will use the
      restored one (``tx.init(params)``).
    restored: the loaded state: a pytree (from ``pickle``), or a flax state
      dict (``flax.serialization.msgpack_restore(data)``).

  Returns:
    ``restored`` with ``template``'s pytree structure and ``jax.Array``
    leaves.

  Raises:
    ValueError: naming the first path whose presence, shape or dtype differs
      (a state from another ``var_window``, dtype or optimizer).

  Example:
    >>> import pickle, jax.numpy as jnp, optax
    >>> import adaptive_optax as ao
    >>> params = jnp.zeros(3)
    >>> saved = pickle.dumps(ao.adaptive_scale(var_window=20).init(params))
    >>> template = ao.adaptive_scale(var_window=10).init(params)
    >>> ao.restore_state(template, pickle.loads(saved))
    Traceback (most recent call last):
    ...
    ValueError: Saved optimizer state does not match this optimizer at controller/stats: saved float32[32], expected float32[22]. The controller's var_window differs (it sizes the loss window in stats).
  """
  flax = _flax()
  want_sd = flax.serialization.to_state_dict(template)
  got_sd = (restored if isinstance(restored, dict)
            else flax.serialization.to_state_dict(restored))
  want, got = _flat(want_sd), _flat(got_sd)
  for path in list(want) + [p for p in got if p not in want]:
    where = "/".join(path)
    if path not in got:
      raise ValueError(
          f"Saved optimizer state lacks {where} ({_describe(want[path])}): it "
          f"was saved from another optimizer or configuration.{_hint(path)}")
    if path not in want:
      raise ValueError(
          f"Saved optimizer state has {where} ({_describe(got[path])}), which "
          f"this optimizer does not: it was saved from another optimizer or "
          f"configuration.{_hint(path)}")
    w, g = _describe(want[path]), _describe(got[path])
    if w != g:
      raise ValueError(
          f"Saved optimizer state does not match this optimizer at {where}: "
          f"saved {g}, expected {w}.{_hint(path)}")
  state = flax.serialization.from_state_dict(template, got_sd)
  return jax.tree.map(jnp.asarray, state)


def _walk_configs(obj, found: list, seen: set, depth: int = 0) -> None:
  """Collects the controllers' static configs from a transformation's closures."""
  if depth > 64 or id(obj) in seen:
    return
  seen.add(id(obj))
  if isinstance(obj, _policy.Config):
    found.append(obj)
  elif isinstance(obj, (str, bytes, int, float, complex, type(None), type,
                        np.ndarray, jax.Array, types.ModuleType)):
    return
  elif isinstance(obj, functools.partial):
    for x in (obj.func, obj.args, obj.keywords):
      _walk_configs(x, found, seen, depth + 1)
  elif isinstance(obj, types.MethodType):
    _walk_configs(obj.__func__, found, seen, depth + 1)
  elif isinstance(obj, types.FunctionType):
    for cell in obj.__closure__ or ():
      try:
        contents = cell.cell_contents
      except ValueError:  # an empty cell
        continue
      _walk_configs(contents, found, seen, depth + 1)
  elif isinstance(obj, (tuple, list)):
    for x in obj:
      _walk_configs(x, found, seen, depth + 1)
  elif isinstance(obj, dict):
    for x in obj.values():
      _walk_configs(x, found, seen, depth + 1)


def controller_configs(tx: optax.GradientTransformation) -> list[dict]:
  """The static configuration of each controller in ``tx``, in chain order.

  Args:
    tx: a transformation holding ``adaptive_scale`` or
      ``adaptive_hyperparams`` (bare or inside ``optax.chain``...).

  Returns:
    One dict per controller: ``mode``, ``var_window``, ``use_reward``,
    ``use_cosine``, ``has_momentum``.

  Example:
    >>> import optax, adaptive_optax as ao
    >>> ao.controller_configs(optax.chain(optax.sgd(0.1),
    ...                                   ao.adaptive_scale(var_window=5)))
    [{'mode': 'stable', 'var_window': 5, 'use_reward': False, 'use_cosine': False, 'has_momentum': False}]
  """
  found: list = []
  _walk_configs(tuple(tx), found, set())
  return [dataclasses.asdict(c) for c in found]


def state_to_bytes(state, tx: optax.GradientTransformation) -> bytes:
  """Serializes ``state`` with the static configuration of ``tx``'s controllers.

  Args:
    state: the optimizer state to save.
    tx: the transformation that made it.

  Returns:
    msgpack bytes (flax's format) holding the state dict and the
    configuration; read them back with :func:`state_from_bytes`.

  Example:
    >>> import jax.numpy as jnp, optax, adaptive_optax as ao
    >>> tx = ao.adaptive_scale(use_cosine=True)
    >>> data = ao.state_to_bytes(tx.init(jnp.zeros(2)), tx)
    >>> other = ao.adaptive_scale(use_cosine=False)
    >>> ao.state_from_bytes(data, other.init(jnp.zeros(2)), other)
    Traceback (most recent call last):
    ...
    ValueError: Saved optimizer state was made with use_cosine=True in controller 0, but this optimizer has use_cosine=False: build the optimizer with the saved configuration, or start from a fresh state.
  """
  serialization = _flax().serialization
  return serialization.msgpack_serialize({
      "format": FORMAT,
      "version": FORMAT_VERSION,
      "controllers": {str(i): c for i, c in
                      enumerate(controller_configs(tx))},
      "state": serialization.to_state_dict(state),
  })


def state_from_bytes(data: bytes, template, tx: optax.GradientTransformation):
  """Restores a state written by :func:`state_to_bytes`, refusing mismatches.

  Args:
    data: the bytes.
    template: ``tx.init(params)``, giving the structure to restore into.
    tx: the transformation that will use the state.

  Returns:
    The restored state.

  Raises:
    ValueError: when a controller's ``mode``, ``var_window``, ``use_reward``,
      ``use_cosine`` or momentum driving differs, when the number of
      controllers differs, or when :func:`restore_state` finds a mismatch.
  """
  saved = _flax().serialization.msgpack_restore(data)
  if not isinstance(saved, dict) or saved.get("format") != FORMAT:
    raise ValueError("These bytes were not written by state_to_bytes.")
  saved_cfgs = [saved["controllers"][k]
                for k in sorted(saved["controllers"], key=int)]
  cfgs = controller_configs(tx)
  if len(saved_cfgs) != len(cfgs):
    raise ValueError(
        f"Saved optimizer state has {len(saved_cfgs)} adaptive_optax "
        f"controller(s), this optimizer has {len(cfgs)}.")
  for i, (old, new) in enumerate(zip(saved_cfgs, cfgs)):
    for name, value in new.items():
      if old.get(name) != value:
        raise ValueError(
            f"Saved optimizer state was made with {name}={old.get(name)!r} in "
            f"controller {i}, but this optimizer has {name}={value!r}: build "
            "the optimizer with the saved configuration, or start from a "
            "fresh state.")
  return restore_state(template, saved["state"])
