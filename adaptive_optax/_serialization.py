"""Saving and restoring optimizer states without misreading them.

An optimizer state is a pytree, so ``pickle`` and
``flax.serialization.to_bytes`` already save it. Loading is where things go
wrong: ``flax.serialization.from_bytes(template, data)`` takes the arrays it
finds whatever their shape, so a state saved with ``var_window=20`` loads
into a ``var_window=10`` optimizer and is then silently misread.
:func:`restore_state` checks a loaded state against the template leaf by
leaf (paths, shapes, dtypes).

Each controller state carries its static configuration (``mode``,
``var_window``, ``use_reward``, ``use_cosine``, momentum driven or not) and a
fingerprint of its packed layout as pytree metadata (``state.config``), so
the configuration travels with the state under any wrapper (``MultiSteps``,
``chain``, ``partition``, a Flax ``TrainState``...). flax's state dicts
include it; :func:`restore_state` and :func:`state_from_bytes` refuse a
state made under another configuration or packing, and a step refuses such
a state however it was loaded.

These functions use flax's serialization (the ``flax`` extra); importing
adaptive_optax does not need flax.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from adaptive_optax import _state

FORMAT = "adaptive_optax.state"
FORMAT_VERSION = 2  # 2: states carry their config


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
  if "config" in path:
    return (" The state carries no controller configuration: it was saved by "
            "an older adaptive_optax; start from a fresh state.")
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
    >>> ao.restore_state(template, pickle.loads(saved))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: Saved optimizer state does not match this optimizer at controller/stats: saved float32[...], expected float32[...]. The controller's var_window differs (it sizes the loss window in stats).
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
    if _config_key(path) is not None:
      continue  # values, not shapes: compared by _check_configs below
    w, g = _describe(want[path]), _describe(got[path])
    if w != g:
      raise ValueError(
          f"Saved optimizer state does not match this optimizer at {where}: "
          f"saved {g}, expected {w}.{_hint(path)}")
  _check_configs(want, got)
  state = flax.serialization.from_state_dict(template, got_sd)
  return jax.tree.map(jnp.asarray, state)


def _config_key(path: tuple[str, ...]) -> int | None:
  """Where ``path`` enters a ControllerState's config (``.../config/name``)."""
  for j in range(len(path) - 2, -1, -1):
    if path[j] == "config" and path[j + 1] in _state.Config._fields:
      return j
  return None


def _check_configs(want: dict, got: dict) -> None:
  """Refuses a saved controller made under another configuration.

  Shapes and dtypes cannot tell ``mode="stable"`` from ``"reference"`` (or
  two packings of the same size): the values of ``config`` can.
  """
  for path, value in want.items():
    j = _config_key(path)
    if j is None or path not in got:
      continue
    old = got[path]
    if isinstance(old, np.generic):
      old = old.item()
    if old != value:
      name, where = path[j + 1], "/".join(path[:j]) or "the state"
      what = ("another packing of the state (another adaptive_optax version)"
              if name == "layout" else f"{name}={old!r}")
      raise ValueError(
          f"Saved optimizer state was made with {what} at {where}, but this "
          f"optimizer has {name}={value!r}: build the optimizer with the "
          "saved configuration, or start from a fresh state.")


def controller_configs(state) -> list[dict]:
  """The static configuration of each controller in ``state``, in order.

  The state describes itself (``ControllerState.config``), so this works
  under any wrapper: ``optax.chain``, ``partition``, ``MultiSteps``, a Flax
  ``TrainState``, a stacked (vmapped) state.

  Args:
    state: an optimizer state (any pytree) holding ``adaptive_scale`` or
      ``adaptive_hyperparams`` states.

  Returns:
    One dict per controller: ``mode``, ``var_window``, ``use_reward``,
    ``use_cosine``, ``has_momentum``, ``layout`` (the packing's fingerprint).

  Example:
    >>> import jax.numpy as jnp, optax, adaptive_optax as ao
    >>> tx = optax.MultiSteps(
    ...     optax.chain(optax.sgd(0.1), ao.adaptive_scale(var_window=5)), 2)
    >>> [c["var_window"] for c in ao.controller_configs(tx.init(jnp.zeros(2)))]
    [5]
  """
  if isinstance(state, optax.GradientTransformation):
    raise TypeError(
        "controller_configs reads the state, which describes itself: pass "
        "tx.init(params) (or your optimizer state), not the transformation.")
  return [c.as_dict() for c in _state.configs_in(state)]


def _plain(config: dict) -> dict:
  """msgpack writes lists, not tuples."""
  return {k: list(v) if isinstance(v, tuple) else v for k, v in config.items()}


def state_to_bytes(state, tx: optax.GradientTransformation | None = None
                   ) -> bytes:
  """Serializes ``state`` with its controllers' static configuration.

  Args:
    state: the optimizer state to save (under any wrapper).
    tx: unused, accepted for compatibility: the state describes itself.

  Returns:
    msgpack bytes (flax's format) holding the state dict and a header with
    each controller's configuration; read them back with
    :func:`state_from_bytes`.

  Example:
    >>> import jax.numpy as jnp, optax, adaptive_optax as ao
    >>> tx = ao.adaptive_scale(use_cosine=True)
    >>> data = ao.state_to_bytes(tx.init(jnp.zeros(2)))
    >>> other = ao.adaptive_scale(use_cosine=False)
    >>> ao.state_from_bytes(data, other.init(jnp.zeros(2)))
    Traceback (most recent call last):
    ...
    ValueError: Saved optimizer state was made with use_cosine=True at controller, but this optimizer has use_cosine=False: build the optimizer with the saved configuration, or start from a fresh state.
  """
  del tx
  serialization = _flax().serialization
  return serialization.msgpack_serialize({
      "format": FORMAT,
      "version": FORMAT_VERSION,
      "controllers": {str(i): _plain(c) for i, c in
                      enumerate(controller_configs(state))},
      "state": serialization.to_state_dict(state),
  })


def state_from_bytes(data: bytes, template,
                     tx: optax.GradientTransformation | None = None):
  """Restores a state written by :func:`state_to_bytes`, refusing mismatches.

  Args:
    data: the bytes.
    template: ``tx.init(params)`` of the optimizer that will use the state:
      its structure, and its controllers' configurations.
    tx: unused, accepted for compatibility: the template describes itself.

  Returns:
    The restored state.

  Raises:
    ValueError: when a controller's ``mode``, ``var_window``, ``use_reward``,
      ``use_cosine``, momentum driving or packed layout differs, when the
      number of controllers differs, or when :func:`restore_state` finds a
      mismatch.
  """
  del tx
  saved = _flax().serialization.msgpack_restore(data)
  if not isinstance(saved, dict) or saved.get("format") != FORMAT:
    raise ValueError("These bytes were not written by state_to_bytes.")
  if saved.get("version") != FORMAT_VERSION:
    raise ValueError(
        f"These bytes were written in format version {saved.get('version')}, "
        f"this adaptive_optax reads version {FORMAT_VERSION}: start from a "
        "fresh state.")
  saved_cfgs = [saved["controllers"][k]
                for k in sorted(saved["controllers"], key=int)]
  cfgs = controller_configs(template)
  if len(saved_cfgs) != len(cfgs):
    raise ValueError(
        f"Saved optimizer state has {len(saved_cfgs)} adaptive_optax "
        f"controller(s), this optimizer has {len(cfgs)}.")
  # restore_state checks the structure, then each controller's config.
  return restore_state(template, saved["state"])
