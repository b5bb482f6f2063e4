"""The parameters' displacement per window, sampled: the drift rule's input.

The cosine between two consecutive windows' displacements says whether the
parameters keep moving one way (see :func:`adaptive_optax._stable.drift`).
The displacement is read from the parameters the transformation is given
(``update(..., params)``): at each window's end, the sampled parameters
minus those at its start. A fixed stride through every leaf keeps at most
about :data:`SKETCH_SIZE` coordinates, so the cost is a strided read of the
parameters and a few small vectors whatever the model's size, paid once a
window; the other steps only count.
(Sampling the updates instead made XLA write the whole update tree out
once more per step: 1.3-1.6x the plain optimizer's step at 1M parameters.)

A displacement along the parameters themselves (its cosine with the
parameters at the window's start beyond :data:`RADIAL` in absolute value)
reports a cosine of 0: the weights growing or shrinking in scale keep one
direction window after window without going anywhere.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

# Coordinates kept (about): a cosine over thousands of coordinates of a
# displacement that is spread over the model is close to the full one.
SKETCH_SIZE = 4096
# A cosine between two noise vectors is a reliable test only over enough
# independent coordinates: in one dimension it is +-1. The displacement's
# participation ratio ``(sum s_i^2)^2 / sum s_i^4`` (its effective number of
# coordinates) must reach this, else no cosine is reported.
MIN_SPREAD = 8.0
# A displacement whose cosine with the parameters themselves exceeds this (in
# absolute value) is the weights growing or shrinking in scale: it reads as
# not aligned (see _window_end).
RADIAL = 0.5


class Displacement(NamedTuple):
  """The sampled parameters at the window's start, and the last window."""

  start: jax.Array  # (m,): the sampled parameters when this window began.
  previous: jax.Array  # (m,): the last full window's displacement (0: none).
  steps: jax.Array  # int32: updates since this window began.


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


def window_length(drift_window, var_window: int):
  """Updates per displacement window: ``drift_window``, or the loss's
  ``var_window`` when it is 0 (a Python int stays one: no op in the step)."""
  if isinstance(drift_window, (int, np.integer)):
    return int(drift_window) or var_window
  return jnp.where(jnp.asarray(drift_window) > 0, drift_window, var_window)


def init(params, dtype) -> Displacement:
  start = sample(params, dtype)
  return Displacement(start=start, previous=jnp.zeros_like(start),
                      steps=jnp.zeros((), jnp.int32))


def step(disp: Displacement, params, window: int):
  """One update's bookkeeping, given the parameters it starts from.

  Returns the cosine between the window that ends here and the one before
  (NaN unless a window of ``window`` updates ends here, both moved, and the
  new one is spread over ``MIN_SPREAD`` effective coordinates) and the next
  state. ``params=None`` (not given to ``update``): NaN, state unchanged.
  """
  if params is None:
    return jnp.asarray(jnp.nan, disp.start.dtype), disp
  # Only a window's end reads the parameters: the strided read (a cache miss
  # per sampled coordinate) and the four sums were most of the drift rule's
  # cost per step in a CPU profile at 1M parameters, so the other steps skip
  # them. Under vmap with a batched clock, cond runs both branches and
  # selects: the same result.
  return jax.lax.cond(disp.steps >= window, _window_end, _count, disp, params)


def _count(disp: Displacement, params):
  del params
  return (jnp.asarray(jnp.nan, disp.start.dtype),
          disp._replace(steps=(disp.steps + 1).astype(jnp.int32)))


def _window_end(disp: Displacement, params):
  now = sample(params, disp.start.dtype)
  cur = now - disp.start
  # Non-finite parameters (a diverged step) leave no displacement.
  cur = jnp.where(jnp.isfinite(cur), cur, 0)
  prev = disp.previous
  sq = jnp.vdot(cur, cur)
  norms = sq * jnp.vdot(prev, prev)
  spread = sq * sq >= MIN_SPREAD * jnp.sum(cur ** 4)
  ok = (norms > 0) & spread
  # Weights that grow (or shrink) along themselves keep one direction window
  # after window without travelling anywhere (Lion's sign steps inflate the
  # norm so); a higher rate only speeds that up. Such a window reads as not
  # aligned (0, not NaN: it also breaks a reward's streak).
  radial = jnp.vdot(cur, disp.start)
  scaling = radial * radial > RADIAL**2 * sq * jnp.vdot(disp.start, disp.start)
  cos = jnp.vdot(cur, prev) * jax.lax.rsqrt(jnp.where(ok, norms, 1))
  align = jnp.where(ok, jnp.where(scaling, 0, cos), jnp.nan)
  return align, Displacement(start=now, previous=cur,
                             steps=jnp.ones_like(disp.steps))
