"""The parameters' displacement per window, sampled: the drift rule's input.

The transformation sees each step's update. Summed over a window of W steps
it is the parameters' displacement over that window; the cosine between two
consecutive windows' displacements says whether the parameters keep moving
one way (see :func:`adaptive_optax._stable.drift`). A fixed stride through
every leaf keeps at most about :data:`SKETCH_SIZE` coordinates, so the cost
per step is a strided copy and two small vectors whatever the model's size.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

# Coordinates kept (about): a cosine over thousands of coordinates of a
# displacement that is spread over the model is close to the full one.
SKETCH_SIZE = 4096
# A cosine between two noise vectors is a reliable test only over enough
# independent coordinates: in one dimension it is +-1. The displacement's
# participation ratio ``(sum s_i^2)^2 / sum s_i^4`` (its effective number of
# coordinates) must reach this, else no cosine is reported.
MIN_SPREAD = 8.0


class Displacement(NamedTuple):
  """Two windows of sampled updates."""

  current: jax.Array  # (m,): sum of this window's sampled updates so far.
  previous: jax.Array  # (m,): the same over the last full window (0: none).
  steps: jax.Array  # int32: updates summed into ``current``.


def _stride(leaves) -> int:
  n = sum(int(jnp.size(x)) for x in leaves)
  return max(1, -(-n // SKETCH_SIZE))


def sample(tree, dtype) -> jax.Array:
  """Every ``stride``-th coordinate of every leaf (real part), one vector."""
  leaves = jax.tree.leaves(tree)
  stride = _stride(leaves)
  parts = [jnp.real(jnp.ravel(jnp.asarray(x)))[::stride].astype(dtype)
           for x in leaves]
  return jnp.concatenate(parts) if parts else jnp.zeros((0,), dtype)


def init(params, dtype) -> Displacement:
  zero = jnp.zeros_like(sample(params, dtype))
  return Displacement(current=zero, previous=jnp.copy(zero),
                      steps=jnp.zeros((), jnp.int32))


def close(disp: Displacement, window: int):
  """At a full window: the cosine with the window before (else NaN), and the
  window moved to ``previous``."""
  full = disp.steps >= window
  cur, prev = disp.current, disp.previous
  sq = jnp.vdot(cur, cur)
  dot = jnp.vdot(cur, prev)
  norms = sq * jnp.vdot(prev, prev)
  spread = sq * sq >= MIN_SPREAD * jnp.sum(cur ** 4)
  ok = full & (norms > 0) & spread
  align = jnp.where(ok, dot * jax.lax.rsqrt(jnp.where(ok, norms, 1)), jnp.nan)
  disp = Displacement(
      current=jnp.where(full, 0, disp.current),
      previous=jnp.where(full, disp.current, disp.previous),
      steps=jnp.where(full, 0, disp.steps).astype(jnp.int32))
  return align, disp


def add(disp: Displacement, updates) -> Displacement:
  """Adds one step's (scaled) update; a non-finite coordinate adds 0, so
  one bad step cannot silence the rule for the rest of the run."""
  step = sample(updates, disp.current.dtype)
  return disp._replace(
      current=disp.current + jnp.where(jnp.isfinite(step), step, 0),
      steps=(disp.steps + 1).astype(jnp.int32))
