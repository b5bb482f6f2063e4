"""The controller's state, declared once.

:data:`SCHEMA` lists every quantity the controller keeps, with its kind, its
value before the first loss, and what it means. Everything else is generated
from it: :class:`Fields` (one field per quantity, what the math works on),
the packed :class:`ControllerState` (four array leaves) with a named
read-only view per quantity, :func:`pack`/:meth:`ControllerState.unpack`,
:func:`initial_fields`, and :data:`LAYOUT`, a fingerprint of the packing that
travels with every state so that a checkpoint packed another way is refused
instead of misread.

To add a quantity, add one line to :data:`SCHEMA`; its position within its
kind decides its slot. The static switches (:class:`Config`) travel with the
state as pytree metadata, so a state says what made it under any wrapper.
"""

from __future__ import annotations

import hashlib
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from adaptive_optax import _stable

MODES = ("stable", "reference")
# Restart periods saturate here instead of overflowing int32 (T_i *= T_mult).
MAX_COSINE_PERIOD = 2**30

# Kinds of quantity. RATE: a float leaf of its own (optax.tree.get finds it by
# name). FLOAT: a slot of ``stats``. WINDOW: the (var_window,) float vector at
# the end of ``stats``. INT: an int32 slot of ``counters``. BOOL: a slot of
# ``counters`` holding 0/1.
RATE, FLOAT, WINDOW, INT, BOOL = "rate", "float", "window", "int", "bool"


class Start(NamedTuple):
  """What initial values are computed from."""

  hp: Any  # Hyperparams
  cfg: Any  # Config
  rate: jax.typing.ArrayLike  # the given LR, or 1 for a scale
  momentum: jax.typing.ArrayLike  # the given momentum (0 when not driven)


_rate = lambda s: s.rate  # noqa: E731
_period = lambda s: jnp.clip(jnp.asarray(s.hp.T0), 1, MAX_COSINE_PERIOD)  # noqa: E731

