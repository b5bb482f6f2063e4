"""Named configurations: the seed README's "Example Configurations".

Each preset is a read-only mapping of keyword arguments, so it spreads into
any front end::

  ao.adaptive_scale(**ao.presets.conservative)
  ao.adaptive_hyperparams(optax.sgd, learning_rate=0.05, **ao.presets.rl)
  ao.simulate(losses, **ao.presets.exploratory)

To override one of a preset's keywords, name the preset with ``preset=``
(every front end takes it; :func:`accepts_preset` adds it)::

  ao.adaptive_scale(preset="rl", reward_down=0.9)   # explicit keywords win

``ao.adaptive_scale(**ao.presets.rl, reward_down=0.9)`` is a ``TypeError``
in Python itself: ``reward_down`` would be given twice.
"""

from __future__ import annotations

import functools
import inspect
import textwrap
import types
from typing import Any, Callable, Mapping, TypeVar

_F = TypeVar("_F", bound=Callable[..., Any])

# The seed's defaults: nothing overridden.
default: Mapping[str, Any] = types.MappingProxyType({})
# "Conservative training": gentler nudges, more patience before a big drop.
conservative: Mapping[str, Any] = types.MappingProxyType(
    dict(up_factor=1.02, down_factor=0.9, patience=40))
# "Exploratory with cosine": warm restarts every 100, 200, 400... steps.
exploratory: Mapping[str, Any] = types.MappingProxyType(
    dict(use_cosine=True, T0=100, T_mult=2))
# "Reward-driven RL fine-tuning": needs update(..., value=loss, reward=r).
rl: Mapping[str, Any] = types.MappingProxyType(
    dict(use_reward=True, reward_up=1.05, reward_down=0.8))

PRESETS: Mapping[str, Mapping[str, Any]] = types.MappingProxyType(dict(
    default=default, conservative=conservative, exploratory=exploratory,
    rl=rl))


def get(preset: str | Mapping[str, Any] | None) -> dict[str, Any]:
  """The keyword arguments of a preset, as a new dict.

  Args:
    preset: a name from :data:`PRESETS`, a mapping of keyword arguments, or
      ``None`` (no keywords).

  Returns:
    A fresh ``dict`` the caller may change.

  Raises:
    ValueError: for an unknown name, listing the known ones.

  Example:
    >>> import adaptive_optax as ao
    >>> ao.presets.get("conservative")
    {'up_factor': 1.02, 'down_factor': 0.9, 'patience': 40}
  """
  if preset is None:
    return {}
  if isinstance(preset, str):
    if preset not in PRESETS:
      raise ValueError(
          f"preset must be one of {sorted(PRESETS)}, got preset={preset!r}.")
    return dict(PRESETS[preset])
  if isinstance(preset, Mapping):
    return dict(preset)
  raise TypeError(
      f"preset must be a name or a mapping, got {type(preset).__name__}.")


def merge(preset: str | Mapping[str, Any] | None,
          kwargs: Mapping[str, Any]) -> dict[str, Any]:
  """The preset's keywords overridden by the explicitly given ``kwargs``.

  Args:
    preset: a preset name, a mapping of keywords, or ``None``.
    kwargs: keywords given explicitly; they win over the preset's.

  Returns:
    A new dict.
  """
  return {**get(preset), **kwargs}


_PRESET_DOC = ("preset: a name from ``adaptive_optax.presets.PRESETS`` (or a "
               "mapping) whose keywords are the defaults; keywords given next "
               "to it win: ``preset=\"rl\", reward_down=0.9``.")


def _document_preset(doc: str | None) -> str | None:
  """``doc`` with a ``preset:`` entry in its Args, unless it has one."""
  if not doc or "preset:" in doc or "\n  Args:\n" not in doc:
    return doc
  head, tail = doc.split("\n  Args:\n", 1)
  entry = textwrap.fill(_PRESET_DOC, 76, initial_indent="    ",
                        subsequent_indent="      ")
  return f"{head}\n  Args:\n{entry}\n{tail}"


def accepts_preset(fn: _F) -> _F:
  """Adds a keyword-only ``preset=`` argument to a front end.

  ``fn(..., preset=p, **kw)`` calls ``fn(..., **merge(p, kw))``: explicit
  keywords win over the preset's. Meant to wrap ``adaptive_scale``,
  ``adaptive_hyperparams`` and ``simulate``.

  Args:
    fn: a function taking the policy's keyword arguments.

  Returns:
    The wrapped function; its signature shows ``preset``.

  Example:
    >>> import jax.numpy as jnp
    >>> import adaptive_optax as ao
    >>> simulate = ao.presets.accepts_preset(ao.simulate)
    >>> out = simulate(jnp.ones(50), preset="exploratory")
    >>> int(out["cosine_period"][0])
    100
  """

  @functools.wraps(fn)
  def wrapper(*args, preset=None, **kwargs):
    return fn(*args, **merge(preset, kwargs))

  wrapper.__doc__ = _document_preset(fn.__doc__)

  sig = inspect.signature(fn)
  if "preset" not in sig.parameters:
    params = list(sig.parameters.values())
    at = next((i for i, p in enumerate(params)
               if p.kind is inspect.Parameter.VAR_KEYWORD), len(params))
    params.insert(at, inspect.Parameter(
        "preset", inspect.Parameter.KEYWORD_ONLY, default=None))
    wrapper.__signature__ = sig.replace(parameters=params)
  return wrapper  # type: ignore[return-value]