# (name, kind, initial value or function of Start, meaning). Packing order is
# the order of each kind here: A checkpoint written under another order or
# another set of names has another LAYOUT and is refused.
SCHEMA: tuple[tuple[str, str, Any, str], ...] = (
    ("stored_rate", RATE, _rate, "LR (or scale) as moved by decisions."),
    ("applied_rate", RATE, _rate, "LR (or scale) used for the next update."),
    ("applied_momentum", FLOAT, lambda s: s.momentum,
     "momentum for the next update."),
    ("loss_ema", FLOAT, 0.0, "EMA of finite losses."),
    ("prev_loss", FLOAT, 0.0, "loss_ema at the end of the last step."),
    ("reward_ema", FLOAT, 0.0, "EMA of finite rewards."),
    ("prev_reward", FLOAT, 0.0, "reward EMA at the last reward decision."),
    ("reward_sq_dev", FLOAT, 0.0, "EMA of squared reward deviations."),
    ("reward_pending", FLOAT, 1.0, "stable: product of the reward rule's "
     "moves on trial (1: none), undone when the reward moves the other way "
     "beyond the band or crosses back over reward_ref."),
    ("reward_ref", FLOAT, 0.0, "stable: reward EMA before the first move on "
     "trial."),
    ("reward_momentum_ref", FLOAT, lambda s: s.momentum, "stable: momentum "
     "before the first move on trial (restored with the rate's undo)."),
    ("prev_window_mean", FLOAT, 0.0, "mean of the last decided window."),
    ("prev_window_var", FLOAT, 0.0, "variance of the last decided window."),
    ("window_noise_var", FLOAT, 0.0, "window_noise of loss_window as the last "
     "step left it (stable mode's spike guard reads it: no re-reduce)."),
    ("warmup", FLOAT, 1.0, "stable: cautious-start factor of the applied "
     "rate, < 1 during the first window."),
    ("given_rate", FLOAT, _rate, "stable: the rate given at init."),
    ("plateau_ref", FLOAT, 0.0, "stable: window mean at the start of the "
     "current patience period, which the next patience check must beat."),
    ("probe_prev_speed", FLOAT, 0.0, "stable: the loss's fall per window "
     "that justified the probe's last growth (the next must be sqrt(g) times "
     "faster)."),
    ("probe_base", FLOAT, 0.0, "stable: the rate before the probe's last "
     "growth (0: none), restored if the growth did not pay."),
    ("probe_ref", FLOAT, 0.0, "stable: window mean at the start of the "
     "probe's current segment."),
    ("probe_ref_var", FLOAT, 0.0, "stable: that window's noise variance."),
    ("guard_low", FLOAT, 0.0, "stable: lowest window mean since the last "
     "runaway cut."),
    ("drift_align", FLOAT, -2.0, "stable: the last cosine between two "
     "windows' displacements (-2: none since the last decision)."),
    ("drift_last", FLOAT, -2.0, "stable: the last new cosine read at a "
     "decided window."),
    ("drift_ceiling", FLOAT, 0.0, "stable: the drift rule grows the rate to "
     "at most this (0: no limit yet)."),
    ("guard_anchor", FLOAT, 0.0, "stable: window mean at the last runaway cut "
     "(0: none); the next cut needs the loss to double from here."),
    ("spike_peak", FLOAT, 0.0, "stable: the highest loss of the current "
     "run of spikes (the next must beat it to count)."),
    ("trial_ref", FLOAT, 0.0, "stable: window mean when the patience drop on "
     "trial was made."),
    ("loss_window", WINDOW, 0.0, "ring buffer of raw losses."),
    ("window_fill", INT, 0, "valid entries in loss_window (<= var_window)."),
    ("window_pos", INT, 0, "next write index in loss_window."),
    ("steps_since_improve", INT, 0, "steps without an improvement."),
    ("cooldown_left", INT, 0, "steps before patience may drop again."),
    ("cosine_t", INT, 0, "steps into the current cosine period."),
    ("cosine_period", INT, _period, "length of the current cosine period."),
    ("window_steps", INT, 0, "finite losses since the last decision."),
    ("num_steps", INT, 0, "updates seen (saturating)."),
    ("num_nonfinite", INT, 0, "non-finite losses skipped."),
    ("probe_windows", INT, 0, "stable: windows into the probe's current "
     "segment (-1: its first window, after a change of rate, is to come)."),
    ("sign_age", INT, 2**30, "stable: finite losses since the loss last "
     "crossed 0 (see _stable.level)."),
    ("spikes", INT, 0, "stable: spikes in the current run (saturates at 3)."),
    ("spike_trial", INT, 0, "stable: steps left in the trial of the last "
     "spike run's cut (0: none on trial)."),
    ("rises", INT, 0, "stable: consecutive windows worse than the one before."),
    ("has_loss_ema", BOOL, False, "a finite loss has been seen."),
    ("has_prev_loss", BOOL, False, "prev_loss is set."),
    ("has_reward_ema", BOOL, False, "a finite reward has been seen."),
    ("has_prev_reward", BOOL, False, "prev_reward is set."),
    ("has_prev_window", BOOL, False, "a window has been decided."),
    ("drift_trial", INT, 0, "stable: windows until the drift rule's last "
     "growth is judged (2: the next settles, 1: the next is judged)."),
    ("cut_since", BOOL, False, "stable: a guard (a run of spikes, the "
     "warm-up's stop) cut the rate since the last decided window; the "
     "window rules then do not cut for that window (see _stable.paid)."),
    ("drift_grew", BOOL, False, "stable: the drift rule grew the rate since "
     "the last guard cut (the next cut then sets drift_ceiling)."),
    ("probing", BOOL, lambda s: (s.cfg.mode == "stable" and not
                                 s.cfg.use_reward and "probe" in s.cfg.rules),
     "stable: start-up probe still growing the rate."),
    ("probe_started", BOOL, False, "stable: the probe's first segment has "
     "begun."),
    ("spike_recur", BOOL, False, "stable: a new spike run began during the "
     "trial of the last spike run's cut."),
    ("trial", BOOL, False, "stable: the last patience drop is on trial."),
)

_KIND = {name: kind for name, kind, _, _ in SCHEMA}
_names = lambda *kinds: tuple(n for n, k, _, _ in SCHEMA if k in kinds)  # noqa: E731
# Slots of ControllerState.stats (then the window) and .counters. A jitted
# call pays per leaf of its arguments and results, and per kernel that writes
# one: two dozen scalar leaves cost more than the controller's arithmetic.
FLOATS = _names(FLOAT)
INTS = _names(INT)
BOOLS = _names(BOOL)
COUNTERS = _names(INT, BOOL)
WINDOW_NAME = _names(WINDOW)[0]
if len(_names(WINDOW)) != 1 or _names(RATE) != ("stored_rate",
                                                "applied_rate"):
  raise AssertionError("SCHEMA: one WINDOW and the two RATE leaves expected.")



def fingerprint(schema) -> str:
  """A short hash of the packing: the names and kinds, in order."""
  names = repr([(n, k) for n, k, _, _ in schema])
  return hashlib.sha256(names.encode()).hexdigest()[:16]


LAYOUT = fingerprint(SCHEMA)


def _fields_doc() -> str:
  lines = ["The controller's state, one field per quantity: what the math "
           "works on.", "", "Generated from :data:`SCHEMA`; stored packed as "
           "a :class:`ControllerState` (see :func:`pack`).", "", "Attributes:"]
  lines += [f"  {n}: ({k}) {doc}" for n, k, _, doc in SCHEMA]
  return "\n".join(lines)


Fields = NamedTuple("Fields", [(n, jax.Array) for n, _, _, _ in SCHEMA])
Fields.__doc__ = _fields_doc()
Fields.__module__ = __name__


class Config(NamedTuple):
  """Static switches: they change the program, so they cannot be traced.

  A :class:`ControllerState` carries its ``Config`` as pytree metadata (no
  leaves), so the state says what made it: :func:`controller_configs` and
  serialization read it from the state, and a step refuses a state made
  under another configuration or another packing (``layout``).
  """

  mode: str = "stable"
  var_window: int = 20
  use_reward: bool = False
  use_cosine: bool = False
  has_momentum: bool = False
  rules: tuple[str, ...] = _stable.RULES  # stable: the rules that run
  layout: str = LAYOUT

  def as_dict(self) -> dict[str, Any]:
    return dict(self._asdict())


# Metadata, not data: no leaves, so jit/scan/vmap/donation see four arrays,
# and two states differ in tree structure when their configurations do.
jax.tree_util.register_pytree_node(
    Config, lambda c: ((), c), lambda c, _: c)


def _view(name: str):
  """A read-only property: ``name``'s slot in ``stats`` or ``counters``."""
  if name == WINDOW_NAME:
    get = lambda self: self.stats[..., len(FLOATS):]  # noqa: E731
    get.__doc__ = f"``stats[..., {len(FLOATS)}:]``: see :class:`Fields`."
    return property(get)
  if name in FLOATS:
    vector, i, is_bool = "stats", FLOATS.index(name), False
  else:
    vector, i, is_bool = "counters", COUNTERS.index(name), name in BOOLS
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
  sets them by name. ``config`` is static metadata (no leaf): the switches
  and packing that made the state.
  """

  stored_rate: jax.Array  # (), float: LR (or scale) as moved by decisions.
  applied_rate: jax.Array  # (), float: LR (or scale) used for the next update.
  stats: jax.Array  # (len(FLOATS) + var_window,), float: FLOATS, the window.
  counters: jax.Array  # (len(COUNTERS),), int32: INTS, then BOOLS as 0/1.
  config: Config  # static: no leaf.

  def unpack(self) -> Fields:
    """The state as one field per quantity."""
    return Fields(**{k: getattr(self, k) for k in Fields._fields})

  def replace(self, **fields) -> ControllerState:
    """A copy with the named :class:`Fields` set (unbatched states only).

    Each value is cast to its field's dtype (the state's float dtype, int32
    or bool), so the state keeps its layout whatever is given.
    """
    unknown = sorted(set(fields) - set(Fields._fields))
    if unknown:
      raise ValueError(
          f"replace() got unknown field(s) {unknown}; the fields are "
          f"{list(Fields._fields)}.")
    if self.stats.ndim != 1:
      raise ValueError(
          "replace() sets fields of one state; this state is stacked (shape "
          f"{self.stats.shape[:-1]} in front): apply it under jax.vmap.")
    current = self.unpack()
    cast = {}
    for name, value in fields.items():
      old = getattr(current, name)
      new = jnp.asarray(value).astype(old.dtype)
      if new.shape != old.shape:
        raise ValueError(
            f"replace(): {name} must have shape {old.shape}, got {new.shape}.")
      cast[name] = new
    return pack(current._replace(**cast), self.config)


for _name in Fields._fields:
  if _name not in ControllerState._fields:
    setattr(ControllerState, _name, _view(_name))
del _name


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


def pack(fields: Fields, config: Config) -> ControllerState:
  """Packs the fields into four leaves, ``config`` riding along as metadata."""
  dtype = jnp.asarray(fields.stored_rate).dtype
  stats = _assemble([jnp.asarray(getattr(fields, k), dtype) for k in FLOATS]
                    + [jnp.asarray(getattr(fields, WINDOW_NAME), dtype)],
                    dtype)
  counters = _assemble([jnp.asarray(getattr(fields, k)).astype(jnp.int32)
                        for k in COUNTERS], jnp.int32)
  return ControllerState(
      stored_rate=jnp.asarray(fields.stored_rate, dtype),
      applied_rate=jnp.asarray(fields.applied_rate, dtype),
      stats=stats, counters=counters, config=config)


_DTYPES: dict[str, Callable[[Any], Any]] = {
    RATE: lambda d: d, FLOAT: lambda d: d, WINDOW: lambda d: d,
    INT: lambda d: jnp.int32, BOOL: lambda d: jnp.bool_}


def initial_fields(hp, cfg: Config, rate, momentum, dtype) -> Fields:
  """Every field at its :data:`SCHEMA` initial value (before any step)."""
  start = Start(hp=hp, cfg=cfg, rate=rate, momentum=momentum)
  values = {}
  for name, kind, initial, _ in SCHEMA:
    value = initial(start) if callable(initial) else initial
    value = jnp.asarray(value).astype(_DTYPES[kind](dtype))
    if kind == WINDOW:
      value = jnp.broadcast_to(value, (cfg.var_window,))
    values[name] = value
  return Fields(**values)


def check_config(state: ControllerState, cfg: Config) -> None:
  """Raises when ``state`` was made under another configuration or layout."""
  have = getattr(state, "config", None)
  if have == cfg:
    return
  if not isinstance(have, Config):
    raise ValueError(
        "This controller state carries no configuration (made by another "
        "version of adaptive_optax or assembled by hand): start from tx.init.")
  for name, want in cfg.as_dict().items():
    got = getattr(have, name)
    if got != want:
      what = ("another version of adaptive_optax (the state is packed "
              "differently)" if name == "layout" else f"{name}={got!r}")
      raise ValueError(
          f"This controller state was made with {what}, but this optimizer "
          f"has {name}={want!r}: build the optimizer with the state's "
          "configuration (state.config), or start from tx.init.")


def controllers_in(tree) -> list[ControllerState]:
  """Every controller state in ``tree`` (an optimizer state), in order."""
  found = jax.tree_util.tree_flatten(
      tree, is_leaf=lambda x: isinstance(x, ControllerState))[0]
  return [s for s in found if isinstance(s, ControllerState)]


def configs_in(tree) -> list[Config]:
  """The configurations of every controller state in ``tree``, in order."""
  return [s.config for s in controllers_in(tree)]


def array_kinds() -> dict[str, str]:
  """Each field's kind (for tests and documentation)."""
  return dict(_KIND)
